"""Metrics, hand-checked: QoE, retention, attendance categories, at-risk students, QoE and engagement."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from test_sessions import recordings, worked_events

from vtp_lab.metrics import (
    at_risk_students,
    attendance_categories,
    qoe,
    qoe_and_engagement,
    qoe_summary,
    realtime,
    retention,
)
from vtp_lab.sessions import sessionize


@pytest.fixture(scope="module")
def worked():
    return sessionize(worked_events(), recordings=recordings())


def test_qoe_of_the_worked_example(worked):
    summary = qoe_summary(worked.details).row(0, named=True)
    assert summary["sessions"] == 2
    assert (summary["playback_failure_rate"], summary["exit_before_start_rate"]) == (0.0, 0.0)
    assert summary["rebuffer_ratio"] == pytest.approx(4 / (656 + 4))  # 4 s of rebuffering, 456 + 200 s of play
    assert summary["rebuffer_frequency"] == pytest.approx(1 / (656 / 60))
    first = qoe(worked.details).sort("session_id").row(0, named=True)
    # no failure 0.4; smooth 0.3 x (1 - (4/460)/0.1); bitrate unknown: left out; steady 0.1 x (1 - 1/(456/60))
    expected = (0.4 + 0.3 * (1 - (4 / 460) / 0.1) + 0.1 * (1 - 1 / (456 / 60))) / 0.8 * 100
    assert first["qoe_score"] == pytest.approx(expected, abs=1e-5)


def test_qoe_terms():
    rows = pl.DataFrame(
        {
            "fatal_errors": [1, 0, 0],
            "rebuffer_ratio": [None, 0.2, 0.0],
            "time_weighted_bitrate": [None, 5000.0, 1250.0],
            "buffer_events": [0, 6, 0],
            "play_time_seconds": [0.0, 60.0, 60.0],
        }
    )
    assert qoe(rows)["qoe_score"].to_list() == [0.0, pytest.approx(60.0), pytest.approx(85.0)]


def test_retention_of_the_worked_example(worked):
    curve = retention(worked.segments, bin_seconds=50).sort("bin")
    by_bin = {row["bin"]: row for row in curve.iter_rows(named=True)}
    assert sorted(by_bin) == list(range(12))  # the whole 600 s was played
    assert by_bin[0]["views"] == 1 and by_bin[8]["views"] == 2  # [400, 450): the end of session 1 and session 2
    assert [by_bin[b]["rewatch_sessions"] for b in range(12)] == [0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]  # [50, 196) twice
    assert all(by_bin[b]["retention"] == 1.0 for b in range(12))  # one viewer, everywhere


def test_attendance_categories_by_week():
    rec = pl.DataFrame(
        {
            "recording_id": ["l1", "l2", "l3"],
            "course_id": ["c", "c", "c"],
            "published_at": [datetime(2026, 9, 1), datetime(2026, 9, 2), datetime(2026, 9, 8)],
        }
    )
    feats = pl.DataFrame({"user_id": ["a", "a", "b", "b"], "recording_id": ["l1", "l2", "l1", "l3"]})
    got = attendance_categories(feats, rec)
    assert got.select("user_id", "lectures", "viewed", "category").rows() == [
        ("a", 2, 2, "all"),
        ("b", 2, 1, "some"),
        ("a", 1, 0, "none"),
        ("b", 1, 1, "all"),
    ]


def test_at_risk_needs_consecutive_weeks():
    rec = pl.DataFrame(
        {
            "recording_id": ["l1", "l2", "l3"],
            "course_id": ["c"] * 3,
            "published_at": [datetime(2026, 9, d) for d in (1, 8, 15)],
        }
    )
    scores = {"a": [80, 90, 85], "b": [70, 60, 75], "c": [10, 70, 5], "d": [20, 10, 80]}
    feats = pl.DataFrame(
        [
            {"user_id": u, "recording_id": f"l{i + 1}", "engagement_score": float(v)}
            for u, vs in scores.items()
            for i, v in enumerate(vs)
        ]
    )
    fired = at_risk_students(feats, rec)
    assert fired["user_id"].to_list() == ["d"]  # c was low in weeks 1 and 3, not running; d in weeks 1 and 2
    assert fired["weeks_below"].to_list() == [2]
    assert at_risk_students(feats, rec, weeks=1)["user_id"].unique().sort().to_list() == ["c", "d"]
    with pytest.raises(ValueError, match="below=2"):
        at_risk_students(feats, rec, below=2)


def test_qoe_and_engagement_counts_each_session_once_per_dimension(worked):
    table = qoe_and_engagement(worked.details)
    for dimension in ("rebuffer_ratio", "quality"):
        assert table.filter(pl.col("dimension") == dimension)["sessions"].sum() == worked.details.height
    quality = table.filter(pl.col("dimension") == "quality").sort("group")
    assert quality.select("group", "sessions", "mean_completion_rate").rows() == [
        ("1080p", 1, 68.33),
        ("720p", 1, 33.33),
    ]


def test_lecture_attendance_by_hand():
    from test_stats import tiny_course

    from vtp_lab.metrics import lecture_attendance
    from vtp_lab.stats import derive

    events, cat = tiny_course()
    feats = derive(events, recordings=cat).engagement_features
    got = lecture_attendance(feats, cat)
    assert got.select("attendees", "students", "attendance_rate").rows() == [(2, 2, 100.0), (0, 2, 0.0)]  # L1, L2
    assert lecture_attendance(feats, cat, threshold=0.25)["attendees"].to_list() == [2, 1]


def test_struggle_rule_by_hand():
    from vtp_lab.metrics import struggle_lectures

    lectures = pl.DataFrame(
        {
            "course_id": ["c"] * 5,
            "recording_id": ["a", "b", "c", "d", "e"],
            "rewatch_fraction": [0.10, 0.10, 0.30, 0.10, 0.20],  # median 0.10: c and e at >= 0.15
            "backward_seeks_per_view": [1.0, 1.0, 1.0, 3.0, 2.0],  # median 1.0: d and e at >= 1.5
            "average_completion_rate": [80.0, 80.0, 40.0, 80.0, 80.0],  # median 80: c at <= 60
        }
    )
    assert struggle_lectures(lectures)["recording_id"].to_list() == ["c", "e"]  # two signals each; d has one


def test_weekly_engagement_and_trend():
    from vtp_lab.metrics import engagement_trends, weekly_engagement

    rec = pl.DataFrame({"recording_id": ["l1", "l2"], "course_id": ["c", "d"]})
    feats = pl.DataFrame(
        {
            "recording_id": ["l1", "l1", "l1", "l2"],
            "engagement_score": [60.0, 50.0, 40.0, 70.0],
            "first_watched": [datetime(2026, 9, 1), datetime(2026, 9, 8), datetime(2026, 9, 15), datetime(2026, 9, 1)],
        }
    )
    trends = engagement_trends(weekly_engagement(feats, rec))
    assert trends.select("course_id", "weeks", "slope", "trend").rows() == [
        ("c", 3, -10.0, "falling"),
        ("d", 1, None, "stable"),
    ]


def test_rates_per_play_are_null_without_play() -> None:
    details = pl.DataFrame(
        {
            "recording_id": ["r"],
            "fatal_errors": [0],
            "exited_before_start": [False],
            "rebuffer_seconds": [3.0],
            "play_time_seconds": [0.0],
            "buffer_events": [2],
            "time_weighted_bitrate": [None],
            "upshifts": [1],
            "downshifts": [0],
            "rebuffer_ratio": [1.0],
        },
        schema_overrides={"time_weighted_bitrate": pl.Float64},
    )
    row = qoe_summary(details, by=["recording_id"]).row(0, named=True)
    assert (row["rebuffer_frequency"], row["upshifts_per_hour"], row["downshifts_per_hour"]) == (None, None, None)
    assert row["rebuffer_ratio"] == 1.0


def test_realtime_by_hand() -> None:
    now = datetime(2026, 9, 1, 12, 0, tzinfo=UTC)
    rec, other = "6ba7b811-9dad-11d1-80b4-00c04fd430c8", "6ba7b815-9dad-11d1-80b4-00c04fd430c8"
    rows = [  # seconds before now, type, recording, user, session, position
        (120, "playback_started", rec, "u1", "s1", 0),
        (60, "buffer_start", rec, "u1", "s1", 60),
        (56, "buffer_end", rec, "u1", "s1", 60),
        (16, "session_ended", rec, "u1", "s1", 100),
        (200, "playback_started", rec, "u2", "s2", 0),
        (420, "playback_started", other, "u3", "s3", 0),
    ]
    events = pl.DataFrame(
        {
            "id": [f"e{i}" for i in range(len(rows))],
            "event_type": [r[1] for r in rows],
            "recording_id": [r[2] for r in rows],
            "user_id": [r[3] for r in rows],
            "session_id": [r[4] for r in rows],
            "event_timestamp": [now - timedelta(seconds=r[0]) for r in rows],
            "metadata": [json.dumps({"position": r[5]}) for r in rows],
        }
    )
    got = realtime(events, now=now, active_minutes=5)
    # in the last 60 s (exclusive of now - 60): buffer_end and session_ended
    assert got.events_per_second == 2 / 60
    # s1 plays 60 s, buffers 4 s, plays 40 s; s2 plays from now - 200 s to its last event (no play after it)
    assert got.recordings.rows() == [(rec, 2, 2 / 60, got.rebuffer_ratio)]
    details = sessionize(events.filter(pl.col("session_id") == "s1")).details
    assert details["rebuffer_seconds"].item() == 4.0
    assert got.rebuffer_ratio == pytest.approx(4 / (details["play_time_seconds"].item() + 4))
    assert realtime(events, now=now, active_minutes=10).recordings["recording_id"].to_list() == [rec, other]


def test_a_student_who_falls_behind_twice_is_at_risk_once():
    from datetime import datetime, timedelta

    from vtp_lab.metrics import at_risk_students

    weeks = 5
    rec = pl.DataFrame(
        {
            "recording_id": [f"l{w}" for w in range(weeks)],
            "course_id": ["c"] * weeks,
            "published_at": [datetime(2026, 9, 7) + timedelta(weeks=w) for w in range(weeks)],
        }
    )
    low = [True, True, False, True, True]  # two runs of two weeks
    rows = [("a", w, 80.0) for w in range(weeks)] + [("b", w, 75.0) for w in range(weeks)]
    rows += [("c", w, 5.0 if low[w] else 90.0) for w in range(weeks)]
    feats = pl.DataFrame(
        {
            "user_id": [u for u, _, _ in rows],
            "recording_id": [f"l{w}" for _, w, _ in rows],
            "engagement_score": [s for *_, s in rows],
        }
    )
    risk = at_risk_students(feats, rec)
    assert risk["user_id"].to_list() == ["c"]
    assert risk["last_week"].item() == datetime(2026, 10, 5) and risk["weeks_below"].item() == 2  # the latest run
