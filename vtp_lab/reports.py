"""The six reports of the platform's design note, and alerts.

Each report is a frozen dataclass of frames (``tables``), headline numbers
(``headline``) and chart specifications (Vega-Lite, built with altair). It renders in a
notebook (``_repr_mimebundle_``: HTML and text), writes a standalone HTML file whose
charts are inline SVG (``to_html``: nothing loads from the network), Markdown
(``to_markdown``) and a JSON-ready dict (``to_dict``).

Build them with the functions named after them (``student``, ``attendance``,
``engagement``, ``performance``, ``quality``, ``compliance``), from anything with the
Lab's methods (a :class:`vtp_lab.Lab`), or with ``lab.report(kind, ...)``.

Example:
    >>> import vtp_lab as vl
    >>> lab = vl.Lab(":memory:")
    >>> _ = lab.append(vl.synth.semester(courses=1, lectures_per_course=2, students=5, seed=3).events)
    >>> r = engagement(lab)
    >>> r.kind, r.headline["students"] > 0
    ('engagement', True)
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final, Literal, Protocol, cast, get_args

import polars as pl

from vtp_lab.errors import NotFoundError
from vtp_lab.metrics import at_risk_students, attendance_categories, lecture_attendance, qoe, qoe_summary, week_of
from vtp_lab.stats import Derived

__all__ = [
    "REPORT_KINDS",
    "AttendanceReport",
    "ComplianceReport",
    "EngagementReport",
    "PerformanceReport",
    "QualityReport",
    "Report",
    "ReportKind",
    "Source",
    "StudentEngagementReport",
    "alerts",
    "attendance",
    "build",
    "compliance",
    "engagement",
    "performance",
    "quality",
    "student",
]

ReportKind = Literal["student", "attendance", "engagement", "performance", "quality", "compliance"]
REPORT_KINDS: Final[tuple[ReportKind, ...]] = get_args(ReportKind)


class Source(Protocol):
    """What a report reads: the Lab's methods.

    Example:
        >>> import vtp_lab as vl
        >>> all(hasattr(vl.Lab(":memory:"), m) for m in ("derived", "loads", "rejected_events", "events"))
        True
    """

    def derived(self) -> Derived:
        """Every derived table."""
        ...

    def loads(self) -> pl.DataFrame:
        """The load ledger."""
        ...

    def rejected_events(self) -> pl.DataFrame:
        """The quarantine."""
        ...

    def events(self) -> pl.DataFrame:
        """Every stored event."""
        ...


def _jsonable(value: Any) -> Any:
    """A value as JSON can hold it: dates as ISO text, NaN and infinities as null, containers throughout."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


