"""The event contract (spec section 1): event types, ids, and one validated event.

This module holds the rules for a single event in plain Python; ``validate``
applies the same rules to whole frames. Both read the rule tables defined here
(:data:`METADATA_RULES`, :data:`EVENT_TYPE_SPELLINGS`, :data:`REASONS`).

Example:
    >>> from datetime import datetime, timezone
    >>> e = Event(
    ...     event_type="PlaybackStarted",
    ...     recording_id="6ba7b811-9dad-11d1-80b4-00c04fd430c8",
    ...     user_id="6ba7b812-9dad-11d1-80b4-00c04fd430c8",
    ...     session_id="s1",
    ...     event_timestamp=datetime(2026, 9, 1, 10, tzinfo=timezone.utc),
    ...     metadata={"position": 0},
    ... )
    >>> e.event_type
    <EventType.PLAYBACK_STARTED: 'playback_started'>
    >>> Event.from_json(e.to_json()) == e
    True
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final, Literal, NamedTuple, get_args

import polars as pl
import polars_hash

from vtp_lab.errors import EventValidationError

__all__ = [
    "CLOSES",
    "CLOSES_AT_POSITION",
    "DEFAULT_MAX_CLOCK_SKEW",
    "ENDS",
    "EVENT_TYPE_SPELLINGS",
    "FIELD_ALIASES",
    "JSONB_RULE",
    "MAX_INTEGER",
    "MAX_OFFSET_HOURS",
    "METADATA_RULES",
    "NAMESPACE",
    "NIL_UUID",
    "NO_SESSION",
    "OPENS",
    "REASONS",
    "SESSION_EVENT_ORDER",
    "SESSION_RULE",
    "STOPS",
    "TIMESTAMP_RULE",
    "CheckedFields",
    "Event",
    "EventType",
    "MetadataRule",
    "Reason",
    "canonical_metadata",
    "check_fields",
    "course_statistics_id",
    "derive_event_id",
    "derive_event_ids",
    "engagement_metrics_id",
    "events_from_json",
    "events_to_json",
    "format_timestamp",
    "jsonb_holds",
    "jsonb_text",
    "lecture_statistics_id",
    "parse_event_type",
    "parse_timestamp",
    "parse_uuid",
    "playback_session_id",
    "uuid5_series",
]

NAMESPACE: Final = uuid.UUID("b4605e70-791a-504e-bb4d-89a2bcb2822f")
"""The namespace of every derived id: ``uuid5(NAMESPACE_URL, "vtp-lab:analytics")``."""

NIL_UUID: Final = "00000000-0000-0000-0000-000000000000"

NO_SESSION: Final = "no-session"
"""The session id of an event whose source gave none: its session is cut by an inactivity gap when derived."""

DEFAULT_MAX_CLOCK_SKEW: Final = timedelta(minutes=5)
"""How far in the future an event may be stamped before it is ``future_timestamp``."""


class EventType(StrEnum):
    """The 11 event types, in their canonical snake_case spelling.

    Example:
        >>> EventType("buffer_start") is EventType.BUFFER_START
        True
    """

    RECORDING_STARTED = "recording_started"
    PLAYBACK_STARTED = "playback_started"
    PLAYBACK_PAUSED = "playback_paused"
    PLAYBACK_RESUMED = "playback_resumed"
    QUALITY_CHANGED = "quality_changed"
    BUFFER_START = "buffer_start"
    BUFFER_END = "buffer_end"
    PLAYBACK_COMPLETED = "playback_completed"
    ENGAGEMENT_ACTION = "engagement_action"
    ERROR_OCCURRED = "error_occurred"
    SESSION_ENDED = "session_ended"


def _compact(spelling: str) -> str:
    """Lower case without separators and without the Go constant's ``Event`` prefix."""
    s = re.sub(r"[\s_\-]", "", spelling).lower()
    return s.removeprefix("event")


