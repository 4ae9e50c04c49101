"""Loading a 1M-event NDJSON dump: vtp_lab against DuckDB's own reader and the original design on PostgreSQL.

    python bench/load.py [--rows 1000000] [--repeat 3] [--pg-sample 20000]

Prints, on the same file in the same run:
- vtp_lab's ``Lab.load`` into a new DuckDB store (open, read, validate every row,
  quarantine, de-duplicate, store, close) in rows/s;
- DuckDB's own ``read_json`` into a new table of the same schema (no validation, no
  quarantine), and the ratio (target: vtp_lab at least 0.5 of DuckDB). The two run
  alternately ``--repeat`` times, each ratio on a pair of neighbouring runs, then the
  median; both sides first load 1,000 events once, so one-time costs (imports, the
  first query plans) are not timed;
- the same events without ids (so ``Lab.load`` derives every id, spec section 1)
  against the file with ids, alternately ``--repeat`` times, and the median ratio
  (target: at least 0.8);
- the original design on a real PostgreSQL started here on loopback: one INSERT per
  event in transactions of 100 rows (timed on ``--pg-sample`` rows) and ``COPY`` of the
  whole file as CSV, and vtp_lab's ratio to the transactional inserts (goal: 50x).
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from servers import PostgresUnavailable, running_postgres  # noqa: E402

from vtp_lab.duck import connect  # noqa: E402
from vtp_lab.io import write_events  # noqa: E402
from vtp_lab.lab import Lab  # noqa: E402
from vtp_lab.synth import semester  # noqa: E402
from vtp_lab.tables import ANALYTICS_EVENTS  # noqa: E402


def load_with_vtp_lab(dump: Path, store: Path, rows: int) -> float:
    """Seconds for ``Lab.load`` of ``dump`` into a new DuckDB store, opening and closing it included."""
    start = time.perf_counter()
    with Lab(store) as lab:
        report = lab.load(dump, progress=False)
    seconds = time.perf_counter() - start
    assert report.accepted == rows, report
    return seconds


def load_with_read_json(dump: Path, store: Path, rows: int) -> float:
    """Seconds for DuckDB's ``read_json`` of ``dump`` into a new table of the same schema."""
    con = connect(store)
    con.execute(ANALYTICS_EVENTS.duckdb_ddl())
    columns = ", ".join(f"'{c.name}': '{c.duckdb_type}'" for c in ANALYTICS_EVENTS.columns)
    start = time.perf_counter()
    con.execute(
        "INSERT INTO analytics_events SELECT * FROM "
        f"read_json('{dump}', format = 'newline_delimited', columns = {{{columns}}})"
    )
    seconds = time.perf_counter() - start
    assert con.execute("SELECT count(*) FROM analytics_events").fetchall() == [(rows,)]
    con.close()
    return seconds


