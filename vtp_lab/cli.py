"""The ``vtp-lab`` command line.

Errors are one line on stderr: exit 2 for usage, 1 for a failure, never a traceback.

Example:
    >>> main(["synth", "--students", "2", "--courses", "1", "--lectures", "1", "-o", "/tmp/vtp-doc.ndjson"])
    wrote ... events to /tmp/vtp-doc.ndjson (ndjson)
    0
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]

_EXAMPLES = """\
examples:
  vtp-lab demo                                   synthetic semester: validate and count
  vtp-lab synth -o semester.ndjson.gz            write a synthetic dump
  vtp-lab synth -o bad.csv --format csv --bad-rows 0.05 --seed 7
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vtp-lab",
        description="Study how students watch lecture videos: validated playback events, sessions and metrics.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="the main job on a synthetic semester",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--students", type=int, default=120, help="number of students (default 120)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")

    synth = sub.add_parser(
        "synth",
        help="write a synthetic semester of events",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    synth.add_argument(
        "-o", "--output", required=True, type=Path, help="output file (.ndjson, .json, .csv, .parquet; .gz/.zst)"
    )
    synth.add_argument("--format", choices=("ndjson", "json", "csv", "parquet"), help="default: from the file name")
    synth.add_argument("--courses", type=int, default=3, help="courses (default 3)")
    synth.add_argument("--lectures", type=int, default=12, help="lectures per course (default 12)")
    synth.add_argument("--students", type=int, default=120, help="students (default 120)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument(
        "--bad-rows", type=float, default=0.0, metavar="FRACTION", help="fraction of broken rows (default 0)"
    )
    synth.add_argument(
        "--duplicates", type=float, default=0.0, metavar="FRACTION", help="fraction of repeated rows (default 0)"
    )
    synth.add_argument("--recordings", type=Path, help="also write the recordings catalogue (CSV) here")
    return parser


def _table(title: str, counts: dict[str, int]) -> str:
    width = max([len(k) for k in counts] + [len(title)])
    lines = [title, "-" * (width + 12)]
    lines += [f"{k:<{width}}  {v:>10,}" for k, v in counts.items()]
    return "\n".join(lines)


def _demo(args: argparse.Namespace) -> int:
    from vtp_lab.synth import semester
    from vtp_lab.validate import validate

    sem = semester(students=args.students, seed=args.seed, bad_rows=0.02, duplicates=0.01)
    result = validate(sem.events, source="synthetic semester")
    by_type = result.accepted.group_by("event_type").len().sort("len", descending=True)
    by_reason = result.rejected.group_by("reason").len().sort("len", descending=True)
    print(f"synthetic semester: {sem.recordings.height} lectures, {args.students} students, {result.rows_read:,} rows")
    print(
        f"rows read {result.rows_read:,} = accepted {result.accepted.height:,} + rejected {result.rejected.height:,}\n"
    )
    print(_table("accepted events by type", dict(by_type.iter_rows())))
    print()
    print(_table("rejected rows by reason", dict(by_reason.iter_rows())))
    dupes = result.accepted.height - result.accepted["id"].n_unique()
    print(f"\n{dupes:,} accepted rows repeat an id already seen (stored once when loaded)")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from vtp_lab.io import format_of, write_events
    from vtp_lab.synth import semester

    sem = semester(
        courses=args.courses,
        lectures_per_course=args.lectures,
        students=args.students,
        seed=args.seed,
        bad_rows=args.bad_rows,
        duplicates=args.duplicates,
    )
    path = write_events(sem.events, args.output, format=args.format)
    print(f"wrote {sem.events.height:,} events to {path} ({args.format or format_of(path)})")
    if args.recordings:
        args.recordings.parent.mkdir(parents=True, exist_ok=True)
        sem.recordings.write_csv(args.recordings)
        print(f"wrote {sem.recordings.height:,} recordings to {args.recordings}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``vtp-lab`` with ``argv`` (default: the process arguments); return the exit code.

    Example:
        >>> main(["synth", "--bad-rows", "2", "-o", "/tmp/x.ndjson"])  # prints the error to stderr
        1
    """
    from vtp_lab.errors import VtpLabError

    args = _parser().parse_args(argv)
    handlers = {"demo": _demo, "synth": _synth}
    try:
        return handlers[args.command](args)
    except (VtpLabError, ValueError, OSError) as exc:
        print(f"vtp-lab: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