@dataclass(frozen=True)
class Report:
    """A report: what it covers, headline numbers, tables, charts.

    Example:
        >>> r = Report(kind="compliance", title="t", scope={}, headline={"rows": 1}, tables={"t": pl.DataFrame({"a": [1]})})
        >>> Report.from_dict(json.loads(json.dumps(r.to_dict()))).tables["t"].equals(r.tables["t"])
        True
    """

    kind: ReportKind
    title: str
    scope: dict[str, str | None]
    headline: dict[str, Any]
    tables: dict[str, pl.DataFrame]
    charts: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tables as lists of rows).

        Example:
            >>> json.dumps(Report(kind="quality", title="t", scope={}, headline={}, tables={}).to_dict())[:18]
            '{"kind": "quality"'
        """
        return {
            "kind": self.kind,
            "title": self.title,
            "scope": self.scope,
            "generated_at": self.generated_at.isoformat(),
            "headline": {k: _jsonable(v) for k, v in self.headline.items()},
            "notes": list(self.notes),
            "tables": {
                name: [{k: _jsonable(v) for k, v in row.items()} for row in frame.iter_rows(named=True)]
                for name, frame in self.tables.items()
            },
            "charts": _jsonable(self.charts),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        """A report back from :meth:`to_dict` (tables as frames again; types as JSON keeps them).

        Example:
            >>> Report.from_dict({"kind": "quality", "title": "t", "scope": {}, "headline": {}, "tables": {}}).kind
            'quality'
        """
        return cls(
            kind=data["kind"],
            title=data["title"],
            scope=data["scope"],
            headline=data["headline"],
            tables={name: pl.DataFrame(rows, infer_schema_length=None) for name, rows in data["tables"].items()},
            charts=data.get("charts", {}),
            notes=tuple(data.get("notes", ())),
            generated_at=datetime.fromisoformat(data["generated_at"]) if "generated_at" in data else datetime.now(UTC),
        )

    def _headline_rows(self) -> list[tuple[str, str]]:
        def show(v: Any) -> str:
            if isinstance(v, float):
                return f"{v:,.2f}"
            if isinstance(v, int):
                return f"{v:,}"
            return "-" if v is None else str(v)

        return [(k.replace("_", " "), show(v)) for k, v in self.headline.items()]

    def to_markdown(self, *, rows: int = 20) -> str:
        """The report as Markdown: headline, notes and the first ``rows`` of each table.

        Example:
            >>> Report(kind="quality", title="Q", scope={}, headline={"x": 1}, tables={}).to_markdown().splitlines()[0]
            '# Q'
        """
        lines = [f"# {self.title}", ""]
        scope = ", ".join(f"{k} {v}" for k, v in self.scope.items() if v) or "everything stored"
        lines += [f"Scope: {scope}. Generated {self.generated_at:%Y-%m-%d %H:%M} UTC.", "", "| | |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in self._headline_rows()]
        for note in self.notes:
            lines += ["", f"- {note}"]
        for name, frame in self.tables.items():
            lines += ["", f"## {name.replace('_', ' ')}", ""]
            head = frame.head(rows)
            lines.append("| " + " | ".join(head.columns) + " |")
            lines.append("|" + "---|" * len(head.columns))
            lines += [
                "| " + " | ".join("" if v is None else str(_jsonable(v)) for v in row) + " |"
                for row in head.iter_rows()
            ]
            if frame.height > rows:
                lines.append(f"\n({frame.height - rows:,} more rows)")
        return "\n".join(lines) + "\n"

    def _html_body(self, *, charts: bool, rows: int = 20) -> str:
        esc = html.escape
        parts = [f"<h1>{esc(self.title)}</h1>", "<table class='headline'>"]
        parts += [f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in self._headline_rows()]
        parts.append("</table>")
        if self.notes:
            parts.append("<ul>" + "".join(f"<li>{esc(n)}</li>" for n in self.notes) + "</ul>")
        if charts:
            import vl_convert

            for name, spec in self.charts.items():
                parts.append(
                    f"<h2>{esc(name.replace('_', ' '))}</h2><figure>{vl_convert.vegalite_to_svg(spec)}</figure>"
                )
        for name, frame in self.tables.items():
            head = frame.head(rows)
            parts.append(
                f"<h2>{esc(name.replace('_', ' '))}</h2><table><tr>"
                + "".join(f"<th>{esc(c)}</th>" for c in head.columns)
                + "</tr>"
            )
            parts += [
                "<tr>" + "".join(f"<td>{esc('' if v is None else str(_jsonable(v)))}</td>" for v in row) + "</tr>"
                for row in head.iter_rows()
            ]
            parts.append("</table>" + (f"<p>({frame.height - rows:,} more rows)</p>" if frame.height > rows else ""))
        return "\n".join(parts)

    def to_html(self, path: str | Path | None = None) -> str:
        """A standalone HTML page (charts as inline SVG, no remote scripts or styles); written to ``path`` if given.

        Example:
            >>> "<script src" in Report(kind="quality", title="Q", scope={}, headline={}, tables={}).to_html()
            False
        """
        style = (
            "body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}"
            "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}"
            "table.headline th{background:#f4f4f4}"
        )
        page = (
            f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
            f"<style>{style}</style></head><body>{self._html_body(charts=True)}</body></html>"
        )
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(page, encoding="utf-8")
        return page

    def __str__(self) -> str:
        width = max((len(k) for k, _ in self._headline_rows()), default=0)
        lines = [self.title, "=" * len(self.title)] + [f"{k:<{width}}  {v}" for k, v in self._headline_rows()]
        lines += [f"- {n}" for n in self.notes]
        lines += [f"[{name}: {frame.height:,} rows]" for name, frame in self.tables.items()]
        return "\n".join(lines)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/html": self._html_body(charts=False), "text/plain": str(self)}


@dataclass(frozen=True)
class StudentEngagementReport(Report):
    """One student's watch history, coverage per lecture and engagement over time.

    Example:
        >>> issubclass(StudentEngagementReport, Report)
        True
    """


@dataclass(frozen=True)
class AttendanceReport(Report):
    """Attendance per lecture and per week, with the none / some / all patterns.

    Example:
        >>> import vtp_lab as vl
        >>> type(vl.Lab(":memory:").report("attendance")).__name__
        'AttendanceReport'
    """


@dataclass(frozen=True)
class EngagementReport(Report):
    """A course's engagement: its distribution, per lecture, and risk alerts.

    Example:
        >>> import vtp_lab as vl
        >>> type(vl.Lab(":memory:").report("engagement")).__name__
        'EngagementReport'
    """


@dataclass(frozen=True)
class PerformanceReport(Report):
    """Quality of experience: failures, rebuffering, bitrate, with recommendations.

    Example:
        >>> import vtp_lab as vl
        >>> type(vl.Lab(":memory:").report("performance")).__name__
        'PerformanceReport'
    """


@dataclass(frozen=True)
class QualityReport(Report):
    """Quality distribution, switches and streaming health.

    Example:
        >>> import vtp_lab as vl
        >>> type(vl.Lab(":memory:").report("quality")).__name__
        'QualityReport'
    """


@dataclass(frozen=True)
class ComplianceReport(Report):
    """The audit trail: every load, rejections by reason, the date range and gaps in the data.

    Example:
        >>> import vtp_lab as vl
        >>> type(vl.Lab(":memory:").report("compliance")).__name__
        'ComplianceReport'
    """


def _scoped(
    d: Derived, course_id: str | None, recording_id: str | None
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(session details, engagement features, catalogue) narrowed to a course or recording."""
    cat = d.recordings
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
    return d.session_details.filter(keep), d.engagement_features.filter(keep), cat.filter(keep)


