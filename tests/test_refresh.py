"""The derived tables of a store in parts of recordings: the same tables as one frame, in bounded memory."""

from __future__ import annotations

from dataclasses import fields
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from vtp_lab import duck, refresh
from vtp_lab.errors import StoreError
from vtp_lab.lab import Lab
from vtp_lab.refresh import BYTES_PER_EVENT, IN_FLIGHT, DerivedCache, _stage_one, derive_in_threads, partitions_for
from vtp_lab.reports import build
from vtp_lab.sessions import DEFAULT_SESSION_GAP
from vtp_lab.stats import MATERIALISED, ViewingRequirement, derive, viewing_compliance, viewing_met, viewing_rows
from vtp_lab.store import open_store, read_spilled
from vtp_lab.synth import semester

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "events.ndjson.gz"
SORT = {
    "session_details": ["id"],
    "playback_sessions": ["id"],
    "quality_events": ["id"],
    "engagement_features": ["recording_id", "user_id"],
    "engagement_metrics": ["id"],
    "lecture_statistics": ["id"],
    "course_statistics": ["id"],
    "recordings": ["recording_id"],
    "quality_play": ["recording_id", "quality"],
}


def assert_same(got: pl.DataFrame, want: pl.DataFrame, name: str) -> None:
    assert_frame_equal(
        got.sort(SORT[name]), want.sort(SORT[name]), check_exact=False, rel_tol=1e-9, abs_tol=0, check_dtypes=True
    )


def test_a_store_that_fits_memory_is_derived_in_parts_at_once_with_the_tables_of_one_frame(monkeypatch):
    """From THREADED_FROM events, the Lab's frame is cut by recording into IN_FLIGHT parts derived in threads."""
    sem = semester(courses=2, lectures_per_course=4, students=30, seed=8)
    want = derive(sem.events, recordings=sem.recordings)
    cut: list[int] = []
    stage_one = refresh.derive_partition
    monkeypatch.setattr(
        refresh, "derive_partition", lambda events, **kw: cut.append(events.height) or stage_one(events, **kw)
    )
    monkeypatch.setattr(refresh, "THREADED_FROM", sem.events.height)
    with Lab(":memory:") as lab:
        lab.store.append(sem.events)
        lab.load_recordings(sem.recordings)
        got = lab.derived()
    assert len(cut) == IN_FLIGHT and sum(cut) == sem.events.height and min(cut) > 0
    for name in SORT:
        assert_same(getattr(got, name), getattr(want, name), name)
    cut.clear()
    small = derive_in_threads(sem.events.head(100), recordings=sem.recordings)  # fewer: derive's one frame
    assert not cut and small.playback_sessions.equals(
        derive(sem.events.head(100), recordings=sem.recordings).playback_sessions
    )


def test_parts_follow_the_budget():
    assert partitions_for(events=0, budget=1) == 1
    assert partitions_for(events=1_000_000, budget=BYTES_PER_EVENT * 1_000_000) == 1
    assert partitions_for(events=1_000_001, budget=BYTES_PER_EVENT * 1_000_000) == 3  # two at once, each half
    with pytest.raises(ValueError, match="memory_budget=0 must be a positive number of bytes"):
        Lab(":memory:", memory_budget=0)


@pytest.mark.parametrize("store", ["lab.duckdb", "lake", "o'brien/lab.duckdb", "o'brien's lake"])
def test_a_refresh_in_parts_gives_the_tables_of_one_frame(tmp_path, store):
    """In parts, the five tables are those of one frame, in a folder whose name has a quote too (SQL literals)."""
    with Lab(tmp_path / store) as whole:
        whole.load(SAMPLE, progress=False)
        whole.load_recordings(ROOT / "data" / "recordings.csv")
        want = derive(whole.events(), recordings=whole.store.read("recordings"))
    budget = 42_010 * BYTES_PER_EVENT * IN_FLIGHT // 7  # seven parts of the sample's events
    with Lab(tmp_path / store, memory_budget=budget) as lab:
        counts = lab.refresh()
        assert counts == {name: getattr(want, name).height for name in MATERIALISED}
        for name in MATERIALISED:
            assert_same(lab.table(name), getattr(want, name), name)
        got = lab.derived()
        for name in SORT:
            assert_same(getattr(got, name), getattr(want, name), name)
        assert lab.report("engagement").headline == pytest.approx(build("engagement", derived=want).headline)
    scratch = [p for p in tmp_path.rglob(".vtp_lab-refresh-*")]
    assert scratch == []  # the spilled parts are gone


