"""The six reports of the platform's design note, built from frames, and the registry that finds them by kind.

Five reports read the derived tables (a :class:`~vtp_lab.stats.Derived`: from
:func:`~vtp_lab.stats.derive` over any cohort's events, or ``lab.derived()``); the
compliance report reads the store's :class:`Audit` (the load ledger, the quarantine and
the events' times). Build one with the function named after it (``student``,
``attendance``, ``engagement``, ``performance``, ``quality``, ``compliance``), by kind
with :func:`build` (through :data:`REPORTS`), or with ``lab.report(kind, ...)``.

Example:
    >>> from vtp_lab.stats import derive
    >>> from vtp_lab.synth import semester
    >>> r = engagement(derive(semester(courses=1, lectures_per_course=2, students=5, seed=3).events))
    >>> r.kind, r.headline["students"] > 0
    ('engagement', True)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

import polars as pl

from vtp_lab.errors import NotFoundError
from vtp_lab.metrics import at_risk_students, attendance_categories, lecture_attendance, qoe_summary, week_of
from vtp_lab.plot import bars, line
from vtp_lab.recordings import course_titles, lecture_titles
from vtp_lab.reports.rendering import REPORT_KINDS, Report, ReportKind
from vtp_lab.stats import Derived

__all__ = [
    "REPORTS",
    "REPORT_KINDS",
    "AttendanceReport",
    "Audit",
    "ComplianceReport",
    "EngagementReport",
    "PerformanceReport",
    "QualityReport",
    "Report",
    "ReportBuilder",
    "ReportKind",
    "StudentEngagementReport",
    "attendance",
    "build",
    "compliance",
    "engagement",
    "entry",
    "performance",
    "quality",
    "student",
]


@dataclass(frozen=True)
class Audit:
    """What the compliance report reads: the load ledger, the quarantine and the stored events' times.

    Example:
        >>> import vtp_lab as vl
        >>> lab = vl.Lab(":memory:")
        >>> a = Audit(loads=lab.loads(), rejected_events=lab.rejected_events(),
        ...     event_timestamps=lab.events()["event_timestamp"])
        >>> compliance(a).headline["loads"]
        0
    """

    loads: pl.DataFrame
    rejected_events: pl.DataFrame
    event_timestamps: pl.Series
    viewing: pl.DataFrame | None = None
    """Per student and lecture, whether the viewing requirement was met (:func:`vtp_lab.stats.viewing_compliance`)."""
    requirement: str = ""
    """The requirement in words."""


def _scoped(
    derived: Derived, course_id: str | None, recording_id: str | None
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(session details, engagement features, catalogue) narrowed to a course or recording."""
    cat = derived.recordings
    recs = cat["recording_id"]
    if course_id is not None:
        recs = cat.filter(pl.col("course_id") == course_id)["recording_id"]
        if recs.is_empty():
            known = cat["course_id"].drop_nulls().unique().sort().to_list()
            raise NotFoundError(kind="course", value=course_id, known=known, where="lab.recordings()")
    if recording_id is not None:
        scope = recs
        recs = recs.filter(recs == recording_id)
        if recs.is_empty():
            where = f" in course {course_id!r}" if course_id is not None else ""
            raise NotFoundError(
                kind="recording", value=recording_id, known=scope.to_list(), where="lab.recordings()", scope=where
            )
    keep = pl.col("recording_id").is_in(recs.implode())
    return derived.session_details.filter(keep), derived.engagement_features.filter(keep), cat.filter(keep)


@dataclass(frozen=True)
class StudentEngagementReport(Report):
    """One student's watch history, coverage per lecture and engagement over time.

    Example:
        >>> REPORTS["student"].needs
        ('user_id',)
    """


