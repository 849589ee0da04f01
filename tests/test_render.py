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
from mailroom.compose.render import inline_css
from mailroom.errors import InputError
from mailroom.settings import load_settings
from mailroom.workflows.compose import compose_newsletter, renderer_for

TRACKING = TrackingParameters(source="school", medium="email", campaign="week-1", content="parents")


@pytest.fixture
def built(project: Path, sample_dir: Path) -> Path:
    compose_newsletter(load_settings(project, environ={}), sample_dir)
    return sample_dir / "build"


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
    html = (built / "parents.html").read_text()
    assert re.search(r'<html[^>]* lang="en-GB"', html) and re.search(r'<html[^>]* dir="ltr"', html)
    assert "<title>Online safety: sextortion and the rise of AI</title>" in html
    assert '<meta name="color-scheme" content="light">' in html
    images = re.findall(r"<img\b[^>]*>", html)
    assert len(images) == 2  # the logo and the Home Learning Hub banner
    assert all(re.search(r'alt="[^"]+"', img) for img in images)
    # the hidden preheader comes first in the body
    assert "A safeguarding alert about a growing online threat" in html.split("<body", 1)[1][:600]


def test_css_is_inlined_and_the_phone_layout_survives(built: Path) -> None:
    html = (built / "parents.html").read_text()
    h1 = re.search(r"<h1[^>]*>", html)
    assert h1 and "color:#1d3f72" in h1.group(0).replace(" ", "")
    # premailer must keep the media queries, and their !important, or phones get the desktop layout
    media = re.findall(r"@media[^{]*\{.*?\}\s*\}", html, re.S)
    assert any("min-width:480px" in m.replace(" ", "") and "!important" in m for m in media)
    assert "mj-column-per-22" in html  # the two-column header that stacks on a phone


def test_every_web_link_is_tracked_per_audience(built: Path) -> None:
    for audience in ("parents", "staff"):
        html = (built / f"{audience}.html").read_text()
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
            part = (built / f"{audience}.{suffix}").read_text()
            assert "%%greeting%%," in part and "%%unsubscribe_url%%" in part
    web = (built / "web.html").read_text() + (built / "web.txt").read_text()
    assert "%%" not in web
    assert "Dear Parent/Carer," in web
    assert "For education and safeguarding professionals" not in web  # staff-only advice stays private


def test_audience_only_blocks(built: Path) -> None:
    parents = (built / "parents.html").read_text()
    staff = (built / "staff.html").read_text()
    assert "For parents and carers" in parents and "For parents and carers" not in staff
    assert "For education and safeguarding professionals" in staff
    assert "For education and safeguarding professionals" not in parents


def test_text_part_has_the_same_words_and_the_link_addresses(built: Path) -> None:
    text = (built / "parents.txt").read_text()
    html = (built / "parents.html").read_text()
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
        assert (built / f"{audience}.html").stat().st_size < 90 * 1024


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
