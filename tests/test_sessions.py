"""Sessions: the spec's worked example, and random sessions against the per-event reference."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from conftest import REC, USER
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal
from reference import walk

from vtp_lab import sessions
from vtp_lab.errors import InputFormatError
from vtp_lab.events import SESSION_EVENT_ORDER, playback_session_id
from vtp_lab.recordings import catalogue
from vtp_lab.sessions import SESSION_KEY, playback_sessions, session_details, sessionize
from vtp_lab.stats import derive
from vtp_lab.synth import semester
from vtp_lab.tables import PLAYBACK_SESSIONS, RECORDINGS

T0 = datetime(2026, 9, 1, 10, tzinfo=UTC)
REC2 = "6ba7b813-9dad-11d1-80b4-00c04fd430c8"


def frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={
            "id": pl.String,
            "event_type": pl.String,
            "recording_id": pl.String,
            "user_id": pl.String,
            "session_id": pl.String,
            "event_timestamp": pl.Datetime("us", "UTC"),
            "metadata": pl.String,
        },
    )


def event(
    i: int, seconds: float, kind: str, meta: dict | None, *, session: str = "s1", rec: str = REC, user: str = USER
) -> dict:
    return {
        "id": f"00000000-0000-4000-8000-{i:012d}",
        "event_type": kind,
        "recording_id": rec,
        "user_id": user,
        "session_id": session,
        "event_timestamp": T0 + timedelta(seconds=seconds),
        "metadata": None if meta is None else json.dumps(meta),
    }


def recordings(duration: float | None = 600.0, rec: str = REC) -> pl.DataFrame:
    return RECORDINGS.conform(
        pl.DataFrame(
            {"recording_id": [rec], "title": ["Lecture"], "duration_seconds": [duration]},
            schema_overrides={"duration_seconds": pl.Float64},
        )
    )


WORKED = [
    (0, "playback_started", {"position": 0, "quality": "720p"}),
    (60, "quality_changed", {"old_quality": "720p", "new_quality": "1080p"}),
    (100, "buffer_start", {"position": 100}),
    (104, "buffer_end", {"position": 100}),
    (200, "engagement_action", {"action": "seek", "from_position": 196, "to_position": 50}),
    (300, "playback_paused", {"position": 150}),
    (400, "playback_resumed", {"position": 150}),
    (460, "engagement_action", {"action": "speed_change", "playback_rate": 2}),
    (560, "playback_completed", {}),
]


def worked_events() -> pl.DataFrame:
    rows = [event(i, s, k, m) for i, (s, k, m) in enumerate(WORKED)]
    day = 86_400
    rows += [
        event(100, day, "playback_started", {"position": 400, "quality": "720p"}, session="s2"),
        event(101, day + 200, "session_ended", {"position": 600}, session="s2"),
    ]
    return frame(rows)


def test_worked_example_of_the_spec():
    d = session_details(worked_events(), recordings=recordings()).sort("session_id")
    first, second = d.row(0, named=True), d.row(1, named=True)
    assert (first["watched_seconds"], first["completion_rate"], first["quality"]) == (410, 68.33, "1080p")
    assert (first["play_time_seconds"], first["buffer_events"], first["rebuffer_seconds"]) == (456.0, 1, 4.0)
    assert first["ended_at"] == T0 + timedelta(seconds=560)
    assert first["duration_seconds"] == 600
    assert (second["watched_seconds"], second["completion_rate"]) == (200, 33.33)
    assert first["id"] == playback_session_id("s1", REC, USER)
    assert (
        first["seeks"],
        first["backward_seeks"],
        first["pauses"],
        first["speed_changes"],
        first["quality_changes"],
    ) == (1, 1, 1, 1, 1)
    assert first["rewatched_seconds"] == 146.0  # [50, 196) was played twice
    assert first["exited_before_start"] is False


def test_playback_sessions_has_the_mirror_columns():
    table = playback_sessions(worked_events(), recordings=recordings())
    assert table.schema == PLAYBACK_SESSIONS.polars_schema
    assert table.height == 2


def test_open_session_and_unknown_duration():
    rows = [event(0, 0, "playback_started", {"position": 30}), event(1, 50, "playback_paused", {})]
    d = session_details(frame(rows), recordings=recordings(None)).row(0, named=True)
    assert d["ended_at"] is None
    assert (d["watched_seconds"], d["duration_seconds"], d["completion_rate"]) == (50, None, None)


def test_positions_past_the_end_are_capped():
    rows = [event(0, 0, "playback_started", {"position": 500}), event(1, 300, "playback_completed", {"position": 800})]
    d = session_details(frame(rows), recordings=recordings(600.0)).row(0, named=True)
    assert (d["watched_seconds"], d["completion_rate"]) == (100, 16.67)


def test_exited_before_start_and_fatal_errors():
    rows = [event(0, 0, "playback_started", {"position": 0}), event(1, 0, "session_ended", {})]
    rows += [
        event(2, 0, "playback_started", {}, session="s2"),
        event(3, 10, "error_occurred", {"fatal": True, "code": "E"}, session="s2"),
    ]
    d = session_details(frame(rows), recordings=recordings()).sort("session_id")
    assert d["exited_before_start"].to_list() == [True, False]
    assert d["fatal_errors"].to_list() == [0, 1]
    assert d["ended_at"][1] == T0 + timedelta(seconds=10)


def test_sessions_whose_keys_share_a_hash_stay_apart(monkeypatch):
    sem = semester(courses=1, lectures_per_course=2, students=20, seed=4)
    expected = session_details(sem.events, recordings=sem.recordings)
    monkeypatch.setattr(sessions, "_SESSION_HASH", pl.lit(7, pl.UInt64))
    assert_frame_equal(session_details(sem.events, recordings=sem.recordings), expected)  # sums in another order


def test_each_segment_names_the_row_of_its_session():
    sem = semester(courses=1, lectures_per_course=2, students=20, seed=5)
    s = sessionize(sem.events, recordings=sem.recordings)
    played = s.segments.group_by("session").agg(pl.col("play_seconds").sum())
    rows = s.details.with_row_index("session").join(played, on="session", how="left")
    assert (rows["play_seconds"].fill_null(0.0) - rows["play_time_seconds"]).abs().max() < 1e-6
    assert s.segments.select(SESSION_KEY).equals(s.details.select(SESSION_KEY)[s.segments["session"]])


def test_metadata_that_is_not_json_gets_an_error_that_names_the_fix():
    events = frame([event(1, 0, "playback_started", {"position": 0}), event(2, 5, "playback_paused", None)])
    events = events.with_columns(
        pl.when(pl.col("metadata").is_null()).then(pl.lit("{position: 5")).otherwise("metadata").alias("metadata")
    )
    with pytest.raises(InputFormatError, match=r"not valid JSON .*vtp_lab\.validate"):
        sessionize(events, recordings=recordings())


def test_catalogue_prefers_loaded_rows_then_recording_started_events():
    rows = [
        event(
            0,
            0,
            "recording_started",
            {"course_id": REC2, "title": "From events", "duration": 900},
            session="r",
            rec=REC,
        ),
        event(
            1,
            5,
            "recording_started",
            {"course_id": REC2, "title": "Only events", "duration": 100},
            session="r",
            rec=REC2,
        ),
        event(2, 9, "playback_started", {"duration": 1200}, session="x", rec=REC2),
    ]
    cat = catalogue(frame(rows), recordings(None)).sort("recording_id")
    assert cat["title"].to_list() == ["Lecture", "Only events"]
    assert cat["duration_seconds"].to_list() == [900.0, 1200.0]  # catalogue's is null, so the largest metadata duration
    assert cat["course_id"].to_list() == [None, REC2]


# --- property: random sessions, the vectorised walk against the per-event reference ---

KINDS = [t.value for t in SESSION_EVENT_ORDER]  # every type a session walks
positions = st.none() | st.integers(0, 700).map(float)


@st.composite
def session_events(draw: st.DrawFn) -> list[tuple[int, str, dict]]:
    n = draw(st.integers(1, 14))
    out = []
    t = 0
    for _ in range(n):
        t += draw(st.sampled_from([0, 0, 1, 5, 30, 100]))
        kind = draw(st.sampled_from(KINDS))
        meta: dict = {}
        if draw(st.booleans()):
            p = draw(positions)
            if p is not None:
                meta["position"] = p
        if kind == "playback_started":
            meta.update(
                draw(
                    st.fixed_dictionaries(
                        {},
                        optional={
                            "quality": st.sampled_from(["480p", "720p", "1080p"]),
                            "playback_rate": st.sampled_from([0.5, 1.0, 2.0]),
                            "bitrate": st.sampled_from([800, 2800]),
                        },
                    )
                )
            )
        elif kind == "quality_changed":
            meta.update(
                draw(
                    st.fixed_dictionaries(
                        {},
                        optional={
                            "new_quality": st.sampled_from(["480p", "720p", "1080p"]),
                            "old_bitrate": st.sampled_from([800, 2800]),
                            "new_bitrate": st.sampled_from([800, 2800, 5000]),
                        },
                    )
                )
            )
        elif kind == "error_occurred":
            meta["fatal"] = draw(st.booleans())
        elif kind == "engagement_action":
            action = draw(st.sampled_from(["seek", "speed_change", "note_taken"]))
            meta["action"] = action
            if action == "seek":
                meta.update(
                    draw(
                        st.fixed_dictionaries(
                            {},
                            optional={
                                "from_position": positions.filter(lambda x: x is not None),
                                "to_position": positions.filter(lambda x: x is not None),
                            },
                        )
                    )
                )
            elif action == "speed_change" and draw(st.booleans()):
                meta["playback_rate"] = draw(st.sampled_from([0.5, 1.0, 2.0]))
        out.append((t, kind, meta))
    return out


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    sessions=st.lists(session_events(), min_size=1, max_size=4),
    duration=st.none() | st.sampled_from([60.0, 300.0, 600.0]),
)
def test_vectorised_sessions_match_the_per_event_reference(sessions, duration):
    rows = []
    for s, evs in enumerate(sessions):
        rows += [event(s * 100 + i, t, kind, meta, session=f"s{s}") for i, (t, kind, meta) in enumerate(evs)]
    got = session_details(frame(rows), recordings=recordings(duration)).sort("session_id")
    assert got.height == len(sessions)
    for s, row in enumerate(got.iter_rows(named=True)):
        want = walk([r for r in rows if r["session_id"] == f"s{s}"], duration)
        for key, value in want.items():
            if isinstance(value, float):
                assert row[key] == pytest.approx(value, abs=1e-9), (key, row[key], value)
            else:
                assert row[key] == value, (key, row[key], value)


def test_rounding_half_up_gives_the_decimal_answer_not_the_float_one():
    """[54.6, 240.2) and [47.7, 162.9): a union of exactly 192.5 s as written, 192.49999999999997 in floats."""
    rows = [
        event(0, 0, "playback_started", {"position": 54.6}),
        event(1, 185.6, "playback_paused", {"position": 240.2}),
        event(2, 195.6, "playback_resumed", {"position": 47.7}),
        event(3, 310.8, "playback_paused", {"position": 162.9}),
    ]
    d = session_details(frame(rows), recordings=recordings(1800.0))
    assert d.select("watched_seconds", "completion_rate").row(0) == (193, 10.72)  # 193 / 1800 = 10.7222 %


def test_completion_and_quality_seconds_on_exactly_half_round_up():
    rows = [event(0, 0, "playback_started", {"position": 0, "quality": "720p"}), event(1, 2.5, "playback_paused", {})]
    d = session_details(frame(rows), recordings=recordings(400.0))
    assert d.select("watched_seconds", "completion_rate").row(0) == (3, 0.75)  # 2.5 s -> 3; 3 / 400 = 0.75 %
    rows = [event(0, 0, "playback_started", {"position": 0}), event(1, 1, "playback_paused", {"position": 1})]
    assert session_details(frame(rows), recordings=recordings(160.0))["completion_rate"].item() == 0.63  # 0.625
    lectures = derive(frame([event(0, 0, "playback_started", {"quality": "720p"}), event(1, 2.5, "session_ended", {})]))
    assert lectures.lecture_statistics["quality_distribution"].to_list() == [[{"quality": "720p", "seconds": 3}]]