EVENT_TYPE_SPELLINGS: Final[dict[str, EventType]] = {_compact(t.value): t for t in EventType}
"""Every accepted spelling, compacted (see :func:`parse_event_type`), to its event type."""

SESSION_EVENT_ORDER: Final[tuple[EventType, ...]] = (
    EventType.PLAYBACK_STARTED,
    EventType.PLAYBACK_RESUMED,
    EventType.BUFFER_END,
    EventType.QUALITY_CHANGED,
    EventType.ENGAGEMENT_ACTION,
    EventType.BUFFER_START,
    EventType.PLAYBACK_PAUSED,
    EventType.ERROR_OCCURRED,
    EventType.PLAYBACK_COMPLETED,
    EventType.SESSION_ENDED,
)
"""The order of a session's events at equal timestamps (spec section 3)."""

OPENS: Final = (EventType.PLAYBACK_STARTED.value, EventType.PLAYBACK_RESUMED.value)
"""Events that open a playing segment at their position (spec section 3), as the stored names."""

STOPS: Final = (EventType.PLAYBACK_PAUSED.value, EventType.PLAYBACK_COMPLETED.value, EventType.SESSION_ENDED.value)
"""Events that close the segment at their position and forget a resume after buffering."""

ENDS: Final = (EventType.PLAYBACK_COMPLETED.value, EventType.SESSION_ENDED.value)
"""Events that end a session (as a fatal error does): its ``ended_at``."""

CLOSES_AT_POSITION: Final = (EventType.PLAYBACK_RESUMED.value, EventType.BUFFER_START.value, *STOPS)
"""Events whose ``position`` is where the content stands when they close a segment."""

CLOSES: Final = (*OPENS, EventType.BUFFER_START.value, *STOPS, EventType.QUALITY_CHANGED.value)
"""Events that close a playing segment (seeks, speed changes and fatal errors too)."""

Reason = Literal[
    "malformed",
    "missing_field",
    "unknown_event_type",
    "invalid_uuid",
    "nil_uuid",
    "empty_session_id",
    "invalid_timestamp",
    "future_timestamp",
    "invalid_metadata",
    "conflicting_duplicate",
]
"""A rejection reason code."""

REASONS: Final[tuple[Reason, ...]] = get_args(Reason)
"""The fixed set of reason codes, in priority order: a row that breaks several rules
is rejected with the first."""

FIELD_ALIASES: Final[dict[str, tuple[str, ...]]] = {
    "id": ("id", "ID"),
    "event_type": ("event_type", "EventType"),
    "recording_id": ("recording_id", "RecordingID"),
    "user_id": ("user_id", "UserID"),
    "session_id": ("session_id", "SessionID"),
    "event_timestamp": ("event_timestamp", "event_time", "timestamp", "EventTime"),
    "metadata": ("metadata", "Metadata"),
}
"""Accepted input keys for each canonical field, first match wins."""

MetadataKind = Literal["nonneg_number", "positive_number", "nonneg_integer", "seconds", "boolean", "uuid"]

MAX_INTEGER: Final = 2_147_483_647
"""PostgreSQL INTEGER's largest value: the bound of bitrates, durations and every integer column of the mirror."""

MAX_OFFSET_HOURS: Final = 15
"""The largest UTC offset a timestamp may carry is +-15:59 (PostgreSQL's limit)."""


@dataclass(frozen=True, kw_only=True)
class MetadataRule:
    """The rule for a known metadata key.

    Example:
        >>> METADATA_RULES["playback_rate"].text
        'a finite number > 0'
    """

    kind: MetadataKind
    text: str


_RULE_TEXT: Final[dict[MetadataKind, str]] = {
    "nonneg_number": "a finite number >= 0",
    "positive_number": "a finite number > 0",
    "nonneg_integer": f"an integer from 0 to {MAX_INTEGER}",
    "seconds": f"a finite number from 0 to {MAX_INTEGER}",
    "boolean": "a boolean",
    "uuid": "a UUID",
}

