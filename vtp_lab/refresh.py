"""The derived tables of a store: computed partition by partition in bounded memory, cached, refreshed incrementally.

A store whose events fit the memory budget (:data:`DEFAULT_MEMORY_BUDGET`, about
:data:`BYTES_PER_EVENT` a stored event while deriving) is derived in one frame, as
:func:`vtp_lab.stats.derive`. A larger one is cut by the hash of ``recording_id`` into
as many parts as the budget needs (:func:`partitions_for`): the store writes its events
once into a part folder each (:meth:`~vtp_lab.store.Store.spill`), stage 1
(:func:`~vtp_lab.stats.derive_partition`) runs on one part at a time and writes its
sessions and quality events to Parquet files, and stage 2
(:func:`~vtp_lab.stats.combine`) makes the rest from the small per-part rows. The files
are moved into the store; session details, engagement features and play time per
quality go beside the store (``<store>.derived/``), so :meth:`DerivedCache.derived`
reads them instead of deriving again. Peak memory follows the largest part, not the
store (docs/scale.md).

Example:
    >>> partitions_for(events=10_000_000, budget=2 * 1024**3)  # two at a time, each at most 1 GiB of events
    9
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Final, TypeVar

import polars as pl

from vtp_lab.errors import StoreError
from vtp_lab.events import EventType
from vtp_lab.recordings import catalogue
from vtp_lab.sessions import DEFAULT_SESSION_GAP
from vtp_lab.stats import (
    DEFAULT_ATTENDANCE_THRESHOLD,
    DEFAULT_SCORE,
    MATERIALISED,
    Derived,
    Partial,
    Scored,
    combine,
    course_rows,
    derive,
    derive_partition,
    score_rows,
)
from vtp_lab.store import Filter, Store, data_version, read_spilled
from vtp_lab.tables import ANALYTICS_EVENTS, PLAYBACK_SESSIONS, QUALITY_EVENTS

__all__ = [
    "BYTES_PER_EVENT",
    "DEFAULT_MEMORY_BUDGET",
    "IN_FLIGHT",
    "THREADED_FROM",
    "DerivedCache",
    "derive_in_threads",
    "partitions_for",
]

DEFAULT_MEMORY_BUDGET: Final = 2 * 1024**3
"""Bytes a refresh may hold at once: 2 GiB, so the whole Lab stays near 4 GB and fits a 16 GB laptop with room."""

BYTES_PER_EVENT: Final = 900
"""Peak memory of stage 1 per event of its part, measured (docs/scale.md): what sizes the parts."""

IN_FLIGHT: Final = 2
"""Parts derived at once, in threads: stage 1 keeps 1.6 of 2 cores busy, two parts 1.9 (docs/design-measurements.md)."""

THREADED_FROM: Final = 200_000
"""Events from which a derivation in one frame runs as :data:`IN_FLIGHT` parts of recordings at once, in threads."""

_SPILL_FLOOR: Final = 256 * 1024**2
"""The least memory the spill of the events is given, whatever the budget."""

_STREAMED: Final = ("playback_sessions", "quality_events", "engagement_metrics")
"""The tables a partitioned refresh writes part by part, never whole in memory."""

_KEPT: Final = ("session_details", "engagement_features", "quality_play")
"""What a partitioned refresh keeps beside the store for :meth:`DerivedCache.derived` (the store holds the rest)."""


def partitions_for(*, events: int, budget: int) -> int:
    """How many parts of recordings ``events`` stored events need for their derivation to fit ``budget`` bytes.

    One (the whole frame) when they fit; else enough for :data:`IN_FLIGHT` parts at once to fit.

    Example:
        >>> partitions_for(events=1_000, budget=DEFAULT_MEMORY_BUDGET)
        1
    """
    if budget <= 0:
        raise ValueError(f"memory_budget={budget} must be a positive number of bytes, e.g. 2 * 1024**3 for 2 GiB")
    need = events * BYTES_PER_EVENT
    return 1 if need <= budget else math.ceil(need * IN_FLIGHT / budget)


def _beside(store: Store) -> Path | None:
    """The folder beside a store for what a partitioned refresh keeps (None for an in-memory store)."""
    if store.path in ("", ":memory:"):
        return None
    path = Path(store.path)
    return path / "_derived" if path.is_dir() else path.with_name(path.name + ".derived")


@contextmanager
def _scratch(store: Store) -> Iterator[Path]:
    """A folder for one refresh's spilled parts and outputs, on the store's disk when it has one; removed after."""
    near = _beside(store)
    if near is not None:
        near.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=".vtp_lab-refresh-", dir=near.parent if near is not None else None))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def derive_in_threads(
    events: pl.DataFrame,
    *,
    recordings: pl.DataFrame,
    session_gap: timedelta = DEFAULT_SESSION_GAP,
    score: pl.Expr = DEFAULT_SCORE,
    attendance_threshold: float = DEFAULT_ATTENDANCE_THRESHOLD,
) -> Derived:
    """:func:`~vtp_lab.stats.derive` of events in memory, cut by recording into :data:`IN_FLIGHT` parts derived at once.

    Stage 1 of one frame keeps about 1.6 of two cores busy, two parts at once 1.9
    (docs/design-measurements.md); :func:`~vtp_lab.stats.combine` makes the same tables of the
    parts as of the whole frame (floats within 1e-9 relative, docs/scale.md). The parts
    replace ``events`` in memory: a caller that passes the only reference lets it go.
    Fewer than :data:`THREADED_FROM` events are derived in one frame.

    Example:
        >>> from vtp_lab.synth import semester
        >>> sem = semester(courses=1, lectures_per_course=2, students=3, seed=1)
        >>> derive_in_threads(sem.events, recordings=sem.recordings).playback_sessions.height > 0
        True
    """
    if events.height < THREADED_FROM:
        return derive(
            events,
            recordings=recordings,
            session_gap=session_gap,
            score=score,
            attendance_threshold=attendance_threshold,
        )
    part = (pl.col("recording_id").hash() % IN_FLIGHT).alias("_part")
    parts = events.with_columns(part).partition_by("_part", include_key=False)
    del events
    with ThreadPoolExecutor(max_workers=IN_FLIGHT) as pool:
        done = list(pool.map(lambda p: derive_partition(p, recordings=recordings, session_gap=session_gap), parts))
    return combine(done, score=score, attendance_threshold=attendance_threshold)


_Rows = TypeVar("_Rows", Partial, Scored)


@dataclass(frozen=True)
class _Part:
    """What stays in memory of one part's stage 1: its small rows, and what courses read of its scored rows."""

    small: Partial
    scored: Scored