def _line(frame: pl.DataFrame, x: str, y: str, title: str) -> dict[str, Any]:
    import altair as alt

    return alt.Chart(frame, title=title).mark_line(point=True).encode(x=alt.X(x), y=alt.Y(y)).to_dict()


def _bar(frame: pl.DataFrame, x: str, y: str, title: str) -> dict[str, Any]:
    import altair as alt

    return alt.Chart(frame, title=title).mark_bar().encode(x=alt.X(x, sort=None), y=alt.Y(y)).to_dict()


def _titles(cat: pl.DataFrame) -> pl.DataFrame:
    return cat.select("recording_id", "title")


def student(source: Source, *, user_id: str) -> StudentEngagementReport:
    """One student's engagement: watch history, coverage per lecture, engagement by week.

    Example:
        >>> import vtp_lab as vl
        >>> student(vl.Lab(":memory:"), user_id="6ba7b812-9dad-11d1-80b4-00c04fd430c8")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        vtp_lab.errors.NotFoundError: no user '6ba7b812-9dad-11d1-80b4-00c04fd430c8'; ...
    """
    d = source.derived()
    sessions = d.session_details.filter(pl.col("user_id") == user_id)
    if sessions.is_empty():
        known = d.session_details["user_id"].unique().sort().to_list()
        raise NotFoundError(kind="user", value=user_id, known=known, where="lab.engagement_metrics()")
    feats = d.engagement_features.filter(pl.col("user_id") == user_id)
    titles = _titles(d.recordings)
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
        charts={"engagement_by_week": _line(weekly, "week:T", "engagement_score:Q", "Engagement score by week")},
    )


def attendance(source: Source, *, course_id: str | None = None, threshold: float = 0.5) -> AttendanceReport:
    """Attendance per lecture (attendees covered ``threshold`` of it) and per week (none / some / all viewed).

    Example:
        >>> import vtp_lab as vl
        >>> attendance(vl.Lab(":memory:")).headline["lectures"]
        0
    """
    d = source.derived()
    _, feats, cat = _scoped(d, course_id, None)
    per_lecture = lecture_attendance(feats, cat, threshold=threshold)
    lectures = (
        per_lecture.join(_titles(cat), on="recording_id")
        .join(
            d.lecture_statistics.select("recording_id", "unique_viewers", "average_completion_rate"),
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
            "weekly_patterns": _bar(
                patterns.with_columns(pl.col("week").dt.date()), "week:T", "students:Q", "Students by week and category"
            )
        }
        if patterns.height
        else {},
    )