@pytest.mark.parametrize("store", ["lab.duckdb", "lake"])
def test_viewing_compliance_in_parts_is_that_of_one_frame(tmp_path, store):
    """The compliance report's viewing reads a part of the recordings at a time when the events exceed the budget."""
    sem = semester(courses=2, lectures_per_course=4, students=15, seed=6)
    requirement = ViewingRequirement(coverage=0.3, within=timedelta(days=10))
    want = viewing_compliance(sem.events, sem.recordings, requirement)
    budget = sem.events.height * BYTES_PER_EVENT * IN_FLIGHT // 5  # five parts
    with Lab(tmp_path / store, memory_budget=budget) as lab:
        lab.append(sem.events)
        lab.load_recordings(sem.recordings)
        assert lab._cache._partitions() == 5
        steps: list[int] = []
        cat = lab.recordings()

        def step(events: pl.DataFrame) -> pl.DataFrame:
            steps.append(events.height)
            return viewing_rows(events, recordings=cat, requirement=requirement, session_gap=DEFAULT_SESSION_GAP)

        rows = lab._cache.over_parts(step)
        got = lab.report("compliance", requirement=requirement).tables["viewing_missed"]
        stored = lab.count("analytics_events")
    assert 1 < len(steps) <= 5 and sum(steps) == stored  # every event in one part (a part may hold none)
    assert_frame_equal(viewing_met(rows, cat, requirement), want)
    assert 0 < want["met"].sum() < want.height
    missed = want.filter(~pl.col("met")).select("user_id", "recording_id").sort("user_id", "recording_id")
    assert got.select("user_id", "recording_id").sort("user_id", "recording_id").equals(missed)


@pytest.mark.parametrize("name", ["lab.duckdb", "lake"])
def test_every_recording_is_in_one_part_and_every_event_in_a_part(tmp_path, name):
    events = semester(courses=2, lectures_per_course=5, students=12, seed=4).events
    store = open_store(tmp_path / name)
    store.append(events)
    folders = store.spill("analytics_events", by="recording_id", parts=4, folder=tmp_path / "parts")
    parts = [read_spilled(f).with_columns(pl.lit(i).alias("p")) for i, f in enumerate(folders)]
    spilled = pl.concat(parts)
    assert spilled.height == events.height
    assert spilled.group_by("recording_id").agg(pl.col("p").n_unique())["p"].max() == 1
    assert_frame_equal(spilled.drop("p").sort("id"), store.read("analytics_events").sort("id"))


def test_a_part_makes_the_text_of_each_distinct_user_and_recording_id_once(tmp_path, monkeypatch):
    """A row's id is made a text a row; user and recording ids, which repeat, a distinct value at a time."""
    events = semester(courses=1, lectures_per_course=3, students=6, seed=2).events
    store = open_store(tmp_path / "lab.duckdb")
    store.append(events)
    (folder,) = store.spill("analytics_events", by="recording_id", parts=1, folder=tmp_path / "parts")
    sizes: list[int] = []
    real = duck.uuid_text
    monkeypatch.setattr(duck, "uuid_text", lambda values: sizes.append(len(values)) or real(values))
    got = read_spilled(folder)
    assert sorted(sizes) == sorted([events.height, events["user_id"].n_unique(), events["recording_id"].n_unique()])
    assert_frame_equal(got.sort("id"), store.read("analytics_events").sort("id"))


def test_uuid_texts_of_repeated_values_equal_a_text_a_row_nulls_kept():
    values = pl.Series("k", [b"\x00" * 16, None, bytes(range(16)), b"\x00" * 16, None], pl.Binary)
    one_a_row = duck.uuid_texts(values, repeats=False)
    zero, counted = "00000000-0000-0000-0000-000000000000", "00010203-0405-0607-0809-0a0b0c0d0e0f"
    assert one_a_row.to_list() == [zero, None, counted, zero, None]
    assert_frame_equal(duck.uuid_texts(values, repeats=True).to_frame(), one_a_row.to_frame())


def _buffer_bytes(frame: pl.DataFrame) -> int:
    """The bytes of every buffer behind ``frame``'s columns, shared ones whole (string views share their source's)."""
    table = frame.to_arrow(compat_level=pl.CompatLevel.newest())
    return sum(b.size for column in table.columns for chunk in column.chunks for b in chunk.buffers() if b is not None)


