"""The source map names the right newsletter.md line for links and text, however many there are."""

from __future__ import annotations

from pathlib import Path

from mailroom.checks.rules import WARNING, check_version
from mailroom.checks.sourcemap import SourceMap, build_source_map
from mailroom.compose.content import load_newsletter

FRONT = "---\nsubject: Clubs\npreheader: Clubs this term\ndate: 2024-11-08\naudiences: parents\n---\n"
BODY_START = 7  # the first line after the front matter


def source_map(tmp_path: Path, body: str) -> SourceMap:
    folder = tmp_path / "clubs"
    folder.mkdir()
    (folder / "newsletter.md").write_text(FRONT + body, encoding="utf-8")
    return build_source_map(load_newsletter(folder, ("parents",)), "parents")


def test_a_tracked_address_finds_the_line_it_was_written_on(tmp_path: Path) -> None:
    smap = source_map(tmp_path, "\n[Term dates](https://example.org/dates)\n\n"
                                "[Dates and times](https://example.org/dates?year=7)\n")
    assert smap.link("https://example.org/dates?utm_source=newsletter").line == BODY_START + 1
    # The longest address written wins: this one was written with its own query.
    assert smap.link("https://example.org/dates?year=7&amp;utm_source=newsletter").line == BODY_START + 3
    assert smap.link("https://example.org/dates#top").line == BODY_START + 1
    assert smap.link("https://example.org/datesheet") is None
    assert smap.link("https://example.org/") is None


def test_every_one_of_thousands_of_links_is_traced_to_its_own_line(tmp_path: Path) -> None:
    count = 3000
    body = "\n" + "\n\n".join(f"See [club {n}](http://example.org/clubs/{n}) after school." for n in range(count))
    folder = tmp_path / "clubs"
    folder.mkdir()
    (folder / "newsletter.md").write_text(FRONT + body + "\n", encoding="utf-8")
    newsletter = load_newsletter(folder, ("parents",))
    paragraphs = "".join(f'<p>See <a href="http://example.org/clubs/{n}?utm_source=newsletter">club {n}</a> '
                         "after school.</p>" for n in range(count))
    html = f"<html><body><h1>Clubs</h1>{paragraphs}<a href='%%unsubscribe_url%%'>Unsubscribe</a></body></html>"
    findings = check_version(html, "Unsubscribe: %%unsubscribe_url%%", audience="parents", newsletter=newsletter)
    insecure = [f for f in findings if f.code == "insecure-link"]
    assert len(insecure) == count
    assert all(f.severity == WARNING for f in insecure)
    # Paragraph n is on line BODY_START + 1 + 2n, and each warning names its own link's line.
    assert [f.source_line for f in insecure] == [BODY_START + 1 + 2 * n for n in range(count)]
    assert insecure[1234].message.startswith("the link to http://example.org/clubs/1234 starts with http://")


def test_text_around_links_and_bold_words_is_found_on_its_line(tmp_path: Path) -> None:
    smap = source_map(tmp_path, "\n# Clubs\n\nChess on **Monday**, and [choir](https://example.org/choir) on Friday.\n"
                                "\nNetball is *outdoors* this term.\n")
    # What a checked run holds: the words directly in one element, without its children's words.
    assert smap.text("Chess on , and on Friday.").line == BODY_START + 3
    assert smap.text("Monday").line == BODY_START + 3
    assert smap.text("choir").what == "the link 'choir'"
    assert smap.text("Netball is this term.").line == BODY_START + 5
    assert smap.text("Clubs").what == "the heading 'Clubs'"
    assert smap.text("Words from the templates") is None


def test_the_same_words_twice_are_traced_in_reading_order(tmp_path: Path) -> None:
    smap = source_map(tmp_path, "\nBring a coat.\n\nMonday: games.\n\nBring a coat.\n\nTuesday: music.\n")
    lines = [smap.text(run).line for run in ("Bring a coat.", "Monday: games.", "Bring a coat.", "Tuesday: music.")]
    assert lines == [BODY_START + 1, BODY_START + 3, BODY_START + 5, BODY_START + 7]


def test_raw_text_is_found_on_its_first_line(tmp_path: Path) -> None:
    smap = source_map(tmp_path, "\nIntro.\n\nThe fair is on TBC.\n\nAlso TBC.\n")
    assert smap.raw("TBC").line == BODY_START + 3
    assert smap.raw("tbc", ignore_case=True).line == BODY_START + 3
    assert smap.raw("nowhere") is None
