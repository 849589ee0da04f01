"""Headless Chromium for the tests: one browser per session, pages that record console errors, axe-core.

Chromium is Debian's (/usr/bin/chromium) and axe-core the npm package; scripts/test installs both.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from playwright.sync_api import Browser, Page, Request, sync_playwright

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("MAILROOM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
# scripts/test installs axe-core into .venv/ (npm --prefix .venv); MAILROOM_AXE_JS points elsewhere.
_AXE_PLACES = [REPO / ".venv" / "node_modules" / "axe-core" / "axe.min.js",
               REPO / ".node" / "node_modules" / "axe-core" / "axe.min.js"]
AXE_JS = Path(os.environ.get("MAILROOM_AXE_JS") or next((p for p in _AXE_PLACES if p.is_file()), _AXE_PLACES[0]))
ARTIFACTS = REPO / "tests" / "artifacts"
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class PageLog:
    """What a page said and fetched while a test used it."""

    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


@contextmanager
def open_page(browser: Browser, width: int, height: int = 900, *, offline: bool = True,
              color_scheme: Literal["light", "dark"] = "light") -> Iterator[tuple[Page, PageLog]]:
    """A page at ``width`` x ``height``; with ``offline`` every request off this machine is refused.
    ``color_scheme`` is what the page's prefers-color-scheme media queries see."""
    context = browser.new_context(viewport={"width": width, "height": height}, color_scheme=color_scheme)
    page = context.new_page()
    log = PageLog()
    page.on("console", lambda message: log.console_errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: log.console_errors.append(str(error)))

    def note(request: Request) -> None:
        log.requests.append(request.url)

    page.on("request", note)
    if offline:
        def route(route: Any) -> None:
            url = route.request.url
            if url.startswith(("file:", "data:", "about:", "http://127.0.0.1")):
                route.continue_()
            else:
                route.abort()

        page.route("**/*", route)
    try:
        yield page, log
    finally:
        context.close()


def axe_violations(page: Page, impacts: tuple[str, ...] = ("serious", "critical")) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.1 A and AA violations of ``impacts`` on the page (iframes included)."""
    if not AXE_JS.is_file():
        pytest.fail(f"axe-core is not installed at {AXE_JS}: run  npm install --no-save --prefix .venv axe-core@4")
    page.add_script_tag(path=str(AXE_JS))
    result = page.evaluate(
        "async (tags) => await axe.run(document, {runOnly: {type: 'tag', values: tags}, iframes: true})", WCAG_TAGS)
    return [
        {"id": v["id"], "impact": v["impact"], "help": v["help"],
         "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result["violations"] if v["impact"] in impacts
    ]


def horizontal_overflow(page: Page) -> int:
    """How many pixels the document is wider than the viewport (0: no sideways scrolling)."""
    return page.evaluate(
        "() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
        " - document.documentElement.clientWidth")


def artifact(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name
