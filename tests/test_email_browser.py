"""The composed emails in headless Chromium: no sideways scrolling on phones, the desktop layout at 600 px
(which proves premailer kept MJML's media queries), and no serious WCAG 2.1 A/AA problems (axe-core)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Literal

import pytest
from playwright.sync_api import Page

from mailroom.preview.page import sample_document
from mailroom.workflows.compose import ComposeResult
from tests.browser import PageViews, artifact, horizontal_overflow
from tests.projects import project_settings

AUDIENCES = ("parents", "staff", "parents+staff")  # the combined version: someone on both lists


def sample_file(result: ComposeResult, audience: str) -> Path:
    """The version with a sample reader's values in, next to the build's images so they load."""
    version = result.build.versions[audience]
    settings = project_settings(result.build.root)
    path = result.build.build_dir / f"sample-{audience}.html"  # beside images/, so they load
    path.write_text(sample_document(settings, audience, version.html()), encoding="utf-8")
    return path


def header_boxes(page: Page) -> tuple[dict[str, float], dict[str, float]]:
    logo = page.locator('img[src="images/school-logo.png"]').bounding_box()
    name = page.locator(".school-name a").bounding_box()
    assert logo is not None and name is not None
    return logo, name


@pytest.fixture(scope="module")
def email_urls(composed_sample: ComposeResult) -> dict[str, str]:
    """Each version's sample file, loaded once for the module by ``page_views`` and viewed at every size."""
    return {audience: sample_file(composed_sample, audience).as_uri() for audience in AUDIENCES}


@pytest.mark.parametrize("audience", AUDIENCES)
@pytest.mark.parametrize("width", [320, 375])
def test_no_horizontal_scroll_on_phones(page_views: PageViews, email_urls: dict[str, str], audience: str,
                                        width: int) -> None:
    page, log = page_views.view(email_urls[audience], width)
    assert horizontal_overflow(page) <= 0
    assert log.console_errors == []


@pytest.mark.parametrize("audience", AUDIENCES)
def test_header_is_side_by_side_at_600px_and_stacked_at_375px(page_views: PageViews, email_urls: dict[str, str],
                                                            audience: str) -> None:
    page, _ = page_views.view(email_urls[audience], 600)
    logo, name = header_boxes(page)
    page.screenshot(path=artifact(f"email-{audience}-600.png"), full_page=True)
    # Desktop: the name sits to the right of the logo, on the same band.
    assert name["x"] >= logo["x"] + logo["width"]
    assert name["y"] < logo["y"] + logo["height"] and logo["y"] < name["y"] + name["height"]
    page, _ = page_views.view(email_urls[audience], 375)
    logo, name = header_boxes(page)
    page.screenshot(path=artifact(f"email-{audience}-375.png"), full_page=True)
    # Phone: the columns stack, the name below the logo.
    assert name["y"] >= logo["y"] + logo["height"]


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("audience", AUDIENCES)
def test_axe_finds_no_serious_problems_in_the_email(page_views: PageViews, email_urls: dict[str, str],
                                                   audience: str, scheme: Literal["light", "dark"]) -> None:
    """In dark mode too: the dark palette (prefers-color-scheme) must keep every text readable."""
    assert page_views.violations(email_urls[audience], 600, color_scheme=scheme) == []


def test_dark_mode_changes_the_colours_and_keeps_the_logo_on_its_plate(page_views: PageViews,
                                                                       email_urls: dict[str, str]) -> None:
    """The dark palette is applied (dark page and card, light text), and the logo keeps its white plate."""
    colours = {}
    for scheme in ("light", "dark"):
        page, _ = page_views.view(email_urls["parents"], 600, color_scheme=scheme)
        colours[scheme] = page.evaluate("""() => {
            const bg = (el) => getComputedStyle(el).backgroundColor;
            const plate = document.querySelector('.logo-plate table');
            return {body: bg(document.body), card: bg(document.querySelector('.dm-card > table')),
                    text: getComputedStyle(document.querySelector('.content p')).color, plate: bg(plate)};
        }""")
        page.screenshot(path=artifact(f"email-parents-600-{scheme}.png"), full_page=True)
    light, dark = colours["light"], colours["dark"]
    assert light["card"] == "rgb(255, 255, 255)" and dark["card"] == "rgb(31, 41, 55)"
    assert dark["body"] == "rgb(17, 24, 39)" and dark["text"] == "rgb(229, 231, 235)"
    assert light["plate"] == dark["plate"] == "rgb(255, 255, 255)"


def test_axe_audit_catches_a_real_problem(page_views: PageViews, tmp_path: Path) -> None:
    """The audit itself works, the way the emails are audited: grey-on-grey text and an image with no alt are
    reported, in the page and in an iframe (srcdoc, as the preview shows the versions)."""
    bad = '<p style="color:#aaaaaa;background:#ffffff">Hard to read</p><img src="x.png">'
    page_file = tmp_path / "bad.html"
    page_file.write_text('<!doctype html><html lang="en"><head><title>Bad</title></head><body>' + bad +
                         f'<iframe title="A bad email" srcdoc="{html.escape(bad)}"></iframe></body></html>')
    found = page_views.violations(page_file.as_uri(), 600)
    assert {"color-contrast", "image-alt"} <= {v["id"] for v in found}
    in_frame = {v["id"] for v in found if any(len(target) == 2 for target in v["nodes"])}  # [iframe, element]
    assert {"color-contrast", "image-alt"} <= in_frame


@pytest.mark.parametrize("width", [320, 375])
def test_phone_numbers_stay_on_one_line_on_phones(page_views: PageViews, email_urls: dict[str, str],
                                                  width: int) -> None:
    """At phone widths "0808 800 5000" used to break across two lines; each number is one line box now."""
    page, _ = page_views.view(email_urls["parents"], width)
    lines = page.evaluate("""() => [...document.querySelectorAll('a[href^="tel:"]')].map(
        (a) => [a.textContent, new Set([...a.getClientRects()].map((r) => Math.round(r.top))).size])""")
    assert [text for text, _ in lines] == ["0800\u00a01111", "0808\u00a0800\u00a05000"]
    assert all(count == 1 for _, count in lines), lines
