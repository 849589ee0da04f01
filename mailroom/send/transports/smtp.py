"""Send through the school's own SMTP relay (Microsoft 365, Google Workspace, a local server).

One connection carries many messages, one envelope recipient each; the per-person fields are filled in
here (``mailroom.send.transports.mime``, shared with the outbox). What the server answers decides what the
ledger records:
- 250 after the message: SENT.
- 4xx (421, 450, 451, 452...): a deferral, NOT_SENT; dispatch tries again later with backoff.
  421 means the server is closing the connection, so the batch stops there and the rest wait too.
- 5xx for one person (550 mailbox unknown...): REJECTED for that person with the server's words; the others go on.
- 535 when logging in: stop, with a plain message; the password is never shown.
- Signing in with OAuth (SMTP_AUTH=oauth2-microsoft / oauth2-google, ``oauth``): the token is sent as
  XOAUTH2. A long send outlives a token (about an hour), so before each message the transport checks
  whether the token is due for renewal and, if so, ends the connection politely and signs in afresh on a
  new one, between two messages; a 535 for a token that looked valid gets one renewed token and one retry.
- The connection lost before the message's end-of-data marker went out: the server cannot have accepted it,
  so reconnect and try that message again. Lost after the marker went out but before the answer: nobody
  knows whether it was accepted, so that person is UNCERTAIN and the rerun names them.

The rate cap (messages per minute) spaces messages evenly with an injectable clock and sleep, so tests
measure it without waiting.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import math
import smtplib
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from mailroom.errors import ConfigError, TransportError
from mailroom.send.transports.base import Batch, BatchResult, Delivery, Message, Transport, Version
from mailroom.send.transports.limits import KNOWN_HOSTS, message_bytes, refuse_if_too_big
from mailroom.send.transports.mime import MimeTemplates
from mailroom.send.transports.oauth import TokenSource, make_token_source, xoauth2
from mailroom.send.transports.signin_errors import explain_smtp_refusal
from mailroom.send.transports.tls import client_context, describe_der, explain_certificate_error
from mailroom.settings import Settings

_CRLF = b"\r\n"
_DEFERRALS_IN_A_ROW = 5  # per-person 4xx answers in a row before the batch stops and backs off
_UNCERTAIN_IN_A_ROW = 3  # messages lost after hand-over in a row before the send stops altogether

AUTH_REFUSED = ("the SMTP username or password was not accepted by the mail server; check SMTP_USERNAME and "
                "SMTP_PASSWORD in .env (Microsoft 365 and Google may need an app password, and SMTP sending "
                "switched on for the mailbox)")


class RateLimiter:
    """At most ``per_minute`` messages a minute, evenly spaced (never a burst that a provider would count)."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval = 60.0 / per_minute if per_minute > 0 else 0.0
        self.clock = clock
        self.sleep = sleep
        self._next: float | None = None

    def wait(self) -> None:
        """Block until the next message may go; call once per message, just before it goes."""
        if not self.interval:
            return
        now = self.clock()
        if self._next is not None and now < self._next:
            self.sleep(self._next - now)
            now = self.clock()
        self._next = max(now, self._next if self._next is not None else now) + self.interval


def send_duration(count: int, per_minute: int) -> float:
    """Seconds a send of ``count`` messages takes at the cap (0 when there is no cap)."""
    if per_minute <= 0 or count <= 1:
        return 0.0
    return (count - 1) * 60.0 / per_minute


def describe_duration(seconds: float) -> str:
    if seconds <= 0:
        return "under a minute"
    minutes = math.ceil(seconds / 60 - 1e-9)  # rounded up: better to finish early than late
    hours, minutes = divmod(minutes, 60)
    parts = ([f"{hours} hour{'s' if hours != 1 else ''}"] if hours else []) + \
        ([f"{minutes} minute{'s' if minutes != 1 else ''}"] if minutes else [])
    return "about " + " ".join(parts)