def test_what_a_part_keeps_in_memory_holds_no_buffer_of_its_events(tmp_path):
    """The small rows kept of each part must not keep the part's event columns alive (memory grew with the store)."""
    store = open_store(tmp_path / "lab.duckdb")
    store.append(pl.concat([semester(courses=2, lectures_per_course=4, students=80, seed=s).events for s in (1, 2)]))
    (folder,) = store.spill("analytics_events", by="recording_id", parts=1, folder=tmp_path / "parts")
    (tmp_path / "out").mkdir()
    events_bytes = _buffer_bytes(read_spilled(folder))
    kept = _stage_one(folder, tmp_path / "out", 0, store.read("recordings"), DEFAULT_SESSION_GAP)
    for rows in (kept.small, kept.scored):
        for name in (f.name for f in fields(rows)):
            assert _buffer_bytes(getattr(rows, name)) < events_bytes / 20, name


def test_what_over_parts_keeps_of_each_part_holds_no_buffer_of_its_events(tmp_path):
    store = open_store(tmp_path / "lab.duckdb")
    store.append(pl.concat([semester(courses=2, lectures_per_course=4, students=80, seed=s).events for s in (1, 2)]))
    cache = DerivedCache(store=store, memory_budget=store.count("analytics_events") * BYTES_PER_EVENT // 2)  # 4 parts
    events_bytes = _buffer_bytes(store.read("analytics_events"))
    kept = cache.over_parts(lambda events: events.head(3).select("user_id", "recording_id"))
    assert kept.height == 12
    assert _buffer_bytes(kept) < events_bytes / 100


@pytest.mark.parametrize("known", [True, False])
def test_what_is_kept_beside_the_store_follows_the_events(tmp_path, monkeypatch, known):
    sem = semester(courses=2, lectures_per_course=4, students=20, seed=8)
    second = sem.events.filter(pl.col("recording_id") == sem.events["recording_id"].max())
    first = sem.events.join(second, on="id", how="anti")
    cache = DerivedCache(store=open_store(tmp_path / "lab.duckdb"), memory_budget=first.height * BYTES_PER_EVENT // 3)
    cache.store.append(first)
    assert_same(cache.derived().session_details, derive(first).session_details, "session_details")
    whole = []
    monkeypatch.setattr(
        cache, "_refresh_all", lambda version: whole.append(version) or DerivedCache._refresh_all(cache, version)
    )
    cache.store.append(second)
    cache.wrote(second["recording_id"] if known else None)
    got, want = cache.derived(), derive(sem.events)
    for name in ("session_details", "engagement_features", "quality_play", *MATERIALISED):
        assert_same(getattr(got, name), getattr(want, name), name)
    assert len(whole) == (0 if known else 1)  # after its own write, only the touched course is derived again
    assert (tmp_path / "lab.duckdb.derived" / "version").read_text() == cache.store.derived_version()


@pytest.mark.parametrize("store", ["lab.duckdb", "lake"])
def test_a_large_store_is_read_back_as_it_is_and_a_reader_says_when_it_cannot(tmp_path, monkeypatch, store):
    sem = semester(courses=2, lectures_per_course=4, students=20, seed=8)
    budget = sem.events.height * BYTES_PER_EVENT // 3
    with Lab(tmp_path / store, memory_budget=budget) as lab:
        lab.append(sem.events)
        lab.refresh()
    monkeypatch.setattr(DerivedCache, "_refresh_all", lambda self, version: pytest.fail("derived again"))
    with Lab(tmp_path / store, memory_budget=budget) as lab:  # fresh: read back, nothing derived again
        assert_same(lab.derived().session_details, derive(sem.events).session_details, "session_details")
    with Lab(tmp_path / store, read_only=True, memory_budget=budget) as reader:
        assert reader.report("engagement").headline == pytest.approx(
            build("engagement", derived=derive(sem.events)).headline
        )
    with Lab(tmp_path / store, memory_budget=budget) as lab:
        lab.append(semester(courses=1, lectures_per_course=2, students=5, seed=99).events)
    with (
        Lab(tmp_path / store, read_only=True, memory_budget=budget) as reader,
        pytest.raises(StoreError, match=r"out of date and its events exceed memory_budget=.*Lab\(path\)\.refresh\(\)"),
    ):
        reader.derived()
