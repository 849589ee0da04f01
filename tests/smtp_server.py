"""A real SMTP server (aiosmtpd) on 127.0.0.1 whose answers a test can script.

It records what arrived (envelope and message) and can, on the Nth MAIL or DATA, answer with any
reply or drop the connection, so tests see how the SMTP transport behaves against a real protocol peer.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

DROP = "DROP"  # a scripted answer meaning: close the connection without a reply


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    at: float | None  # the test's clock when the message arrived (if one was given)

    def parsed(self) -> EmailMessage:
        return message_from_bytes(self.content, policy=policy.default)  # type: ignore[return-value]


@dataclass
class ScriptedHandler:
    """aiosmtpd handler. ``on_mail(n)`` / ``on_data(n, rcpt)`` may return a reply, DROP or None (carry on)."""

    rcpt_replies: dict[str, str] = field(default_factory=dict)  # address -> reply for RCPT TO
    on_mail: Callable[[int], str | None] = lambda n: None
    on_data: Callable[[int, str], str | None] = lambda n, rcpt: None
    clock: Callable[[], float] | None = None
    received: list[Received] = field(default_factory=list)
    mails: int = 0
    datas: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        with self.lock:
            self.mails += 1
            answer = self.on_mail(self.mails)
        if answer == DROP:
            server.transport.close()
            return "250 OK"
        if answer:
            return answer
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.rcpt_replies.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.datas += 1
            answer = self.on_data(self.datas, envelope.rcpt_tos[0] if envelope.rcpt_tos else "")
        if answer == DROP:
            # The whole message arrived; the server vanishes before saying whether it took it.
            server.transport.close()
            return "250 OK"
        if answer:
            return answer
        with self.lock:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                          bytes(envelope.original_content or b""),
                                          self.clock() if self.clock else None))
        return "250 2.0.0 Queued"

    def to_addresses(self) -> list[str]:
        return [r.rcpt_tos[0] for r in self.received]


class FakeClock:
    """Time that only moves when the transport sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Authenticator:
    """Accepts one username and password; remembers what it was offered (to prove the password arrived)."""

    def __init__(self, username: str, password: str) -> None:
        self.username, self.password = username.encode(), password.encode()
        self.attempts = 0

    def __call__(self, server, session, envelope, mechanism, auth_data):
        self.attempts += 1
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            self.username, self.password)
        return AuthResult(success=ok, handled=False)


def start_server(handler: ScriptedHandler, *, authenticator: Authenticator | None = None,
                 tls_context: ssl.SSLContext | None = None, implicit_tls: ssl.SSLContext | None = None,
                 smtputf8: bool = True, size: int | None = None) -> Controller:
    """Start aiosmtpd on 127.0.0.1 (a free port); STARTTLS when ``tls_context``, TLS from the start when
    ``implicit_tls``; SMTPUTF8 offered unless ``smtputf8`` is False; ``size``: the EHLO SIZE it announces
    (and enforces). The caller stops it."""
    kwargs: dict = {"enable_SMTPUTF8": smtputf8}
    if size is not None:
        kwargs["data_size_limit"] = size
    if authenticator is not None:
        kwargs.update(authenticator=authenticator, auth_require_tls=tls_context is not None)
    if tls_context is not None:
        kwargs.update(tls_context=tls_context, require_starttls=True)
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), ssl_context=implicit_tls,
                            server_hostname="127.0.0.1" if implicit_tls else None, **kwargs)
    controller.start()
    return controller


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 made on the spot, and its key (for STARTTLS/SSL tests)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mailroom test server")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "server.crt", folder / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path
