"""Exceptions raised by vtp_lab.

The tree::

    VtpLabError                      base of everything vtp_lab raises
    ├── EventValidationError         one event breaks the contract (ValueError too)
    ├── StoreError                   a store cannot do what was asked
    │   └── StoreLockedError         another process holds the store's writer lock
    ├── RejectionLimitError          a load rejected more rows than its limit: nothing was stored
    ├── NotFoundError                no recording, user or course has that id (LookupError too)
    ├── PostgresError                a PostgreSQL server refused or failed (no password in the message)
    └── InputFormatError             a file or option vtp_lab cannot read (ValueError too)
        └── AmbiguousNameError       a title prefix that names several courses or lectures

Every error keeps its inputs as attributes, so a notebook can inspect them.

Example:
    >>> try:
    ...     raise EventValidationError(reason="nil_uuid", field="user_id", value="0" * 32)
    ... except VtpLabError as e:
    ...     e.reason
    'nil_uuid'
"""

from __future__ import annotations

__all__ = [
    "AmbiguousNameError",
    "EventValidationError",
    "InputFormatError",
    "NotFoundError",
    "PostgresError",
    "RejectionLimitError",
    "StoreError",
    "StoreLockedError",
    "VtpLabError",
]


class VtpLabError(Exception):
    """Base class of every error vtp_lab raises.

    Example:
        >>> issubclass(StoreLockedError, VtpLabError)
        True
    """


class EventValidationError(VtpLabError, ValueError):
    """An event breaks a rule of the contract (spec section 1).

    Attributes name the reason code, the field, the bad value and a hint.

    Example:
        >>> str(EventValidationError(reason="empty_session_id", field="session_id", value=""))
        "empty_session_id: session_id='' breaks the rule: ..."
    """

    def __init__(self, *, reason: str, field: str | None, value: object, rule: str = "...") -> None:
        self.reason = reason
        self.field = field
        self.value = value
        self.rule = rule
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"{reason}: {field}={shown} breaks the rule: {rule}")


class StoreError(VtpLabError):
    """A store cannot do what was asked (bad path, unreadable file, ...).

    Example:
        >>> StoreError("no such table 'x'").args[0]
        "no such table 'x'"
    """


class StoreLockedError(StoreError):
    """Another process holds the store's single writer.

    Example:
        >>> e = StoreLockedError(path="lab.duckdb", holder="python (PID 42)")
        >>> "PID 42" in str(e)
        True
    """

    def __init__(self, *, path: str, holder: str) -> None:
        self.path = path
        self.holder = holder
        super().__init__(
            f"the store {path} is open for writing by {holder}; a store has one writer at a time. To read it "
            "meanwhile, open it with read_only=True (vtp-lab info, report and export do): you read it as of that "
            "moment. To write, close that Lab or stop that process first"
        )


class InputFormatError(VtpLabError, ValueError):
    """A file, format or option that vtp_lab cannot read.

    Example:
        >>> InputFormatError("unknown format 'xml'; use one of ndjson, json, csv, parquet").args[0][:20]
        "unknown format 'xml'"
    """


class PostgresError(VtpLabError):
    """A PostgreSQL server could not be reached, or refused or failed a read or a write; nothing half done stays.

    The message names the server by its URI without the password, and never holds one.

    Example:
        >>> PostgresError("cannot connect to postgresql://ana@db/vtp: password authentication failed").args[0][:17]
        'cannot connect to'
    """


class RejectionLimitError(VtpLabError):
    """A load rejected more rows than ``max_rejected`` allows, so none of it was stored (nor its ledger entry).

    ``report`` is the load report up to where the load stopped.

    Example:
        >>> e = RejectionLimitError(rejected=12, limit=10, by_reason={"malformed": 12}, report=None)
        >>> str(e).split(";")[0]
        '12 rows rejected, more than max_rejected=10 (malformed 12)'
    """

    def __init__(self, *, rejected: int, limit: int, by_reason: dict[str, int], report: object) -> None:
        self.rejected = rejected
        self.limit = limit
        self.by_reason = by_reason
        self.report = report
        reasons = ", ".join(f"{k} {v:,}" for k, v in by_reason.items())
        super().__init__(
            f"{rejected:,} rows rejected, more than max_rejected={limit:,} ({reasons}); nothing of this load was "
            "stored. Load a sample without the limit to see the rejected rows and why, or raise the limit"
        )


class NotFoundError(VtpLabError, LookupError):
    """No recording, user or course of that id holds anything here; the message suggests close ids.

    Example:
        >>> known = ["6ba7b811-9dad", "0000"]
        >>> e = NotFoundError(kind="recording", value="6ba7b811", known=known, where="lab.recordings()")
        >>> str(e)
        "no recording '6ba7b811'; did you mean '6ba7b811-9dad'? See lab.recordings() for them all"
        >>> isinstance(e, LookupError), e.value
        (True, '6ba7b811')
    """

    def __init__(self, *, kind: str, value: object, known: list[str], where: str, scope: str = "") -> None:
        import difflib

        self.kind = kind
        self.value = value
        self.matches = (
            difflib.get_close_matches(str(value), known, n=3, cutoff=0.6)
            or [k for k in known if k.startswith(str(value)[:8])][:3]
        )
        hint = f"; did you mean {' or '.join(repr(m) for m in self.matches)}?" if self.matches else ";"
        super().__init__(f"no {kind} {value!r}{scope}{hint} See {where} for them all")


class AmbiguousNameError(InputFormatError):
    """A title prefix given for an id names several courses or lectures; ``matches`` lists them (title and id).

    Example:
        >>> e = AmbiguousNameError(kind="lecture", value="intro", matches=["Intro (6ba7...)", "Intro II (0f3c...)"])
        >>> str(e)
        "'intro' names 2 lectures: Intro (6ba7...), Intro II (0f3c...); give more of the title, or the id"
    """

    def __init__(self, *, kind: str, value: str, matches: list[str]) -> None:
        self.kind = kind
        self.value = value
        self.matches = matches
        shown = ", ".join(matches[:10]) + (f" and {len(matches) - 10} more" if len(matches) > 10 else "")
        super().__init__(f"{value!r} names {len(matches)} {kind}s: {shown}; give more of the title, or the id")
