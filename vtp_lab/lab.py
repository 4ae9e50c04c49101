"""The Lab: the one object a notebook touches.

A thin facade: each method is a line or two that calls a function of its module.
The store is chosen by the path: ``*.duckdb`` is one embedded DuckDB file,
``":memory:"`` is DuckDB in memory, any other path is a Parquet lake directory.

Example:
    >>> import vtp_lab as vl
    >>> lab = vl.Lab(":memory:")
    >>> sem = vl.synth.semester(courses=1, lectures_per_course=2, students=3, bad_rows=0.05, seed=1)
    >>> result = lab.append(sem.events)
    >>> lab.events().height == result.inserted, lab.rejected_events().height == result.rejected
    (True, True)
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType

import polars as pl

from vtp_lab.collect import Collector, OnInvalid
from vtp_lab.errors import EventValidationError
from vtp_lab.events import DEFAULT_MAX_CLOCK_SKEW, EventType, parse_event_type, parse_timestamp, parse_uuid
from vtp_lab.export import export_csv, export_parquet
from vtp_lab.io import Format, read_recordings
from vtp_lab.load import LoadReport, load_files
from vtp_lab.store import AppendResult, DuckDBStore, Filter, ParquetLake, open_store
from vtp_lab.validate import validate

__all__ = ["Lab"]


def _uuid_filter(column: str, value: str | None) -> list[Filter]:
    if value is None:
        return []
    canonical = parse_uuid(value)
    if canonical is None:
        raise EventValidationError(reason="invalid_uuid", field=column, value=value, rule="a UUID to filter on")
    return [Filter(column=column, op="==", value=canonical)]


def _time_filter(column: str, op: str, value: datetime | str | None) -> list[Filter]:
    if value is None:
        return []
    ts = parse_timestamp(value)
    if ts is None:
        raise EventValidationError(reason="invalid_timestamp", field=column, value=value, rule="a datetime or ISO 8601")
    return [Filter(column=column, op=op, value=ts)]  # type: ignore[arg-type]


class Lab:
    """A store of playback events and everything derived from them.

    Example:
        >>> Lab(":memory:")
        Lab(':memory:', DuckDB: 0 events, 0 rejected)
    """

    def __init__(
        self,
        path: str | Path = "lab.duckdb",
        *,
        read_only: bool = False,
        max_clock_skew: timedelta = DEFAULT_MAX_CLOCK_SKEW,
    ) -> None:
        self.path = str(path)
        self.max_clock_skew = max_clock_skew
        self.store: DuckDBStore | ParquetLake = open_store(path, read_only=read_only)

    def append(self, frame: pl.DataFrame, *, source: str = "frame") -> AppendResult:
        """Validate raw events and store them: accepted rows de-duplicated, rejected rows quarantined.

        Example:
            >>> Lab(":memory:").append(pl.DataFrame({"event_type": ["nope"]})).rejected
            1
        """
        checked = validate(frame, source=source, max_clock_skew=self.max_clock_skew)
        return self.store.append(checked.accepted, checked.rejected)

    def load(self, *paths: str | Path, format: Format | None = None, progress: bool | None = None) -> LoadReport:
        """Load dumps (files, globs, directories; NDJSON, JSON, CSV, Parquet; plain, .gz or .zst).

        Example:
            >>> report = Lab(":memory:").load("data/events.ndjson.gz", progress=False)
            >>> report.rows_read == report.accepted + report.rejected + report.duplicates
            True
        """
        return load_files(self.store, paths, format=format, progress=progress, max_clock_skew=self.max_clock_skew)

    def load_recordings(self, path: str | Path) -> pl.DataFrame:
        """Load the recordings catalogue (CSV or Parquet), replacing the stored one; return it.

        Example:
            >>> Lab(":memory:").load_recordings("data/recordings.csv").height
            36
        """
        catalogue = read_recordings(path)
        self.store.write_recordings(catalogue)
        return catalogue

    def export_parquet(
        self,
        directory: str | Path,
        tables: Sequence[str] | None = None,
        partition_by: Sequence[str] = ("event_date",),
    ) -> list[Path]:
        """Write the tables as hive-partitioned Parquet (see :func:`vtp_lab.export.export_parquet`).

        Example:
            >>> import tempfile
            >>> [p.name for p in Lab(":memory:").export_parquet(tempfile.mkdtemp(), tables=["recordings"])]
            ['recordings']
        """
        return export_parquet(self.store, directory, tables=tables, partition_by=partition_by)

    def export_csv(self, directory: str | Path, tables: Sequence[str] | None = None) -> list[Path]:
        """Write the tables as CSV for PostgreSQL's COPY (see :func:`vtp_lab.export.export_csv`).

        Example:
            >>> import tempfile
            >>> len(Lab(":memory:").export_csv(tempfile.mkdtemp()))
            6
        """
        return export_csv(self.store, directory, tables=tables)

    def loads(self) -> pl.DataFrame:
        """The load ledger: one row per file loaded, with its counts and any error.

        Example:
            >>> Lab(":memory:").loads().columns[:3]
            ['load_id', 'source', 'format']
        """
        return self.store.read("loads")

    def events(
        self,
        *,
        recording_id: str | None = None,
        user_id: str | None = None,
        session_id: str | None = None,
        event_type: EventType | str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
    ) -> pl.DataFrame:
        """Stored events, filtered in the store; ``since`` is inclusive, ``until`` exclusive.

        Example:
            >>> Lab(":memory:").events(user_id="not-a-uuid")  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            vtp_lab.errors.EventValidationError: invalid_uuid: user_id='not-a-uuid' ...
        """
        filters = [
            *_uuid_filter("recording_id", recording_id),
            *_uuid_filter("user_id", user_id),
            *_time_filter("event_timestamp", ">=", since),
            *_time_filter("event_timestamp", "<", until),
        ]
        if session_id is not None:
            filters.append(Filter(column="session_id", op="==", value=session_id))
        if event_type is not None:
            kind = parse_event_type(event_type)
            if kind is None:
                raise EventValidationError(
                    reason="unknown_event_type",
                    field="event_type",
                    value=event_type,
                    rule=f"one of {', '.join(EventType)}",
                )
            filters.append(Filter(column="event_type", op="==", value=kind.value))
        return self.store.read("analytics_events", filters)

    def rejected_events(self) -> pl.DataFrame:
        """The quarantine: every rejected row with its raw text, source, row number, reason and field.

        Example:
            >>> Lab(":memory:").rejected_events().columns
            ['raw', 'source', 'row_number', 'reason', 'field', 'rejected_at']
        """
        return self.store.read("rejected_events")

    def recordings(self) -> pl.DataFrame:
        """The recordings catalogue.

        Example:
            >>> Lab(":memory:").recordings().height
            0
        """
        return self.store.read("recordings")

    def collector(
        self,
        batch_size: int = 10_000,
        flush_interval: float = 5.0,
        *,
        max_pending: int = 4,
        on_invalid: OnInvalid = "raise",
    ) -> Collector:
        """A :class:`~vtp_lab.collect.Collector` that stores into this Lab.

        Example:
            >>> lab = Lab(":memory:")
            >>> with lab.collector(batch_size=100) as c:
            ...     c.record("session_ended", "6ba7b811-9dad-11d1-80b4-00c04fd430c8",
            ...              "6ba7b812-9dad-11d1-80b4-00c04fd430c8", "s1")
            >>> lab.events().height
            1
        """
        return Collector(
            self.store.append,
            batch_size=batch_size,
            flush_interval=flush_interval,
            max_pending=max_pending,
            on_invalid=on_invalid,
            max_clock_skew=self.max_clock_skew,
        )

    def close(self) -> None:
        """Close the store, releasing its writer lock.

        Example:
            >>> Lab(":memory:").close()
        """
        self.store.close()

    def __enter__(self) -> Lab:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _summary(self) -> tuple[str, int, int]:
        kind = "DuckDB" if isinstance(self.store, DuckDBStore) else "Parquet lake"
        return kind, self.store.read("analytics_events").height, self.store.read("rejected_events").height

    def __repr__(self) -> str:
        kind, events, rejected = self._summary()
        return f"Lab({self.path!r}, {kind}: {events:,} events, {rejected:,} rejected)"

    def _repr_html_(self) -> str:
        kind, events, rejected = self._summary()
        return (
            f"<table><caption>vtp_lab Lab: <code>{html.escape(self.path)}</code> ({kind})</caption>"
            f"<tr><th>events</th><td>{events:,}</td></tr><tr><th>rejected</th><td>{rejected:,}</td></tr></table>"
        )