def make_events(rows: int) -> pl.DataFrame:
    """``rows`` synthetic events: a semester, copied with new ids (and times a microsecond apart) until long enough."""
    events = semester(courses=4, lectures_per_course=14, students=max(10, rows // 270), seed=1).events
    copy = 0
    while events.height < rows:
        copy += 1
        events = pl.concat(
            [
                events,
                events.with_columns(
                    pl.concat_str(pl.lit(f"{copy:x}"[-1]), pl.col("id").str.slice(1)).alias("id"),
                    pl.col("event_timestamp") + pl.duration(microseconds=copy),  # each copy's content differs too
                ),
            ]
        )
    return events.head(rows)


def against_read_json(events: pl.DataFrame, dump: Path, tmp: Path, repeat: int) -> float:
    """Alternate ``Lab.load`` and ``read_json``; print each pair and the medians; return vtp_lab's median seconds."""
    warm = write_events(events.head(1_000), tmp / "warm.ndjson")
    load_with_vtp_lab(warm, tmp / "warm.duckdb", 1_000)
    load_with_read_json(warm, tmp / "warm-duck.duckdb", 1_000)
    ratios, vtp_times = [], []
    for run in range(1, repeat + 1):
        vtp_s = load_with_vtp_lab(dump, tmp / f"vtp-{run}.duckdb", events.height)
        duck_s = load_with_read_json(dump, tmp / f"duck-{run}.duckdb", events.height)
        ratios.append(duck_s / vtp_s)
        vtp_times.append(vtp_s)
        print(
            f"run {run}: vtp_lab load into DuckDB {events.height / vtp_s:,.0f} rows/s ({vtp_s:.2f}s); "
            f"DuckDB read_json into a table {events.height / duck_s:,.0f} rows/s ({duck_s:.2f}s); "
            f"ratio {duck_s / vtp_s:.2f}"
        )
    ratio = statistics.median(ratios)
    vtp_s = statistics.median(vtp_times)
    print(f"vtp_lab load into DuckDB, median: {events.height / vtp_s:,.0f} rows/s ({vtp_s:.2f}s)")
    print(
        f"ratio vtp_lab / DuckDB, median of {len(ratios)}: {ratio:.2f} "
        f"(target 0.5: {'met' if ratio >= 0.5 else 'NOT met'})"
    )
    return vtp_s


def against_ids(events: pl.DataFrame, dump: Path, tmp: Path, repeat: int) -> None:
    """Alternate the file with ids and the same events without (every id derived); print the pairs and the median."""
    no_ids = pl.lit(None, pl.String).alias("id")
    idless = write_events(events.with_columns(no_ids), tmp / "no-ids.ndjson")
    load_with_vtp_lab(
        write_events(events.head(1_000).with_columns(no_ids), tmp / "warm-no-ids.ndjson"),
        tmp / "warm-no-ids.duckdb",
        1_000,
    )
    ratios = []
    for run in range(1, repeat + 1):
        with_s = load_with_vtp_lab(dump, tmp / f"ids-{run}.duckdb", events.height)
        without_s = load_with_vtp_lab(idless, tmp / f"no-ids-{run}.duckdb", events.height)
        ratios.append(with_s / without_s)
        print(
            f"run {run}: with ids {events.height / with_s:,.0f} rows/s ({with_s:.2f}s); "
            f"without ids (derived) {events.height / without_s:,.0f} rows/s ({without_s:.2f}s); "
            f"ratio {with_s / without_s:.2f}"
        )
    ratio = statistics.median(ratios)
    print(
        f"ratio without ids / with ids, median of {len(ratios)}: {ratio:.2f} "
        f"(target 0.8: {'met' if ratio >= 0.8 else 'NOT met'})"
    )


def against_postgres(events: pl.DataFrame, vtp_s: float, pg_sample: int) -> None:
    """The original design on a PostgreSQL started here: transactional inserts and COPY, against vtp_lab's rate."""
    import psycopg

    with running_postgres() as dsn, psycopg.connect(dsn) as pg:
        pg.execute((ROOT / "schema/postgres/005_analytics_schema.sql").read_text())
        pg.commit()
        sample = events.head(pg_sample).rows()
        start = time.perf_counter()
        with pg.cursor() as cur:
            for i in range(0, len(sample), 100):
                for row in sample[i : i + 100]:
                    cur.execute("INSERT INTO analytics_events VALUES (%s, %s, %s, %s, %s, %s, %s)", row)
                pg.commit()
        insert_rate = len(sample) / (time.perf_counter() - start)
        pg.execute("TRUNCATE analytics_events")
        pg.commit()
        csv = events.with_columns(pl.col("event_timestamp").dt.strftime("%Y-%m-%d %H:%M:%S%.6f+00")).write_csv(
            quote_style="non_numeric"
        )
        start = time.perf_counter()
        with pg.cursor().copy("COPY analytics_events FROM STDIN WITH (FORMAT csv, HEADER true)") as cp:
            buffer = io.BytesIO(csv.encode())
            while chunk := buffer.read(1 << 20):
                cp.write(chunk)
        pg.commit()
        copy_rate = events.height / (time.perf_counter() - start)
    vtp_rate = events.height / vtp_s
    print(
        f"PostgreSQL, INSERT per event in transactions of 100: {insert_rate:,.0f} rows/s "
        f"(timed on {len(sample):,} rows)"
    )
    print(f"PostgreSQL, COPY of the whole file as CSV: {copy_rate:,.0f} rows/s")
    print(
        f"ratio vtp_lab / PostgreSQL transactional inserts: {vtp_rate / insert_rate:.0f}x "
        f"(goal 50x: {'met' if vtp_rate / insert_rate >= 50 else 'NOT met'})"
    )
    print(f"ratio vtp_lab / PostgreSQL COPY: {vtp_rate / copy_rate:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pg-sample", type=int, default=20_000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vtp-bench-load-"))
    events = make_events(args.rows)
    dump = write_events(events, tmp / "events.ndjson")
    print(f"{events.height:,} events, {dump.stat().st_size / 1e6:,.0f} MB of NDJSON")
    vtp_s = against_read_json(events, dump, tmp, args.repeat)
    against_ids(events, dump, tmp, args.repeat)
    try:
        against_postgres(events, vtp_s, args.pg_sample)
    except PostgresUnavailable as exc:
        print(f"PostgreSQL comparison skipped: {exc}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
