"""send.py end to end, as the office runs it: the sample newsletter, composed, sent to audiences.csv
through the outbox or a stand-in SendGrid on 127.0.0.1 (which checks every body and counts copies)."""

from __future__ import annotations

import email
import email.policy
import os
import signal
import sqlite3
from pathlib import Path

import pytest

from mailroom.send.ledger import Ledger
from tests.send_project import (
    API_KEY,
    SAMPLE,
    environ,
    many_people,
    run_send,
    send_project,
    send_py,
    start_send_py,
    write_audiences,
)
from tests.sendgrid_standin import Answer, wait_until

NEWSLETTER = f"newsletters/{SAMPLE}"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = send_project(tmp_path / "school")
    write_audiences(folder / "audiences.csv", [
        ("amelia.hughes@example.org", "Amelia", "Hughes", "parents"),
        ("rahul.patel@example.com", "Rahul", "Patel", "parents;staff"),
        ("grace.okafor@example.org", "", "Okafor", "staff"),
        ("RAHUL.PATEL@example.com", "Rahul", "Patel", "staff"),
    ])
    return folder


def ledger_counts(folder: Path) -> dict[str, int]:
    with Ledger(folder / "mailroom.sqlite3") as ledger:
        return ledger.counts(SAMPLE)


# --- the outbox (the default) ---------------------------------------------------------------------------

def test_dry_run_shows_the_plan_and_sends_nothing(project):
    result = send_py(project, NEWSLETTER, "--to", "parents,staff", "--dry-run", env=environ(project))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Sending “Online safety: sextortion and the rise of AI”",
        "parents: 2 on the list, 2 will receive",
        "staff: 3 on the list, 2 will receive, 1 left out (1 duplicate)",
        "In all, 3 people will receive one email each.",
        "Left out: 1 entry on the lists gets no email (every one is listed in left-out-2024-11-08-online-safety.csv):",
        "  duplicate: 1 (staff 1) - the same address again on a list: they get one email",
        "    line 5: RAHUL.PATEL@example.com (staff, already on the staff list on line 3)",
        "To send now, per version: parents 1, staff 1, parents+staff 1",
        f"Transport: the outbox folder {project / 'outbox'} (nothing is emailed)",
        "Test: this build has not been test-sent.",
        "3 people will get it now.",
        "Dry run: nothing was sent.",
    ]
    assert not (project / "outbox").exists() and ledger_counts(project) == {}


def test_test_send_then_live_send_into_the_outbox(project):
    env = environ(project)
    result = send_py(project, NEWSLETTER, "--to", "parents,staff", "--test", "office@oakfield.example.org", env=env)
    assert result.returncode == 0, result.stderr
    tests = sorted((project / "outbox" / SAMPLE).glob("test-*.eml"))
    # each version the lists can get: someone on both gets the combined one
    assert [p.name.split("-")[1] for p in tests] == ["parents", "parents_staff", "staff"]
    for path in tests:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert message["Subject"] == "[TEST] Online safety: sextortion and the rise of AI"
        assert message["To"] == "office@oakfield.example.org"
    assert ledger_counts(project) == {}  # a test is not a send

    result = send_py(project, NEWSLETTER, "--to", "parents,staff", input="3\n", env=env)
    assert result.returncode == 0, result.stderr
    assert "Test: this exact build was test-sent to office@oakfield.example.org at " in result.stdout
    assert "To send to 3 people, type 3:" in result.stdout
    assert ("Done: sent to 3 people; everyone on parents, staff who should get this newsletter now has it."
            in result.stdout)
    files = [p for p in (project / "outbox" / SAMPLE).glob("*.eml") if not p.name.startswith("test-")]
    recipients = sorted(email.message_from_bytes(p.read_bytes(), policy=email.policy.default)["To"].addresses[0]
                        .addr_spec for p in files)
    assert recipients == ["amelia.hughes@example.org", "grace.okafor@example.org", "rahul.patel@example.com"]
    assert ledger_counts(project) == {"sent": 3}

    again = send_py(project, NEWSLETTER, "--to", "parents,staff", "--yes", env=env)
    assert again.returncode == 0
    assert "Already sent earlier (skipped): 3" in again.stdout
    assert "Nobody is left to send to" in again.stdout


def test_a_wrong_number_at_the_confirmation_sends_nothing(project):
    result = run_send(project, NEWSLETTER, "--to", "parents,staff", "--untested", input="30\n", env=environ(project))
    assert result.returncode == 3
    assert result.stderr.strip() == "Error: nothing was sent: the number typed did not match"
    assert not (project / "outbox").exists()


