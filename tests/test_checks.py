"""Preflight checks: the fixture newsletter with one of each problem, and crafted HTML for the rest."""

from __future__ import annotations

from pathlib import Path

import lxml.html
import pytest

from mailroom.checks.rules import (
    ERROR,
    WARNING,
    Finding,
    check_build,
    check_envelope,
    check_version,
    errors_for_build,
    merge_audiences,
    newsletter_for_build,
)
from mailroom.checks.style import contrast_ratio, parse_color
from mailroom.compose.build import load_build
from mailroom.workflows.compose import ComposeResult
from tests.pictures import write_heavy_photo_png
from tests.projects import FIXTURE_NEWSLETTERS, compose_copy, make_project

FIELDS = "%%greeting%%, %%first_name%%, %%last_name%%, %%unsubscribe_url%%, %%recipient_id%%"

# (severity, code, newsletter.md line or None, message): everything the fixture should produce.
EXPECTED_PROBLEMS = [
    (WARNING, "subject-long", 2, "the subject is 93 characters long; most inboxes show only about the first 60 "
                                 "(phones fewer), so put what matters first"),
    (WARNING, "heading-skip", 10, "the heading 'Trips and visits' jumps from level 1 to level 3; screen-reader users "
                                  "find their way by heading levels, so make it level 2 (## in newsletter.md)"),
    (WARNING, "placeholder", 12, "placeholder text 'TODO' is still in the newsletter"),
    (ERROR, "leftover", 14, "'{{ first_name }}' is left in the email: template code that was never filled in"),
    (ERROR, "leftover", 14, f"'%%class_code%%' is not a field mailroom fills in (the fields are {FIELDS})"),
    (WARNING, "vague-link-text", 16, "the link text 'click here' does not say where it goes; screen-reader users "
                                     "hear links on their own, so write what the reader will find, like 'Read the "
                                     "online-safety guide'"),
    (WARNING, "vague-link-text", 18, "the link text is a bare web address (https://www.example.org/term-dates); write "
                                     "what the reader will find there instead"),
    (WARNING, "insecure-link", 20, "the link to http://old.example.org/photos starts with http://; use https:// so "
                                   "the address is not flagged as unsafe"),
    (WARNING, "image-too-big", 22, "the image 'big.jpg' is 1.2 MB even made to fit email; pictures over 1 MB are "
                                   "slow to load on phones, so crop it or choose a simpler one"),
    # From the fixture's templates, so no line of newsletter.md to point at:
    (ERROR, "dangerous-link", None, "a javascript: link is not allowed in an email (it could run code or hide "
                                    "content): 'javascript:alert('hello')'"),
    (ERROR, "link-no-text", None, "the link to https://www.example.org/empty has no text, so nobody can tell where "
                                  "it goes"),
    (ERROR, "image-no-alt", None, "the image 'badge.png' has no alt text; screen readers, and email programs that "
                                  "hide pictures, cannot say what it shows"),
    (ERROR, "image-missing", None, "the image 'images/missing-badge.png' is not in the build's images folder, so it "
                                   "would show as a broken picture"),
    (WARNING, "image-no-width", None, "the image 'school-logo.png' has no width, so Outlook shows it at its full "
                                      "size"),
    (WARNING, "mostly-images", None, "the email has 6 pictures and only 73 words of text; spam filters distrust "
                                     "emails that are mostly pictures (aim for at least 50 words per picture)"),
    (WARNING, "low-contrast", None, "the text 'Oakfield Primary School, Oakfield Lane,…' is hard to read: #9ca3af "
                                    "on #f3f4f6 has a contrast of 2.3:1, and at least 4.5:1 is needed"),
    (WARNING, "small-text", None, "the text 'Oakfield Primary School, Oakfield Lane,…' is 12 px; use at least 14 px "
                                  "so it can be read on a phone"),
    (ERROR, "no-unsubscribe", None, "the email has no unsubscribe link; the law requires one in every newsletter, "
                                    "and mail services bin emails without one"),
    (WARNING, "no-preheader", None, "the email does not carry the preheader (the line inboxes show after the "
                                    "subject); the templates should have the hidden preheader (see "
                                    "templates/base.mjml.j2)"),
    (WARNING, "parts-differ", None, "the plain-text and HTML parts say different things (only 12% of their words are "
                                    "shared; only in the HTML: autumn, term, news, trips, visits, year; only in the "
                                    "text: please, html, version, this, email); spam filters notice this"),
]


