"""Validation throughput on 1M synthetic rows, against the per-row Python path in the same run.

    python bench/validate.py [--rows 1000000]

Prints rows/s for vectorised validation of typed columns (as read from Parquet) and
of text columns (as read from CSV), the per-row baseline (``Event.from_dict`` on each
row) and the ratio. The issue's target is 2M rows/s on the 2-core machine.

The rows are read back from Parquet in memory before they are timed, as a load gets
them from its readers. A frame straight from ``semester`` has been sorted, so its
strings lie scattered in memory and each pass over them runs up to twice as slowly.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time

import polars as pl

from vtp_lab.events import Event, EventValidationError
from vtp_lab.synth import semester
from vtp_lab.validation import validate

TARGET = 2_000_000


def best_of(n: int, fn) -> float:
    best = float("inf")
    for _ in range(n):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--baseline-rows", type=int, default=50_000)
    args = parser.parse_args()

    t = time.perf_counter()
    students = max(10, args.rows // 270)
    events = semester(courses=4, lectures_per_course=14, students=students, seed=1).events
    while events.height < args.rows:
        copy = events.with_columns(
            pl.concat_str(pl.lit(f"{len(events) % 16:x}"), pl.col("id").str.slice(1)).alias("id")
        )
        events = pl.concat([events, copy])
    parquet = io.BytesIO()
    events.head(args.rows).write_parquet(parquet)
    events = pl.read_parquet(parquet.getvalue())
    text = events.with_columns(pl.col("event_timestamp").dt.strftime("%Y-%m-%d %H:%M:%S%.6f+00"))
    print(f"generated {events.height:,} rows in {time.perf_counter() - t:.1f}s")

    typed_s = best_of(3, lambda: validate(events))
    text_s = best_of(3, lambda: validate(text))
    sample = text.head(args.baseline_rows).to_dicts()

    def per_row() -> None:
        for row in sample:
            with contextlib.suppress(EventValidationError):
                Event.from_dict(row)

    base_s = best_of(1, per_row) * (events.height / len(sample))
    for label, seconds in (("typed columns (Parquet-like)", typed_s), ("text columns (CSV-like)", text_s)):
        rate = events.height / seconds
        print(
            f"validate, {label}: {seconds:.3f}s = {rate:,.0f} rows/s; "
            f"{base_s / seconds:.1f}x the per-row Python path; "
            f"target {TARGET:,} rows/s: {'met' if rate >= TARGET else 'NOT met'}"
        )
    print(f"baseline, per-row Event.from_dict: {events.height / base_s:,.0f} rows/s (timed on {len(sample):,} rows)")


if __name__ == "__main__":
    main()
