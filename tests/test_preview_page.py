"""build/preview.html: the inbox line, the findings, every version at phone and desktop width, the text
part and the links, from file:// with no server, no script and no network."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mailroom.preview.page import DESKTOP_WIDTH, PHONE_WIDTH
from mailroom.workflows.compose import ComposeResult
from tests.browser import PageViews, artifact, horizontal_overflow
from tests.projects import FIXTURE_NEWSLETTERS, compose_copy, make_project

SUBJECT = "Online safety: sextortion and the rise of AI"
PREHEADER = "A safeguarding alert about a growing online threat to young people, and where to get help."


def test_preview_shows_every_version_and_its_parts(composed_sample: ComposeResult) -> None:
    page = composed_sample.preview_path.read_text(encoding="utf-8")
    assert "<script" not in page.lower()
    assert f"<title>Preview: {SUBJECT}</title>" in page
    assert f'<span class="mail-pre"> – {PREHEADER}</span>' in page
    for audience, greeting in (("parents", "Dear Parent/Carer"), ("staff", "Dear Colleague")):
        version = composed_sample.build.versions[audience]
        name = audience.capitalize()
        assert f'title="{name} version on a phone, {PHONE_WIDTH} pixels wide" width="{PHONE_WIDTH}"' in page
        assert f'title="{audience.capitalize()} version on a desktop, {DESKTOP_WIDTH} pixels wide"' in page
        assert f"{greeting},\n" in page  # the text part, with the sample reader's greeting
        section = page.split(f'<section id="version-{audience}"')[1].split('<section id="version-')[0]
        assert section.count('<td class="url">') == len(version.links)
    assert "%%" not in page  # every token filled in with the sample reader's values
    assert "No problems found: no errors and no warnings." in page
    assert "Ready to send:</strong> the checks found nothing wrong." in page


def test_preview_lists_the_findings(tmp_path: Path) -> None:
    result = compose_copy(make_project(tmp_path, FIXTURE_NEWSLETTERS / "problems"))
    page = result.preview_path.read_text(encoding="utf-8")
    assert "<strong>Cannot be sent yet:</strong> 7 errors to fix, and 12 warnings to look at." in page
    assert len(re.findall(r'<li class="finding finding-error"', page)) == 7
    assert len(re.findall(r'<li class="finding finding-warning"', page)) == 12
    assert ("<p class=\"finding-where\">newsletter.md, line 20 (the link &#x27;the old website&#x27;) · parents</p>"
            in page)


def test_preview_loads_offline_with_no_console_errors(page_views: PageViews, composed_sample: ComposeResult) -> None:
    page, log = page_views.view(composed_sample.preview_path.as_uri(), 1280)
    page.wait_for_load_state("load")
    frames = [f for f in page.frames if f != page.main_frame]
    assert len(frames) == 6  # parents, staff and parents+staff, each at phone and desktop width
    for frame in frames:
        assert frame.locator(".school-name").inner_text() == "Oakfield Primary School"
        assert frame.locator("img[alt='Oakfield Primary School']").evaluate("img => img.naturalWidth") > 0
    page.screenshot(path=artifact("preview.png"), full_page=True)
    assert log.console_errors == []
    assert [url for url in log.requests if not url.startswith(("file:", "about:", "data:"))] == []


@pytest.mark.parametrize("width", [1280, 375])
def test_preview_page_passes_axe(page_views: PageViews, composed_sample: ComposeResult, width: int) -> None:
    """The page and every version in its frames (the phone frames are the emails at 375 px, or narrower)."""
    url = composed_sample.preview_path.as_uri()
    assert page_views.violations(url, width) == []
    if width == 375:
        page, _ = page_views.view(url, width)
        assert horizontal_overflow(page) <= 0  # on a phone the frames shrink to the screen
        page.screenshot(path=artifact("preview-375.png"), full_page=True)


def test_iframes_are_phone_and_desktop_wide(page_views: PageViews, composed_sample: ComposeResult) -> None:
    page, _ = page_views.view(composed_sample.preview_path.as_uri(), 1280)
    widths = page.evaluate("() => [...document.querySelectorAll('iframe')].map(f => f.clientWidth)")
    inner = [frame.evaluate("() => innerWidth") for frame in page.frames if frame != page.main_frame]
    assert horizontal_overflow(page) <= 0
    assert widths == [PHONE_WIDTH, DESKTOP_WIDTH] * 3
    assert inner == [PHONE_WIDTH, DESKTOP_WIDTH] * 3