def key(finding: Finding) -> tuple[str, str, int | None, str]:
    return (finding.severity, finding.code, finding.source_line, finding.message)


@pytest.fixture(scope="module")
def problems(tmp_path_factory: pytest.TempPathFactory) -> ComposeResult:
    folder = make_project(tmp_path_factory.mktemp("problems"), FIXTURE_NEWSLETTERS / "problems")
    # Kept small in git; here a photo too detailed to fit in 1 MB even at 1104 px wide.
    write_heavy_photo_png(folder / "images" / "big.png")
    return compose_copy(folder)


def test_fixture_yields_exactly_the_expected_findings(problems: ComposeResult) -> None:
    assert sorted(map(key, problems.findings), key=str) == sorted(EXPECTED_PROBLEMS, key=str)


def test_checking_the_build_again_gives_the_same_findings(problems: ComposeResult) -> None:
    build = problems.build
    findings = check_build(build, newsletter_for_build(build))
    assert sorted(map(key, findings), key=str) == sorted(EXPECTED_PROBLEMS, key=str)
    assert {f.audience for f in findings} == {None, "parents"}


def test_errors_for_build_is_what_send_refuses_on(problems: ComposeResult) -> None:
    errors = errors_for_build(load_build(problems.build.newsletter_dir, problems.build.root))
    assert sorted(map(key, errors), key=str) == sorted((e for e in EXPECTED_PROBLEMS if e[0] == ERROR), key=str)


def test_findings_name_what_is_on_the_line(problems: ComposeResult) -> None:
    blocks = {f.code: f.block for f in problems.findings if f.source_line}
    assert blocks["heading-skip"] == "the heading 'Trips and visits'"
    assert blocks["insecure-link"] == "the link 'the old website'"
    assert blocks["image-too-big"] == "the image 'Children on the school field on sports d…'"
    assert blocks["placeholder"] == "the paragraph 'Year 4 visit the museum on Friday. TODO:…'"
    finding = next(f for f in problems.findings if f.code == "insecure-link")
    assert str(finding) == f"newsletter.md, line 20: {finding.message}"


def test_the_sample_has_no_findings(composed_sample: ComposeResult) -> None:
    assert composed_sample.findings == ()
    assert errors_for_build(composed_sample.build) == []


def test_line_numbers_survive_without_the_newsletter(problems: ComposeResult) -> None:
    """Without the source (say newsletter.md no longer parses) findings still come, just without lines."""
    findings = check_build(problems.build, None)
    assert {f.code for f in findings} == {e[1] for e in EXPECTED_PROBLEMS}
    assert all(f.source_line is None for f in findings)


# --- crafted HTML, for what the fixture cannot hold at the same time ------------------------------

UNSUB = '<p><a href="%%unsubscribe_url%%">Unsubscribe</a></p>'


PARAGRAPH = ("<p>Our autumn fair raised money for the library, and every class helped to run a stall. Thank you "
             "to the families who baked, sold tickets and tidied up afterwards.</p>")


def email(body: str, *, head: str = "") -> str:
    """A small, correct email around ``body`` (a paragraph of ordinary text keeps the word counts sensible)."""
    return (f'<html lang="en"><head><title>t</title>{head}</head><body>'
            f'<div style="display:none;font-size:1px">A preheader</div><h1>Hello</h1>{PARAGRAPH}{body}{UNSUB}'
            '</body></html>')


