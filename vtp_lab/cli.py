"""The ``vtp-lab`` command line.

Errors are one line on stderr: exit 2 for usage, 1 for a failure, never a traceback.
Heavy modules load when a command runs, not when ``vtp_lab`` is imported.

Example:
    >>> main(["synth", "--students", "2", "--courses", "1", "--lectures", "1", "-o", "/tmp/vtp-doc.ndjson"])
    wrote ... events to /tmp/vtp-doc.ndjson (ndjson)
    0
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final, cast

import polars as pl

from vtp_lab.errors import VtpLabError
from vtp_lab.events import parse_timestamp
from vtp_lab.io import FORMATS
from vtp_lab.lab import Lab
from vtp_lab.postgres import DEFAULT_OVERLAP, redacted
from vtp_lab.reports import REPORT_KINDS
from vtp_lab.sources import SOURCE_FORMATS
from vtp_lab.stats import ViewingRequirement
from vtp_lab.tables import TABLES

__all__ = ["main"]

_EXAMPLES = """\
examples:
  vtp-lab demo                                   synthetic semester: load it into lab.duckdb and report
  vtp-lab synth -o semester.ndjson.gz            write a synthetic dump
  vtp-lab synth -o tracking.log --format edx     the same semester as an Open edX tracking log (or xapi, caliper)
  vtp-lab load tracking.log statements.json      edX, xAPI and Caliper load like any dump
  vtp-lab load dumps/*.ndjson.gz --recordings recordings.csv
  vtp-lab load export.csv --store lake/ --max-rejected 100
  vtp-lab load postgresql://ana@db/vtp           the platform's events table; again: only what is new
  vtp-lab publish postgresql://ana@db/vtp        the derived tables upserted into the server's schema 005
  vtp-lab export --to out/ --format csv          CSV for PostgreSQL's COPY
  vtp-lab info --store lake/
  vtp-lab sql "SELECT quality, count(*) FROM playback_sessions GROUP BY ALL" [-o out.csv]
  vtp-lab report engagement --course COURSE_ID -o engagement.html
  vtp-lab report student --user USER_ID --format md
  vtp-lab serve --store lab.duckdb --token "$TOKEN"    the HTTP API on 127.0.0.1:8750

The store is --store, else $VTP_LAB_STORE, else lab.duckdb here: a .duckdb file is one
DuckDB database, any other path a Parquet lake directory.
"""


class _Usage(Exception):
    """A usage error found after parsing (exit 2)."""


def _at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``minimum``, else a usage error naming the value."""

    def whole_number(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is too small; give {minimum} or more")
        return value

    return whole_number


def _timestamp(text: str) -> datetime:
    """An argparse type: a time (ISO 8601; naive is UTC), else a usage error naming the value."""
    value = parse_timestamp(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time; give ISO 8601, e.g. 2026-09-01T00:00:00Z")
    return value


def _hours(text: str) -> timedelta:
    """An argparse type: hours, zero or more, else a usage error naming the value."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of hours") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text} hours is not zero or more")
    return timedelta(hours=value)


def _store_path(args: argparse.Namespace) -> str:
    return str(args.store or os.environ.get("VTP_LAB_STORE") or "lab.duckdb")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vtp-lab",
        description="Study how students watch lecture videos: validated playback events, sessions and metrics.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _data_commands(sub)
    _output_commands(sub)
    return parser


def _command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str
) -> argparse.ArgumentParser:
    """A subcommand with its help; every one but ``synth`` works on a store (``--store``)."""
    fmt = argparse.RawDescriptionHelpFormatter
    p: argparse.ArgumentParser = sub.add_parser(
        name, help=help_text, description=help_text, epilog=_EXAMPLES, formatter_class=fmt
    )
    if name != "synth":
        p.add_argument(
            "--store", help="the store: a .duckdb file or a lake directory (default: $VTP_LAB_STORE or lab.duckdb)"
        )
    return p


def _data_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Events in and out: demo, synth, load, export."""
    demo = _command(sub, "demo", "the main job: a synthetic semester loaded into the store, with its load report")
    demo.add_argument("--students", type=_at_least(1), default=120, help="number of students (default 120)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")

    synth = _command(sub, "synth", "write a synthetic semester of events")
    synth.add_argument(
        "-o", "--output", required=True, type=Path, help="output file (.ndjson, .json, .csv, .parquet; .gz/.zst)"
    )
    synth.add_argument(
        "--format",
        choices=FORMATS,
        help="default: from the file name; edx, xapi or caliper write the semester as that source records it",
    )
    synth.add_argument("--courses", type=_at_least(1), default=3, help="courses (default 3)")
    synth.add_argument("--lectures", type=_at_least(1), default=12, help="lectures per course (default 12)")
    synth.add_argument("--students", type=_at_least(1), default=120, help="students (default 120)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument(
        "--bad-rows", type=float, default=0.0, metavar="FRACTION", help="fraction of broken rows (default 0)"
    )
    synth.add_argument(
        "--duplicates", type=float, default=0.0, metavar="FRACTION", help="fraction of repeated rows (default 0)"
    )
    synth.add_argument("--recordings", type=Path, help="also write the recordings catalogue (CSV) here")

    load = _command(sub, "load", "load dumps (files, globs, directories) into the store")
    load.add_argument(
        "files",
        nargs="+",
        help="NDJSON, JSON, CSV or Parquet files, edX logs, xAPI or Caliper exports (plain, .gz or .zst), "
        "or postgresql:// URIs (the password from ~/.pgpass or $PGPASSWORD)",
    )
    load.add_argument("--recordings", type=Path, help="a recordings catalogue (CSV or Parquet) to load too")
    load.add_argument("--format", choices=FORMATS, help="default: from each file's content and name")
    load.add_argument(
        "--max-rejected",
        type=_at_least(0),
        metavar="N",
        help="store nothing and exit 1 when more than N rows are rejected",
    )
    load.add_argument("--no-progress", action="store_true", help="no progress bar")
    load.add_argument(
        "--table", default="analytics_events", help="a server's events table or SCHEMA.TABLE (default analytics_events)"
    )
    load.add_argument(
        "--since", type=_timestamp, metavar="TIME", help="read a server's events from this time (default: what is new)"
    )
    load.add_argument(
        "--overlap",
        type=_hours,
        default=DEFAULT_OVERLAP,
        metavar="HOURS",
        help="hours before the last load of a server read again, for late events (default 24)",
    )

    publish = _command(sub, "publish", "upsert the derived tables into a PostgreSQL server's schema-005 tables")
    publish.add_argument("url", help="postgresql:// URI (the password from ~/.pgpass or $PGPASSWORD)")
    publish.add_argument("--tables", nargs="+", help="default: the five derived tables")
    publish.add_argument("--schema", help="the server's schema holding them (default: the search path)")

    export = _command(sub, "export", "export the tables: Parquet (hive-partitioned) or CSV for PostgreSQL's COPY")
    export.add_argument("--to", required=True, type=Path, help="output directory")
    export.add_argument("--format", choices=("parquet", "csv"), default="parquet", help="default parquet")
    export.add_argument("--tables", nargs="+", help="default: all (Parquet) or the six PostgreSQL tables (CSV)")


def _output_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """What the store tells: info, sql, report, serve."""
    _command(sub, "info", "what the store holds: tables, row counts, date range, rejections by reason")
    sql = _command(sub, "sql", "one read-only SQL SELECT (DuckDB's dialect) over every table")
    sql.add_argument("query", help='e.g. "SELECT quality, count(*) FROM playback_sessions GROUP BY ALL"')
    sql.add_argument("-o", "--output", type=Path, help="write the result here (.csv or .parquet) instead of printing")

    report = _command(sub, "report", "write one of the six reports (HTML opens offline, Markdown or JSON)")
    report.add_argument("kind", choices=REPORT_KINDS)
    report.add_argument("--course", help="a course id or a unique beginning of its title (default: every course)")
    report.add_argument("--user", help="a user id (the student report needs it)")
    report.add_argument("--recording", help="a lecture's id or title beginning (performance and quality reports)")
    report.add_argument(
        "--coverage",
        type=float,
        metavar="SHARE",
        help="compliance: the share of each lecture a student must watch (e.g. 0.8), with --within-days",
    )
    report.add_argument(
        "--within-days", type=float, default=7.0, metavar="DAYS", help="compliance: days after publication (default 7)"
    )
    report.add_argument("-o", "--output", type=Path, help="output file (default: <kind>-report.<format> here)")
    report.add_argument("--format", choices=("html", "md", "json"), help="default: from the output name, else html")

    serve = _command(
        sub, "serve", "the HTTP API: post events live, read sessions, statistics, reports and real-time metrics"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, this machine only)")
    serve.add_argument("--port", type=int, default=8750, help="port (default 8750)")
    serve.add_argument("--token", help="bearer token required to post events (default: $VTP_LAB_TOKEN; none: open)")
    serve.add_argument(
        "--max-body",
        type=_at_least(1),
        default=8 * 1024 * 1024,
        metavar="BYTES",
        help="largest request body (default 8 MiB)",
    )
    serve.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN", help="allow a player's origin")
    serve.add_argument(
        "--linger",
        type=float,
        default=0.005,
        metavar="SECONDS",
        help="wait this long for more posts before storing a group (default 0.005)",
    )
    serve.add_argument("--log-level", choices=("critical", "error", "warning", "info", "debug"), default="info")


def _table(title: str, counts: dict[str, int]) -> str:
    width = max([len(k) for k in counts] + [len(title)])
    lines = [title, "-" * (width + 12)]
    lines += [f"{k:<{width}}  {v:>10,}" for k, v in counts.items()]
    return "\n".join(lines)


def _open_lab(args: argparse.Namespace, *, read_only: bool = False) -> Lab:
    path = _store_path(args)
    if read_only and not Path(path).exists():
        raise _Usage(f"no store at {path}; load something first (vtp-lab load FILES --store {path})")
    return Lab(path, read_only=read_only)


def _info_text(lab: Lab) -> str:
    counts = {name: lab.count(name) for name in TABLES}
    events = lab.store.read("analytics_events", columns=["event_timestamp"])
    lines = [f"store {lab.path}", _table("table", counts)]
    if events.height:
        stamps = events["event_timestamp"]
        first, last = cast(datetime, stamps.min()), cast(datetime, stamps.max())
        lines.append(f"\nevents from {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC")
    rejected = lab.store.read("rejected_events", columns=["reason"])
    if rejected.height:
        by_reason = rejected.group_by("reason").len().sort("len", descending=True)
        lines += ["", _table("rejected by reason", dict(by_reason.iter_rows()))]
    courses = lab.courses().select("course_id", "course_title", "lectures", "students")
    lines += _listing(courses, ("course", "title", "lectures", "students"), title_width=26)
    lectures = lab.lectures()
    shown = lectures.select("recording_id", "title", "unique_viewers").head(_LISTED)
    lines += _listing(shown, ("lecture", "title", "viewers"), title_width=30)
    if lectures.height > _LISTED:
        lines.append(f'... and {lectures.height - _LISTED:,} more: vtp-lab sql "SELECT * FROM recordings"')
    lines.append("\nAn id can be given by a unique beginning of its title: --course 'Course 1'")
    return "\n".join(lines)


_LISTED: Final = 40
"""Lectures ``vtp-lab info`` lists; the rest are counted."""


def _listing(frame: pl.DataFrame, head: Sequence[str], *, title_width: int) -> list[str]:
    """Rows of an id, a title and counts as aligned lines under ``head`` (none for no rows); a long title is cut."""
    if frame.height == 0:
        return []
    top = f"{head[0]:<38}{head[1]:<{title_width}}" + "".join(f"{h:>10}" for h in head[2:])
    lines = ["", top, "-" * len(top)]
    for ident, title, *counts in frame.iter_rows():
        cut = (title or "-")[: title_width - 1]
        lines.append(f"{ident:<38}{cut:<{title_width}}" + "".join(f"{n or 0:>10,}" for n in counts))
    return lines


def _statistics_text(lab: Lab) -> str:
    titles = lab.recordings().select("recording_id", "title")
    lectures = lab.lecture_statistics()
    courses = lab.course_statistics()
    assert isinstance(lectures, pl.DataFrame) and isinstance(courses, pl.DataFrame)
    top = (
        lectures.join(titles, on="recording_id", how="left")
        .sort("total_viewers", descending=True)
        .head(5)
        .select(
            "title",
            "total_viewers",
            "unique_viewers",
            pl.col("average_completion_rate").round(1),
            pl.col("avg_engagement_score").round(1),
        )
    )
    lines = [
        "most viewed lectures",
        "-" * 78,
        f"{'lecture':<26}{'views':>8}{'viewers':>10}{'completion %':>15}{'engagement':>12}",
    ]
    lines += [f"{t or '?':<26}{v:>8,}{u:>10,}{c or 0:>15.1f}{e or 0:>12.1f}" for t, v, u, c, e in top.iter_rows()]
    lines += ["", "courses", "-" * 78, f"{'course':<38}{'lectures':>9}{'students':>10}{'attendance %':>14}{'trend':>8}"]
    lines += [
        f"{row['course_id']:<38}{row['total_lectures']:>9}{row['total_unique_students']:>10}"
        f"{row['average_attendance_rate'] or 0:>14.1f}{row['engagement_trend']:>8}"
        for row in courses.iter_rows(named=True)
    ]
    return "\n".join(lines)


def _demo(args: argparse.Namespace) -> int:
    from vtp_lab.io import write_events
    from vtp_lab.synth import semester

    sem = semester(students=args.students, seed=args.seed, bad_rows=0.02, duplicates=0.01)
    workdir = Path(tempfile.mkdtemp(prefix="vtp-lab-demo-"))
    dump = write_events(sem.events, workdir / "semester.ndjson.gz")
    catalogue = workdir / "recordings.csv"
    sem.recordings.write_csv(catalogue)
    print(
        f"synthetic semester: {sem.recordings.height} lectures, {args.students} students, "
        f"{sem.events.height:,} rows -> {dump}\n"
    )
    with _open_lab(args) as lab:
        lab.load_recordings(catalogue)
        report = lab.load(dump)
        print(report)
        lab.refresh()
        print()
        print(_info_text(lab))
        print()
        print(_statistics_text(lab))
        path = Path("engagement-report.html").resolve()
        lab.report("engagement").to_html(path)
        print(f"\nengagement report: {path}")
    shutil.rmtree(workdir, ignore_errors=True)
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
    fmt = args.format or format_of(path)
    said = " (those this source records)" if fmt in SOURCE_FORMATS else ""
    print(f"wrote {sem.events.height:,} events{said} to {path} ({fmt})")
    if args.recordings:
        args.recordings.parent.mkdir(parents=True, exist_ok=True)
        sem.recordings.write_csv(args.recordings)
        print(f"wrote {sem.recordings.height:,} recordings to {args.recordings}")
    return 0


def _load(args: argparse.Namespace) -> int:
    from vtp_lab.errors import RejectionLimitError

    with _open_lab(args) as lab:
        if args.recordings:
            catalogue = lab.load_recordings(args.recordings)
            print(f"recordings: {catalogue.height:,} from {args.recordings}")
        try:
            report = lab.load(
                *args.files,
                format=args.format,
                progress=False if args.no_progress else None,
                max_rejected=args.max_rejected,
                table=args.table,
                since=args.since,
                overlap=args.overlap,
            )
        except RejectionLimitError as exc:
            print(exc.report)
            print(
                f"vtp-lab: error: {exc.rejected:,} rows rejected, more than --max-rejected {exc.limit:,}; nothing of "
                "this load was stored. Load a sample without the limit to see the rejected rows and why",
                file=sys.stderr,
            )
            return 1
        print(report)
        refreshed = lab.refresh()
        print("refreshed: " + ", ".join(f"{name} {rows:,}" for name, rows in refreshed.items()))
    for skipped in report.skipped:
        print(f"vtp-lab: skipped {skipped}", file=sys.stderr)
    for error in report.errors:
        print(f"vtp-lab: error: {error}", file=sys.stderr)
    return 1 if report.errors else 0


def _export(args: argparse.Namespace) -> int:
    with _open_lab(args, read_only=True) as lab:
        if args.format == "csv":
            written = lab.export_csv(args.to, tables=args.tables)
        else:
            written = lab.export_parquet(args.to, tables=args.tables)
    for path in written:
        print(path)
    return 0


def _sql(args: argparse.Namespace) -> int:
    if args.output and args.output.suffix not in (".csv", ".parquet"):
        raise _Usage(f"cannot write {args.output}; name it .csv or .parquet")
    with _open_lab(args, read_only=True) as lab:
        result = lab.sql(args.query)
    if args.output is None:
        width = shutil.get_terminal_size().columns
        with pl.Config(tbl_rows=40, tbl_cols=-1, fmt_str_lengths=40, tbl_width_chars=width):
            print(result)
        return 0
    if args.output.suffix == ".csv":
        result.write_csv(args.output)
    else:
        result.write_parquet(args.output)
    print(f"wrote {result.height:,} rows to {args.output}")
    return 0


def _publish(args: argparse.Namespace) -> int:
    with _open_lab(args, read_only=True) as lab:
        written = lab.publish(args.url, tables=args.tables, schema=args.schema)
    print(f"published to {redacted(args.url)}: " + ", ".join(f"{name} {rows:,}" for name, rows in written.items()))
    return 0


def _report(args: argparse.Namespace) -> int:
    if args.kind == "student" and not args.user:
        raise _Usage("the student report needs --user ID")
    fmt = args.format or (
        args.output.suffix.lstrip(".").replace("markdown", "md") if args.output and args.output.suffix else "html"
    )
    if fmt not in ("html", "md", "json"):
        raise _Usage(f"cannot tell the format of {args.output}; name it .html, .md or .json, or pass --format")
    output = args.output or Path(f"{args.kind}-report.{fmt}")
    with _open_lab(args, read_only=True) as lab:
        requirement = (
            ViewingRequirement(coverage=args.coverage, within=timedelta(days=args.within_days))
            if args.coverage is not None
            else None
        )
        report = lab.report(
            args.kind, course_id=args.course, user_id=args.user, recording_id=args.recording, requirement=requirement
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "html":
        report.to_html(output)
    elif fmt == "md":
        output.write_text(report.to_markdown(), encoding="utf-8")
    else:
        output.write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
    print(output)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from vtp_lab.serve import serve

    if not 0 <= args.port <= 65535:
        raise _Usage(f"--port {args.port} is not a port; give 0 to 65535")
    print(f"vtp-lab: serving {_store_path(args)} on http://{args.host}:{args.port} (API docs at /docs)", flush=True)
    serve(
        _store_path(args),
        host=args.host,
        port=args.port,
        token=args.token,
        max_body_bytes=args.max_body,
        cors_origins=args.cors_origin,
        linger=args.linger,
        log_level=args.log_level,
    )
    return 0


def _info(args: argparse.Namespace) -> int:
    with _open_lab(args, read_only=True) as lab:
        print(_info_text(lab))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``vtp-lab`` with ``argv`` (default: the process arguments); return the exit code.

    Example:
        >>> main(["synth", "--bad-rows", "2", "-o", "/tmp/x.ndjson"])  # prints the error to stderr
        1
    """
    parser = _parser()
    args = parser.parse_args(argv)
    handlers = {
        "demo": _demo,
        "synth": _synth,
        "load": _load,
        "export": _export,
        "publish": _publish,
        "info": _info,
        "sql": _sql,
        "report": _report,
        "serve": _serve,
    }
    try:
        return handlers[args.command](args)
    except _Usage as exc:
        parser.exit(2, f"vtp-lab: error: {exc}\n")
    except (VtpLabError, ValueError, OSError) as exc:
        print(f"vtp-lab: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
