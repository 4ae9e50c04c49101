"""Faults: kill -9 mid-write, failures mid-batch, a second writer. Nothing half-written, nothing lost."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from vtp_lab.errors import StoreLockedError
from vtp_lab.lab import Lab
from vtp_lab.store import DuckDBStore, ParquetLake, open_store
from vtp_lab.synth import semester
from vtp_lab.tables import REJECTED_EVENTS, TABLES

BATCH = 500

WRITER = textwrap.dedent(
    """
    import os, signal, sys
    import vtp_lab.store as S
    from vtp_lab.synth import semester
    mode, path, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    events = semester(courses=1, lectures_per_course=4, students=100, seed=3).events
    state = {"batch": 0, "parquet_renames": 0}
    real_replace = os.replace

    def replace(src, dst):
        kill = state["batch"] == 3 and (
            (mode == "staged" and str(dst).endswith(".parquet"))
            or (mode == "renamed" and str(dst).endswith(".parquet") and state["parquet_renames"] == 1)
            or (mode == "ledger" and str(dst).endswith(".json"))
        )
        if kill:
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst)
        if str(dst).endswith(".parquet") and state["batch"] == 3:
            state["parquet_renames"] += 1

    class KilledBeforeCommit:  # the store's DuckDB connection; mode "commit" dies instead of committing batch 3
        def __init__(self, con):
            self.con = con

        def __getattr__(self, name):
            return getattr(self.con, name)

        def execute(self, sql, *args):
            if mode == "commit" and state["batch"] == 3 and sql == "COMMIT":
                os.kill(os.getpid(), signal.SIGKILL)
            return self.con.execute(sql, *args)

    os.replace = replace  # the lake renames through os.replace
    store = S.open_store(path)
    if isinstance(store, S.DuckDBStore):
        store.con = KilledBeforeCommit(store.con)
    for start in range(0, events.height, size):
        state["batch"] += 1
        store.append(events.slice(start, size))
        print("batch", state["batch"], flush=True)
    print("done", flush=True)
    """
)


@pytest.fixture(scope="module")
def events() -> pl.DataFrame:
    return semester(courses=1, lectures_per_course=4, students=100, seed=3).events


def run_writer(mode: str, path: Path, kill_after_batch: int | None = None) -> int:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, mode, str(path), str(BATCH)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    if kill_after_batch is not None:
        for line in proc.stdout:
            if line.strip() == f"batch {kill_after_batch}":
                time.sleep(random.uniform(0, 0.05))
                proc.send_signal(signal.SIGKILL)
                break
    proc.stdout.read()
    return proc.wait(timeout=120)


def plain_ids(path: Path) -> pl.Series:
    """The event ids a plain hive-partitioned read of the lake's ``analytics_events`` folder finds (pyarrow)."""
    folder = path / "analytics_events"
    if not folder.is_dir():
        return pl.Series("id", [], pl.String)
    return pl.from_arrow(pq.read_table(folder, columns=["id"], partitioning="hive")).to_series().sort()


def assert_plain_read_is_committed(path: Path) -> int:
    """A plain read of the folder finds exactly what the lake reads; return how many events that is."""
    stored = ParquetLake(path, read_only=True).read("analytics_events")["id"].sort()
    assert plain_ids(path).equals(stored, check_names=False)
    return stored.len()


def assert_lake_clean_and_readable(path: Path) -> None:
    reader = ParquetLake(path, read_only=True)
    for name in TABLES:
        reader.read(name)  # only committed files, all readable
    ParquetLake(path).close()  # a writer opening the lake finishes what the crash left
    assert not (path / "_staging").exists()
    committed = {
        str(path / f) for entry in (path / "_ledger").glob("*.json") for f in json.loads(entry.read_text())["files"]
    }
    for name in TABLES:
        for file in (path / name).rglob("*.parquet"):
            assert str(file) in committed, f"{file} is visible but not committed"
            pq.read_metadata(file)
    for entry in (path / "_ledger").glob("*.json"):
        for f in json.loads(entry.read_text())["files"]:
            assert (path / f).is_file() or not f.startswith("analytics_events/"), f"{f} is committed but not in place"
    assert_plain_read_is_committed(path)