def test_an_untested_build_is_refused_with_yes_unless_untested(project):
    env = environ(project)
    refused = run_send(project, NEWSLETTER, "--to", "parents", "--yes", env=env)
    assert refused.returncode == 3
    assert refused.stderr.strip() == (
        "Error: nothing was sent: this build was never test-sent. Send a test first (python send.py "
        f"{NEWSLETTER} --to parents --test YOUR_ADDRESS), or add --untested to send it anyway")
    allowed = run_send(project, NEWSLETTER, "--to", "parents", "--yes", "--untested", env=env)
    assert allowed.returncode == 0, allowed.stderr
    assert ledger_counts(project) == {"sent": 2}


def test_an_untested_build_asks_again_without_yes(project):
    result = run_send(project, NEWSLETTER, "--to", "parents", input="2\nn\n", env=environ(project))
    assert result.returncode == 3
    assert "This build was never test-sent. Send it anyway? [y/N]" in result.stdout
    assert not (project / "outbox").exists()


def test_a_newsletter_changed_since_compose_is_refused(project):
    source = project / NEWSLETTER / "newsletter.md"
    source.write_text(source.read_text() + "\nOne more line.\n")
    result = run_send(project, NEWSLETTER, "--to", "parents", "--yes", "--untested", env=environ(project))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"Error: the newsletter has changed since it was composed ({NEWSLETTER}/newsletter.md); run  python "
        f"compose.py {NEWSLETTER}  again, check the preview, then send")


def test_usage_mistakes_exit_2(project):
    both = send_py(project, NEWSLETTER, "--to", "parents", "--resend-uncertain", "--mark-uncertain-sent",
                   env=environ(project))
    assert both.returncode == 2 and "choose one of --resend-uncertain and --mark-uncertain-sent" in both.stderr
    sandbox = send_py(project, NEWSLETTER, "--to", "parents", "--sandbox", env=environ(project))
    assert sandbox.returncode == 2
    assert "--sandbox only works when sending through SendGrid" in sandbox.stderr
    unknown = send_py(project, NEWSLETTER, "--to", "governors", "--dry-run", env=environ(project))
    assert unknown.returncode == 2 and "governors" in unknown.stderr


# --- SendGrid (the stand-in) -------------------------------------------------------------------------------

def test_2500_people_in_3_requests_each_once(project, sg):
    write_audiences(project / "audiences.csv", many_people(2500))
    env = environ(project, transport="sendgrid", host=sg.url)
    result = run_send(project, NEWSLETTER, "--to", "parents", "--yes", "--untested", env=env)
    assert result.returncode == 0, result.stderr
    assert sg.request_count == 3 and len(sg.received) == 2500 and set(sg.received.values()) == {1}
    assert "Transport: SendGrid (http://127.0.0.1:" in result.stdout
    lines = result.stdout.splitlines()  # plain progress lines off a terminal: the first batch and the last
    assert "  1000 of 2500 done (1000 sent)" in lines and "  2500 of 2500 done (2500 sent)" in lines
    assert ledger_counts(project) == {"sent": 2500}


def test_the_same_address_on_two_lists_receives_once(project, sg):
    env = environ(project, transport="sendgrid", host=sg.url)
    result = run_send(project, NEWSLETTER, "--to", "parents,staff", "--yes", "--untested", env=env)
    assert result.returncode == 0, result.stderr
    assert sg.received == {"amelia.hughes@example.org": 1, "rahul.patel@example.com": 1,
                           "grace.okafor@example.org": 1}
    rahul = [p for body in sg.requests for p in body["personalizations"]
             if p["to"][0]["email"] == "rahul.patel@example.com"]
    # one email with both lists' sections (the greeting is the first list's in --to order)
    assert [p["custom_args"]["audience"] for p in rahul] == ["parents+staff"]


def test_401_stops_at_once_with_its_message(project, sg):
    write_audiences(project / "audiences.csv", many_people(2500))
    sg.script(Answer(401))
    env = environ(project, transport="sendgrid", host=sg.url)
    result = run_send(project, NEWSLETTER, "--to", "parents", "--yes", "--untested", env=env)
    assert result.returncode == 1
    assert sg.request_count == 1
    assert result.stderr.splitlines()[-1] == (
        "Error: SendGrid did not accept the API key (401): it is wrong or has been revoked. Check "
        "SENDGRID_API_KEY in .env. SendGrid said: The provided authorization grant is invalid, expired, or "
        "revoked. Nothing more was sent; run the same command again once this is fixed, and it will carry on "
        "where it stopped.")