_RULE_KINDS: Final[dict[str, MetadataKind]] = {
    "position": "nonneg_number",
    "duration": "seconds",
    "from_position": "nonneg_number",
    "to_position": "nonneg_number",
    "playback_rate": "positive_number",
    "old_bitrate": "nonneg_integer",
    "new_bitrate": "nonneg_integer",
    "bitrate": "nonneg_integer",
    "fatal": "boolean",
    "course_id": "uuid",
}

METADATA_RULES: Final[dict[str, MetadataRule]] = {
    key: MetadataRule(kind=kind, text=_RULE_TEXT[kind]) for key, kind in _RULE_KINDS.items()
}
"""The metadata keys whose values are checked; every other key is kept as it is."""

_HEX32: Final = re.compile(r"^[0-9a-f]{32}$")


def parse_uuid(value: object) -> str | None:
    """The canonical lowercase form of a UUID string, or None if it is not one.

    Accepts any letter case, with or without dashes, braces or ``urn:uuid:``.

    Example:
        >>> parse_uuid("{6BA7B811-9DAD-11D1-80B4-00C04FD430C8}")
        '6ba7b811-9dad-11d1-80b4-00c04fd430c8'
        >>> parse_uuid("nope") is None
        True
    """
    if isinstance(value, uuid.UUID):
        return str(value)
    if not isinstance(value, str):
        return None
    h = value.strip().lower().removeprefix("urn:uuid:").strip("{}").replace("-", "")
    if not _HEX32.match(h):
        return None
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def parse_event_type(value: object) -> EventType | None:
    """The event type for any accepted spelling, or None.

    Example:
        >>> parse_event_type("EventBufferStart"), parse_event_type("BUFFER_START")
        (<EventType.BUFFER_START: 'buffer_start'>, <EventType.BUFFER_START: 'buffer_start'>)
    """
    if isinstance(value, EventType):
        return value
    if not isinstance(value, str):
        return None
    return EVENT_TYPE_SPELLINGS.get(_compact(value))


def _epoch_to_datetime(number: float) -> datetime:
    if abs(number) < 1e11:
        micros = round(number * 1_000_000)
    elif abs(number) < 1e14:
        micros = round(number * 1_000)
    else:
        micros = round(number)
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)


_PG_OFFSET = re.compile(r"([+-]\d\d)$")


def parse_timestamp(value: object) -> datetime | None:
    """An aware UTC datetime at microsecond precision, or None if not parseable.

    Accepts ISO 8601 (``Z``, an offset, or naive = UTC), PostgreSQL text
    (``2026-09-01 10:00:00.123+00``), a datetime, or an epoch number (seconds below
    1e11, milliseconds below 1e14, else microseconds); in the years 1 to 9999 UTC, with
    an offset within +-15:59 (what PostgreSQL, DuckDB and Python all hold).

    Example:
        >>> parse_timestamp("2026-09-01 10:00:00.123+00").isoformat()
        '2026-09-01T10:00:00.123000+00:00'
        >>> parse_timestamp(1788256800).isoformat()
        '2026-09-01T10:00:00+00:00'
    """
    if type(value) is datetime and value.tzinfo is UTC:
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        return _in_utc(value)
    if isinstance(value, int | float):
        return _from_epoch(value)
    if isinstance(value, str):
        return _from_text(value)
    return None


def _from_epoch(value: float) -> datetime | None:
    """An epoch number (see :func:`parse_timestamp`) as UTC, None where it is not finite or out of range."""
    if not math.isfinite(value):
        return None
    try:
        return _epoch_to_datetime(value)
    except OverflowError:
        return None


def _from_text(value: str) -> datetime | None:
    """ISO 8601, PostgreSQL text or an epoch number in text, as UTC; None where it is none of them."""
    text = value.strip()
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        return _from_epoch(float(text))
    text = _PG_OFFSET.sub(r"\1:00", text.replace("Z", "+00:00").replace("z", "+00:00"))
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        return _in_utc(datetime.fromisoformat(text))
    except ValueError:
        return None