def _stage_one(events_folder: Path, out: Path, index: int, recordings: pl.DataFrame, session_gap: timedelta) -> _Part:
    """Stage 1 of one spilled part, scored: its large tables to files in ``out/<table>/``, the rest back.

    The default score reads one row at a time, so each part is scored alone
    (:func:`~vtp_lab.stats.score_rows`).
    """
    events = read_spilled(events_folder)
    part = derive_partition(events, recordings=recordings, session_gap=session_gap)
    del events
    scored = score_rows(part.features, part.lectures, score=DEFAULT_SCORE)
    for name, rows in (
        ("playback_sessions", PLAYBACK_SESSIONS.conform(part.session_details)),
        ("quality_events", QUALITY_EVENTS.conform(part.quality_events)),
        ("engagement_metrics", scored.engagement_metrics),
        ("session_details", part.session_details),
        ("engagement_features", scored.engagement_features),
        ("quality_play", part.quality_play),
    ):
        (out / name).mkdir(exist_ok=True)
        rows.write_parquet(out / name / f"{index:05d}.parquet", compression="zstd", compression_level=1)
    narrow = replace(
        scored,
        features=scored.features.select(Scored.COURSE_COLUMNS),
        engagement_metrics=scored.engagement_metrics.clear(),
    )
    small = replace(part.without_rows(), features=part.features.clear())
    return _Part(small=_owned(small), scored=_owned(narrow))