def engagement(source: Source, *, course_id: str | None = None) -> EngagementReport:
    """A course's (or every course's) engagement: distribution, per lecture, and students at risk.

    Example:
        >>> import vtp_lab as vl
        >>> engagement(vl.Lab(":memory:")).headline["students"]
        0
    """
    d = source.derived()
    _, feats, cat = _scoped(d, course_id, None)
    bands = feats.with_columns((pl.col("engagement_score") // 10 * 10).clip(0, 90).cast(pl.Int32).alias("score_band"))
    distribution = bands.group_by("score_band").agg(pl.len().alias("pairs")).sort("score_band")
    lectures = (
        d.lecture_statistics.join(_titles(cat), on="recording_id")
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
            "score_distribution": _bar(
                distribution, "score_band:O", "pairs:Q", "Engagement score distribution (student x lecture)"
            )
        }
        if distribution.height
        else {},
        notes=tuple(
            f"at risk: {r['user_id']} ({r['rule']}; mean {r['mean_score']:.1f} against a median of {r['mean_cohort_median']:.1f})"
            for r in risk.head(10).iter_rows(named=True)
        ),
    )


_RECOMMENDATIONS: Final = (
    (
        "playback_failure_rate",
        0.02,
        "Playback failures above 2% of sessions: look at the errors' codes (error_occurred metadata) per browser and network.",
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


def performance(source: Source, *, course_id: str | None = None, recording_id: str | None = None) -> PerformanceReport:
    """Quality of experience: failures, rebuffering, bitrate, per lecture, with recommendations.

    Example:
        >>> import vtp_lab as vl
        >>> performance(vl.Lab(":memory:")).headline["sessions"]
        0
    """
    d = source.derived()
    details, _, cat = _scoped(d, course_id, recording_id)
    overall = qoe_summary(details)
    per_lecture = (
        qoe_summary(details, by=["recording_id"]).join(_titles(cat), on="recording_id", how="left").sort("qoe_score")
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
            "qoe_per_lecture": _bar(
                per_lecture.head(30), "title:N", "qoe_score:Q", "QoE score per lecture (lowest first)"
            )
        }
        if per_lecture.height
        else {},
        notes=notes,
    )


def quality(source: Source, *, course_id: str | None = None, recording_id: str | None = None) -> QualityReport:
    """Quality distribution (play time per quality), switches by reason, and streaming health by week.

    Example:
        >>> import vtp_lab as vl
        >>> quality(vl.Lab(":memory:")).headline["quality_switches"]
        0
    """
    d = source.derived()
    details, _, cat = _scoped(d, course_id, recording_id)
    recs = cat["recording_id"].implode()
    distribution = (
        d.quality_play.filter(pl.col("recording_id").is_in(recs))
        .group_by("quality")
        .agg(pl.col("play_seconds").sum())
        .sort("play_seconds", descending=True)
    )
    switches = (
        d.quality_events.filter(pl.col("recording_id").is_in(recs))
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
        charts={"health_by_week": _line(health, "week:T", "qoe_score:Q", "QoE score by week")} if health.height else {},
    )


def compliance(source: Source) -> ComplianceReport:
    """The audit trail: every load with its counts, rejections by reason, the dates covered and the gaps.

    Example:
        >>> import vtp_lab as vl
        >>> compliance(vl.Lab(":memory:")).headline["loads"]
        0
    """
    loads = source.loads().sort("started_at")
    rejected = source.rejected_events()
    events = source.events().select("event_timestamp")
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
        title="Data compliance and audit trail",
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
        tables={"loads": ledger, "rejected_by_reason": by_reason, "gaps": gaps},
        notes=tuple(
            f"{row['source']}: {row['error']}"
            for row in loads.filter(pl.col("error").is_not_null()).iter_rows(named=True)
        ),
    )


def build(
    source: Source,
    kind: ReportKind,
    *,
    course_id: str | None = None,
    user_id: str | None = None,
    recording_id: str | None = None,
) -> Report:
    """Build a report by kind, with its scope.

    Example:
        >>> import vtp_lab as vl
        >>> build(vl.Lab(":memory:"), "timeline")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: unknown report 'timeline'; use one of student, attendance, engagement, performance, quality, compliance
    """
    if kind == "student":
        if user_id is None:
            raise ValueError("the student report needs user_id (vtp-lab report student --user ID)")
        return student(source, user_id=user_id)
    if kind == "attendance":
        return attendance(source, course_id=course_id)
    if kind == "engagement":
        return engagement(source, course_id=course_id)
    if kind == "performance":
        return performance(source, course_id=course_id, recording_id=recording_id)
    if kind == "quality":
        return quality(source, course_id=course_id, recording_id=recording_id)
    if kind == "compliance":
        return compliance(source)
    raise ValueError(f"unknown report {kind!r}; use one of {', '.join(REPORT_KINDS)}")


def alerts(source: Source, *, below: float = 0.5, weeks: int = 2, qoe_drop: float = 10.0) -> pl.DataFrame:
    """Low-engagement students, struggle lectures and QoE regressions, each with its rule and numbers.

    A QoE regression is a lecture whose mean QoE score in its latest week of viewing is
    more than ``qoe_drop`` points below its mean over the earlier weeks.

    Example:
        >>> import vtp_lab as vl
        >>> alerts(vl.Lab(":memory:")).columns
        ['kind', 'subject', 'course_id', 'rule', 'details']
    """
    d = source.derived()
    schema = {"kind": pl.String, "subject": pl.String, "course_id": pl.String, "rule": pl.String, "details": pl.String}
    rows: list[dict[str, str | None]] = []
    risk = at_risk_students(
        d.engagement_features.select("user_id", "recording_id", "engagement_score"),
        d.recordings,
        below=below,
        weeks=weeks,
    )
    rows += [
        {"kind": "low_engagement", "subject": r["user_id"], "course_id": r["course_id"], "rule": r["rule"],
         "details": json.dumps({"weeks_below": r["weeks_below"], "last_week": str(r["last_week"]), "mean_score": round(r["mean_score"], 2), "cohort_median": round(r["mean_cohort_median"], 2)})}
        for r in risk.iter_rows(named=True)
    ]  # fmt: skip
    for c in d.course_statistics.iter_rows(named=True):
        rows += [
            {"kind": "struggle_lecture", "subject": rec, "course_id": c["course_id"], "rule": "at least two struggle signals against the course median (docs/metrics.md)", "details": json.dumps({"course_average_completion_rate": c["average_completion_rate"]})}
            for rec in c["struggle_lectures"]
        ]  # fmt: skip
    weekly = (
        qoe(d.session_details)
        .with_columns(week_of("started_at").alias("week"))
        .group_by("recording_id", "week")
        .agg(pl.col("qoe_score").mean().alias("qoe"))
        .sort("recording_id", "week")
    )
    latest = weekly.group_by("recording_id").agg(pl.col("week").max().alias("latest"))
    compare = (
        weekly.join(latest, on="recording_id")
        .group_by("recording_id")
        .agg(
            pl.col("qoe").filter(pl.col("week") == pl.col("latest")).mean().alias("latest_qoe"),
            pl.col("qoe").filter(pl.col("week") < pl.col("latest")).mean().alias("earlier_qoe"),
        )
    )
    course_of = dict(zip(d.recordings["recording_id"], d.recordings["course_id"], strict=True))
    rows += [
        {"kind": "qoe_regression", "subject": r["recording_id"], "course_id": course_of.get(r["recording_id"]), "rule": f"latest week's QoE more than {qoe_drop} points below the earlier weeks'",
         "details": json.dumps({"latest_qoe": round(r["latest_qoe"], 2), "earlier_qoe": round(r["earlier_qoe"], 2)})}
        for r in compare.filter(pl.col("earlier_qoe") - pl.col("latest_qoe") > qoe_drop).sort("recording_id").iter_rows(named=True)
    ]  # fmt: skip
    return pl.DataFrame(rows, schema=schema)
