"""Loading the sources researchers hold: an Open edX log and an xAPI export, against the platform's NDJSON.

    python bench/sources.py [--video-events 1000000] [--other-events 4000000] [--repeat 3]

Builds, from one synthetic semester copied until long enough:
- the platform's NDJSON dump of its events (the baseline);
- an Open edX tracking log of ``--video-events`` video events among
  ``--other-events`` other events (problem checks, page views: skipped and counted);
- an xAPI export of ``--video-events`` video statements, as a JSON array and as NDJSON.

Then loads each into a new DuckDB store with ``Lab.load``, ``--repeat`` rounds, each
source right after a load of the platform dump, and prints rows read per second, video
events per second, and the ratio of each source's rows read per second to that of the
platform load just before it (target: at least 0.5; the median of the rounds). The pace
of a shared machine drifts within a minute: a baseline timed next to each source
follows it. A row read is a record of the file: every record is parsed and either
mapped, rejected or skipped and counted.
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from load import make_events  # noqa: E402

from vtp_lab.io import write_events  # noqa: E402
from vtp_lab.lab import Lab  # noqa: E402
from vtp_lab.sources.writers import as_source  # noqa: E402


def other_edx_events(n: int) -> pl.Series:
    """``n`` edX events that are not about video: problem checks and page views of made-up learners."""
    i = pl.int_range(n, eager=True)
    frame = pl.DataFrame({"i": i})
    name = pl.when(pl.col("i") % 3 == 0).then(pl.lit("problem_check")).otherwise(pl.lit("/courses/x/courseware"))
    return frame.select(
        pl.struct(
            pl.concat_str(pl.lit("learner"), (pl.col("i") % 997).cast(pl.String)).alias("username"),
            name.alias("event_type"),
            pl.lit("server").alias("event_source"),
            pl.concat_str(pl.lit("s"), (pl.col("i") // 50).cast(pl.String)).alias("session"),
            pl.lit("2026-09-01T10:00:00.000000+00:00").alias("time"),
            pl.struct(pl.lit("course-v1:Org+C1+2026").alias("course_id"), (pl.col("i") % 997).alias("user_id")).alias(
                "context"
            ),
            pl.lit('{"answers": {"q1": "a"}, "attempts": 1}').alias("event"),
        ).struct.json_encode()
    ).to_series()


def timed_load(path: Path, store: Path) -> tuple[float, int, int]:
    """Seconds for ``Lab.load`` of ``path`` into a new store (open and close included), rows read, accepted."""
    start = time.perf_counter()
    with Lab(store) as lab:
        report = lab.load(path, progress=False)
    seconds = time.perf_counter() - start
    assert report.rejected == 0, report
    return seconds, report.rows_read, report.accepted


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--video-events", type=int, default=1_000_000)
    parser.add_argument("--other-events", type=int, default=4_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vtp-bench-sources-"))
    events = make_events(args.video_events)
    said = as_source(events, "edx").len()  # a source records fewer events than the platform (docs/sources.md)
    events = make_events(math.ceil(args.video_events * events.height / said))
    platform = write_events(events, tmp / "events.ndjson")
    edx_records = as_source(events, "edx").head(args.video_events)
    mixed = pl.concat([edx_records, other_edx_events(args.other_events)]).sample(fraction=1.0, shuffle=True, seed=1)
    edx = tmp / "tracking.log"
    edx.write_text(mixed.str.join("\n").item() + "\n")
    del mixed
    statements = as_source(events, "xapi").head(args.video_events)
    xapi = tmp / "statements.json"
    xapi.write_text("[" + statements.str.join(",\n").item() + "]\n")
    xapi_lines = tmp / "statements.ndjson"
    xapi_lines.write_text(statements.str.join("\n").item() + "\n")
    print(
        f"platform NDJSON: {events.height:,} events, {platform.stat().st_size / 1e6:,.0f} MB; "
        f"edX log: {edx_records.len():,} video events among {args.other_events:,} others, "
        f"{edx.stat().st_size / 1e6:,.0f} MB; xAPI: {statements.len():,} statements, "
        f"{xapi.stat().st_size / 1e6:,.0f} MB as a JSON array (and as NDJSON)"
    )
    sources = {"edX log": edx, "xAPI export, JSON array": xapi, "xAPI export, NDJSON": xapi_lines}
    for path in (platform, *sources.values()):  # one-time costs (imports, first plans) are not timed
        small = tmp / f"warm-{path.name}"
        with path.open() as lines:
            small.write_text("".join(islice(lines, 50)).rstrip(",\n") + ("]\n" if path == xapi else "\n"))
        timed_load(small, tmp / f"warm-{path.name}.duckdb")
    ratios: dict[str, list[float]] = {label: [] for label in sources}
    for run in range(1, args.repeat + 1):
        line = f"run {run}:"
        for label, path in sources.items():  # each source right after a platform load: the machine's pace drifts
            base_s, base_rows, _ = timed_load(platform, tmp / f"platform-{run}-{path.name}.duckdb")
            seconds, rows, accepted = timed_load(path, tmp / f"{path.name}-{run}.duckdb")
            ratios[label].append((rows / seconds) / (base_rows / base_s))
            line += (
                f" platform {base_rows / base_s:,.0f} rows/s ({base_s:.1f} s), then {label} {rows / seconds:,.0f} "
                f"rows/s, {accepted / seconds:,.0f} video events/s ({seconds:.1f} s), ratio {ratios[label][-1]:.2f};"
            )
            for store in tmp.glob("*.duckdb"):
                store.unlink()
        print(line.rstrip(";"))
    for label, values in ratios.items():
        ratio = statistics.median(values)
        print(
            f"{label}: rows read per second / the platform NDJSON's, median of {len(values)}: {ratio:.2f} "
            f"(target 0.5: {'met' if ratio >= 0.5 else 'NOT met'})"
        )
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
