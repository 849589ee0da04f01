"""Rendering one version: accessible structure, inlined CSS with the phone layout kept, tracked links, tokens."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from mjml import mjml2html

from mailroom.compose.content import load_newsletter
from mailroom.compose.links import TrackingParameters, check_link, strip_tracking, tag_url
from mailroom.compose.render import inline_css, keep_phone_numbers_whole
from mailroom.errors import InputError
from mailroom.settings import load_settings
from mailroom.workflows.compose import compose_newsletter, renderer_for
from tests.projects import make_project

TRACKING = TrackingParameters(source="school", medium="email", campaign="week-1", content="parents")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample's build, composed once per worker (tests/projects.py's cache): these tests only read it."""
    return make_project(tmp_path_factory.mktemp("render"), composed=True) / "build"


def test_tag_url_adds_tracking_and_keeps_the_authors_query_fragment_and_utm() -> None:
    tagged = tag_url("https://example.org/page?id=7&utm_campaign=Theirs#section-2", TRACKING)
    parts = urlsplit(tagged)
    assert parts.fragment == "section-2"
    assert parts.query.startswith("id=7&utm_campaign=Theirs&")
    assert parse_qs(parts.query) == {"id": ["7"], "utm_campaign": ["Theirs"], "utm_source": ["school"],
                                     "utm_medium": ["email"], "utm_content": ["parents"]}


@pytest.mark.parametrize("url", ["mailto:office@example.org", "tel:08001111", "%%unsubscribe_url%%", "#top"])
def test_tag_url_leaves_non_web_links_alone(url: str) -> None:
    assert tag_url(url, TRACKING) == url


def test_link_policy() -> None:
    assert check_link("https://example.org") is None
    assert check_link("mailto:office@example.org") is None
    for bad in ("javascript:alert(1)", "JavaScript:alert(1)", "data:text/html,hi", "vbscript:msgbox"):
        assert "not allowed in an email" in (check_link(bad) or "")
    assert check_link("ftp://example.org/file") == (
        "the link 'ftp://example.org/file' should start with https://, mailto: or tel:")
    assert strip_tracking("https://example.org/a?x=1&utm_source=s&utm_content=parents") == "https://example.org/a?x=1"


def test_document_is_accessible_by_construction(built: Path) -> None:
    html = (built / "versions" / "parents.tokens.html").read_text()
    assert re.search(r'<html[^>]* lang="en-GB"', html) and re.search(r'<html[^>]* dir="ltr"', html)
    assert "<title>Online safety: sextortion and the rise of AI</title>" in html
    assert html.startswith("<!DOCTYPE html>")  # standards mode, not quirks
    assert '<meta name="color-scheme" content="light dark">' in html
    assert '<meta name="supported-color-schemes" content="light dark">' in html
    images = re.findall(r"<img\b[^>]*>", html)
    assert len(images) == 2  # the logo and the Home Learning Hub banner
    assert all(re.search(r'alt="[^"]+"', img) for img in images)
    # the hidden preheader comes first in the body, hidden by size and display, not by a colour
    body = html.split("<body", 1)[1]
    preheader = re.search(r'<div class="preheader" style="([^"]*)">([^<]*)</div>', body)
    assert preheader and preheader.start() < 400
    assert preheader.group(2).startswith("A safeguarding alert about a growing online threat")
    assert "display:none" in preheader.group(1) and "color" not in preheader.group(1)


def test_images_keep_their_pixel_width_and_height_for_outlook(built: Path) -> None:
    """premailer must not copy the CSS width:100% over MJML's pixel widths (Outlook for Windows would draw
    the banner at its file's own width); the CSS height stays auto so phones keep the picture's shape."""
    for name in ("versions/parents.tokens.html", "web.html"):
        html = (built / name).read_text()
        images = {re.search(r'src="([^"]+)"', img).group(1): img for img in re.findall(r"<img\b[^>]*>", html)}
        logo, banner = images["images/school-logo.png"], images["images/home-learning-hub.png"]
        assert ' width="72"' in logo and ' height="72"' in logo  # the logo is square
        # the banner file is 1104 x 460: shown at 552 px wide, so 230 px high
        assert ' width="552"' in banner and ' height="230"' in banner
        for img in images.values():
            assert 'width="100%"' not in img and 'height="auto"' not in img
            style = re.search(r'style="([^"]*)"', img).group(1).replace(" ", "")
            assert "height:auto" in style and "width:100%" in style


