import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailroom.cli import main
from mailroom.events.intake import import_events_file
from mailroom.events.report import AudienceNumbers, LinkClicks, build_report
from mailroom.events.report_page import render_report_page, write_report_page
from mailroom.events.suppressions import suppressed_addresses
from mailroom.settings import load_settings
from tests.projects import NOT_SOURCES

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "events" / "online-safety-events.json"
SLUG = "2024-11-08-online-safety"
BRIEFING = "https://www.ineqe.example.com/sextortion-briefing"
SCHOOL_PAGE = "https://www.oakfield.example.org/online-safety"


def make_project(tmp_path: Path, open_tracking: bool = False) -> Path:
    school = (ROOT / "school.toml").read_text(encoding="utf-8")
    if open_tracking:
        school = school.replace("open_tracking = false", "open_tracking = true")
        assert "open_tracking = true" in school
    (tmp_path / "school.toml").write_text(school, encoding="utf-8")
    shutil.copytree(ROOT / "assets", tmp_path / "assets")
    (tmp_path / "newsletters" / SLUG).mkdir(parents=True)
    return tmp_path


@pytest.fixture
def project(tmp_path):
    root = make_project(tmp_path)
    settings = load_settings(root, environ={})
    import_events_file(settings.db_path, FIXTURE)
    return root


def test_report_numbers_for_the_fixture(project):
    settings = load_settings(project, environ={})
    report = build_report(settings, project / "newsletters" / SLUG)
    assert report.slug == SLUG
    assert report.sent_from == "SendGrid's processed events"
    assert report.events_counted == 30  # 33 in the file: one repeat, two for another newsletter
    assert report.audiences == (
        AudienceNumbers("parents", sent=5, delivered=4, bounced=1, dropped=0, deferred=1, opened=None,
                        clicked=2, clicks=4, unsubscribed=1, spam_reports=0),
        AudienceNumbers("staff", sent=3, delivered=2, bounced=0, dropped=1, deferred=0, opened=None,
                        clicked=1, clicks=2, unsubscribed=1, spam_reports=1),
    )
    assert report.links == (
        LinkClicks(BRIEFING, BRIEFING, clicked=2, clicks=3),
        LinkClicks(SCHOOL_PAGE, SCHOOL_PAGE, clicked=2, clicks=2),
        LinkClicks("unsubscribe", "Unsubscribe link", clicked=1, clicks=1),
    )
    assert any("open tracking is off" in note for note in report.notes)


def test_opens_are_counted_when_open_tracking_was_on_with_the_apple_note(tmp_path):
    root = make_project(tmp_path, open_tracking=True)
    settings = load_settings(root, environ={})
    import_events_file(settings.db_path, FIXTURE)
    report = build_report(settings, root / "newsletters" / SLUG)
    assert [a.opened for a in report.audiences] == [2, 0]
    assert any("Apple Mail Privacy Protection" in note for note in report.notes)


def test_the_fixture_suppresses_bounce_drop_spam_and_unsubscribes(project):
    settings = load_settings(project, environ={})
    assert suppressed_addresses(settings.db_path) == {
        "parent5@example.org": "bounced on 2024-11-08",
        "staff3@example.com": "address not valid, so SendGrid dropped the email on 2024-11-08",
        "parent3@example.org": "unsubscribed on 2024-11-08",
        "staff1@example.com": "unsubscribed on 2024-11-08",
        "staff2@example.com": "marked the email as spam on 2024-11-08",
    }


def test_report_without_any_events_or_database(tmp_path):
    root = make_project(tmp_path)
    settings = load_settings(root, environ={})
    report = build_report(settings, root / "newsletters" / SLUG)
    assert report.audiences == ()
    assert report.events_counted == 0
    assert report.notes[0].startswith("No delivery events have arrived for this newsletter yet.")
    assert not settings.db_path.exists()