def text_for(html: str) -> str:
    """A plain-text part that says what the HTML says (its visible words), with the unsubscribe link."""
    body = lxml.html.document_fromstring(html).body
    for hidden in body.xpath('//*[contains(@style, "display:none")]'):
        hidden.drop_tree()
    words = " ".join([*body.itertext(), *(img.get("alt", "") for img in body.iter("img"))])
    return f"{words}\n\nUnsubscribe: %%unsubscribe_url%%\n"


def findings_of(html: str, text: str | None = None) -> list[Finding]:
    return check_version(html, text_for(html) if text is None else text, audience="parents",
                         preheader="A preheader")


def codes(html: str, text: str | None = None) -> list[str]:
    return [f.code for f in findings_of(html, text)]


def test_a_plain_email_has_no_findings() -> None:
    assert findings_of(email("<p>Hello there</p>")) == []


def test_size_limits_gmail_clips_at_102_kb() -> None:
    filler = "<!--" + "x" * (91 * 1024) + "-->"
    big = findings_of(email("<p>Hello there</p>" + filler))
    assert [(f.severity, f.code) for f in big] == [(WARNING, "html-large")]
    assert big[0].message == "the email is 91 KB; Gmail cuts off emails over 102 KB, so there is little room left"
    clipped = findings_of(email("<p>Hello there</p>" + filler * 2))
    assert [(f.severity, f.code) for f in clipped] == [(ERROR, "html-too-big")]
    assert clipped[0].message == ("the email is 182 KB; Gmail cuts off emails over 102 KB, hiding the end of the "
                                  "newsletter and its unsubscribe link. Shorten it or move some of it to the school "
                                  "website")


@pytest.mark.parametrize("href", ["data:text/html;base64,PHNjcmlwdD4=", "VBScript:msgbox(1)", "java\tscript:x()",
                                  " javascript:x()", "&#106;avascript:x()"])
def test_dangerous_links_in_any_disguise(href: str) -> None:
    assert codes(email(f'<p>Hello there <a href="{href}">the form</a></p>')) == ["dangerous-link"]


def test_links_with_no_text_unless_an_image_or_label_names_them() -> None:
    assert codes(email('<p>Hello there <a href="https://example.org/a"> </a></p>')) == ["link-no-text"]
    named = ('<p>Hello there <a href="https://example.org/a"><img src="https://example.org/i.png" alt="The fair" '
             'width="40"></a> <a href="https://example.org/b" aria-label="The fete"></a></p>')
    assert codes(email(named)) == []


@pytest.mark.parametrize("text", ["here", "Click here", "Read more.", "https://example.org/a?b=c",
                                  "www.example.org/term-dates"])
def test_vague_link_texts(text: str) -> None:
    assert codes(email(f'<p>Hello there <a href="https://example.org/a">{text}</a></p>')) == ["vague-link-text"]


def test_a_website_name_is_fine_link_text() -> None:
    assert codes(email('<p>Hello there <a href="https://www.example.org">www.example.org</a></p>')) == []


def test_decorative_images_need_no_alt() -> None:
    html = email('<p>Hello there</p><img src="https://example.org/line.png" alt="" role="presentation" width="9">')
    assert codes(html) == []
    blank = email('<p>Hello there</p><img src="https://example.org/x.png" alt="  " width="9">')
    assert codes(blank) == ["image-no-alt"]


def test_local_images_must_be_in_the_build(tmp_path: Path) -> None:
    (tmp_path / "here.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    html = email('<p>Hello there</p><img src="images/here.png" alt="Here" width="9">'
                 '<img src="images/gone.png" alt="Gone" width="9"><img src="images/../../secret.png" alt="Out" '
                 'width="9"><img src="cid:logo" alt="Logo" width="9">')
    found = check_version(html, text_for(html), audience="parents", preheader="A preheader", image_dir=tmp_path)
    assert [f.message for f in found if f.code == "image-missing"] == [
        "the image 'images/gone.png' is not in the build's images folder, so it would show as a broken picture",
        "the image 'images/../../secret.png' is not in the build's images folder, so it would show as a broken "
        "picture"]


