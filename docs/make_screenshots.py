"""Make the README's screenshots: the dashboard served by Voila, and an engagement report.

    python docs/make_screenshots.py

Needs Debian's chromium and the dev extras (voila, playwright); writes docs/images/*.png.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

import vtp_lab as vl

ROOT = Path(__file__).resolve().parents[1]
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def main() -> None:
    images = ROOT / "docs" / "images"
    images.mkdir(parents=True, exist_ok=True)
    lab = vl.Lab(":memory:")
    lab.load(ROOT / "data" / "events.ndjson.gz", progress=False)
    lab.load_recordings(ROOT / "data" / "recordings.csv")
    report = Path(tempfile.mkdtemp()) / "engagement.html"
    lab.report("engagement", course_id=lab.recordings()["course_id"][0]).to_html(report)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    notebook = ROOT / "notebooks" / "04_dashboard.ipynb"
    voila = subprocess.Popen(
        [sys.executable, "-m", "voila", str(notebook), f"--port={port}", "--no-browser", "--Voila.ip=127.0.0.1"],
        cwd=notebook.parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(180):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)  # noqa: S310 - loopback
                break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS, headless=True)
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/", timeout=180_000)
            page.wait_for_selector(".widget-dropdown select", timeout=180_000)
            page.wait_for_timeout(3000)
            page.screenshot(path=str(images / "dashboard.png"), full_page=False)
            page.goto(report.as_uri())
            page.screenshot(path=str(images / "report.png"), full_page=False)
            browser.close()
    finally:
        voila.terminate()
        voila.wait(timeout=30)
    print(images / "dashboard.png", images / "report.png")


if __name__ == "__main__":
    main()