def rewrite_and_check_exact(path: Path, events: pl.DataFrame) -> None:
    store = open_store(path)
    for start in range(0, events.height, 700):
        store.append(events.slice(start, 700))
    stored = store.read("analytics_events")
    assert stored.height == events["id"].n_unique()
    assert stored["id"].n_unique() == stored.height
    assert stored.sort("id").equals(events.unique("id", keep="first").sort("id"))
    store.close()


@pytest.mark.parametrize(
    ("mode", "after_recovery"),
    [("staged", 3), ("renamed", 3), ("ledger", 2)],  # recorded in the ledger before its renames: batch 3 is done
)
def test_lake_writer_killed_inside_a_batch(tmp_path, events, mode, after_recovery):
    lake = tmp_path / "lake"
    assert run_writer(mode, lake) == -signal.SIGKILL
    seen = assert_plain_read_is_committed(lake)  # before any recovery, what vtp_lab reads is what is in the folders
    if mode == "renamed":
        assert 2 * BATCH < seen < 3 * BATCH  # one of batch 3's files was in place when it died
    else:
        assert seen == 2 * BATCH
    assert_lake_clean_and_readable(lake)
    assert ParquetLake(lake, read_only=True).read("analytics_events").height == after_recovery * BATCH
    rewrite_and_check_exact(lake, events)


@pytest.mark.parametrize("kill_after", [1, 3, 6])
def test_lake_writer_killed_at_a_random_moment(tmp_path, events, kill_after):
    lake = tmp_path / "lake"
    run_writer("none", lake, kill_after_batch=kill_after)
    assert assert_plain_read_is_committed(lake) >= kill_after * BATCH
    assert_lake_clean_and_readable(lake)
    stored = ParquetLake(lake, read_only=True).read("analytics_events")
    assert stored.height % BATCH == 0 or stored.height == events.height  # whole batches once a writer opened it
    rewrite_and_check_exact(lake, events)


def test_duckdb_writer_killed_inside_a_transaction(tmp_path, events):
    db = tmp_path / "lab.duckdb"
    assert run_writer("commit", db) == -signal.SIGKILL  # killed with batch 3 inserted, not committed
    stored = DuckDBStore(db, read_only=True)
    assert stored.read("analytics_events").height == 2 * BATCH  # batches 1 and 2 whole, batch 3 absent
    stored.close()
    rewrite_and_check_exact(db, events)


@pytest.mark.parametrize("kill_after", [1, 3])
def test_duckdb_writer_killed_at_a_random_moment(tmp_path, events, kill_after):
    db = tmp_path / "lab.duckdb"
    run_writer("none", db, kill_after_batch=kill_after)
    stored = DuckDBStore(db, read_only=True)
    height = stored.read("analytics_events").height
    assert height >= kill_after * BATCH
    assert height % BATCH == 0 or height == events.height  # whole batches, or the writer finished before the kill
    stored.close()
    rewrite_and_check_exact(db, events)


def test_duckdb_failure_mid_batch_leaves_store_as_it_was(tmp_path, events):
    store = DuckDBStore(tmp_path / "lab.duckdb")
    store.append(events.head(100))
    before = store.read("analytics_events")
    broken = REJECTED_EVENTS.empty().vstack(
        pl.DataFrame(
            {
                "raw": [None],
                "source": ["x"],
                "row_number": [1],
                "reason": ["malformed"],
                "field": [None],
                "rejected_at": [None],
            },
            schema=REJECTED_EVENTS.polars_schema,
        )
    )
    with pytest.raises(Exception, match="NOT NULL"):
        store.append(events.slice(100, 300), broken)  # events insert first, then the quarantine insert fails
    assert store.read("analytics_events").equals(before)
    assert store.read("rejected_events").height == 0


def test_lake_failure_mid_batch_leaves_store_as_it_was(tmp_path, events, monkeypatch):
    lake = ParquetLake(tmp_path / "lake")
    lake.append(events.head(100))
    real = ParquetLake._stage
    calls = {"n": 0}

    def failing(self, frame, final):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return real(self, frame, final)

    monkeypatch.setattr(ParquetLake, "_stage", failing)
    many_days = events.slice(100, 2000)
    assert many_days["event_timestamp"].dt.date().n_unique() > 1
    with pytest.raises(OSError, match="disk full"):
        lake.append(many_days)
    monkeypatch.setattr(ParquetLake, "_stage", real)
    assert lake.read("analytics_events").height == 100
    lake.close()
    assert_lake_clean_and_readable(tmp_path / "lake")
    rewrite_and_check_exact(tmp_path / "lake", events)


