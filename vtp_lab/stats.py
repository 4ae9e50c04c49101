"""The derived tables of spec section 4: quality events, engagement, lecture and course statistics.

Everything is computed from sessions (:func:`vtp_lab.sessions.sessionize`) once, by
:func:`derive`, which returns all tables together; the functions named after the tables
are conveniences that take events and return one frame.

The engagement score is a polars expression over the per-(user, recording) features of
:func:`engagement_features`; :data:`DEFAULT_SCORE` is documented term by term in
``docs/metrics.md``. Pass your own ``score=`` and the lecture and course statistics
follow it.

Example:
    >>> from vtp_lab.synth import semester
    >>> sem = semester(courses=1, lectures_per_course=2, students=6, seed=4)
    >>> t = derive(sem.events, recordings=sem.recordings)
    >>> t.engagement_metrics["engagement_score"].is_between(0, 100).all()
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import ClassVar, Final

import polars as pl

from vtp_lab.errors import VtpLabError
from vtp_lab.events import MAX_INTEGER, EventType, uuid5_series
from vtp_lab.metadata import metadata_columns
from vtp_lab.metrics import alerts, engagement_trends, lecture_attendance, struggle_lectures, weekly_engagement
from vtp_lab.sessions import (
    DEFAULT_SESSION_GAP,
    Sessionized,
    coverage,
    cut_sessions,
    round_half_up,
    run_starts,
    sessionize,
)
from vtp_lab.tables import (
    COURSE_STATISTICS,
    ENGAGEMENT_METRICS,
    LECTURE_STATISTICS,
    PLAYBACK_SESSIONS,
    QUALITY_EVENTS,
    QUALITY_SECONDS,
)

__all__ = [
    "DEFAULT_ATTENDANCE_THRESHOLD",
    "DEFAULT_SCORE",
    "DEFAULT_WEIGHTS",
    "ENGAGEMENT_FEATURES",
    "MATERIALISED",
    "SCORE_TERMS",
    "Derived",
    "Partial",
    "Scored",
    "ViewingRequirement",
    "combine",
    "course_rows",
    "course_statistics",
    "derive",
    "derive_partition",
    "engagement_features",
    "engagement_metrics",
    "lecture_statistics",
    "quality_events",
    "score_rows",
    "viewing_compliance",
    "viewing_met",
    "viewing_rows",
    "weighted_score",
]

DEFAULT_ATTENDANCE_THRESHOLD: Final = 0.5
"""An attendee of a lecture covered at least this fraction of it (spec section 4)."""

MATERIALISED: Final = (
    "playback_sessions",
    "quality_events",
    "engagement_metrics",
    "lecture_statistics",
    "course_statistics",
)
"""The derived tables of the platform's analytics schema, which stores hold (the :class:`Derived` attributes)."""


def _clip01(expr: pl.Expr) -> pl.Expr:
    """In [0, 1]; a term that is undefined (no duration, or a duration of 0: null or 0 / 0) counts 0."""
    return expr.fill_nan(None).clip(0.0, 1.0).fill_null(0.0)


SCORE_TERMS: Final = {
    "coverage": _clip01(pl.col("coverage")),
    "time_on_task": _clip01(pl.col("play_time_seconds") / pl.col("duration_seconds")),
    "completed": pl.col("completed").cast(pl.Float64),
    "revisiting": _clip01(pl.col("rewatched_seconds") / (0.1 * pl.col("duration_seconds"))),
}
"""The terms of the default engagement score, each in [0, 1] (see ``docs/metrics.md``)."""

DEFAULT_WEIGHTS: Final = {"coverage": 0.6, "time_on_task": 0.2, "completed": 0.1, "revisiting": 0.1}
"""The default score's weight of each of :data:`SCORE_TERMS`."""


def weighted_score(weights: dict[str, float]) -> pl.Expr:
    """100 x the weighted mean of :data:`SCORE_TERMS` (weights scaled to sum to 1; all zero counts as 1).

    Example:
        >>> f = pl.DataFrame({"coverage": [0.5], "play_time_seconds": [60.0], "duration_seconds": [600.0],
        ...     "completed": [False], "rewatched_seconds": [0.0]})
        >>> f.select(weighted_score({"coverage": 1.0})).item()
        50.0
    """
    unknown = set(weights) - set(SCORE_TERMS)
    if unknown:
        raise ValueError(f"no score term {sorted(unknown)[0]!r}; the terms are {', '.join(SCORE_TERMS)}")
    total = sum(weights.values()) or 1.0
    weighted = sum(((w / total) * SCORE_TERMS[name] for name, w in weights.items()), pl.lit(0.0))
    return (100 * weighted).alias("engagement_score")


