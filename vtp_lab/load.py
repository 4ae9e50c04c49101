"""Loading dumps into a store, with a report and a ledger entry for every file.

Every row of every file ends accepted, rejected (quarantined with its reason),
counted as a duplicate, or (in a source format's file) skipped as not a playback event
and counted by its source type: ``rows_read == accepted + rejected + duplicates +
skipped_records``, per file and in total. Files stream in batches, so memory stays bounded by the batch size;
each batch is stored whole or not at all, and each file's outcome (or its error) goes
into the ``loads`` table.

Example:
    >>> import tempfile, pathlib
    >>> from vtp_lab.store import open_store
    >>> from vtp_lab.synth import semester
    >>> from vtp_lab.io import write_events
    >>> path = write_events(semester(courses=1, lectures_per_course=1, students=3).events,
    ...                     pathlib.Path(tempfile.mkdtemp()) / "d.ndjson")
    >>> store = open_store(":memory:")
    >>> first, again = load_files(store, [path], progress=False), load_files(store, [path], progress=False)
    >>> first.accepted == again.duplicates > 0, again.accepted
    (True, 0)
"""

from __future__ import annotations

import html
import json
import os
import queue
import sys
import textwrap
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import polars as pl

from vtp_lab.duck import ROW_GROUP_ROWS
from vtp_lab.errors import InputFormatError, PostgresError, RejectionLimitError
from vtp_lab.events import DEFAULT_MAX_CLOCK_SKEW
from vtp_lab.io import Format, RawBatch, checked_format, detect_format, expand_paths, read_events, skip_reason
from vtp_lab.postgres import DEFAULT_OVERLAP, PostgresSource, is_postgres, read_table, server_state
from vtp_lab.store import Filter, Origins, Store
from vtp_lab.tables import ANALYTICS_EVENTS
from vtp_lab.validation import validate, with_derived_ids

__all__ = ["FileReport", "LoadReport", "load_files", "read_ahead"]

_T = TypeVar("_T")


