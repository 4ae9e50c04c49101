"""The Collector: live events, checked one by one, buffered as columns, stored in batches.

``record()`` checks an event by the contract at once (a bad one raises
:class:`EventValidationError`, or is quarantined with ``on_invalid="quarantine"``),
appends it to in-memory columns, and hands a full batch to a background thread that
derives missing ids (vectorised), checks the batch against the ``analytics_events``
pandera model and passes it to the sink (the store). A batch is flushed when it
reaches ``batch_size`` events or ``flush_interval`` seconds after the last flush.

:meth:`submit` takes a whole document of events (a JSON array or NDJSON text, as a
player or the platform posts them) and returns a future that resolves, once its events
are stored, to a :class:`Receipt`: how many were stored, how many were duplicates, and
each rejected row with its reason. Documents submitted while the store is busy are
validated and stored together, in one pass and one transaction (group commit);
``linger`` seconds of waiting for more documents before a group starts make groups
larger when many clients post at once (each waits for its answer before the next post).

Memory is bounded: at most ``max_pending`` full batches wait for the sink; when the
store is slower, ``record()`` waits, and the batches that waited go to the sink together,
as one. Nothing is dropped: if the sink fails, the batch is kept, the error is raised
from the next call, and ``flush()`` tries it again.

Example:
    >>> got = []
    >>> with Collector(lambda acc, rej: got.append((acc.height, rej.height)), batch_size=2) as c:
    ...     for i in range(3):
    ...         c.record("playback_paused", "6ba7b811-9dad-11d1-80b4-00c04fd430c8",
    ...                  "6ba7b812-9dad-11d1-80b4-00c04fd430c8", f"s{i}", {"position": i})
    >>> sum(accepted for accepted, _ in got), len(got) <= 2  # full batches waiting together go as one
    (3, True)
"""

from __future__ import annotations

import inspect
import json
import queue
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import chain
from types import TracebackType
from typing import Any, Final, Literal

import polars as pl

from vtp_lab.errors import EventValidationError, InputFormatError, StoreError
from vtp_lab.events import (
    DEFAULT_MAX_CLOCK_SKEW,
    CheckedFields,
    Event,
    canonical_metadata,
    check_fields,
    derive_event_ids,
)
from vtp_lab.io import read_documents
from vtp_lab.tables import ANALYTICS_EVENTS, REJECTED_EVENTS
from vtp_lab.validation import validate

__all__ = ["Collector", "OnInvalid", "Receipt", "Sink"]

OnInvalid = Literal["raise", "quarantine"]
Sink = Callable[[pl.DataFrame, pl.DataFrame], object]
"""Receives (accepted events, rejected rows) for one batch; must store both or raise.

A sink that returns an :class:`~vtp_lab.store.AppendResult` with ``inserted_ids`` lets
receipts count events already stored as duplicates; otherwise only repeats within what
was stored together are. A sink that takes the keyword ``origins`` is handed, for
submitted documents, where each accepted row came from (see
:meth:`vtp_lab.validation.Validated.origins`), so that a row the store finds in conflict
is quarantined with its raw text, and its receipt says so.
"""

_YIELD_EVERY: Final = 128
"""record() lets go of the GIL every this many events (``time.sleep(0)``).

The background thread stores a batch in some forty short steps, each in polars or
DuckDB without the GIL and then back in Python. A thread calling record() in a loop
never waits, so it gives up the GIL only when Python forces it (every switch interval),
and each step would wait that long: storing a batch took longer than recording the
next one. Letting go every 128 events was the fastest of the settings measured
(docs/design-measurements.md).
"""

_STOP: Final = object()
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


@dataclass(frozen=True)
class Receipt:
    """What became of one submitted document: every row is stored, a duplicate, or rejected.

    ``rejected`` has one row per rejected row: ``row_number`` (its 1-based position in
    the document), ``reason`` and ``field``; the rows are in the quarantine under ``source``.

    Example:
        >>> r = Receipt(source="s", accepted=2, duplicates=1, rejected=pl.DataFrame({"row_number": [4]}))
        >>> r.rows
        4
    """

    source: str
    accepted: int
    duplicates: int
    rejected: pl.DataFrame

    @property
    def rows(self) -> int:
        """Rows in the document: accepted + duplicates + rejected."""
        return self.accepted + self.duplicates + self.rejected.height


