"""The HTTP API under load: events posted by concurrent clients, acknowledged once stored.

    python bench/serve.py [--clients 8] [--batch 100] [--seconds 20] [--linger SECONDS]

Starts ``vtp-lab serve`` on a fresh DuckDB store in a subprocess on loopback; this
process is the load: ``--clients`` threads, each with one keep-alive connection, post
JSON arrays of ``--batch`` distinct valid events back to back for ``--seconds``. Prints
acknowledged events/s and the p50/p99 latency of a request (target: 50,000 events/s
with p99 under 100 ms), then checks that the store holds every acknowledged event.

Baselines, measured in the same run:
- the same events stored in this process through ``Lab.append`` in batches of 10,000
  (no HTTP, no concurrency), the store path's ceiling;
- a group commit in this process: ``--clients`` documents of ``--batch`` events submitted
  to a ``Collector`` at once (as the server's collector takes them), the median time until
  all are stored; by Little's law the clients, each waiting for its answer, reach 50,000
  events/s only if a whole round (a group commit and the HTTP around it) takes
  ``clients x batch / 50,000`` s, 16 ms for 8 x 100;
- the HTTP path alone: the same app and clients, with every posted document answered at
  once by a collector that neither validates nor stores it (``--http-only`` runs that
  server), the ceiling of uvicorn, FastAPI and the clients on this machine.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import http.client
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from servers import VtpServer, free_port, running_server, running_vtp_server

from vtp_lab.collect import Collector, Receipt
from vtp_lab.events import uuid5_series
from vtp_lab.lab import Lab
from vtp_lab.serve import DEFAULT_LINGER, create_app
from vtp_lab.synth import semester


def distinct_events(n: int) -> pl.DataFrame:
    """``n`` valid events with distinct ids: a synthetic semester, repeated under fresh ids."""
    base = semester(courses=3, lectures_per_course=12, students=200, seed=7).events
    copies = -(-n // base.height)
    frame = pl.concat([base.with_columns(pl.lit(k).alias("_copy")) for k in range(copies)]).head(n)
    ids = uuid5_series(frame.select(pl.concat_str("id", pl.lit("|"), pl.col("_copy").cast(pl.String))).to_series())
    return frame.with_columns(ids.alias("id")).drop("_copy")


def bodies(events: pl.DataFrame, batch: int) -> list[bytes]:
    lines = events.select(pl.struct(pl.all()).struct.json_encode()).to_series()
    joined = lines.to_frame("l").with_row_index().group_by(pl.col("index") // batch, maintain_order=True)
    return [("[" + ",".join(group["l"]) + "]").encode() for _, group in joined]


def group_commit(store: Path, docs: list[bytes], clients: int, rounds: int = 100) -> float:
    """Median milliseconds for a ``Collector`` (as the server sets it up) to store ``clients`` documents at once.

    Each round takes documents not stored before, as many rounds as ``docs`` has (at
    most ``rounds``); the first tenth warm up and are not counted.
    """
    rounds = max(1, min(rounds, len(docs) // clients))
    times = []
    with Lab(store) as lab:
        collector = lab.collector(batch_size=10_000, flush_interval=1.0, max_pending=64, linger=DEFAULT_LINGER)
        for k in range(rounds):
            start = time.perf_counter()
            futures = [collector.submit(doc) for doc in docs[k * clients : (k + 1) * clients]]
            for future in futures:
                future.result()
            times.append(time.perf_counter() - start)
        collector.close()
    return statistics.median(times[rounds // 10 :]) * 1000


def answer_at_once(
    self: Collector, text: str | bytes, *, ndjson: bool = False, source: str | None = None
) -> Future[Receipt]:
    """A receipt for nothing, at once: the document is neither validated nor stored."""
    nothing = pl.DataFrame(schema={"row_number": pl.Int64, "reason": pl.String, "field": pl.String})
    done: Future[Receipt] = Future()
    done.set_result(Receipt(source=source or "", accepted=0, duplicates=0, rejected=nothing))
    return done


def serve_http_only(port: int) -> None:
    """The API on ``port`` with its collector's work replaced by :func:`answer_at_once`."""
    import uvicorn

    Collector.submit = answer_at_once  # type: ignore[method-assign]
    with Lab(":memory:") as lab:
        uvicorn.run(create_app(lab), host="127.0.0.1", port=port, log_level="warning", access_log=False)


@contextlib.contextmanager
def running_http_only() -> Iterator[VtpServer]:
    """``python bench/serve.py --http-only PORT`` in a subprocess; SIGTERM it at the end."""
    port = free_port()
    with running_server([sys.executable, __file__, "--http-only", str(port)], port, store=Path(":memory:")) as server:
        yield server


def client(
    url: str, posts: list[tuple[bytes, int]], stop: float, out: list[tuple[float, int, int]], errors: list[str]
) -> None:
    """Post each (body, events in it) back to back until ``stop``.

    Records (latency, events answered for, events sent) per request.
    """
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    headers = {"Content-Type": "application/json"}
    for doc, size in posts:
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
        out.append((time.perf_counter() - start, got["accepted"] + got["duplicates"] + got["rejected"], size))
    conn.close()


