"""The SMTP transport against a real SMTP server (aiosmtpd on 127.0.0.1), through dispatch and the ledger,
and end to end through send.py."""

from __future__ import annotations

import csv
import itertools
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from mailroom.errors import ConfigError
from mailroom.send.dispatch import RETRY_SCALE_VARIABLE, DispatchReport, StopReason
from mailroom.send.ledger import Ledger, SendState
from mailroom.send.transports import make_transport
from mailroom.send.transports.smtp import AUTH_REFUSED, SmtpTransport, smtp_plan_notes
from mailroom.settings import Settings, load_settings
from mailroom.workflows.send import SendSession
from tests.send_project import RETRY_SCALE, send_project, write_audiences
from tests.smtp_server import DROP, Authenticator, FakeClock, ScriptedHandler, self_signed_cert, start_server

REPO = Path(__file__).resolve().parent.parent
SLUG = "2024-11-08-online-safety"
PASSWORD = "S3cret-pa55word-never-shown"
USERNAME = "office@oakfield.example.org"
SENT, FAILED = SendState.SENT, SendState.FAILED


# --- fixtures ----------------------------------------------------------------------------------------

@pytest.fixture
def project(tmp_path: Path) -> Path:
    return send_project(tmp_path / "school")


@pytest.fixture
def handler() -> ScriptedHandler:
    return ScriptedHandler()


@pytest.fixture
def server(handler: ScriptedHandler) -> Iterator[object]:
    controller = start_server(handler, authenticator=Authenticator(USERNAME, PASSWORD))
    yield controller
    controller.stop()


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMTP_", "MAILROOM_", "SENDGRID_"))}
    env["PYTHONPATH"] = str(REPO)
    env[RETRY_SCALE_VARIABLE] = RETRY_SCALE  # real backoff, scaled down: never slept through
    env.update(extra)
    return env


def smtp_environ(port: int, **extra: str) -> dict[str, str]:
    return {"MAILROOM_TRANSPORT": "smtp", "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port),
            "SMTP_SECURITY": "none", "SMTP_USERNAME": USERNAME, "SMTP_PASSWORD": PASSWORD, **extra}


def settings_for(project: Path, port: int, **extra: str) -> Settings:
    return load_settings(project, environ=smtp_environ(port, **extra))


def people(count: int, audience: str = "parents") -> list[Person]:
    return [Person(f"parent{i:03d}@example.org", f"First{i:03d}", f"Last{i:03d}", audience) for i in range(count)]


class Person(NamedTuple):
    """One row of the audiences.csv a test writes."""

    email: str
    first_name: str
    last_name: str
    audience: str

    @property
    def key(self) -> str:
        return self.email.lower()

    @property
    def version(self) -> str:
        return self.audience


def dispatch(settings: Settings, transport: SmtpTransport, recipients: list[Person],
             sleeps: list[float] | None = None) -> tuple[DispatchReport, Ledger]:
    """Send to ``recipients`` (written to audiences.csv) by send.py's own session; the ledger stays open."""
    write_audiences(settings.root / "audiences.csv", [tuple(p) for p in recipients])  # type: ignore[misc]
    pauses = sleeps if sleeps is not None else []
    with SendSession(settings, settings.root / "newsletters" / SLUG, ["parents"], transport=transport,
                     sleep=pauses.append) as session:
        # start_again: some tests send the one project twice, with a second, empty ledger, on purpose
        result = session.send_live(session.plan_live(), untested=True, start_again=True)
    return result.report, Ledger(settings.db_path)


def port_of(server: object) -> int:
    return int(server.port)  # type: ignore[attr-defined]


# --- delivery --------------------------------------------------------------------------------------------

