"""Storing events: the Collector end to end, and Arrow batches into DuckDB and the lake.

    python bench/collector.py [--events 300000] [--rows 1000000]

Prints, each with a baseline measured in the same run:
- record() from one thread into a DuckDB store, until close() has stored everything
  (target 100,000 events/s; the seed claims 10,000/s), against one INSERT per event;
  a first, untimed run of 20,000 events into another store does the process's
  one-time set-up (imports, pandera's model: about 0.4 s);
- batches of 100,000 rows through DuckDBStore.append (transaction + anti-join
  de-duplication; target 1M rows/s), against a bare INSERT ... SELECT of the same frame;
- the same batches through ParquetLake.append (staging, footer check, rename, ledger;
  target 1M rows/s), against a bare write_parquet of the same frame.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import polars as pl

from vtp_lab.duck import connect
from vtp_lab.lab import Lab
from vtp_lab.store import DuckDBStore, ParquetLake, Store
from vtp_lab.synth import semester
from vtp_lab.tables import ANALYTICS_EVENTS


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}/s"


def record_all(lab: Lab, rows: list[tuple]) -> float:
    """Seconds to record every row through a Collector and close it (which stores the rest)."""
    start = time.perf_counter()
    with lab.collector(batch_size=10_000) as c:
        record = c.record
        for event_type, rec, user, session, meta in rows:
            record(event_type, rec, user, session, meta)
    return time.perf_counter() - start


def collector(events: pl.DataFrame, count: int, tmp: Path) -> None:
    """``Collector.record`` of ``count`` events against one INSERT per event, extrapolated from 5,000."""
    picked = events.head(count).select("event_type", "recording_id", "user_id", "session_id", "metadata")
    rows = [(*r[:4], json.loads(r[4]) if r[4] else None) for r in picked.rows()]  # a player passes dicts
    print(f"{events.height:,} rows ready; recording {len(rows):,} events through the Collector")
    with Lab(tmp / "warm-up.duckdb") as warm:  # imports and first-use set-up (pandera's model) are not timed
        record_all(warm, rows[:20_000])
    lab = Lab(tmp / "collector.duckdb")
    collector_s = record_all(lab, rows)
    assert lab.events().height == len(rows)
    lab.close()

    con = connect(tmp / "baseline.duckdb")
    con.execute(ANALYTICS_EVENTS.duckdb_ddl())
    sample = events.head(5_000).rows()
    start = time.perf_counter()
    for row in sample:
        con.execute("INSERT INTO analytics_events VALUES (?, ?, ?, ?, ?, ?, ?)", list(row))
    per_event_s = (time.perf_counter() - start) * len(rows) / len(sample)
    con.close()
    print(
        f"Collector.record() end to end into DuckDB: {rate(len(rows), collector_s)} "
        f"(target 100,000/s: {'met' if len(rows) / collector_s >= 100_000 else 'NOT met'}); "
        f"one INSERT per event: {rate(len(rows), per_event_s)}; ratio {per_event_s / collector_s:.1f}x"
    )


def appends(
    label: str, store: Store, bare: Callable[[], None], events: pl.DataFrame, batches: list[pl.DataFrame]
) -> None:
    """``store.append`` of every batch against ``bare()`` writing the same batches with no checks."""
    start = time.perf_counter()
    for b in batches:
        store.append(b)
    store_s = time.perf_counter() - start
    assert store.read("analytics_events").height == events.height
    store.close()
    start = time.perf_counter()
    bare()
    bare_s = time.perf_counter() - start
    print(
        f"{label}, batches of {batches[0].height:,}: {rate(events.height, store_s)} "
        f"(target 1,000,000/s: {'met' if events.height / store_s >= 1e6 else 'NOT met'}); "
        f"bare: {rate(events.height, bare_s)}; ratio {bare_s / store_s:.2f}"
    )


def bare_insert(batches: list[pl.DataFrame], path: Path) -> None:
    """Each batch inserted into a new DuckDB file's table with ``INSERT ... SELECT``."""
    con = connect(path)
    con.execute(ANALYTICS_EVENTS.duckdb_ddl())
    for b in batches:
        con.register("b", b.to_arrow())
        con.execute("INSERT INTO analytics_events SELECT * FROM b")
        con.unregister("b")
    con.close()


def bare_parquet(batches: list[pl.DataFrame], folder: Path) -> None:
    """Each batch written as a zstd Parquet file."""
    for i, b in enumerate(batches):
        b.write_parquet(folder / f"bare-{b.height}-{i}.parquet", compression="zstd")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, nargs="+", default=[100_000, 250_000])
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vtp-bench-"))

    events = semester(courses=4, lectures_per_course=14, students=max(10, args.rows // 270), seed=1).events
    while events.height < args.rows:
        events = pl.concat(
            [events, events.with_columns(pl.concat_str(pl.lit("f"), pl.col("id").str.slice(1)).alias("id"))]
        )
    events = events.head(args.rows)
    collector(events, args.events, tmp)
    for size in args.batch:
        batches = [events.slice(i, size) for i in range(0, events.height, size)]
        appends(
            "DuckDBStore.append",
            DuckDBStore(tmp / f"store-{size}.duckdb"),
            partial(bare_insert, batches, tmp / f"bare-{size}.duckdb"),
            events,
            batches,
        )
        appends(
            "ParquetLake.append",
            ParquetLake(tmp / f"lake-{size}"),
            partial(bare_parquet, batches, tmp),
            events,
            batches,
        )
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
