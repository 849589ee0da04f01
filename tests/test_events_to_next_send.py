"""End to end: events arriving at the webhook change who the next send's plan includes."""

import json
import shutil
from pathlib import Path

from mailroom.audience.lists import load_audience
from mailroom.events.intake import import_events_file
from mailroom.events.report import build_report
from mailroom.events.suppressions import suppressed_addresses
from mailroom.send.ledger import BatchKind, Ledger, Outcome, SendState
from mailroom.settings import load_settings
from tests.sendgrid_events import Signer, event, post, running_server

ROOT = Path(__file__).resolve().parent.parent
SLUG = "2024-11-08-online-safety"

AUDIENCES = """email,first_name,last_name,lists,status
ada.parent@example.org,Ada,Parent,parents,subscribed
bob.carer@example.com,Bob,Carer,parents,subscribed
cat.parent@example.org,Cat,Parent,parents,subscribed
dee.staff@example.org,Dee,Staff,staff,subscribed
"""


def make_project(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "school.toml", tmp_path / "school.toml")
    shutil.copytree(ROOT / "assets", tmp_path / "assets")
    (tmp_path / "audiences.csv").write_text(AUDIENCES, encoding="utf-8")
    (tmp_path / "newsletters" / SLUG).mkdir(parents=True)
    return tmp_path


def test_after_a_bounce_and_an_unsubscribe_the_next_plan_leaves_both_out(tmp_path):
    root = make_project(tmp_path)
    signer = Signer()
    settings = load_settings(root, environ={"SENDGRID_WEBHOOK_PUBLIC_KEY": signer.public_key})
    body = json.dumps([
        event("bounce", "ev-1", "Ada.Parent@example.org", type="bounce", timestamp=1_763_629_200),
        event("unsubscribe", "ev-2", "bob.carer@example.com", recipient_id="r-bob", timestamp=1_763_715_600),
        event("delivered", "ev-3", "cat.parent@example.org", recipient_id="r-cat"),
    ])
    with running_server(settings.db_path, settings.sendgrid.webhook_public_key) as server:
        assert post(server, body, signer.headers(body)).status == 200

    plan = load_audience(root / "audiences.csv", settings, ["parents", "staff"],
                         suppressed_addresses(settings.db_path))
    assert [r.key for r in plan.recipients] == ["cat.parent@example.org", "dee.staff@example.org"]
    left = {(o.email, o.reason, o.detail) for o in plan.left_out}
    assert left == {
        ("ada.parent@example.org", "suppressed", "bounced on 2025-11-20"),
        ("bob.carer@example.com", "suppressed", "unsubscribed on 2025-11-21"),
    }
    assert plan.summaries["parents"].left_out == {"suppressed": 2}


def test_sent_comes_from_the_ledger_when_it_knows_the_newsletter(tmp_path):
    root = make_project(tmp_path)
    settings = load_settings(root, environ={})
    keys = ["ada.parent@example.org", "bob.carer@example.com", "cat.parent@example.org"]
    with Ledger(settings.db_path) as ledger:
        ledger.recipient_ids(keys)
        batch = ledger.begin_batch(newsletter=SLUG, audience="parents", kind=BatchKind.LIVE, transport="sendgrid",
                                   build_hash="abc", keys=keys)
        ledger.record_outcomes(batch, SLUG, BatchKind.LIVE, [Outcome(k, SendState.SENT, "msg-1") for k in keys[:2]])
    events_file = tmp_path / "events.json"
    events_file.write_text(json.dumps([event("processed", f"ev-{i}", recipient_id=f"r-{i}") for i in range(5)]))
    import_events_file(settings.db_path, events_file)

    report = build_report(settings, root / "newsletters" / SLUG)
    assert report.sent_from == "the send ledger"
    [parents] = report.audiences
    assert parents.sent == 2  # confirmed by the transport; the third is still in flight
    assert not any("processed events" in note for note in report.notes)