def _summed(counts: Iterator[dict[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for c in counts:
        total.update(c)
    return dict(total.most_common())


@dataclass(frozen=True, kw_only=True)
class FileReport:
    """What became of one file's rows.

    Example:
        >>> FileReport(source="a.csv", format="csv", rows_read=3, accepted=1, rejected=1, duplicates=1).balanced
        True
    """

    source: str
    format: str
    rows_read: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None
    skipped: str | None = None
    skipped_records: int = 0
    skipped_by_type: dict[str, int] = field(default_factory=dict)

    @property
    def balanced(self) -> bool:
        """Whether rows_read == accepted + rejected + duplicates + skipped_records."""
        return self.rows_read == self.accepted + self.rejected + self.duplicates + self.skipped_records


_HEAD = ("file", "format", "rows read", "accepted", "rejected", "duplicates", "skipped", "rejected by reason")

_WIDTH: Final = 80
"""The terminal width the text report fits."""


def _tail(source: str, width: int = 30) -> str:
    """A file's name as the text report shows it: its end, if it is long.

    Example:
        >>> _tail("/data/exports/2026/autumn/analytics_events_part_0001.ndjson.gz")
        '..._events_part_0001.ndjson.gz'
    """
    return source if len(source) <= width else "..." + source[-(width - 3) :]


@dataclass(frozen=True)
class LoadReport:
    """The outcome of a load: totals, rejections by reason, and a breakdown per file.

    Renders as an HTML table in notebooks and as text in terminals.

    Example:
        >>> r = LoadReport(files=(FileReport(source="a", format="csv", rows_read=2, accepted=2),))
        >>> r.rows_read, r.rows_read == r.accepted + r.rejected + r.duplicates + r.skipped_records
        (2, True)
    """

    files: tuple[FileReport, ...]
    seconds: float = 0.0

    @property
    def rows_read(self) -> int:
        """Rows read from every file."""
        return sum(f.rows_read for f in self.files)

    @property
    def accepted(self) -> int:
        """Rows stored as new events."""
        return sum(f.accepted for f in self.files)

    @property
    def rejected(self) -> int:
        """Rows quarantined, with a reason."""
        return sum(f.rejected for f in self.files)

    @property
    def duplicates(self) -> int:
        """Rows whose event id was already stored (or seen earlier in the load)."""
        return sum(f.duplicates for f in self.files)

    @property
    def skipped_records(self) -> int:
        """Records of a source format that are not playback events (most of an edX log), left out and counted."""
        return sum(f.skipped_records for f in self.files)

    @property
    def rejected_by_reason(self) -> dict[str, int]:
        """Rejections per reason code, most frequent first."""
        return _summed(f.rejected_by_reason for f in self.files)

    @property
    def skipped_by_type(self) -> dict[str, int]:
        """Skipped records per source event type, most frequent first."""
        return _summed(f.skipped_by_type for f in self.files)

    @property
    def errors(self) -> list[str]:
        """Files that could not be read to the end, with why."""
        return [f"{f.source}: {f.error}" for f in self.files if f.error]

    @property
    def skipped(self) -> list[str]:
        """Files that are not event dumps (a catalogue, notes), left unread, with why."""
        return [f"{f.source}: {f.skipped}" for f in self.files if f.skipped]

    def _rows(self) -> list[tuple[str, str, int, int, int, int, int, str]]:
        def reasons(d: dict[str, int]) -> str:
            return ", ".join(f"{k} {v:,}" for k, v in d.items()) or "-"

        rows = [
            (
                f.source,
                f.format,
                f.rows_read,
                f.accepted,
                f.rejected,
                f.duplicates,
                f.skipped_records,
                f"SKIPPED {f.skipped}"
                if f.skipped
                else reasons(f.rejected_by_reason) + (f"; ERROR {f.error}" if f.error else ""),
            )
            for f in self.files
        ]
        if len(self.files) > 1:
            rows.append(
                (
                    "total",
                    "",
                    self.rows_read,
                    self.accepted,
                    self.rejected,
                    self.duplicates,
                    self.skipped_records,
                    reasons(self.rejected_by_reason),
                )
            )
        return rows

    def __str__(self) -> str:
        """The report for a terminal of 80 columns: a table of counts, then each file's rejections by reason."""
        rows = self._rows()
        shown = [0, 1, 2, 3, 4, 5, *([6] if any(r[6] for r in rows) else [])]  # skipped: only where a source has any
        head = [h.removeprefix("rows ") for h in _HEAD]  # "read": the columns fit 80

        def text(value: object, i: int) -> str:
            return _tail(str(value)) if i == 0 else f"{value:,}" if isinstance(value, int) else str(value)

        cells = [[head[i] for i in shown]] + [[text(r[i], i) for i in shown] for r in rows]
        widths = [max(len(c[i]) for c in cells) for i in range(len(shown))]
        lines = [
            "  ".join(v.rjust(w) if i > 1 else v.ljust(w) for i, (v, w) in enumerate(zip(c, widths, strict=True)))
            for c in cells
        ]
        lines.insert(1, "-" * len(lines[0]))
        for r in rows:
            if r[7] != "-":
                lines += textwrap.wrap(f"rejected by reason, {_tail(r[0])}: {r[7]}", _WIDTH, subsequent_indent="  ")
        balanced = self.rows_read == self.accepted + self.rejected + self.duplicates + self.skipped_records
        skipped = f" + skipped {self.skipped_records:,}" if self.skipped_records else ""
        lines += textwrap.wrap(
            f"rows read {self.rows_read:,} {'=' if balanced else '!='} accepted {self.accepted:,} + rejected "
            f"{self.rejected:,} + duplicates {self.duplicates:,}{skipped} ({self.seconds:.1f} s)",
            _WIDTH,
        )
        if self.skipped_by_type:
            kinds = ", ".join(f"{k} {v:,}" for k, v in list(self.skipped_by_type.items())[:8])
            more = len(self.skipped_by_type) - 8
            line = f"skipped (not playback events): {kinds}" + (f" and {more} more types" if more > 0 else "")
            lines += textwrap.wrap(line, _WIDTH, subsequent_indent="  ")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{h}</th>" for h in _HEAD)
        body = "".join(
            "<tr>"
            + "".join(f"<td>{html.escape(f'{v:,}' if isinstance(v, int) else str(v))}</td>" for v in row)
            + "</tr>"
            for row in self._rows()
        )
        return f"<table><caption>vtp_lab load, {self.seconds:.1f} s</caption><tr>{head}</tr>{body}</table>"

    def __repr__(self) -> str:
        return (
            f"LoadReport(files={len(self.files)}, rows_read={self.rows_read}, accepted={self.accepted}, "
            f"rejected={self.rejected}, duplicates={self.duplicates}, skipped_records={self.skipped_records})"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the totals and the files.

        Example:
            >>> LoadReport(files=()).to_dict()["rows_read"]
            0
        """
        return {
            "rows_read": self.rows_read,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "duplicates": self.duplicates,
            "skipped_records": self.skipped_records,
            "rejected_by_reason": self.rejected_by_reason,
            "skipped_by_type": self.skipped_by_type,
            "seconds": self.seconds,
            "files": [f.__dict__ for f in self.files],
        }


_Entry = tuple[Literal["item", "end", "error"], Any]
"""What :func:`read_ahead`'s thread hands over: an item, the end, or the error that ended it."""


def _offer(items: queue.Queue[_Entry], stop: threading.Event, entry: _Entry) -> bool:
    """Put ``entry`` in the queue as soon as there is room; False if the reader stopped first."""
    while not stop.is_set():
        try:
            items.put(entry, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False


def _produce(produce: Callable[[], Iterator[Any]], items: queue.Queue[_Entry], stop: threading.Event) -> None:
    """The read-ahead thread: every item of ``produce()``, then the end, or the error (raised by the reader)."""
    try:
        for item in produce():
            if not _offer(items, stop, ("item", item)):
                return
        _offer(items, stop, ("end", None))
    except BaseException as exc:  # handed to the reader, raised there
        _offer(items, stop, ("error", exc))


def read_ahead(produce: Callable[[], Iterator[_T]], *, depth: int = 1) -> Iterator[_T]:
    """The items of ``produce()``, made in a background thread up to ``depth`` ahead of the reader.

    Reading and parsing the next batch of a file (polars and DuckDB, which release the
    GIL) then overlaps with validating and storing this one. An error in ``produce``
    is raised here, after the items made before it; stopping early stops the thread.

    Example:
        >>> list(read_ahead(lambda: iter(range(3))))
        [0, 1, 2]
    """
    items: queue.Queue[_Entry] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    thread = threading.Thread(target=_produce, args=(produce, items, stop), name="vtp-lab-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            kind, item = items.get()
            if kind == "error":
                raise item
            if kind == "end":
                return
            yield item
    finally:
        stop.set()
        thread.join()


def _progress_bar(total: int, progress: bool | None) -> Any:
    """A bar of the bytes loaded: in a notebook, or on a terminal (stderr), or wherever ``progress`` is True.

    A terminal that reports no width (a pseudo-terminal nobody sized) gets 80 columns:
    tqdm would draw a bar of width 0 there, which shows nothing.
    """
    from tqdm.auto import tqdm

    in_notebook = "ipykernel" in sys.modules
    on_terminal = not in_notebook and sys.stderr.isatty()
    disable = not progress if progress is not None else not (in_notebook or on_terminal)
    columns = 80 if on_terminal and not os.get_terminal_size(sys.stderr.fileno()).columns else None
    return tqdm(total=total, unit="B", unit_scale=True, desc="loading", disable=disable, leave=False, ncols=columns)


@dataclass(frozen=True)
class _Checked:
    """Validated rows of a file, ready to store: accepted, and rejected (malformed ones included)."""

    rows_read: int
    bytes_read: int
    accepted: pl.DataFrame
    rejected: pl.DataFrame
    origins: Origins | None = None
    skipped: dict[str, int] = field(default_factory=dict)
    identities: pl.DataFrame | None = None


def _grouped(batches: Iterator[RawBatch], rows: int) -> Iterator[RawBatch]:
    """Batches joined, then cut, so that each validation and append holds ``rows`` parsed rows (the last fewer).

    A reader's chunk of 32 MiB holds about 100,000 lines, fewer than a DuckDB row group
    (:data:`ROW_GROUP_ROWS`); larger appends and validations cost less per row
    (docs/design-measurements.md), and an append of whole row groups writes them once, where
    the rest of a row group goes through the write-ahead log too. Cut to ``rows``, the
    working memory of a validation is that of ``rows`` rows, whatever the reader's
    chunk. When reading fails, what was read before the fault is still handed on, then
    the error.
    """
    pending: list[RawBatch] = []
    try:
        for batch in batches:
            pending.append(batch)
            if sum(g.rows_read for g in pending) >= rows:
                *pieces, rest = _cut(_joined(pending), rows)
                yield from pieces
                pending = [rest] if rest.rows.height else []
    except Exception:
        if pending:
            yield _joined(pending)
        raise
    if pending:
        yield _joined(pending)


def _joined(group: list[RawBatch]) -> RawBatch:
    """The batches of ``group`` as one."""
    if len(group) == 1:
        return group[0]
    frames = [g.rows for g in group if g.rows.width]  # a reader's empty batch has no columns
    identities = [g.identities for g in group if g.identities is not None]
    return RawBatch(
        rows=pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame(),
        malformed=pl.concat([g.malformed for g in group]),
        bytes_read=group[-1].bytes_read,
        skipped=_summed(g.skipped for g in group),
        identities=pl.concat(identities).unique(maintain_order=True) if identities else None,
    )


def _cut(batch: RawBatch, rows: int) -> list[RawBatch]:
    """``batch`` as pieces of ``rows`` parsed rows (one piece if it holds fewer), then the rest of its rows.

    The first piece keeps the malformed rows, skipped counts and identities.

    Example:
        >>> from vtp_lab.tables import REJECTED_EVENTS
        >>> ev = RawBatch(rows=pl.DataFrame({"x": range(5)}), malformed=REJECTED_EVENTS.empty(), bytes_read=9)
        >>> [p.rows.height for p in _cut(ev, 2)]
        [2, 2, 1]
    """
    height = batch.rows.height
    full = height - height % rows if height >= rows else height

    def rows_from(start: int, length: int) -> RawBatch:
        return RawBatch(
            rows=batch.rows.slice(start, length), malformed=batch.malformed.clear(), bytes_read=batch.bytes_read
        )

    first = replace(batch, rows=batch.rows.slice(0, min(rows, full)))
    return [first, *(rows_from(start, rows) for start in range(rows, full, rows)), rows_from(full, height - full)]


def _checked(
    read: Callable[[], Iterator[RawBatch]], *, source: str, max_clock_skew: timedelta, rows: int
) -> Iterator[_Checked]:
    """Validate what ``read()`` makes, in groups of ``rows`` rows, while the next is read in another thread."""
    for batch in _grouped(read_ahead(read), rows):
        if not batch.rows.height:
            accepted, rejected, origins = ANALYTICS_EVENTS.empty(), batch.malformed, None
        else:
            valid = validate(batch.rows, source=source, max_clock_skew=max_clock_skew, derive_ids=False)
            accepted, rejected, origins = valid.accepted, pl.concat([batch.malformed, valid.rejected]), valid.origins
        yield _Checked(
            rows_read=batch.rows_read,
            bytes_read=batch.bytes_read,
            accepted=accepted,
            rejected=rejected,
            origins=origins,
            skipped=batch.skipped,
            identities=batch.identities,
        )


def _with_ids(part: _Checked) -> _Checked:
    return replace(part, accepted=with_derived_ids(part.accepted))


def _derived_ahead(parts: Iterator[_Checked]) -> Iterator[_Checked]:
    """Each part with the ids its events came without derived in a thread: the next part's while this one is stored.

    The derivation runs beside validation and storing, and holds no batch but the one it
    works on (a queue between threads would hold one more).
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="vtp-lab-ids") as pool:
        pending: Future[_Checked] | None = None
        while True:
            try:
                part = next(parts)
            except StopIteration:
                break
            except Exception:  # the reader's error comes after what was made before it, as read_ahead hands it
                if pending is not None:
                    yield pending.result()
                raise
            done = pending.result() if pending is not None else None
            pending = pool.submit(_with_ids, part)
            if done is not None:
                yield done
        if pending is not None:
            yield pending.result()


@dataclass(frozen=True, kw_only=True)
class _Stream:
    """A file or a table to load: how to read it, and how the report and the ledger name it."""

    source: str
    format: str
    read: Callable[[], Iterator[RawBatch]]
    size: int
    watermark: datetime | None = None


def _load_one(store: Store, path: Path, *, fmt: Format, batch_rows: int, **options: Any) -> FileReport:
    skipped = skip_reason(path, fmt)
    if skipped is not None:
        return FileReport(source=str(path), format=fmt, skipped=skipped)
    read = partial(read_events, path, format=fmt, batch_rows=batch_rows)
    stream = _Stream(source=str(path), format=fmt, read=read, size=path.stat().st_size)
    return _load_stream(store, stream, batch_rows=batch_rows, **options)


def _table_stream(store: Store, source: PostgresSource, *, overlap: timedelta) -> _Stream:
    """A server's events table to read: from ``since``, else from the last load's watermark less ``overlap``."""
    now, size = server_state(source)
    since = source.since
    if since is None:
        last = store.read("loads", [Filter(column="source", op="==", value=source.name)], columns=["watermark"])
        watermark = last["watermark"].max()
        since = watermark - overlap if isinstance(watermark, datetime) else None
    read = partial(read_table, replace(source, since=since))
    return _Stream(source=source.name, format="postgresql", read=read, size=size, watermark=now)


def _load_stream(
    store: Store,
    stream: _Stream,
    *,
    bar: Any,
    max_clock_skew: timedelta,
    batch_rows: int,
    touched: set[str] | None,
    budget: _Budget,
) -> FileReport:
    started = datetime.now(UTC)
    clock = time.perf_counter()
    counts: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    known: pl.Series | None = None  # the ids of source_identities, read at the first batch that has any
    error = None
    done = 0
    rows = min(batch_rows, ROW_GROUP_ROWS)
    check = partial(_checked, stream.read, source=stream.source, max_clock_skew=max_clock_skew, rows=rows)
    try:
        for part in _derived_ahead(read_ahead(check)):
            if part.identities is not None:
                known = _record_identities(store, part.identities, known)
            result = store.append(part.accepted, part.rejected, origins=part.origins)
            if touched is not None and result.inserted:
                touched.update(part.accepted["recording_id"].unique().to_list())
            counts.update(
                rows=part.rows_read, accepted=result.inserted, rejected=result.rejected, duplicates=result.duplicates
            )
            reasons.update(result.rejected_by_reason)
            kinds.update(part.skipped)
            bar.update(max(0, part.bytes_read - done))
            done = max(done, part.bytes_read)
            if budget.spend(result.rejected_by_reason):
                error = f"stopped: more than max_rejected={budget.limit:,} rows rejected"
                break
    except (InputFormatError, PostgresError, OSError, EOFError, ValueError, pl.exceptions.PolarsError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    bar.update(max(0, stream.size - done))  # it is done, whatever its reader could say of its position
    report = FileReport(
        source=stream.source,
        format=stream.format,
        rows_read=counts["rows"],
        accepted=counts["accepted"],
        rejected=counts["rejected"],
        duplicates=counts["duplicates"],
        rejected_by_reason=dict(reasons.most_common()),
        seconds=time.perf_counter() - clock,
        error=error,
        skipped_records=kinds.total(),
        skipped_by_type=dict(kinds.most_common()),
    )
    watermark = stream.watermark if error is None else None  # a load cut short does not move it
    store.append_rows("loads", _ledger_entry(report, size=stream.size, started=started, watermark=watermark))
    return report


def _ledger_entry(
    report: FileReport, *, size: int, started: datetime, watermark: datetime | None = None
) -> pl.DataFrame:
    """The load ledger's row for one file's (or table's) load, finished now."""
    return pl.DataFrame(
        {
            "load_id": [str(uuid.uuid4())],
            "source": [report.source],
            "format": [report.format],
            "bytes": [size],
            "rows_read": [report.rows_read],
            "accepted": [report.accepted],
            "rejected": [report.rejected],
            "duplicates": [report.duplicates],
            "rejected_by_reason": [json.dumps(report.rejected_by_reason)],
            "started_at": [started],
            "finished_at": [datetime.now(UTC)],
            "error": [report.error],
            "skipped_records": [report.skipped_records],
            "skipped_by_type": [json.dumps(report.skipped_by_type)],
            "watermark": pl.Series([watermark], dtype=pl.Datetime("us", "UTC")),
        }
    )


def _record_identities(store: Store, identities: pl.DataFrame, known: pl.Series | None) -> pl.Series:
    """Store the source identities not stored yet (before the events that use them, so none is ever missing).

    ``known`` is the ids stored so far in this load (None: read them); returns them with the new ones.
    """
    if known is None:
        known = store.read("source_identities", columns=["id"])["id"]
    fresh = identities.join(known.to_frame("id"), on="id", how="anti")
    if fresh.height:
        store.append_rows("source_identities", fresh)
    return pl.concat([known, fresh["id"]])


def load_files(
    store: Store,
    paths: Sequence[str | Path],
    *,
    format: Format | None = None,
    progress: bool | None = None,
    max_clock_skew: timedelta = DEFAULT_MAX_CLOCK_SKEW,
    batch_rows: int = 250_000,
    touched: set[str] | None = None,
    max_rejected: int | None = None,
    table: str = "analytics_events",
    since: datetime | None = None,
    overlap: timedelta = DEFAULT_OVERLAP,
) -> LoadReport:
    """Load files, globs or directories, and PostgreSQL tables, into ``store``; return the report.

    A file that cannot be read to the end keeps what was stored before the fault and
    says why in its report (``error``); the other files still load. ``touched``, when
    given, receives the ids of the recordings that got new events. With ``max_rejected``,
    the load is all or nothing: once more rows than that are rejected it stops, stores
    none of its rows (nor its ledger entries) and raises :class:`RejectionLimitError`.

    A ``postgresql://`` URI reads the server's ``table`` (see :mod:`vtp_lab.postgres`):
    the rows whose ``event_timestamp`` is at or after ``since`` if given, else at or after
    the last complete load's watermark (the server's clock when it began) less
    ``overlap``, else every row. Rows read again are duplicates, so late events (inserted
    after a load, with an event time up to ``overlap`` before it) are loaded and nothing
    is stored twice.

    Example:
        >>> from vtp_lab.store import open_store
        >>> load_files(open_store(":memory:"), ["/nowhere/*.ndjson"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        vtp_lab.errors.InputFormatError: no file matches /nowhere/*.ndjson; ...
    """
    if format is not None:
        checked_format(format)
    if max_rejected is not None and max_rejected < 0:
        raise InputFormatError(f"max_rejected={max_rejected} is negative; give 0 or more, or None for no limit")
    if overlap < timedelta(0):
        raise InputFormatError(f"overlap={overlap} is negative; give how far before the last load to read again")
    files = expand_paths(*(p for p in paths if not is_postgres(p)))
    tables = [
        _table_stream(store, PostgresSource(url=str(p), table=table, since=since), overlap=overlap)
        for p in paths
        if is_postgres(p)
    ]
    clock = time.perf_counter()
    bar = _progress_bar(sum(p.stat().st_size for p in files) + sum(t.size for t in tables), progress)
    budget = _Budget(max_rejected)
    options = {"bar": bar, "max_clock_skew": max_clock_skew, "batch_rows": batch_rows, "touched": touched}

    def load_all() -> tuple[FileReport, ...]:
        loads = [partial(_load_one, store, path, fmt=format or detect_format(path)) for path in files]
        loads += [partial(_load_stream, store, stream) for stream in tables]
        return tuple(load(**options, budget=budget) for load in loads if not budget.over)

    try:
        if max_rejected is None:
            reports = load_all()
        else:
            with store.all_or_nothing():
                reports = load_all()
                budget.check(LoadReport(files=reports, seconds=time.perf_counter() - clock))
    finally:
        bar.close()
    return LoadReport(files=reports, seconds=time.perf_counter() - clock)


@dataclass
class _Budget:
    """The rejections a load may make (None: no limit), and how many it has made."""

    limit: int | None
    rejected: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    over: bool = False

    def spend(self, rejected_by_reason: dict[str, int]) -> bool:
        """Count a batch's rejections; True once the limit is passed (the load then stops)."""
        self.rejected += sum(rejected_by_reason.values())
        self.by_reason.update(rejected_by_reason)
        self.over = self.limit is not None and self.rejected > self.limit
        return self.over

    def check(self, report: LoadReport) -> None:
        """Raise :class:`RejectionLimitError` (and so undo the load) if the limit was passed."""
        if self.over and self.limit is not None:
            raise RejectionLimitError(
                rejected=self.rejected, limit=self.limit, by_reason=dict(self.by_reason.most_common()), report=report
            )
