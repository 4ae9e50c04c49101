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
