"""Fixtures for the browser tests; every one is skipped, with the reason, when Playwright or Chromium is missing
(``make test`` installs Chromium with apt when it runs as root)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from . import browser as web_browser
from .browser import chromium_path, launch, open_page


def need_browser() -> str:
    """Skip (visibly) unless Playwright and Chromium are both installed; returns Chromium's path."""
    pytest.importorskip("playwright.sync_api", reason="browser tests need Playwright: pip install 'amser-dsp[test]'")
    path = chromium_path()
    if path is None:
        pytest.skip("browser tests need Chromium: apt-get install chromium (make test does this as root)")
    return path


@pytest.fixture(scope="session")
def playwright_session() -> Iterator[Any]:
    need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright_session: Any) -> Iterator[Any]:
    b = launch(playwright_session)
    yield b
    b.close()


@pytest.fixture(scope="session")
def static_site() -> Iterator[str]:
    with web_browser.static_site() as url:
        yield url


@pytest.fixture(scope="module")
def page(browser: Any, static_site: str) -> Iterator[Any]:
    p = open_page(browser, static_site + "/")
    yield p
    p.close()