@dataclasses.dataclass(frozen=True)
class Driven:
    """What :func:`drive` saw: (latency, events answered for, events sent) per request, errors, duration."""

    requests: list[tuple[float, int, int]]
    errors: list[str]
    seconds: float

    def events(self, *, answered: bool = True) -> int:
        """Events answered for by the server (or sent)."""
        return sum(r[1] if answered else r[2] for r in self.requests)

    def rate(self, *, answered: bool = True) -> float:
        """Events per second, as answered for by the server (or as sent)."""
        return self.events(answered=answered) / self.seconds

    def latency(self, quantile: float) -> float:
        """The latency at ``quantile``, in milliseconds."""
        latencies = sorted(r[0] for r in self.requests)
        return latencies[min(len(latencies) - 1, int(quantile * len(latencies)))] * 1000


def drive(server: VtpServer, posts: list[tuple[bytes, int]], clients: int, seconds: float) -> Driven:
    """``clients`` threads posting ``posts`` (body, events in it) to ``server`` for ``seconds``."""
    results: list[list[tuple[float, int, int]]] = [[] for _ in range(clients)]
    errors: list[str] = []
    stop = time.perf_counter() + seconds
    threads = [
        threading.Thread(target=client, args=(server.url, posts[k::clients], stop, results[k], errors))
        for k in range(clients)
    ]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return Driven(requests=[r for rs in results for r in rs], errors=errors, seconds=time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--events", type=int, default=2_000_000, help="events prepared (more than can be sent)")
    parser.add_argument("--linger", type=float, default=None, help="the server's --linger (its default if not given)")
    parser.add_argument("--http-only", type=int, metavar="PORT", help=argparse.SUPPRESS)  # the baseline's server
    args = parser.parse_args()
    if args.http_only:
        serve_http_only(args.http_only)
        return
    tmp = Path(tempfile.mkdtemp(prefix="vtp-bench-serve-"))

    events = distinct_events(args.events)
    docs = bodies(events, args.batch)
    posts = [(doc, min(args.batch, events.height - k * args.batch)) for k, doc in enumerate(docs)]
    print(f"{events.height:,} distinct events ready in {len(docs):,} bodies of {args.batch}")

    sample = events.head(500_000)
    lab = Lab(tmp / "baseline.duckdb")
    start = time.perf_counter()
    for offset in range(0, sample.height, 10_000):
        lab.append(sample.slice(offset, 10_000))
    baseline = sample.height / (time.perf_counter() - start)
    lab.close()
    print(
        f"baseline: Lab.append in this process, {sample.height:,} events in batches of 10,000: {baseline:,.0f} events/s"
    )

    group = group_commit(tmp / "group.duckdb", docs, args.clients)
    print(
        f"baseline: a group commit of {args.clients} documents x {args.batch} events in this process: median "
        f"{group:.1f} ms (a round of {args.clients * args.batch / 50_000 * 1000:.0f} ms gives 50,000 events/s)"
    )

    with running_http_only() as server:
        ceiling = drive(server, posts * 4, args.clients, args.seconds / 2)  # stores nothing: repeats are fine
    print(
        f"baseline: the HTTP path alone (documents answered unvalidated and unstored), {args.clients} clients x "
        f"{args.batch} events for {ceiling.seconds:.1f} s: {ceiling.rate(answered=False):,.0f} events/s; latency "
        f"p50 {ceiling.latency(0.5):.1f} ms, p99 {ceiling.latency(0.99):.1f} ms; {len(ceiling.errors)} errors"
    )

    linger = () if args.linger is None else ("--linger", str(args.linger))
    with running_vtp_server(tmp / "served.duckdb", *linger) as server:
        served = drive(server, posts, args.clients, args.seconds)
    acknowledged = served.events()
    rate, p99 = served.rate(), served.latency(0.99)
    print(
        f"served: {args.clients} clients x {args.batch} events for {served.seconds:.1f} s: {len(served.requests):,} "
        f"requests, {acknowledged:,} events acknowledged = {rate:,.0f} events/s; latency p50 "
        f"{served.latency(0.5):.1f} ms, p99 {p99:.1f} ms; {len(served.errors)} errors"
    )
    print(f"ratio served / in-process baseline: {rate / baseline:.2f}")
    print(f"ratio served / the HTTP path alone: {rate / ceiling.rate(answered=False):.2f}")
    print(f"target 50,000 events/s with p99 < 100 ms: {'met' if rate >= 50_000 and p99 < 100 else 'NOT met'}")
    with Lab(tmp / "served.duckdb", read_only=True) as stored:
        held = stored.store.count("analytics_events")
    print(
        f"store holds {held:,} events; acknowledged as accepted {acknowledged:,}: "
        f"{'ok' if held >= acknowledged else 'LOST'}"
    )
    for e in [*ceiling.errors, *served.errors][:5]:
        print("error:", e)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