DEFAULT_SCORE: Final = weighted_score(DEFAULT_WEIGHTS)
"""The default engagement score in [0, 100]: 60 x coverage + 20 x time on task + 10 x completed
+ 10 x revisiting (see ``docs/metrics.md``). Non-decreasing in coverage."""

ENGAGEMENT_FEATURES: Final = (
    "user_id",
    "recording_id",
    "duration_seconds",
    "total_views",
    "total_watch_time_seconds",
    "coverage",
    "play_time_seconds",
    "rewatched_seconds",
    "completed",
    "pauses",
    "seeks",
    "backward_seeks",
    "buffer_events_total",
    "rebuffer_seconds",
    "fatal_errors",
    "first_watched",
    "last_watched",
)
"""The columns a score expression may read (one row per user and recording)."""


@dataclass(frozen=True)
class Derived:
    """All tables derived from one set of events: the mirror tables plus the session details.

    Example:
        >>> from vtp_lab.tables import ANALYTICS_EVENTS
        >>> derive(ANALYTICS_EVENTS.empty()).course_statistics.height
        0
    """

    session_details: pl.DataFrame
    playback_sessions: pl.DataFrame
    quality_events: pl.DataFrame
    engagement_features: pl.DataFrame
    engagement_metrics: pl.DataFrame
    lecture_statistics: pl.DataFrame
    course_statistics: pl.DataFrame
    recordings: pl.DataFrame
    quality_play: pl.DataFrame
    """Play seconds per recording and quality (what ``quality_distribution`` rounds)."""

    def alerts(self, *, below: float = 0.5, weeks: int = 2, qoe_drop: float = 10.0) -> pl.DataFrame:
        """These tables' alerts: low engagement, struggle lectures, QoE regressions (:func:`vtp_lab.metrics.alerts`).

        Example:
            >>> from vtp_lab.tables import ANALYTICS_EVENTS
            >>> derive(ANALYTICS_EVENTS.empty()).alerts().columns
            ['kind', 'subject', 'course_id', 'rule', 'details']
        """
        return alerts(
            features=self.engagement_features,
            details=self.session_details,
            courses=self.course_statistics,
            recordings=self.recordings,
            below=below,
            weeks=weeks,
            qoe_drop=qoe_drop,
        )


def quality_events(
    events: pl.DataFrame | pl.LazyFrame, *, session_gap: timedelta = DEFAULT_SESSION_GAP
) -> pl.DataFrame:
    """One row per quality_changed event (spec section 4); sessions cut as :func:`sessionize` cuts them.

    Example:
        >>> from vtp_lab.tables import ANALYTICS_EVENTS
        >>> quality_events(ANALYTICS_EVENTS.empty()).columns[-1]
        'quality_timestamp'
    """
    lf = events.lazy() if isinstance(events, pl.DataFrame) else events
    q = lf.filter(pl.col("event_type") == EventType.QUALITY_CHANGED.value).select(
        "id", "session_id", "recording_id", "user_id", "event_timestamp", "metadata"
    )
    text, number = pl.String(), pl.Float64()
    keys = {"old_quality": text, "new_quality": text, "old_bitrate": number, "new_bitrate": number, "reason": text}
    m = metadata_columns(cut_sessions(q.collect(), gap=session_gap), keys)
    return QUALITY_EVENTS.conform(
        m.select(
            "id",
            "session_id",
            "recording_id",
            "user_id",
            pl.col("m_old_quality").alias("old_quality"),
            pl.col("m_new_quality").alias("new_quality"),
            pl.col("m_old_bitrate").cast(pl.Int32, strict=False).alias("old_bitrate"),
            pl.col("m_new_bitrate").cast(pl.Int32, strict=False).alias("new_bitrate"),
            pl.col("m_reason").alias("reason"),
            pl.col("event_timestamp").alias("quality_timestamp"),
        )
    )