def test_a_dropped_connection_is_reported_as_uncertain(project, sg):
    sg.script(Answer(drop=True))
    env = environ(project, transport="sendgrid", host=sg.url)
    result = run_send(project, NEWSLETTER, "--to", "parents,staff", "--yes", "--untested", env=env)
    assert result.returncode == 3
    assert "Uncertain: 1 people in 1 earlier batch(es) may or may not have this newsletter" in result.stderr
    assert "  batch 1 (parents, 1 people, started " in result.stderr
    assert "    amelia.hughes@example.org" in result.stderr  # rahul, on both lists, is in the parents+staff batch
    assert "--resend-uncertain" in result.stderr and "--mark-uncertain-sent" in result.stderr
    assert ledger_counts(project) == {"uncertain": 1, "pending": 2}
    # a rerun refuses until the office decides
    rerun = run_send(project, NEWSLETTER, "--to", "parents,staff", "--yes", "--untested", env=env)
    assert rerun.returncode == 3 and sg.request_count == 1
    decided = run_send(project, NEWSLETTER, "--to", "parents,staff", "--yes", "--untested", "--mark-uncertain-sent",
                      env=env)
    assert decided.returncode == 0, decided.stderr
    assert "Counted 1 people from uncertain batches as sent, as you asked." in decided.stdout
    assert sg.received == {"amelia.hughes@example.org": 1, "rahul.patel@example.com": 1,
                           "grace.okafor@example.org": 1}


def test_killed_mid_send_then_rerun_never_sends_twice_and_names_the_uncertain(project, sg):
    write_audiences(project / "audiences.csv", many_people(2500))
    # the second request arrives but is never answered, and SendGrid did not take it in
    sg.script(Answer(202), Answer(hang=60, accepted=False))
    env = environ(project, transport="sendgrid", host=sg.url)
    sender = start_send_py(project, NEWSLETTER, "--to", "parents", "--yes", "--untested", env=env)
    try:
        assert wait_until(lambda: sg.request_count >= 2, timeout=60)
        os.kill(sender.pid, signal.SIGKILL)
        sender.wait(timeout=10)
    finally:
        sender.kill()
        sender.communicate()
    sg.release()
    assert len(sg.received) == 1000

    rerun = run_send(project, NEWSLETTER, "--to", "parents", "--yes", "--untested", env=env)
    assert rerun.returncode == 3
    assert "Already sent earlier (skipped): 1000" in rerun.stdout
    assert "Uncertain: 1000 people in 1 earlier batch(es) may or may not have this newsletter" in rerun.stderr
    assert "  batch 2 (parents, 1000 people, started " in rerun.stderr
    assert "the send stopped while this request was on its way" in rerun.stderr
    assert "    parent001000@example.org" in rerun.stderr
    assert f"  Everyone in these batches is listed in uncertain-{SAMPLE}.csv" in rerun.stderr
    listed = (project / f"uncertain-{SAMPLE}.csv").read_text(encoding="utf-8-sig").splitlines()
    assert listed[0] == "batch,list,email" and len(listed) == 1001
    assert listed[1] == "2,parents,parent001000@example.org"
    assert set(sg.received.values()) == {1} and sg.request_count == 2  # nothing sent by the refused rerun

    finish = run_send(project, NEWSLETTER, "--to", "parents", "--yes", "--untested", "--resend-uncertain", env=env)
    assert finish.returncode == 0, finish.stderr
    assert "Uncertain last time (sending again, as you asked): 1000" in finish.stdout
    assert len(sg.received) == 2500 and set(sg.received.values()) == {1}
    assert ledger_counts(project) == {"sent": 2500}


def test_the_api_key_is_never_printed_or_stored(project, sg):
    sg.script(Answer(401), Answer(400, errors=[f"echo of {API_KEY}"]))
    env = environ(project, transport="sendgrid", host=sg.url)
    outputs = []
    for extra in ([], [], ["--test", "office@oakfield.example.org"], []):
        result = send_py(project, NEWSLETTER, "--to", "parents,staff", "--yes", "--untested", *extra, env=env)
        outputs += [result.stdout, result.stderr]
    assert "echo of ********" in "".join(outputs)  # SendGrid's own words, with the key masked
    assert sg.received  # the later runs did send
    assert all(API_KEY not in text for text in outputs)
    stored = [p for p in project.rglob("*") if p.is_file() and "templates" not in p.parts]
    assert any(p.name.startswith("mailroom.sqlite3") for p in stored)
    for path in stored:
        assert API_KEY.encode() not in path.read_bytes(), path
    with sqlite3.connect(project / "mailroom.sqlite3") as conn:
        dump = "\n".join(conn.iterdump())
    assert API_KEY not in dump


