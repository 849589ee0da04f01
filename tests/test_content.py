"""newsletter.md -> Newsletter: front matter, blocks, and errors that name the file and line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mailroom.compose.content import load_newsletter
from mailroom.errors import InputError
from tests.pictures import write_png

LISTS = ("parents", "staff")
FRONT = """---
subject: Test newsletter
preheader: A short preview line
date: 2024-11-08
audiences: parents, staff
---
"""
# The seed text, as office staff gave it.
SEED = Path(__file__).resolve().parent / "fixtures" / "seed" / "online-safety-seed.txt"


def write(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "newsletter.md").write_text(text, encoding="utf-8")
    return folder


def error_for(tmp_path: Path, text: str) -> InputError:
    folder = write(tmp_path / "news", text)
    with pytest.raises(InputError) as caught:
        load_newsletter(folder, LISTS)
    return caught.value


def test_front_matter_is_read(tmp_path: Path) -> None:
    folder = write(tmp_path / "week-1", FRONT + "\nHello.\n")
    news = load_newsletter(folder, LISTS)
    assert news.slug == "week-1"
    assert news.front.subject == "Test newsletter"
    assert news.front.audiences == ("parents", "staff")
    assert news.front.date.isoformat() == "2024-11-08"
    assert news.front.campaign is None
    assert [b.kind for b in news.blocks] == ["text"]
    assert news.blocks[0].line == 8


@pytest.mark.parametrize(("text", "line", "message"), [
    ("Hello\n", 1, "should start with front matter between two '---' lines"),
    (FRONT.replace("subject: Test newsletter\n", ""), 5, "the front matter needs a 'subject'"),
    (FRONT.replace("date: 2024-11-08", "date: 8th November"), 4,
     "'date' should be a date like 2024-11-08, not '8th November'"),
    (FRONT.replace("audiences: parents, staff", "audiences: parents, pupils"), 5,
     "unknown audience 'pupils'; the lists in school.toml are: parents, staff"),
    (FRONT.replace("date: 2024-11-08", "date: 2024-11-08\nauthor: Mrs Example"), 5,
     "unknown front-matter field 'author'; the fields are: subject, preheader, date, audiences, campaign"),
    ("---\nsubject: Test\n", 4, "expected 'name: value' in the front matter, found 'Body.'"),
])
def test_front_matter_errors(tmp_path: Path, text: str, line: int, message: str) -> None:
    error = error_for(tmp_path, text + "\nBody.\n")
    assert error.line == line
    assert message in error.message


@pytest.mark.parametrize(("body", "line", "message"), [
    ("Intro.\n\n::: sidebar\nText\n:::\n", 10,
     "unknown block '::: sidebar'; the blocks are: ::: alert, ::: button, ::: only"),
    ("Intro.\n\n![](images/banner.png)\n", 10,
     "the image 'images/banner.png' has no alt text: write what it shows, like ![The school choir](images/banner.png)"),
    ("Intro.\n\n![Banner](images/missing.png)\n", 10, "the image file 'images/missing.png' does not exist"),
    ("[Win a prize](javascript:alert(1))\n", 8,
     "a javascript: link is not allowed in an email (it could run code or hide content): 'javascript:alert(1)'"),
    ("See [the page](news.html).\n", 8, "the link 'news.html' should be a full address starting with https://"),
    ("::: button\nJust words\n:::\n", 8,
     "a button block should hold just one link, like [Visit the Home Learning Hub](https://...)"),
    ("::: only pupils\nHi\n:::\n", 8,
     "'::: only pupils' names 'pupils', which is not one of this newsletter's audiences (parents, staff)"),
])
def test_body_errors_name_the_line(tmp_path: Path, body: str, line: int, message: str) -> None:
    error = error_for(tmp_path, FRONT + "\n" + body)
    assert (error.line, error.message) == (line, message)
    assert str(error) == f"{tmp_path / 'news' / 'newsletter.md'}, line {line}: {message}"


def test_unclosed_front_matter(tmp_path: Path) -> None:
    error = error_for(tmp_path, "---\nsubject: Test\n")
    assert (error.line, error.message) == (1, "the front matter is not closed: add a line with just '---' after it")


def test_blocks_alert_button_image_and_audience_only(tmp_path: Path) -> None:
    folder = write(tmp_path / "news", FRONT + """