def smtp_plan_notes(settings: Settings, count: int, sent_recently: int = 0) -> list[str]:
    """What the plan should say about an SMTP send of ``count`` messages: time at the cap, the daily limit
    (which the ``sent_recently`` messages of the last 24 hours, other newsletters and tests too, count against)."""
    notes = []
    per_minute = settings.smtp.messages_per_minute
    if per_minute and count:
        notes.append(f"At {per_minute} messages a minute (messages_per_minute in school.toml) this send takes "
                     f"{describe_duration(send_duration(count, per_minute))}; keep this computer on until it ends.")
    limit = settings.smtp.daily_limit
    if limit and count > limit:
        notes.append(f"Warning: {count:,} messages is more than the {limit:,} a day the mail server allows "
                     f"(daily_limit in school.toml). It will probably start refusing part-way; run the same "
                     f"command again tomorrow and it carries on where it stopped.")
    elif limit and count and count + sent_recently > limit:
        notes.append(f"Warning: the mail server already took {sent_recently:,} messages from mailroom in the last "
                     f"24 hours; with these {count:,} that is more than the {limit:,} a day it allows (daily_limit "
                     f"in school.toml). It will probably start refusing part-way; run the same command again "
                     f"tomorrow and it carries on where it stopped, or wait until then to send.")
    return notes


@dataclass(frozen=True)
class SmtpProbe:
    """What ``SmtpTransport.probe`` found: the server's name, the TLS in use ("" for none), how it signed in."""

    banner: str
    tls: str
    signed_in: str


@dataclass
class _Fatal:
    """An error that must stop the send, raised at the start of the next batch (after this one is recorded)."""

    error: TransportError


class _Lost(Exception):
    """The connection went away (or timed out) before this message was handed over."""


class _LostAfterHandover(Exception):
    """The connection went away after the message's end-of-data marker went out, before the answer."""


class _Refused(Exception):
    """The server answered a command with an error code."""

    def __init__(self, code: int, text: str, stage: str) -> None:
        super().__init__(f"{code} {text}")
        self.code, self.text, self.stage = code, text, stage