def test_each_person_gets_one_message_addressed_to_them_alone(project: Path, server: object,
                                                             handler: ScriptedHandler) -> None:
    settings = settings_for(project, port_of(server))
    recipients = people(60)
    recipients[7] = Person("zoe@example.org", "Zoë <b>&", "O'Neil", "parents")
    transport = SmtpTransport(settings)
    report, ledger = dispatch(settings, transport, recipients)

    assert report.sent == 60 and report.failed == 0 and report.uncertain == 0
    assert sorted(handler.to_addresses()) == sorted(p.email for p in recipients)
    assert transport.connections == 1  # one connection carried every message
    for received in handler.received:
        (address,) = received.rcpt_tos
        assert received.mail_from == settings.sender.email
        message = received.parsed()
        assert message.get_all("To") and len(message.get_all("To")) == 1
        assert message["To"].addresses[0].addr_spec == address
        assert not message.get_all("Cc") and not message.get_all("Bcc")
        others = [p for p in recipients if p.email != address]
        raw = received.content.decode("utf-8", "replace")
        assert not any(p.email in raw or p.first_name in raw for p in others)
    zoe = next(r for r in handler.received if r.rcpt_tos == ["zoe@example.org"]).parsed()
    assert zoe["To"].addresses[0].display_name == "Zoë <b>& O'Neil"
    text = zoe.get_body(("plain",)).get_content()
    html = zoe.get_body(("html",)).get_content()
    assert "Dear Zoë <b>&" in text
    assert "Dear Zoë &lt;b&gt;&amp;" in html and "Zoë <b>" not in html
    assert ledger.counts(SLUG) == {SendState.SENT: 60}


def test_421_part_way_defers_the_rest_which_are_retried_and_nobody_gets_two(
        project: Path, server: object, handler: ScriptedHandler) -> None:
    handler.on_mail = lambda n: "421 4.7.0 Too many messages, closing connection" if n == 5 else None
    settings = settings_for(project, port_of(server))
    recipients = people(30)
    transport = SmtpTransport(settings)
    sleeps: list[float] = []
    report, ledger = dispatch(settings, transport, recipients, sleeps)

    assert report.sent == 30 and report.failed == 0
    assert sorted(handler.to_addresses()) == sorted(p.email for p in recipients)  # each exactly once
    assert len(sleeps) == 1 and sleeps[0] > 0  # one pause (dispatch's backoff) before trying the rest again
    assert transport.connections == 2
    assert ledger.counts(SLUG) == {SendState.SENT: 30}


def test_a_4xx_for_one_message_is_retried_later_while_the_others_go_on(
        project: Path, server: object, handler: ScriptedHandler) -> None:
    handler.on_data = lambda n, rcpt: "451 4.3.0 Temporary problem, try later" if n == 2 else None
    settings = settings_for(project, port_of(server))
    recipients = people(10)
    sleeps: list[float] = []
    report, _ledger = dispatch(settings, SmtpTransport(settings), recipients, sleeps)

    assert report.sent == 10
    assert sorted(handler.to_addresses()) == sorted(p.email for p in recipients)
    assert handler.to_addresses()[-1] == recipients[1].email  # the deferred one came last, after a pause
    assert len(sleeps) == 1


def test_connection_dropped_before_the_message_is_handed_over_reconnects_and_retries(
        project: Path, server: object, handler: ScriptedHandler) -> None:
    handler.on_mail = lambda n: DROP if n == 4 else None
    settings = settings_for(project, port_of(server))
    recipients = people(12)
    transport = SmtpTransport(settings)
    sleeps: list[float] = []
    report, _ledger = dispatch(settings, transport, recipients, sleeps)

    assert report.sent == 12 and report.uncertain == 0
    assert sorted(handler.to_addresses()) == sorted(p.email for p in recipients)
    assert transport.connections == 2 and sleeps == []  # reconnected at once, no pause needed


