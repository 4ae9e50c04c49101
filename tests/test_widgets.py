"""The dashboard: pickers change the numbers fast, the score panel recomputes, bad expressions are shown."""

from __future__ import annotations

import time

import polars as pl
import pytest

from vtp_lab.lab import Lab
from vtp_lab.synth import semester


@pytest.fixture(scope="module")
def lab():
    sem = semester(seed=0)  # the demo semester: 3 courses x 12 lectures, 120 students
    lab = Lab(":memory:")
    lab.append(sem.events)
    lab.load_recordings(sem.recordings)
    return lab


def test_pickers_change_the_headline_numbers_in_under_a_second(lab):
    d = lab.dashboard()
    everything = d.tiles_data()
    assert everything["sessions"] == lab.playback_sessions().height
    course = d.course.options[1][1]
    start = time.perf_counter()
    d.course.value = course
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, elapsed
    in_course = d.tiles_data()
    assert 0 < in_course["sessions"] < everything["sessions"]
    recs = lab.recordings().filter(pl.col("course_id") == course)["recording_id"]
    assert in_course["sessions"] == lab.playback_sessions().filter(pl.col("recording_id").is_in(recs.implode())).height
    lecture = d.lecture.options[1][1]
    d.lecture.value = lecture
    assert d.tiles_data()["sessions"] == lab.playback_sessions(recording_id=lecture).height
    student = d.student.options[1][1]
    d.student.value = student
    assert d.tiles_data()["students"] == 1
    assert str(d.tiles_data()["sessions"]) in d.tiles.value


def test_course_change_resets_lecture_and_student(lab):
    d = lab.dashboard()
    d.course.value = d.course.options[1][1]
    d.lecture.value = d.lecture.options[1][1]
    d.course.value = d.course.options[2][1]
    assert (d.lecture.value, d.student.value) == ("(all)", "(all)")
    course = d.course.options[2][1]
    assert set(lab.recordings().filter(pl.col("course_id") == course)["recording_id"]) == {
        r for _, r in d.lecture.options[1:]
    }


def test_score_panel_recomputes_statistics(lab):
    d = lab.dashboard()
    before = d.tiles_data()["mean_engagement"]
    d.expression.value = '100 * pl.col("coverage").fill_null(0)'
    d.apply_score()
    assert d.score_status.value.startswith("score applied")
    expected = lab.engagement_metrics(score=100 * pl.col("coverage").fill_null(0))["engagement_score"].mean()
    assert d.tiles_data()["mean_engagement"] == round(expected, 1) != before
    d.expression.value = ""
    for name, slider in d.weights.items():
        slider.value = 1.0 if name == "completed" else 0.0
    d.apply_score()
    completed = lab.derived().engagement_features["completed"].mean() * 100
    assert d.tiles_data()["mean_engagement"] == pytest.approx(completed, abs=0.1)


def test_bad_expression_is_reported_not_raised(lab):
    d = lab.dashboard()
    d.expression.value = "pl.col('coverage') * 500"
    d.apply_score()
    assert "could not use this score" in d.score_status.value and "[0, 100]" in d.score_status.value


def test_alerts_table_follows_the_course(lab):
    d = lab.dashboard()
    total = d.alerts_table.value
    d.course.value = d.course.options[1][1]
    assert d.alerts_table.value != total
    assert "<table>" in d.alerts_table.value