def _top_quality(segments: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """The quality with most play time per group; ties go to the one played first."""
    played = segments.filter(pl.col("quality").is_not_null()).with_columns(
        (pl.col("started_at") + pl.duration(microseconds=(pl.col("open_t") * 1e6).round(0).cast(pl.Int64))).alias("at")
    )
    return (
        played.group_by(*by, "quality")
        .agg(pl.col("play_seconds").sum().alias("q"), pl.col("at").min().alias("first"))
        .filter(pl.col("q") > 0)
        .sort([*by, "q", "first"], descending=[*([False] * len(by)), True, False])
        .group_by(by, maintain_order=True)
        .first()
        .select(*by, "quality")
    )


def _features(s: Sessionized) -> pl.DataFrame:
    """Per (user, recording), in the details' order (by recording, then user), each pair a run numbered ``_g``."""
    d = s.details
    pair = d.select(run_starts(["recording_id", "user_id"]).cum_sum().alias("_g")).to_series()
    segments = s.segments.with_columns(pair.gather(s.segments["session"]))
    agg = (
        d.with_columns(pair)
        .group_by("_g", maintain_order=True)
        .agg(
            pl.col("user_id").first(),
            pl.col("recording_id").first(),
            pl.col("duration_seconds").first(),
            pl.len().cast(pl.Int32).alias("total_views"),
            pl.col("watched_seconds")
            .sum()
            .clip(upper_bound=MAX_INTEGER)
            .cast(pl.Int32)
            .alias("total_watch_time_seconds"),
            pl.col("play_time_seconds").sum(),
            pl.col("completed").any(),
            pl.col("pauses").sum(),
            pl.col("seeks").sum(),
            pl.col("backward_seeks").sum(),
            pl.col("buffer_events").sum().cast(pl.Int32).alias("buffer_events_total"),
            pl.col("rebuffer_seconds").sum(),
            pl.col("fatal_errors").sum(),
            pl.col("started_at").min().alias("first_watched"),
            pl.coalesce(pl.col("ended_at").max(), pl.col("last_event_at").max()).alias("last_watched"),
            pl.col("quality").sort_by("started_at").drop_nulls().last().alias("_last_quality"),
        )
    )
    cover = coverage(segments, ["_g"])
    top = _top_quality(segments, ["_g"]).rename({"quality": "_top_quality"})
    feats = agg.join(cover, on="_g", how="left", maintain_order="left").join(
        top, on="_g", how="left", maintain_order="left"
    )
    return feats.with_columns(
        pl.col("rewatched_seconds").fill_null(0.0),
        pl.when(pl.col("duration_seconds") > 0)
        .then((pl.col("covered_seconds").fill_null(0.0) / pl.col("duration_seconds")).clip(0.0, 1.0))
        .alias("coverage"),
        pl.coalesce("_top_quality", "_last_quality").alias("average_quality"),
    ).drop("_g")


def engagement_features(
    events: pl.DataFrame | pl.LazyFrame,
    *,
    recordings: pl.DataFrame | None = None,
    session_gap: timedelta = DEFAULT_SESSION_GAP,
) -> pl.DataFrame:
    """Per (user, recording) with sessions: the features a score may use (:data:`ENGAGEMENT_FEATURES`).

    ``coverage`` is the union of the content played over all the user's sessions of the
    recording, divided by its duration (null when unknown); ``session_gap`` as for
    :func:`vtp_lab.sessions.sessionize`.

    Example:
        >>> from vtp_lab.tables import ANALYTICS_EVENTS
        >>> engagement_features(ANALYTICS_EVENTS.empty()).columns[:2]
        ['user_id', 'recording_id']
    """
    return _features(sessionize(events, recordings=recordings, session_gap=session_gap)).select(ENGAGEMENT_FEATURES)


@dataclass(frozen=True, kw_only=True)
class ViewingRequirement:
    """What a student must have watched of each lecture, and by when: ``coverage`` of it by ``published_at + within``.

    Example:
        >>> ViewingRequirement(coverage=0.8, within=timedelta(days=7)).describe()
        'covered at least 80% of each lecture within 7 days of its publication'
    """

    coverage: float = 0.8
    within: timedelta = timedelta(days=7)

    def __post_init__(self) -> None:
        if not 0 < self.coverage <= 1 or self.within <= timedelta(0):
            raise ValueError(
                f"coverage={self.coverage} must be in (0, 1] and within={self.within} positive, "
                "e.g. ViewingRequirement(coverage=0.8, within=timedelta(days=7))"
            )

    def describe(self) -> str:
        """The requirement in words, for reports."""
        days = self.within / timedelta(days=1)
        return f"covered at least {self.coverage:.0%} of each lecture within {days:g} days of its publication"


def viewing_compliance(
    events: pl.DataFrame,
    recordings: pl.DataFrame,
    requirement: ViewingRequirement = ViewingRequirement(),
    *,
    session_gap: timedelta = DEFAULT_SESSION_GAP,
) -> pl.DataFrame:
    """Per student of a course and lecture of it with a publication time: whether the student met ``requirement``.

    A student of a course is one with a viewing event on any of its lectures. A lecture's
    ``coverage`` counts only what was played before its deadline (``due_at``): events
    after it are left out before sessions are cut, so a session across the deadline
    counts up to it (``session_gap`` cuts the sessions of events that came without one).
    Columns: ``course_id, recording_id, title, user_id, due_at, coverage, met``. The same
    as :func:`viewing_met` over :func:`viewing_rows` of parts of the recordings.

    Example:
        >>> from vtp_lab.synth import semester
        >>> sem = semester(courses=1, lectures_per_course=2, students=3, seed=1)
        >>> v = viewing_compliance(sem.events, sem.recordings)
        >>> v.height == 2 * 3, v.columns[-2:]
        (True, ['coverage', 'met'])
    """
    rows = viewing_rows(events, recordings=recordings, requirement=requirement, session_gap=session_gap)
    return viewing_met(rows, recordings, requirement)


def _required(recordings: pl.DataFrame, requirement: ViewingRequirement) -> pl.DataFrame:
    """The lectures a requirement applies to (a course and a publication time), with their deadline ``due_at``."""
    return recordings.filter(pl.col("course_id").is_not_null() & pl.col("published_at").is_not_null()).select(
        "recording_id", "course_id", "title", (pl.col("published_at") + requirement.within).alias("due_at")
    )


def viewing_rows(
    events: pl.DataFrame, *, recordings: pl.DataFrame, requirement: ViewingRequirement, session_gap: timedelta
) -> pl.DataFrame:
    """Stage 1 of :func:`viewing_compliance`, on any part of the recordings' events: who viewed what, how much in time.

    One row per user and lecture of a course that the user has a viewing event on:
    ``course_id, user_id, recording_id, coverage`` (what was played before the deadline;
    0 for a lecture without one, whose rows only name the course's students).

    Example:
        >>> from vtp_lab.synth import semester
        >>> sem = semester(courses=1, lectures_per_course=2, students=3, seed=1)
        >>> rule, gap = ViewingRequirement(), DEFAULT_SESSION_GAP
        >>> viewing_rows(sem.events, recordings=sem.recordings, requirement=rule, session_gap=gap).columns
        ['course_id', 'user_id', 'recording_id', 'coverage']
    """
    lectures = recordings.filter(pl.col("course_id").is_not_null()).select("recording_id", "course_id")
    viewing = events.filter(pl.col("event_type") != EventType.RECORDING_STARTED.value)  # not who recorded it
    pairs = viewing.join(lectures, on="recording_id").select("course_id", "user_id", "recording_id").unique()
    due = _required(recordings, requirement).select("recording_id", "due_at")
    in_time = events.join(due, on="recording_id").filter(pl.col("event_timestamp") < pl.col("due_at")).drop("due_at")
    covered = engagement_features(in_time, recordings=recordings, session_gap=session_gap)
    return pairs.join(
        covered.select("user_id", "recording_id", "coverage"), on=["user_id", "recording_id"], how="left"
    ).with_columns(pl.col("coverage").fill_null(0.0))


def viewing_met(
    rows: pl.DataFrame, recordings: pl.DataFrame, requirement: ViewingRequirement = ViewingRequirement()
) -> pl.DataFrame:
    """Stage 2 of :func:`viewing_compliance`: every student of a course against every required lecture of it.

    ``rows`` is :func:`viewing_rows` of one frame, or of each part of the recordings concatenated.

    Example:
        >>> from vtp_lab.synth import semester
        >>> sem = semester(courses=1, lectures_per_course=2, students=3, seed=1)
        >>> rule, gap = ViewingRequirement(), DEFAULT_SESSION_GAP
        >>> rows = viewing_rows(sem.events, recordings=sem.recordings, requirement=rule, session_gap=gap)
        >>> viewing_met(rows, sem.recordings)["met"].dtype
        Boolean
    """
    students = rows.select("course_id", "user_id").unique()
    return (
        students.join(_required(recordings, requirement), on="course_id")
        .join(rows.select("user_id", "recording_id", "coverage"), on=["user_id", "recording_id"], how="left")
        .with_columns(pl.col("coverage").fill_null(0.0))
        .with_columns((pl.col("coverage") >= requirement.coverage).alias("met"))
        .select("course_id", "recording_id", "title", "user_id", "due_at", "coverage", "met")
        .sort("course_id", "due_at", "recording_id", "user_id")
    )


def _score(features: pl.DataFrame, score: pl.Expr) -> pl.Series:
    if not isinstance(score, pl.Expr):
        raise TypeError(
            f"score={score!r} is not a polars expression; write one over the features, "
            "e.g. weighted_score({'coverage': 1.0}) or 100 * pl.col('coverage')"
        )
    values = features.with_columns(score.cast(pl.Float64).alias("_score"))["_score"]
    bad = values.is_null() | values.is_nan() | (values < 0) | (values > 100)
    if bad.any():
        row = features.filter(bad).row(0, named=True)
        raise VtpLabError(
            f"the engagement score gave {values.filter(bad)[0]!r} for user {row['user_id']}, recording "
            f"{row['recording_id']}; a score must be a number in [0, 100] for every row "
            "(clip it, and fill nulls for unknown durations)"
        )
    return values


@dataclass(frozen=True)
class Partial:
    """Stage 1 of :func:`derive` for one partition of recordings: what :func:`combine` makes the tables from.

    Every session belongs to one recording, so a partition holding all the events of its
    recordings has all of their sessions. ``features`` are the (user, recording) rows
    without a score and ``lectures`` the per-recording rows without the engagement mean:
    a score may read every row (``pl.col("coverage").rank()``), so it is applied once,
    in stage 2. ``completion`` is each recording's sum and count of session completion
    rates (what a course's mean needs). All but ``session_details`` and
    ``quality_events`` are far smaller than the events, and stage 2 reads only those
    two to pass them on: a caller short of memory may store them itself and pass
    empty frames (:meth:`without_rows`).

    Example:
        >>> from vtp_lab.synth import semester
        >>> p = derive_partition(semester(courses=1, lectures_per_course=2, students=3, seed=2).events)
        >>> "engagement_score" in p.features.columns
        False
    """

    session_details: pl.DataFrame
    quality_events: pl.DataFrame
    features: pl.DataFrame
    lectures: pl.DataFrame
    quality_play: pl.DataFrame
    recordings: pl.DataFrame
    completion: pl.DataFrame

    def without_rows(self) -> Partial:
        """This partition with no session or quality-event rows (their columns kept), for :func:`combine`.

        Example:
            >>> from vtp_lab.tables import ANALYTICS_EVENTS
            >>> derive_partition(ANALYTICS_EVENTS.empty()).without_rows().session_details.columns[:2]
            ['id', 'recording_id']
        """
        return replace(self, session_details=self.session_details.clear(), quality_events=self.quality_events.clear())


def derive_partition(
    events: pl.DataFrame | pl.LazyFrame,
    *,
    recordings: pl.DataFrame | None = None,
    session_gap: timedelta = DEFAULT_SESSION_GAP,
) -> Partial:
    """Stage 1: sessions, quality events, features and lecture rows of events holding whole recordings.

    ``events`` must hold every event of each recording in it (any set of recordings);
    ``recordings`` is the loaded catalogue (all of it, or the partition's rows);
    ``session_gap`` cuts the sessions of events that came without one (:func:`cut_sessions`).

    Example:
        >>> from vtp_lab.tables import ANALYTICS_EVENTS
        >>> derive_partition(ANALYTICS_EVENTS.empty()).session_details.height
        0
    """
    frame = events.collect() if isinstance(events, pl.LazyFrame) else events
    s = sessionize(frame, recordings=recordings, session_gap=session_gap)
    quality_play = (
        s.segments.filter(pl.col("quality").is_not_null())
        .group_by("recording_id", "quality")
        .agg(pl.col("play_seconds").sum())
        .sort("recording_id", "quality")
    )
    return Partial(
        session_details=s.details,
        quality_events=quality_events(frame, session_gap=session_gap),
        features=_features(s),
        lectures=_lectures(s, quality_play),
        quality_play=quality_play,
        recordings=s.catalogue,
        completion=s.details.group_by("recording_id")
        .agg(
            pl.col("completion_rate").sum().alias("completion_sum"),
            pl.col("completion_rate").count().alias("completion_count"),
        )
        .sort("recording_id"),
    )


def combine(
    parts: Sequence[Partial],
    *,
    score: pl.Expr = DEFAULT_SCORE,
    attendance_threshold: float = DEFAULT_ATTENDANCE_THRESHOLD,
) -> Derived:
    """Stage 2: the derived tables from the partitions' stage 1, scored once, with what crosses recordings.

    The partitions must not share a recording. The tables are the same as :func:`derive`
    over all the partitions' events, whatever the cut.

    Example:
        >>> from vtp_lab.synth import semester
        >>> ev = semester(courses=1, lectures_per_course=4, students=5, seed=6).events
        >>> half = pl.col("recording_id").hash() % 2 == 0
        >>> parts = [derive_partition(ev.filter(half)), derive_partition(ev.filter(~half))]
        >>> combine(parts).lecture_statistics.equals(derive(ev).lecture_statistics)
        True
    """
    if not 0 < attendance_threshold <= 1:
        raise ValueError(
            f"attendance_threshold={attendance_threshold} must be a fraction in (0, 1], e.g. 0.5 for half the lecture"
        )
    if not parts:
        raise ValueError("combine needs at least one partition (derive_partition of no events is one)")
    details = pl.concat([p.session_details for p in parts]).sort("recording_id", "user_id", "started_at", "session_id")
    scored = score_rows(
        pl.concat([p.features for p in parts]).sort("recording_id", "user_id"),
        pl.concat([p.lectures for p in parts]),
        score=score,
    )
    catalogue, courses = course_rows(parts, scored, attendance_threshold=attendance_threshold)
    return Derived(
        session_details=details,
        playback_sessions=PLAYBACK_SESSIONS.conform(details),
        quality_events=pl.concat([p.quality_events for p in parts]).sort("quality_timestamp", "id"),
        engagement_features=scored.engagement_features,
        engagement_metrics=scored.engagement_metrics,
        lecture_statistics=scored.lecture_statistics,
        course_statistics=courses,
        recordings=catalogue,
        quality_play=pl.concat([p.quality_play for p in parts]).sort("recording_id", "quality"),
    )


@dataclass(frozen=True)
class Scored:
    """Stage-1 rows with the engagement score applied: the engagement and lecture tables, and what courses read.

    ``features`` has the score; ``lectures`` the per-recording rows with their mean score
    (``avg_engagement_score``), which course statistics read beside the lecture table.

    Example:
        >>> from vtp_lab.synth import semester
        >>> p = derive_partition(semester(courses=1, lectures_per_course=2, students=3, seed=2).events)
        >>> score_rows(p.features, p.lectures).engagement_metrics.height == p.features.height
        True
    """

    features: pl.DataFrame
    engagement_metrics: pl.DataFrame
    lectures: pl.DataFrame
    lecture_statistics: pl.DataFrame

    COURSE_COLUMNS: ClassVar[tuple[str, ...]] = (
        "user_id",
        "recording_id",
        "coverage",
        "engagement_score",
        "first_watched",
    )
    """The columns of ``features`` that course statistics read (all a caller short of memory needs keep)."""

    @property
    def engagement_features(self) -> pl.DataFrame:
        """The (user, recording) features a score may read, with the score: :attr:`Derived.engagement_features`."""
        return self.features.select(*ENGAGEMENT_FEATURES, "engagement_score")


def score_rows(features: pl.DataFrame, lectures: pl.DataFrame, *, score: pl.Expr = DEFAULT_SCORE) -> Scored:
    """Apply ``score`` to (user, recording) features and give the engagement and lecture tables of their recordings.

    A score that reads one row at a time (such as :data:`DEFAULT_SCORE`) may be applied
    to any cut of the recordings alone; one that reads others (``rank()``) needs all the
    rows at once, as :func:`combine` gives it.

    Example:
        >>> from vtp_lab.synth import semester
        >>> p = derive_partition(semester(courses=1, lectures_per_course=2, students=3, seed=2).events)
        >>> score_rows(p.features, p.lectures).lecture_statistics.height
        2
    """
    feats = features.with_columns(_score(features, score).alias("engagement_score"))
    ids = uuid5_series(
        feats.select(pl.concat_str([pl.lit("engagement"), "user_id", "recording_id"], separator="|")).to_series()
    )
    lecture_rows = lectures.join(
        feats.group_by("recording_id").agg(pl.col("engagement_score").mean().alias("avg_engagement_score")),
        on="recording_id",
        how="left",
    )
    lecture_ids = uuid5_series(
        lecture_rows.select(pl.concat_str([pl.lit("lecture"), "recording_id"], separator="|")).to_series()
    )
    return Scored(
        features=feats,
        engagement_metrics=ENGAGEMENT_METRICS.conform(feats.with_columns(ids.alias("id"))),
        lectures=lecture_rows,
        lecture_statistics=LECTURE_STATISTICS.conform(
            lecture_rows.with_columns(lecture_ids.alias("id")).sort("recording_id")
        ),
    )


def course_rows(
    parts: Sequence[Partial], scored: Scored, *, attendance_threshold: float = DEFAULT_ATTENDANCE_THRESHOLD
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The catalogue and the course statistics of every partition, from their stage 1 and their scored rows.

    Reads of ``parts`` only the catalogue and completion rows, and of ``scored.features``
    only :attr:`Scored.COURSE_COLUMNS`.

    Example:
        >>> from vtp_lab.synth import semester
        >>> p = derive_partition(semester(courses=1, lectures_per_course=2, students=3, seed=2).events)
        >>> course_rows([p], score_rows(p.features, p.lectures))[1].height
        1
    """
    catalogue = (
        pl.concat([p.recordings for p in parts])
        .group_by("recording_id")
        .agg(pl.all().drop_nulls().first())  # a recording's events are in one partition; the loaded rows in each
        .select(parts[0].recordings.columns)
        .sort("recording_id")
    )
    courses = _courses(
        pl.concat([p.completion for p in parts]),
        catalogue,
        scored.features.select(Scored.COURSE_COLUMNS),
        scored.lectures,
        attendance_threshold,
    )
    return catalogue, courses


def derive(
    events: pl.DataFrame | pl.LazyFrame,
    *,
    recordings: pl.DataFrame | None = None,
    score: pl.Expr = DEFAULT_SCORE,
    attendance_threshold: float = DEFAULT_ATTENDANCE_THRESHOLD,
    session_gap: timedelta = DEFAULT_SESSION_GAP,
) -> Derived:
    """Every derived table from events (and the loaded catalogue): :func:`combine` of one :func:`derive_partition`.

    Example:
        >>> from vtp_lab.tables import ANALYTICS_EVENTS
        >>> derive(ANALYTICS_EVENTS.empty(), attendance_threshold=2)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: attendance_threshold=2 must be a fraction in (0, 1], e.g. 0.5 for half the lecture
    """
    part = derive_partition(events, recordings=recordings, session_gap=session_gap)
    return combine([part], score=score, attendance_threshold=attendance_threshold)


def _lectures(s: Sessionized, quality_play: pl.DataFrame) -> pl.DataFrame:
    """Per recording (spec section 4): viewers, watch time, completion, buffering, rewatching, qualities.

    Also ``duration_seconds``, ``course_id`` and ``_rewatched``, which the course statistics read.
    """
    cat = s.catalogue.select("recording_id", "course_id", "duration_seconds")
    d = s.details
    quality_seconds = (
        quality_play.with_columns(round_half_up(pl.col("play_seconds")).cast(pl.Int64).alias("seconds"))
        .sort("seconds", "quality", descending=[True, False])
        .group_by("recording_id", maintain_order=True)
        .agg(pl.struct("quality", "seconds").alias("quality_distribution"))
    )
    lectures = (
        d.group_by("recording_id")
        .agg(
            pl.len().cast(pl.Int32).alias("total_viewers"),
            pl.col("user_id").n_unique().cast(pl.Int32).alias("unique_viewers"),
            pl.col("watched_seconds").mean().alias("average_watch_time"),
            pl.col("completion_rate").mean().alias("average_completion_rate"),
            pl.col("buffer_events").sum().cast(pl.Int32).alias("buffer_events_total"),
            pl.col("rewatched_seconds").sum().alias("_rewatched"),
            pl.col("backward_seeks").mean().alias("backward_seeks_per_view"),
        )
        .join(cat, on="recording_id", how="left")
        .join(quality_seconds, on="recording_id", how="left")
    )
    return lectures.with_columns(
        pl.col("quality_distribution").fill_null(pl.lit([], QUALITY_SECONDS)),
        (pl.col("_rewatched") / (pl.col("total_viewers") * pl.col("duration_seconds"))).alias("rewatch_fraction"),
    )


def _courses(
    completion: pl.DataFrame, catalogue: pl.DataFrame, feats: pl.DataFrame, lectures: pl.DataFrame, threshold: float
) -> pl.DataFrame:
    cat = catalogue.filter(pl.col("course_id").is_not_null()).select("recording_id", "course_id")
    if cat.height == 0:
        return COURSE_STATISTICS.empty()
    f = feats.join(cat, on="recording_id", how="inner")
    c = completion.join(cat, on="recording_id", how="inner")
    attendance = (
        lecture_attendance(feats, catalogue, threshold=threshold)
        .group_by("course_id")
        .agg(
            pl.len().cast(pl.Int32).alias("total_lectures"),
            pl.col("attendance_rate").mean().alias("average_attendance_rate"),
            pl.col("students").first(),
        )
    )
    base = attendance.join(
        c.group_by("course_id").agg(
            pl.when(pl.col("completion_count").sum() > 0)
            .then(pl.col("completion_sum").sum() / pl.col("completion_count").sum())
            .alias("average_completion_rate")
        ),
        on="course_id",
        how="left",
    ).join(
        f.group_by("course_id").agg(pl.col("engagement_score").mean().alias("avg_engagement_score")),
        on="course_id",
        how="left",
    )
    in_courses = lectures.filter(pl.col("course_id").is_not_null())
    ranked = (
        in_courses.sort(["course_id", "total_viewers", "recording_id"], descending=[False, True, False])
        .group_by("course_id", maintain_order=True)
        .agg(pl.col("recording_id").head(5).alias("most_watched_lectures"))
    )
    struggle = (
        struggle_lectures(in_courses)
        .group_by("course_id", maintain_order=True)
        .agg(pl.col("recording_id").alias("struggle_lectures"))
    )
    trends = engagement_trends(weekly_engagement(feats, catalogue)).select(
        "course_id", pl.col("trend").alias("engagement_trend")
    )
    out = (
        base.join(ranked, on="course_id", how="left")
        .join(struggle, on="course_id", how="left")
        .join(trends, on="course_id", how="left")
        .with_columns(
            pl.col("students").fill_null(0).cast(pl.Int32).alias("total_unique_students"),
            pl.col("struggle_lectures").fill_null([]),
            pl.col("most_watched_lectures").fill_null([]),
            pl.col("engagement_trend").fill_null("stable"),
        )
    )
    ids = uuid5_series(out.select(pl.concat_str([pl.lit("course"), "course_id"], separator="|")).to_series())
    return COURSE_STATISTICS.conform(out.with_columns(ids.alias("id")).sort("course_id"))


def engagement_metrics(
    events: pl.DataFrame | pl.LazyFrame, *, recordings: pl.DataFrame | None = None, score: pl.Expr = DEFAULT_SCORE
) -> pl.DataFrame:
    """The ``engagement_metrics`` table, with the default or your own score.

    Example:
        >>> from vtp_lab.synth import semester
        >>> sem = semester(courses=1, lectures_per_course=1, students=3, seed=5)
        >>> engagement_metrics(sem.events, score=pl.lit(50.0))["engagement_score"].unique().to_list()
        [50.0]
    """
    return derive(events, recordings=recordings, score=score).engagement_metrics


def lecture_statistics(
    events: pl.DataFrame | pl.LazyFrame, *, recordings: pl.DataFrame | None = None, score: pl.Expr = DEFAULT_SCORE
) -> pl.DataFrame:
    """The ``lecture_statistics`` table.

    Example:
        >>> from vtp_lab.tables import ANALYTICS_EVENTS
        >>> lecture_statistics(ANALYTICS_EVENTS.empty()).height
        0
    """
    return derive(events, recordings=recordings, score=score).lecture_statistics


def course_statistics(
    events: pl.DataFrame | pl.LazyFrame,
    *,
    recordings: pl.DataFrame | None = None,
    score: pl.Expr = DEFAULT_SCORE,
    attendance_threshold: float = DEFAULT_ATTENDANCE_THRESHOLD,
) -> pl.DataFrame:
    """The ``course_statistics`` table.

    Example:
        >>> from vtp_lab.tables import ANALYTICS_EVENTS
        >>> course_statistics(ANALYTICS_EVENTS.empty()).height
        0
    """
    return derive(
        events, recordings=recordings, score=score, attendance_threshold=attendance_threshold
    ).course_statistics