class SmtpTransport(Transport):
    name = "smtp"
    max_batch_size = 25
    one_message_at_a_time = True  # each person recorded in the ledger as their message is accepted

    def __init__(self, settings: Settings, *, ssl_context: ssl.SSLContext | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 tokens: TokenSource | None = None) -> None:
        smtp = settings.smtp
        if not smtp.host:
            raise ConfigError("MAILROOM_TRANSPORT is smtp, but SMTP_HOST is not set (put it in .env)")
        if smtp.password and smtp.security == "none" and not _is_loopback(smtp.host):
            raise ConfigError("SMTP_SECURITY is none, so the SMTP password would cross the network unprotected; "
                              "set SMTP_SECURITY to starttls (port 587) or ssl (port 465)")
        if smtp.password and not smtp.username:
            raise ConfigError("SMTP_PASSWORD is set but SMTP_USERNAME is not; set both (or neither)")
        self.settings = settings
        self.host, self.port, self.security = smtp.host, smtp.port, smtp.security
        self.timeout = smtp.timeout_seconds
        self._username = smtp.username
        self._password = smtp.password
        # built now, so a wrong SMTP_CA_FILE is a settings error before anything is sent
        self._ssl_context = ssl_context or (client_context(smtp.ca_file) if smtp.security != "none" else None)
        # OAuth: None for a username and password (SMTP_AUTH=password)
        self._tokens = tokens if tokens is not None else make_token_source(settings)
        self.limiter = RateLimiter(smtp.messages_per_minute, clock=clock, sleep=sleep)
        if smtp.messages_per_minute:
            # about 20 seconds of sending per batch at the cap, so Ctrl-C ("after the batch in flight") is quick
            self.max_batch_size = max(1, min(type(self).max_batch_size, smtp.messages_per_minute // 3))
        self._conn: smtplib.SMTP | None = None
        self._templates = MimeTemplates()
        self._features: dict[str, str] | None = None  # the server's EHLO extensions, asked once at the plan
        self._fatal: _Fatal | None = None
        self._uncertain_streak = 0
        self.connections = 0  # how many times we connected (for tests and the benchmark)

    def describe(self) -> str:
        cap = self.settings.smtp.messages_per_minute
        pace = f", at most {cap} messages a minute" if cap else ""
        secured = {"starttls": "encrypted (STARTTLS)", "ssl": "encrypted (SSL)", "none": "not encrypted"}
        signed = f", {self._tokens.describe()}" if self._tokens is not None else ""
        return f"the SMTP server {self.host}:{self.port} ({secured[self.security]}{signed}{pace})"

    def plan_notes(self, count: int, sent_recently: int = 0) -> list[str]:
        return smtp_plan_notes(self.settings, count, sent_recently)

    # --- what the server takes (asked at the plan, before anything is sent) -----------------------------

    def server_features(self) -> dict[str, str]:
        """The server's EHLO extensions (lower-case names), from one short connection without signing in.

        Asked once, at the plan; {} when the server cannot be reached now (the send then finds out and
        says so, and nothing is decided on a guess).
        """
        if self._features is None:
            self._features = ehlo_features(self.host, self.port, self.security, self.timeout, self._context)
        return self._features

    def address_problem(self, email: str) -> str | None:
        """A mailbox name beyond ASCII needs a server that offers SMTPUTF8 (RFC 6531); else that person is left out."""
        if email.rpartition("@")[0].isascii():
            return None
        features = self.server_features()
        if not features or "smtputf8" in features:
            return None
        return (f"the mail server {self.host} does not offer SMTPUTF8, so it cannot take addresses with accents "
                "or other letters beyond plain ASCII before the @")

    def check_version(self, version: Version) -> None:
        """Refuse a message bigger than the server takes: its EHLO SIZE, else the known limit of SMTP_HOST."""
        announced = self.server_features().get("size", "").strip()
        if announced.isdigit() and int(announced) > 0:
            limit, who = int(announced), f"the mail server {self.host} says it takes"
        elif self.host.lower() in KNOWN_HOSTS:
            limit, who = KNOWN_HOSTS[self.host.lower()]
        else:
            return
        refuse_if_too_big(version, message_bytes(self._templates.for_version(version)), limit, who)

    # --- connection -------------------------------------------------------------------------------

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = client_context(self.settings.smtp.ca_file)
        return self._ssl_context

    def _connect(self) -> smtplib.SMTP:
        """Connect, secure and log in; errors become TransportErrors with plain words (never the password)."""
        where = f"{self.host}:{self.port}"
        try:
            if self.security == "ssl":
                conn: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout,
                                                      context=self._context())
            else:
                conn = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            _no_delay(conn)
            conn.set_debuglevel(0)  # smtplib's debug output would show the AUTH exchange
            conn.ehlo()
            if self.security == "starttls":
                if not conn.has_extn("starttls"):
                    conn.close()
                    raise TransportError(f"the SMTP server {where} does not offer STARTTLS, so mailroom will not "
                                         "send through it unencrypted; check SMTP_HOST, SMTP_PORT and "
                                         "SMTP_SECURITY", retryable=False)
                conn.starttls(context=self._context())
                conn.ehlo()
            self._sign_in(conn, where)
        except socket.gaierror:
            raise TransportError(f"could not find the SMTP server '{self.host}'; check SMTP_HOST in .env",
                                 retryable=False) from None
        except ssl.SSLCertVerificationError as exc:
            raise TransportError(explain_certificate_error(exc, self.host, self.port, self.security, self.timeout,
                                                           self.settings.smtp.ca_file), retryable=False) from None
        except smtplib.SMTPResponseException as exc:
            retryable = 400 <= exc.smtp_code < 500
            raise TransportError(f"the SMTP server {where} refused the connection: {_words(exc.smtp_error)}",
                                 retryable=retryable, status=exc.smtp_code) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise TransportError(f"could not connect to the SMTP server {where} ({_reason(exc)})",
                                 retryable=True) from None
        self.connections += 1
        return conn

    def _sign_in(self, conn: smtplib.SMTP, where: str) -> None:
        """Log in the way SMTP_AUTH says (nothing to do for a relay that recognises the school's address)."""
        if self._tokens is not None:
            self._sign_in_with_token(conn, where, self._tokens)
        elif self._username:
            self._log_in_with_password(conn, where)

    def _log_in_with_password(self, conn: smtplib.SMTP, where: str) -> None:
        try:
            log_in(conn, self._username, self._password.reveal())
        except smtplib.SMTPAuthenticationError as exc:
            _close_quietly(conn)
            explained = explain_smtp_refusal(exc.smtp_code, _words(exc.smtp_error))
            raise TransportError(explained or AUTH_REFUSED, retryable=False, status=535) from None
        except smtplib.SMTPNotSupportedError:
            _close_quietly(conn)
            raise TransportError(f"the SMTP server {where} does not accept a username and password "
                                 "here; for Microsoft 365, SMTP AUTH must be switched on for the "
                                 "mailbox", retryable=False) from None
        except smtplib.SMTPException:
            _close_quietly(conn)
            raise TransportError(f"the SMTP server {where} offers no way of logging in that mailroom "
                                 "knows (it needs PLAIN, LOGIN or CRAM-MD5)", retryable=False) from None

    def _sign_in_with_token(self, conn: smtplib.SMTP, where: str, tokens: TokenSource) -> None:
        """AUTH XOAUTH2 with the current token; a refusal of a token that looked valid gets one renewed token
        (it may have been revoked, or the server's clock runs ahead of ours)."""
        if "xoauth2" not in conn.esmtp_features.get("auth", "").lower().split():
            _close_quietly(conn)
            raise TransportError(f"the SMTP server {where} does not offer OAuth sign-in (XOAUTH2); check SMTP_HOST "
                                 "(smtp.office365.com for Microsoft 365, smtp.gmail.com for Google) and SMTP_AUTH",
                                 retryable=False)
        for renew in (False, True):
            try:
                token = tokens.token(renew=renew)
            except TransportError:
                _close_quietly(conn)
                raise
            code, text = send_xoauth2(conn, tokens.username, token.value)
            if code == 235:
                return
            if code == 535 and not renew:
                continue
            _close_quietly(conn)
            words = _words(text)
            if 400 <= code < 500:
                raise TransportError(f"the SMTP server {where} could not sign mailroom in just now ({code} {words})",
                                     retryable=True, status=code)
            explained = explain_smtp_refusal(code, words, provider=tokens.provider)
            raise TransportError(explained or f"the SMTP server {where} refused the sign-in ({code} {words})",
                                 retryable=False, status=code)

    def _sign_in_due(self) -> bool:
        return self._tokens is not None and self._tokens.due()

    def probe(self) -> SmtpProbe:
        """Connect, EHLO, secure, sign in, QUIT: everything but a message (``mailroom doctor``).
        Raises the same TransportErrors a send would, with the same explanations."""
        conn = self._connect()
        try:
            sock = conn.sock
            tls = ""
            if isinstance(sock, ssl.SSLSocket):
                der = sock.getpeercert(binary_form=True)
                facts = describe_der(der) if der else None
                issued = (f"issued by {facts.issuer_organisation}, valid until {facts.not_after:%Y-%m-%d}" if facts
                          else "issued by a trusted authority")
                tls = f"{sock.version()}, certificate verified ({issued})"
            signed_in = (self._tokens.describe() if self._tokens is not None
                         else f"username {self._username}" if self._username else "")
            return SmtpProbe(banner=_words(conn.ehlo_resp or b"").split(" ")[0], tls=tls, signed_in=signed_in)
        finally:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                conn.quit()
            _close_quietly(conn)

    def _disconnect(self) -> None:
        if self._conn is not None:
            _close_quietly(self._conn)
            self._conn = None

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                self._conn.quit()
        self._disconnect()

    # --- sending ------------------------------------------------------------------------------------

    def send_batch(self, batch: Batch) -> BatchResult:
        if self._fatal is not None:
            raise self._fatal.error
        template = self._templates.for_version(batch.version)
        result = self.new_result()  # each person reported to on_delivery as the server answers (progress)
        deferred_in_a_row = 0
        for message in batch.messages:
            try:
                message_id, data = template.render(message, now=datetime.now(UTC))
            except TransportError as exc:  # this person's data cannot make a safe message: only they miss out
                result.add(message.key, Delivery.REJECTED, error=exc.message)
                continue
            try:
                self._deliver_with_reconnect(message, data, sent_any=bool(result.deliveries))
            except _StopBatch as stop:
                if stop.error:
                    result.errors[message.key] = stop.error
                break
            except _LostAfterHandover as lost:
                self._disconnect()
                self._uncertain_streak += 1
                result.add(message.key, Delivery.UNCERTAIN,
                           error=f"the connection to the SMTP server was lost after the message was handed over, "
                                 f"before the server confirmed it ({lost})")
                if self._uncertain_streak >= _UNCERTAIN_IN_A_ROW:
                    self._fatal = _Fatal(TransportError(
                        "the SMTP server keeps dropping the connection after receiving a message; nothing more "
                        "was sent", retryable=False))
                break  # a fresh connection, after dispatch's pause, for the rest
            except _Refused as refused:
                words = f"{refused.code} {_words(refused.text)}"
                if refused.code == 421:
                    self._disconnect()
                    result.add(message.key, Delivery.NOT_SENT,
                               error=f"the SMTP server asked us to wait ({words})")
                    break
                if 400 <= refused.code < 500:
                    result.add(message.key, Delivery.NOT_SENT, error=f"the SMTP server deferred it ({words})")
                    deferred_in_a_row += 1
                    if deferred_in_a_row >= _DEFERRALS_IN_A_ROW:
                        break
                    continue
                if refused.stage == "mail":
                    # the sender address itself is refused: the same for everyone, so the send stops
                    explained = explain_smtp_refusal(refused.code, refused.text)
                    error = TransportError(
                        f"the SMTP server refused to send from {batch.version.from_email}: {explained}" if explained
                        else f"the SMTP server refused to send from {batch.version.from_email} ({words}); check that "
                        "sender.email in school.toml is this mailbox's address (or one it may send as)",
                        retryable=False, status=refused.code)
                    if not result.deliveries:
                        raise error from None
                    self._fatal = _Fatal(error)
                    break
                result.add(message.key, Delivery.REJECTED, error=f"the SMTP server refused it: {words}")
                deferred_in_a_row = 0
                continue
            self._uncertain_streak = 0
            deferred_in_a_row = 0
            result.add(message.key, Delivery.SENT, message_id=message_id)
        return result

    def _deliver_with_reconnect(self, message: Message, data: bytes, *, sent_any: bool) -> tuple[int, bytes]:
        """Deliver one message; a connection lost before hand-over is reopened once and the message retried."""
        for attempt in (1, 2):
            self.limiter.wait()  # first, so the token check below sees the time the message really goes
            if self._conn is not None and self._sign_in_due():
                self.close()  # QUIT between two messages; the new connection signs in with a new token
            if self._conn is None:
                try:
                    self._conn = self._connect()
                except TransportError as exc:
                    if not exc.retryable and not sent_any:
                        raise
                    if not exc.retryable:
                        self._fatal = _Fatal(exc)
                    raise _StopBatch(exc.message if exc.retryable else None) from None
            try:
                return self._deliver(self._conn, message, data)
            except _Lost as lost:
                self._disconnect()
                if attempt == 2:
                    raise _StopBatch(f"lost the connection to the SMTP server ({lost})") from None
            except (_Refused, _LostAfterHandover):
                raise
        raise AssertionError("unreachable")

    def _deliver(self, conn: smtplib.SMTP, message: Message, data: bytes) -> tuple[int, bytes]:
        """MAIL, RCPT, DATA for one person; says exactly how far the message got when something fails."""
        options = []
        if not message.email.isascii() or not self.settings.sender.email.isascii():
            if not conn.has_extn("smtputf8"):
                raise _Refused(553, "this address has characters the mail server cannot handle", "rcpt")
            options.append("SMTPUTF8")
        self._command(conn, "mail", lambda: conn.mail(self.settings.sender.email, options), 250)
        self._command(conn, "rcpt", lambda: conn.rcpt(message.email), 250, 251)
        self._command(conn, "data", lambda: _data_command(conn), 354)
        body = dot_stuff(data)
        if not body.endswith(_CRLF):
            body += _CRLF
        try:
            conn.send(body + b"." + _CRLF)
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            # the end-of-data marker is the last thing written, so it never went out: nothing was accepted
            raise _Lost(_reason(exc)) from None
        try:
            code, text = conn.getreply()
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            raise _LostAfterHandover(_reason(exc)) from None
        if code != 250:
            if code == 421:
                self._disconnect()
            raise _Refused(code, text.decode("utf-8", "replace"), "end")
        return code, text

    def _command(self, conn: smtplib.SMTP, stage: str, call: Callable[[], tuple[int, bytes]], *ok: int) -> None:
        try:
            code, text = call()
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            raise _Lost(_reason(exc)) from None
        if code in ok:
            return
        if code == -1:  # smtplib's way of saying the server closed the connection
            raise _Lost("the server closed the connection")
        if code != 421:
            try:
                conn.rset()
            except (OSError, smtplib.SMTPException):
                self._disconnect()
        raise _Refused(code, text.decode("utf-8", "replace"), stage)


def log_in(conn: smtplib.SMTP, username: str, password: str) -> None:
    """smtplib's login, except that a username or password beyond ASCII goes as AUTH PLAIN in UTF-8.

    RFC 4616 defines PLAIN's name and password as UTF-8; smtplib encodes them as ASCII and would fail
    with a UnicodeEncodeError before anything reached the server.
    """
    if username.isascii() and password.isascii():
        conn.login(username, password)
        return
    if "plain" not in conn.esmtp_features.get("auth", "").lower().split():
        _close_quietly(conn)
        raise TransportError("the SMTP password (or username) has letters beyond plain ASCII, which this mail "
                             "server could only take through AUTH PLAIN, and it does not offer that; use a "
                             "password of plain letters, digits and punctuation", retryable=False)
    secret = base64.b64encode(f"\0{username}\0{password}".encode()).decode("ascii")
    code, answer = conn.docmd("AUTH", "PLAIN " + secret)
    if code not in (235, 503):  # 503: already signed in
        raise smtplib.SMTPAuthenticationError(code, answer)


def ehlo_features(host: str, port: int, security: str, timeout: float,
                  context: Callable[[], ssl.SSLContext]) -> dict[str, str]:
    """Connect, secure as SMTP_SECURITY says, EHLO and QUIT: the extensions offered after TLS, or {}."""
    try:
        if security == "ssl":
            conn: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context())
        else:
            conn = smtplib.SMTP(host, port, timeout=timeout)
        try:
            conn.ehlo()
            if security == "starttls" and conn.has_extn("starttls"):
                conn.starttls(context=context())
                conn.ehlo()
            return dict(conn.esmtp_features)
        finally:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                conn.quit()
            _close_quietly(conn)
    except (OSError, smtplib.SMTPException, ssl.SSLError):
        return {}