def test_ctrl_c_stops_after_the_batch_in_flight(project, sg):
    write_audiences(project / "audiences.csv", many_people(2500))
    sg.script(Answer(hang=60))  # the first answer waits until released, so Ctrl-C lands while it is out
    env = environ(project, transport="sendgrid", host=sg.url)
    sender = start_send_py(project, NEWSLETTER, "--to", "parents", "--yes", "--untested", env=env)
    assert wait_until(lambda: sg.request_count >= 1, timeout=60)
    sender.send_signal(signal.SIGINT)
    assert sender.stderr is not None
    first = sender.stderr.readline()  # the send said it will stop: now let SendGrid answer
    sg.release()
    _out, rest_of_err = sender.communicate(timeout=60)
    err = first + rest_of_err
    assert sender.returncode == 130, err
    assert first.startswith("Stopping after the batch in flight")
    assert "Stopped after the batch in flight; what was sent is recorded." in err
    assert sg.request_count == 1 and len(sg.received) == 1000
    assert ledger_counts(project) == {"sent": 1000, "pending": 1500}
    rest = run_send(project, NEWSLETTER, "--to", "parents", "--yes", "--untested", env=env)
    assert rest.returncode == 0 and len(sg.received) == 2500 and set(sg.received.values()) == {1}


def test_another_audiences_file_can_be_named(project):
    other = write_audiences(project / "export.csv", [("new.parent@example.com", "Nia", "Jones", "parents")])
    result = run_send(project, NEWSLETTER, "--to", "parents", "--audiences", str(other), "--yes", "--untested",
                     env=environ(project))
    assert result.returncode == 0, result.stderr
    assert "parents: 1 on the list, 1 will receive" in result.stdout.splitlines()
    assert ledger_counts(project) == {"sent": 1}


def test_sandbox_run_checks_everything_and_records_no_one_as_sent(project, sg):
    env = environ(project, transport="sendgrid", host=sg.url)
    result = run_send(project, NEWSLETTER, "--to", "parents,staff", "--sandbox", "--yes", env=env)
    assert result.returncode == 0, result.stderr
    assert "Transport: SendGrid (http://127.0.0.1:" in result.stdout and "sandbox mode" in result.stdout
    # one request per version: parents, staff, parents+staff
    assert "Sandbox: SendGrid checked 3 messages in 3 requests and delivered none." in result.stdout
    assert all(body["mail_settings"] == {"sandbox_mode": {"enable": True}} for body in sg.requests)
    assert ledger_counts(project) == {}


def test_429_then_202_end_to_end(project, sg):
    sg.script(Answer(429, headers={"Retry-After": "1"}, errors=["Too many requests"]))
    env = environ(project, transport="sendgrid", host=sg.url)
    result = send_py(project, NEWSLETTER, "--to", "parents,staff", "--yes", "--untested", env=env)
    assert result.returncode == 0, result.stderr
    assert ("  SendGrid asked us to slow down (429). SendGrid said: Too many requests. Trying again in 1 s."
            in result.stdout.splitlines())
    assert sg.request_count == 4 and set(sg.received.values()) == {1} and len(sg.received) == 3


def test_500s_then_202_end_to_end(project, sg):
    sg.script(Answer(500), Answer(503))
    env = environ(project, transport="sendgrid", host=sg.url)
    result = send_py(project, NEWSLETTER, "--to", "parents", "--yes", "--untested", env=env)
    assert result.returncode == 0, result.stderr
    assert "SendGrid had a problem on its side (500)" in result.stdout
    assert "SendGrid had a problem on its side (503)" in result.stdout
    assert sg.request_count == 3 and sg.received == {"amelia.hughes@example.org": 1, "rahul.patel@example.com": 1}


def test_progress_written_to_a_file_is_a_line_every_few_seconds_not_one_per_batch(monkeypatch):
    """Off a terminal, the first batch, then a line at most every couple of seconds, and the last; a note (a
    pause asked for by the service) is always written."""
    import io

    from rich.console import Console

    import mailroom.cli as cli
    from mailroom.send.dispatch import Progress

    written = io.StringIO()
    clock = [100.0]
    monkeypatch.setattr(cli, "out", Console(file=written, highlight=False, soft_wrap=True))
    monkeypatch.setattr(cli.time, "monotonic", lambda: clock[0])
    with cli._progress_display(5000) as show:
        for done in range(1000, 5001, 1000):
            show(Progress(done=done - 1, sent=done - 1, partial=True))  # one person of a batch: never a line
            show(Progress(done=done, sent=done))
            clock[0] += 0.9
            if done == 2000:
                show(Progress(done=done, sent=done, note="SendGrid asked us to slow down; waiting 12 s"))
    assert written.getvalue().splitlines() == [
        "  1000 of 5000 done (1000 sent)", "  SendGrid asked us to slow down; waiting 12 s",
        "  4000 of 5000 done (4000 sent)", "  5000 of 5000 done (5000 sent)"]
