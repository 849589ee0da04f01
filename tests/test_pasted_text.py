"""Text pasted from Word reads as it looks: lists, line breaks, simple HTML, indentation, addresses.

The fixture tests/fixtures/newsletters/word-pasted is text as Word pastes it: tab bullets, numbered and
lettered lines with no blank line around them, curly quotes, a two-line sign-off, non-breaking-space
indentation and a little inline HTML.
"""

from __future__ import annotations

from pathlib import Path

import lxml.html
import pytest

from mailroom.checks.rules import WARNING, merge_audiences
from mailroom.compose.content import load_newsletter, markdown_parser
from mailroom.errors import InputError
from mailroom.workflows.compose import ComposeResult
from tests.projects import FIXTURE_NEWSLETTERS, compose_copy, make_project

LISTS = ("parents", "staff")
FRONT = "---\nsubject: Test\ndate: 2024-11-08\naudiences: parents, staff\n---\n"  # body from line 6


@pytest.fixture(scope="module")
def pasted(tmp_path_factory: pytest.TempPathFactory) -> ComposeResult:
    folder = make_project(tmp_path_factory.mktemp("word") / "school", FIXTURE_NEWSLETTERS / "word-pasted")
    return compose_copy(folder)


def newsletter_folder(tmp_path: Path, body: str) -> Path:
    """A newsletter folder holding FRONT and ``body`` (which starts on line 6)."""
    folder = tmp_path / "news"
    folder.mkdir()
    (folder / "newsletter.md").write_text(FRONT + body, encoding="utf-8")
    return folder


def body_of(result: ComposeResult) -> lxml.html.HtmlElement:
    html = result.build.versions["parents"].html()
    return lxml.html.document_fromstring(html)


def texts(elements: list[lxml.html.HtmlElement]) -> list[str]:
    return [" ".join(e.text_content().split()) for e in elements]


def test_word_bullets_become_one_list(pasted: ComposeResult) -> None:
    [bullets] = body_of(pasted).xpath("//ul")
    assert texts(bullets.xpath("li")) == ["Cake stall run by Year 6", "Tombola and “guess the weight of the cake”",
                                          "Raffle tickets on sale at the door", "Santa’s grotto (bring a gold coin)"]
    # The line after the list is a paragraph of its own, not the end of the last item.
    assert "Please send donations in by Thursday." in texts(body_of(pasted).xpath("//p"))


def test_numbered_and_lettered_lines_become_ordered_lists(pasted: ComposeResult) -> None:
    numbered, lettered = body_of(pasted).xpath("//ol")
    assert texts(numbered.xpath("li")) == ["A named carrier bag for artwork", "PE kit to take home",
                                           "Reading book and record"]
    assert lettered.get("type") == "a"
    assert texts(lettered.xpath("li")) == ["Reception and Year 1 at 1.30pm", "Years 2 to 6 at 1.45pm"]
    text = pasted.build.versions["parents"].text()
    assert "\n1. A named carrier bag for artwork\n2. PE kit to take home\n" in text
    assert "\na) Reception and Year 1 at 1.30pm\nb) Years 2 to 6 at 1.45pm\n" in text


def test_a_two_line_sign_off_keeps_its_line_breaks(pasted: ComposeResult) -> None:
    sign_off = next(p for p in body_of(pasted).xpath("//p") if "With thanks" in p.text_content())
    assert [br.tail.strip() for br in sign_off.xpath("br")] == ["Mrs A. Example", "Headteacher"]
    assert "With thanks,\nMrs A. Example\nHeadteacher" in pasted.build.versions["parents"].text()