def send_xoauth2(conn: smtplib.SMTP, username: str, token: str) -> tuple[int, bytes]:
    """AUTH XOAUTH2 with the token as the initial response. A refusal may come as a 334 carrying a JSON
    error (Google, RFC 7628): the client answers with an empty line and the server then says 535."""
    try:
        code, text = conn.docmd("AUTH", "XOAUTH2 " + xoauth2(username, token))
        if code == 334:
            code, text = conn.docmd("")
    except (OSError, smtplib.SMTPServerDisconnected) as exc:
        raise TransportError(f"lost the connection to the SMTP server while signing in ({_reason(exc)})",
                             retryable=True) from None
    return code, text


def dot_stuff(data: bytes) -> bytes:
    r"""Double the "." that starts any line (RFC 5321 4.5.2), so no line of the message can end the DATA.

    The same as re.sub(rb"(?m)^\.", b"..", data), which the SMTP profile showed as the sender's largest
    own cost (a regex pass over every ~67 KB message); bytes.replace does the same in a fraction.
    """
    body = data.replace(b"\n.", b"\n..")
    return b"." + body if body.startswith(b".") else body


class _StopBatch(Exception):
    """End this batch now; the message in hand and the rest are NOT_SENT (dispatch retries after a pause)."""

    def __init__(self, error: str | None) -> None:
        super().__init__(error or "")
        self.error = error


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _no_delay(conn: smtplib.SMTP) -> None:
    """Turn off Nagle's algorithm on the connection. Over TLS a message leaves as several records, each its own
    write; with Nagle on, the kernel holds back each record after the first until the server acknowledges the
    first, and a server that delays its ACKs (most do, by up to 40 ms) adds that wait to every message. SMTP is
    a request/answer protocol, so nothing is gained by coalescing small writes. The option stays with the
    socket through STARTTLS."""
    if conn.sock is not None:
        with contextlib.suppress(OSError):
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _close_quietly(conn: smtplib.SMTP) -> None:
    with contextlib.suppress(OSError):
        conn.close()


def _words(text: str | bytes) -> str:
    """The server's own words on one line (servers split long answers over several)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return " ".join(text.split())


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "no answer in time"
    if isinstance(exc, ConnectionRefusedError):
        return "the connection was refused"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return "the server closed the connection"
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else exc.__class__.__name__


def _data_command(conn: smtplib.SMTP) -> tuple[int, bytes]:
    """DATA, sent by hand: smtplib's ``data`` would also send the body, which we stream ourselves."""
    conn.putcmd("data")
    return conn.getreply()