_Columns = tuple[list[Any], ...]
"""The buffer: one list per ``analytics_events`` column, the time as epoch microseconds.

A list per column, not a tuple per event, so that a batch becomes a frame without a
transposition in Python (the background thread would hold the GIL for it).
"""


_Batch = tuple[_Columns, list[dict[str, Any]]]
"""A batch: the events' columns and the rejected rows."""


def _no_columns() -> _Columns:
    return tuple([] for _ in ANALYTICS_EVENTS.column_names)


def _joined(batches: list[_Batch]) -> _Batch:
    """Batches that waited for the store, as one: stored in one transaction, whole or not at all.

    When ``record()`` runs ahead of the store, the batches queued meanwhile go in one
    append, so the commit and the look-up of stored ids are paid once for all of them.
    """
    if len(batches) == 1:
        return batches[0]
    columns = tuple(list(chain.from_iterable(parts)) for parts in zip(*(b[0] for b in batches), strict=True))
    return columns, list(chain.from_iterable(b[1] for b in batches))


def _takes_origins(sink: Sink) -> bool:
    """Whether ``sink`` takes the keyword ``origins`` (where each accepted row came from, for its quarantine)."""
    try:
        return "origins" in inspect.signature(sink).parameters
    except (TypeError, ValueError):  # a callable Python cannot look into
        return False


@dataclass(frozen=True)
class _Submission:
    text: str
    ndjson: bool
    source: str
    future: Future[Receipt]


def _receipts(
    submissions: list[_Submission], rows: pl.DataFrame, accepted: pl.DataFrame, rejected: pl.DataFrame, stored: object
) -> dict[str, Receipt]:
    """Each submission's counts, from the rows that went in and the ids the sink stored."""
    conflicts = getattr(stored, "conflicts", None)
    keys = rows.select(pl.struct(source="_source", row_number="_row")).to_series()
    gone = rejected.select(pl.struct("source", "row_number")).to_series()
    sources = rows["_source"].filter(~keys.is_in(gone.implode()))
    inserted_ids = getattr(stored, "inserted_ids", None)
    first = accepted["id"].is_first_distinct()
    new = first if inserted_ids is None else first & accepted["id"].is_in(inserted_ids.implode())
    if conflicts is not None and conflicts.height:  # quarantined by the store: rejected, not duplicates
        kept = ~pl.int_range(accepted.height, dtype=pl.UInt32, eager=True).is_in(conflicts["position"].implode())
        sources, new = sources.filter(kept), new.filter(kept)
        rejected = pl.concat([rejected, conflicts.select(rejected.columns)])
    counts = pl.DataFrame({"source": sources, "new": new}).group_by("source").agg(pl.len(), pl.col("new").sum())
    by_source = {source: (int(n), int(fresh)) for source, n, fresh in counts.iter_rows()}
    columns = rejected.select("source", "row_number", "reason", "field").sort("row_number")
    rejected_by = {key[0]: part.drop("source") for key, part in columns.partition_by("source", as_dict=True).items()}
    empty = columns.drop("source").clear()
    receipts = {}
    for sub in submissions:
        n, fresh = by_source.get(sub.source, (0, 0))
        mine = rejected_by.get(sub.source, empty)
        receipts[sub.source] = Receipt(source=sub.source, accepted=fresh, duplicates=n - fresh, rejected=mine)
    return receipts