::: alert Heads up
Careful **now**.
:::

::: button
[Visit the hub](https://example.org/hub)
:::

[![The hub](images/hub.png)](https://example.org/hub)

:::: only staff
::: alert
Staff only.
:::
::::
""")
    (folder / "images").mkdir()
    write_png(folder / "images" / "hub.png", 2, 1)
    news = load_newsletter(folder, LISTS)
    kinds = [(b.kind, b.line, b.audiences) for b in news.blocks]
    assert kinds == [("alert", 8, None), ("button", 12, None), ("image", 16, None),
                     ("alert", 19, frozenset({"staff"}))]
    assert news.blocks[0].title == "Heads up"
    assert news.blocks[1].label == "Visit the hub" and news.blocks[1].url == "https://example.org/hub"
    image = news.blocks[2].image
    assert image is not None and (image.alt, image.width, image.height) == ("The hub", 2, 1)
    assert [b.kind for b in news.blocks_for("parents")] == ["alert", "button", "image"]
    assert len(news.blocks_for("staff")) == 4


def test_pasted_seed_gives_a_sensible_email(project: Path) -> None:
    """Office staff paste the seed's text as the body: escapes are undone, the link keeps its own utm_*."""
    folder = project / "newsletters" / "pasted"
    write(folder, FRONT + "\n" + SEED.read_text(encoding="utf-8"))
    result = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[1] / "compose.py"),
                             "newsletters/pasted"], cwd=project, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    html = (folder / "build" / "versions" / "parents.tokens.html").read_text()
    text = (folder / "build" / "versions" / "parents.tokens.txt").read_text()
    for part in (html, text):
        assert "utm\\_" not in part and "\\_" not in part
        assert "&amp;gt;" not in part and "&gt;" not in text
    assert "HOME LEARNING HUB >" in text
    assert "HOME LEARNING HUB &gt;" in html
    # The author's utm_campaign and utm_medium are kept; ours fill in the rest.
    assert ("https://ineqe.com/2024/11/08/sextortion-rise-of-ai/?utm_campaign=Newsletter&utm_medium=email"
            "&hsenc=p2ANqtz--&utm_source=oakfield-newsletter&utm_content=parents") in text
    assert "Online SAFETY…Sextortion" in html  # typographic ellipsis for the run of dots


def test_a_file_named_heic_that_is_not_a_picture_names_its_line(tmp_path: Path) -> None:
    folder = tmp_path / "news"
    (folder / "images").mkdir(parents=True)
    (folder / "images" / "IMG_0412.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic")  # a HEIC's first bytes only
    error = error_for(tmp_path, FRONT + "\nIntro.\n\n![Sports day](images/IMG_0412.HEIC)\n")
    assert error.line == 10
    assert error.message == ("the image 'images/IMG_0412.HEIC' is not a picture mailroom can read (a damaged file, "
                             "or another kind of file renamed); open it in a photo editor and save it as PNG, JPEG "
                             "or GIF")


def test_a_picture_of_another_kind_is_refused_naming_the_kinds_mailroom_takes(tmp_path: Path) -> None:
    folder = tmp_path / "news"
    (folder / "images").mkdir(parents=True)
    (folder / "images" / "plan.tiff").write_bytes(b"II*\x00")
    error = error_for(tmp_path, FRONT + "\nIntro.\n\n![The plan](images/plan.tiff)\n")
    assert error.message == "the image 'images/plan.tiff' should be a PNG, JPEG, GIF or an iPhone's HEIC file"