def test_connection_dropped_after_the_message_went_out_leaves_that_person_uncertain(
        project: Path, server: object, handler: ScriptedHandler) -> None:
    handler.on_data = lambda n, rcpt: DROP if n == 3 else None
    settings = settings_for(project, port_of(server))
    recipients = people(8)
    report, ledger = dispatch(settings, SmtpTransport(settings), recipients)

    assert report.sent == 7 and report.uncertain == 1
    lost = recipients[2].key
    assert ledger.states(SLUG, [lost])[lost].state == SendState.UNCERTAIN
    (batch,) = ledger.uncertain_batches(SLUG)
    assert batch.keys == (lost,)
    assert ledger.states(SLUG, [lost])[lost].error.startswith(
        "the connection to the SMTP server was lost after the message was handed over, before the server "
        "confirmed it")
    assert lost not in handler.to_addresses() and len(handler.received) == 7


def test_a_550_for_one_address_does_not_stop_the_others(project: Path, server: object,
                                                        handler: ScriptedHandler) -> None:
    recipients = people(10)
    handler.rcpt_replies[recipients[4].email] = "550 5.1.1 <parent004@example.org>: Recipient address rejected"
    settings = settings_for(project, port_of(server))
    sleeps: list[float] = []
    report, ledger = dispatch(settings, SmtpTransport(settings), recipients, sleeps)

    assert report.sent == 9 and report.failed == 1 and sleeps == []  # a refusal is not retried
    row = ledger.states(SLUG, [recipients[4].key])[recipients[4].key]
    assert row.state == SendState.FAILED
    assert row.error == ("the SMTP server refused it: 550 5.1.1 <parent004@example.org>: "
                         "Recipient address rejected")
    assert sorted(handler.to_addresses()) == sorted(p.email for p in recipients if p is not recipients[4])


def test_wrong_password_stops_with_a_plain_message_that_never_shows_it(project: Path, server: object,
                                                                      handler: ScriptedHandler) -> None:
    settings = settings_for(project, port_of(server), SMTP_PASSWORD="not-the-right-one-XYZ")
    report, ledger = dispatch(settings, SmtpTransport(settings), people(3))

    assert report.stopped == StopReason.REFUSED and report.stop_message == AUTH_REFUSED
    assert AUTH_REFUSED.startswith("the SMTP username or password was not accepted")
    assert "not-the-right-one-XYZ" not in AUTH_REFUSED and handler.received == []
    assert ledger.counts(SLUG) == {SendState.FAILED: 3}  # known not sent: a rerun with the right password sends them


# --- the rate cap ---------------------------------------------------------------------------------------

def test_the_rate_cap_holds_measured_on_the_servers_side(project: Path, server: object,
                                                          handler: ScriptedHandler) -> None:
    clock = FakeClock()
    handler.clock = clock
    settings = settings_for(project, port_of(server))
    settings = settings.__class__(**{**settings.__dict__, "smtp": settings.smtp.__class__(
        **{**settings.smtp.__dict__, "messages_per_minute": 30})})
    transport = SmtpTransport(settings, clock=clock, sleep=clock.sleep)
    report, _ledger = dispatch(settings, transport, people(45))

    times = [r.at for r in handler.received]
    assert report.sent == 45 and len(times) == 45
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 2.0 - 1e-9  # 30 a minute: one every 2 seconds, never a burst
    assert all(sum(1 for t in times if start <= t < start + 60) <= 30 for start in times)
    assert times[-1] - times[0] == pytest.approx(44 * 2.0)
    assert transport.max_batch_size == 10  # ~20 s of sending per batch, so Ctrl-C is answered quickly


def test_no_cap_means_no_waiting(project: Path, server: object, handler: ScriptedHandler) -> None:
    clock = FakeClock()
    settings = settings_for(project, port_of(server))
    transport = SmtpTransport(settings, clock=clock, sleep=clock.sleep)
    dispatch(settings, transport, people(20))
    assert clock.slept == 0 and len(handler.received) == 20


