"""The HTTP API under load: events posted by concurrent clients, acknowledged once stored.

    python bench/serve.py [--clients 8] [--batch 100] [--seconds 20] [--linger SECONDS]

Starts ``vtp-lab serve`` on a fresh DuckDB store in a subprocess on loopback; this
process is the load: ``--clients`` threads, each with one keep-alive connection, post
JSON arrays of ``--batch`` distinct valid events back to back for ``--seconds``. Prints
acknowledged events/s and the p50/p99 latency of a request (target: 50,000 events/s
with p99 under 100 ms), then checks that the store holds every acknowledged event.

Baseline, measured in the same run: the same events stored in this process through
``Lab.append`` in batches of 10,000 (no HTTP, no concurrency), the store path's ceiling.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from servers import running_vtp_server

from vtp_lab.lab import Lab
from vtp_lab.synth import semester


def distinct_events(n: int) -> pl.DataFrame:
    """``n`` valid events with distinct ids: a synthetic semester, repeated under fresh ids."""
    base = semester(courses=3, lectures_per_course=12, students=200, seed=7).events
    copies = -(-n // base.height)
    frame = pl.concat([base.with_columns(pl.lit(k).alias("_copy")) for k in range(copies)]).head(n)
    digest = pl.concat_str("id", "_copy").hash(seed=1).cast(pl.String).str.zfill(20)
    digest2 = pl.concat_str("_copy", "id").hash(seed=2).cast(pl.String).str.zfill(20)
    hex_id = pl.concat_str(digest.str.slice(0, 12), digest2.str.slice(0, 12), digest.str.slice(12, 8))
    uuid = pl.concat_str(
        hex_id.str.slice(0, 8), pl.lit("-"), hex_id.str.slice(8, 4), pl.lit("-4"), hex_id.str.slice(13, 3),
        pl.lit("-8"), hex_id.str.slice(17, 3), pl.lit("-"), hex_id.str.slice(20, 12),
    )  # fmt: skip
    return frame.with_columns(uuid.alias("id")).drop("_copy")


def bodies(events: pl.DataFrame, batch: int) -> list[bytes]:
    lines = events.select(pl.struct(pl.all()).struct.json_encode()).to_series()
    joined = lines.to_frame("l").with_row_index().group_by(pl.col("index") // batch, maintain_order=True)
    return [("[" + ",".join(group["l"]) + "]").encode() for _, group in joined]


def client(url: str, docs: list[bytes], stop: float, out: list[tuple[float, int]], errors: list[str]) -> None:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    headers = {"Content-Type": "application/json"}
    for doc in docs:
        if time.perf_counter() >= stop:
            break
        start = time.perf_counter()
        conn.request("POST", "/v1/events", body=doc, headers=headers)
        response = conn.getresponse()
        answer = response.read()
        if response.status != 200:
            errors.append(f"{response.status}: {answer[:200]!r}")
            continue
        got = json.loads(answer)
        out.append((time.perf_counter() - start, got["accepted"] + got["duplicates"] + got["rejected"]))
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--events", type=int, default=2_000_000, help="events prepared (more than can be sent)")
    parser.add_argument("--linger", type=float, default=None, help="the server's --linger (its default if not given)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vtp-bench-serve-"))

    events = distinct_events(args.events)
    docs = bodies(events, args.batch)
    print(f"{events.height:,} distinct events ready in {len(docs):,} bodies of {args.batch}")

    lab = Lab(tmp / "baseline.duckdb")
    start = time.perf_counter()
    for offset in range(0, 500_000, 10_000):
        lab.append(events.slice(offset, 10_000))
    baseline = 500_000 / (time.perf_counter() - start)
    lab.close()
    print(f"baseline: Lab.append in this process, batches of 10,000: {baseline:,.0f} events/s")

    linger = () if args.linger is None else ("--linger", str(args.linger))
    with running_vtp_server(tmp / "served.duckdb", *linger) as server:
        results: list[list[tuple[float, int]]] = [[] for _ in range(args.clients)]
        errors: list[str] = []
        stop = time.perf_counter() + args.seconds
        threads = [
            threading.Thread(target=client, args=(server.url, docs[k :: args.clients], stop, results[k], errors))
            for k in range(args.clients)
        ]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
    done = [r for rs in results for r in rs]
    acknowledged = sum(n for _, n in done)
    latencies = sorted(s for s, _ in done)
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000
    rate = acknowledged / elapsed
    print(
        f"served: {args.clients} clients x {args.batch} events for {elapsed:.1f} s: {len(done):,} requests, "
        f"{acknowledged:,} events acknowledged = {rate:,.0f} events/s; latency p50 {p50:.1f} ms, p99 {p99:.1f} ms; "
        f"{len(errors)} errors"
    )
    print(f"ratio served / in-process baseline: {rate / baseline:.2f}")
    print(f"target 50,000 events/s with p99 < 100 ms: {'met' if rate >= 50_000 and p99 < 100 else 'NOT met'}")
    with Lab(tmp / "served.duckdb", read_only=True) as stored:
        held = stored.store.count("analytics_events")
    print(
        f"store holds {held:,} events; acknowledged as accepted {acknowledged:,}: {'ok' if held >= acknowledged else 'LOST'}"
    )
    for e in errors[:5]:
        print("error:", e)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