class Collector:
    """Buffer live events and flush them to a sink in batches (the seed's EventCollector).

    Thread-safe: any number of threads may call :meth:`record` and :meth:`add`.

    Example:
        >>> Collector(lambda a, r: None, on_invalid="ignore")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: on_invalid='ignore' is not one of 'raise', 'quarantine'
    """

    def __init__(
        self,
        sink: Sink,
        *,
        batch_size: int = 10_000,
        flush_interval: float = 5.0,
        max_pending: int = 4,
        on_invalid: OnInvalid = "raise",
        max_clock_skew: timedelta = DEFAULT_MAX_CLOCK_SKEW,
        linger: float = 0.0,
    ) -> None:
        if on_invalid not in ("raise", "quarantine"):
            raise ValueError(f"on_invalid={on_invalid!r} is not one of 'raise', 'quarantine'")
        if batch_size < 1 or flush_interval <= 0 or max_pending < 1:
            raise ValueError(
                f"batch_size={batch_size}, flush_interval={flush_interval} and max_pending={max_pending} "
                "must all be positive"
            )
        self.sink = sink
        self._takes_origins = _takes_origins(sink)
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.on_invalid = on_invalid
        self.max_clock_skew = max_clock_skew
        self.linger = linger
        self.recorded = 0
        self._lock = threading.Lock()
        self._columns = _no_columns()
        self._rejected: list[dict[str, Any]] = []
        self._pending: queue.Queue[Any] = queue.Queue(maxsize=max_pending)
        self._failed: list[_Batch] = []
        self._error: BaseException | None = None
        self._closed = False
        self._last_flush = time.monotonic()
        self._worker = threading.Thread(target=self._run, name="vtp-lab-collector", daemon=True)
        self._worker.start()

    def record(
        self,
        event_type: object,
        recording_id: object,
        user_id: object,
        session_id: object,
        metadata: Mapping[str, Any] | str | None = None,
        *,
        event_timestamp: object = None,
        event_id: object = None,
    ) -> None:
        """Record one event, stamped now unless ``event_timestamp`` is given.

        Example:
            >>> c = Collector(lambda a, r: None)
            >>> c.record("rewind", "r", "u", "s")  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            vtp_lab.errors.EventValidationError: unknown_event_type: event_type='rewind' ...
            >>> c.close()
        """
        self._raise_pending_error()
        now = datetime.now(UTC)
        try:
            fields = check_fields(
                event_type=event_type,
                recording_id=recording_id,
                user_id=user_id,
                session_id=session_id,
                event_timestamp=now if event_timestamp is None else event_timestamp,
                metadata=metadata,
                event_id=event_id,
                max_clock_skew=self.max_clock_skew,
                now=now,
            )
            self._append(fields.event_id, fields)
        except EventValidationError as exc:
            if self.on_invalid == "raise":
                raise
            raw = {
                "event_type": event_type,
                "recording_id": recording_id,
                "user_id": user_id,
                "session_id": session_id,
                "metadata": metadata,
                "event_timestamp": event_timestamp,
                "id": event_id,
            }
            self._append_rejected(raw, exc, now)

    def add(self, event: Event) -> None:
        """Record a :class:`vtp_lab.Event` (already checked).

        Example:
            >>> c = Collector(lambda a, r: None)
            >>> c.add(Event(event_type="buffer_end", recording_id="6ba7b811-9dad-11d1-80b4-00c04fd430c8",
            ...     user_id="6ba7b812-9dad-11d1-80b4-00c04fd430c8", session_id="s", event_timestamp=0))
            >>> c.close()
        """
        if not isinstance(event, Event):
            raise TypeError(f"add takes a vtp_lab.Event, not a {type(event).__name__}; for fields use record(...)")
        self._raise_pending_error()
        self._append(event.id, event)

    def submit(self, text: str | bytes, *, ndjson: bool = False, source: str | None = None) -> Future[Receipt]:
        """Validate and store a document of events; the future resolves to its :class:`Receipt` once stored.

        ``text`` is a JSON array of event objects (or one object), or NDJSON with
        ``ndjson=True``; bytes are read as UTF-8 (what is not UTF-8 becomes U+FFFD, as in
        a file), and a byte order mark at the start is dropped. Each rejected row goes to
        the quarantine under ``source`` (``"collector:<uuid>"`` unless given). A JSON
        document that does not parse is refused whole: the future raises
        :class:`~vtp_lab.errors.InputFormatError` and nothing of it is stored. If the store
        fails, the future raises and nothing of the document is stored.

        Example:
            >>> c = Collector(lambda a, r: None)
            >>> doc = '[{"event_type": "buffer_end", "recording_id": "6ba7b811-9dad-11d1-80b4-00c04fd430c8", '
            >>> doc += '"user_id": "6ba7b812-9dad-11d1-80b4-00c04fd430c8", "session_id": "s", '
            >>> doc += '"event_timestamp": "2026-09-01T10:00:00Z"}, {"event_type": "rewind"}]'
            >>> r = c.submit(doc).result()
            >>> r.accepted, r.duplicates, r.rejected.select("row_number", "reason").rows()
            (1, 0, [(2, 'missing_field')])
            >>> c.close()
        """
        self._raise_pending_error()
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        if not isinstance(text, str) or not isinstance(source, str | None):
            raise TypeError(
                f"submit takes a document as text or bytes and a source name as text, not {type(text).__name__} "
                f"and {type(source).__name__}; for Python objects pass json.dumps(events)"
            )
        text = text.removeprefix("\ufeff")  # a byte order mark is not text
        submission = _Submission(text, ndjson, source or f"collector:{uuid.uuid4()}", Future())
        with self._lock:
            self._check_open()
        self._pending.put(submission)
        return submission.future

    def _store_submissions(self, submissions: list[_Submission]) -> None:
        """Group commit: every waiting document parsed, validated and stored in one pass.

        Whatever fails here fails these documents' futures, never the worker thread.
        """
        try:
            docs = pl.DataFrame(
                {
                    "_doc": [s.text for s in submissions],
                    "_source": [s.source for s in submissions],
                    "_ndjson": [s.ndjson for s in submissions],
                },
                schema={"_doc": pl.String, "_source": pl.String, "_ndjson": pl.Boolean},
            )
            batch, unreadable = read_documents(docs)
            checked = validate(batch.rows, max_clock_skew=self.max_clock_skew)
            rejected = pl.concat([batch.malformed, checked.rejected])
            if self._takes_origins:
                stored = self.sink(checked.accepted, rejected, origins=checked.origins)  # type: ignore[call-arg]
            else:
                stored = self.sink(checked.accepted, rejected)
            receipts = _receipts(submissions, batch.rows, checked.accepted, rejected, stored)
        except BaseException as exc:
            for sub in submissions:
                sub.future.set_exception(StoreError(f"the events were not stored ({exc!r}); send them again"))
            return
        with self._lock:
            self.recorded += batch.rows_read
        bad = set(unreadable.to_list())
        for sub in submissions:
            if sub.source in bad:
                sub.future.set_exception(
                    InputFormatError("the document is not valid JSON (an array of events or one event object)")
                )
            else:
                sub.future.set_result(receipts[sub.source])

    def _append(self, event_id: str | None, fields: CheckedFields | Event) -> None:
        try:
            meta = None if fields.metadata is None else canonical_metadata(fields.metadata)
        except (TypeError, ValueError):  # a value JSON cannot hold, or a cycle
            raise EventValidationError(
                reason="invalid_metadata", field="metadata", value=fields.metadata, rule="a JSON object"
            ) from None
        micros = (fields.event_timestamp - _EPOCH) // _MICROSECOND
        full = None
        with self._lock:
            self._check_open()
            ids, types, recordings, users, sessions, times, metas = self._columns
            ids.append(event_id)
            types.append(fields.event_type.value)
            recordings.append(fields.recording_id)
            users.append(fields.user_id)
            sessions.append(fields.session_id)
            times.append(micros)
            metas.append(meta)
            self.recorded += 1
            n = len(ids)
            if n >= self.batch_size:
                full = self._take()
        if full is not None:
            self._pending.put(full)
        elif n % _YIELD_EVERY == 0:
            time.sleep(0)  # see _YIELD_EVERY

    def _check_open(self) -> None:
        """Refuse new events once closed (the lock is held by the caller)."""
        if self._closed:
            raise StoreError("this Collector is closed; make a new one with lab.collector()")

    def _append_rejected(self, raw: dict[str, Any], exc: EventValidationError, now: datetime) -> None:
        with self._lock:
            self.recorded += 1
            self._rejected.append(
                {
                    "raw": json.dumps(raw, default=str),
                    "source": "collector",
                    "row_number": self.recorded,
                    "reason": exc.reason,
                    "field": exc.field,
                    "rejected_at": now,
                }
            )

    def _buffered(self) -> bool:
        return bool(self._columns[0] or self._rejected)

    def _take(self) -> _Batch:
        """Swap out the buffer (the lock is held by the caller)."""
        batch = (self._columns, self._rejected)
        self._columns = _no_columns()
        self._rejected = []
        self._last_flush = time.monotonic()
        return batch

    def _frames(self, columns: _Columns, rejected: list[dict[str, Any]]) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The batch as frames; the buffer holds the timestamp as epoch microseconds (cheap to convert)."""
        schema = pl.Schema({**ANALYTICS_EVENTS.polars_schema, "event_timestamp": pl.Int64()})
        events = pl.DataFrame(dict(zip(schema, columns, strict=True)), schema=schema).with_columns(
            pl.from_epoch("event_timestamp", time_unit="us").dt.replace_time_zone("UTC")
        )
        missing = events["id"].is_null()
        if missing.any():
            derived = derive_event_ids(events.filter(missing), canonical=events.filter(missing)["metadata"])
            events = events.with_columns(events["id"].scatter(missing.arg_true(), derived))
        ANALYTICS_EVENTS.check_schema(events)
        return events, pl.DataFrame(rejected, schema=REJECTED_EVENTS.polars_schema)

    def _deliver(self, batch: _Batch) -> None:
        try:
            self.sink(*self._frames(*batch))
        except BaseException as exc:
            self._failed.append(batch)
            self._error = exc

    def _run(self) -> None:
        while True:
            timeout = max(0.0, self._last_flush + self.flush_interval - time.monotonic())
            try:
                item = self._pending.get(timeout=timeout)
            except queue.Empty:
                with self._lock:
                    item = self._take() if self._buffered() else None
                    self._last_flush = time.monotonic()
                if item is not None:
                    self._deliver_or_keep(item)
                continue
            if isinstance(item, _Submission):  # documents that arrive while waiting are stored together
                time.sleep(self.linger)
            items = [item, *self._waiting()]
            submissions = [i for i in items if isinstance(i, _Submission)]
            if submissions:
                self._store_submissions(submissions)
            batches = [i for i in items if i is not _STOP and not isinstance(i, _Submission)]
            if batches:
                self._deliver_or_keep(_joined(batches))
            for _ in items:
                self._pending.task_done()
            if any(i is _STOP for i in items):
                return

    def _waiting(self) -> list[Any]:
        items = []
        while True:
            try:
                items.append(self._pending.get_nowait())
            except queue.Empty:
                return items

    def _deliver_or_keep(self, batch: _Batch) -> None:
        if self._failed:
            self._failed.append(batch)
        else:
            self._deliver(batch)

    def _raise_pending_error(self) -> None:
        """Refuse new events while a batch waits to be stored again (memory stays bounded)."""
        if self._failed:
            raise StoreError(
                f"storing a batch failed ({self._error!r}); its events are kept: call flush() to try again"
            ) from self._error

    def flush(self) -> None:
        """Store everything recorded so far, retrying batches that failed before.

        Example:
            >>> c = Collector(lambda a, r: None)
            >>> c.flush(); c.close()
        """
        with self._lock:
            batch = self._take() if self._buffered() else None
        if batch is not None:
            self._pending.put(batch)
        self._pending.join()
        while self._failed:
            retry = self._failed.pop(0)
            try:
                self.sink(*self._frames(*retry))
            except BaseException as exc:
                self._failed.insert(0, retry)
                self._error = exc
                raise StoreError(f"storing a batch failed again ({exc!r}); its events are kept") from exc
        self._error = None

    def close(self) -> None:
        """Flush everything and stop the background thread.

        Example:
            >>> Collector(lambda a, r: None).close()
        """
        if self._closed:
            return
        self.flush()
        with self._lock:
            self._closed = True
        self._pending.put(_STOP)
        self._worker.join()

    def __enter__(self) -> Collector:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Collector(recorded={self.recorded}, buffered={len(self._columns[0])}, "
            f"batch_size={self.batch_size}, flush_interval={self.flush_interval})"
        )
