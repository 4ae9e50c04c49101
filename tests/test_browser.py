"""The dashboard in a real browser: Voila on loopback, Debian's Chromium through Playwright."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import ROOT
from servers import CHROMIUM, CHROMIUM_FLAGS, running_voila, unavailable


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
        unavailable(f"needs {', '.join(missing)} (apt-get install chromium; pip install -e '.[dev]')")


def _module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


@pytest.fixture
def voila():
    _needed()
    with running_voila(ROOT / "notebooks" / "04_dashboard.ipynb") as url:
        yield url


@pytest.mark.slow
def test_dashboard_in_chromium(voila, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
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


@pytest.mark.slow
def test_api_docs_render_with_the_network_off(tmp_path):
    """``/docs`` in Chromium with every request beyond the server refused: Swagger UI still lists the routes."""
    _needed()
    from playwright.sync_api import sync_playwright
    from servers import running_vtp_server

    with running_vtp_server(tmp_path / "lab.duckdb") as server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        elsewhere: list[str] = []

        def local_only(route):
            if route.request.url.startswith(server.url):
                route.continue_()
            else:
                elsewhere.append(route.request.url)
                route.abort()

        page.route("**/*", local_only)
        page.goto(server.url + "/docs", timeout=60_000)
        page.wait_for_selector(".opblock", timeout=60_000)
        routes = page.locator(".opblock-summary-path").all_inner_texts()
        page.screenshot(path=str(tmp_path / "api-docs.png"), full_page=True)
        browser.close()
    assert not elsewhere, elsewhere
    assert "/v1/events" in routes


ARTIFACTS = ROOT / "build" / "screenshots"
"""Where the browser tests keep their screenshots (git-ignored; CI can keep the folder)."""


@pytest.mark.slow
def test_every_report_renders_whole_in_chromium():
    """The six HTML reports in Chromium: nothing wider than the page, every chart inside it; screenshots kept."""
    _needed()
    from playwright.sync_api import sync_playwright

    from vtp_lab.lab import Lab
    from vtp_lab.synth import semester

    sem = semester(courses=2, lectures_per_course=4, students=30, seed=3)
    lab = Lab(":memory:")
    lab.append(sem.events)
    lab.load_recordings(sem.recordings)
    user = lab.engagement_metrics()["user_id"][0]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        for kind in ("student", "attendance", "engagement", "performance", "quality", "compliance"):
            html_path = ARTIFACTS / f"report-{kind}.html"
            lab.report(kind, user_id=user if kind == "student" else None).to_html(html_path)
            page.goto(html_path.as_uri())
            overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"the {kind} report is {overflow}px wider than the page"
            outside = page.evaluate(
                "() => [...document.querySelectorAll('figure svg')].filter(s => s.getBoundingClientRect().right"
                " > window.innerWidth).length"
            )
            assert outside == 0, f"a chart of the {kind} report runs off the page"
            assert page.locator("footer").inner_text().startswith("Generated")
            page.screenshot(path=str(ARTIFACTS / f"report-{kind}.png"), full_page=True)
        browser.close()
    assert len(list(ARTIFACTS.glob("report-*.png"))) == 6