def student(derived: Derived, *, user_id: str) -> StudentEngagementReport:
    """One student's engagement: watch history, coverage per lecture, engagement by week.

    Example:
        >>> from vtp_lab.stats import derive
        >>> from vtp_lab.tables import ANALYTICS_EVENTS
        >>> user = "6ba7b812-9dad-11d1-80b4-00c04fd430c8"
        >>> student(derive(ANALYTICS_EVENTS.empty()), user_id=user)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        vtp_lab.errors.NotFoundError: no user '6ba7b812-9dad-11d1-80b4-00c04fd430c8'; ...
    """
    sessions = derived.session_details.filter(pl.col("user_id") == user_id)
    if sessions.is_empty():
        known = derived.session_details["user_id"].unique().sort().to_list()
        raise NotFoundError(kind="user", value=user_id, known=known, where="lab.engagement_metrics()")
    feats = derived.engagement_features.filter(pl.col("user_id") == user_id)
    titles = lecture_titles(derived.recordings)
    history = (
        sessions.join(titles, on="recording_id", how="left")
        .sort("started_at")
        .select(
            "started_at",
            "title",
            "recording_id",
            "watched_seconds",
            "completion_rate",
            "quality",
            "play_time_seconds",
            "ended_at",
        )
    )
    coverage = (
        feats.join(titles, on="recording_id", how="left")
        .select(
            "title",
            "recording_id",
            (pl.col("coverage") * 100).round(1).alias("coverage_percent"),
            "total_views",
            "engagement_score",
        )
        .sort("title")
    )
    weekly = (
        feats.with_columns(week_of("first_watched").dt.date().alias("week"))
        .group_by("week")
        .agg(pl.col("engagement_score").mean().alias("engagement_score"), pl.len().alias("lectures"))
        .sort("week")
    )
    return StudentEngagementReport(
        kind="student",
        title=f"Student engagement: {user_id}",
        scope={"user_id": user_id},
        headline={
            "lectures_watched": feats.height,
            "sessions": sessions.height,
            "watch_hours": round(cast(float, sessions["watched_seconds"].sum()) / 3600, 2),
            "mean_engagement_score": cast(float, feats["engagement_score"].mean() or 0.0),
            "mean_coverage_percent": cast(float, feats["coverage"].mean() or 0.0) * 100,
        },
        tables={"watch_history": history, "coverage_per_lecture": coverage, "engagement_by_week": weekly},
        charts={
            "engagement_by_week": line(
                weekly, x="week:T", y="engagement_score:Q", title="Engagement score by week"
            ).to_dict()
        },
    )


@dataclass(frozen=True)
class AttendanceReport(Report):
    """Attendance per lecture and per week, with the none / some / all patterns.

    Example:
        >>> import vtp_lab as vl
        >>> type(vl.Lab(":memory:").report("attendance")).__name__
        'AttendanceReport'
    """


def attendance(derived: Derived, *, course_id: str | None = None, threshold: float = 0.5) -> AttendanceReport:
    """Attendance per lecture (attendees covered ``threshold`` of it) and per week (none / some / all viewed).

    Example:
        >>> from vtp_lab.stats import derive
        >>> from vtp_lab.tables import ANALYTICS_EVENTS
        >>> attendance(derive(ANALYTICS_EVENTS.empty())).headline["lectures"]
        0
    """
    _, feats, cat = _scoped(derived, course_id, None)
    per_lecture = lecture_attendance(feats, cat, threshold=threshold)
    lectures = (
        per_lecture.join(lecture_titles(cat), on="recording_id")
        .join(
            derived.lecture_statistics.select("recording_id", "unique_viewers", "average_completion_rate"),
            on="recording_id",
            how="left",
        )
        .select(
            "title",
            "recording_id",
            "course_id",
            "students",
            "attendees",
            "attendance_rate",
            "unique_viewers",
            "average_completion_rate",
        )
        .sort("course_id", "title")
    )
    categories = attendance_categories(feats, cat)
    patterns = (
        categories.group_by("course_id", "week", "category")
        .agg(pl.len().alias("students"))
        .sort("course_id", "week", "category")
    )
    return AttendanceReport(
        kind="attendance",
        title="Attendance" + (f": course {course_id}" if course_id else ""),
        scope={"course_id": course_id},
        headline={
            "lectures": cat.height,
            "students": int(feats["user_id"].n_unique()),
            "mean_attendance_rate": cast(float, lectures["attendance_rate"].mean()) if lectures.height else None,
            "attendance_threshold": threshold,
            "weeks": int(categories["week"].n_unique()),
        },
        tables={"lectures": lectures, "weekly_patterns": patterns, "per_student": categories},
        charts={
            "weekly_patterns": bars(
                patterns.with_columns(pl.col("week").dt.date()),
                x="week:T",
                y="students:Q",
                title="Students by week and category",
            ).to_dict()
        }
        if patterns.height
        else {},
    )


