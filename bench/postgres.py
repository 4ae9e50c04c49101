"""The platform's PostgreSQL both ways: loading 1M events from it, publishing their derived tables into it.

    python bench/postgres.py [--rows 1000000] [--repeat 2]

Starts a PostgreSQL server here on loopback, creates schema 005 and fills its events
table (``COPY``, not timed). Prints, in the same run, each pair alternated ``--repeat`` times:
- ``Lab.load`` of ``postgresql://...`` into a new DuckDB store (read, validate, store) in
  rows/s, against psycopg's ``COPY (SELECT ...) TO STDOUT`` of the same rows into Python
  (bytes only: no parsing, no checks), and the median ratio;
- ``Lab.publish`` of the derived tables of those events (into empty tables, then again over
  the same rows: the upsert) in rows/s, against psycopg's ``COPY ... FROM STDIN`` of the
  same rows as CSV text (into empty tables), and the median ratio.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from load import make_events  # noqa: E402
from servers import running_postgres  # noqa: E402

from vtp_lab.export import PUBLISHED, export_csv  # noqa: E402
from vtp_lab.io import write_events  # noqa: E402
from vtp_lab.lab import Lab  # noqa: E402


def url_of(dsn: str) -> str:
    kv = dict(part.split("=", 1) for part in dsn.split())
    return f"postgresql://{kv['user']}@{kv['host']}:{kv['port']}/{kv['dbname']}"


def copy_in(pg: object, paths: list[Path]) -> None:
    """``COPY`` each CSV file into the table of its name (the rows of the same run's export)."""
    for path in paths:
        query = f"COPY {path.stem} FROM STDIN WITH (FORMAT csv, HEADER true)"
        with pg.cursor().copy(query) as cp, path.open("rb") as fh:  # type: ignore[attr-defined]
            while chunk := fh.read(1 << 20):
                cp.write(chunk)
    pg.commit()  # type: ignore[attr-defined]


def truncate(pg: object, tables: tuple[str, ...]) -> None:
    pg.execute(f"TRUNCATE {', '.join(tables)}")  # type: ignore[attr-defined]
    pg.commit()  # type: ignore[attr-defined]


def load_pairs(pg: object, url: str, rows: int, tmp: Path, repeat: int) -> Lab:
    """Lab.load from the server against psycopg's COPY TO STDOUT; returns the last Lab (closed), for publishing."""
    ratios, last = [], tmp / "lab-0.duckdb"
    for i in range(repeat):
        start = time.perf_counter()
        read = 0
        with pg.cursor().copy("COPY (SELECT * FROM analytics_events) TO STDOUT") as cp:  # type: ignore[attr-defined]
            for chunk in cp:
                read += len(chunk)
        pg.commit()  # type: ignore[attr-defined]
        copy_s = time.perf_counter() - start
        last = tmp / f"lab-{i}.duckdb"
        start = time.perf_counter()
        with Lab(last) as lab:
            report = lab.load(url, progress=False)
        vtp_s = time.perf_counter() - start
        assert report.accepted == rows, report
        ratios.append(copy_s / vtp_s)
        print(
            f"run {i + 1}: vtp_lab load from PostgreSQL {rows / vtp_s:,.0f} rows/s ({vtp_s:.2f}s); "
            f"psycopg COPY TO STDOUT into Python {rows / copy_s:,.0f} rows/s ({copy_s:.2f}s, "
            f"{read / 1e6:,.0f} MB); ratio {ratios[-1]:.2f}"
        )
    print(f"ratio load / COPY TO STDOUT, median of {repeat}: {statistics.median(ratios):.2f}")
    return Lab(last)


def publish_pairs(pg: object, url: str, lab: Lab, tmp: Path, repeat: int) -> None:
    """Lab.publish (into empty tables, then over the same rows) against psycopg's COPY FROM STDIN of the same CSV."""
    lab.refresh()
    rows = sum(lab.count(name) for name in PUBLISHED)
    csv = export_csv(lab.store, tmp / "csv", tables=list(PUBLISHED))
    ratios, again_ratios = [], []
    for i in range(repeat):
        truncate(pg, PUBLISHED)
        start = time.perf_counter()
        copy_in(pg, csv)
        copy_s = time.perf_counter() - start
        truncate(pg, PUBLISHED)
        start = time.perf_counter()
        lab.publish(url)
        vtp_s = time.perf_counter() - start
        start = time.perf_counter()
        lab.publish(url)
        again_s = time.perf_counter() - start
        ratios.append(copy_s / vtp_s)
        again_ratios.append(copy_s / again_s)
        print(
            f"run {i + 1}: vtp_lab publish {rows / vtp_s:,.0f} rows/s ({vtp_s:.2f}s), again over the same rows "
            f"{rows / again_s:,.0f} rows/s ({again_s:.2f}s); psycopg COPY FROM STDIN of the same CSV "
            f"{rows / copy_s:,.0f} rows/s ({copy_s:.2f}s); ratios {ratios[-1]:.2f} and {again_ratios[-1]:.2f}"
        )
    print(
        f"{rows:,} derived rows ({', '.join(f'{n} {lab.count(n):,}' for n in PUBLISHED)}); ratio publish / COPY, "
        f"median of {repeat}: {statistics.median(ratios):.2f} (into empty tables), "
        f"{statistics.median(again_ratios):.2f} (again, every row an update)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    import psycopg

    tmp = Path(tempfile.mkdtemp(prefix="vtp-bench-pg-"))
    events = make_events(args.rows)
    with Lab(tmp / "source.duckdb") as source:
        source.load(write_events(events, tmp / "events.ndjson"), progress=False)
        written = export_csv(source.store, tmp / "events", tables=["analytics_events"])
    with running_postgres() as dsn, psycopg.connect(dsn) as pg:
        pg.execute((ROOT / "schema/postgres/005_analytics_schema.sql").read_text())
        pg.commit()
        copy_in(pg, written)
        pg.execute("ANALYZE analytics_events")
        pg.commit()
        print(f"{events.height:,} events in PostgreSQL's analytics_events")
        url = url_of(dsn)
        lab = load_pairs(pg, url, events.height, tmp, args.repeat)
        with lab:
            publish_pairs(pg, url, lab, tmp, args.repeat)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
