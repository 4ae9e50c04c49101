"""The Lab facade: the store chosen by the path, the same answers from both stores, filters checked."""

from __future__ import annotations

import polars as pl
import pytest

from vtp_lab.errors import EventValidationError
from vtp_lab.io import write_events
from vtp_lab.lab import Lab
from vtp_lab.store import DuckDBStore, ParquetLake
from vtp_lab.synth import semester


@pytest.fixture(scope="module")
def sem():
    return semester(courses=1, lectures_per_course=3, students=20, seed=21, bad_rows=0.03, duplicates=0.02)


def test_path_chooses_the_store(tmp_path):
    assert isinstance(Lab(tmp_path / "x.duckdb").store, DuckDBStore)
    assert isinstance(Lab(":memory:").store, DuckDBStore)
    assert isinstance(Lab(tmp_path / "lake").store, ParquetLake)


def test_duckdb_and_lake_give_the_same_tables(tmp_path, sem):
    results = {}
    for name in ("a.duckdb", "lake"):
        with Lab(tmp_path / name) as lab:
            r = lab.append(sem.events, source="sem")
            assert r.rows == sem.events.height
            results[name] = (r, lab.events().sort("id"), lab.rejected_events().sort("row_number").drop("rejected_at"))
    (ra, ea, qa), (rb, eb, qb) = results.values()
    assert (ra.inserted, ra.duplicates, ra.rejected) == (rb.inserted, rb.duplicates, rb.rejected)
    assert ra.duplicates > 0
    assert ea.equals(eb)
    assert qa.equals(qb)


def test_event_filters(tmp_path, sem):
    lab = Lab(tmp_path / "lake")
    lab.append(sem.events)
    everything = lab.events()
    user = everything["user_id"][0]
    assert lab.events(user_id=user.upper()).height == everything.filter(pl.col("user_id") == user).height
    ts = everything["event_timestamp"].sort()
    middle = ts[ts.len() // 2]
    assert lab.events(since=middle).height + lab.events(until=middle).height == everything.height
    assert lab.events(event_type="BufferStart")["event_type"].unique().to_list() == ["buffer_start"]
    session = everything["session_id"][0]
    assert lab.events(session_id=session)["session_id"].unique().to_list() == [session]


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"recording_id": "lecture-1"}, "invalid_uuid"),
        ({"since": "monday"}, "invalid_timestamp"),
        ({"event_type": "rewind"}, "unknown_event_type"),
    ],
)
def test_bad_filter_values_are_named(kw, reason):
    with pytest.raises(EventValidationError) as info:
        Lab(":memory:").events(**kw)
    assert info.value.reason == reason
    assert info.value.value == next(iter(kw.values()))


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda lab: lab.events(since="2026-12-01", until="2026-01-01"), ValueError, "since='2026-12-01' is after"),
        (lambda lab: lab.playback_sessions(since="2026-12-01", until="2026-01-01"), ValueError, "swap them"),
        (lambda lab: lab.engagement_metrics(score=3), TypeError, "score=3 is not a polars expression"),
        (lambda lab: lab.realtime(active_minutes=0), ValueError, "active_minutes=0 must be more than 0"),
        (lambda lab: lab.append([{"event_type": "buffer_end"}]), TypeError, "not a list; build one with pl.DataFrame"),
    ],
)
def test_notebook_mistakes_are_named(sem, call, error, message):
    lab = Lab(":memory:")
    stored = lab.append(sem.events).inserted
    with pytest.raises(error, match=message):
        call(lab)
    assert lab.events().height == stored


def test_an_empty_frame_appends_nothing():
    lab = Lab(":memory:")
    result = lab.append(pl.DataFrame())
    assert (result.inserted, result.rejected, result.duplicates) == (0, 0, 0)
    assert lab.events().height == 0 and lab.rejected_events().height == 0


def test_lab_renders_in_notebooks_and_terminals(sem):
    lab = Lab(":memory:")
    lab.append(sem.events)
    assert "events" in lab._repr_html_() and "<table>" in lab._repr_html_()
    assert repr(lab).startswith("Lab(':memory:', DuckDB: ")


def test_frames_go_to_pandas_on_a_plain_install(tmp_path, sem):
    """The README says frames work with pandas: pandas is a dependency, not only the Spark extra's."""
    import importlib.metadata

    requires = importlib.metadata.requires("vtp-lab") or []
    assert any(r.startswith("pandas") and "extra" not in r for r in requires)
    lab = Lab(":memory:")
    lab.load(write_events(sem.events, tmp_path / "e.ndjson"), progress=False)
    frame = lab.lecture_statistics().to_pandas()
    assert len(frame) == lab.lecture_statistics().height and "avg_engagement_score" in frame.columns
    seconds = frame["quality_distribution"].iloc[0]  # typed, not JSON text: a list of quality/seconds pairs
    assert {"quality", "seconds"} <= set(seconds[0]) and seconds[0]["seconds"] >= seconds[-1]["seconds"]
