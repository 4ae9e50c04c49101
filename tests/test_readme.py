"""The README's notebook example, run as written (on the sample in data/)."""

from __future__ import annotations

import os
import re

from conftest import ROOT


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
