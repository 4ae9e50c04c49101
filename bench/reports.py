"""Building all six reports for the demo semester (target: under 10 s), against deriving the tables alone.

    python bench/reports.py [--students 120]

The Lab holds the demo semester (3 courses x 12 lectures); the baseline measured in the
same run is the derivation of every table the reports read (sessions and aggregates).
Rendering to HTML (charts to SVG) is timed separately.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from vtp_lab.lab import Lab
from vtp_lab.reports import REPORT_KINDS
from vtp_lab.stats import derive
from vtp_lab.synth import semester


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--students", type=int, default=120)
    args = parser.parse_args()
    sem = semester(students=args.students, seed=0)
    lab = Lab(Path(tempfile.mkdtemp()) / "lab.duckdb")
    lab.append(sem.events)
    lab.store.write_recordings(sem.recordings)
    user = sem.events.filter(sem.events["event_type"] == "playback_started")["user_id"][0]
    print(f"demo semester: {sem.events.height:,} events, {sem.recordings.height} lectures, {args.students} students")

    start = time.perf_counter()
    derive(lab.events(), recordings=lab.recordings())
    base_s = time.perf_counter() - start

    start = time.perf_counter()
    reports = {kind: lab.report(kind, user_id=user if kind == "student" else None) for kind in REPORT_KINDS}
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    for report in reports.values():
        report.to_html()
    html_s = time.perf_counter() - start
    print(
        f"all six reports built: {build_s:.2f}s (target 10s: {'met' if build_s < 10 else 'NOT met'}); "
        f"deriving the tables alone: {base_s:.2f}s (ratio {build_s / base_s:.2f})"
    )
    print(f"rendering all six to standalone HTML (charts as SVG): {html_s:.2f}s")


if __name__ == "__main__":
    main()
