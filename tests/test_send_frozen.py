"""A send carries exactly the build and the plan the office confirmed, whatever happens meanwhile.

End to end with send.py (a subprocess, as the office runs it) against the outbox or the SendGrid stand-in.
Things that happen "mid-send" happen for real, from the stand-in's ``on_request`` hook while it holds a
request: audiences.csv rewritten in place, compose run again, an unsubscribe posted to the real
webhook server, Ctrl-C sent to the sending process.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import json
import os
import re
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from mailroom.compose.build import Manifest
from mailroom.send.ledger import Ledger
from mailroom.workflows.compose import version_file_names
from mailroom.workflows.send import composed_labels, moment_label
from tests.projects import compose_copy
from tests.send_project import (
    SAMPLE,
    environ,
    many_people,
    run_send,
    send_project,
    start_send_py,
    write_audiences,
)
from tests.sendgrid_events import Signer, event, post, running_server
from tests.sendgrid_standin import Answer, SendGridStandIn

NEWSLETTER = f"newsletters/{SAMPLE}"
PARENTS_HTML, STAFF_HTML = version_file_names("parents")[0], version_file_names("staff")[0]
MARKER = "Recomposed-while-sending"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return send_project(tmp_path / "school")


def newsletter_dir(project: Path) -> Path:
    return project / NEWSLETTER


def ledger_counts(project: Path) -> dict[str, int]:
    with Ledger(project / "mailroom.sqlite3") as ledger:
        return ledger.counts(SAMPLE)


def recompose_with(project: Path, old: str, new: str) -> Manifest:
    """Edit newsletter.md and compose again, as the live preview does on every save."""
    source = newsletter_dir(project) / "newsletter.md"
    text = source.read_text(encoding="utf-8")
    assert old in text
    source.write_text(text.replace(old, new, 1), encoding="utf-8")
    compose_copy(newsletter_dir(project))
    return Manifest.read(newsletter_dir(project) / "build")


def html_of(body: dict[str, Any]) -> str:
    return next(c["value"] for c in body["content"] if c["type"] == "text/html")


def sendgrid_env(project: Path, sg: SendGridStandIn) -> dict[str, str]:
    return environ(project, transport="sendgrid", host=sg.url)


# --- the plan is frozen ------------------------------------------------------------------------------------

def rewrite_in_place(path: Path, keep: int) -> list[str]:
    """Replace every row after the first ``keep`` with other people, half of them unsubscribed, keeping the
    file's size, inode and modification time (so nothing about the file's stamp shows the change).
    Returns the new people's addresses."""
    before = path.stat()
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    header, rows = lines[0], lines[1:]
    others = []
    for i in range(keep, len(rows)):
        address = f"others{i:06d}@example.org"  # as long as parent000000@example.org
        if i % 2:
            rows[i] = f'{address},O{i},Example{i},"parents",unsubscribed\n'  # "O" + "un": the same length
        else:
            rows[i] = f'{address},Oli{i},Example{i},"parents",subscribed\n'
            others.append(address)
    with path.open("r+", encoding="utf-8", newline="") as handle:  # in place: same inode
        handle.write(header + "".join(rows))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_ino, after.st_mtime_ns) == (before.st_size, before.st_ino, before.st_mtime_ns)
    return others