def test_the_email_has_a_dark_palette_and_a_logo_plate(built: Path) -> None:
    html = (built / "versions" / "parents.tokens.html").read_text()
    dark = re.search(r"@media \(prefers-color-scheme: dark\) \{(.*?)\}\s*\}", html, re.S)
    assert dark and ":root {color-scheme:light dark" in html
    for selector in ("body, .dm-body", ".dm-card", ".content a", ".footer a"):
        assert selector in dark.group(1)
    assert re.search(r'class="[^"]*\bdm-card\b', html) and re.search(r'class="[^"]*\bdm-body\b', html)
    # the logo sits on a white plate, so the dark blue shield stays visible on any background
    plate = re.search(r'class="logo-plate"[^>]*>\s*<table[^>]*style="([^"]*)"', html)
    assert plate and re.search(r"background-color:#fff(fff)?;", plate.group(1).replace(" ", ""))


def test_phone_numbers_do_not_break_across_lines(built: Path) -> None:
    html = (built / "versions" / "parents.tokens.html").read_text()
    for number in ("0800\u00a01111", "0808\u00a0800\u00a05000"):  # non-breaking spaces, and nowrap for clients
        assert f'<span style="white-space:nowrap">{number}</span>' in html


@pytest.mark.parametrize(("fragment", "expected"), [
    ("<p>Call 01632 960123 today</p>", '<p>Call <span style="white-space:nowrap">01632\u00a0960123</span> today</p>'),
    ("<p>+44 20 7946 0000.</p>", '<p><span style="white-space:nowrap">+44\u00a020\u00a07946\u00a00000</span>.</p>'),
    ("<p>01632-960123</p>", '<p><span style="white-space:nowrap">01632-960123</span></p>'),
    ('<a href="https://example.org/01632960123">in a link address</a>',
     '<a href="https://example.org/01632960123">in a link address</a>'),
    ("<p>Call 999 or 101; in 2024 and 2025</p>", "<p>Call 999 or 101; in 2024 and 2025</p>"),
])
def test_keep_phone_numbers_whole(fragment: str, expected: str) -> None:
    assert keep_phone_numbers_whole(fragment) == expected


def test_the_web_copy_is_a_proper_page(built: Path) -> None:
    web = (built / "web.html").read_text()
    assert web.startswith("<!DOCTYPE html>")
    assert "<title>Online safety: sextortion and the rise of AI – Oakfield Primary School</title>" in web
    assert re.search(r'<meta name="description" content="A safeguarding alert about a growing online threat', web)


def test_css_is_inlined_and_the_phone_layout_survives(built: Path) -> None:
    html = (built / "versions" / "parents.tokens.html").read_text()
    h1 = re.search(r"<h1[^>]*>", html)
    assert h1 and "color:#1d3f72" in h1.group(0).replace(" ", "")
    # premailer must keep the media queries, and their !important, or phones get the desktop layout
    media = re.findall(r"@media[^{]*\{.*?\}\s*\}", html, re.S)
    assert any("min-width:480px" in m.replace(" ", "") and "!important" in m for m in media)
    assert "mj-column-per-22" in html  # the two-column header that stacks on a phone


def test_every_web_link_is_tracked_per_audience(built: Path) -> None:
    for audience in ("parents", "staff"):
        html = (built / "versions" / f"{audience}.tokens.html").read_text()
        hrefs = [h.replace("&amp;", "&") for h in re.findall(r'href="([^"]+)"', html)]
        web_links = [h for h in hrefs if h.startswith("http")]
        assert len(web_links) >= 7
        for href in web_links:
            query = parse_qs(urlsplit(href).query)
            assert query["utm_source"] == ["oakfield-newsletter"], href
            assert query["utm_content"] == [audience], href
            assert "utm_campaign" in query and "utm_medium" in query
        # the campaign is the front matter's, except where the author set their own utm_campaign
        campaigns = {parse_qs(urlsplit(h).query)["utm_campaign"][0] for h in web_links}
        assert campaigns == {"online-safety-2024-11", "Newsletter"}
        assert "mailto:office@oakfield.example.org" in hrefs and "tel:08001111" in hrefs
        assert re.search(r'<a href="%%unsubscribe_url%%" clicktracking="off"', html)


