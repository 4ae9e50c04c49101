"""The README's examples, run as written: the notebook block, the command lines, the event body."""

from __future__ import annotations

import glob
import json
import os
import re
import shlex

import pytest
from conftest import ROOT
from servers import copy_csv_exports, url_of

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
    assert (tmp_path / "engagement.html").stat().st_size > 10_000
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
    for line in lines[:-1]:  # serve runs until stopped: tests/test_serve.py runs it
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
    import polars as pl

    events = json.loads(body.group(1))
    frame = pl.DataFrame([{**e, "metadata": json.dumps(e["metadata"])} for e in events])
    checked = validate(frame)
    assert (checked.accepted.height, checked.rejected.height) == (len(events), 0)
