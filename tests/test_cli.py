"""The vtp-lab command, run as a user would: in a subprocess."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def run(*args: str, cwd=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vtp_lab.cli", *args],
        check=False,
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        timeout=300,
    )


def test_demo_prints_counts_by_type_and_reason():
    out = run("demo", "--students", "30")
    assert out.returncode == 0, out.stderr
    assert "accepted events by type" in out.stdout
    assert "rejected rows by reason" in out.stdout
    assert "playback_started" in out.stdout
    assert "invalid_uuid" in out.stdout


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


def test_failures_are_one_line_exit_1(tmp_path):
    out = run("synth", "-o", str(tmp_path / "x.xml"), "--students", "1", "--courses", "1", "--lectures", "1")
    assert out.returncode == 1
    assert out.stderr.startswith("vtp-lab: error: cannot tell the format")
    assert len(out.stderr.strip().splitlines()) == 1


def test_help_shows_examples():
    out = run("--help")
    assert out.returncode == 0
    assert "examples:" in out.stdout
