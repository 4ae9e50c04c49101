"""The derived tables of 1M to 100M stored events in bounded memory, against the whole-frame path, and on Spark.

    python bench/scale.py [--sizes 1M,10M,30M,100M] [--whole-up-to 10M] [--spark 10M] [--dir DIR]

For each size, a DuckDB store of that many synthetic events (a semester tiled with new
ids, students, recordings and courses, appended a tile at a time) is built in a process
of its own; then, each in a fresh process, so that its peak RSS (VmHWM) is its own:
- the Lab's full refresh with the default memory budget (in parts of recordings once
  the store is larger than the budget): seconds, events/s, peak RSS;
- up to ``--whole-up-to`` events, the whole-frame path of before (every event read into
  one frame, ``derive``, the tables written): the same-run baseline.
Targets: 100M events with peak RSS under 4 GB, at least 400k events/s at every size,
events/s at 100M at least 80% of events/s at 10M.

``--spark N`` runs ``vtp_lab.spark.derive`` in local mode on the N-event store's events
(written once as a lake's Parquet folder) and prints its time and whether every table
equals the polars path's (the store's tables after the refresh).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
from polars.testing import assert_frame_equal

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vtp_lab.lab import Lab  # noqa: E402
from vtp_lab.stats import MATERIALISED, derive  # noqa: E402
from vtp_lab.store import open_store, read_spilled  # noqa: E402
from vtp_lab.synth import semester  # noqa: E402

KEYS = {"playback_sessions": "id", "quality_events": "id", "engagement_metrics": "id"}


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def count(text: str) -> int:
    """``10M`` or ``500k`` or ``1000`` as a number."""
    scale = {"k": 1_000, "M": 1_000_000}.get(text[-1], 1)
    return int(float(text[:-1] if text[-1] in "kM" else text) * scale)


def build(events: int, path: Path) -> dict[str, float]:
    """A store of ``events`` events: tiles of one semester, each with new ids, students, recordings and courses."""
    base = semester(courses=4, lectures_per_course=14, students=1000, seed=1).events
    store = open_store(path)
    start, written, tile = time.perf_counter(), 0, 0
    while written < events:
        tag = f"{tile:04x}"
        part = base.head(events - written).with_columns(
            *(pl.concat_str(pl.lit(tag), pl.col(c).str.slice(4)).alias(c) for c in ("id", "user_id", "recording_id")),
            pl.col("session_id") + f"-{tile}",
            pl.col("metadata").str.replace(r'"course_id":"[0-9a-f]{4}', f'"course_id":"{tag}'),
        )
        written += store.append(part).inserted
        tile += 1
    store.close()
    return {"seconds": time.perf_counter() - start, "events": written, "recordings": 56 * tile}


def refresh(path: Path) -> dict[str, float]:
    """The Lab's full refresh of a store it did not write (so everything), default memory budget."""
    start = time.perf_counter()
    with Lab(path) as lab:
        counts = lab.refresh()
    return {"seconds": time.perf_counter() - start, "sessions": counts["playback_sessions"]}


def whole(path: Path) -> dict[str, float]:
    """The path of before: every event in one frame, ``derive``, the five tables written."""
    start = time.perf_counter()
    store = open_store(path)
    d = derive(store.read("analytics_events"), recordings=store.read("recordings"))
    store.replace_tables({name: getattr(d, name) for name in MATERIALISED})
    store.close()
    return {"seconds": time.perf_counter() - start, "sessions": d.playback_sessions.height}


