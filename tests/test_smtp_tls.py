"""A relay whose certificate comes from the school's private certificate authority (SMTP_CA_FILE), and the
three certificate problems named apart: untrusted issuer, wrong name, expired. aiosmtpd on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

from mailroom.errors import ConfigError
from mailroom.send.dispatch import StopReason
from mailroom.send.transports.smtp import SmtpTransport
from mailroom.settings import load_settings
from tests.send_project import send_project
from tests.smtp_server import ScriptedHandler, start_server
from tests.test_smtp import dispatch, people

Relay = Callable[..., int]


@pytest.fixture(scope="module")
def school_ca() -> trustme.CA:
    return trustme.CA(organization_name="Oakfield Primary School IT", organization_unit_name="Oakfield Internal CA")


@pytest.fixture
def ca_file(school_ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "oakfield-ca.pem"
    school_ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return send_project(tmp_path / "school")


@pytest.fixture
def relay(school_ca: trustme.CA) -> Iterator[Relay]:
    """Start a STARTTLS relay with a certificate from the school's CA for ``names`` (valid unless dates given)."""
    controllers = []
    handlers: list[ScriptedHandler] = []

    def start(*names: str, not_before: dt.datetime | None = None, not_after: dt.datetime | None = None) -> int:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        school_ca.issue_cert(*names, not_before=not_before, not_after=not_after).configure_cert(context)
        handler = ScriptedHandler()
        handlers.append(handler)
        controller = start_server(handler, tls_context=context)
        controllers.append(controller)
        return int(controller.port)

    start.handlers = handlers  # type: ignore[attr-defined]
    yield start
    for controller in controllers:
        controller.stop()


def _settings(project: Path, port: int, **extra: str):  # type: ignore[no-untyped-def]
    return load_settings(project, environ={"MAILROOM_TRANSPORT": "smtp", "SMTP_HOST": "127.0.0.1",
                                           "SMTP_PORT": str(port), "SMTP_SECURITY": "starttls",
                                           "MAILROOM_DB": str(project / "mailroom.sqlite3"), **extra})


def _send(settings, count: int = 2):  # type: ignore[no-untyped-def]
    return dispatch(settings, SmtpTransport(settings, sleep=lambda s: None), people(count))[0]


def test_a_private_ca_is_refused_naming_the_issuer_then_accepted_with_smtp_ca_file(
        project: Path, relay: Relay, ca_file: Path) -> None:
    port = relay("127.0.0.1")
    refused = _send(_settings(project, port))
    assert refused.stopped == StopReason.REFUSED and refused.sent == 0
    assert refused.stop_message == (
        f"the SMTP server 127.0.0.1:{port} did not prove who it is: its certificate was issued by \"OU=Oakfield "
        "Internal CA,O=Oakfield Primary School IT\", a certificate authority this computer does not trust. For IT: "
        "if the school's IT runs its own certificate authority, save that authority's certificate (a .pem or .crt "
        "file) in the project folder and set SMTP_CA_FILE to it in .env")

    accepted = _send(_settings(project, port, SMTP_CA_FILE=str(ca_file), MAILROOM_DB=str(project / "second.db")))
    assert accepted.sent == 2 and len(relay.handlers[0].received) == 2  # type: ignore[attr-defined]


def test_messages_over_tls_leave_at_once_instead_of_waiting_for_the_servers_ack(
        project: Path, relay: Relay, ca_file: Path) -> None:
    """Over TLS each message is several socket writes. With Nagle's algorithm on, the kernel held each write
    after the first until the server acknowledged it, and servers delay their ACKs: about 45 ms a message
    (2.8 s for 60 on 127.0.0.1). The connection carrying the messages must have TCP_NODELAY set."""
    port = relay("127.0.0.1")
    settings = _settings(project, port, SMTP_CA_FILE=str(ca_file))
    transport = SmtpTransport(settings, sleep=lambda s: None)
    no_delay: list[int] = []

    def look_at_the_client(n: int, rcpt: str) -> None:  # runs while the client waits for DATA's answer
        conn = transport._conn  # the live connection is what this test is about
        assert conn is not None and conn.sock is not None
        no_delay.append(conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    relay.handlers[0].on_data = look_at_the_client  # type: ignore[attr-defined]
    report = dispatch(settings, transport, people(3))[0]
    assert report.sent == 3
    assert len(no_delay) == 3 and all(no_delay), no_delay


def test_smtp_ca_file_is_relative_to_the_project_and_still_trusts_the_usual_authorities(
        project: Path, ca_file: Path) -> None:
    (project / "certs").mkdir()
    (project / "certs" / "oakfield-ca.pem").write_bytes(ca_file.read_bytes())
    settings = _settings(project, 587, SMTP_CA_FILE="certs/oakfield-ca.pem")
    assert settings.smtp.ca_file == project / "certs" / "oakfield-ca.pem"
    context = SmtpTransport(settings)._context()
    subjects = [dict(item[0] for item in cert["subject"]) for cert in context.get_ca_certs()]
    assert {"organizationalUnitName": "Oakfield Internal CA", "organizationName": "Oakfield Primary School IT"} in \
        subjects
    assert len(subjects) > 1  # the computer's own authorities too, for a relay with a public certificate


def test_a_certificate_for_another_name_is_named(project: Path, relay: Relay, ca_file: Path) -> None:
    port = relay("mail.oakfield-trust.example.org")
    report = _send(_settings(project, port, SMTP_CA_FILE=str(ca_file)))
    assert report.stopped == StopReason.REFUSED
    assert report.stop_message == (
        f"the SMTP server 127.0.0.1:{port} did not prove who it is: its certificate is for "
        "mail.oakfield-trust.example.org, not 127.0.0.1. For IT: set SMTP_HOST to the name on the certificate (for "
        "example smtp.office365.com rather than an address or an alias)")


def test_an_expired_certificate_is_named_with_its_date(project: Path, relay: Relay, ca_file: Path) -> None:
    expired = dt.datetime(2026, 9, 30, 12, 0, tzinfo=dt.UTC)
    port = relay("127.0.0.1", not_before=expired - dt.timedelta(days=365), not_after=expired)
    report = _send(_settings(project, port, SMTP_CA_FILE=str(ca_file)))
    assert report.stopped == StopReason.REFUSED
    assert report.stop_message == (
        f"the SMTP server 127.0.0.1:{port} did not prove who it is: its certificate expired on 2026-09-30. For IT: "
        "the relay's administrator must renew the certificate (check also that this computer's date is right)")


def test_a_ca_file_that_is_missing_or_not_a_certificate_is_a_settings_error(project: Path) -> None:
    with pytest.raises(ConfigError) as missing:
        SmtpTransport(_settings(project, 587, SMTP_CA_FILE="nowhere.pem"))
    assert str(missing.value) == f"{project / 'nowhere.pem'}: SMTP_CA_FILE names a file that does not exist"
    (project / "notes.pem").write_text("the IT person's phone number is on the fridge\n")
    with pytest.raises(ConfigError) as wrong:
        SmtpTransport(_settings(project, 587, SMTP_CA_FILE="notes.pem"))
    assert "SMTP_CA_FILE should be a certificate authority's certificate in PEM form" in str(wrong.value)
