"""Make the README's screenshots: the dashboard served by Voila, and an engagement report.

    python docs/make_screenshots.py

Needs Debian's chromium and the dev extras (voila, playwright); writes docs/images/*.png.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

import vtp_lab as vl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from servers import CHROMIUM, CHROMIUM_FLAGS, running_voila  # noqa: E402


def main() -> None:
    """Write docs/images/dashboard.png and docs/images/report.png."""
    images = ROOT / "docs" / "images"
    images.mkdir(parents=True, exist_ok=True)
    lab = vl.Lab(":memory:")
    lab.load(ROOT / "data" / "events.ndjson.gz", progress=False)
    lab.load_recordings(ROOT / "data" / "recordings.csv")
    report = Path(tempfile.mkdtemp()) / "engagement.html"
    lab.report("engagement", course_id=lab.recordings()["course_id"][0]).to_html(report)

    with running_voila(ROOT / "notebooks" / "04_dashboard.ipynb") as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        page.goto(url, timeout=180_000)
        page.wait_for_selector(".widget-dropdown select", timeout=180_000)
        page.wait_for_timeout(3000)
        page.screenshot(path=str(images / "dashboard.png"), full_page=False)
        page.goto(report.as_uri())
        page.screenshot(path=str(images / "report.png"), full_page=True)  # the whole page, charts included
        browser.close()
    print(images / "dashboard.png", images / "report.png")


if __name__ == "__main__":
    main()