def test_inline_html_keeps_its_meaning_and_other_tags_are_a_warning(pasted: ComposeResult) -> None:
    body = body_of(pasted)
    note = next(p for p in body.xpath("//p") if "car park" in p.text_content())
    assert [(child.tag, child.text) for child in note if child.tag != "br"] == [
        ("strong", "Please note:"), ("em", "closed"), ("u", "side gate")]
    assert note.xpath("br") and "Walk if you can." in note.text_content()
    menu = body.xpath("//a[text()='our menu page']")[0]
    assert menu.get("href").startswith("https://example.org/menu?")
    html = pasted.build.versions["parents"].html()
    assert "<span" not in html and "&lt;" not in html and "<b>" not in html  # never shown as text
    assert "Nut-free: all food at the fair is nut-free." in texts(body.xpath("//p"))
    [warning] = [m.finding for m in merge_audiences(pasted.findings) if m.finding.code == "html-left-out"]
    assert (warning.severity, warning.source_line) == (WARNING, 30)
    assert warning.message == ("the HTML <span> is left out (its words are kept): mailroom keeps only <b>, <strong>, "
                               "<i>, <em>, <u>, <br> and <a href=\"https://...\">; use Markdown for the rest")


def test_a_bare_www_address_becomes_an_https_link(pasted: ComposeResult) -> None:
    [link] = body_of(pasted).xpath("//a[text()='www.example.org/term-dates']")
    assert link.get("href").startswith("https://www.example.org/term-dates?utm_source=")


def test_smart_quotes_and_non_breaking_space_indentation_survive(pasted: ComposeResult) -> None:
    paragraphs = [p.text_content() for p in body_of(pasted).xpath("//p")]
    assert "\u00a0\u00a0\u00a0\u00a0Indented with non-breaking spaces, as Word does." in paragraphs
    assert any("Here’s what’s happening:" in p for p in paragraphs)
    assert "\n\u00a0\u00a0\u00a0\u00a0Indented with non-breaking spaces" in pasted.build.versions["parents"].text()


def test_an_escaped_brace_is_shown_and_not_reported(pasted: ComposeResult) -> None:
    assert "type {{ first_name }} as it is." in " ".join(pasted.build.versions["parents"].text().split())
    assert "type {{ first_name }} as it is." in " ".join(body_of(pasted).text_content().split())
    assert not [f for f in pasted.findings if f.code == "leftover"]


def test_without_a_preheader_the_first_paragraph_is_used(pasted: ComposeResult) -> None:
    assert pasted.build.preheader == ("Our Christmas fair is on Friday 13 December, 3.15pm to 5pm, in the school "
                                      "hall. Here’s what’s happening:")
    assert not [f for f in pasted.findings if f.code == "no-preheader"]


def test_a_long_first_paragraph_is_cut_at_a_word(tmp_path: Path) -> None:
    long = "Our sports day is on Friday and every class takes part in races, relays and a tug of war on the field " \
           "behind the hall, weather permitting."
    folder = newsletter_folder(tmp_path, "\n# Sports day\n\n::: only staff\nStaff first.\n:::\n\n" + long)
    front = load_newsletter(folder, LISTS).front
    assert front.preheader == "Our sports day is on Friday and every class takes part in races, relays and a tug of " \
                              "war on the field behind…"
    assert front.preheader_from_text


def test_an_unclosed_box_is_an_error_naming_where_it_opened(tmp_path: Path) -> None:
    folder = newsletter_folder(tmp_path, "\nIntro.\n\n::: alert Road closure\nThe lane is shut.\n\n"
                                          "## Next week\n\nClubs restart.\n")
    with pytest.raises(InputError) as caught:
        load_newsletter(folder, LISTS)
    assert str(caught.value) == (f"{folder / 'newsletter.md'}, line 9: the box '::: alert Road closure' that starts "
                                 "on line 9 is never closed; add a line with just ':::' where the box should end")


def test_a_box_left_open_inside_another_is_found_too(tmp_path: Path) -> None:
    folder = newsletter_folder(tmp_path, "\n:::: only staff\n::: alert\nInside.\n::::\n\nAfter.\n")
    with pytest.raises(InputError) as caught:
        load_newsletter(folder, LISTS)
    assert (caught.value.line, caught.value.message) == (
        8, "the box '::: alert' that starts on line 8 is never closed; add a line with just ':::' where the box "
           "should end")