@dataclass(frozen=True)
class EngagementReport(Report):
    """A course's engagement: its distribution, per lecture, and risk alerts.

    Example:
        >>> issubclass(EngagementReport, Report)
        True
    """


def engagement(derived: Derived, *, course_id: str | None = None) -> EngagementReport:
    """A course's (or every course's) engagement: distribution, per lecture, and students at risk.

    Example:
        >>> from vtp_lab.stats import derive
        >>> from vtp_lab.tables import ANALYTICS_EVENTS
        >>> engagement(derive(ANALYTICS_EVENTS.empty())).headline["students"]
        0
    """
    _, feats, cat = _scoped(derived, course_id, None)
    bands = feats.with_columns((pl.col("engagement_score") // 10 * 10).clip(0, 90).cast(pl.Int32).alias("score_band"))
    distribution = bands.group_by("score_band").agg(pl.len().alias("pairs")).sort("score_band")
    lectures = (
        derived.lecture_statistics.join(lecture_titles(cat), on="recording_id")
        .select("title", "recording_id", "avg_engagement_score", "average_completion_rate", "unique_viewers")
        .sort("avg_engagement_score")
    )
    risk = at_risk_students(feats.select("user_id", "recording_id", "engagement_score"), cat)
    return EngagementReport(
        kind="engagement",
        title="Engagement" + (f": course {course_id}" if course_id else ""),
        scope={"course_id": course_id},
        headline={
            "students": int(feats["user_id"].n_unique()),
            "mean_engagement_score": cast(float, feats["engagement_score"].mean()) if feats.height else None,
            "median_engagement_score": cast(float, feats["engagement_score"].median()) if feats.height else None,
            "students_at_risk": int(risk["user_id"].n_unique()),
        },
        tables={"score_distribution": distribution, "lectures": lectures, "students_at_risk": risk},
        charts={
            "score_distribution": bars(
                distribution, x="score_band:O", y="pairs:Q", title="Engagement score distribution (student x lecture)"
            ).to_dict()
        }
        if distribution.height
        else {},
        notes=tuple(
            f"at risk: {r['user_id']} ({r['rule']}; "
            f"mean {r['mean_score']:.1f} against a median of {r['mean_cohort_median']:.1f})"
            for r in risk.head(10).iter_rows(named=True)
        ),
    )


_RECOMMENDATIONS: Final = (
    (
        "playback_failure_rate",
        0.02,
        "Playback failures above 2% of sessions: "
        "look at the errors' codes (error_occurred metadata) per browser and network.",
    ),
    (
        "exit_before_start_rate",
        0.05,
        "More than 5% of sessions exit before start: check start-up time and the first segment's bitrate.",
    ),
    (
        "rebuffer_ratio",
        0.01,
        "Rebuffering above 1% of viewing time: lower the starting bitrate or check the CDN for the affected lectures.",
    ),
    (
        "downshifts_per_hour",
        6.0,
        "More than 6 downshifts per hour of play: the bitrate ladder may be too aggressive for students' links.",
    ),
)


@dataclass(frozen=True)
class PerformanceReport(Report):
    """Quality of experience: failures, rebuffering, bitrate, with recommendations.

    Example:
        >>> REPORTS["performance"].scope
        ('course_id', 'recording_id')
    """


def performance(
    derived: Derived, *, course_id: str | None = None, recording_id: str | None = None
) -> PerformanceReport:
    """Quality of experience: failures, rebuffering, bitrate, per lecture, with recommendations.

    Example:
        >>> from vtp_lab.stats import derive
        >>> from vtp_lab.tables import ANALYTICS_EVENTS
        >>> performance(derive(ANALYTICS_EVENTS.empty())).headline["sessions"]
        0
    """
    details, _, cat = _scoped(derived, course_id, recording_id)
    overall = qoe_summary(details)
    per_lecture = (
        qoe_summary(details, by=["recording_id"])
        .join(lecture_titles(cat), on="recording_id", how="left")
        .sort("qoe_score")
    )
    row = overall.row(0, named=True) if overall.height else {}
    notes = tuple(text for key, limit, text in _RECOMMENDATIONS if (row.get(key) or 0) > limit) or (
        ("No QoE measure is past its threshold.",) if details.height else ()
    )
    return PerformanceReport(
        kind="performance",
        title="Playback performance (QoE)",
        scope={"course_id": course_id, "recording_id": recording_id},
        headline={
            "sessions": details.height,
            **{
                k: row.get(k)
                for k in (
                    "playback_failure_rate",
                    "exit_before_start_rate",
                    "rebuffer_ratio",
                    "rebuffer_frequency",
                    "time_weighted_bitrate",
                    "qoe_score",
                )
            },
        },
        tables={"overall": overall, "per_lecture": per_lecture},
        charts={
            "qoe_per_lecture": bars(
                per_lecture.head(30), x="title:N", y="qoe_score:Q", title="QoE score per lecture (lowest first)"
            ).to_dict()
        }
        if per_lecture.height
        else {},
        notes=notes,
    )


@dataclass(frozen=True)
class QualityReport(Report):
    """Quality distribution, switches and streaming health.

    Example:
        >>> entry("quality").builder.__name__
        'quality'
    """


def quality(derived: Derived, *, course_id: str | None = None, recording_id: str | None = None) -> QualityReport:
    """Quality distribution (play time per quality), switches by reason, and streaming health by week.

    Example:
        >>> from vtp_lab.stats import derive
        >>> from vtp_lab.tables import ANALYTICS_EVENTS
        >>> quality(derive(ANALYTICS_EVENTS.empty())).headline["quality_switches"]
        0
    """
    details, _, cat = _scoped(derived, course_id, recording_id)
    recs = cat["recording_id"].implode()
    distribution = (
        derived.quality_play.filter(pl.col("recording_id").is_in(recs))
        .group_by("quality")
        .agg(pl.col("play_seconds").sum())
        .sort("play_seconds", descending=True)
    )
    switches = (
        derived.quality_events.filter(pl.col("recording_id").is_in(recs))
        .group_by("reason", "new_quality")
        .agg(pl.len().alias("switches"))
        .sort("switches", descending=True)
    )
    weeks = details.with_columns(week_of("started_at").dt.date().alias("week"))
    health = qoe_summary(weeks, by=["week"]).select("week", "sessions", "qoe_score", "rebuffer_ratio")
    total = float(distribution["play_seconds"].sum()) if distribution.height else 0.0
    high = (
        float(distribution.filter(pl.col("quality").is_in(["720p", "1080p", "1440p", "2160p"]))["play_seconds"].sum())
        if distribution.height
        else 0.0
    )
    play_hours = float(details["play_time_seconds"].sum()) / 3600 if details.height else 0.0
    return QualityReport(
        kind="quality",
        title="Streaming quality",
        scope={"course_id": course_id, "recording_id": recording_id},
        headline={
            "play_hours": round(play_hours, 2),
            "share_at_720p_or_better": high / total if total else None,
            "quality_switches": int(switches["switches"].sum()) if switches.height else 0,
            "switches_per_hour": float(switches["switches"].sum()) / play_hours if play_hours else None,
        },
        tables={"quality_distribution": distribution, "switches": switches, "health_by_week": health},
        charts={"health_by_week": line(health, x="week:T", y="qoe_score:Q", title="QoE score by week").to_dict()}
        if health.height
        else {},
    )


@dataclass(frozen=True)
class ComplianceReport(Report):
    """The audit trail: every load, rejections by reason, the date range and gaps in the data.

    Example:
        >>> REPORTS["compliance"].reads
        'audit'
    """


def compliance(audit: Audit) -> ComplianceReport:
    """Engagement compliance (who met the viewing requirement, when given) and the audit trail.

    The audit trail: every load with its counts, rejections by reason, the dates covered
    and the gaps.

    Example:
        >>> import vtp_lab as vl
        >>> lab = vl.Lab(":memory:")
        >>> compliance(Audit(loads=lab.loads(), rejected_events=lab.rejected_events(),
        ...     event_timestamps=pl.Series("event_timestamp", [], pl.Datetime("us", "UTC")))).headline["loads"]
        0
    """
    loads = audit.loads.sort("started_at")
    rejected = audit.rejected_events
    events = audit.event_timestamps.to_frame("event_timestamp")
    by_reason = rejected.group_by("reason").agg(pl.len().alias("rows")).sort("rows", descending=True)
    days = events.select(pl.col("event_timestamp").dt.date().alias("day")).unique().sort("day")
    gaps = pl.DataFrame(schema={"from": pl.Date, "to": pl.Date, "days": pl.Int64})
    if days.height > 1:
        gaps = (
            days.with_columns(pl.col("day").shift(-1).alias("next"))
            .with_columns(((pl.col("next") - pl.col("day")).dt.total_days() - 1).alias("days"))
            .filter(pl.col("days") > 0)
            .select(
                (pl.col("day") + pl.duration(days=1)).alias("from"),
                (pl.col("next") - pl.duration(days=1)).alias("to"),
                "days",
            )
        )
    ledger = loads.select(
        "started_at",
        "source",
        "format",
        "rows_read",
        "accepted",
        "rejected",
        "duplicates",
        "rejected_by_reason",
        "error",
    )
    first = events["event_timestamp"].min() if events.height else None
    last = events["event_timestamp"].max() if events.height else None
    return ComplianceReport(
        kind="compliance",
        title=f"{'Engagement' if audit.viewing is not None else 'Data'} compliance and audit trail",
        scope={},
        headline={
            "loads": loads.height,
            "rows_read": int(loads["rows_read"].sum()),
            "accepted": int(loads["accepted"].sum()),
            "rejected": int(loads["rejected"].sum()),
            "duplicates": int(loads["duplicates"].sum()),
            "quarantined_rows": rejected.height,
            "first_event": first,
            "last_event": last,
            "days_without_events": int(gaps["days"].sum()) if gaps.height else 0,
        },
        tables={**_viewing_tables(audit.viewing), "loads": ledger, "rejected_by_reason": by_reason, "gaps": gaps},
        notes=(
            *((f"Viewing requirement: {audit.requirement}.",) if audit.viewing is not None else ()),
            *(
                f"{row['source']}: {row['error']}"
                for row in loads.filter(pl.col("error").is_not_null()).iter_rows(named=True)
            ),
        ),
    )


def _viewing_tables(viewing: pl.DataFrame | None) -> dict[str, pl.DataFrame]:
    """The engagement compliance tables: per lecture, per student, and each requirement a student missed."""
    if viewing is None:
        return {}
    per_lecture = (
        viewing.group_by("course_id", "recording_id", "title", "due_at")
        .agg(pl.len().alias("students"), pl.col("met").sum().alias("met"))
        .with_columns((100 * pl.col("met") / pl.col("students")).alias("met_percent"))
        .sort("course_id", "due_at", "recording_id")
    )
    per_student = (
        viewing.group_by("course_id", "user_id")
        .agg(pl.len().alias("required"), pl.col("met").sum().alias("met"))
        .with_columns((pl.col("required") - pl.col("met")).alias("missed"))
        .sort("missed", "course_id", "user_id", descending=[True, False, False])
    )
    missed = viewing.filter(~pl.col("met")).select(
        "user_id", "course_id", "title", "recording_id", "due_at", "coverage"
    )
    return {"viewing_by_lecture": per_lecture, "viewing_by_student": per_student, "viewing_missed": missed}


ReportBuilder = Callable[..., Report]
"""A report's builder: its input (a :class:`~vtp_lab.stats.Derived` or an :class:`Audit`), then its scope keywords."""

Scope = Literal["course_id", "user_id", "recording_id"]


@dataclass(frozen=True)
class _Entry:
    """A report kind: its builder, what it reads, the scope keywords it takes and those it needs."""

    builder: ReportBuilder
    reads: Literal["derived", "audit"]
    scope: tuple[Scope, ...] = ()
    needs: tuple[Scope, ...] = ()


REPORTS: Final[Mapping[ReportKind, _Entry]] = {
    "student": _Entry(student, "derived", ("user_id",), ("user_id",)),
    "attendance": _Entry(attendance, "derived", ("course_id",)),
    "engagement": _Entry(engagement, "derived", ("course_id",)),
    "performance": _Entry(performance, "derived", ("course_id", "recording_id")),
    "quality": _Entry(quality, "derived", ("course_id", "recording_id")),
    "compliance": _Entry(compliance, "audit"),
}
"""Every report kind: its builder, whether it reads the derived tables or the audit, and its scope."""


def entry(kind: str) -> _Entry:
    """The registry's entry for ``kind``; an unknown kind is a ``ValueError`` naming the six.

    Example:
        >>> entry("timeline")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: unknown report 'timeline'; use one of student, attendance, ..., compliance
    """
    if kind not in REPORTS:
        raise ValueError(f"unknown report {kind!r}; use one of {', '.join(REPORT_KINDS)}")
    return REPORTS[cast(ReportKind, kind)]


def build(
    kind: ReportKind,
    *,
    derived: Derived | None = None,
    audit: Audit | None = None,
    course_id: str | None = None,
    user_id: str | None = None,
    recording_id: str | None = None,
) -> Report:
    """Build a report by kind (through :data:`REPORTS`) from what it reads, with its scope.

    Scope keywords a kind does not take are ignored (the compliance report covers the store).

    Example:
        >>> from vtp_lab.stats import derive
        >>> from vtp_lab.tables import ANALYTICS_EVENTS
        >>> build("student", derived=derive(ANALYTICS_EVENTS.empty()))
        Traceback (most recent call last):
        ...
        ValueError: the student report needs user_id (vtp-lab report student --user ID)
    """
    found = entry(kind)
    given: dict[Scope, str | None] = {"course_id": course_id, "user_id": user_id, "recording_id": recording_id}
    for key in found.needs:
        if given[key] is None:
            flag = key.removesuffix("_id")
            raise ValueError(f"the {kind} report needs {key} (vtp-lab report {kind} --{flag} ID)")
    data: Any = derived if found.reads == "derived" else audit
    if data is None:
        raise ValueError(f"the {kind} report reads the {found.reads} tables: pass {found.reads}=...")
    report = found.builder(data, **{key: given[key] for key in found.scope})
    return _titled(report, derived.recordings) if derived is not None else report


def _titled(report: Report, recordings: pl.DataFrame) -> Report:
    """``report`` with the lecture's title beside each ``recording_id`` and the course's beside each ``course_id``.

    Example:
        >>> from vtp_lab.tables import RECORDINGS
        >>> cat = RECORDINGS.conform(pl.DataFrame({"recording_id": ["r"], "title": ["Intro"]}))
        >>> t = {"t": pl.DataFrame({"recording_id": ["r"]})}
        >>> r = Report(kind="quality", title="q", scope={}, headline={}, tables=t)
        >>> _titled(r, cat).tables["t"].columns
        ['recording_id', 'title']
    """
    names = {
        "recording_id": ("title", lecture_titles(recordings)),
        "course_id": ("course_title", course_titles(recordings)),
    }
    tables = {}
    for name, frame in report.tables.items():
        titled = frame
        for key, (title, titles) in names.items():
            titled = _beside(titled, key, title, titles)
        tables[name] = titled
    return dataclasses.replace(report, tables=tables)


def _beside(frame: pl.DataFrame, key: str, title: str, titles: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with ``titles``' ``title`` right after its ``key`` column (as it was if it has none, or no title)."""
    if key not in frame.columns or title in frame.columns or not titles[title].is_not_null().any():
        return frame
    at = frame.columns.index(key) + 1
    joined = frame.join(titles, on=key, how="left", maintain_order="left")
    return joined.select(*frame.columns[:at], title, *frame.columns[at:])