def test_plan_notes_give_the_time_at_the_cap_and_warn_past_the_daily_limit(project: Path) -> None:
    settings = settings_for(project, 2525)
    smtp = settings.smtp.__class__(**{**settings.smtp.__dict__, "messages_per_minute": 30, "daily_limit": 10000})
    settings = settings.__class__(**{**settings.__dict__, "smtp": smtp})
    assert smtp_plan_notes(settings, 12000) == [
        "At 30 messages a minute (messages_per_minute in school.toml) this send takes about 6 hours 40 minutes; "
        "keep this computer on until it ends.",
        "Warning: 12,000 messages is more than the 10,000 a day the mail server allows (daily_limit in "
        "school.toml). It will probably start refusing part-way; run the same command again tomorrow and it "
        "carries on where it stopped.",
    ]
    assert smtp_plan_notes(settings, 20) == [
        "At 30 messages a minute (messages_per_minute in school.toml) this send takes about 1 minute; keep "
        "this computer on until it ends."]


# --- security --------------------------------------------------------------------------------------------

def test_starttls_with_a_context_that_trusts_the_servers_certificate(project: Path, tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    handler = ScriptedHandler()
    controller = start_server(handler, authenticator=Authenticator(USERNAME, PASSWORD), tls_context=server_context)
    try:
        settings = settings_for(project, controller.port, SMTP_SECURITY="starttls")
        trusting = ssl.create_default_context(cafile=str(cert))
        report, _ledger = dispatch(settings, SmtpTransport(settings, ssl_context=trusting), people(3))
        assert report.sent == 3 and len(handler.received) == 3

        # the same server with the system's trust store: it cannot prove who it is, so nothing is sent
        settings2 = settings_for(project, controller.port, SMTP_SECURITY="starttls",
                                 MAILROOM_DB=str(tmp_path / "other.sqlite3"))
        report2, _ = dispatch(settings2, SmtpTransport(settings2), people(2))
        assert report2.stopped == StopReason.REFUSED
        assert report2.stop_message.startswith(f"the SMTP server 127.0.0.1:{controller.port} did not prove who it is")
        assert len(handler.received) == 3
    finally:
        controller.stop()


def test_ssl_from_the_start(project: Path, tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    handler = ScriptedHandler()
    controller = start_server(handler, implicit_tls=server_context)
    try:
        settings = load_settings(project, environ={
            "MAILROOM_TRANSPORT": "smtp", "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(controller.port),
            "SMTP_SECURITY": "ssl"})
        trusting = ssl.create_default_context(cafile=str(cert))
        report, _ledger = dispatch(settings, SmtpTransport(settings, ssl_context=trusting), people(2))
        assert report.sent == 2 and len(handler.received) == 2
    finally:
        controller.stop()


def test_a_password_is_never_sent_unencrypted_to_another_computer(project: Path) -> None:
    settings = load_settings(project, environ={**smtp_environ(587), "SMTP_HOST": "smtp.office365.example.com"})
    with pytest.raises(ConfigError) as caught:
        make_transport(settings)
    assert str(caught.value) == (
        "SMTP_SECURITY is none, so the SMTP password would cross the network unprotected; set SMTP_SECURITY "
        "to starttls (port 587) or ssl (port 465)")


# --- end to end through send.py --------------------------------------------------------------------------

AUDIENCES = """email,first_name,last_name,lists,status
amelia.hughes@example.org,Amelia,Hughes,parents,subscribed
rahul.patel@example.com,Rahul,Patel,parents,subscribed
grace.okafor@example.org,Grace,Okafor,parents;staff,subscribed
tom.fletcher@example.com,Tom,Fletcher,parents,subscribed
noah.reed@example.org,Noah,Reed,parents,unsubscribed
priya.shah@example.org,Priya,Shah,staff,subscribed
owen.jones@example.com,Owen,Jones,staff,subscribed
"""
RECEIVING = {"amelia.hughes@example.org", "rahul.patel@example.com", "grace.okafor@example.org",
             "tom.fletcher@example.com", "priya.shah@example.org", "owen.jones@example.com"}


def send(project: Path, port: int, *args: str) -> subprocess.CompletedProcess[str]:
    (project / "audiences.csv").write_text(AUDIENCES)
    return subprocess.run([sys.executable, str(REPO / "send.py"), f"newsletters/{SLUG}", "--to", "parents,staff",
                           *args], cwd=project, env=_env(smtp_environ(port)), capture_output=True, text=True,
                          timeout=120)


def _stored_bytes(project: Path) -> bytes:
    return b"".join(p.read_bytes() for p in project.glob("mailroom.sqlite3*") if p.is_file())


def test_send_py_delivers_one_message_each_and_never_shows_the_password(project: Path, server: object,
                                                                      handler: ScriptedHandler) -> None:
    run = send(project, port_of(server), "--yes", "--untested")
    assert run.returncode == 0, run.stderr
    assert sorted(handler.to_addresses()) == sorted(RECEIVING)
    assert all(len(r.rcpt_tos) == 1 and r.parsed()["To"].addresses[0].addr_spec == r.rcpt_tos[0]
               for r in handler.received)
    assert f"Transport: the SMTP server 127.0.0.1:{port_of(server)} (not encrypted)" in run.stdout
    assert "Done: sent to 6 people;" in run.stdout
    assert PASSWORD not in run.stdout + run.stderr
    assert PASSWORD.encode() not in _stored_bytes(project)


def test_send_py_reports_a_refused_address_and_exits_1(project: Path, server: object,
                                                        handler: ScriptedHandler) -> None:
    handler.rcpt_replies["tom.fletcher@example.com"] = "550 5.1.1 User unknown"
    run = send(project, port_of(server), "--yes", "--untested")
    assert run.returncode == 1
    assert "Sent: 5. Not sent: 1. Uncertain: 0." in run.stdout
    assert "1 not sent: the SMTP server refused it: 550 5.1.1 User unknown" in run.stderr
    # the end names who was not sent and why, and lists them all in a CSV beside the ledger
    assert run.stderr.splitlines()[1:4] == [
        "Not sent (1):",
        "  Tom Fletcher <tom.fletcher@example.com>: the SMTP server refused it: 550 5.1.1 User unknown",
        f"  Everyone not sent to is listed in not-sent-{SLUG}.csv",
    ]
    with (project / f"not-sent-{SLUG}.csv").open(encoding="utf-8-sig", newline="") as handle:
        assert list(csv.reader(handle)) == [
            ["email", "name", "version", "reason"],
            ["tom.fletcher@example.com", "Tom Fletcher", "parents",
             "the SMTP server refused it: 550 5.1.1 User unknown"],
        ]
    assert sorted(handler.to_addresses()) == sorted(RECEIVING - {"tom.fletcher@example.com"})


def test_send_py_names_the_uncertain_person_on_the_rerun(project: Path, server: object,
                                                          handler: ScriptedHandler) -> None:
    handler.on_data = lambda n, rcpt: DROP if n == 2 else None
    first = send(project, port_of(server), "--yes", "--untested")
    assert first.returncode == 3
    assert "rahul.patel@example.com" in first.stderr
    assert sorted(handler.to_addresses()) == sorted(RECEIVING - {"rahul.patel@example.com"})

    handler.on_data = lambda n, rcpt: None
    rerun = send(project, port_of(server), "--yes", "--untested")
    assert rerun.returncode == 3
    assert "Uncertain: 1 people in 1 earlier batch(es)" in rerun.stderr
    assert "    rahul.patel@example.com" in rerun.stderr
    assert len(handler.received) == 5  # nothing sent while the question is open

    resend = send(project, port_of(server), "--yes", "--untested", "--resend-uncertain")
    assert resend.returncode == 0, resend.stderr
    assert sorted(handler.to_addresses()) == sorted(RECEIVING)


def test_send_py_wrong_password_exits_1_with_a_plain_message(project: Path, handler: ScriptedHandler) -> None:
    controller = start_server(handler, authenticator=Authenticator(USERNAME, "the-real-one"))
    try:
        run = send(project, controller.port, "--yes", "--untested")
    finally:
        controller.stop()
    assert run.returncode == 1
    assert "Error: the SMTP username or password was not accepted by the mail server" in run.stderr
    assert PASSWORD not in run.stdout + run.stderr
    assert PASSWORD.encode() not in _stored_bytes(project)
    assert handler.received == []


def test_send_py_plan_warns_past_the_daily_limit_and_shows_the_time(tmp_path: Path, server: object,
                                                                     handler: ScriptedHandler) -> None:
    # school.toml is one of the build's sources, so the project is composed with these settings
    project = send_project(tmp_path / "school", school_toml={"messages_per_minute = 30": "messages_per_minute = 2",
                                                             "daily_limit = 10000": "daily_limit = 4"})
    run = send(project, port_of(server), "--dry-run")
    assert run.returncode == 0, run.stderr
    assert ("At 2 messages a minute (messages_per_minute in school.toml) this send takes about 3 minutes"
            in run.stdout)
    assert f"Transport: the SMTP server 127.0.0.1:{port_of(server)} (not encrypted, at most 2 messages a minute)" \
        in run.stdout
    assert "Warning: 6 messages is more than the 4 a day the mail server allows" in run.stdout
    assert handler.received == []


def test_send_py_plan_counts_what_the_relay_already_took_today_against_the_daily_limit(
        tmp_path: Path, server: object, handler: ScriptedHandler) -> None:
    """6 messages fit a limit of 8, but not after 3 went through this relay in the last 24 hours."""
    from mailroom.send.ledger import BatchKind, Ledger, SendState

    project = send_project(tmp_path / "school", school_toml={"daily_limit = 10000": "daily_limit = 8"})
    settings = load_settings(project, environ={})
    assert [note for note in smtp_plan_notes(settings, 6) if "a day" in note] == []
    with Ledger(project / "mailroom.sqlite3") as ledger:
        batch = ledger.begin_batch(newsletter="last-week", audience="parents", kind=BatchKind.LIVE, transport="smtp",
                                   build_hash="h", keys=["x@example.org", "y@example.org", "z@example.org"])
        ledger.record_batch(batch, "last-week", BatchKind.LIVE, SendState.SENT, message_id="m")
    run = send(project, port_of(server), "--dry-run")
    assert run.returncode == 0, run.stderr
    assert ("Warning: the mail server already took 3 messages from mailroom in the last 24 hours; with these 6 that "
            "is more than the 8 a day it allows") in " ".join(run.stdout.split())
    assert handler.received == []


def test_an_address_deferred_every_time_is_given_up_on_after_the_retries_and_the_rest_are_sent(
        project: Path, server: object, handler: ScriptedHandler) -> None:
    recipients = people(6)
    handler.rcpt_replies[recipients[0].email] = "450 4.2.1 Mailbox busy, try again later"
    settings = settings_for(project, port_of(server))
    sleeps: list[float] = []
    report, ledger = dispatch(settings, SmtpTransport(settings), recipients, sleeps)

    assert report.sent == 5 and report.failed == 1
    assert len(sleeps) == 5  # dispatch's bounded retries (6 tries in all), each after a pause
    row = ledger.states(SLUG, [recipients[0].key])[recipients[0].key]
    assert row.state == SendState.FAILED
    assert row.error == "the SMTP server deferred it (450 4.2.1 Mailbox busy, try again later)"
    assert sorted(handler.to_addresses()) == sorted(p.email for p in recipients[1:])


def test_a_refused_sender_address_stops_the_send_with_the_servers_words(project: Path, server: object,
                                                                        handler: ScriptedHandler) -> None:
    handler.on_mail = lambda n: "550 5.7.60 Client does not have permissions to send as this sender"
    settings = settings_for(project, port_of(server))
    report, _ledger = dispatch(settings, SmtpTransport(settings), people(4))

    assert report.stopped == StopReason.REFUSED and report.sent == 0
    assert report.stop_message == (
        "the SMTP server refused to send from office@oakfield.example.org: The mailbox mailroom signs in as may "
        "not send as the newsletter's sender address. For IT: make sender.email in school.toml the mailbox's own "
        "address, or in Exchange Online PowerShell run  Add-RecipientPermission -Identity <sender address> "
        "-Trustee <mailbox or app's service principal> -AccessRights SendAs. (the server said: 550 5.7.60 Client "
        "does not have permissions to send as this sender)")
    assert handler.mails == 1  # it did not try everyone in turn


def test_no_server_listening_is_retried_then_given_up_with_a_plain_reason(project: Path) -> None:
    from tests.smtp_server import free_port

    port = free_port()  # nothing listens here
    settings = settings_for(project, port)
    sleeps: list[float] = []
    report, ledger = dispatch(settings, SmtpTransport(settings), people(3), sleeps)

    assert report.stopped == "gave_up" and report.sent == 0 and len(sleeps) == 5
    assert report.stop_message == f"could not connect to the SMTP server 127.0.0.1:{port} (the connection was refused)"
    assert ledger.counts(SLUG) == {SendState.FAILED: 3}


def test_an_accented_mailbox_goes_as_smtputf8_when_the_server_offers_it(project: Path, server: object,
                                                                       handler: ScriptedHandler) -> None:
    recipients = people(5)
    recipients[3] = Person("noé@example.org", "Noé", "Hart", "parents")
    settings = settings_for(project, port_of(server))
    report, ledger = dispatch(settings, SmtpTransport(settings), recipients)

    assert report.sent == 5 and report.failed == 0
    (noe,) = [r for r in handler.received if r.rcpt_tos == ["noé@example.org"]]
    assert "<noé@example.org>".encode() in noe.content.split(b"\r\n\r\n")[0]  # RFC 6532: UTF-8 in the To
    assert ledger.counts(SLUG) == {SENT: 5}


def test_an_accented_mailbox_is_left_out_at_the_plan_when_the_server_has_no_smtputf8(
        project: Path, handler: ScriptedHandler) -> None:
    controller = start_server(handler, authenticator=Authenticator(USERNAME, PASSWORD), smtputf8=False)
    try:
        recipients = people(5)
        recipients[3] = Person("noé@example.org", "Noé", "Hart", "parents")
        settings = settings_for(project, controller.port)
        write_audiences(settings.root / "audiences.csv", [tuple(p) for p in recipients])  # type: ignore[misc]
        with SendSession(settings, settings.root / "newsletters" / SLUG, ["parents"]) as session:
            plan = session.plan_live()
            (left,) = plan.audience.left_out
            assert (left.email, left.reason) == ("noé@example.org", "cannot be sent this way")
            assert "does not offer SMTPUTF8" in left.detail
            assert plan.total == 4
            result = session.send_live(plan, untested=True)
    finally:
        controller.stop()
    assert result.complete and result.report.sent == 4
    assert sorted(handler.to_addresses()) == sorted(p.email for p in recipients if p.email != "noé@example.org")


def test_send_py_test_copy_goes_to_the_one_address_only(project: Path, server: object,
                                                         handler: ScriptedHandler) -> None:
    run = send(project, port_of(server), "--test", "head.teacher@example.org")
    assert run.returncode == 0, run.stderr
    # parents, staff and the parents+staff version someone on both lists gets
    assert handler.to_addresses() == ["head.teacher@example.org"] * 3
    subjects = sorted(r.parsed()["Subject"] for r in handler.received)
    assert all(s.startswith("[TEST] ") for s in subjects)
    assert all(r.parsed()["To"].addresses[0].addr_spec == "head.teacher@example.org" for r in handler.received)