def spark(path: Path) -> dict[str, object]:
    """Spark in local mode on the store's events as a lake folder; compared with the store's refreshed tables."""
    from vtp_lab import spark as vs

    lake = path.with_suffix(".lake")
    shutil.rmtree(lake, ignore_errors=True)
    (lake / "analytics_events").mkdir(parents=True)
    store = open_store(path, read_only=True)
    parts = store.spill("analytics_events", by="recording_id", parts=16, folder=lake / "_spill")
    for i, part in enumerate(parts):  # as the lake holds them: UUIDs as text
        read_spilled(part).write_parquet(lake / "analytics_events" / f"{i:05d}.parquet")
    shutil.rmtree(lake / "_spill")
    session = vs.session(master="local[2]", config={"spark.driver.memory": "6g", "spark.sql.shuffle.partitions": "8"})
    session.sparkContext.setLogLevel("ERROR")
    start = time.perf_counter()
    tables = vs.derive(lake, spark=session, partitions=32)
    got = {name: pl.from_arrow(frame.toArrow()) for name, frame in tables.items()}
    seconds = time.perf_counter() - start
    equal = {}
    for name in MATERIALISED:
        key = KEYS.get(name, "id")
        want = store.read(name).sort(key)
        mine = got[name]
        assert isinstance(mine, pl.DataFrame)
        try:
            assert_frame_equal(mine.sort(key), want, check_exact=False, rel_tol=1e-9, abs_tol=0)
            equal[name] = True
        except AssertionError:
            equal[name] = False
    store.close()
    shutil.rmtree(lake, ignore_errors=True)
    return {"seconds": seconds, "equal": equal}


def child(mode: str, *args: str) -> dict:
    """Run one step in a fresh process; its result and peak RSS."""
    done = subprocess.run(
        [sys.executable, __file__, "--step", mode, *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{mode} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1M,10M,30M,100M")
    parser.add_argument("--whole-up-to", default="10M")
    parser.add_argument("--spark", default="10M", help="the size to run on Spark too ('' for none)")
    parser.add_argument("--dir", default=None, help="where the stores go (default: a temporary folder)")
    parser.add_argument("--step", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        mode, *rest = args.step
        steps = {"build": lambda: build(int(rest[0]), Path(rest[1])), "refresh": lambda: refresh(Path(rest[0]))}
        steps |= {"whole": lambda: whole(Path(rest[0])), "spark": lambda: spark(Path(rest[0]))}
        print(json.dumps({**steps[mode](), "peak_rss_mb": peak_rss_mb()}))
        return
    folder = Path(args.dir or tempfile.mkdtemp(prefix="vtp-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    rates = {}
    for size in args.sizes.split(","):
        events = count(size)
        path = folder / f"{size}.duckdb"
        for old in folder.glob(f"{size}.duckdb*"):
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        made = child("build", str(events), str(path))
        print(f"{size}: built {made['events']:,} events, {made['recordings']:,} recordings in {made['seconds']:.0f}s")
        got = child("refresh", str(path))
        rate = made["events"] / got["seconds"]
        rates[size] = rate
        print(
            f"{size}: refresh {got['seconds']:.1f}s, {rate:,.0f} events/s, peak RSS {got['peak_rss_mb']:,.0f} MB "
            f"({got['sessions']:,} sessions)"
        )
        if events <= count(args.whole_up_to):
            base = child("whole", str(path))
            print(
                f"{size}: whole frame (baseline) {base['seconds']:.1f}s, {made['events'] / base['seconds']:,.0f} "
                f"events/s, peak RSS {base['peak_rss_mb']:,.0f} MB; "
                f"refresh / whole time {got['seconds'] / base['seconds']:.2f}"
            )
        if args.spark and events == count(args.spark):
            on_spark = child("spark", str(path))
            same = all(on_spark["equal"].values())
            print(
                f"{size}: Spark local[2] {on_spark['seconds']:.1f}s, {made['events'] / on_spark['seconds']:,.0f} "
                f"events/s; every table equals the polars path's: {same} {on_spark['equal'] if not same else ''}"
            )
        for old in folder.glob(f"{size}.duckdb*"):
            shutil.rmtree(old) if old.is_dir() else old.unlink()
    if "10M" in rates and "100M" in rates:
        print(f"events/s at 100M / at 10M: {rates['100M'] / rates['10M']:.2f} (target 0.8)")


if __name__ == "__main__":
    main()