HOLDER = (
    "import sys, time; from vtp_lab.lab import Lab; from vtp_lab.synth import semester\n"
    "lab = Lab(sys.argv[1]); lab.append(semester(courses=1, lectures_per_course=1, students=3).events)\n"
    "print('ready', flush=True); time.sleep(60)"
)


@pytest.mark.parametrize("name", ["lab.duckdb", "lake"])
def test_second_writer_gets_a_clear_error_and_readers_read_meanwhile(tmp_path, name):
    path = tmp_path / name
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        with pytest.raises(StoreLockedError) as info:
            Lab(path)
        message = str(info.value)
        assert str(path) in message
        assert f"PID {proc.pid}" in message
        assert "one writer" in message and "read_only=True" in message and "DuckDB" not in message
        assert info.value.path == str(path)
        with Lab(path, read_only=True) as reader:  # the fix the message names works while the writer runs
            assert reader.events().height > 0 and reader.playback_sessions().height > 0
        info_command = [sys.executable, "-m", "vtp_lab.cli", "info", "--store", str(path)]
        out = subprocess.run(info_command, capture_output=True, text=True, check=False)
        assert out.returncode == 0, out.stderr
    finally:
        proc.kill()
        proc.wait()
    with Lab(path, read_only=True) as reader:
        assert reader.events().height > 0
    os.sync()


@pytest.mark.parametrize("store_name", ["lab.duckdb", "lake"])
def test_load_killed_mid_file_then_loaded_again_is_exact(tmp_path, store_name):
    from vtp_lab.io import write_events

    big = semester(courses=2, lectures_per_course=6, students=150, seed=8, bad_rows=0.01).events
    dump = write_events(big, tmp_path / "dump.csv")
    store = tmp_path / store_name
    code = (
        "import sys; from vtp_lab.load import load_files; from vtp_lab.store import open_store; "
        "load_files(open_store(sys.argv[1]), [sys.argv[2]], progress=False, batch_rows=2000)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(store), str(dump)])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
        if store_name == "lake" and len(list((store / "_ledger").glob("*.json"))) >= 3:
            break
        if store_name == "lab.duckdb" and (
            store.with_suffix(".duckdb.wal").exists() or store.stat().st_size > 2_000_000 if store.exists() else False
        ):
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    lab = Lab(store)
    partial = lab.events().height
    report = lab.load(dump, progress=False)
    assert report.rows_read == big.height
    stored = lab.events()
    assert stored["id"].n_unique() == stored.height
    assert report.accepted == stored.height - partial
    assert stored.height + lab.rejected_events().height == big.height


@pytest.mark.parametrize("store_name", ["lab.duckdb", "lake"])
def test_an_all_or_nothing_load_killed_midway_leaves_nothing(tmp_path, store_name):
    from vtp_lab.io import write_events

    big = semester(courses=2, lectures_per_course=6, students=150, seed=8, bad_rows=0.01).events
    dump = write_events(big, tmp_path / "dump.csv")
    store = tmp_path / store_name
    with Lab(store) as lab:
        before = lab.append(semester(courses=1, lectures_per_course=1, students=3, seed=1).events).inserted
    code = (
        "import sys\n"
        "from vtp_lab.load import load_files\n"
        "from vtp_lab.store import open_store\n"
        "store = open_store(sys.argv[1])\n"
        "append = store.append\n"
        "def announced(*args, **kw):\n"
        "    result = append(*args, **kw)\n"
        "    print('stored a batch', flush=True)\n"
        "    return result\n"
        "store.append = announced\n"
        "load_files(store, [sys.argv[2]], progress=False, batch_rows=2000, max_rejected=10**9)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(store), str(dump)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for _ in range(3):  # three batches are in, more to come
        assert proc.stdout.readline().strip() == "stored a batch"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    lab = Lab(store)
    assert lab.events().height == before and lab.loads().height == 0
    assert lab.load(dump, progress=False).accepted > 0
