"""Charts: built from the Lab's frames, saved offline as PNG, SVG and HTML."""

from __future__ import annotations

import re

import polars as pl
import pytest

from vtp_lab import plot
from vtp_lab.lab import Lab
from vtp_lab.metrics import retention, weekly_engagement
from vtp_lab.sessions import sessionize
from vtp_lab.stats import derive
from vtp_lab.synth import semester


@pytest.fixture(scope="module")
def data():
    sem = semester(courses=2, lectures_per_course=3, students=20, seed=41)
    return sem, derive(sem.events, recordings=sem.recordings), sessionize(sem.events, recordings=sem.recordings)


@pytest.fixture(scope="module")
def charts(data):
    sem, d, s = data
    titles = sem.recordings.select("recording_id", "title")
    return {
        "retention": plot.retention_curve(retention(s.segments, bin_seconds=30), titles=titles),
        "completion": plot.completion_distribution(d.playback_sessions),
        "quality_mix": plot.quality_mix_over_time(d.playback_sessions),
        "engagement_by_week": plot.engagement_by_week(weekly_engagement(d.engagement_features, d.recordings)),
        "qoe_completion": plot.qoe_against_completion(d.session_details),
        "attendance": plot.attendance_heatmap(d.engagement_features, titles=titles),
    }


def test_charts_carry_the_frames_rows(data, charts):
    _, d, _ = data
    spec = charts["completion"].to_dict()
    values = next(iter(spec["datasets"].values()))
    assert len(values) == d.playback_sessions["completion_rate"].drop_nulls().len()
    heat = next(iter(charts["attendance"].to_dict()["datasets"].values()))
    assert len(heat) == d.engagement_features.height


@pytest.mark.parametrize("suffix", [".png", ".svg", ".html"])
def test_every_chart_saves_offline(tmp_path, charts, suffix):
    for name, chart in charts.items():
        path = plot.save(chart, tmp_path / f"{name}{suffix}")
        data = path.read_bytes()
        if suffix == ".png":
            assert data.startswith(b"\x89PNG"), name
        else:
            text = data.decode()
            assert "<svg" in text, name
            assert not re.search(r"<script[^>]*src=|<link[^>]*href=|@import", text), name


def test_bad_suffix_is_named(tmp_path, charts):
    with pytest.raises(ValueError, match=r"name it \.png, \.svg or \.html"):
        plot.save(charts["completion"], tmp_path / "c.pdf")


def test_quality_mix_is_a_share(charts, data):
    _, d, _ = data
    rows = next(iter(charts["quality_mix"].to_dict()["datasets"].values()))
    assert sum(r["sessions"] for r in rows) == d.playback_sessions.filter(pl.col("quality").is_not_null()).height


def test_a_session_without_quality_is_unknown_not_null_in_the_legend():
    from vtp_lab.plot import qoe_against_completion

    d = pl.DataFrame(
        {
            "fatal_errors": [0, 0],
            "rebuffer_ratio": [0.0, 0.1],
            "time_weighted_bitrate": [2800.0, None],
            "buffer_events": [0, 1],
            "play_time_seconds": [60.0, 30.0],
            "completion_rate": [50.0, 20.0],
            "quality": ["720p", None],
        }
    )
    values = qoe_against_completion(d).to_dict()["datasets"]
    qualities = {row["quality"] for rows in values.values() for row in rows}
    assert qualities == {"720p", "unknown"}


def test_lectures_are_named_by_the_labs_lecture_list(data):
    """``titles=lab.lectures()`` (more columns than the two it needs) names every lecture; one it lacks keeps its id."""
    sem, d, _ = data
    with Lab(":memory:") as lab:
        lab.append(sem.events)
        lab.load_recordings(sem.recordings)
        lectures = lab.lectures()
    heat = plot.attendance_heatmap(d.engagement_features, titles=lectures.slice(1)).to_dict()
    shown = {row["recording_id"]: row["title"] for row in next(iter(heat["datasets"].values()))}
    first = lectures.row(0, named=True)
    assert shown.pop(first["recording_id"]) == first["recording_id"]
    assert shown == dict(lectures.slice(1).select("recording_id", "title").iter_rows())