def test_page_is_self_contained_accessible_and_free_of_addresses(project):
    settings = load_settings(project, environ={})
    report = build_report(settings, project / "newsletters" / SLUG)
    page = render_report_page(report, settings.school.language, settings.school.name)
    assert '<html lang="en-GB">' in page
    assert "<title>Newsletter report: 2024-11-08-online-safety</title>" in page
    assert "default-src 'none'" in page
    assert not re.search(r"""(src|href)=["']?https?:""", page)  # nothing fetched, nothing linked out
    assert "@example." not in page and "rid-" not in page  # no addresses, no recipient ids
    assert page.count('role="img"') == 2
    assert "<desc id=\"chart-1-desc\">Parents: sent 5, delivered 4, clicked 2, deferred 1, bounced 1, blocked 0, " \
           "dropped 0, unsubscribed 1, spam reports 0.</desc>" in page


def test_cli_report_prints_the_table_and_writes_the_page(project, monkeypatch):
    monkeypatch.chdir(project)
    monkeypatch.delenv("MAILROOM_DB", raising=False)
    result = CliRunner().invoke(main, ["report", f"newsletters/{SLUG}"])
    assert result.exit_code == 0, result.output
    assert re.search(r"People\s*┃\s*parents\s*┃\s*staff", result.output)
    assert re.search(r"Sent\s*│\s*5\s*│\s*3\s*│", result.output)
    assert re.search(r"Delivered\s*│\s*4 \(80%\)\s*│\s*2 \(67%\)\s*│", result.output)
    assert re.search(r"Opened\s*│\s*not tracked\s*│\s*not tracked\s*│", result.output)
    assert re.search(r"Clicks in total\s*│\s*4\s*│\s*2\s*│", result.output)
    assert "Report page: newsletters/2024-11-08-online-safety/build/report.html" in result.output
    assert (project / "newsletters" / SLUG / "build" / "report.html").is_file()


def test_cli_report_of_a_missing_folder_exits_2(project, monkeypatch):
    monkeypatch.chdir(project)
    result = CliRunner().invoke(main, ["report", "newsletters/no-such-week"])
    assert result.exit_code == 2
    assert "newsletters/no-such-week: there is no newsletter folder here" in result.output


def test_page_renders_in_headless_chromium_without_console_errors(project, browser):
    from tests.browser import open_page

    settings = load_settings(project, environ={})
    report = build_report(settings, project / "newsletters" / SLUG)
    page_path = write_report_page(report, project / "newsletters" / SLUG, settings.school.language,
                                  settings.school.name)
    artifacts = ROOT / "tests" / "artifacts"
    artifacts.mkdir(exist_ok=True)
    warnings: list[str] = []
    with open_page(browser, 1100, 900) as (page, log):
        page.on("console", lambda m: warnings.append(m.text) if m.type == "warning" else None)
        page.goto(page_path.resolve().as_uri())
        assert page.title() == "Newsletter report: 2024-11-08-online-safety"
        charts = page.locator("svg[role=img]")
        assert charts.count() == 2
        box = charts.first.bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 100
        widest = page.locator("svg[role=img] >> nth=0").locator("rect").first.bounding_box()
        assert widest is not None and widest["width"] > 100  # "Sent" is drawn, scaled
        row = page.locator("tbody tr").first.inner_text()
        assert row.split()[:3] == ["parents", "5", "4"]
        page.screenshot(path=str(artifacts / "report.png"), full_page=True)
    assert log.console_errors == [] and warnings == []
    assert log.requests == [page_path.resolve().as_uri()]


def test_a_composed_build_gives_the_subject_and_lists_links_nobody_clicked(project):
    from mailroom.workflows.compose import compose_newsletter

    shutil.copytree(ROOT / "templates", project / "templates")
    shutil.copytree(ROOT / "newsletters" / SLUG, project / "newsletters" / SLUG, dirs_exist_ok=True,
                    ignore=NOT_SOURCES)
    settings = load_settings(project, environ={})
    compose_newsletter(settings, project / "newsletters" / SLUG)
    report = build_report(settings, project / "newsletters" / SLUG)
    assert report.subject == "Online safety: sextortion and the rise of AI"
    by_url = {link.url: link for link in report.links}
    assert by_url["https://www.ceop.police.uk/Safety-Centre/"] == LinkClicks(
        "https://www.ceop.police.uk/Safety-Centre/", "https://www.ceop.police.uk/Safety-Centre/", 0, 0)
    assert by_url[BRIEFING].clicks == 3
    assert not any("%%" in url or "utm_" in url for url in by_url)
