"""Charts (altair) from the query helpers' frames, rendered and saved with no network (vl-convert).

Each function takes frames as the Lab returns them and gives back an ``altair.Chart``;
:func:`save` writes it as PNG, SVG or standalone HTML (the chart inlined as SVG, nothing
loaded from the web).

Example:
    >>> import vtp_lab as vl
    >>> from vtp_lab.stats import derive
    >>> d = derive(vl.synth.semester(courses=1, lectures_per_course=2, students=5, seed=2).events)
    >>> completion_distribution(d.playback_sessions).mark
    'bar'
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import polars as pl

from vtp_lab.metrics import qoe, week_of
from vtp_lab.recordings import lecture_titles

__all__ = [
    "attendance_heatmap",
    "bars",
    "completion_distribution",
    "engagement_by_week",
    "line",
    "offline",
    "qoe_against_completion",
    "quality_mix_over_time",
    "retention_curve",
    "save",
]


def _alt() -> Any:
    import altair as alt

    return alt


def _titled(frame: pl.DataFrame, titles: pl.DataFrame | None) -> pl.DataFrame:
    """``frame`` with a ``title`` per recording: from ``titles`` (``recording_id, title``), else the id."""
    if titles is None:
        return frame.with_columns(pl.col("recording_id").alias("title"))
    named = frame.join(lecture_titles(titles), on="recording_id", how="left")
    return named.with_columns(pl.coalesce("title", "recording_id"))


def bars(frame: pl.DataFrame, *, x: str, y: str, title: str) -> Any:
    """Bars of ``y`` per ``x`` in the frame's order (altair shorthands such as ``"week:T"``).

    Example:
        >>> bars(pl.DataFrame({"band": [0, 10], "pairs": [3, 5]}), x="band:O", y="pairs:Q", title="t").mark
        'bar'
    """
    alt = _alt()
    return alt.Chart(frame, title=title).mark_bar().encode(x=alt.X(x, sort=None), y=alt.Y(y))


def line(frame: pl.DataFrame, *, x: str, y: str, title: str) -> Any:
    """A line with points of ``y`` over ``x`` (altair shorthands such as ``"week:T"``).

    Example:
        >>> line(pl.DataFrame({"week": [1, 2], "score": [50.0, 60.0]}), x="week:Q", y="score:Q", title="t").mark.type
        'line'
    """
    alt = _alt()
    return alt.Chart(frame, title=title).mark_line(point=True).encode(x=alt.X(x), y=alt.Y(y))


def retention_curve(retention: pl.DataFrame, *, titles: pl.DataFrame | None = None) -> Any:
    """The drop-off curve: share of a lecture's viewers who played each segment, one line per lecture.

    Takes :func:`vtp_lab.metrics.retention`'s frame; ``titles=lab.lectures()`` (any frame of
    ``recording_id, title``) names the lines by lecture title instead of id.

    Example:
        >>> f = pl.DataFrame({"recording_id": ["r", "r"], "bin_start": [0.0, 5.0], "retention": [1.0, 0.5]})
        >>> retention_curve(f).mark
        'line'
    """
    alt = _alt()
    frame = _titled(retention, titles)
    return (
        alt.Chart(frame.select("title", "bin_start", "retention"), title="Audience retention")
        .mark_line()
        .encode(
            x=alt.X("bin_start:Q", title="position in the lecture (s)"),
            y=alt.Y("retention:Q", title="share of viewers", axis=alt.Axis(format="%")),
            color=alt.Color("title:N", title="lecture"),
        )
    )


def completion_distribution(sessions: pl.DataFrame) -> Any:
    """A histogram of sessions' completion rates (10-point bins).

    Example:
        >>> completion_distribution(pl.DataFrame({"completion_rate": [10.0, 95.0]})).mark
        'bar'
    """
    alt = _alt()
    frame = sessions.filter(pl.col("completion_rate").is_not_null()).select("completion_rate")
    return (
        alt.Chart(frame, title="Completion per session")
        .mark_bar()
        .encode(
            x=alt.X("completion_rate:Q", bin=alt.Bin(step=10), title="completion (%)"),
            y=alt.Y("count():Q", title="sessions"),
        )
    )


def quality_mix_over_time(sessions: pl.DataFrame) -> Any:
    """The share of sessions by their main quality (most play time), per week, stacked to 100%.

    Example:
        >>> s = pl.DataFrame({"started_at": [__import__("datetime").datetime(2026, 9, 1)], "quality": ["720p"]})
        >>> quality_mix_over_time(s).mark
        'area'
    """
    alt = _alt()
    frame = (
        sessions.filter(pl.col("quality").is_not_null())
        .with_columns(week_of("started_at").dt.date().alias("week"))
        .group_by("week", "quality")
        .agg(pl.len().alias("sessions"))
        .sort("week")
    )
    return (
        alt.Chart(frame, title="Quality mix by week")
        .mark_area()
        .encode(
            x=alt.X("week:T", title="week"),
            y=alt.Y("sessions:Q", stack="normalize", title="share of sessions", axis=alt.Axis(format="%")),
            color=alt.Color("quality:N", title="quality"),
        )
    )


def engagement_by_week(weekly: pl.DataFrame) -> Any:
    """Mean engagement score per week, one line per course (from :func:`vtp_lab.metrics.weekly_engagement`).

    A ``course_title`` column, where given, names the lines instead of the course ids.

    Example:
        >>> w = pl.DataFrame({"course_id": ["c"], "week": [__import__("datetime").datetime(2026, 9, 1)],
        ...     "engagement_score": [60.0]})
        >>> engagement_by_week(w).mark.type
        'line'
    """
    alt = _alt()
    course = pl.coalesce("course_title", "course_id") if "course_title" in weekly.columns else pl.col("course_id")
    return (
        alt.Chart(weekly.select(course.alias("course"), "week", "engagement_score"), title="Engagement by week")
        .mark_line(point=True)
        .encode(
            x=alt.X("week:T", title="week"),
            y=alt.Y("engagement_score:Q", title="mean engagement score", scale=alt.Scale(domain=[0, 100])),
            color=alt.Color("course:N", title="course"),
        )
    )


def qoe_against_completion(details: pl.DataFrame) -> Any:
    """Each session's QoE score against its completion rate.

    Example:
        >>> d = pl.DataFrame({"fatal_errors": [0], "rebuffer_ratio": [0.0], "time_weighted_bitrate": [2800.0],
        ...     "buffer_events": [0], "play_time_seconds": [60.0], "completion_rate": [50.0], "quality": ["720p"]})
        >>> qoe_against_completion(d).mark.type
        'circle'
    """
    alt = _alt()
    frame = (
        qoe(details)
        .filter(pl.col("completion_rate").is_not_null())
        .select("qoe_score", "completion_rate", pl.col("quality").fill_null("unknown"))  # no "null" in the legend
    )
    return (
        alt.Chart(frame, title="QoE and completion")
        .mark_circle(opacity=0.4)
        .encode(
            x=alt.X("qoe_score:Q", title="QoE score", scale=alt.Scale(domain=[0, 100])),
            y=alt.Y("completion_rate:Q", title="completion (%)"),
            color=alt.Color("quality:N", title="quality"),
        )
    )


def attendance_heatmap(features: pl.DataFrame, *, titles: pl.DataFrame | None = None) -> Any:
    """Students by lectures, coloured by coverage (blank: not watched); ``titles=lab.lectures()`` names the lectures.

    Example:
        >>> f = pl.DataFrame({"user_id": ["a"], "recording_id": ["r"], "coverage": [0.7]})
        >>> attendance_heatmap(f).mark
        'rect'
    """
    alt = _alt()
    frame = _titled(features.select("user_id", "recording_id", "coverage"), titles)
    return (
        alt.Chart(frame, title="Coverage by student and lecture")
        .mark_rect()
        .encode(
            x=alt.X("title:N", title="lecture", sort=None),
            y=alt.Y("user_id:N", title="student", axis=alt.Axis(labels=False, ticks=False)),
            color=alt.Color("coverage:Q", title="coverage", scale=alt.Scale(domain=[0, 1])),
        )
    )


def offline() -> None:
    """Make altair show charts as SVG rendered here (vl-convert) instead of loading Vega from the web.

    Call it once in a notebook that may run without network (Voila, classic Jupyter).

    Example:
        >>> offline()
        >>> import altair as alt
        >>> alt.renderers.active
        'svg'
    """
    _alt().renderers.enable("svg")


def save(chart: Any, path: str | Path) -> Path:
    """Write ``chart`` as ``.png``, ``.svg`` or standalone ``.html`` (inline SVG), rendered offline.

    Example:
        >>> import tempfile, pathlib
        >>> out = save(completion_distribution(pl.DataFrame({"completion_rate": [50.0]})),
        ...            pathlib.Path(tempfile.mkdtemp()) / "c.svg")
        >>> out.read_text().startswith("<svg")
        True
    """
    import vl_convert

    path = Path(path)
    spec = chart.to_dict()
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".png":
        path.write_bytes(vl_convert.vegalite_to_png(spec, scale=2))
    elif suffix == ".svg":
        path.write_text(vl_convert.vegalite_to_svg(spec), encoding="utf-8")
    elif suffix == ".html":
        title = html.escape(str(spec.get("title", "vtp_lab chart")))
        path.write_text(
            f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title></head>"
            f"<body>{vl_convert.vegalite_to_svg(spec)}</body></html>",
            encoding="utf-8",
        )
    else:
        raise ValueError(f"cannot save a chart as {path.name!r}; name it .png, .svg or .html")
    return path
