"""The dashboard in a real browser: Voila on loopback, Debian's Chromium through Playwright."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _needed() -> None:
    missing = [
        name
        for name, ok in (
            ("chromium", Path(CHROMIUM).exists()),
            ("voila", shutil.which("voila") or _module("voila")),
            ("playwright", _module("playwright")),
        )
        if not ok
    ]
    if missing:
        reason = f"needs {', '.join(missing)} (apt-get install chromium; pip install -e '.[dev]')"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def _module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def voila():
    _needed()
    port = _free_port()
    notebook = ROOT / "notebooks" / "04_dashboard.ipynb"
    proc = subprocess.Popen(
        [sys.executable, "-m", "voila", str(notebook), f"--port={port}", "--no-browser", "--Voila.ip=127.0.0.1"],
        cwd=notebook.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.mark.slow
def test_dashboard_in_chromium(voila, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.goto(voila, timeout=180_000)
        page.wait_for_selector(".widget-dropdown select", timeout=180_000)
        tiles = page.locator(".widget-html-content").first
        page.wait_for_function(
            "() => document.querySelector('.widget-html-content').innerText.includes('sessions')", timeout=60_000
        )
        before = tiles.inner_text()
        course = page.locator(".widget-dropdown select").first
        options = course.locator("option").all_inner_texts()
        current = course.input_value()
        target = next(
            i
            for i, _ in enumerate(options)
            if course.locator("option").nth(i).get_attribute("value") != current and i > 0
        )
        course.select_option(index=target)
        page.wait_for_function(
            "(before) => document.querySelector('.widget-html-content').innerText !== before",
            arg=before,
            timeout=60_000,
        )
        after = tiles.inner_text()
        shot = tmp_path / "dashboard.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert before != after
    assert "sessions" in after
    assert shot.stat().st_size > 10_000
