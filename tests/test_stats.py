"""The aggregates of spec section 4, hand-checked, and the Lab's query helpers."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest
from conftest import COURSE, REC, USER, raw_event
from polars.testing import assert_frame_equal
from test_sessions import T0, event, frame, recordings, worked_events

from vtp_lab.errors import VtpLabError
from vtp_lab.events import course_statistics_id, engagement_metrics_id, lecture_statistics_id
from vtp_lab.lab import Lab
from vtp_lab.stats import derive, quality_events
from vtp_lab.synth import semester
from vtp_lab.tables import RECORDINGS
from vtp_lab.validation import validate

L1, L2 = "6ba7b821-9dad-11d1-80b4-00c04fd430c8", "6ba7b822-9dad-11d1-80b4-00c04fd430c8"
A, B = "6ba7b831-9dad-11d1-80b4-00c04fd430c8", "6ba7b832-9dad-11d1-80b4-00c04fd430c8"


def test_engagement_of_the_worked_example():
    d = derive(worked_events(), recordings=recordings())
    row = d.engagement_metrics.row(0, named=True)
    assert (
        row["total_views"],
        row["total_watch_time_seconds"],
        row["average_quality"],
        row["buffer_events_total"],
    ) == (2, 610, "1080p", 1)
    assert row["last_watched"] == T0 + timedelta(days=1, seconds=200)
    assert row["id"] == engagement_metrics_id(USER, REC)
    features = d.engagement_features.row(0, named=True)
    assert features["coverage"] == 1.0  # [0, 410) and [400, 600) cover the whole 600 s
    assert features["rewatched_seconds"] == 156.0  # [50, 196) twice in session 1, [400, 410) in both sessions
    # default score: 60 x coverage 1 + 20 x min(1, 656/600) + 10 x completed + 10 x min(1, 156/60)
    assert row["engagement_score"] == pytest.approx(100.0)


def test_lecture_statistics_of_the_worked_example():
    row = derive(worked_events(), recordings=recordings()).lecture_statistics.row(0, named=True)
    assert (row["total_viewers"], row["unique_viewers"], row["average_watch_time"]) == (2, 1, 305.0)
    assert row["average_completion_rate"] == pytest.approx((68.33 + 33.33) / 2)
    assert row["quality_distribution"] == [{"quality": "1080p", "seconds": 396}, {"quality": "720p", "seconds": 260}]
    assert (row["buffer_events_total"], row["avg_engagement_score"]) == (1, pytest.approx(100.0))
    assert row["id"] == lecture_statistics_id(REC)


def test_quality_events_table():
    rows = [
        event(
            0,
            0,
            "quality_changed",
            {
                "old_quality": "720p",
                "new_quality": "480p",
                "old_bitrate": 2800,
                "new_bitrate": 1400,
                "reason": "bandwidth_drop",
            },
        )
    ]
    q = quality_events(frame(rows)).row(0, named=True)
    assert (q["old_quality"], q["new_quality"], q["old_bitrate"], q["new_bitrate"], q["reason"]) == (
        "720p",
        "480p",
        2800,
        1400,
        "bandwidth_drop",
    )
    assert q["quality_timestamp"] == T0 and q["id"] == rows[0]["id"]


def tiny_course() -> tuple[pl.DataFrame, pl.DataFrame]:
    """Two 100 s lectures; A watches L1 whole and 30 s of L2, B watches 60 s of L1."""
    rows = [
        event(0, 0, "playback_started", {"position": 0}, session="a1", rec=L1, user=A),
        event(1, 100, "playback_completed", {"position": 100}, session="a1", rec=L1, user=A),
        event(2, 7 * 86400, "playback_started", {"position": 0}, session="a2", rec=L2, user=A),
        event(3, 7 * 86400 + 30, "session_ended", {"position": 30}, session="a2", rec=L2, user=A),
        event(4, 50, "playback_started", {"position": 0}, session="b1", rec=L1, user=B),
        event(5, 110, "session_ended", {"position": 60}, session="b1", rec=L1, user=B),
    ]
    cat = RECORDINGS.conform(
        pl.DataFrame(
            {
                "recording_id": [L1, L2],
                "course_id": [COURSE, COURSE],
                "title": ["L1", "L2"],
                "duration_seconds": [100.0, 100.0],
            }
        )
    )
    return frame(rows), cat


def test_course_statistics_by_hand():
    events, cat = tiny_course()
    c = derive(events, recordings=cat).course_statistics.row(0, named=True)
    assert (c["total_lectures"], c["total_unique_students"]) == (2, 2)
    assert c["average_attendance_rate"] == pytest.approx(50.0)  # L1: A and B of 2 students; L2: nobody covered half
    assert c["average_completion_rate"] == pytest.approx((100 + 30 + 60) / 3)
    assert c["most_watched_lectures"] == [L1, L2]
    assert c["id"] == course_statistics_id(COURSE)
    lower = derive(events, recordings=cat, attendance_threshold=0.25).course_statistics
    assert lower["average_attendance_rate"].item() == pytest.approx(75.0)  # L2: A covered 30%


def test_custom_score_flows_into_lecture_and_course_statistics():
    events, cat = tiny_course()
    d = derive(events, recordings=cat, score=100 * pl.col("coverage"))
    scores = dict(
        zip(
            d.engagement_metrics["user_id"] + d.engagement_metrics["recording_id"],
            d.engagement_metrics["engagement_score"],
            strict=True,
        )
    )
    assert scores[A + L1] == 100.0 and scores[A + L2] == pytest.approx(30.0) and scores[B + L1] == pytest.approx(60.0)
    lectures = dict(
        zip(d.lecture_statistics["recording_id"], d.lecture_statistics["avg_engagement_score"], strict=True)
    )
    assert lectures[L1] == pytest.approx(80.0) and lectures[L2] == pytest.approx(30.0)
    assert d.course_statistics["avg_engagement_score"].item() == pytest.approx(190 / 3)


def test_a_score_outside_0_100_is_refused_with_the_row():
    events, cat = tiny_course()
    with pytest.raises(VtpLabError, match=r"gave 200\.0 for user .*a score must be a number in \[0, 100\]"):
        derive(events, recordings=cat, score=200 * pl.col("coverage"))


def test_engagement_trend_rises_and_falls():
    events, cat = tiny_course()
    assert (
        derive(events, recordings=cat, score=100 * pl.col("coverage")).course_statistics["engagement_trend"].item()
        == "falling"
    )
    assert (
        derive(events, recordings=cat, score=100 - 100 * pl.col("coverage"))
        .course_statistics["engagement_trend"]
        .item()
        == "rising"
    )
    assert derive(events, recordings=cat, score=pl.lit(50.0)).course_statistics["engagement_trend"].item() == "stable"


@pytest.fixture(scope="module")
def sem():
    return semester(courses=2, lectures_per_course=4, students=30, seed=12)


def test_lab_helpers_answer_from_every_stored_event(tmp_path, sem):
    lab = Lab(tmp_path / "lab.duckdb")
    lab.append(sem.events.head(sem.events.height // 2))
    lab.load_recordings(sem.recordings)
    first = lab.playback_sessions()
    assert lab.store.count("playback_sessions") == first.height  # refreshed on first use
    lab.append(sem.events.tail(sem.events.height - sem.events.height // 2))
    second = lab.playback_sessions()
    expected = derive(sem.events, recordings=sem.recordings)
    assert_frame_equal(second.sort("id"), expected.playback_sessions.sort("id"), check_exact=False)
    assert_frame_equal(
        lab.course_statistics().sort("course_id"), expected.course_statistics.sort("course_id"), check_exact=False
    )
    assert lab.store.count("lecture_statistics") == expected.lecture_statistics.height


def test_filters_give_the_rows_of_the_whole(tmp_path, sem):
    lab = Lab(tmp_path / "lake")
    lab.append(sem.events)
    lab.load_recordings(sem.recordings)
    whole = lab.session_details()
    rec, user = whole["recording_id"][0], whole["user_id"][0]
    # float sums may differ in the last bit with the order of summation
    same = {"check_exact": False}
    assert_frame_equal(
        lab.session_details(recording_id=rec).sort("id"), whole.filter(pl.col("recording_id") == rec).sort("id"), **same
    )
    assert_frame_equal(
        lab.engagement_metrics(user_id=user).sort("id"),
        lab.engagement_metrics().filter(pl.col("user_id") == user).sort("id"),
        **same,
    )
    course = sem.recordings["course_id"][0]
    assert_frame_equal(
        lab.course_statistics(course_id=course), lab.course_statistics().filter(pl.col("course_id") == course), **same
    )
    middle = whole["started_at"].sort()[whole.height // 2]
    assert lab.playback_sessions(since=middle).height + lab.playback_sessions(until=middle).height == whole.height
    assert isinstance(lab.playback_sessions(lazy=True), pl.LazyFrame)


@pytest.mark.parametrize("name", ["lab.duckdb", "lake"])
def test_refresh_is_incremental_and_exact(tmp_path, sem, monkeypatch, name):
    import vtp_lab.refresh as lab_module  # where the Lab's refresh derives

    lab = Lab(tmp_path / name)
    lab.load_recordings(sem.recordings)
    _, course_b = sorted(set(sem.recordings["course_id"]))
    recs_b = sem.recordings.filter(pl.col("course_id") == course_b)["recording_id"]
    late = sem.events.filter(
        pl.col("recording_id").is_in(recs_b.implode())
        & (pl.col("event_timestamp") > pl.col("event_timestamp").median())
    )
    early = sem.events.join(late, on="id", how="anti")
    lab.append(early)
    full = lab.refresh()
    assert full["playback_sessions"] > 0
    seen: list[int] = []
    real = lab_module.derive

    def spy(events, **kw):
        seen.append(events.height)
        return real(events, **kw)

    monkeypatch.setattr(lab_module, "derive", spy)
    lab.append(late)
    lab.refresh()
    monkeypatch.setattr(lab_module, "derive", real)
    assert seen and seen[0] == sem.events.filter(pl.col("recording_id").is_in(recs_b.implode())).height  # only course B
    expected = derive(sem.events, recordings=sem.recordings)
    for table in (
        "playback_sessions",
        "quality_events",
        "engagement_metrics",
        "lecture_statistics",
        "course_statistics",
    ):
        key = "course_id" if table == "course_statistics" else "id"
        assert_frame_equal(lab.store.read(table).sort(key), getattr(expected, table).sort(key), check_exact=False)
    assert lab.refresh() == dict.fromkeys(
        ("playback_sessions", "quality_events", "engagement_metrics", "lecture_statistics", "course_statistics"), 0
    )


def test_a_recording_of_duration_zero_scores_without_nan():
    rows = [
        raw_event(metadata='{"position": 0, "duration": 0}'),
        raw_event(event_type="session_ended", event_timestamp="2026-09-01T10:01:00Z", metadata='{"position": 0}'),
    ]
    accepted = validate(pl.DataFrame(rows)).accepted
    scores = derive(accepted).engagement_metrics["engagement_score"]
    assert scores.is_finite().all() and scores.is_between(0, 100).all()
