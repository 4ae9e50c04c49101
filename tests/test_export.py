"""Exports: hive-partitioned Parquet that other tools read as is, CSV that PostgreSQL's COPY takes."""

from __future__ import annotations

import io
import json

import polars as pl
import pyarrow.dataset as ds
import pytest
from servers import copy_csv_exports

from vtp_lab.duck import connect
from vtp_lab.errors import InputFormatError
from vtp_lab.lab import Lab
from vtp_lab.synth import semester
from vtp_lab.tables import ANALYTICS_EVENTS, ANALYTICS_TABLES


@pytest.fixture(scope="module")
def lab():
    sem = semester(courses=1, lectures_per_course=3, students=15, seed=8, bad_rows=0.02)
    lab = Lab(":memory:")
    lab.append(sem.events)
    lab.load_recordings(sem.recordings)
    return lab


def test_parquet_export_is_hive_partitioned_and_readable_everywhere(tmp_path, lab):
    written = lab.export_parquet(tmp_path)
    assert {p.name for p in written} >= {"analytics_events", "recordings", "rejected_events", "loads"}
    events = lab.events().sort("id")
    days = sorted(p.name for p in (tmp_path / "analytics_events").iterdir())
    assert days[0].startswith("event_date=2026-")
    by_polars = pl.scan_parquet(tmp_path / "analytics_events", hive_partitioning=True).collect()
    assert by_polars.drop("event_date").select(ANALYTICS_EVENTS.column_names).sort("id").equals(events)
    by_duckdb = (
        connect()
        .sql(f"SELECT * FROM read_parquet('{tmp_path}/analytics_events/**/*.parquet', hive_partitioning = true)")
        .pl()
    )
    assert by_duckdb.height == events.height
    by_arrow = ds.dataset(tmp_path / "analytics_events", format="parquet", partitioning="hive").to_table()
    assert by_arrow.num_rows == events.height and "event_date" in by_arrow.schema.names
    assert pl.read_parquet(tmp_path / "recordings" / "data.parquet").equals(lab.recordings())


def test_parquet_partition_by_other_columns_and_bad_names(tmp_path, lab):
    lab.export_parquet(tmp_path, tables=["analytics_events"], partition_by=["event_type"])
    assert (tmp_path / "analytics_events" / "event_type=buffer_start").is_dir()
    with pytest.raises(InputFormatError, match="cannot partition by 'week'"):
        lab.export_parquet(tmp_path, partition_by=["week"])


def test_csv_export_round_trips_through_postgresql(tmp_path, lab, postgres):
    psycopg = pytest.importorskip("psycopg")
    written = lab.export_csv(tmp_path / "csv")
    assert [p.stem for p in written] == [t.name for t in ANALYTICS_TABLES]
    with psycopg.connect(postgres, autocommit=True) as con:
        copy_csv_exports(con, "round_trip", written)
        out = io.BytesIO()
        with con.cursor().copy("COPY analytics_events TO STDOUT WITH (FORMAT csv, HEADER true)") as copy:
            for chunk in copy:
                out.write(chunk)
        assert con.execute("SELECT count(*) FROM analytics_events").fetchone() == (lab.events().height,)
        served = dict(con.execute("SELECT recording_id::text, quality_distribution FROM lecture_statistics").fetchall())
    typed = lab.lecture_statistics().select("recording_id", "quality_distribution").rows()
    assert served == {r: {q["quality"]: q["seconds"] for q in qs} for r, qs in typed}  # the typed column, as JSONB
    assert all(len(qs) > 1 for _, qs in typed)
    (tmp_path / "from_postgres.csv").write_bytes(out.getvalue())
    again = Lab(":memory:")
    report = again.load(tmp_path / "from_postgres.csv", progress=False)
    assert (report.accepted, report.rejected) == (lab.events().height, 0)
    before, after = lab.events().sort("id"), again.events().sort("id")
    assert after.drop("metadata").equals(before.drop("metadata"))
    # JSONB keeps the object, not its text: keys reordered, spaces added. Compare the objects.
    assert [json.loads(m) if m else None for m in after["metadata"]] == [
        json.loads(m) if m else None for m in before["metadata"]
    ]


def test_one_name_is_one_table_or_one_partition_column(tmp_path, lab):
    written = lab.export_parquet(tmp_path / "p", tables="analytics_events", partition_by="event_type")
    assert [p.name for p in written] == ["analytics_events"]
    assert (tmp_path / "p" / "analytics_events" / "event_type=buffer_start").is_dir()
    assert [p.name for p in lab.export_csv(tmp_path / "c", tables="recordings")] == ["recordings.csv"]


def test_csv_export_names_unknown_tables(tmp_path, lab):
    with pytest.raises(InputFormatError, match="no table 'sessions'"):
        lab.export_csv(tmp_path, tables=["sessions"])


def test_an_empty_events_table_exports_a_file_that_loads(tmp_path):
    written = Lab(":memory:").export_parquet(tmp_path, tables="analytics_events")
    report = Lab(":memory:").load(written[0], progress=False)
    assert (report.rows_read, report.errors) == (0, [])
