"""The README's examples, run as written: the notebook block, the command lines, the event body."""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import shutil
import subprocess

import polars as pl
import pytest
from conftest import ROOT
from servers import copy_csv_exports, running_vtp_server, unavailable, url_of

from vtp_lab.cli import main
from vtp_lab.lab import Lab
from vtp_lab.validation import validate


def test_the_notebook_example_runs_as_written(tmp_path):
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## In a notebook") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code, "the README's notebook example is gone"
    (tmp_path / "data").symlink_to(ROOT / "data")
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        scope: dict[str, object] = {}
        exec(compile(code.group(1), "README.md", "exec"), scope)
    finally:
        os.chdir(here)
        lab = scope.get("lab")
        if lab is not None:
            lab.close()  # type: ignore[attr-defined]
    page = (tmp_path / "engagement.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "Engagement" in page
    assert (tmp_path / "export" / "csv" / "analytics_events.csv").is_file()


def command_lines(readme: str) -> list[str]:
    """The ``vtp-lab`` lines of the README's command-line block, in order."""
    block = re.search(r"## Command line\n\n```\n(.*?)```", readme, re.S)
    assert block, "the README's command-line block is gone"
    return [line.split("   ")[0].strip() for line in block.group(1).splitlines() if line.startswith("vtp-lab ")]


def test_the_command_lines_run_in_order_as_written(tmp_path, postgres, monkeypatch, capsys):
    psycopg = pytest.importorskip("psycopg")
    with psycopg.connect(postgres, autocommit=True) as con:  # the platform's database, its events table filled
        con.execute("DROP DATABASE IF EXISTS readme")
        con.execute("CREATE DATABASE readme")
    with Lab(":memory:") as sample, psycopg.connect(url_of(postgres, dbname="readme"), autocommit=True) as con:
        sample.load(ROOT / "data" / "events.ndjson.gz", progress=False)
        copy_csv_exports(con, "public", sample.export_csv(tmp_path / "platform", tables=["analytics_events"]))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("VTP_LAB_STORE", raising=False)
    lines = command_lines((ROOT / "README.md").read_text())
    assert len(lines) == 12 and lines[-1].startswith("vtp-lab serve")
    for line in lines[:-1]:  # serve runs until stopped: the HTTP example's test starts it
        filled = line.replace("postgresql://ana@db/vtp", url_of(postgres, dbname="readme")).replace(" N]", " 1000]")
        if "--course ID" in filled:
            with Lab("lab.duckdb", read_only=True) as lab:
                title = lab.courses()["course_title"][0]
            filled = filled.replace("--course ID", f"--course {shlex.quote(title)}")
        words = shlex.split(re.sub(r"\[|\]", "", filled))[1:]
        code = main([a for word in words for a in sorted(glob.glob(word)) or [word]])  # the shell's globbing
        out = capsys.readouterr()
        assert code == 0, f"{line}\n{out.out}\n{out.err}"
    assert (work / "out" / "lecture_statistics.csv").is_file() and (work / "e.html").stat().st_size > 10_000
    assert (work / "out.csv").read_text().splitlines()[1].isdigit()
    assert (work / "lake" / "_ledger").is_dir()


def test_the_event_body_of_the_curl_example_is_accepted():
    readme = (ROOT / "README.md").read_text()
    body = re.search(r"```json\n(.*?)```", readme[readme.index("## Your own data") :], re.S)
    assert body, "the README's event body is gone"
    events = json.loads(body.group(1))
    frame = pl.DataFrame([{**e, "metadata": json.dumps(e["metadata"])} for e in events])
    checked = validate(frame)
    assert (checked.accepted.height, checked.rejected.height) == (len(events), 0)


def test_the_http_examples_run_as_written_with_curl(tmp_path, monkeypatch):
    """The HTTP API block: ``serve`` started as written (on a free port), each ``curl`` line run by the shell."""
    if shutil.which("curl") is None:
        unavailable("curl is not installed (apt install curl)")
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## HTTP API.*?```\n(.*?)```", readme, re.S)
    assert block, "the README's HTTP block is gone"
    commands = [line[2:] for line in block.group(1).splitlines() if line.startswith("$ ")]
    assert commands[0] == "vtp-lab serve --token s3cret &" and len(commands) == 4
    monkeypatch.chdir(tmp_path)
    assert main(["synth", "-o", "events.json", "--courses", "1", "--lectures", "1", "--students", "2"]) == 0
    recording = json.loads((tmp_path / "events.json").read_text())[0]["recording_id"]
    with running_vtp_server(tmp_path / "lab.duckdb", "--token", "s3cret") as server:
        outputs = []
        for command in commands[1:]:
            line = command.replace("http://127.0.0.1:8750", server.url).replace("RECORDING_ID", recording)
            done = subprocess.run(
                ["bash", "-c", line], check=False, cwd=tmp_path, capture_output=True, text=True, timeout=120
            )
            assert done.returncode == 0, f"{command}\n{done.stderr}"
            outputs.append(done.stdout)
    posted = json.loads(outputs[0])
    assert posted["accepted"] > 0 and posted["accepted"] + posted["rejected"] + posted["duplicates"] > 0
    assert json.loads(outputs[1])  # the lecture's statistics
    page = (tmp_path / "engagement.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "Engagement" in page