@pytest.mark.parametrize("leftover", ["{{ name }}", "{% if x %}", "{# note #}", "%%first%%", "%%%%"])
def test_template_leftovers(leftover: str) -> None:
    assert codes(email(f"<p>Hello there {leftover}</p>")) == ["leftover"]


def test_leftovers_in_the_text_part_and_in_link_addresses() -> None:
    html = email("<p>Hello there</p>")
    assert codes(html, text_for(html) + "{{ oops }}\n") == ["leftover"]
    assert codes(email('<p>Hello there <a href="https://example.org/?u=%%user%%">the trip</a></p>')) == ["leftover"]


def test_leftovers_in_the_title_are_found() -> None:
    html = ('<html><head><title>{{ subject }}</title></head><body><h1>Hi</h1><p>Hello there</p>'
            '<p><a href="%%unsubscribe_url%%">Unsubscribe</a></p></body></html>')
    found = check_version(html, "Hi\n\nHello there\n\nUnsubscribe: %%unsubscribe_url%%", audience="staff")
    assert [f.message for f in found] == [
        "'{{ subject }}' is left in the email: template code that was never filled in"]

def test_the_recipient_tokens_are_not_leftovers() -> None:
    assert codes(email("<p>%%greeting%%, hello there %%first_name%%</p>")) == []


def test_unsubscribe_needed_in_both_parts() -> None:
    no_link = email("<p>Hello there</p>").replace(UNSUB, "")
    assert codes(no_link) == ["no-unsubscribe"]
    html = email("<p>Hello there</p>")
    text_only = findings_of(html, text_for(html).replace("Unsubscribe: %%unsubscribe_url%%", ""))
    assert [f.message for f in text_only] == [
        "the plain-text part has no unsubscribe link; people whose email shows only text could not stop it"]


def test_subject_and_preheader() -> None:
    assert [(f.severity, f.code, f.message) for f in check_envelope("", "Pre")] == [
        (ERROR, "no-subject", "the newsletter has no subject; inboxes would show it as '(no subject)'")]
    # The README advises keeping the subject under about 60 characters; the check says so at 61.
    assert [f.code for f in check_envelope("x" * 61, "")] == ["subject-long", "no-preheader"]
    assert check_envelope("x" * 60, "Pre") == []


def test_contrast_resolves_colours_from_the_nearest_background() -> None:
    html = email('<table bgcolor="#ffffff"><tr><td style="background:#1d3f72 url(x.png)">'
                 '<div><p style="color:#fff">Light on dark is fine</p><p style="color:rgb(40, 40, 40)">Dark on dark '
                 'is not</p></div></td></tr></table><p style="color:#777">Grey on white</p>'
                 '<div style="background-color:rgba(0,0,0,0)"><p style="color:#595959">Through a clear layer</p></div>')
    found = [f.message for f in findings_of(html) if f.code == "low-contrast"]
    assert found == [
        "the text 'Dark on dark is not' is hard to read: #282828 on #1d3f72 has a contrast of 1.4:1, and at least "
        "4.5:1 is needed",
        "the text 'Grey on white' is hard to read: #777777 on #ffffff has a contrast of 4.5:1, and at least 4.5:1 is "
        "needed"]


def test_text_styled_alike_in_one_place_is_one_finding() -> None:
    html = email('<div style="color:#999;font-size:12px"><p>First grey line</p><p>Second grey line</p>'
                 '<p>Third grey line</p></div>')
    assert [f.message for f in findings_of(html)] == [
        "the text 'First grey line' (and 2 more like it) is hard to read: #999999 on #ffffff has a contrast of "
        "2.8:1, and at least 4.5:1 is needed",
        "the text 'First grey line' (and 2 more like it) is 12 px; use at least 14 px so it can be read on a phone"]