def test_closed_boxes_nested_as_the_readme_shows_are_fine(tmp_path: Path) -> None:
    folder = newsletter_folder(tmp_path, "\n:::: only staff\n::: alert\nInside.\n:::\n::::\n\nAfter.\n")
    assert [b.kind for b in load_newsletter(folder, LISTS).blocks] == ["alert", "text"]


def test_other_html_and_links_are_judged_tag_by_tag(tmp_path: Path) -> None:
    folder = newsletter_folder(tmp_path, "\nIntro.\n\n<div class=\"x\">Block <b>bold</b></div>\n\n"
        "See <a href=\"javascript:alert(1)\">this</a> and <a href=\"/local\">that</a>.\n\n"
        "Hi <script>alert(1)</script>there <!-- a note to myself -->now.\n")
    news = load_newsletter(folder, LISTS)
    found = [(w.line, w.message.split(" is left out")[0]) for w in news.warnings]
    assert found == [(9, "the HTML <div>"), (11, "the HTML link to 'javascript:alert(1)'"),
                     (11, "the HTML link to '/local'"), (13, "the HTML <script>")]
    md = markdown_parser()
    html = "".join(md.renderer.render(b.tokens, md.options, {}) for b in news.blocks)
    assert "<p>Block <strong>bold</strong></p>" in html
    assert "<p>See this and that.</p>" in html
    assert "<p>Hi there now.</p>" in html
    assert "alert" not in html and "note to myself" not in html


def test_a_campaign_another_newsletter_uses_is_a_warning(tmp_path: Path) -> None:
    newsletters = tmp_path / "newsletters"
    for name, campaign in (("2024-11-01-harvest", "autumn"), ("2024-11-08-fair", "autumn"),
                           ("2024-11-15-clubs", "clubs-2024")):
        (newsletters / name).mkdir(parents=True)
        (newsletters / name / "newsletter.md").write_text(
            FRONT.replace("audiences:", f"campaign: {campaign}\naudiences:") + "\nHello.\n", encoding="utf-8")
    news = load_newsletter(newsletters / "2024-11-08-fair", LISTS)
    assert [(w.line, w.message) for w in news.warnings] == [
        (4, "the campaign 'autumn' is also used by 2024-11-01-harvest; give this newsletter a campaign of its own, "
            "or its clicks are counted together with that newsletter's")]
    assert load_newsletter(newsletters / "2024-11-15-clubs", LISTS).warnings == ()


def test_author_text_never_runs_as_template_code(tmp_path: Path) -> None:
    folder = make_project(tmp_path / "school")
    source = folder / "newsletter.md"
    text = source.read_text(encoding="utf-8")
    written = "Sums: {{ 12345 + 54321 }} and {% if true %}yes{% endif %}."
    source.write_text(text.replace("Thank you for helping", f"{written}\n\nThank you for helping"), encoding="utf-8")
    result = compose_copy(folder)
    html = result.build.versions["parents"].html()
    assert written in " ".join(lxml.html.fromstring(html).text_content().split())
    assert "66666" not in html
    line = next(n for n, row in enumerate(source.read_text().split("\n"), start=1) if row.startswith("Sums"))
    leftovers = {(f.source_line, f.message) for f in result.findings if f.code == "leftover"}
    assert (line, "'{{ 12345 + 54321 }}' is left in the email: template code that was never filled in") in leftovers


def test_words_own_line_breaks_and_deeper_bullets(tmp_path: Path) -> None:
    folder = newsletter_folder(tmp_path, "\nTimes:\x0bMonday 3pm\u2028Friday 2pm\n\n"
                                         "Bring:\n•\tKit\no\tBoots\n§\tSocks\n§ 5 of the policy applies.\n")
    md = markdown_parser()
    html = "".join(md.renderer.render(b.tokens, md.options, {}) for b in load_newsletter(folder, LISTS).blocks)
    assert "<p>Times:<br />\nMonday 3pm<br />\nFriday 2pm</p>" in html
    assert "<li>Kit</li>\n<li>Boots</li>\n<li>Socks</li>" in html
    assert "<p>§ 5 of the policy applies.</p>" in html  # "§" and a space is just text
