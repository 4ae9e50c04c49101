"""Sessions and the four aggregates at scale, against the per-event reference, and a pushed-down query.

    python bench/sessions.py [--events 10000000] [--reference-events 200000]

Prints:
- sessions plus quality events, engagement metrics, lecture and course statistics for
  ``--events`` synthetic events (target: 10M in at most 30 s on this 2-core machine);
- the vectorised code against the plain per-event reference of tests/reference.py on
  ``--reference-events`` events, in the same run (target: at least 100 times faster);
- the time of a one-recording query against the whole-lake computation.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from reference import walk  # noqa: E402

from vtp_lab.lab import Lab  # noqa: E402
from vtp_lab.sessions import SESSION_KEY, sessionize  # noqa: E402
from vtp_lab.stats import derive  # noqa: E402
from vtp_lab.synth import semester  # noqa: E402


def tiled(base: pl.DataFrame, n: int) -> pl.DataFrame:
    """``n`` events: copies of ``base`` with new ids, users and sessions (new students)."""
    parts, total, i = [], 0, 0
    while total < n:
        tag = f"{i:04x}"
        parts.append(
            base.with_columns(
                pl.concat_str(pl.lit(tag), pl.col("id").str.slice(4)).alias("id"),
                pl.concat_str(pl.lit(tag), pl.col("user_id").str.slice(4)).alias("user_id"),
                (pl.col("session_id") + f"-{i}").alias("session_id"),
            )
        )
        total += base.height
        i += 1
    return pl.concat(parts).head(n)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--reference-events", type=int, default=200_000)
    args = parser.parse_args()
    sem = semester(courses=4, lectures_per_course=14, students=2500, seed=1)
    events = tiled(sem.events, args.events)
    print(f"{events.height:,} events, {sem.recordings.height} recordings")

    start = time.perf_counter()
    d = derive(events, recordings=sem.recordings)
    big_s = time.perf_counter() - start
    print(
        f"sessions + 4 aggregates for {events.height:,} events: {big_s:.1f}s "
        f"({d.playback_sessions.height:,} sessions, "
        f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.1f} GB; "
        f"target 30s: {'met' if big_s <= 30 else 'NOT met'})"
    )
    del d

    small = sem.events.filter(pl.col("event_type") != "recording_started").head(args.reference_events)
    start = time.perf_counter()
    sessionize(small, recordings=sem.recordings)
    vec_s = time.perf_counter() - start
    durations = dict(zip(sem.recordings["recording_id"], sem.recordings["duration_seconds"], strict=True))
    start = time.perf_counter()
    for key, group in small.group_by(SESSION_KEY):
        walk(group.to_dicts(), durations.get(key[1]))
    ref_s = time.perf_counter() - start
    ratio = ref_s / vec_s
    print(
        f"{small.height:,} events: vectorised {vec_s:.2f}s, per-event reference {ref_s:.2f}s: "
        f"{ratio:.0f}x (target 100x: {'met' if ratio >= 100 else 'NOT met'})"
    )

    tmp = Path(tempfile.mkdtemp(prefix="vtp-bench-sessions-"))
    lake_events = tiled(sem.events, min(args.events, 2_000_000))
    lab = Lab(tmp / "lake")
    lab.append(lake_events)
    lab.store.write_recordings(sem.recordings)
    recording = sem.recordings["recording_id"][0]
    start = time.perf_counter()
    one = lab.playback_sessions(recording_id=recording)
    one_s = time.perf_counter() - start
    start = time.perf_counter()
    whole = lab.derived().playback_sessions
    whole_s = time.perf_counter() - start
    print(
        f"lake of {lake_events.height:,} events: one recording's sessions {one_s:.2f}s ({one.height:,} rows), "
        f"every session {whole_s:.2f}s ({whole.height:,} rows): {whole_s / one_s:.0f}x"
    )
    lab.close()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
