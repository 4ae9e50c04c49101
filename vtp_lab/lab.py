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

import dataclasses
import functools
import html
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, cast

import polars as pl

from vtp_lab import reports
from vtp_lab.collect import Collector, OnInvalid
from vtp_lab.errors import EventValidationError
from vtp_lab.events import DEFAULT_MAX_CLOCK_SKEW, EventType, parse_event_type, parse_timestamp, parse_uuid
from vtp_lab.export import export_csv, export_parquet, publish
from vtp_lab.io import Format
from vtp_lab.load import LoadReport, load_files
from vtp_lab.metrics import Realtime, realtime, realtime_window
from vtp_lab.postgres import DEFAULT_OVERLAP
from vtp_lab.recordings import Named, catalogue, course_titles, named_id, read_recordings
from vtp_lab.refresh import DEFAULT_MEMORY_BUDGET, DerivedCache, derive_in_threads, partitions_for
from vtp_lab.reports import Audit, Report, ReportKind
from vtp_lab.sessions import DEFAULT_SESSION_GAP, checked_gap
from vtp_lab.stats import (
    DEFAULT_ATTENDANCE_THRESHOLD,
    DEFAULT_SCORE,
    MATERIALISED,
    Derived,
    ViewingRequirement,
    viewing_met,
    viewing_rows,
)
from vtp_lab.store import AppendResult, DuckDBStore, Filter, Origins, Store, open_store
from vtp_lab.store.base import Params
from vtp_lab.tables import TABLES
from vtp_lab.validation import validate

if TYPE_CHECKING:
    from vtp_lab.widgets import Dashboard

__all__ = ["Lab"]


def _uuid_filter(column: str, value: str | None) -> list[Filter]:
    if value is None:
        return []
    canonical = parse_uuid(value)
    if canonical is None:
        raise EventValidationError(reason="invalid_uuid", field=column, value=value, rule="a UUID to filter on")
    return [Filter(column=column, op="==", value=canonical)]


def _bound(column: str, value: datetime | str | None) -> datetime | None:
    if value is None:
        return None
    ts = parse_timestamp(value)
    if ts is None:
        raise EventValidationError(reason="invalid_timestamp", field=column, value=value, rule="a datetime or ISO 8601")
    return ts


def _period(column: str, since: datetime | str | None, until: datetime | str | None) -> list[Filter]:
    """Filters keeping ``since <= column < until`` (None is open); ``since`` after ``until`` is an error."""
    start, end = _bound(column, since), _bound(column, until)
    if start is not None and end is not None and start > end:
        raise ValueError(f"since={since!r} is after until={until!r}; swap them")
    bounds = ((">=", start), ("<", end))
    return [Filter(column=column, op=op, value=ts) for op, ts in bounds if ts is not None]  # type: ignore[arg-type]