def _own(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` copied into memory of its own.

    A string column of a few rows can share the buffer of the whole part's column it was
    taken from: rows kept of every part would then keep every part's events in memory
    (peak memory grew with the store, docs/design-measurements.md).
    """
    return pl.DataFrame(frame.to_arrow(compat_level=pl.CompatLevel.oldest()))  # strings: one buffer of their bytes


def _owned(rows: _Rows) -> _Rows:
    """``rows`` with every frame :func:`_own`."""
    return replace(rows, **{f.name: _own(getattr(rows, f.name)) for f in fields(rows)})


def _keep(kept: Path, out: Path, version: str) -> None:
    """Move what :meth:`DerivedCache.derived` reads beside the store, with the data version it comes from."""
    if kept.exists():
        shutil.rmtree(kept)
    kept.mkdir(parents=True)
    for name in _KEPT:
        shutil.move(out / name, kept / name)
    (kept / "version").write_text(version)


def _replace_kept(kept: Path, scope: list[str], d: Derived, version: str) -> None:
    """Replace the rows of the ``scope`` recordings in what is kept beside the store, streamed, file by file.

    The version is written last: a crash part way leaves an old version, so the next
    :meth:`DerivedCache.derived` refreshes everything instead of reading half-replaced files.
    """
    (kept / "version").unlink(missing_ok=True)
    for name in _KEPT:
        folder, new = kept / name, kept / f"{name}.new"
        shutil.rmtree(new, ignore_errors=True)
        new.mkdir()
        others = pl.scan_parquet(folder / "*.parquet").filter(~pl.col("recording_id").is_in(scope))
        others.sink_parquet(new / "00000.parquet", compression="zstd", compression_level=1)
        getattr(d, name).write_parquet(new / "00001.parquet", compression="zstd", compression_level=1)
        shutil.rmtree(folder)
        new.rename(folder)
    (kept / "version").write_text(version)


def _kept_version(kept: Path) -> str | None:
    """The data version of what a partitioned refresh kept beside the store (None: nothing kept)."""
    marker = kept / "version"
    return marker.read_text() if marker.is_file() else None


def _within(recording_ids: list[str]) -> list[Filter]:
    return [Filter(column="recording_id", op="in", value=recording_ids)]


@dataclass
class DerivedCache:
    """A store's derived tables: kept in memory while the store does not change, refreshed into it when asked.

    ``touched`` holds the recordings with new events since the last refresh (None:
    unknown, so the next refresh recomputes everything).

    Example:
        >>> from vtp_lab.store import open_store
        >>> cache = DerivedCache(store=open_store(":memory:"))
        >>> cache.refresh()["course_statistics"], cache.derived().playback_sessions.height
        (0, 0)
    """

    store: Store
    memory_budget: int = DEFAULT_MEMORY_BUDGET
    session_gap: timedelta = DEFAULT_SESSION_GAP
    touched: set[str] | None = None
    _memo: tuple[tuple[object, ...], Derived] | None = field(default=None, repr=False)

    def _version(self) -> str:
        """What the derived tables depend on: the data version, and the session gap when it is not the default."""
        version = data_version(self.store)
        if self.session_gap != DEFAULT_SESSION_GAP:
            version += f":gap={self.session_gap.total_seconds():g}s"
        return version

    def wrote(self, recording_ids: pl.Series | None = None) -> None:
        """Note a write: new events of ``recording_ids``, or (None) a change that may touch every recording."""
        if recording_ids is None:
            self.touched = None
        elif self.touched is not None:
            self.touched.update(recording_ids.unique().to_list())

    def _partitions(self) -> int:
        return partitions_for(events=self.store.count("analytics_events"), budget=self.memory_budget)

    def derived(
        self, *, score: pl.Expr | None = None, attendance_threshold: float = DEFAULT_ATTENDANCE_THRESHOLD
    ) -> Derived:
        """Every derived table from every stored event (cached until the store changes).

        A store larger than the budget is refreshed in parts first (the default score and
        threshold) and its tables read back; another score or threshold is then derived in
        one frame, as asked.

        Example:
            >>> from vtp_lab.store import open_store
            >>> DerivedCache(store=open_store(":memory:")).derived(attendance_threshold=0.8).recordings.height
            0
        """
        key = (self._version(), None if score is None else str(score), attendance_threshold)
        if self._memo is None or self._memo[0] != key:
            kept = _beside(self.store)
            default = score is None and attendance_threshold == DEFAULT_ATTENDANCE_THRESHOLD
            if default and kept is not None and self._partitions() > 1:
                if _kept_version(kept) != key[0]:
                    self._refresh_for_reading(kept)
                result = self._read_back(kept)
            else:
                result = derive_in_threads(
                    self.store.read("analytics_events"),
                    recordings=self.store.read("recordings"),
                    score=score if score is not None else DEFAULT_SCORE,
                    attendance_threshold=attendance_threshold,
                    session_gap=self.session_gap,
                )
            self._memo = (key, result)
        return self._memo[1]

    def over_parts(self, step: Callable[[pl.DataFrame], pl.DataFrame]) -> pl.DataFrame:
        """``step`` over the stored events a part of the recordings at a time, its results concatenated.

        One part (every event at once) while the events fit the memory budget or the store
        is in memory; else the parts of a partitioned refresh, one at a time, so memory
        follows a part, not the store. ``step`` must give a frame of the same columns for any part.

        Example:
            >>> from vtp_lab.store import open_store
            >>> DerivedCache(store=open_store(":memory:")).over_parts(lambda events: events.select(pl.len())).item()
            0
        """
        parts = self._partitions()
        if parts == 1 or _beside(self.store) is None:
            return step(self.store.read("analytics_events"))
        with self._spilled(parts) as (_, folders):
            results = [_own(step(read_spilled(folder))) for folder in folders]
        return pl.concat(results) if results else step(ANALYTICS_EVENTS.empty())

    @contextmanager
    def _spilled(self, parts: int) -> Iterator[tuple[Path, list[Path]]]:
        """The stored events cut by recording into ``parts`` folders of a scratch folder (removed after): both."""
        with _scratch(self.store) as scratch:
            memory = max(self.memory_budget, _SPILL_FLOOR)  # DuckDB's partitioned write needs some to run at all
            yield (
                scratch,
                self.store.spill(
                    "analytics_events", by="recording_id", parts=parts, folder=scratch / "events", memory=memory
                ),
            )

    def _refresh_for_reading(self, kept: Path) -> None:
        """Bring the stored tables and what is kept beside them up to date, or say why a reader cannot."""
        if self.store.read_only:
            raise StoreError(
                f"the derived tables of {self.store.path} are out of date and its events exceed memory_budget="
                f"{self.memory_budget:,} bytes; open it once for writing (Lab(path).refresh()) to bring them up "
                "to date in parts, or give this Lab a larger memory_budget"
            )
        if _kept_version(kept) != self.store.derived_version():
            self.touched = None  # what is kept is not in step with the stored tables: refresh it all
        self.refresh()

    def _read_back(self, kept: Path) -> Derived:
        """The tables of a partitioned refresh: the store's, and what it kept beside the store."""
        extra = {name: pl.read_parquet(kept / name / "*.parquet") for name in _KEPT}
        return Derived(
            session_details=extra["session_details"],
            engagement_features=extra["engagement_features"],
            quality_play=extra["quality_play"],
            recordings=catalogue(
                self.store.read("analytics_events", [Filter(column="event_type", op="==", value="recording_started")]),
                self.store.read("recordings"),
            ),
            **{name: self.store.read(name) for name in MATERIALISED},
        )

    def refresh(self) -> dict[str, int]:
        """Materialise the derived tables into the store; return the rows written per table.

        Incremental when the cache knows which recordings got new events since its last
        refresh: those recordings and the other recordings of their courses (course
        statistics need them all) are recomputed and just their rows replaced. Otherwise
        (a store this cache did not write, or a new catalogue) everything is recomputed,
        in parts when the store is larger than the budget. The tables are stored with the
        data version they come from, so every reader, in any process, can tell whether
        they are fresh.

        Example:
            >>> from vtp_lab.store import open_store
            >>> DerivedCache(store=open_store(":memory:"), touched=set()).refresh()["playback_sessions"]
            0
        """
        version = self._version()
        touched = self.touched
        if touched is None or (not touched and self.store.derived_version() != version):
            counts = self._refresh_all(version)
            self.touched = set()
            return counts
        if not touched:
            return dict.fromkeys(MATERIALISED, 0)
        counts = self._refresh_recordings(sorted(touched), version)
        self.touched = set()
        return counts

    def _refresh_all(self, version: str) -> dict[str, int]:
        parts = self._partitions()
        kept = _beside(self.store)
        if parts == 1 or kept is None:
            d = self.derived()
            tables = {name: getattr(d, name) for name in MATERIALISED}
            self.store.replace_tables(tables, version=version)
            return {name: frame.height for name, frame in tables.items()}
        recordings = self.store.read("recordings")
        with self._spilled(parts) as (scratch, folders):
            out = scratch / "out"
            out.mkdir()
            with ThreadPoolExecutor(max_workers=IN_FLIGHT) as pool:
                done = list(
                    pool.map(
                        lambda job: _stage_one(job[1], out, job[0], recordings, self.session_gap), enumerate(folders)
                    )
                )
            if not done:
                empty = derive_partition(ANALYTICS_EVENTS.empty(), recordings=recordings, session_gap=self.session_gap)
                done = [_Part(small=empty, scored=score_rows(empty.features, empty.lectures))]
            scored = Scored(
                features=pl.concat([p.scored.features for p in done]),
                engagement_metrics=done[0].scored.engagement_metrics,
                lectures=pl.concat([p.scored.lectures for p in done]),
                lecture_statistics=pl.concat([p.scored.lecture_statistics for p in done]).sort("recording_id"),
            )
            _, courses = course_rows([p.small for p in done], scored)
            files = {name: sorted((out / name).glob("*.parquet")) for name in _STREAMED}
            tables = {**files, "lecture_statistics": scored.lecture_statistics, "course_statistics": courses}
            counts = {name: pl.scan_parquet(fs).select(pl.len()).collect().item() for name, fs in files.items()}
            self.store.replace_tables(tables, version=version)
            _keep(kept, out, version)
        sizes = {name: rows.height for name, rows in tables.items() if isinstance(rows, pl.DataFrame)} | counts
        return {name: sizes[name] for name in MATERIALISED}

    def _refresh_recordings(self, touched: list[str], version: str) -> dict[str, int]:
        kept = _beside(self.store)
        in_step = kept is not None and _kept_version(kept) == self.store.derived_version()
        recordings = self.store.read("recordings")
        started = [Filter(column="event_type", op="==", value=EventType.RECORDING_STARTED.value)]
        described = [self.store.read("analytics_events", f) for f in (started, _within(touched))]
        cat = catalogue(pl.concat(described).unique("id"), recordings)  # a course from the catalogue or the events
        courses = sorted(set(cat.filter(pl.col("recording_id").is_in(touched))["course_id"].drop_nulls()))
        known = pl.concat(  # a recording's course, also where only its events name it (as a source's do)
            [
                cat.select("recording_id", "course_id"),
                self.store.read("lecture_statistics", columns=["recording_id", "course_id"]),
            ]
        )
        in_courses = known.filter(pl.col("course_id").is_in(courses))["recording_id"].to_list()
        scope = sorted(set(touched) | set(in_courses))
        d = derive_in_threads(
            self.store.read("analytics_events", _within(scope)), recordings=recordings, session_gap=self.session_gap
        )
        changes = {
            name: ("recording_id", scope, getattr(d, name)) for name in MATERIALISED if name != "course_statistics"
        }
        changes["course_statistics"] = (
            "course_id",
            courses,
            d.course_statistics.filter(pl.col("course_id").is_in(courses)),
        )
        self.store.replace_rows(changes, version=version)
        if in_step and kept is not None:
            _replace_kept(kept, scope, d, version)
        return {name: change[2].height for name, change in changes.items()}

    def fresh_tables(self) -> dict[str, pl.DataFrame]:
        """Derived tables that the store holds out of date, computed now (none when the store's are fresh).

        A cache whose store can be written refreshes the store instead; a read-only one
        computes them in memory.

        Example:
            >>> from vtp_lab.store import open_store
            >>> DerivedCache(store=open_store(":memory:")).fresh_tables()
            {}
        """
        if self.store.derived_version() == self._version():
            return {}
        if not self.store.read_only:
            self.refresh()
            return {}
        d = self.derived()
        return {name: getattr(d, name) for name in MATERIALISED}
