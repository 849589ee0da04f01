"""Starting next week's newsletter: ``mailroom new`` and ``compose.py --new`` copy the latest one rightly."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mailroom.errors import InputError
from mailroom.workflows.new_newsletter import start_next_newsletter, topic_slug
from tests.projects import REPO, SAMPLE, compose_copy, make_project


def run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAILROOM_", "SENDGRID_", "SMTP_"))}
    env["COLUMNS"] = "200"
    return subprocess.run([sys.executable, *args], cwd=root, capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    # last week's, composed (a copy of the session's build): its build must not be copied
    assert (make_project(tmp_path / "school", composed=True) / "build" / "manifest.json").is_file()
    return tmp_path / "school"


def test_mailroom_new_starts_next_weeks_newsletter(root: Path) -> None:
    done = run(root, "-m", "mailroom", "new", "Christmas", "fair", "--date", "2024-11-15")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"Started newsletters/2024-11-15-christmas-fair (copied from {SAMPLE}, with its 1 picture).",
        "  Date Friday 15 November 2024, subject “Christmas fair”, campaign 2024-11-15-christmas-fair.",
        "Start writing in newsletters/2024-11-15-christmas-fair/newsletter.md: last week's text is there to "
        "write over.",
        "Then: python compose.py newsletters/2024-11-15-christmas-fair --open",
    ]
    new, old = root / "newsletters" / "2024-11-15-christmas-fair", root / "newsletters" / SAMPLE
    assert sorted(p.relative_to(new).as_posix() for p in new.rglob("*")) == [
        "images", "images/home-learning-hub.png", "newsletter.md"]  # no build
    assert (new / "images" / "home-learning-hub.png").read_bytes() == (old / "images" /
                                                                       "home-learning-hub.png").read_bytes()
    front = (new / "newsletter.md").read_text(encoding="utf-8").split("---\n")[1].splitlines()
    assert front == [
        "subject: Christmas fair",
        "# preheader: the grey line inboxes show after the subject (optional: without it, the start of the first "
        "paragraph is used)",
        "date: 2024-11-15",
        "audiences: parents, staff",
        "campaign: 2024-11-15-christmas-fair",
    ]
    old_body = (old / "newsletter.md").read_text(encoding="utf-8").split("---\n", 2)[2]
    assert (new / "newsletter.md").read_text(encoding="utf-8").split("---\n", 2)[2] == old_body
    assert "campaign: online-safety-2024-11" in (old / "newsletter.md").read_text(encoding="utf-8")  # untouched
    # It composes as it stands, with a campaign of its own (no "also used by" warning).
    result = compose_copy(new)
    assert result.build.campaign == "2024-11-15-christmas-fair"
    assert result.build.preheader.startswith("Police and other child protection agencies")
    assert not [f for f in result.findings if f.code == "campaign-shared"]


def test_compose_py_new_does_the_same(root: Path) -> None:
    done = run(root, str(REPO / "compose.py"), "--new", "Sports day")
    assert done.returncode == 0, done.stderr
    [made] = [p for p in (root / "newsletters").iterdir() if p.name.endswith("-sports-day")]
    assert done.stdout.startswith(f"Started newsletters/{made.name} (copied from {SAMPLE}")
    assert not (made / "build").exists()


def test_compose_py_new_asks_for_quotes_around_a_topic_of_several_words(root: Path) -> None:
    done = run(root, str(REPO / "compose.py"), "--new", "Sports", "day")
    assert done.returncode == 2
    assert 'Error: put the whole topic in quotes, like: --new "Sports day"' in done.stderr
    assert sorted(p.name for p in (root / "newsletters").iterdir()) == [SAMPLE]


def test_the_date_is_a_week_on_moved_past_today(tmp_path: Path) -> None:
    newsletters = make_project(tmp_path / "school").parent
    made = start_next_newsletter(newsletters, "Sports day", today=dt.date(2024, 11, 20))
    assert made.date == dt.date(2024, 11, 22)  # 15th is past; the same weekday, a week on
    later = start_next_newsletter(newsletters, "Harvest", today=dt.date(2024, 11, 20))
    assert (later.date, later.copied_from.name) == (dt.date(2024, 11, 29), "2024-11-22-sports-day")


def test_mistakes_are_errors_that_change_nothing(tmp_path: Path) -> None:
    newsletters = make_project(tmp_path / "school").parent
    start_next_newsletter(newsletters, "Fair", today=dt.date(2024, 11, 1), date=dt.date(2024, 11, 15))
    with pytest.raises(InputError) as caught:
        start_next_newsletter(newsletters, "fair!", today=dt.date(2024, 11, 1), date=dt.date(2024, 11, 15))
    assert caught.value.message.startswith("there is already a newsletter folder with this name")
    with pytest.raises(InputError, match="the topic needs some letters or digits"):
        start_next_newsletter(newsletters, "!!!", today=dt.date(2024, 11, 1))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="there is no newsletter to start from"):
        start_next_newsletter(tmp_path / "empty", "Fair", today=dt.date(2024, 11, 1))
    assert sorted(p.name for p in newsletters.iterdir()) == ["2024-11-08-online-safety", "2024-11-15-fair"]


def test_topic_slug_types_easily() -> None:
    assert topic_slug("Fête de Noël & carol service!") == "fete-de-noel-carol-service"
    assert topic_slug("  Year 6 SATs: results  ") == "year-6-sats-results"
    assert len(topic_slug("word " * 40)) <= 50