class Lab:
    """A store of playback events and everything derived from them.

    ``memory_budget`` (bytes) bounds what deriving the tables holds at once: a store
    larger than it is derived in parts of recordings (:mod:`vtp_lab.refresh`, docs/scale.md).
    ``session_gap`` is the inactivity that ends a session of events whose source gave
    none (:func:`vtp_lab.sessions.cut_sessions`, docs/sources.md).

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
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        session_gap: timedelta = DEFAULT_SESSION_GAP,
    ) -> None:
        self.path = str(path)
        self.max_clock_skew = max_clock_skew
        partitions_for(events=0, budget=memory_budget)  # a bad budget is an error now, not at the first refresh
        self.session_gap = checked_gap(session_gap)  # a bad gap is an error now, not at the first derive
        self.store: Store = open_store(path, read_only=read_only)
        self._cache = DerivedCache(store=self.store, memory_budget=memory_budget, session_gap=session_gap)

    def append(self, frame: pl.DataFrame, *, source: str = "frame") -> AppendResult:
        """Validate raw events and store them: accepted rows de-duplicated, rejected rows quarantined.

        Example:
            >>> Lab(":memory:").append(pl.DataFrame({"event_type": ["nope"]})).rejected
            1
        """
        checked = validate(frame, source=source, max_clock_skew=self.max_clock_skew)
        result = self.store.append(checked.accepted, checked.rejected, origins=checked.origins)
        self._cache.wrote(checked.accepted["recording_id"])
        return result

    def load(
        self,
        *paths: str | Path,
        format: Format | None = None,
        progress: bool | None = None,
        max_rejected: int | None = None,
        table: str = "analytics_events",
        since: datetime | None = None,
        overlap: timedelta = DEFAULT_OVERLAP,
    ) -> LoadReport:
        """Load dumps (files, globs, directories; NDJSON, JSON, CSV, Parquet; plain, .gz or .zst) or PostgreSQL tables.

        With ``max_rejected``, a load that rejects more rows stores nothing and raises
        :class:`~vtp_lab.errors.RejectionLimitError`. A ``postgresql://`` URI reads the
        server's events ``table``; a later load of it reads only what is new, from the
        last load's watermark less ``overlap`` (or from ``since``), see
        :func:`~vtp_lab.load.load_files`.

        Example:
            >>> report = Lab(":memory:").load("data/events.ndjson.gz", progress=False)
            >>> report.rows_read == report.accepted + report.rejected + report.duplicates
            True
        """
        report = load_files(
            self.store,
            paths,
            format=format,
            progress=progress,
            max_clock_skew=self.max_clock_skew,
            touched=self._cache.touched,
            max_rejected=max_rejected,
            table=table,
            since=since,
            overlap=overlap,
        )
        return report

    def load_recordings(self, path: str | Path | pl.DataFrame) -> pl.DataFrame:
        """Load the recordings catalogue (a CSV or Parquet file, or a frame), replacing the stored one; return it.

        Example:
            >>> Lab(":memory:").load_recordings("data/recordings.csv").height
            36
        """
        recordings = read_recordings(path)
        self.store.write_recordings(recordings)
        self._cache.wrote(None)  # durations and courses may change everywhere
        return recordings

    def export_parquet(
        self,
        directory: str | Path,
        tables: str | Sequence[str] | None = None,
        partition_by: str | Sequence[str] = ("event_date",),
    ) -> list[Path]:
        """Write the tables as hive-partitioned Parquet (see :func:`vtp_lab.export.export_parquet`).

        Example:
            >>> import tempfile
            >>> [p.name for p in Lab(":memory:").export_parquet(tempfile.mkdtemp(), tables=["recordings"])]
            ['recordings']
        """
        return export_parquet(
            self.store, directory, tables=tables, partition_by=partition_by, fresh=self._cache.fresh_tables()
        )

    def publish(self, url: str, tables: str | Sequence[str] | None = None, schema: str | None = None) -> dict[str, int]:
        """Upsert the derived tables into a PostgreSQL server's schema-005 tables (see :func:`vtp_lab.export.publish`).

        Example:
            >>> Lab(":memory:").publish("postgresql://nobody@127.0.0.1:1/none")  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            vtp_lab.errors.PostgresError: cannot connect to postgresql://nobody@127.0.0.1:1/none: ...
        """
        return publish(self.store, url, tables=tables, schema=schema, fresh=self._cache.fresh_tables())

    def export_csv(self, directory: str | Path, tables: str | Sequence[str] | None = None) -> list[Path]:
        """Write the tables as CSV for PostgreSQL's COPY (see :func:`vtp_lab.export.export_csv`).

        Example:
            >>> import tempfile
            >>> len(Lab(":memory:").export_csv(tempfile.mkdtemp()))
            6
        """
        return export_csv(self.store, directory, tables=tables, fresh=self._cache.fresh_tables())

    def sql(self, query: str, params: Params = None) -> pl.DataFrame:
        """One read-only SQL ``SELECT`` (DuckDB's dialect) over every table, as a polars frame.

        The tables, each under its name: ``analytics_events``, the five derived tables
        (fresh), ``recordings``, ``rejected_events``, ``loads`` and ``source_identities``.
        ``params`` fill ``?`` (a list) or ``$name`` (a dict) placeholders. Any statement
        but one ``SELECT`` is refused before it runs, on both stores.

        Example:
            >>> lab = Lab(":memory:")
            >>> lab.sql("SELECT count(*) AS n FROM playback_sessions JOIN recordings USING (recording_id)")["n"].item()
            0
            >>> lab.sql("SELECT count(*) AS n FROM analytics_events WHERE event_type = $t", {"t": "buffer_end"}).height
            1
        """
        return self.store.sql(query, params, frames=self._cache.fresh_tables())

    def loads(self) -> pl.DataFrame:
        """The load ledger: one row per file loaded, with its counts and any error.

        Example:
            >>> Lab(":memory:").loads().columns[:3]
            ['load_id', 'source', 'format']
        """
        return self.store.read("loads")

    def identities(self) -> pl.DataFrame:
        """Each UUID made from a source's identifier (edX, xAPI, Caliper users, courses, videos) and that identifier.

        Join it to any result to get back the source's own ids, e.g. to match students
        with grades: ``lab.engagement_metrics().join(lab.identities(), left_on="user_id", right_on="id")``.

        Example:
            >>> Lab(":memory:").identities().columns
            ['id', 'source', 'kind', 'identifier']
        """
        return self.store.read("source_identities")

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
            *_period("event_timestamp", since, until),
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

    def _filtered_events(self, *, recording_id: str | None, user_id: str | None, course_id: str | None) -> pl.DataFrame:
        """Events pushed down to the store by recording, user or course (a course is its recordings)."""
        filters = [*_uuid_filter("recording_id", recording_id), *_uuid_filter("user_id", user_id)]
        if course_id is not None:
            (course,) = (f.value for f in _uuid_filter("course_id", course_id))
            ids = self._catalogue().filter(pl.col("course_id") == course)["recording_id"].to_list()
            filters.append(Filter(column="recording_id", op="in", value=ids))
        return self.store.read("analytics_events", filters)

    def _catalogue(self) -> pl.DataFrame:
        """The recordings catalogue with the recordings only ``recording_started`` events describe."""
        started = [Filter(column="event_type", op="==", value="recording_started")]
        return catalogue(self.store.read("analytics_events", started), self.store.read("recordings"))

    def _ids(self, **given: str | None) -> dict[str, str | None]:
        """``course_id`` and ``recording_id`` given by id or unique title prefix, as ids (see :func:`named_id`).

        The catalogue is read at most once, and only if a title is given.
        """
        cat = functools.cache(self._catalogue)
        kinds: dict[str, Named] = {"course_id": "course", "recording_id": "lecture"}
        return {key: None if value is None else named_id(kinds[key], value, cat) for key, value in given.items()}

    def courses(self) -> pl.DataFrame:
        """Every course: its id, title (where the catalogue has ``course_title``), lectures and students.

        Example:
            >>> Lab(":memory:").courses().columns
            ['course_id', 'course_title', 'lectures', 'students']
        """
        statistics = cast(pl.DataFrame, self.course_statistics())
        students = statistics.select("course_id", pl.col("total_unique_students").alias("students"))
        cat = self._catalogue()
        lectures = cat.group_by("course_id").agg(pl.len().cast(pl.Int64).alias("lectures"))
        return (
            course_titles(cat)
            .join(lectures, on="course_id", maintain_order="left")
            .join(students, on="course_id", how="left", maintain_order="left")
        )

    def lectures(self, *, course_id: str | None = None) -> pl.DataFrame:
        """Every lecture (of one course: its id or title prefix): title, course, publication, viewers and views.

        Example:
            >>> Lab(":memory:").lectures().columns[:4]
            ['recording_id', 'title', 'course_id', 'course_title']
        """
        stats = cast(pl.DataFrame, self.lecture_statistics()).select("recording_id", "unique_viewers", "total_viewers")
        cat = self._catalogue()
        lectures = cat.join(stats, on="recording_id", how="left")
        course = None if course_id is None else named_id("course", course_id, lambda: cat)
        if course is not None:
            lectures = lectures.filter(pl.col("course_id") == course)
        columns = ["recording_id", "title", "course_id", "course_title", "published_at", "duration_seconds"]
        return lectures.select(*columns, "unique_viewers", "total_viewers").sort(
            "course_title", "published_at", "title", nulls_last=True
        )

    def derived(
        self, *, score: pl.Expr | None = None, attendance_threshold: float = DEFAULT_ATTENDANCE_THRESHOLD
    ) -> Derived:
        """Every derived table from every stored event (cached until the next write).

        Example:
            >>> Lab(":memory:").derived().playback_sessions.height
            0
        """
        return self._cache.derived(score=score, attendance_threshold=attendance_threshold)

    def refresh(self) -> dict[str, int]:
        """Materialise the derived tables into the store; return the rows written per table.

        Incremental after this Lab's own writes (the recordings they touched, and the
        others of their courses); otherwise everything, in parts of recordings when the
        store is larger than ``memory_budget`` (see :class:`~vtp_lab.refresh.DerivedCache`).

        Example:
            >>> Lab(":memory:").refresh()["playback_sessions"]
            0
        """
        return self._cache.refresh()

    def table(self, name: str) -> pl.DataFrame:
        """Any table by name, the derived ones as of every stored event.

        Example:
            >>> Lab(":memory:").table("course_statistics").height
            0
        """
        fresh = self._cache.fresh_tables() if name in MATERIALISED else {}
        return fresh[name] if name in fresh else self.store.read(name)

    def count(self, name: str) -> int:
        """Rows in a table by name, the derived ones as of every stored event.

        Example:
            >>> Lab(":memory:").count("analytics_events")
            0
        """
        fresh = self._cache.fresh_tables() if name in MATERIALISED else {}
        return fresh[name].height if name in fresh else self.store.count(name)

    def _query(
        self,
        name: str,
        *,
        lazy: bool,
        score: pl.Expr | None = None,
        attendance_threshold: float = DEFAULT_ATTENDANCE_THRESHOLD,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        **filters: str | None,
    ) -> pl.DataFrame | pl.LazyFrame:
        """A derived table: from the filtered events when filtered or customised, else materialised (fresh)."""
        custom = score is not None or attendance_threshold != DEFAULT_ATTENDANCE_THRESHOLD
        named = {k: v for k, v in filters.items() if k in ("recording_id", "course_id")}
        filters = {**filters, **self._ids(**named)}
        if custom or any(v is not None for v in filters.values()):
            events = self._filtered_events(
                recording_id=filters.get("recording_id"),
                user_id=filters.get("user_id"),
                course_id=filters.get("course_id"),
            )
            derived = derive_in_threads(
                events,
                recordings=self.store.read("recordings"),
                score=score if score is not None else DEFAULT_SCORE,
                attendance_threshold=attendance_threshold,
                session_gap=self.session_gap,
            )
            frame = getattr(derived, name)
            for column, value in filters.items():
                if value is not None and column in frame.columns:
                    frame = frame.filter(pl.col(column) == parse_uuid(value))
        else:
            frame = self.table(name) if name in TABLES else getattr(self.derived(), name)
        for f in _period("started_at", since, until):
            frame = frame.filter(f.expr())
        return frame.lazy() if lazy else frame

    def playback_sessions(
        self,
        *,
        recording_id: str | None = None,
        user_id: str | None = None,
        course_id: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        lazy: bool = False,
    ) -> pl.DataFrame | pl.LazyFrame:
        """Playback sessions (spec section 3); ``since``/``until`` bound when a session started.

        Example:
            >>> Lab(":memory:").playback_sessions(user_id="6ba7b812-9dad-11d1-80b4-00c04fd430c8").height
            0
        """
        return self._query(
            "playback_sessions",
            lazy=lazy,
            since=since,
            until=until,
            recording_id=recording_id,
            user_id=user_id,
            course_id=course_id,
        )

    def session_details(
        self,
        *,
        recording_id: str | None = None,
        user_id: str | None = None,
        course_id: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        lazy: bool = False,
    ) -> pl.DataFrame | pl.LazyFrame:
        """Sessions with their QoE detail columns (play time, rebuffering, seeks, bitrate, ...).

        Example:
            >>> "rebuffer_ratio" in Lab(":memory:").session_details().columns
            True
        """
        return self._query(
            "session_details",
            lazy=lazy,
            since=since,
            until=until,
            recording_id=recording_id,
            user_id=user_id,
            course_id=course_id,
        )

    def quality_events(
        self,
        *,
        recording_id: str | None = None,
        user_id: str | None = None,
        course_id: str | None = None,
        lazy: bool = False,
    ) -> pl.DataFrame | pl.LazyFrame:
        """One row per quality change (spec section 4).

        Example:
            >>> Lab(":memory:").quality_events().height
            0
        """
        return self._query(
            "quality_events",
            lazy=lazy,
            recording_id=recording_id,
            user_id=user_id,
            course_id=course_id,
        )

    def engagement_metrics(
        self,
        *,
        recording_id: str | None = None,
        user_id: str | None = None,
        course_id: str | None = None,
        score: pl.Expr | None = None,
        lazy: bool = False,
    ) -> pl.DataFrame | pl.LazyFrame:
        """Engagement per user and recording; ``score`` replaces the default engagement score.

        Example:
            >>> Lab(":memory:").engagement_metrics(score=pl.lit(1.0)).height
            0
        """
        return self._query(
            "engagement_metrics",
            lazy=lazy,
            score=score,
            recording_id=recording_id,
            user_id=user_id,
            course_id=course_id,
        )

    def lecture_statistics(
        self,
        *,
        recording_id: str | None = None,
        course_id: str | None = None,
        score: pl.Expr | None = None,
        lazy: bool = False,
    ) -> pl.DataFrame | pl.LazyFrame:
        """Statistics per lecture (spec section 4), following ``score`` when given.

        Example:
            >>> Lab(":memory:").lecture_statistics().height
            0
        """
        return self._query(
            "lecture_statistics",
            lazy=lazy,
            score=score,
            recording_id=recording_id,
            course_id=course_id,
        )

    def course_statistics(
        self,
        *,
        course_id: str | None = None,
        score: pl.Expr | None = None,
        attendance_threshold: float = DEFAULT_ATTENDANCE_THRESHOLD,
        lazy: bool = False,
    ) -> pl.DataFrame | pl.LazyFrame:
        """Statistics per course (spec section 4), following ``score`` and ``attendance_threshold``.

        Example:
            >>> Lab(":memory:").course_statistics().height
            0
        """
        return self._query(
            "course_statistics",
            lazy=lazy,
            score=score,
            attendance_threshold=attendance_threshold,
            course_id=course_id,
        )

    def report(
        self,
        kind: ReportKind,
        *,
        course_id: str | None = None,
        user_id: str | None = None,
        recording_id: str | None = None,
        requirement: ViewingRequirement | None = None,
    ) -> Report:
        """One of the six reports (see :mod:`vtp_lab.reports`); ``student`` needs ``user_id``.

        The compliance report, given a viewing ``requirement``, says which students met it
        for each lecture (:func:`~vtp_lab.stats.viewing_compliance`), beside the audit trail.

        Example:
            >>> Lab(":memory:").report("compliance").headline["loads"]
            0
        """
        reads = reports.entry(kind).reads
        data = {"derived": self.derived()} if reads == "derived" else {"audit": self._audit(requirement)}
        ids = self._ids(course_id=course_id, recording_id=recording_id)
        built = reports.build(
            kind, **data, course_id=ids["course_id"], user_id=user_id, recording_id=ids["recording_id"]
        )
        return dataclasses.replace(built, source=self.path)

    def _audit(self, requirement: ViewingRequirement | None = None) -> Audit:
        """What the compliance report reads: the ledger, the quarantine, every stored event's time (and viewing).

        The viewing is computed a part of the recordings at a time (:meth:`DerivedCache.over_parts`).
        """
        viewing = None
        if requirement is not None:
            cat, gap = self._catalogue(), self.session_gap
            rows = self._cache.over_parts(
                lambda events: viewing_rows(events, recordings=cat, requirement=requirement, session_gap=gap)
            )
            viewing = viewing_met(rows, cat, requirement)
        return Audit(
            loads=self.loads(),
            rejected_events=self.rejected_events(),
            event_timestamps=self.store.read("analytics_events", columns=["event_timestamp"])["event_timestamp"],
            viewing=viewing,
            requirement="" if requirement is None else requirement.describe(),
        )

    def dashboard(self) -> Dashboard:
        """The ipywidgets dashboard (pickers, tiles, charts, alerts, a score panel); display it in a notebook.

        Example:
            >>> Lab(":memory:").dashboard().course.description
            'course'
        """
        from vtp_lab.widgets import Dashboard

        return Dashboard(self)

    def alerts(self, *, below: float = 0.5, weeks: int = 2, qoe_drop: float = 10.0) -> pl.DataFrame:
        """Low-engagement students, struggle lectures and QoE regressions, with the rule and numbers of each.

        The rules and their parameters are :func:`vtp_lab.metrics.alerts`'.

        Example:
            >>> Lab(":memory:").alerts().height
            0
        """
        return self.derived().alerts(below=below, weeks=weeks, qoe_drop=qoe_drop)

    def realtime(self, *, active_minutes: float = 5.0, now: datetime | None = None) -> Realtime:
        """Active viewers per recording, events per second and the recent rebuffer ratio.

        See :func:`~vtp_lab.metrics.realtime`.

        Example:
            >>> Lab(":memory:").realtime().events_per_second
            0.0
        """
        now = now or datetime.now(UTC)
        recent = self.events(since=now - realtime_window(active_minutes))
        return realtime(recent, now=now, active_minutes=active_minutes)

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
        linger: float = 0.0,
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

        def sink(accepted: pl.DataFrame, rejected: pl.DataFrame, origins: Origins | None = None) -> AppendResult:
            result = self.store.append(accepted, rejected, return_ids=True, origins=origins, source="collector")
            self._cache.wrote(accepted["recording_id"])
            return result

        return Collector(
            sink,
            batch_size=batch_size,
            flush_interval=flush_interval,
            max_pending=max_pending,
            on_invalid=on_invalid,
            max_clock_skew=self.max_clock_skew,
            linger=linger,
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
        return kind, self.store.count("analytics_events"), self.store.count("rejected_events")

    def __repr__(self) -> str:
        kind, events, rejected = self._summary()
        return f"Lab({self.path!r}, {kind}: {events:,} events, {rejected:,} rejected)"

    def _repr_html_(self) -> str:
        kind, events, rejected = self._summary()
        return (
            f"<table><caption>vtp_lab Lab: <code>{html.escape(self.path)}</code> ({kind})</caption>"
            f"<tr><th>events</th><td>{events:,}</td></tr><tr><th>rejected</th><td>{rejected:,}</td></tr></table>"
        )