def test_tokens_are_left_for_the_send_stage_but_not_in_the_web_copy(built: Path) -> None:
    for audience in ("parents", "staff"):
        for suffix in ("html", "txt"):
            part = (built / "versions" / f"{audience}.tokens.{suffix}").read_text()
            assert "%%greeting%%," in part and "%%unsubscribe_url%%" in part
    web = (built / "web.html").read_text() + (built / "web.txt").read_text()
    assert "%%" not in web
    assert "Dear Parent/Carer," in web
    assert "For education and safeguarding professionals" not in web  # staff-only advice stays private


def test_audience_only_blocks(built: Path) -> None:
    parents = (built / "versions" / "parents.tokens.html").read_text()
    staff = (built / "versions" / "staff.tokens.html").read_text()
    assert "For parents and carers" in parents and "For parents and carers" not in staff
    assert "For education and safeguarding professionals" in staff
    assert "For education and safeguarding professionals" not in parents


def test_text_part_has_the_same_words_and_the_link_addresses(built: Path) -> None:
    text = (built / "versions" / "parents.tokens.txt").read_text()
    html = (built / "versions" / "parents.tokens.html").read_text().replace("\u00a0", " ")
    for words in ("What is ‘sextortion’?", "Don’t pay and don’t reply", "0808 800 5000", "Report Remove"):
        assert words in text
        assert words in html
    tracked = [h.replace("&amp;", "&") for h in re.findall(r'href="(https://[^"]+)"', html)]
    body_links = [h for h in tracked if "oakfield.example.org" not in h]
    for href in body_links:
        assert href in text.replace("\n", ""), href
    assert "<" not in text and "&amp;" not in text


def test_each_version_is_well_under_gmails_clipping_size(built: Path) -> None:
    for audience in ("parents", "staff"):
        assert (built / "versions" / f"{audience}.tokens.html").stat().st_size < 90 * 1024


def test_template_syntax_error_names_template_and_line(project: Path, sample_dir: Path) -> None:
    partial = project / "templates" / "blocks" / "button.mjml.j2"
    lines = partial.read_text().splitlines()
    lines[2] = lines[2].replace("{{ block.url }}", "{{ block.url }")
    partial.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as caught:
        compose_newsletter(load_settings(project, environ={}), sample_dir)
    assert caught.value.path == partial and caught.value.line == 3
    assert caught.value.message.startswith("template error: unexpected '}'")


def test_undefined_template_variable_names_template_and_line(project: Path, sample_dir: Path) -> None:
    footer = project / "templates" / "footer.mjml.j2"
    footer.write_text(footer.read_text().replace("{{ school.address }}", "{{ school.postcode }}"))
    with pytest.raises(InputError) as caught:
        compose_newsletter(load_settings(project, environ={}), sample_dir)
    assert caught.value.path == footer and caught.value.line == 4
    assert "'postcode'" in caught.value.message


def test_a_bare_host_gets_a_path_before_its_query() -> None:
    assert tag_url("https://example.org", TRACKING).startswith("https://example.org/?utm_source=school")


def test_the_mjml_source_of_a_version_is_what_gets_compiled(project: Path, sample_dir: Path) -> None:
    """The benchmark feeds this source to the npm mjml tool, so it must be the audience's own MJML."""
    settings = load_settings(project, environ={})
    newsletter = load_newsletter(sample_dir, settings.list_names())
    source = renderer_for(settings, newsletter).mjml(newsletter, "parents")
    assert source.lstrip().startswith("<mjml") and "%%greeting%%" in source
    assert "For parents and carers" in source
    assert "For education and safeguarding professionals" not in source
    assert "For parents and carers" in mjml2html(source, disable_comments=True)


def _handler_count() -> int:
    loggers = [logging.getLogger(), *(logger for logger in logging.Logger.manager.loggerDict.values()
                                      if isinstance(logger, logging.Logger))]
    return sum(len(logger.handlers) for logger in loggers)


def test_inline_css_adds_no_logging_handler_per_call() -> None:
    """The live preview server inlines CSS on every save: handlers must not pile up across calls."""
    html = ("<html><head><style>p { color: #123456; mso-line-height-rule: exactly }</style></head>"
            "<body><p>Hi</p></body></html>")
    assert 'style="color:#123456' in inline_css(html)
    after_first = _handler_count()
    for _ in range(5):
        inline_css(html)
    assert _handler_count() == after_first
