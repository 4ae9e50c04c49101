"""The vtp-lab command, run as a user would: in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import ROOT

from vtp_lab.io import write_events
from vtp_lab.synth import semester


def run(*args: str, cwd=None, env=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vtp_lab.cli", *args],
        check=False,
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        timeout=300,
        env=env,
    )


def test_demo_loads_into_the_default_store_and_reports(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "VTP_LAB_STORE"}
    out = run("demo", "--students", "30", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "lab.duckdb").exists()
    assert "rows read" in out.stdout and "accepted" in out.stdout
    assert "analytics_events" in out.stdout
    assert "rejected by reason" in out.stdout and "invalid_uuid" in out.stdout


def test_load_info_export(tmp_path):
    dump, rec = tmp_path / "d.ndjson.gz", tmp_path / "rec.csv"
    assert (
        run(
            "synth",
            "-o",
            str(dump),
            "--students",
            "8",
            "--courses",
            "1",
            "--lectures",
            "2",
            "--bad-rows",
            "0.05",
            "--recordings",
            str(rec),
        ).returncode
        == 0
    )
    store = str(tmp_path / "lake")
    out = run("load", str(dump), "--recordings", str(rec), "--store", store)
    assert out.returncode == 0, out.stderr
    assert "rows read" in out.stdout and "recordings: 2" in out.stdout
    again = run("load", str(dump), "--store", store)
    assert "accepted 0" in again.stdout
    too_many = run("load", str(dump), "--store", str(tmp_path / "x.duckdb"), "--max-rejected", "0")
    assert too_many.returncode == 1 and "more than --max-rejected 0" in too_many.stderr
    info = run("info", cwd=tmp_path, env={**os.environ, "VTP_LAB_STORE": store})
    assert info.returncode == 0 and "analytics_events" in info.stdout and "rejected by reason" in info.stdout
    exported = run("export", "--to", str(tmp_path / "out"), "--format", "csv", "--store", store)
    assert exported.returncode == 0 and (tmp_path / "out" / "analytics_events.csv").exists()


def test_load_bad_paths_and_missing_stores_are_one_line(tmp_path):
    out = run("load", str(tmp_path / "nope.ndjson"), "--store", str(tmp_path / "s.duckdb"))
    assert out.returncode == 1
    assert out.stderr.startswith("vtp-lab: error: no file matches") and len(out.stderr.strip().splitlines()) == 1
    out = run("info", "--store", str(tmp_path / "never.duckdb"))
    assert out.returncode == 2 and "no store at" in out.stderr and "Traceback" not in out.stderr
    out = run("export", "--store", str(tmp_path / "never.duckdb"))
    assert out.returncode == 2 and "--to" in out.stderr


def test_synth_writes_each_format(tmp_path):
    for fmt, name in (("ndjson", "a.ndjson.gz"), ("csv", "b.out"), ("parquet", "c.parquet")):
        args = ["synth", "-o", str(tmp_path / name), "--students", "3", "--courses", "1", "--lectures", "1"]
        if name == "b.out":
            args += ["--format", fmt]
        out = run(*args, "--recordings", str(tmp_path / "rec.csv"))
        assert out.returncode == 0, out.stderr
        assert (tmp_path / name).stat().st_size > 0
    assert (tmp_path / "rec.csv").read_text().startswith("recording_id,course_id,title,duration_seconds,published_at")


def test_bad_flags_are_one_line_usage_errors():
    out = run("synth", "-o", "x.ndjson", "--bad-rows", "lots")
    assert out.returncode == 2
    assert "invalid float value: 'lots'" in out.stderr
    assert "Traceback" not in out.stderr
    out = run("frobnicate")
    assert out.returncode == 2


def test_counts_below_their_minimum_are_usage_errors_naming_the_value(tmp_path):
    for args, message in (
        (["synth", "-o", "a.ndjson", "--students", "-3"], "argument --students: -3 is too small; give 1 or more"),
        (["synth", "-o", "a.ndjson", "--courses", "0"], "argument --courses: 0 is too small; give 1 or more"),
        (["synth", "-o", "a.ndjson", "--lectures", "0"], "argument --lectures: 0 is too small; give 1 or more"),
        (["load", "a.ndjson", "--max-rejected", "-1"], "argument --max-rejected: -1 is too small; give 0 or more"),
        (["demo", "--students", "many"], "argument --students: 'many' is not a whole number"),
    ):
        out = run(*args, cwd=tmp_path)
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written, no store made


def test_export_to_a_file_is_refused_and_the_file_kept(tmp_path):
    from vtp_lab.lab import Lab

    Lab(tmp_path / "s.duckdb").close()
    target = tmp_path / "out.csv"
    target.write_text("keep me")
    for fmt in ("csv", "parquet"):
        out = run("export", "--to", str(target), "--format", fmt, "--store", str(tmp_path / "s.duckdb"))
        assert out.returncode == 1, out.stderr
        assert f"{target} is a file; export writes a folder of tables: give a folder's path" in out.stderr
    assert target.read_text() == "keep me"


def test_failures_are_one_line_exit_1(tmp_path):
    out = run("synth", "-o", str(tmp_path / "x.xml"), "--students", "1", "--courses", "1", "--lectures", "1")
    assert out.returncode == 1
    assert out.stderr.startswith("vtp-lab: error: cannot tell the format")
    assert len(out.stderr.strip().splitlines()) == 1


def test_help_shows_examples():
    out = run("--help")
    assert out.returncode == 0
    assert "examples:" in out.stdout


def on_a_terminal(argv: list[str], *, columns: int) -> str:
    """What ``argv`` writes on a pseudo-terminal of ``columns`` columns (0: one nobody sized), stdout and stderr."""
    import fcntl
    import pty
    import struct
    import termios

    pid, fd = pty.fork()
    if pid == 0:  # the child: its stdin, stdout and stderr are the terminal
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
        os.execv(sys.executable, [sys.executable, "-m", "vtp_lab.cli", *argv])
    out = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        out.append(data)
    os.waitpid(pid, 0)
    return b"".join(out).decode(errors="replace")


@pytest.mark.parametrize("columns", [80, 0])
def test_load_shows_a_progress_bar_on_a_terminal_and_none_when_piped(tmp_path, columns):
    dump = write_events(semester(courses=1, lectures_per_course=2, students=8).events, tmp_path / "d.ndjson")
    argv = ["load", str(dump), "--store", str(tmp_path / f"t{columns}.duckdb")]
    shown = on_a_terminal(argv, columns=columns)
    assert "loading: 100%" in shown and "rows read" in shown
    piped = run(*argv[:-1], str(tmp_path / "p.duckdb"))
    assert piped.returncode == 0 and "loading" not in piped.stderr + piped.stdout
