"""The SendGrid transport and the dispatch loop against a stand-in SendGrid on 127.0.0.1.

Every request body is checked by the stand-in against mail_send.schema.json and the limits in docs/sendgrid.md.
Waiting between retries goes through an injected ``sleep`` that records the delays, so these run fast.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mailroom.compose.build import freeze_build, load_build
from mailroom.errors import RefusedForSafety
from mailroom.send.dispatch import Dispatcher, DispatchReport, PlannedBatches, RetryPolicy, StopReason, plan_send
from mailroom.send.ledger import Ledger, SendState
from mailroom.send.transports.base import Batch, BatchResult
from mailroom.send.transports.sendgrid import SendGridTransport
from mailroom.workflows.send import LivePlan, SendResult, SendSession
from tests.send_project import API_KEY, SAMPLE, many_people, send_project, settings_for, write_audiences
from tests.sendgrid_standin import Answer, SendGridStandIn

SENT, FAILED, UNCERTAIN = SendState.SENT, SendState.FAILED, SendState.UNCERTAIN


@pytest.fixture
def project(tmp_path: Path) -> Path:
    # SendGrid's own answer is the stand-in's, which checks a 1,000-person body against the schema: that can
    # take seconds on a busy machine, and no test here is about the timeout (that one makes its own project).
    return send_project(tmp_path / "school", timeout=30.0)


class Run:
    """In-process sends of the sample newsletter through SendGrid (the stand-in), by send.py's own session.

    Waits between retries are recorded in ``sleeps`` instead of slept; afterwards ``counts``, ``plan``
    (what a next run would do) and ``batches`` show the ledger.
    """

    def __init__(self, folder: Path, sg: SendGridStandIn, people: list[tuple[str, str, str, str]] | None = None,
                 **transport_options: int) -> None:
        self.folder = folder
        self.transport_options = transport_options  # e.g. a small max_request_bytes
        write_audiences(folder / "audiences.csv", people if people is not None else many_people(5))
        self.settings = settings_for(folder, transport="sendgrid", host=sg.url)
        self.build = load_build(folder / "newsletters" / SAMPLE, root=folder)
        self.sleeps: list[float] = []

    def __call__(self, lists: tuple[str, ...] = ("parents",), *, sandbox: bool = False, resend: bool = False,
                 mark_sent: bool = False, policy: RetryPolicy | None = None, stop_after_first: bool = False,
                 clock: Callable[[], float] = time.time) -> DispatchReport:
        transport = SendGridTransport(self.settings, clock=clock, **self.transport_options)
        session = SendSession(self.settings, self.build.newsletter_dir, lists, sandbox=sandbox, transport=transport,
                              policy=policy, sleep=self.sleeps.append, rng=random.Random(7))
        with session:
            if stop_after_first:
                real = transport.send_batch

                def send_then_ctrl_c(batch: Batch) -> BatchResult:
                    session.stop.set()  # Ctrl-C arrives while the first request is on its way
                    return real(batch)

                transport.send_batch = send_then_ctrl_c  # type: ignore[method-assign]
            plan = session.plan_live(resend_uncertain=resend, mark_uncertain_sent=mark_sent)
            try:
                self.result: SendResult = session.send_live(plan, untested=True)
            finally:
                self.counts = session.ledger.counts(self.build.slug)
                self.plan: LivePlan = session.plan_live()
                self.batches = session.ledger.batch_rows(self.build.slug)
        return self.result.report


def test_2500_people_go_in_three_requests_each_once(project, sg):
    run = Run(project, sg, many_people(2500))
    report = run()
    assert sg.request_count == 3
    assert [len(body["personalizations"]) for body in sg.requests] == [1000, 1000, 500]
    assert len(sg.received) == 2500 and set(sg.received.values()) == {1}
    assert report.sent == 2500 and run.counts == {SENT: 2500}
    assert [b["message_id"] for b in run.batches] == sg.message_ids  # X-Message-Id stored per batch
    assert [(b["state"], b["attempts"], b["error"]) for b in run.batches] == [("sent", 1, None)] * 3
    assert all(b["finished_at"] for b in run.batches)
    assert run.plan.total == 0 and run.plan.counts.already_sent == 2500



def test_a_row_added_during_a_send_waits_for_the_next_run(project, sg):
    """The send reads the plan frozen in the ledger, not audiences.csv: a row added mid-send is not mailed
    by this run, and the next run names it as new and sends it."""
    run = Run(project, sg, many_people(2500))

    def add_a_row(number: int) -> None:
        if number == 1:  # someone adds a row while the send is under way
            with (project / "audiences.csv").open("a", encoding="utf-8") as handle:
                handle.write("late.parent@example.org,Late,Parent,parents,subscribed\n")

    sg.on_request = add_a_row
    report = run()
    assert report.sent == 2500 and run.counts == {SENT: 2500} and "late.parent@example.org" not in sg.received
    assert run.plan.total == 1 and run.plan.counts.new_people == 1 and run.plan.counts.now_left_out == 0
    report = run()
    assert report.sent == 1 and run.counts == {SENT: 2501}
    assert len(sg.received) == 2501 and set(sg.received.values()) == {1}


def test_request_body_carries_one_person_per_personalization_and_only_opaque_ids(project, sg):
    people = [("amelia.hughes@example.org", 'Am<b>elia "A"', "Hughes", "parents"),
              ("zoe@example.com", "", "Smith", "parents")]
    run = Run(project, sg, people)
    run()
    body = sg.requests[0]
    first, second = body["personalizations"]
    assert first["to"] == [{"email": "amelia.hughes@example.org", "name": 'Am<b>elia "A" Hughes'}]
    rid = first["custom_args"]["recipient_id"]
    assert first["custom_args"] == {"newsletter": SAMPLE, "audience": "parents", "recipient_id": rid}
    assert "amelia" not in rid.lower() and len(rid) >= 16
    # HTML tag escaped, text tag raw; an empty first name falls back to the list's greeting
    assert first["substitutions"]["%%h:greeting%%"] == "Dear Am&lt;b&gt;elia &quot;A&quot;"
    assert first["substitutions"]["%%t:greeting%%"] == 'Dear Am<b>elia "A"'
    assert second["substitutions"]["%%t:greeting%%"] == "Dear Parent/Carer"
    unsubscribe = f"https://www.oakfield.example.org/newsletter/unsubscribe?r={rid}"
    assert first["substitutions"]["%%h:unsubscribe_url%%"] == unsubscribe
    mailto = "<mailto:office@oakfield.example.org?subject=unsubscribe>"
    assert first["headers"]["List-Unsubscribe"] == f"<{unsubscribe}>, {mailto}"
    assert body["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text, html = body["content"]
    assert text["type"] == "text/plain" and "%%t:greeting%%" in text["value"] and "%%h:" not in text["value"]
    assert html["type"] == "text/html" and "%%h:greeting%%" in html["value"] and "%%greeting%%" not in html["value"]
    assert 'src="cid:school-logo.png"' in html["value"] and 'src="images/' not in html["value"]
    inline = {a["content_id"]: a for a in body["attachments"]}
    assert set(inline) == {"school-logo.png", "home-learning-hub.png"}
    assert all(a["disposition"] == "inline" for a in inline.values())
    assert body["categories"] == ["newsletter", SAMPLE]
    assert body["tracking_settings"]["click_tracking"]["enable"] is True
    assert body["tracking_settings"]["open_tracking"] == {"enable": False}
    assert "asm" not in body and "mail_settings" not in body
    # nobody else's address or name anywhere in a personalization
    assert "zoe@example.com" not in str(first) and "Amelia" not in str(second)


def test_school_settings_turn_on_open_tracking_and_the_unsubscribe_group(tmp_path, sg):
    folder = send_project(tmp_path / "school", school_toml={
        "open_tracking = false": "open_tracking = true", "# asm_group_id = 12345": "asm_group_id = 4242"})
    run = Run(folder, sg)
    run()
    body = sg.requests[0]
    assert body["tracking_settings"]["open_tracking"] == {"enable": True}
    assert body["asm"] == {"group_id": 4242}


def test_sandbox_mode_is_validated_but_nobody_counts_as_sent(project, sg):
    run = Run(project, sg)
    report = run(sandbox=True)
    assert sg.requests[0]["mail_settings"] == {"sandbox_mode": {"enable": True}}
    assert report.sent == 5  # SendGrid answered 200
    assert run.counts == {} and run.plan.total == 5  # but the real send is still to do


def test_429_waits_for_the_reset_time_then_sends(project, sg):
    now = 1_900_000_000.0
    sg.script(Answer(429, headers={"x-RATELIMIT-reset": str(int(now) + 12)}, errors=["too many requests"]))
    run = Run(project, sg)
    report = run(clock=lambda: now)
    assert sg.request_count == 2 and run.sleeps == [12.0]
    assert report.sent == 5 and set(sg.received.values()) == {1}


def test_429_with_retry_after_in_seconds(project, sg):
    sg.script(Answer(429, headers={"retry-after": "3"}))
    run = Run(project, sg)
    run()
    assert run.sleeps == [3.0] and run.counts == {SENT: 5}


def test_500s_are_retried_with_growing_backoff_then_sent(project, sg):
    sg.script(Answer(500), Answer(503), Answer(502))
    run = Run(project, sg)
    report = run(policy=RetryPolicy(base_delay=2.0, max_delay=60.0))
    assert sg.request_count == 4 and report.sent == 5 and run.counts == {SENT: 5}
    assert len(run.sleeps) == 3
    for n, delay in enumerate(run.sleeps):  # half to full of 2, 4, 8 seconds
        assert 2.0 * 2 ** n / 2 <= delay <= 2.0 * 2 ** n
    assert set(sg.received.values()) == {1}


def test_backoff_is_capped():
    policy = RetryPolicy(base_delay=2.0, max_delay=30.0)
    rng = random.Random(1)
    assert max(policy.delay(n, None, rng) for n in range(1, 20)) <= 30.0
    assert policy.delay(1, 5000.0, rng) == policy.max_wait


def test_5xx_forever_gives_up_after_bounded_attempts_and_a_rerun_resumes(project, sg):
    sg.script(*[Answer(500)] * 4)
    run = Run(project, sg)
    report = run(policy=RetryPolicy(max_attempts=4))
    assert report.stopped == StopReason.GAVE_UP and sg.request_count == 4 and len(run.sleeps) == 3
    assert [(b["state"], b["attempts"]) for b in run.batches] == [("failed", 4)]
    assert run.counts == {FAILED: 5} and sum(sg.received.values()) == 0
    assert run.plan.counts.retrying == 5 and run.plan.total == 5  # known not accepted: retried next time
    report = run()
    assert report.sent == 5 and set(sg.received.values()) == {1}


def test_401_stops_at_once_with_sendgrids_message_and_no_retry(project, sg):
    sg.script(Answer(401))
    run = Run(project, sg, many_people(1500))
    report = run()
    assert report.stopped == StopReason.REFUSED and sg.request_count == 1 and run.sleeps == []
    assert "wrong or has been revoked" in report.stop_message
    assert "The provided authorization grant is invalid, expired, or revoked." in report.stop_message
    assert API_KEY not in report.stop_message
    assert run.counts == {FAILED: 1000, "pending": 500}  # everyone is planned before the first request
    assert run.plan.total == 1500  # nothing counts as sent


def test_403_names_the_unverified_sender(project, sg):
    sg.script(Answer(403, errors=["The from address does not match a verified Sender Identity."]))
    report = Run(project, sg)()
    assert report.stopped == StopReason.REFUSED
    assert "office@oakfield.example.org is not verified" in report.stop_message
    assert "does not match a verified Sender Identity." in report.stop_message


def test_dropped_connection_is_uncertain_not_failed_and_is_not_retried(project, sg):
    sg.script(Answer(drop=True))
    run = Run(project, sg, many_people(1500))
    report = run()
    assert report.stopped == StopReason.UNKNOWN_OUTCOME and sg.request_count == 1 and run.sleeps == []
    assert run.counts == {UNCERTAIN: 1000, "pending": 500}
    [batch] = run.plan.uncertain
    assert batch.audience == "parents" and len(batch.keys) == 1000 and "may or may not" in batch.error
    assert run.plan.total == 500  # the rest still to send; the uncertain ones wait for a decision


def test_no_answer_within_the_timeout_is_uncertain(tmp_path, sg):
    sg.script(Answer(hang=5.0))
    run = Run(send_project(tmp_path / "school", timeout=0.25), sg)
    started = time.monotonic()
    report = run()
    assert time.monotonic() - started < 4.0  # school.toml timeout_seconds = 0.25
    assert report.stopped == StopReason.UNKNOWN_OUTCOME and run.counts == {UNCERTAIN: 5}


def test_refused_connection_is_known_not_accepted(project, sg):
    run = Run(project, sg)
    closed = SendGridStandIn(api_key=API_KEY)
    url = closed.url
    closed.server.server_close()  # nothing listens there any more
    run.settings = settings_for(project, transport="sendgrid", host=url)
    report = run(policy=RetryPolicy(max_attempts=3))
    assert report.stopped == StopReason.GAVE_UP and len(run.sleeps) == 2
    assert "could not reach SendGrid (the connection was refused)" in report.stop_message
    assert run.counts == {FAILED: 5}  # not uncertain: nothing got there


def test_ctrl_c_stops_after_the_batch_in_flight_and_records_it(project, sg):
    run = Run(project, sg, many_people(2500))
    report = run(stop_after_first=True)
    assert report.stopped == StopReason.INTERRUPTED and sg.request_count == 1
    assert run.counts == {SENT: 1000, "pending": 1500}
    report = run()  # the rerun carries on with the rest
    assert sg.request_count == 3 and report.sent == 1500 and set(sg.received.values()) == {1}


def test_resume_checkpoint_only_moves_on_confirmed_sends(project, sg):
    """cf. listmonk #2070/#2278/#2313: a crash between request and answer must not count as sent."""
    run = Run(project, sg, many_people(2500))
    seen_in_flight = []
    with Ledger(run.settings.db_path) as ledger:
        real_post = SendGridTransport.send_batch

        def spy(self, batch):
            rows = ledger.states(run.build.slug, [m.key for m in batch.messages])
            seen_in_flight.append({r.state for r in rows.values()})
            if len(seen_in_flight) == 2:
                raise SystemExit("the process died while the second request was on its way")
            return real_post(self, batch)

        SendGridTransport.send_batch = spy
        try:
            with pytest.raises(SystemExit):
                run()
        finally:
            SendGridTransport.send_batch = real_post
    assert seen_in_flight == [{"in_flight"}, {"in_flight"}]  # written before each request went out
    with pytest.raises(RefusedForSafety, match="some people may or may not already have this newsletter"):
        run()  # the rerun: batch 2 is uncertain, so nothing goes until the office decides
    assert sg.request_count == 1 and run.counts == {SENT: 1000, UNCERTAIN: 1000, "pending": 500}
    assert [len(b.keys) for b in run.plan.uncertain] == [1000]
    report = run(mark_sent=True)  # the office decides: count them as sent; batch 3 goes
    assert run.counts == {SENT: 2500}
    assert set(sg.received.values()) == {1} and len(sg.received) == 1500
    assert report.sent == 500


def test_a_repeated_address_is_queued_once_even_if_the_list_repeats_it(project, sg):
    """The audience module de-duplicates; the batching does not rely on it alone."""
    from tests.test_send_outbox import Person

    run = Run(project, sg)
    people = [Person(f"p{i}@example.org", "Pat", "Example") for i in range(3)] * 2
    people += [Person("P1@example.org", "Pat", "Example")]
    transport = SendGridTransport(run.settings)
    frozen = freeze_build(run.build)
    with Ledger(run.settings.db_path) as ledger, transport:
        plan_send(frozen, people, ["parents"], ledger)
        ledger.freeze_plan(frozen.slug, build_hash=frozen.build_hash, composed_at="", resend_uncertain=False)
        batches = PlannedBatches(frozen, run.settings, ledger, ["parents"], 2)
        report = Dispatcher(transport, ledger, newsletter=run.build.slug, build_hash=run.build.build_hash).run(
            batches)
    assert report.sent == 3 and sg.received == {"p0@example.org": 1, "p1@example.org": 1, "p2@example.org": 1}
