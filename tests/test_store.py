"""Both stores: same tables, atomic batches, de-duplication, quarantine, filters, recordings."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import duckdb
import polars as pl
import pytest

from vtp_lab.errors import StoreError
from vtp_lab.lab import Lab
from vtp_lab.store import DuckDBStore, Filter, ParquetLake, open_store
from vtp_lab.synth import semester
from vtp_lab.tables import ANALYTICS_EVENTS, QUALITY_SECONDS, REJECTED_EVENTS, TABLES
from vtp_lab.validation import validate


@pytest.fixture(scope="module")
def sem():
    return semester(courses=1, lectures_per_course=3, students=15, seed=9, bad_rows=0.05)


@pytest.fixture(params=["duckdb", "memory", "lake"])
def store(request, tmp_path):
    path = {"duckdb": tmp_path / "s.duckdb", "memory": ":memory:", "lake": tmp_path / "lake"}[request.param]
    s = open_store(path)
    yield s
    s.close()


def test_open_store_picks_by_path(tmp_path):
    assert isinstance(open_store(tmp_path / "a.duckdb"), DuckDBStore)
    assert isinstance(open_store(":memory:"), DuckDBStore)
    assert isinstance(open_store(tmp_path / "lake"), ParquetLake)


def test_every_table_reads_with_its_declared_schema(store):
    for name, table in TABLES.items():
        assert store.read(name).schema == table.polars_schema


def test_append_stores_accepted_and_quarantines_rejected(store, sem):
    v = validate(sem.events)
    result = store.append(v.accepted, v.rejected)
    assert result.inserted == v.accepted["id"].n_unique()
    assert result.rejected == v.rejected.height > 0
    assert result.rows == v.rows_read
    stored = store.read("analytics_events").sort("id")
    assert stored.equals(v.accepted.unique("id", keep="first").sort("id"))
    assert store.read("rejected_events").sort("row_number").equals(v.rejected.sort("row_number"))


def test_duplicates_within_batch_and_against_store_are_stored_once(store, sem):
    ev = validate(sem.events).accepted.head(500)
    doubled = pl.concat([ev, ev.head(100)])
    first = store.append(doubled)
    assert (first.inserted, first.duplicates) == (500, 100)
    again = store.append(ev)
    assert (again.inserted, again.duplicates) == (0, 500)
    assert store.read("analytics_events").height == 500


def test_a_batch_of_stored_and_new_rows_stores_the_new_ones_and_remembers_them(store, sem):
    v = validate(sem.events)
    ev, rej = v.accepted.unique("id", keep="first", maintain_order=True), v.rejected
    store.append(ev.head(100), rej.head(2))
    mixed = store.append(ev.head(150), rej.head(3))
    assert (mixed.inserted, mixed.rejected, mixed.duplicates) == (50, 1, 102)
    later = store.append(ev.slice(120, 80), rej.head(3))  # 30 stored by the mixed batch, 50 new
    assert (later.inserted, later.rejected, later.duplicates) == (50, 0, 33)
    assert store.count("analytics_events") == 200
    assert store.count("rejected_events") == 3


def test_first_copy_of_a_repeated_id_wins(store, sem):
    ev = validate(sem.events).accepted.head(1)
    changed = ev.with_columns(pl.lit("other-session").alias("session_id"))
    store.append(pl.concat([ev, changed]))
    assert store.read("analytics_events")["session_id"].to_list() == ev["session_id"].to_list()


def test_filters_push_down(store, sem):
    ev = validate(sem.events).accepted
    store.append(ev)
    user = ev["user_id"][5]
    got = store.read("analytics_events", [Filter(column="user_id", op="==", value=user)])
    assert got.sort("id").equals(ev.filter(pl.col("user_id") == user).sort("id"))
    cut = datetime(2026, 3, 1, tzinfo=UTC)
    got = store.read("analytics_events", [Filter(column="event_timestamp", op="<", value=cut)])
    assert got.height == ev.filter(pl.col("event_timestamp") < cut).height
    types = ["buffer_start", "buffer_end"]
    assert (
        store.read("analytics_events", [Filter(column="event_type", op="in", value=types)]).height
        == ev.filter(pl.col("event_type").is_in(types)).height
    )


def test_reads_only_the_columns_asked_for(store, sem):
    ev = validate(sem.events).accepted
    store.append(ev)
    user = ev["user_id"][5]
    got = store.read("analytics_events", [Filter(column="user_id", op="==", value=user)], columns=["id", "metadata"])
    want = ev.filter(pl.col("user_id") == user).select("id", "metadata")
    assert got.sort("id").equals(want.sort("id"))
    assert store.read("rejected_events", columns=["reason"]).schema == pl.Schema({"reason": pl.String()})
    with pytest.raises(StoreError, match="analytics_events has no column 'timestamp'; its columns are id, "):
        store.read("analytics_events", columns=["timestamp"])


def test_recordings_are_replaced_whole(store, sem):
    store.write_recordings(sem.recordings)
    store.write_recordings(sem.recordings.head(1))
    assert store.read("recordings").equals(sem.recordings.head(1))


def test_unknown_table_names_the_tables(store):
    with pytest.raises(StoreError, match="no table 'events'; the tables are analytics_events"):
        store.read("events")


def test_lake_layout_is_hive_partitioned_zstd(tmp_path, sem):
    lake = ParquetLake(tmp_path / "lake")
    v = validate(sem.events)
    lake.append(v.accepted, v.rejected)
    parts = sorted((tmp_path / "lake" / "analytics_events").glob("event_date=*/*.parquet"))
    assert parts
    import pyarrow.parquet as pq

    assert pq.read_metadata(parts[0]).row_group(0).column(0).compression == "ZSTD"
    hive = pl.scan_parquet(
        tmp_path / "lake" / "analytics_events" / "**" / "*.parquet", hive_partitioning=True
    ).collect()
    assert hive.height == v.accepted["id"].n_unique()
    assert (hive["event_date"] == hive["event_timestamp"].dt.date()).all()
    assert list((tmp_path / "lake" / "rejected_events").glob("*.parquet"))
    lake.close()


def test_a_lake_whose_path_looks_like_a_glob_reads_its_own_files_only(tmp_path, sem):
    events = validate(sem.events.head(50)).accepted
    for name in ("lake*", "lake1"):  # the same batch in both: the same file names
        lake = ParquetLake(tmp_path / name)
        lake.append(events)
        lake.close()
    lake = ParquetLake(tmp_path / "lake*", read_only=True)
    assert lake.read("analytics_events").height == lake.count("analytics_events") == events.height


def test_lake_read_only_sees_what_the_writer_committed(tmp_path, sem):
    with pytest.raises(StoreError, match="not a vtp_lab Parquet lake"):
        ParquetLake(tmp_path / "nothing", read_only=True)
    lake = ParquetLake(tmp_path / "lake")
    lake.append(validate(sem.events).accepted)
    reader = ParquetLake(tmp_path / "lake", read_only=True)
    assert reader.read("analytics_events").height == lake.read("analytics_events").height
    with pytest.raises(StoreError, match="read-only"):
        reader.append(ANALYTICS_EVENTS.empty())
    lake.close()


def test_empty_batches_are_fine(store):
    assert store.append(ANALYTICS_EVENTS.empty(), REJECTED_EVENTS.empty()).rows == 0


class _Statements:
    """A DuckDB connection that keeps the SQL it executes."""

    def __init__(self, con):
        self.con, self.executed = con, []

    def execute(self, sql, *args):
        self.executed.append(sql)
        return self.con.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self.con, name)


def test_duckdb_looks_up_stored_ids_only_when_a_batch_may_repeat_one(tmp_path, sem):
    events = validate(sem.events).accepted
    first, second = events.head(100), events.slice(100)
    store = DuckDBStore(tmp_path / "s.duckdb")
    store.append(first)
    store.close()
    store = DuckDBStore(tmp_path / "s.duckdb")  # the stored ids' hashes are read from the file
    store.con = _Statements(store.con)
    assert store.append(second).inserted == second.height
    assert store.append(first.head(10)).duplicates == 10
    inserts = [sql for sql in store.con.executed if sql.startswith("INSERT INTO analytics_events")]
    assert ["NOT EXISTS" in sql for sql in inserts] == [False, True]
    assert store.count("analytics_events") == events.height


def test_duckdb_ids_in_another_spelling_or_replaced_events_are_still_found(sem):
    events = validate(sem.events).accepted.head(50)
    store = DuckDBStore()
    store.append(events)
    shouting = events.with_columns(pl.col("id").str.to_uppercase())
    assert store.append(shouting).duplicates == 50  # not the stored spelling: every id is looked up
    store.replace_tables({"analytics_events": events.head(20)})
    assert store.append(events).inserted == 30

    fresh = DuckDBStore()
    fresh.append(ANALYTICS_EVENTS.empty())  # its stored ids' hashes are read: none
    fresh.replace_tables({"analytics_events": events.head(5)})
    assert fresh.append(events.head(5)).duplicates == 5  # the replacement made it read them again
    fresh.replace_rows({"analytics_events": ("user_id", [], events.slice(5, 5))})
    assert fresh.append(events.slice(5, 5)).duplicates == 5
    assert fresh.count("analytics_events") == 10


def test_duckdb_stores_uuids_in_any_spelling_canonical(sem):
    """Canonical UUID columns go in as 16 bytes each; any other spelling is still cast by DuckDB."""
    events = validate(sem.events).accepted.head(40)
    shouting = events.slice(20).with_columns(pl.col("user_id", "recording_id").str.to_uppercase())
    store = DuckDBStore()
    assert store.append(events.head(20)).inserted == store.append(shouting).inserted == 20
    ids = ["id", "user_id", "recording_id"]
    assert store.read("analytics_events", columns=ids).sort("id").equals(events.select(ids).sort("id"))


def test_duckdb_appends_from_several_threads_store_each_id_once(sem):
    events = validate(sem.events).accepted
    parts = [events.slice(k * 100, 150) for k in range(4)]  # overlapping batches
    store = DuckDBStore()
    barrier = threading.Barrier(4)

    def append_all(shift: int) -> None:
        barrier.wait()
        for k in range(4):
            store.append(parts[(k + shift) % 4])

    threads = [threading.Thread(target=append_all, args=(shift,)) for shift in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stored = store.read("analytics_events", columns=["id"])["id"]
    assert stored.len() == stored.n_unique() == min(events.height, 450)


def test_a_batch_of_many_chunks_is_inserted_as_one_and_fills_whole_row_groups(tmp_path, sem):
    """Inserted in parallel, chunks would land in part-filled row groups of their own, merged again at checkpoint."""
    base = validate(sem.events.head(1)).accepted
    events = pl.DataFrame(
        {
            "id": [f"00000000-0000-4000-8000-{i:012x}" for i in range(300_000)],
            **{c: pl.repeat(base[c][0], 300_000, eager=True) for c in base.columns if c != "id"},
        }
    ).select(base.columns)
    chunked = pl.concat([events.slice(i, 60_000) for i in range(0, 300_000, 60_000)], rechunk=False)
    assert chunked.n_chunks() == 5
    store = DuckDBStore(tmp_path / "s.duckdb")
    assert store.append(chunked).inserted == 300_000
    sizes = store.con.sql(
        "SELECT sum(count) FROM pragma_storage_info('analytics_events') WHERE column_path = '[0]' GROUP BY row_group_id"
    ).fetchall()
    assert sorted(int(n) for (n,) in sizes) == [300_000 - 2 * 122_880, 122_880, 122_880]  # a row group: 122,880 rows


def test_a_store_of_an_older_derived_layout_recomputes_its_derived_tables(tmp_path, sem):
    path = tmp_path / "old.duckdb"
    with Lab(path) as lab:
        lab.append(sem.events)
        want = lab.lecture_statistics().sort("recording_id")
        events = lab.events().height
    con = duckdb.connect(str(path))  # as vtp_lab before quality_distribution was typed: JSON text, no layout
    q = "quality_distribution"
    con.execute(f"ALTER TABLE lecture_statistics ALTER {q} TYPE JSON USING to_json({q})")
    con.execute("DELETE FROM vtp_lab_state WHERE key = 'derived_layout'")
    con.close()
    with Lab(path) as lab:
        got = lab.lecture_statistics().sort("recording_id")
        assert got.schema["quality_distribution"] == QUALITY_SECONDS
        assert got.equals(want)
        assert lab.events().height == events  # the events are untouched


def test_a_spill_writes_with_small_flushes_and_leaves_the_settings_as_they_were(tmp_path, monkeypatch):
    from vtp_lab.store import base

    store = DuckDBStore(tmp_path / "s.duckdb")
    store.append(semester(courses=1, lectures_per_course=3, students=5, seed=2).events)

    def settings() -> tuple[str, int]:
        query = "SELECT current_setting('memory_limit'), current_setting('partitioned_write_flush_threshold')"
        return store.con.execute(query).fetchone()

    before, during = settings(), []
    real = base._spill_sql

    def watched(*args: object, **kwargs: object) -> str:
        during.append(settings())
        return real(*args, **kwargs)

    monkeypatch.setattr(base, "_spill_sql", watched)
    store.spill("analytics_events", by="recording_id", parts=3, folder=tmp_path / "parts", memory=512 * 2**20)
    store.spill("analytics_events", by="recording_id", parts=100, folder=tmp_path / "many", memory=512 * 2**20)
    # 100 buffers of 32,768 rows would pass the budget: 2**29 // (100 * 1024) rows each
    assert during == [("512.0 MiB", base._SPILL_FLUSH_ROWS), ("512.0 MiB", 5_242)]
    assert settings() == before
