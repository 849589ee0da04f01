"""The composed emails in headless Chromium: no sideways scrolling on phones, the desktop layout at 600 px
(which proves premailer kept MJML's media queries), and no serious WCAG 2.1 A/AA problems (axe-core)."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from mailroom.preview.page import sample_document
from mailroom.workflows.compose import ComposeResult
from tests.browser import artifact, axe_violations, horizontal_overflow, open_page
from tests.projects import project_settings

AUDIENCES = ("parents", "staff")


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


@pytest.mark.parametrize("audience", AUDIENCES)
@pytest.mark.parametrize("width", [320, 375])
def test_no_horizontal_scroll_on_phones(browser: Browser, composed_sample: ComposeResult, audience: str,
                                        width: int) -> None:
    with open_page(browser, width) as (page, log):
        page.goto(sample_file(composed_sample, audience).as_uri())
        assert horizontal_overflow(page) <= 0
        assert log.console_errors == []


@pytest.mark.parametrize("audience", AUDIENCES)
def test_header_is_side_by_side_at_600px_and_stacked_at_375px(browser: Browser, composed_sample: ComposeResult,
                                                            audience: str) -> None:
    url = sample_file(composed_sample, audience).as_uri()
    with open_page(browser, 600) as (page, _):
        page.goto(url)
        logo, name = header_boxes(page)
        page.screenshot(path=artifact(f"email-{audience}-600.png"), full_page=True)
    # Desktop: the name sits to the right of the logo, on the same band.
    assert name["x"] >= logo["x"] + logo["width"]
    assert name["y"] < logo["y"] + logo["height"] and logo["y"] < name["y"] + name["height"]
    with open_page(browser, 375) as (page, _):
        page.goto(url)
        logo, name = header_boxes(page)
        page.screenshot(path=artifact(f"email-{audience}-375.png"), full_page=True)
    # Phone: the columns stack, the name below the logo.
    assert name["y"] >= logo["y"] + logo["height"]


@pytest.mark.parametrize("audience", AUDIENCES)
def test_axe_finds_no_serious_problems_in_the_email(browser: Browser, composed_sample: ComposeResult,
                                                   audience: str) -> None:
    with open_page(browser, 600) as (page, _):
        page.goto(sample_file(composed_sample, audience).as_uri())
        assert axe_violations(page) == []


def test_axe_audit_catches_a_real_problem(browser: Browser, tmp_path: Path) -> None:
    """The audit itself works: grey-on-grey text and an image with no alt are reported."""
    page_file = tmp_path / "bad.html"
    page_file.write_text('<!doctype html><html lang="en"><head><title>Bad</title></head><body>'
                         '<p style="color:#aaaaaa;background:#ffffff">Hard to read</p><img src="x.png"></body></html>')
    with open_page(browser, 600) as (page, _):
        page.goto(page_file.as_uri())
        found = {v["id"] for v in axe_violations(page)}
    assert {"color-contrast", "image-alt"} <= found