def test_large_text_needs_only_3_to_1() -> None:
    html = email('<p style="color:#888;font-size:24px">Big grey words</p>'
                 '<p style="color:#888;font-size:19px;font-weight:bold">Bold grey words</p>'
                 '<p style="color:#888;font-size:19px">Plain grey words</p>')
    assert [f.message.split(" is hard")[0] for f in findings_of(html)] == ["the text 'Plain grey words'"]


def test_small_text_ignores_hidden_text_and_zero_size_wrappers() -> None:
    html = email('<div style="font-size:0"><div style="font-size:16px">Inside a wrapper</div></div>'
                 '<p style="font-size:10pt">Ten point</p><div style="display:none"><p style="font-size:8px">hidden</p>'
                 '</div><p style="font-size:13px">Almost</p><p style="font-size:0.8em">Relative</p>')
    found = [f.message for f in findings_of(html) if f.code == "small-text"]
    assert found == [
        "the text 'Ten point' is 13.3333 px; use at least 14 px so it can be read on a phone",
        "the text 'Almost' is 13 px; use at least 14 px so it can be read on a phone",
        "the text 'Relative' is 12.8 px; use at least 14 px so it can be read on a phone"]


def test_headings() -> None:
    assert codes(email("<h2>Next</h2><h4>Deeper</h4><p>Hello there</p>")) == ["heading-skip"]
    no_h1 = email("<p>Hello there</p>").replace("<h1>Hello</h1>", "<h2>Hello</h2>")
    assert [f.message for f in findings_of(no_h1)] == [
        "the email has no main heading; start the newsletter with a '# ' heading"]


@pytest.mark.parametrize("words", ["Lorem ipsum dolor", "Date TBC", "Call XXX for tickets", "FIXME later"])
def test_placeholders(words: str) -> None:
    assert codes(email(f"<p>Hello there. {words}</p>")) == ["placeholder"]


def test_todo_as_an_ordinary_word_is_not_a_placeholder() -> None:
    assert codes(email("<p>Hello there, a todo list</p>")) == []


def test_parts_that_say_different_things() -> None:
    html = email("<p>The summer fair is on Saturday with cakes, games and a raffle for everyone.</p>")
    assert codes(html, text_for(html).replace(",", "").replace("Hello", "HELLO")) == []
    other = email("<p>School is closed on Monday because of the storm warning, so please keep children home.</p>")
    assert [f.message for f in findings_of(html, text_for(other))] == [
        "the plain-text and HTML parts say different things (only 61% of their words are shared; only in the "
        "HTML: summer, saturday, with, cakes, games, raffle; only in the text: school, closed, monday, because, "
        "storm, warning); spam filters notice this"]


@pytest.mark.parametrize(("value", "rgb"), [("#fff", (255, 255, 255)), ("#1D3F72", (29, 63, 114)),
                                            ("rgb(10, 20, 30)", (10, 20, 30)), ("rgba(10,20,30,0.5)", (10, 20, 30)),
                                            ("rgb(100% 0% 0%)", (255, 0, 0)), ("white !important", (255, 255, 255)),
                                            ("transparent", None), ("rgba(0,0,0,0)", None), ("#abcd", None)])
def test_parse_color(value: str, rgb: tuple[int, int, int] | None) -> None:
    assert parse_color(value) == rgb


def test_contrast_ratio_matches_wcag() -> None:
    assert contrast_ratio((0, 0, 0), (255, 255, 255)) == pytest.approx(21.0)
    assert contrast_ratio((255, 255, 255), (255, 255, 255)) == pytest.approx(1.0)
    assert contrast_ratio((118, 118, 118), (255, 255, 255)) == pytest.approx(4.54, abs=0.01)


def test_merge_audiences_shows_a_shared_finding_once() -> None:
    a = Finding(WARNING, "x", "same", "parents", 3)
    b = Finding(WARNING, "x", "same", "staff", 3)
    c = Finding(ERROR, "y", "worse", "staff", 9)
    merged = merge_audiences([a, b, c])
    assert [(m.finding.code, m.audiences) for m in merged] == [("y", ("staff",)), ("x", ("parents", "staff"))]