def test_audiences_rewritten_in_place_mid_send_mails_nobody_outside_the_plan(project, sg):
    write_audiences(project / "audiences.csv", many_people(2500))
    planned = {f"parent{i:06d}@example.org" for i in range(2500)}
    others: list[str] = []
    sg.on_request = lambda n: others.extend(rewrite_in_place(project / "audiences.csv", 1000)) if n == 1 else None
    env = sendgrid_env(project, sg)

    result = run_send(project, NEWSLETTER, "--to", "parents", "--yes", "--untested", env=env)
    assert result.returncode == 0, result.stderr
    assert len(others) == 750
    assert set(sg.received) == planned and set(sg.received.values()) == {1}  # the confirmed plan, nobody else
    assert "Done: sent to 2500 people" in result.stdout

    # The next run plans from the file again and says what changed: the 750 subscribed newcomers.
    rerun = run_send(project, NEWSLETTER, "--to", "parents", "--dry-run", env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert "Since the last run: 750 new people on the lists.\n" in rerun.stdout
    assert "parents: 2,500 on the list, 1,750 will receive, 750 left out (750 unsubscribed)" in rerun.stdout
    assert "Already sent earlier (skipped): 1000" in rerun.stdout
    assert "750 people will get it now." in rerun.stdout
    assert sg.request_count == 3


def test_people_planned_and_not_sent_then_taken_off_the_lists_are_left_out_by_the_next_run(project, sg):
    write_audiences(project / "audiences.csv", many_people(2500))
    env = sendgrid_env(project, sg)
    sg.script(Answer(202), Answer(401))  # the second request is refused: 1,500 planned, not sent
    stopped = run_send(project, NEWSLETTER, "--to", "parents", "--yes", "--untested", env=env)
    assert stopped.returncode == 1, stopped.stderr
    assert ledger_counts(project) == {"sent": 1000, "failed": 1000, "pending": 500}
    write_audiences(project / "audiences.csv",
                    [*many_people(2000)[:1200], ("newcomer@example.org", "Nia", "New", "parents")])
    rerun = run_send(project, NEWSLETTER, "--to", "parents", "--yes", "--untested", env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert ("Since the last run: 1 new person on the lists; 1300 people planned last time and not yet sent now "
            "left out (no longer on the lists, unsubscribed or suppressed):" in rerun.stdout)
    assert "  now left out: parent001200@example.org" in rerun.stdout and "  ... and 1290 more" in rerun.stdout
    assert set(sg.received) == {f"parent{i:06d}@example.org" for i in range(1200)} | {"newcomer@example.org"}
    assert set(sg.received.values()) == {1}
    assert ledger_counts(project) == {"sent": 1201, "left_out": 1300}


# --- a suppression that arrives during the send ------------------------------------------------------------

def test_an_unsubscribe_posted_to_the_webhook_mid_send_is_honoured_before_the_next_batch(project, sg):
    write_audiences(project / "audiences.csv", many_people(2500))
    signer = Signer()
    leaving = "parent001500@example.org"  # in the second batch
    with running_server(project / "mailroom.sqlite3", signer.public_key) as webhook:
        def unsubscribe(number: int) -> None:
            if number == 1:
                body = json.dumps([event("unsubscribe", "ev-1", leaving, recipient_id=None)])
                assert post(webhook, body, signer.headers(body)).status == 200

        sg.on_request = unsubscribe
        result = run_send(project, NEWSLETTER, "--to", "parents", "--yes", "--untested", env=sendgrid_env(project, sg))
    assert result.returncode == 0, result.stderr
    assert leaving not in sg.received
    assert len(sg.received) == 2499 and set(sg.received.values()) == {1}
    assert ("Left out during the send: 1 person unsubscribed, bounced or were suppressed after the plan was made"
            in result.stdout)
    assert re.search(r"  1: unsubscribed on \d{4}-\d\d-\d\d, during the send", result.stdout)
    assert ledger_counts(project) == {"sent": 2499, "left_out": 1}


# --- the build is frozen -----------------------------------------------------------------------------------

def test_a_build_edited_by_hand_after_the_test_is_refused_naming_the_file(project):
    env = environ(project)
    write_audiences(project / "audiences.csv", many_people(3))
    tested = run_send(project, NEWSLETTER, "--to", "parents", "--test", "office@oakfield.example.org", env=env)
    assert tested.returncode == 0, tested.stderr
    version = newsletter_dir(project) / "build" / PARENTS_HTML
    version.write_text(version.read_text(encoding="utf-8").replace(
        "</body>", "<script>alert(1)</script></body>"), encoding="utf-8")

    refused = run_send(project, NEWSLETTER, "--to", "parents", "--yes", env=env)
    assert refused.returncode == 3, refused.stderr
    assert refused.stderr.startswith(
        f"Error: {NEWSLETTER}/build/{PARENTS_HTML}: this file was changed after the newsletter was composed, so it "
        "is not what the checks (and any test send) saw; compose the newsletter again (python compose.py "
        f"{NEWSLETTER}), check the preview, then send")
    sent = sorted(p.name for p in (project / "outbox" / SAMPLE).glob("*.eml"))
    assert all(name.startswith("test-") for name in sent)  # only the test copy
    assert ledger_counts(project) == {}


def test_an_image_swapped_in_the_build_is_refused_naming_it(project):
    image = next((newsletter_dir(project) / "build" / "images").iterdir())
    image.write_bytes(image.read_bytes() + b"\0")
    refused = run_send(project, NEWSLETTER, "--to", "parents", "--yes", "--untested", env=environ(project))
    assert refused.returncode == 3
    assert f"{NEWSLETTER}/build/images/{image.name}: this file was changed after the newsletter was composed" \
        in refused.stderr
    assert not (project / "outbox").exists()


def test_a_manifest_edited_to_match_an_edited_file_is_refused(project):
    build = newsletter_dir(project) / "build"
    version = build / PARENTS_HTML
    version.write_text(version.read_text(encoding="utf-8") + "<!-- edited -->", encoding="utf-8")
    data = json.loads((build / "manifest.json").read_text(encoding="utf-8"))
    data["files"][PARENTS_HTML] = hashlib.sha256(version.read_bytes()).hexdigest()
    (build / "manifest.json").write_text(json.dumps(data), encoding="utf-8")
    refused = run_send(project, NEWSLETTER, "--to", "parents", "--yes", "--untested", env=environ(project))
    assert refused.returncode == 3
    assert f"{NEWSLETTER}/build/manifest.json: the manifest was changed after the newsletter was composed" \
        in refused.stderr


def test_compose_during_a_send_changes_nothing_it_sends(project, sg):
    people = many_people(2000) + [(f"staff{i:04d}@example.org", "Sam", f"Staff{i}", "staff") for i in range(5)]
    write_audiences(project / "audiences.csv", people)
    build = newsletter_dir(project) / "build"
    staff_before = (build / STAFF_HTML).read_text(encoding="utf-8")
    recomposed: list[Manifest] = []

    def compose_now(number: int) -> None:
        if number == 1:  # the first parents batch is in flight; the staff version has not been sent yet
            recomposed.append(recompose_with(project, "This week you can learn", f"{MARKER}. This week you can learn"))

    sg.on_request = compose_now
    result = run_send(project, NEWSLETTER, "--to", "parents,staff", "--yes", "--untested",
                      env=sendgrid_env(project, sg))
    assert result.returncode == 0, result.stderr
    assert recomposed and MARKER in (build / STAFF_HTML).read_text(encoding="utf-8")  # compose did run
    assert [len(b["personalizations"]) for b in sg.requests] == [1000, 1000, 5]
    parents = {html_of(b) for b in sg.requests[:2]}
    assert len(parents) == 1  # both parents batches: the same bytes
    staff = html_of(sg.requests[2])
    assert MARKER not in staff and MARKER not in next(iter(parents))
    assert "This week you can learn" in staff and staff != staff_before  # (SendGrid's tags differ from the file's)
    assert len(sg.received) == 2005 and set(sg.received.values()) == {1}
    with Ledger(project / "mailroom.sqlite3") as ledger:
        [(build_hash, _composed, people_sent)] = [(b.build_hash, b.composed_at, b.people)
                                                  for b in ledger.sent_by_build(SAMPLE)]
    assert people_sent == 2005 and build_hash != recomposed[0].build_hash


# --- stopped, recomposed, resumed ----------------------------------------------------------------------------

def test_stopped_recomposed_and_resumed_needs_its_own_consent_and_says_who_has_which(project, sg):
    write_audiences(project / "audiences.csv", many_people(2500))
    env = sendgrid_env(project, sg)
    first = Manifest.read(newsletter_dir(project) / "build")
    sender: dict[str, Any] = {}
    sg.on_request = lambda n: os.kill(sender["pid"], signal.SIGINT) if n == 1 else None
    process = start_send_py(project, NEWSLETTER, "--to", "parents", "--yes", "--untested", env=env)
    sender["pid"] = process.pid
    process.communicate(timeout=120)
    assert process.returncode == 130
    assert len(sg.received) == 1000
    sg.on_request = None

    second = recompose_with(project, "This week you can learn", f"{MARKER}. This week you can learn")
    early, late = composed_labels([first.composed_at, second.composed_at])
    plan_line = (f"New version: The newsletter was composed again since the send began: 1,000 people already have "
                 f"the version composed at {early}; 1,500 people would get this version, composed at {late}.")

    refused = run_send(project, NEWSLETTER, "--to", "parents", "--yes", "--untested", env=env)
    assert refused.returncode == 3, refused.stderr
    assert plan_line in refused.stdout
    assert "Run again with --accept-new-build if the others should get the new version" in refused.stderr
    assert sg.request_count == 1  # --yes alone sent nothing

    declined = run_send(project, NEWSLETTER, "--to", "parents", "--untested", input="1500\nyes\n", env=env)
    assert declined.returncode == 3
    assert "To send this new version to the others, type NEW" in declined.stdout
    assert declined.stderr.strip() == "Error: nothing was sent: the new version was not accepted"
    assert sg.request_count == 1

    accepted = run_send(project, NEWSLETTER, "--to", "parents", "--untested", input="1500\nnew\n", env=env)
    assert accepted.returncode == 0, accepted.stderr
    assert (f"Done: sent to 1500 people. 1,000 people got the version composed at {early}; 1,500 people got the "
            f"version composed at {late}." in accepted.stdout)
    assert "now has it" not in accepted.stdout
    assert len(sg.received) == 2500 and set(sg.received.values()) == {1}
    contents = [html_of(body) for body in sg.requests]
    assert MARKER not in contents[0] and all(MARKER in c for c in contents[1:])
    with Ledger(project / "mailroom.sqlite3") as ledger:
        by_build = {b.build_hash: b.people for b in ledger.sent_by_build(SAMPLE)}
    assert by_build == {first.build_hash: 1000, second.build_hash: 1500}

    flag = run_send(project, NEWSLETTER, "--to", "parents", "--yes", "--accept-new-build", env=env)
    assert flag.returncode == 0 and "Nobody is left to send to" in flag.stdout


# --- a lost ledger -----------------------------------------------------------------------------------------

def test_a_deleted_ledger_is_noticed_and_start_again_sends_again(project):
    write_audiences(project / "audiences.csv", many_people(3))
    env = environ(project)
    done = run_send(project, NEWSLETTER, "--to", "parents", "--yes", "--untested", env=env)
    assert done.returncode == 0, done.stderr
    record = newsletter_dir(project) / "sent.json"
    data = json.loads(record.read_text(encoding="utf-8"))
    assert (data["newsletter"], data["people_sent"], data["ledger"]) == (SAMPLE, 3, "mailroom.sqlite3")
    assert "@" not in record.read_text(encoding="utf-8")  # nothing personal: it may be committed
    outbox = project / "outbox" / SAMPLE
    assert len(list(outbox.glob("*.eml"))) == 3

    for path in project.glob("mailroom.sqlite3*"):
        path.unlink()
    refused = run_send(project, NEWSLETTER, "--to", "parents", "--yes", "--untested", env=env)
    assert refused.returncode == 3
    assert refused.stderr.startswith(
        f"Error: nothing was sent: {NEWSLETTER}/sent.json says this newsletter was already sent to 3 people (last "
        f"on {moment_label(data['last_sent_at'])}), recorded in the ledger mailroom.sqlite3, but the ledger "
        "mailroom.sqlite3 does not exist any more; it may have been deleted, replaced or moved. Sending now could "
        "give everyone a second copy.")
    assert "run again with --start-again" in refused.stderr
    assert len(list(outbox.glob("*.eml"))) == 3

    dry = run_send(project, NEWSLETTER, "--to", "parents", "--dry-run", env=env)
    assert dry.returncode == 0 and "Warning: nothing was sent: " in dry.stderr

    again = run_send(project, NEWSLETTER, "--to", "parents", "--yes", "--untested", "--start-again", env=env)
    assert again.returncode == 0, again.stderr
    assert len(list(outbox.glob("*.eml"))) == 6  # everyone again, as asked
    assert ledger_counts(project) == {"sent": 3}


def test_an_empty_ledger_in_place_of_the_real_one_is_noticed(project):
    write_audiences(project / "audiences.csv", many_people(2))
    env = environ(project)
    assert run_send(project, NEWSLETTER, "--to", "parents", "--yes", "--untested", env=env).returncode == 0
    for path in project.glob("mailroom.sqlite3*"):
        path.unlink()
    Ledger(project / "mailroom.sqlite3").close()  # a fresh, empty ledger
    refused = run_send(project, NEWSLETTER, "--to", "parents", "--yes", "--untested", env=env)
    assert refused.returncode == 3
    assert "but the ledger mailroom.sqlite3 has no record of this newsletter" in refused.stderr


# --- upgrading a ledger keyed the old way ------------------------------------------------------------------

OLD_SENDS = """
CREATE TABLE sends (newsletter TEXT NOT NULL, address_key TEXT NOT NULL, audience TEXT NOT NULL, state TEXT NOT NULL,
    batch_id INTEGER, message_id TEXT, error TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
    PRIMARY KEY (newsletter, address_key));
CREATE TABLE recipients (address_key TEXT PRIMARY KEY, recipient_id TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL);
"""


def test_a_ledger_keyed_the_old_way_is_rekeyed_so_a_resumed_send_skips_who_has_it(project):
    """Before mailroom.addresses, a key was the address trimmed and lower-cased: Zoë's Unicode domain and an
    NFD spelling were keys of their own. Resumed after the upgrade, the send must still see them as sent."""
    nfd = "zoe\u0308@bu\u0308cher.example"
    write_audiences(project / "audiences.csv", [
        ("Zoë@Bücher.example", "Zoë", "Brandt", "parents"), ("noe@example.org", "Noé", "Petit", "parents"),
        ("jose@example.org", "José", "Díaz", "parents")])
    with sqlite3.connect(project / "mailroom.sqlite3") as conn:
        conn.executescript(OLD_SENDS)
        now = "2024-11-08T09:00:00Z"
        conn.executemany("INSERT INTO sends VALUES (?, ?, 'parents', ?, NULL, NULL, NULL, ?, ?)", [
            (SAMPLE, "zoë@bücher.example", "sent", now, now),  # the old key of the CSV's spelling
            (SAMPLE, nfd, "pending", now, now),  # the same person, NFD, planned by another run
            (SAMPLE, "noe@example.org", "sent", now, now)])
        conn.execute("INSERT INTO recipients VALUES ('zoë@bücher.example', 'rid-zoe', ?)", (now,))
    # sent.json as the earlier run would have left it (so the ledger is not taken for a lost one)
    (newsletter_dir(project) / "sent.json").write_text('{"people_sent": 2}', encoding="utf-8")

    dry = run_send(project, NEWSLETTER, "--to", "parents", "--dry-run", env=environ(project))
    assert dry.returncode == 0, dry.stderr
    assert "Already sent earlier (skipped): 2" in dry.stdout and "1 people will get it now." in dry.stdout
    with Ledger(project / "mailroom.sqlite3") as ledger:
        rows = ledger.conn.execute("SELECT address_key, state FROM sends ORDER BY address_key").fetchall()
        ids = ledger.recipient_ids(["zoë@xn--bcher-kva.example"])
    assert [tuple(r) for r in rows] == [("noe@example.org", "sent"), ("zoë@xn--bcher-kva.example", "sent")]
    assert ids == {"zoë@xn--bcher-kva.example": "rid-zoe"}  # the same opaque id as before the upgrade

    # Who had it before the upgrade got a build this ledger cannot name: that needs the office's consent.
    sent = run_send(project, NEWSLETTER, "--to", "parents", "--yes", "--untested", env=environ(project))
    assert sent.returncode == 3
    assert "2 people already have the version composed at an unknown time" in sent.stderr
    sent = run_send(project, NEWSLETTER, "--to", "parents", "--yes", "--untested", "--accept-new-build",
                   env=environ(project))
    assert sent.returncode == 0, sent.stderr
    files = list((project / "outbox" / SAMPLE).glob("*.eml"))
    assert [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)["To"].addresses[0].addr_spec
            for p in files] == ["jose@example.org"]


def test_a_test_send_is_recorded_under_the_address_key(project):
    result = run_send(project, NEWSLETTER, "--to", "parents", "--test", "Office@Bücher.example", env=environ(project))
    assert result.returncode == 0, result.stderr
    with Ledger(project / "mailroom.sqlite3") as ledger:
        [(address,)] = ledger.conn.execute("SELECT address FROM test_sends").fetchall()
    assert address == "office@xn--bcher-kva.example"


def test_a_first_sends_figures_from_the_planner_are_the_ledgers_own(project: Path) -> None:
    """A newsletter's first send counts its plan from the planner's groups instead of asking the ledger;
    the ledger, asked of the same draft, must say exactly the same, languages and every list included."""
    from collections import Counter

    from mailroom.audience.lists import load_audience
    from mailroom.compose.build import freeze_build, load_build
    from mailroom.send.dispatch import _first_send_figures, plan_send
    from tests.send_project import settings_for

    rows = [(f"p{i}@example.org", f"Pat{i}", "Example", lists)
            for i, lists in enumerate(["parents", "staff", "parents,staff", "parents"] * 5)]
    write_audiences(project / "audiences.csv", rows)
    settings = settings_for(project)
    frozen = freeze_build(load_build(newsletter_dir(project), project))
    audience = load_audience(None, settings, ["parents", "staff"], {}, version_order=frozen.build.manifest.audiences)
    with Ledger(project / "mailroom.sqlite3") as ledger:
        plan = plan_send(frozen, audience.recipients, ["parents", "staff"], ledger)
        asked = ledger.plan_figures(SAMPLE, resend_uncertain=False)
    assert not asked.planned_before and (asked.now_left_out, asked.sent_by_build) == (0, ())

    def by_group(groups) -> Counter[tuple[str, str, str, object]]:
        counted: Counter[tuple[str, str, str, object]] = Counter()
        for group in groups:
            counted[group.greeting_list, group.version, group.language, group.state] += group.people
        return counted

    assert by_group(_first_send_figures(frozen, audience.recipients).groups) == by_group(asked.groups)
    assert sum(by_group(asked.groups).values()) == 20 and len(by_group(asked.groups)) >= 3
    assert plan.to_send == {version: sum(g.people for g in asked.groups if g.version == version)
                            for version in plan.to_send}
    assert (plan.planned_before, plan.now_left_out, plan.new_people) == (False, 0, 0)
