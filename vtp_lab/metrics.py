"""Metrics over sessions: quality of experience, retention, attendance, at-risk students, QoE and engagement.

Each function takes frames from :mod:`vtp_lab.sessions` / :mod:`vtp_lab.stats` (or any
frame with the same columns) and returns a frame. Formulas are in ``docs/metrics.md``.

Example:
    >>> from vtp_lab.synth import semester
    >>> from vtp_lab.stats import derive
    >>> d = derive(semester(courses=1, lectures_per_course=2, students=5, seed=1).events)
    >>> qoe(d.session_details)["qoe_score"].is_between(0, 100).all()
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import polars as pl

from vtp_lab.sessions import run_starts, session_details, sweep

__all__ = [
    "QOE_REFERENCE_BITRATE",
    "REALTIME_RATE_SECONDS",
    "REALTIME_REBUFFER_MINUTES",
    "REBUFFER_BANDS",
    "Realtime",
    "alerts",
    "at_risk_students",
    "attendance_categories",
    "engagement_trends",
    "lecture_attendance",
    "qoe",
    "qoe_and_engagement",
    "qoe_summary",
    "realtime",
    "realtime_window",
    "retention",
    "struggle_lectures",
    "week_of",
    "weekly_engagement",
]

QOE_REFERENCE_BITRATE: Final = 5000.0
"""The bitrate (kbit/s) that earns the full bitrate term of the QoE score (1080p on the synthetic ladder)."""

REBUFFER_BANDS: Final = (0.0, 0.01, 0.05, 0.10)
"""Lower bounds of the rebuffer-ratio bands of :func:`qoe_and_engagement`."""

_WEIGHTS: Final = {"no_failure": 0.4, "smooth": 0.3, "bitrate": 0.2, "steady": 0.1}


def qoe(details: pl.DataFrame, *, reference_bitrate: float = QOE_REFERENCE_BITRATE) -> pl.DataFrame:
    """Per session: rebuffer frequency and the composite QoE score in [0, 100].

    ``qoe_score = 100 x (0.4 no fatal error + 0.3 (1 - min(1, rebuffer_ratio / 0.1))
    + 0.2 min(1, bitrate / reference) + 0.1 (1 - min(1, rebuffers per minute)))``; a term
    whose input is unknown (no play, no bitrate) is left out and the weights of the others
    are scaled to sum to 1.

    Example:
        >>> row = pl.DataFrame({"fatal_errors": [0], "rebuffer_ratio": [0.05], "time_weighted_bitrate": [2500.0],
        ...     "buffer_events": [1], "play_time_seconds": [120.0]})
        >>> qoe(row)["qoe_score"].item()  # 40 + 30 x 0.5 + 20 x 0.5 + 10 x (1 - 0.5)
        70.0
    """
    per_minute = pl.when(pl.col("play_time_seconds") > 0).then(
        pl.col("buffer_events") / (pl.col("play_time_seconds") / 60)
    )
    terms = {
        "no_failure": (pl.col("fatal_errors") == 0).cast(pl.Float64),
        "smooth": 1 - (pl.col("rebuffer_ratio") / 0.1).clip(0, 1),
        "bitrate": (pl.col("time_weighted_bitrate") / reference_bitrate).clip(0, 1),
        "steady": 1 - per_minute.clip(0, 1),
    }
    known = [pl.when(t.is_not_null()).then(_WEIGHTS[k]).otherwise(0.0) for k, t in terms.items()]
    weighted = [(t * _WEIGHTS[k]).fill_null(0.0) for k, t in terms.items()]
    return details.with_columns(
        per_minute.alias("rebuffer_frequency"),
        (100 * pl.sum_horizontal(weighted) / pl.sum_horizontal(known)).round(6).alias("qoe_score"),
    )


def week_of(column: str) -> pl.Expr:
    """The start of the week of a timestamp column: Monday 00:00 UTC, as every weekly figure counts weeks.

    Example:
        >>> from datetime import datetime
        >>> pl.DataFrame({"t": [datetime(2026, 9, 3, 15)]}).select(week_of("t")).item()
        datetime.datetime(2026, 8, 31, 0, 0)
    """
    return pl.col(column).dt.truncate("1w")


def _rebuffer_ratio() -> pl.Expr:
    """Rebuffer time / (play time + rebuffer time) over the sessions; null where neither happened."""
    rebuffer, play = pl.col("rebuffer_seconds").sum(), pl.col("play_time_seconds").sum()
    return pl.when(play + rebuffer > 0).then(rebuffer / (play + rebuffer)).alias("rebuffer_ratio")


def _per_play(count: pl.Expr, seconds: float) -> pl.Expr:
    """``count`` per ``seconds`` of play; null (not infinite) where nothing was played."""
    play = pl.col("play_time_seconds").sum()
    return pl.when(play > 0).then(count / (play / seconds))


def qoe_summary(details: pl.DataFrame, *, by: list[str] | None = None) -> pl.DataFrame:
    """QoE aggregated over sessions (after Mux Data's definitions), overall or per group.

    Playback failure rate (sessions with a fatal error), exit-before-start rate, rebuffer
    ratio (rebuffer time / (play + rebuffer time), over all sessions), rebuffer frequency
    (rebuffers per minute of play), time-weighted bitrate, upshifts and downshifts per
    hour of play, and the mean QoE score.

    Example:
        >>> d = pl.DataFrame({"recording_id": ["r", "r"], "fatal_errors": [1, 0], "exited_before_start": [False, True],
        ...     "rebuffer_seconds": [6.0, 0.0], "play_time_seconds": [54.0, 0.0], "buffer_events": [2, 0],
        ...     "time_weighted_bitrate": [2800.0, None], "upshifts": [1, 0], "downshifts": [0, 0],
        ...     "rebuffer_ratio": [0.1, None]})
        >>> qoe_summary(d, by=["recording_id"]).select("sessions", "playback_failure_rate", "rebuffer_ratio").row(0)
        (2, 0.5, 0.1)
    """
    scored = qoe(details)
    play = pl.col("play_time_seconds")
    bitrate_play = pl.col("play_time_seconds").filter(pl.col("time_weighted_bitrate").is_not_null())
    aggs = [
        pl.len().alias("sessions"),
        (pl.col("fatal_errors") > 0).mean().alias("playback_failure_rate"),
        pl.col("exited_before_start").mean().alias("exit_before_start_rate"),
        _rebuffer_ratio(),
        _per_play(pl.col("buffer_events").sum(), 60).alias("rebuffer_frequency"),
        ((pl.col("time_weighted_bitrate") * play).sum() / bitrate_play.sum()).alias("time_weighted_bitrate"),
        _per_play(pl.col("upshifts").sum(), 3600).alias("upshifts_per_hour"),
        _per_play(pl.col("downshifts").sum(), 3600).alias("downshifts_per_hour"),
        pl.col("qoe_score").mean().alias("qoe_score"),
    ]
    out = scored.group_by(by).agg(aggs).sort(by) if by else scored.select(aggs)
    return out.with_columns(pl.col(pl.Float64).fill_nan(None))


def retention(segments: pl.DataFrame, *, bin_seconds: float = 5.0) -> pl.DataFrame:
    """Audience retention per lecture: viewers per ``bin_seconds`` segment, the drop-off curve, rewatching.

    For each recording and segment of the content: ``unique_viewers`` (users who played any
    of it), ``views`` (sessions that did), ``retention`` (unique viewers / the recording's
    unique viewers), ``rewatch_sessions`` (sessions that played some of it more than once).

    Example:
        >>> segs = pl.DataFrame({"recording_id": ["r"] * 3, "user_id": ["a", "a", "b"], "session_id": ["s", "s", "t"],
        ...     "start": [0.0, 0.0, 0.0], "end": [10.0, 5.0, 4.0]})
        >>> retention(segs).select("bin", "unique_viewers", "rewatch_sessions", "retention").rows()
        [(0, 2, 1, 1.0), (1, 1, 0, 0.5)]
    """
    if bin_seconds <= 0:
        raise ValueError(f"bin_seconds={bin_seconds} must be positive, e.g. 5 for 5-second segments")
    by = ["recording_id", "user_id", "session_id"]
    pieces = sweep(segments, by).with_columns(
        pl.int_ranges(
            (pl.col("x") / bin_seconds).floor().cast(pl.Int64),
            ((pl.col("x") + pl.col("length")) / bin_seconds).ceil().cast(pl.Int64),
        ).alias("bin")
    )
    played = pieces.select(*by, "bin").explode("bin").unique()
    twice = pieces.filter(pl.col("depth") >= 2).select(*by, "bin").explode("bin").unique()
    viewers = played.group_by("recording_id").agg(pl.col("user_id").n_unique().alias("_viewers"))
    curve = played.group_by("recording_id", "bin").agg(
        pl.col("user_id").n_unique().alias("unique_viewers"), pl.len().alias("views")
    )
    rewatch = twice.group_by("recording_id", "bin").agg(pl.len().alias("rewatch_sessions"))
    return (
        curve.join(viewers, on="recording_id")
        .join(rewatch, on=["recording_id", "bin"], how="left")
        .with_columns(
            (pl.col("bin") * bin_seconds).alias("bin_start"),
            (pl.col("unique_viewers") / pl.col("_viewers")).alias("retention"),
            pl.col("rewatch_sessions").fill_null(0).cast(pl.UInt32),
        )
        .sort("recording_id", "bin")
        .select("recording_id", "bin", "bin_start", "unique_viewers", "views", "retention", "rewatch_sessions")
    )


def lecture_attendance(features: pl.DataFrame, recordings: pl.DataFrame, *, threshold: float = 0.5) -> pl.DataFrame:
    """Per lecture of a course: the course's students, the attendees (coverage >= ``threshold``) and the rate.

    ``attendance_rate = attendees / students x 100``, where the course's students are the
    users with a session on any of its lectures (spec section 4).

    Example:
        >>> rec = pl.DataFrame({"recording_id": ["l1", "l2"], "course_id": ["c", "c"]})
        >>> feats = pl.DataFrame({"user_id": ["a", "b", "a"], "recording_id": ["l1", "l1", "l2"],
        ...     "coverage": [1.0, 0.6, 0.3]})
        >>> lecture_attendance(feats, rec).select("recording_id", "attendees", "attendance_rate").rows()
        [('l1', 2, 100.0), ('l2', 0, 0.0)]
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold={threshold} must be a fraction in (0, 1], e.g. 0.5 for half the lecture")
    cat = recordings.filter(pl.col("course_id").is_not_null()).select("recording_id", "course_id")
    f = features.join(cat, on="recording_id")
    students = f.group_by("course_id").agg(pl.col("user_id").n_unique().alias("students"))
    attendees = (
        f.filter(pl.col("coverage") >= threshold)
        .group_by("recording_id")
        .agg(pl.col("user_id").n_unique().alias("attendees"))
    )
    return (
        cat.join(attendees, on="recording_id", how="left")
        .join(students, on="course_id", how="left")
        .with_columns(pl.col("attendees").fill_null(0), pl.col("students").fill_null(0))
        .with_columns(
            pl.when(pl.col("students") > 0)
            .then(pl.col("attendees") / pl.col("students") * 100)
            .alias("attendance_rate")
        )
        .sort("course_id", "recording_id")
        .select("course_id", "recording_id", "students", "attendees", "attendance_rate")
    )


def weekly_engagement(features: pl.DataFrame, recordings: pl.DataFrame) -> pl.DataFrame:
    """Per course and week: the mean engagement score of the user-recording pairs first watched that week.

    Example:
        >>> from datetime import datetime
        >>> rec = pl.DataFrame({"recording_id": ["l1"], "course_id": ["c"]})
        >>> feats = pl.DataFrame({"recording_id": ["l1", "l1"], "engagement_score": [40.0, 60.0],
        ...     "first_watched": [datetime(2026, 9, 1), datetime(2026, 9, 9)]})
        >>> weekly_engagement(feats, rec).select("week_index", "engagement_score").rows()
        [(0, 40.0), (1, 60.0)]
    """
    cat = recordings.filter(pl.col("course_id").is_not_null()).select("recording_id", "course_id")
    return (
        features.join(cat, on="recording_id")
        .with_columns(week_of("first_watched").alias("week"))
        .group_by("course_id", "week")
        .agg(pl.col("engagement_score").mean(), pl.len().alias("pairs"))
        .with_columns(
            ((pl.col("week") - pl.col("week").min().over("course_id")).dt.total_days() // 7).alias("week_index")
        )
        .sort("course_id", "week")
        .select("course_id", "week", "week_index", "engagement_score", "pairs")
    )


def engagement_trends(weekly: pl.DataFrame, *, per_week: float = 1.0) -> pl.DataFrame:
    """Per course: the least-squares slope of the weekly mean score and ``rising`` / ``falling`` / ``stable``.

    Stable within +-``per_week`` points per week, or with fewer than two weeks.

    Example:
        >>> w = pl.DataFrame({"course_id": ["c", "c", "c"], "week_index": [0, 1, 2],
        ...     "engagement_score": [50.0, 55.0, 61.0]})
        >>> engagement_trends(w).select("slope", "trend").row(0)
        (5.5, 'rising')
    """
    x, y = pl.col("week_index").cast(pl.Float64), pl.col("engagement_score")
    slope = ((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum()
    out = weekly.group_by("course_id").agg(pl.len().alias("weeks"), pl.when(pl.len() >= 2).then(slope).alias("slope"))
    trend = (
        pl.when(pl.col("slope") > per_week)
        .then(pl.lit("rising"))
        .when(pl.col("slope") < -per_week)
        .then(pl.lit("falling"))
        .otherwise(pl.lit("stable"))
    )
    return out.with_columns(pl.col("slope").fill_nan(None)).with_columns(trend.alias("trend")).sort("course_id")


def struggle_lectures(lectures: pl.DataFrame) -> pl.DataFrame:
    """The lectures that meet at least two of three struggle signals against their course's median.

    Signals (on the columns of the lecture statistics): replayed content per view
    ``rewatch_fraction`` at least 1.5 x the median; ``backward_seeks_per_view`` at least
    1.5 x the median (for both, only when the median is above 0); and
    ``average_completion_rate`` at most 0.75 x the median. Returns the matching rows with
    their ``signals`` count.

    Example:
        >>> lec = pl.DataFrame({"course_id": ["c"] * 4, "recording_id": ["a", "b", "c", "d"],
        ...     "rewatch_fraction": [0.1, 0.1, 0.3, 0.1], "backward_seeks_per_view": [1.0, 1.0, 2.0, 3.0],
        ...     "average_completion_rate": [80.0, 80.0, 40.0, 80.0]})
        >>> struggle_lectures(lec)["recording_id"].to_list()
        ['c']
    """
    by_course = pl.col("course_id")
    med = {
        c: pl.col(c).median().over(by_course)
        for c in ("rewatch_fraction", "backward_seeks_per_view", "average_completion_rate")
    }

    def signal(expr: pl.Expr) -> pl.Expr:
        return expr.fill_null(False).cast(pl.Int8)

    signals = (
        signal((pl.col("rewatch_fraction") >= 1.5 * med["rewatch_fraction"]) & (med["rewatch_fraction"] > 0))
        + signal(
            (pl.col("backward_seeks_per_view") >= 1.5 * med["backward_seeks_per_view"])
            & (med["backward_seeks_per_view"] > 0)
        )
        + signal(pl.col("average_completion_rate") <= 0.75 * med["average_completion_rate"])
    )
    return (
        lectures.with_columns(signals.alias("signals")).filter(pl.col("signals") >= 2).sort("course_id", "recording_id")
    )


def attendance_categories(features: pl.DataFrame, recordings: pl.DataFrame) -> pl.DataFrame:
    """Per course, week and student: lectures published that week, how many the student viewed, and the category.

    ``category`` is ``none``, ``some`` or ``all`` of the week's lectures viewed (as Open
    edX Aspects reports it). A course's students are the users with a session on any of
    its lectures; a lecture's week is the week (Monday, UTC) of its ``published_at``.

    Example:
        >>> rec = pl.DataFrame({"recording_id": ["l1", "l2"], "course_id": ["c", "c"],
        ...     "published_at": [__import__("datetime").datetime(2026, 9, 1)] * 2})
        >>> feats = pl.DataFrame({"user_id": ["a", "b", "a"], "recording_id": ["l1", "l1", "l2"]})
        >>> attendance_categories(feats, rec).select("user_id", "viewed", "category").rows()
        [('a', 2, 'all'), ('b', 1, 'some')]
    """
    lectures = recordings.filter(pl.col("course_id").is_not_null() & pl.col("published_at").is_not_null()).select(
        "recording_id", "course_id", week_of("published_at").alias("week")
    )
    per_week = lectures.group_by("course_id", "week").agg(pl.len().alias("lectures"))
    viewed = features.select("user_id", "recording_id").unique().join(lectures, on="recording_id")
    students = viewed.select("course_id", "user_id").unique()
    grid = students.join(per_week, on="course_id")
    counts = viewed.group_by("course_id", "week", "user_id").agg(pl.len().alias("viewed"))
    out = grid.join(counts, on=["course_id", "week", "user_id"], how="left").with_columns(pl.col("viewed").fill_null(0))
    category = (
        pl.when(pl.col("viewed") == 0)
        .then(pl.lit("none"))
        .when(pl.col("viewed") < pl.col("lectures"))
        .then(pl.lit("some"))
        .otherwise(pl.lit("all"))
    )
    return (
        out.with_columns(category.alias("category"))
        .sort("course_id", "week", "user_id")
        .select("course_id", "week", "user_id", "lectures", "viewed", "category")
    )


def at_risk_students(
    features: pl.DataFrame, recordings: pl.DataFrame, *, below: float = 0.5, weeks: int = 2
) -> pl.DataFrame:
    """Students whose weekly mean engagement was under ``below`` x their cohort's median for ``weeks`` weeks running.

    The cohort is the course's students; a student's week is the week of the lectures'
    publication. A week in which the student viewed none of the published lectures counts
    as a score of 0. Returns one row per student and course that fired, with the last week
    of the run, its length and the numbers behind it.

    Example:
        >>> from datetime import datetime
        >>> rec = pl.DataFrame({"recording_id": ["l1", "l2"], "course_id": ["c", "c"],
        ...     "published_at": [datetime(2026, 9, 1), datetime(2026, 9, 8)]})
        >>> feats = pl.DataFrame({"user_id": ["a", "b", "c", "a", "b", "c"], "recording_id": ["l1"] * 3 + ["l2"] * 3,
        ...     "engagement_score": [80.0, 70.0, 10.0, 90.0, 60.0, 5.0]})
        >>> at_risk_students(feats, rec).select("user_id", "weeks_below", "rule").rows()
        [('c', 2, 'weekly engagement < 0.5 x cohort median for 2 weeks running')]
    """
    if not 0 < below <= 1 or weeks < 1:
        raise ValueError(f"below={below} must be in (0, 1] and weeks={weeks} at least 1")
    lectures = recordings.filter(pl.col("course_id").is_not_null() & pl.col("published_at").is_not_null()).select(
        "recording_id", "course_id", week_of("published_at").alias("week")
    )
    scored = features.select("user_id", "recording_id", "engagement_score").join(lectures, on="recording_id")
    students = scored.select("course_id", "user_id").unique()
    grid = students.join(lectures.select("course_id", "week").unique(), on="course_id")
    weekly = grid.join(
        scored.group_by("course_id", "week", "user_id").agg(pl.col("engagement_score").mean().alias("score")),
        on=["course_id", "week", "user_id"],
        how="left",
    ).with_columns(pl.col("score").fill_null(0.0))
    weekly = weekly.with_columns(pl.col("score").median().over("course_id", "week").alias("cohort_median"))
    weekly = weekly.sort("course_id", "user_id", "week").with_columns(
        (pl.col("score") < below * pl.col("cohort_median")).alias("low")
    )
    run_id = run_starts(["low"]).cum_sum().over("course_id", "user_id")
    weekly = weekly.with_columns(run_id.alias("_run"))
    runs = (
        weekly.filter(pl.col("low"))
        .group_by("course_id", "user_id", "_run")
        .agg(
            pl.len().alias("weeks_below"),
            pl.col("week").max().alias("last_week"),
            pl.col("score").mean().alias("mean_score"),
            pl.col("cohort_median").mean().alias("mean_cohort_median"),
        )
        .filter(pl.col("weeks_below") >= weeks)
        .sort("last_week")
        .group_by("course_id", "user_id")
        .last()  # the latest run: a student who fell behind twice is listed once
    )
    rule = f"weekly engagement < {below} x cohort median for {weeks} weeks running"
    return runs.drop("_run").with_columns(pl.lit(rule).alias("rule")).sort("course_id", "user_id", "last_week")


def qoe_and_engagement(details: pl.DataFrame) -> pl.DataFrame:
    """Completion and early exits by rebuffer-ratio band and by quality, with counts to judge them by.

    One row per (``dimension``, ``group``): sessions, mean completion rate (where known),
    the share of sessions that exited before start, and mean watched seconds. Bands are
    ``[0, 1%)``, ``[1%, 5%)``, ``[5%, 10%)``, ``10%+`` of rebuffer ratio, and ``no play``.

    Example:
        >>> d = pl.DataFrame({"rebuffer_ratio": [0.0, 0.2, None], "quality": ["720p", "720p", None],
        ...     "completion_rate": [90.0, 30.0, None], "exited_before_start": [False, False, True],
        ...     "watched_seconds": [540, 180, 0]})
        >>> qoe_and_engagement(d).filter(pl.col("dimension") == "rebuffer_ratio").select("group", "sessions").rows()
        [('0-1%', 1), ('10%+', 1), ('no play', 1)]
    """
    labels = ["0-1%", "1-5%", "5-10%", "10%+"]
    ratio = pl.col("rebuffer_ratio")
    band = pl.coalesce(  # the bands do not overlap: at most one is not null
        pl.when(ratio.is_null()).then(pl.lit("no play")),
        *(
            pl.when(ratio >= low if high is None else (ratio >= low) & (ratio < high)).then(pl.lit(label))
            for low, high, label in zip(REBUFFER_BANDS, [*REBUFFER_BANDS[1:], None], labels, strict=True)
        ),
    )
    aggs = [
        pl.len().alias("sessions"),
        pl.col("completion_rate").mean().alias("mean_completion_rate"),
        pl.col("exited_before_start").mean().alias("exit_before_start_rate"),
        pl.col("watched_seconds").mean().alias("mean_watched_seconds"),
    ]
    by_band = (
        details.with_columns(band.alias("group"))
        .group_by("group")
        .agg(aggs)
        .with_columns(pl.lit("rebuffer_ratio").alias("dimension"))
    )
    by_quality = (
        details.with_columns(pl.col("quality").fill_null("unknown").alias("group"))
        .group_by("group")
        .agg(aggs)
        .with_columns(pl.lit("quality").alias("dimension"))
    )
    return (
        pl.concat([by_band, by_quality])
        .select("dimension", "group", *[a.meta.output_name() for a in aggs])
        .sort("dimension", "group")
    )


REALTIME_RATE_SECONDS: Final = 60
"""The window (seconds) over which :func:`realtime` measures events per second."""

REALTIME_REBUFFER_MINUTES: Final = 5
"""The window (minutes) over which :func:`realtime` measures the rebuffer ratio."""


@dataclass(frozen=True)
class Realtime:
    """What is happening now: see :func:`realtime`.

    Example:
        >>> Realtime(as_of=datetime(2026, 9, 1), active_minutes=5, events_per_second=2.5, rebuffer_ratio=None,
        ...          recordings=pl.DataFrame()).events_per_second
        2.5
    """

    as_of: datetime
    active_minutes: float
    events_per_second: float
    rebuffer_ratio: float | None
    recordings: pl.DataFrame


def realtime_window(active_minutes: float) -> timedelta:
    """How far back :func:`realtime` reads events: the activity window or the rebuffer window, the longer.

    Example:
        >>> realtime_window(2), realtime_window(30)
        (datetime.timedelta(seconds=300), datetime.timedelta(seconds=1800))
    """
    return timedelta(minutes=max(active_minutes, REALTIME_REBUFFER_MINUTES))


def realtime(events: pl.DataFrame, *, now: datetime, active_minutes: float = 5.0) -> Realtime:
    """Viewers active in the last ``active_minutes`` per recording, events per second, recent rebuffer ratio.

    By event time: a viewer is active on a recording when they sent any event for it
    in ``(now - active_minutes, now]``; events per second counts the events of the
    last :data:`REALTIME_RATE_SECONDS`; the rebuffer ratio is rebuffer time / (play +
    rebuffer time) of the sessions (spec section 3) cut to their events of the last
    :data:`REALTIME_REBUFFER_MINUTES` minutes (as :func:`qoe_summary`; None where nothing
    played or buffered). Per recording:
    ``active_viewers``, ``events_per_second`` and ``rebuffer_ratio`` on the same terms.

    Example:
        >>> from vtp_lab.synth import semester
        >>> ev = semester(courses=1, lectures_per_course=1, students=3, seed=1).events
        >>> r = realtime(ev, now=ev["event_timestamp"].max(), active_minutes=5)
        >>> r.recordings.columns, r.events_per_second > 0
        (['recording_id', 'active_viewers', 'events_per_second', 'rebuffer_ratio'], True)
    """
    if not active_minutes > 0:
        raise ValueError(f"active_minutes={active_minutes} must be more than 0, e.g. 5 for the last five minutes")
    ts = pl.col("event_timestamp")
    recent = events.filter(ts <= now, ts > now - realtime_window(active_minutes))
    in_rate = ts > now - timedelta(seconds=REALTIME_RATE_SECONDS)
    details = session_details(recent.filter(ts > now - timedelta(minutes=REALTIME_REBUFFER_MINUTES)))
    ratio = _rebuffer_ratio()
    per_recording = (
        recent.filter(ts > now - timedelta(minutes=active_minutes))
        .group_by("recording_id")
        .agg(pl.col("user_id").n_unique().alias("active_viewers"))
        .join(
            recent.group_by("recording_id").agg((in_rate.sum() / REALTIME_RATE_SECONDS).alias("events_per_second")),
            on="recording_id",
            how="left",
        )
        .join(details.group_by("recording_id").agg(ratio), on="recording_id", how="left")
        .sort("active_viewers", "recording_id", descending=[True, False])
    )
    return Realtime(
        as_of=now,
        active_minutes=active_minutes,
        events_per_second=recent.filter(in_rate).height / REALTIME_RATE_SECONDS,
        rebuffer_ratio=details.select(ratio).item(),
        recordings=per_recording,
    )


_ALERT_SCHEMA: Final = {
    "kind": pl.String,
    "subject": pl.String,
    "course_id": pl.String,
    "rule": pl.String,
    "details": pl.String,
}


def _details(**fields: pl.Expr) -> pl.Expr:
    """The numbers behind an alert as one JSON object per row."""
    return pl.struct([expr.alias(name) for name, expr in fields.items()]).struct.json_encode().alias("details")


def alerts(
    *,
    features: pl.DataFrame,
    details: pl.DataFrame,
    courses: pl.DataFrame,
    recordings: pl.DataFrame,
    below: float = 0.5,
    weeks: int = 2,
    qoe_drop: float = 10.0,
) -> pl.DataFrame:
    """Low-engagement students, struggle lectures and QoE regressions, each with its rule and numbers.

    Takes the engagement features, session details, course statistics and recordings
    catalogue (a :class:`~vtp_lab.stats.Derived`'s frames, or any cohort's). A student is
    low-engagement by :func:`at_risk_students` (``below``, ``weeks``); a struggle lecture is
    one of the course statistics' ``struggle_lectures``; a QoE regression is a lecture
    whose mean QoE score in its latest week of viewing is more than ``qoe_drop`` points
    below its mean over the earlier weeks. ``details`` holds each alert's numbers as JSON.

    Example:
        >>> from vtp_lab.stats import derive
        >>> from vtp_lab.synth import semester
        >>> d = derive(semester(courses=1, lectures_per_course=3, students=8, seed=4).events)
        >>> table = alerts(features=d.engagement_features, details=d.session_details,
        ...     courses=d.course_statistics, recordings=d.recordings, below=0.9, weeks=1)
        >>> table.columns, table["kind"].is_in(["low_engagement", "struggle_lecture", "qoe_regression"]).all()
        (['kind', 'subject', 'course_id', 'rule', 'details'], True)
    """
    risk = at_risk_students(features, recordings, below=below, weeks=weeks).select(
        pl.lit("low_engagement").alias("kind"),
        pl.col("user_id").alias("subject"),
        "course_id",
        "rule",
        _details(
            weeks_below=pl.col("weeks_below"),
            last_week=pl.col("last_week").dt.date().cast(pl.String),
            mean_score=pl.col("mean_score").round(2),
            cohort_median=pl.col("mean_cohort_median").round(2),
        ),
    )
    struggle = (
        courses.select("course_id", "average_completion_rate", "struggle_lectures")
        .explode("struggle_lectures")
        .drop_nulls("struggle_lectures")
        .select(
            pl.lit("struggle_lecture").alias("kind"),
            pl.col("struggle_lectures").alias("subject"),
            "course_id",
            pl.lit("at least two struggle signals against the course median (docs/metrics.md)").alias("rule"),
            _details(course_average_completion_rate=pl.col("average_completion_rate")),
        )
    )
    weekly = (
        qoe(details)
        .group_by("recording_id", week_of("started_at").alias("week"))
        .agg(pl.col("qoe_score").mean().alias("qoe"))
        .with_columns(pl.col("week").max().over("recording_id").alias("latest"))
    )
    regressions = (
        weekly.group_by("recording_id")
        .agg(
            pl.col("qoe").filter(pl.col("week") == pl.col("latest")).mean().alias("latest_qoe"),
            pl.col("qoe").filter(pl.col("week") < pl.col("latest")).mean().alias("earlier_qoe"),
        )
        .filter(pl.col("earlier_qoe") - pl.col("latest_qoe") > qoe_drop)
        .join(recordings.select("recording_id", "course_id").unique("recording_id"), on="recording_id", how="left")
        .sort("recording_id")
        .select(
            pl.lit("qoe_regression").alias("kind"),
            pl.col("recording_id").alias("subject"),
            "course_id",
            pl.lit(f"latest week's QoE more than {qoe_drop} points below the earlier weeks'").alias("rule"),
            _details(latest_qoe=pl.col("latest_qoe").round(2), earlier_qoe=pl.col("earlier_qoe").round(2)),
        )
    )
    return pl.concat([part.cast(_ALERT_SCHEMA) for part in (risk, struggle, regressions)])  # type: ignore[arg-type]
