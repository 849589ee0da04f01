"""The report tells blocked from bounced (as SendGrid's statistics do), and says "not tracked for this
transport" after an outbox or SMTP send instead of a 0% that would read as "nobody got it"."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mailroom.events.intake import import_events_file
from mailroom.events.report import build_report
from mailroom.events.suppressions import suppressed_addresses
from mailroom.settings import load_settings
from tests.send_project import SAMPLE, environ, many_people, run_send, send_project, write_audiences
from tests.sendgrid_events import event


def report_cli(folder: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("MAILROOM_", "SENDGRID_", "SMTP_"))}
    full.update(env, COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "mailroom", "report", f"newsletters/{SAMPLE}"], cwd=folder,
                          env=full, text=True, capture_output=True, timeout=120, check=False)


def test_blocked_is_counted_apart_from_bounced_and_does_not_suppress(tmp_path: Path) -> None:
    folder = send_project(tmp_path / "school")
    settings = load_settings(folder, environ=environ(folder))
    events = [
        event("bounce", "b1", "ada@example.org", recipient_id="r-ada", type="bounce", newsletter=SAMPLE),
        event("bounce", "b2", "bob@example.org", recipient_id="r-bob", type="blocked", newsletter=SAMPLE),
        event("bounce", "b3", "cat@example.org", recipient_id="r-cat", type="blocked", newsletter=SAMPLE),
        event("bounce", "b4", "cat@example.org", recipient_id="r-cat", type="blocked", newsletter=SAMPLE,
              timestamp=1_731_070_000),  # blocked twice: one person
        event("delivered", "d1", "dan@example.org", recipient_id="r-dan", newsletter=SAMPLE),
    ]
    (tmp_path / "events.json").write_text(json.dumps(events), encoding="utf-8")
    import_events_file(settings.db_path, tmp_path / "events.json")
    [parents, *_] = build_report(settings, folder / "newsletters" / SAMPLE).audiences
    assert (parents.bounced, parents.blocked, parents.delivered) == (1, 2, 1)
    assert set(suppressed_addresses(settings.db_path)) == {"ada@example.org"}
    shown = report_cli(folder, environ(folder))
    assert shown.returncode == 0, shown.stderr
    lines = {line.split("│")[1].strip(): line for line in shown.stdout.splitlines() if line.count("│") > 2}
    assert lines["Bounced"].split("│")[2].strip() == "1" and lines["Blocked"].split("│")[2].strip() == "2"
    assert "counted apart from bounced" in shown.stdout


def test_after_an_outbox_send_delivery_is_not_tracked_never_zero_percent(tmp_path: Path) -> None:
    folder = send_project(tmp_path / "school")
    write_audiences(folder / "audiences.csv", many_people(3))
    env = environ(folder, transport="outbox")
    sent = run_send(folder, f"newsletters/{SAMPLE}", "--to", "parents", "--yes", "--untested", env=env)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    settings = load_settings(folder, environ=env)
    [parents, *_] = build_report(settings, folder / "newsletters" / SAMPLE).audiences
    assert parents.sent == 3 and not parents.tracked and parents.untracked_via == "the outbox"
    shown = report_cli(folder, env)
    assert shown.returncode == 0, shown.stderr
    delivered = next(line for line in shown.stdout.splitlines() if "Delivered" in line)
    assert "not tracked for this transport" in delivered
    assert "0 (0%)" not in shown.stdout and "(0%)" not in shown.stdout
    assert "sent through the outbox, which reports nothing back" in shown.stdout
    page = (folder / "newsletters" / SAMPLE / "build" / "report.html").read_text(encoding="utf-8")
    parents_row = page[page.index('<th scope="row">parents</th>'):].split("</tr>")[0]
    assert "Not tracked for this transport (the outbox)" in parents_row and "%" not in parents_row


def test_a_sendgrid_send_is_still_counted_from_its_events(tmp_path: Path) -> None:
    """The 'not tracked' wording is for transports without events, not for a SendGrid send awaiting them."""
    from mailroom.send.ledger import BatchKind, BatchState, Ledger

    folder = send_project(tmp_path / "school")
    settings = load_settings(folder, environ=environ(folder))
    with Ledger(settings.db_path) as ledger:
        batch = ledger.begin_batch(newsletter=SAMPLE, audience="parents", kind=BatchKind.LIVE, transport="sendgrid",
                                   build_hash="h", keys=["ada@example.org"])
        ledger.finish_batch(batch, BatchState.SENT, message_id="m")
    [parents, *_] = build_report(settings, folder / "newsletters" / SAMPLE).audiences
    assert parents.tracked and parents.delivered == 0


def test_the_page_with_an_untracked_list_fits_a_phone_and_passes_axe(tmp_path: Path, browser) -> None:
    from mailroom.events.report import AudienceNumbers, NewsletterReport
    from mailroom.events.report_page import write_report_page
    from tests.browser import axe_violations, horizontal_overflow

    report = NewsletterReport(
        slug=SAMPLE, subject="Online safety", sent_from="the send ledger", links=(), notes=(), events_counted=9,
        audiences=(AudienceNumbers("parents", sent=5, delivered=4, bounced=1, dropped=0, deferred=0, opened=None,
                                   clicked=1, clicks=1, unsubscribed=0, spam_reports=0, blocked=2),
                   AudienceNumbers("staff", sent=3, delivered=0, bounced=0, dropped=0, deferred=0, opened=None,
                                   clicked=0, clicks=0, unsubscribed=0, spam_reports=0, untracked_via="SMTP")))
    path = write_report_page(report, tmp_path / SAMPLE)
    # The page's Content-Security-Policy forbids every script; axe-core is injected past it, for this check only.
    context = browser.new_context(viewport={"width": 390, "height": 844}, bypass_csp=True)
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(path.resolve().as_uri())
        staff = page.locator("tbody tr").nth(1).inner_text()
        assert "Not tracked for this transport (SMTP)" in staff and "0%" not in staff
        assert page.locator("th", has_text="Blocked").count() == 1
        assert horizontal_overflow(page) == 0  # the wide table scrolls inside its own box
        assert axe_violations(page) == []
        assert errors == []
    finally:
        context.close()
