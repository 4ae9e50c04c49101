"""Spark in local mode: the same five tables as the polars path, on the sample, on random events and from a lake."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal
from test_sessions import REC2, event, frame, recordings, session_events

from vtp_lab import spark as vs
from vtp_lab.events import NO_SESSION
from vtp_lab.lab import Lab
from vtp_lab.sessions import DEFAULT_SESSION_GAP
from vtp_lab.stats import MATERIALISED, derive
from vtp_lab.synth import semester
from vtp_lab.tables import ANALYTICS_EVENTS, TABLES

ROOT = Path(__file__).resolve().parents[1]
KEYS = {
    "playback_sessions": ["id"],
    "quality_events": ["id"],
    "engagement_metrics": ["id"],
    "lecture_statistics": ["id"],
    "course_statistics": ["id"],
}


def assert_tables_equal(
    got: dict, events: pl.DataFrame, recordings: pl.DataFrame | None, *, session_gap: timedelta = DEFAULT_SESSION_GAP
) -> None:
    """Each Spark table has the mirror's columns and types and equals the polars path's (floats within 1e-9)."""
    want = derive(events, recordings=recordings, session_gap=session_gap)
    assert sorted(got) == sorted(MATERIALISED)
    for name in MATERIALISED:
        rows = got[name]
        frame = pl.from_arrow(rows.toArrow()) if rows.count() else TABLES[name].empty()
        assert frame.schema == TABLES[name].polars_schema, name
        assert_frame_equal(
            frame.sort(KEYS[name]),
            getattr(want, name).sort(KEYS[name]),
            check_exact=False,
            rel_tol=1e-9,
            abs_tol=0,
        )


@pytest.fixture(scope="module")
def sample() -> tuple[pl.DataFrame, pl.DataFrame]:
    with Lab(":memory:") as lab:
        lab.load(ROOT / "data" / "events.ndjson.gz", progress=False)
        return lab.events(), lab.load_recordings(ROOT / "data" / "recordings.csv")


def test_the_sample_on_spark_gives_the_polars_tables(spark, sample):
    events, catalogue = sample
    frame = vs._to_spark(spark, events, ANALYTICS_EVENTS)
    assert_tables_equal(vs.derive(frame, spark=spark, recordings=catalogue, partitions=7), events, catalogue)


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    sessions=st.lists(st.tuples(session_events(), st.sampled_from([0, 1])), min_size=1, max_size=5),
    partitions=st.integers(1, 4),
)
def test_random_events_on_spark_give_the_polars_tables(spark, sessions, partitions):
    recs = [recordings(600.0)["recording_id"][0], REC2]
    rows = []
    for s, (evs, r) in enumerate(sessions):
        rows += [
            event(s * 100 + i, t, kind, meta, session=f"s{s}", rec=recs[r]) for i, (t, kind, meta) in enumerate(evs)
        ]
    events = ANALYTICS_EVENTS.conform(frame(rows))
    got = vs.derive(vs._to_spark(spark, events, ANALYTICS_EVENTS), spark=spark, partitions=partitions)
    assert_tables_equal(got, events, None)


def test_sessionless_events_on_spark_are_cut_by_the_same_gap(spark, tmp_path):
    events = semester(courses=1, lectures_per_course=2, students=6, seed=2).events
    events = events.with_columns(pl.lit(NO_SESSION).alias("session_id"))  # as a source without sessions gives them
    gap = timedelta(minutes=10)
    got = vs.derive(vs._to_spark(spark, events, ANALYTICS_EVENTS), spark=spark, partitions=3, session_gap=gap)
    assert_tables_equal(got, events, None, session_gap=gap)
    assert got["playback_sessions"].count() > derive(events).playback_sessions.height  # the shorter gap cuts more


def test_a_lake_on_spark_gives_the_polars_tables_and_writes_parquet(spark, sample, tmp_path):
    events, catalogue = sample
    with Lab(tmp_path / "lake") as lab:
        lab.load(ROOT / "data" / "events.ndjson.gz", progress=False)
        lab.load_recordings(ROOT / "data" / "recordings.csv")
    got = vs.derive(tmp_path / "lake", spark=spark)
    assert_tables_equal(got, events, catalogue)
    folders = vs.write(got, tmp_path / "derived")
    back = pl.read_parquet(tmp_path / "derived" / "playback_sessions" / "*.parquet")
    assert [f.name for f in folders] == list(MATERIALISED)
    assert back.schema["started_at"] == pl.Datetime("us", "UTC")  # microseconds, not INT96 nanoseconds
    assert back.height == got["playback_sessions"].count()


def test_no_pyspark_is_a_one_line_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyspark", None)
    monkeypatch.setitem(sys.modules, "pyspark.sql", None)
    with pytest.raises(ImportError, match=r'pip install "vtp-lab\[spark\]"'):
        vs.session()


def test_no_java_is_a_one_line_install_hint(monkeypatch):
    pytest.importorskip("pyspark")
    from pyspark.sql import SparkSession

    monkeypatch.setattr(SparkSession, "getActiveSession", staticmethod(lambda: None))
    monkeypatch.setenv("JAVA_HOME", "/nowhere")
    monkeypatch.setenv("PATH", "/nowhere")
    with pytest.raises(ImportError, match="Java 17"):
        vs.session()


@pytest.mark.slow
def test_spark_submit_derives_a_lake_into_parquet(tmp_path):
    submit = Path(sys.executable).with_name("spark-submit")
    if not submit.is_file():
        pytest.skip("no spark-submit beside this Python (pyspark is not installed)")
    with Lab(tmp_path / "lake") as lab:  # a small semester: what is tested here is the submit, not the tables
        lab.append(semester(courses=1, lectures_per_course=3, students=8, seed=2).events)
        want = {name: lab.table(name).height for name in MATERIALISED}
    done = subprocess.run(
        [
            str(submit),
            "--master",
            "local[2]",
            vs.__file__,
            str(tmp_path / "lake"),
            str(tmp_path / "out"),
            "--partitions",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for name, rows in want.items():
        assert pl.read_parquet(tmp_path / "out" / name / "*.parquet").height == rows, name
        assert f"{tmp_path / 'out' / name}: {rows:,} rows" in done.stdout
