"""The lake is plain hive-partitioned Parquet: any engine reading a table folder gets exactly the committed rows."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.parquet as pq
import pytest

from vtp_lab.errors import RejectionLimitError
from vtp_lab.io import write_events
from vtp_lab.lab import Lab
from vtp_lab.store import ParquetLake
from vtp_lab.synth import semester
from vtp_lab.tables import TABLES

ROOT = Path(__file__).resolve().parents[1]
KEY = {name: [table.column_names[0]] for name, table in TABLES.items()} | {"rejected_events": ["source", "row_number"]}

LOADER = textwrap.dedent(
    """
    import sys
    from vtp_lab.lab import Lab
    with Lab(sys.argv[1]) as lab:
        lab.load(sys.argv[2], progress=False, batch_rows=2_000)
    """
)


def keys(frame: pl.DataFrame, table: str) -> list[tuple[str, ...]]:
    """Each row's key as text, sorted: what two engines must agree on."""
    return sorted(frame.select(pl.col(c).cast(pl.String) for c in KEY[table]).rows())


def interrupted_load(lake: Path, dump: Path) -> None:
    """Start loading ``dump`` into ``lake`` in another process and kill it (-9) once a few batches are in."""
    ledger = lake / "_ledger"
    before = len(list(ledger.glob("*.json")))
    proc = subprocess.Popen([sys.executable, "-c", LOADER, str(lake), str(dump)])
    deadline = time.monotonic() + 60
    while len(list(ledger.glob("*.json"))) < before + 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Path:
    """A lake after loads (an edX log too), two catalogues, two refreshes, a load undone by its limit, one killed."""
    tmp = tmp_path_factory.mktemp("engines")
    path = tmp / "lake"
    bad = write_events(semester(courses=1, lectures_per_course=2, students=9, seed=5).events, tmp / "bad.ndjson")
    with open(bad, "a") as fh:
        fh.write("not an event\n")
    edx = write_events(semester(courses=1, lectures_per_course=2, students=4, seed=3).events, tmp / "log", format="edx")
    with Lab(path) as lab:
        lab.load(ROOT / "data" / "events.ndjson.gz", progress=False)
        lab.load(edx, progress=False)  # an Open edX log: its identities too
        lab.load_recordings(ROOT / "data" / "recordings.csv")
        lab.refresh()
        lab.load_recordings(ROOT / "data" / "recordings.csv")  # the second replaces the first
        with pytest.raises(RejectionLimitError):
            lab.load(bad, progress=False, max_rejected=0)  # undone whole
        lab.refresh()
    dump = write_events(semester(courses=2, lectures_per_course=6, students=80, seed=11).events, tmp / "more.ndjson")
    interrupted_load(path, dump)
    return path


def committed(lake: Path, table: str) -> pl.DataFrame:
    return ParquetLake(lake, read_only=True).read(table)


def test_the_second_catalogue_replaces_the_first_in_the_folder(lake):
    assert len(list((lake / "recordings").glob("*.parquet"))) == 1
    assert pq.read_table(lake / "recordings").num_rows == committed(lake, "recordings").height == 36


@pytest.mark.parametrize("table", list(TABLES))
def test_polars_duckdb_and_pyarrow_read_exactly_the_committed_rows(lake, table):
    want = keys(committed(lake, table), table)
    assert want, f"the lake should hold rows of {table}"
    folder = lake / table
    by_polars = pl.scan_parquet(folder, hive_partitioning=True).collect()
    by_duckdb = duckdb.sql(f"SELECT * FROM read_parquet('{folder}/**/*.parquet', hive_partitioning = true)").pl()
    by_arrow = pl.from_arrow(pq.read_table(folder, partitioning="hive"))
    for engine, frame in {"polars": by_polars, "duckdb": by_duckdb, "pyarrow": by_arrow}.items():
        assert isinstance(frame, pl.DataFrame)
        assert keys(frame, table) == want, f"{engine} read {frame.height} rows of {table}, {len(want)} committed"


@pytest.mark.slow
def test_spark_reads_exactly_the_committed_rows(lake, spark):
    for table in TABLES:
        frame = spark.read.parquet(str(lake / table))
        got = pl.from_arrow(frame.select(*KEY[table]).toArrow())
        assert isinstance(got, pl.DataFrame)
        assert keys(got, table) == keys(committed(lake, table), table), table


def test_a_replaced_table_leaves_only_its_new_file_while_the_lab_is_open(tmp_path):
    with Lab(tmp_path / "lake") as lab:
        for _ in range(2):
            lab.load_recordings(ROOT / "data" / "recordings.csv")
            assert pq.read_table(tmp_path / "lake" / "recordings").num_rows == 36  # not 72: the old file is gone