def _in_utc(dt: datetime) -> datetime | None:
    """A datetime in UTC (naive means UTC); None where its offset or its UTC time is out of range."""
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    offset = dt.utcoffset()
    if offset is not None and abs(offset) >= timedelta(hours=MAX_OFFSET_HOURS + 1):
        return None
    try:
        return dt.astimezone(UTC)
    except OverflowError:  # the UTC time falls outside the years 1 to 9999
        return None


def format_timestamp(ts: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ``, the form used in derived ids and JSON (four-digit years, as frames write).

    Example:
        >>> format_timestamp(datetime(2026, 9, 1, 10, tzinfo=UTC))
        '2026-09-01T10:00:00.000000Z'
        >>> format_timestamp(datetime(5, 1, 2, tzinfo=UTC))
        '0005-01-02T00:00:00.000000Z'
    """
    utc = ts.astimezone(UTC)
    return f"{utc.year:04d}-{utc:%m-%dT%H:%M:%S.%f}Z"  # strftime's %Y drops the zeros of years before 1000


_CANONICAL_JSON: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def _c_encoder() -> Callable[[object, int], Sequence[str]] | None:
    """The C encoder of :data:`_CANONICAL_JSON`, built once (None where CPython's ``_json`` is missing).

    ``JSONEncoder.encode`` builds this same encoder on every call, which is half the
    cost of encoding a small object; :meth:`Collector.record` encodes one per event.
    """
    try:
        from _json import make_encoder  # type: ignore[import-not-found]
    except ImportError:
        return None
    enc = _CANONICAL_JSON
    return make_encoder(  # type: ignore[no-any-return]
        None,
        enc.default,
        json.encoder.encode_basestring_ascii,
        None,
        enc.key_separator,
        enc.item_separator,
        enc.sort_keys,
        enc.skipkeys,
        enc.allow_nan,
    )


_ENCODE_DICT: Final = _c_encoder()


def canonical_metadata(metadata: Mapping[str, Any] | None) -> str:
    """Metadata as JSON with sorted keys and no spaces, or ``""`` when absent.

    Example:
        >>> canonical_metadata({"b": 1, "a": 2})
        '{"a":2,"b":1}'
    """
    if metadata is None:
        return ""
    if type(metadata) is dict and _ENCODE_DICT is not None:
        return "".join(_ENCODE_DICT(metadata, 0))
    return _CANONICAL_JSON.encode(metadata)


def _uuid5(name: str) -> str:
    return str(uuid.uuid5(NAMESPACE, name))


def uuid5_series(names: pl.Series) -> pl.Series:
    """``uuid5(NAMESPACE, name)`` for a whole column of names, vectorised (a polars plugin, ``polars-hash``).

    It hashes faster than DuckDB's ``sha1`` with the text written from its digests
    (docs/design-measurements.md).

    Example:
        >>> uuid5_series(pl.Series(["course|c"])).item() == course_statistics_id("c")
        True
    """
    frame = pl.DataFrame({"name": names.cast(pl.String)})
    return frame.select(polars_hash.col("name").uuidhash.uuid5(str(NAMESPACE))).to_series().rename(names.name)


def derive_event_id(
    *,
    event_type: str,
    recording_id: str,
    user_id: str,
    session_id: str,
    event_timestamp: datetime,
    metadata: Mapping[str, Any] | None,
) -> str:
    """The id of an event that came without one (spec section 1).

    Example:
        >>> derive_event_id(event_type="playback_started", recording_id="r", user_id="u",
        ...     session_id="s", event_timestamp=datetime(2026, 9, 1, tzinfo=UTC), metadata=None)
        'edcd3121-471d-505e-9fd7-70f4fcbfd200'
    """
    name = "|".join(
        (
            "event",
            str(event_type),
            recording_id,
            user_id,
            session_id,
            format_timestamp(event_timestamp),
            canonical_metadata(metadata),
        )
    )
    return _uuid5(name)


def playback_session_id(session_id: str, recording_id: str, user_id: str) -> str:
    """The id of a playback session.

    Example:
        >>> len(playback_session_id("s", "r", "u"))
        36
    """
    return _uuid5(f"session|{session_id}|{recording_id}|{user_id}")


def engagement_metrics_id(user_id: str, recording_id: str) -> str:
    """The id of an engagement_metrics row.

    Example:
        >>> engagement_metrics_id("u", "r") == engagement_metrics_id("u", "r")
        True
    """
    return _uuid5(f"engagement|{user_id}|{recording_id}")


def lecture_statistics_id(recording_id: str) -> str:
    """The id of a lecture_statistics row.

    Example:
        >>> lecture_statistics_id("r") != course_statistics_id("r")
        True
    """
    return _uuid5(f"lecture|{recording_id}")


def course_statistics_id(course_id: str) -> str:
    """The id of a course_statistics row.

    Example:
        >>> len(course_statistics_id("c"))
        36
    """
    return _uuid5(f"course|{course_id}")


_ID_FIELDS: Final = ("event_type", "recording_id", "user_id", "session_id", "event_timestamp")


def derive_event_ids(events: pl.DataFrame, *, canonical: pl.Series | None = None) -> pl.Series:
    """Derived ids (spec section 1) for a frame of canonical events, vectorised.

    The metadata of each row is ``canonical`` (its text as :func:`canonical_metadata`
    writes it, ``""`` when absent) if given; else it is the frame's ``metadata`` column,
    any JSON text, written canonically here by :func:`vtp_lab.canonical.canonical_json`.
    The names are joined and hashed by polars (:func:`uuid5_series`).

    Example:
        >>> frame = pl.DataFrame({"event_type": ["playback_started"], "recording_id": ["r"], "user_id": ["u"],
        ...     "session_id": ["s"], "event_timestamp": [datetime(2026, 9, 1, tzinfo=UTC)]})
        >>> derive_event_ids(frame, canonical=pl.Series([""])).item()
        'edcd3121-471d-505e-9fd7-70f4fcbfd200'
        >>> derive_event_ids(frame.with_columns(metadata=pl.lit('{"b": 1, "a": 2}'))).item()
        '07d9642c-b9ee-5ecd-b269-c6fcd5a49061'
    """
    from vtp_lab.canonical import canonical_json

    metadata = canonical if canonical is not None else canonical_json(events["metadata"])
    # the time formats as a naive UTC time: strftime then skips the time zone lookup per row
    utc = pl.col("event_timestamp").dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    names = events.select(
        pl.concat_str(
            pl.lit("event"),
            *_ID_FIELDS[:-1],
            utc.dt.strftime("%Y-%m-%dT%H:%M:%S.%6fZ"),
            pl.lit(metadata).fill_null(""),
            separator="|",
        )
    )
    return uuid5_series(names.to_series()).rename("id")


_NUMBER_RULES: Final[dict[MetadataKind, Callable[[float], bool]]] = {
    "nonneg_number": lambda v: v >= 0,
    "positive_number": lambda v: v > 0,
    "nonneg_integer": lambda v: 0 <= v <= MAX_INTEGER and float(v).is_integer(),
    "seconds": lambda v: 0 <= v <= MAX_INTEGER,
}
"""The numeric metadata kinds' rules, for a finite number (not a boolean)."""


def _metadata_value_ok(kind: MetadataKind, value: object) -> bool:
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "uuid":
        return parse_uuid(value) is not None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return False
    return _NUMBER_RULES[kind](value)


def _fail(reason: Reason, field_name: str | None, value: object, rule: str) -> EventValidationError:
    return EventValidationError(reason=reason, field=field_name, value=value, rule=rule)


def _check_metadata(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    meta = value
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            meta = json.loads(value)
        except json.JSONDecodeError:
            raise _fail("invalid_metadata", "metadata", value, "a JSON object") from None
    if type(meta) is not dict and not isinstance(meta, Mapping):
        raise _fail("invalid_metadata", "metadata", value, "a JSON object")
    for key in _RULE_KINDS.keys() & meta.keys():
        if meta[key] is not None and not _metadata_value_ok(_RULE_KINDS[key], meta[key]):
            raise _first_broken_key(meta)
    if not jsonb_holds(meta):
        raise _fail("invalid_metadata", "metadata", value, JSONB_RULE)
    return dict(meta)


JSONB_RULE: Final = "a JSON object PostgreSQL's JSONB holds: no NaN, Infinity or NUL character"


def jsonb_holds(value: object) -> bool:
    """Whether PostgreSQL's JSONB can hold ``value`` (parsed JSON): no NaN or Infinity, no NUL in any text.

    Example:
        >>> jsonb_holds({"a": [1, "x"]}), jsonb_holds({"a": float("nan")}), jsonb_holds({"k" + chr(0): 1})
        (True, False, False)
    """
    if isinstance(value, str):
        return chr(0) not in value
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, Mapping):
        return all(jsonb_holds(k) and jsonb_holds(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(jsonb_holds(v) for v in value)
    return True


class _NotJsonb(ValueError):
    """A JSON text holds NaN or Infinity, which PostgreSQL's JSONB does not."""


def _refuse_constant(name: str) -> float:
    raise _NotJsonb(name)


def jsonb_text(text: str) -> str | None:
    """The JSON text as PostgreSQL's JSONB reads it, or None where it cannot hold it (NaN, Infinity, NUL).

    A repeated key means its last value (as PostgreSQL and Python read it): such a text
    comes back rewritten compactly with each key once; any other text comes back as it is.
    A text that is not JSON is None too (a comma before a closing bracket, which DuckDB's
    reader takes).

    Example:
        >>> jsonb_text('{"position": 5, "position": -1}'), jsonb_text('{"a": NaN}'), jsonb_text('{"a": 1}')
        ('{"position":-1}', None, '{"a": 1}')
        >>> jsonb_text('{"a": 1,}') is None
        True
    """
    repeated = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal repeated
        value = dict(items)
        repeated = repeated or len(value) != len(items)
        return value

    try:
        value = json.loads(text, object_pairs_hook=pairs, parse_constant=_refuse_constant)
    except ValueError:  # _NotJsonb too
        return None
    except RecursionError:
        return text
    if not jsonb_holds(value):
        return None
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False) if repeated else text


def _first_broken_key(meta: Mapping[str, Any]) -> EventValidationError:
    """The error for the first key that breaks its rule, in rule order (as frames report it)."""
    key, rule = next(
        (k, r) for k, r in METADATA_RULES.items() if meta.get(k) is not None and not _metadata_value_ok(r.kind, meta[k])
    )
    return _fail("invalid_metadata", f"metadata.{key}", meta[key], rule.text)


def _require(name: str, value: object) -> object:
    if value is None or (isinstance(value, str) and not value.strip() and name != "session_id"):
        raise _fail("missing_field", name, value, "required")
    return value


_CANONICAL_UUID: Final = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_BY_VALUE: Final = {t.value: t for t in EventType}


def _uuid_field(name: str, value: object) -> str:
    if type(value) is str and _CANONICAL_UUID.match(value):
        return value
    canonical = parse_uuid(value)
    if canonical is None:
        raise _fail("invalid_uuid", name, value, "a UUID like 6ba7b811-9dad-11d1-80b4-00c04fd430c8")
    return canonical


class CheckedFields(NamedTuple):
    """The canonical values of one event's fields, as :func:`check_fields` returns them.

    Example:
        >>> check_fields(event_type="BufferEnd", recording_id=str(NAMESPACE), user_id=str(NAMESPACE),
        ...     session_id=" s ", event_timestamp=0).session_id
        's'
    """

    event_type: EventType
    recording_id: str
    user_id: str
    session_id: str
    event_timestamp: datetime
    metadata: dict[str, Any] | None
    event_id: str | None


SESSION_RULE: Final = "non-empty after trimming, at most 255 chars, no NUL character"
TIMESTAMP_RULE: Final = (
    f"ISO 8601, Postgres text or epoch, in the years 1 to 9999 UTC, with an offset within +-{MAX_OFFSET_HOURS}:59"
)


def check_fields(
    *,
    event_type: object,
    recording_id: object,
    user_id: object,
    session_id: object,
    event_timestamp: object,
    metadata: object = None,
    event_id: object = None,
    max_clock_skew: timedelta = DEFAULT_MAX_CLOCK_SKEW,
    now: datetime | None = None,
) -> CheckedFields:
    """Check one event's fields by the rules of spec section 1, in priority order.

    Returns the canonical values; raises :class:`EventValidationError` naming the
    reason, field, value and rule of the first rule broken. ``event_id`` stays None
    when not given (derive it with :func:`derive_event_id`).

    Example:
        >>> check_fields(event_type="x", recording_id=None, user_id=None, session_id="s",
        ...     event_timestamp=0)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        vtp_lab.errors.EventValidationError: missing_field: recording_id=None breaks the rule: required
    """
    kind = _BY_VALUE.get(event_type) if type(event_type) is str else None  # type: ignore[call-overload]
    if (
        kind is not None
        and type(recording_id) is str
        and type(user_id) is str
        and _CANONICAL_UUID.match(recording_id)
        and _CANONICAL_UUID.match(user_id)
    ):
        _require("session_id", session_id)
        _require("event_timestamp", event_timestamp)
        rec, user = recording_id, user_id
        eid = None if event_id is None or event_id == "" else _uuid_field("id", event_id)
    else:
        for name, value in (
            ("event_type", event_type),
            ("recording_id", recording_id),
            ("user_id", user_id),
            ("session_id", session_id),
            ("event_timestamp", event_timestamp),
        ):
            _require(name, value)
        kind = parse_event_type(event_type)
        if kind is None:
            raise _fail("unknown_event_type", "event_type", event_type, f"one of {', '.join(EventType)}")
        eid = None if event_id is None or event_id == "" else _uuid_field("id", event_id)
        rec = _uuid_field("recording_id", recording_id)
        user = _uuid_field("user_id", user_id)
    if rec == NIL_UUID:
        raise _fail("nil_uuid", "recording_id", rec, "not the nil UUID")
    if user == NIL_UUID:
        raise _fail("nil_uuid", "user_id", user, "not the nil UUID")
    session = session_id.strip() if isinstance(session_id, str) else ""
    if not session or len(session) > 255 or "\x00" in session:
        raise _fail("empty_session_id", "session_id", session_id, SESSION_RULE)
    ts = parse_timestamp(event_timestamp)
    if ts is None:
        raise _fail("invalid_timestamp", "event_timestamp", event_timestamp, TIMESTAMP_RULE)
    if ts > (now or datetime.now(UTC)) + max_clock_skew:
        raise _fail("future_timestamp", "event_timestamp", ts.isoformat(), f"not later than now + {max_clock_skew}")
    return CheckedFields(kind, rec, user, session, ts, _check_metadata(metadata), eid)


@dataclass(frozen=True, kw_only=True)
class Event:
    """One playback event, validated on construction (spec section 1).

    ``event_type`` takes any accepted spelling; ids take any UUID form and are stored
    canonical; ``event_timestamp`` takes a datetime, ISO or PostgreSQL text, or an
    epoch number; ``metadata`` takes a mapping or a string holding a JSON object.
    ``id`` is derived when not given. A bad value raises :class:`EventValidationError`.

    Example:
        >>> Event(event_type="pause", recording_id="r", user_id="u", session_id="s",
        ...       event_timestamp=0)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        vtp_lab.errors.EventValidationError: unknown_event_type: event_type='pause' breaks the rule: ...
    """

    event_type: EventType
    recording_id: str
    user_id: str
    session_id: str
    event_timestamp: datetime
    metadata: dict[str, Any] | None = None
    id: str = field(default="")
    max_clock_skew: timedelta = field(default=DEFAULT_MAX_CLOCK_SKEW, repr=False, compare=False)

    def __post_init__(self) -> None:
        fields = check_fields(
            event_type=self.event_type,
            recording_id=self.recording_id,
            user_id=self.user_id,
            session_id=self.session_id,
            event_timestamp=self.event_timestamp,
            metadata=self.metadata,
            event_id=self.id or None,
            max_clock_skew=self.max_clock_skew,
        )
        event_id = fields.event_id or derive_event_id(
            event_type=fields.event_type,
            recording_id=fields.recording_id,
            user_id=fields.user_id,
            session_id=fields.session_id,
            event_timestamp=fields.event_timestamp,
            metadata=fields.metadata,
        )
        for name in ("event_type", "recording_id", "user_id", "session_id", "event_timestamp", "metadata"):
            object.__setattr__(self, name, getattr(fields, name))
        object.__setattr__(self, "id", event_id)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with canonical keys.

        Example:
            >>> sorted(Event(event_type="session_ended", recording_id=str(NAMESPACE),
            ...     user_id=str(NAMESPACE), session_id="s", event_timestamp=0).to_dict())
            ['event_timestamp', 'event_type', 'id', 'metadata', 'recording_id', 'session_id', 'user_id']
        """
        return {
            "id": self.id,
            "event_type": self.event_type.value,
            "recording_id": self.recording_id,
            "user_id": self.user_id,
            "session_id": self.session_id,
            "event_timestamp": format_timestamp(self.event_timestamp),
            "metadata": self.metadata,
        }

    def to_json(self) -> str:
        """This event as a JSON object.

        Example:
            >>> '"event_type":"session_ended"' in Event(event_type="session_ended",
            ...     recording_id=str(NAMESPACE), user_id=str(NAMESPACE), session_id="s",
            ...     event_timestamp=0).to_json()
            True
        """
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, max_clock_skew: timedelta = DEFAULT_MAX_CLOCK_SKEW) -> Event:
        """An event from a mapping with canonical keys, aliases or the Go serializer's keys.

        Example:
            >>> Event.from_dict({"EventType": "EventSessionEnded", "RecordingID": str(NAMESPACE),
            ...     "UserID": str(NAMESPACE), "SessionID": "s", "EventTime": 0}).event_type
            <EventType.SESSION_ENDED: 'session_ended'>
        """
        if not isinstance(data, Mapping):
            raise _fail("malformed", None, data, "a JSON object")
        values: dict[str, Any] = {}
        for name, keys in FIELD_ALIASES.items():
            values[name] = next((data[k] for k in keys if data.get(k) is not None), None)
        return cls(
            id=values.pop("id") or "",
            max_clock_skew=max_clock_skew,
            **values,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Event:
        """Parse one event from JSON (the inverse of :meth:`to_json`).

        Example:
            >>> Event.from_json('{"event_type": "x"}')  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            vtp_lab.errors.EventValidationError: missing_field: recording_id=None ...
        """
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _fail("malformed", None, text, f"valid JSON ({exc.msg})") from None
        return cls.from_dict(data)


def events_to_json(events: Iterable[Event]) -> str:
    """A JSON array of events.

    Example:
        >>> events_to_json([])
        '[]'
    """
    return "[" + ",".join(e.to_json() for e in events) + "]"


def events_from_json(text: str | bytes) -> list[Event]:
    """Events from a JSON array (the inverse of :func:`events_to_json`).

    Example:
        >>> events_from_json("[]")
        []
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail("malformed", None, text, f"valid JSON ({exc.msg})") from None
    if not isinstance(data, list):
        raise _fail("malformed", None, text, "a JSON array of event objects")
    return [Event.from_dict(d) for d in data]
