"""Headless Chromium for the tests: one browser per session, pages that record console errors, axe-core,
and pages a module loads once and views at several sizes (``page_views``).

Chromium is Debian's (/usr/bin/chromium) and axe-core the npm package; scripts/test installs both.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Request, sync_playwright

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


# Off-machine addresses only: Playwright hands just the requests that match a route to the test process, so
# this pattern keeps local pages' own requests (file:, data:, 127.0.0.1) inside the browser.
OFF_MACHINE = re.compile(r"^(?!(file|data|about):|http://127\.0\.0\.1[:/])")


@functools.cache
def _axe_script() -> str:
    """axe-core, set up to audit frames too. The pages are file:// (or srcdoc frames of one), whose origin is
    opaque ("null"), and axe only talks to frames of an allowed origin: without this it waits 0.5 s for each
    frame to answer and then leaves the frame out, silently."""
    if not AXE_JS.is_file():
        pytest.fail(f"axe-core is not installed at {AXE_JS}: run  npm install --no-save --prefix .venv axe-core@4")
    return AXE_JS.read_text(encoding="utf-8") + "\n;axe.configure({allowedOrigins: ['<unsafe_all_origins>']});"


def _new_context(browser: Browser, width: int, height: int, *, color_scheme: Literal["light", "dark"],
                 axe: bool) -> BrowserContext:
    context = browser.new_context(viewport={"width": width, "height": height}, color_scheme=color_scheme)
    if axe:  # in every frame, as each document starts: one copy sent to the browser, not one per frame or page
        context.add_init_script(script=_axe_script())
    return context


def _watched_page(context: BrowserContext, *, offline: bool) -> tuple[Page, PageLog]:
    page = context.new_page()
    log = PageLog()
    page.on("console", lambda message: log.console_errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: log.console_errors.append(str(error)))

    def note(request: Request) -> None:
        log.requests.append(request.url)

    page.on("request", note)
    if offline:
        page.route(OFF_MACHINE, lambda route: route.abort())
    return page, log


@contextmanager
def open_page(browser: Browser, width: int, height: int = 900, *, offline: bool = True,
              color_scheme: Literal["light", "dark"] = "light") -> Iterator[tuple[Page, PageLog]]:
    """A page at ``width`` x ``height``; with ``offline`` every request off this machine is refused.
    ``color_scheme`` is what the page's prefers-color-scheme media queries see."""
    context = _new_context(browser, width, height, color_scheme=color_scheme, axe=False)
    try:
        yield _watched_page(context, offline=offline)
    finally:
        context.close()


class PageViews:
    """Pages a test module loads once and then looks at many times, at several widths and in light and dark.

    Chromium was half the suite's CPU, most of it spent making a fresh context, loading the page and compiling
    axe-core for every single check. Here the module's pages share one context (axe-core ready in every
    frame), and each address is loaded once; a later view resizes the viewport and switches
    prefers-color-scheme, which re-evaluates the CSS media queries just as loading the page at that size
    would, and scrolls back to the top. Each test still makes its own measurement or its own axe run on what
    it is shown. Only for pages without scripts of their own (the emails, the preview, the review page), whose
    layout depends on nothing but CSS.
    """

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self._context: BrowserContext | None = None
        self._open: dict[str, tuple[Page, PageLog]] = {}
        self._front: Page | None = None

    def view(self, url: str, width: int, height: int = 900, *,
             color_scheme: Literal["light", "dark"] = "light") -> tuple[Page, PageLog]:
        """The page at ``url`` as a ``width`` x ``height`` viewport in ``color_scheme`` shows it (loaded the
        first time; the log holds what the page said and fetched since it was loaded)."""
        if url not in self._open:
            if self._context is None:
                self._context = _new_context(self.browser, width, height, color_scheme=color_scheme, axe=True)
            page, log = _watched_page(self._context, offline=True)
            page.set_viewport_size({"width": width, "height": height})
            page.emulate_media(color_scheme=color_scheme)
            page.goto(url)
            self._open[url] = page, log
        page, log = self._open[url]
        if page is not self._front:  # a page behind another gets no animation frames: screenshots would wait
            page.bring_to_front()
            self._front = page
        page.set_viewport_size({"width": width, "height": height})
        page.emulate_media(color_scheme=color_scheme)
        page.evaluate("() => window.scrollTo(0, 0)")
        return page, log

    def violations(self, url: str, width: int, *, color_scheme: Literal["light", "dark"] = "light",
                   impacts: tuple[str, ...] = ("serious", "critical")) -> list[dict[str, Any]]:
        """axe-core's findings (see ``axe_violations``) for the page as that view shows it."""
        page, _log = self.view(url, width, color_scheme=color_scheme)
        return axe_violations(page, impacts)

    def close(self) -> None:
        if self._context is not None:
            self._context.close()
        self._context = self._front = None
        self._open.clear()


@pytest.fixture(scope="module")
def page_views(browser: Browser) -> Iterator[PageViews]:
    views = PageViews(browser)
    yield views
    views.close()


def axe_violations(page: Page, impacts: tuple[str, ...] = ("serious", "critical")) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.1 A and AA violations of ``impacts`` on the page, its iframes included."""
    for frame in page.frames:  # a page from open_page: add axe now, to every frame
        if not frame.evaluate("() => typeof axe !== 'undefined'"):
            frame.add_script_tag(content=_axe_script())
    result = page.evaluate(
        "async (tags) => await axe.run(document, {runOnly: {type: 'tag', values: tags}, iframes: true,"
        " resultTypes: ['violations']})", WCAG_TAGS)
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
