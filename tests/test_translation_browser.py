"""Translated versions in headless Chromium: the Arabic version reads right to left and mirrors its layout;
the review page and the translated email have no serious WCAG problems (axe-core); html-validate finds
nothing in the Arabic and Polish versions beyond the email idioms the English is allowed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mailroom.preview.page import sample_document
from mailroom.settings import load_settings
from mailroom.workflows.compose import ComposeResult, compose_newsletter
from tests.browser import PageViews, artifact, horizontal_overflow
from tests.projects import make_project
from tests.translation_standins import DeepLStandIn


@pytest.fixture(scope="module")
def translated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeResult]:
    folder = make_project(tmp_path_factory.mktemp("translated") / "project")
    root = folder.parent.parent
    toml = root / "school.toml"
    toml.write_text(toml.read_text(encoding="utf-8") + '\n[translation]\nengine = "deepl"\nkeep = ["CEOP"]\n'
                    '\n', encoding="utf-8")
    with DeepLStandIn() as deepl:
        env = {"DEEPL_AUTH_KEY": deepl.api_key, "DEEPL_SERVER_URL": deepl.url,
               "MAILROOM_TRANSLATION_CACHE": str(root / "t.sqlite3")}
        yield compose_newsletter(load_settings(root, environ=env), folder, languages=["ar", "pl"])


def _file(result: ComposeResult, name: str) -> str:
    """A page of the build: review.html, or a version ("parents.ar.html") with a sample reader's values in."""
    slug = name.removesuffix(".html")
    if slug not in result.build.versions:
        return (result.build.build_dir / name).as_uri()
    settings = load_settings(result.build.root, environ={})
    path = result.build.build_dir / f"sample-{slug}.html"  # beside images/, so they load
    document = sample_document(settings, slug.partition(".")[0], result.build.versions[slug].html())
    path.write_text(document, encoding="utf-8")
    return path.as_uri()


def test_the_arabic_version_reads_right_to_left_on_a_phone(page_views: PageViews, translated: ComposeResult) -> None:
    page, log = page_views.view(_file(translated, "parents.ar.html"), 375)
    page.screenshot(path=artifact("email-parents-ar-375.png"), full_page=True)
    assert horizontal_overflow(page) <= 0 and log.console_errors == []
    paragraph = page.locator(".content p").nth(2)
    style = paragraph.evaluate("p => [getComputedStyle(p).direction, getComputedStyle(p).textAlign]")
    assert style[0] == "rtl" and style[1] in ("right", "start")
    # A short line (the greeting) hugs the right edge, not the left.
    greeting = page.locator(".content p", has_text="[AR]").nth(1).evaluate(
        "p => { const r = document.createRange(); r.selectNodeContents(p); const b = r.getBoundingClientRect();"
        " return [b.left, b.right, p.getBoundingClientRect().left, p.getBoundingClientRect().right]; }")
    text_left, text_right, box_left, box_right = greeting
    assert box_right - text_right < 4 and text_left - box_left > 20
    # Bullets sit on the right of list items.
    item = page.locator(".content li").first.evaluate(
        "li => [getComputedStyle(li.parentElement).paddingRight, getComputedStyle(li.parentElement).paddingLeft]")
    assert item == ["24px", "0px"]


def test_the_arabic_version_mirrors_the_header_on_a_desktop(page_views: PageViews, translated: ComposeResult) -> None:
    page, _ = page_views.view(_file(translated, "parents.ar.html"), 600)
    logo = page.locator("img").first.bounding_box()
    name = page.locator(".school-name a").bounding_box()
    assert logo is not None and name is not None
    assert logo["x"] > name["x"] + name["width"] - 1  # the logo on the right, the name to its left
    english, _ = page_views.view(_file(translated, "parents.html"), 600)
    logo_en = english.locator("img").first.bounding_box()
    assert logo_en is not None and logo_en["x"] < logo["x"]


@pytest.mark.parametrize("name", ["parents.ar.html", "parents.pl.html", "review.html"])
def test_axe_finds_no_serious_problems(page_views: PageViews, translated: ComposeResult, name: str) -> None:
    assert page_views.violations(_file(translated, name), 1000) == []


def test_the_review_page_puts_each_language_beside_the_english(page_views: PageViews, translated: ComposeResult,
                                                                tmp_path: Path) -> None:
    page, log = page_views.view(_file(translated, "review.html"), 1280)
    assert log.console_errors == []
    arabic = page.locator("#lang-ar table.side-by-side")
    rows = arabic.locator("tbody tr")
    assert rows.count() == 2 + len(translated.build.versions["parents"].links) * 0 + len(
        [b for b in _blocks(translated)])
    cell = rows.nth(0).locator("td").nth(1)
    assert cell.get_attribute("lang") == "ar" and cell.get_attribute("dir") == "rtl"
    assert cell.inner_text().startswith("[AR]")
    assert rows.nth(0).locator("td").nth(0).inner_text() == translated.build.subject
    page, _ = page_views.view(_file(translated, "review.html"), 375)
    assert horizontal_overflow(page) <= 0


def _blocks(result: ComposeResult) -> list[object]:
    from mailroom.compose.content import load_newsletter

    return list(load_newsletter(result.build.newsletter_dir, ["parents", "staff"]).blocks)


def test_html_validate_finds_nothing_new_in_the_translated_versions(translated: ComposeResult) -> None:
    import json
    import shutil
    import subprocess

    from tests.test_email_validators import CAN_I_EMAIL, NODE_MODULES, VALIDATORS, _html_allowed

    node = shutil.which("node")
    if node is None or not (NODE_MODULES / "html-validate").is_dir():
        pytest.fail("node and html-validate are needed: run scripts/test")
    files = [Path(_file(translated, f"{slug}.html").removeprefix("file://")) for slug in ("parents.ar", "staff.pl")]
    run = subprocess.run([node, str(VALIDATORS / "check_email_html.cjs"), str(NODE_MODULES),
                          ",".join(CAN_I_EMAIL["clients"]), *map(str, files)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    for path in files:
        others = [f"{f['rule']}: {f['message']}" for f in report[str(path)]["html_validate"] if not _html_allowed(f)]
        assert others == [], path.name
