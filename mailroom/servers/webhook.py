"""The HTTP endpoint for SendGrid's signed Event Webhook (``mailroom events serve``).

Every POST must carry SendGrid's ECDSA signature over the timestamp header plus the raw body,
checked with the ``sendgrid`` library's ``EventWebhook`` helper and the public key from .env. The
helper does not look at the time, so this module does: a signed timestamp may be up to 25 hours old
(SendGrid retries a failed POST for up to 24 hours, and a retry may carry its first signature) and at
most 10 minutes ahead (clock drift). A replay inside that window changes nothing: every event is
stored once by its ``sg_event_id`` (docs/events.md, "How long a signed POST stays valid").
Events are stored before the answer, in one short transaction, so a 2xx always means "kept" and
anything else makes SendGrid try again.

The server is a ``HardenedHTTPServer``: a backlog for SendGrid's parallel POSTs, a bounded worker pool,
a deadline per request and no traceback for any input. Writes go through one lock, so parallel POSTs
queue for the database instead of failing on its lock.

Statuses: 200 stored (or all repeats); 400 malformed headers or not an event array; 403 unsigned,
badly signed or outside the time window; 411 no Content-Length; 413 body over the limit; 500 the
database failed (SendGrid retries).
"""

from __future__ import annotations

import binascii
import json
import re
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path

from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.eventwebhook.eventwebhook_header import EventWebhookHeader

from mailroom.errors import ConfigError
from mailroom.events.intake import NotAnEventArray, StoreResult, parse_events, store_events
from mailroom.servers.http_base import HardenedHTTPServer, QuietHandler

MAX_BODY_BYTES = 5 * 1024 * 1024
# SendGrid retries for 24 hours; one more hour covers a retry signed at the start of its last attempt.
MAX_AGE_SECONDS = 25 * 60 * 60
MAX_AHEAD_SECONDS = 10 * 60  # clocks drift; a timestamp further ahead was not made by SendGrid just now
HEADER_DEADLINE_SECONDS = 5.0  # SendGrid's headers arrive at once; a client dribbling them is cut off
REQUEST_DEADLINE_SECONDS = 15.0  # a whole POST (5 MB at most) must arrive within this
IDLE_TIMEOUT_SECONDS = 10.0  # a connection that says nothing for this long is closed
WORKERS = 8
_DIGITS = re.compile(r"[0-9]{1,15}")  # ASCII digits only: str.isdigit() also takes "²" and "٣"

_PEM_LINE = re.compile(r"-----(BEGIN|END) PUBLIC KEY-----")


def make_verifier(public_key: str) -> EventWebhook:
    """An ``EventWebhook`` for the key SendGrid shows; a ``ConfigError`` if it is missing or unusable.

    SendGrid shows the key as base64 text; a copy that kept the PEM header lines or wrapped onto
    several lines is accepted too.
    """
    key = "".join(_PEM_LINE.sub("", public_key).split())
    if not key:
        raise ConfigError(
            "SENDGRID_WEBHOOK_PUBLIC_KEY is not set, so mailroom cannot tell SendGrid's events from "
            "anyone else's. In SendGrid open Settings > Mail Settings > Event Webhook, turn on "
            "Signed Event Webhook, and copy the verification key into .env as "
            "SENDGRID_WEBHOOK_PUBLIC_KEY=...")
    try:
        return EventWebhook(key)
    except (ValueError, TypeError):
        raise ConfigError(
            "SENDGRID_WEBHOOK_PUBLIC_KEY is not a public key SendGrid would give: copy the whole "
            "verification key from Settings > Mail Settings > Event Webhook into .env again") from None


class EventWebhookServer(HardenedHTTPServer):
    """The hardened HTTP server, knowing where to store events and how to check signatures."""

    def __init__(self, address: tuple[str, int], db_path: Path, verifier: EventWebhook, *,
                 max_body: int = MAX_BODY_BYTES, clock: Callable[[], float] = time.time,
                 log: Callable[[str], None] | None = None, workers: int = WORKERS,
                 request_deadline: float = REQUEST_DEADLINE_SECONDS,
                 header_deadline: float = HEADER_DEADLINE_SECONDS,
                 idle_timeout: float = IDLE_TIMEOUT_SECONDS) -> None:
        super().__init__(address, _Handler, max_workers=workers, request_deadline=request_deadline,
                         header_deadline=header_deadline, idle_timeout=idle_timeout, log=log)
        self.db_path = Path(db_path)
        self.verifier = verifier
        self.max_body = max_body
        self.clock = clock
        self.totals = StoreResult()
        self.store_lock = threading.Lock()  # one writer at a time: parallel POSTs queue here

    @property
    def url(self) -> str:
        return f"http://{self.host_and_port}/"


class _Handler(QuietHandler):
    server: EventWebhookServer
    server_version = "mailroom-events"

    def do_GET(self) -> None:
        # For a reverse proxy's health check; says nothing about what has been stored.
        self._answer(HTTPStatus.OK, {"ok": True, "service": "mailroom event webhook"})

    def do_POST(self) -> None:
        refusal = self._refusal_before_body()
        if refusal is not None:
            status, message = refusal
            self.close_connection = True  # the body is left unread
            return self._answer(status, {"error": message})
        length = int(self.headers["Content-Length"].strip())
        raw = self.rfile.read(length)
        if len(raw) != length:
            self.close_connection = True
            return self._answer(HTTPStatus.BAD_REQUEST, {"error": "the body ended early"})
        try:
            body = raw.decode("utf-8")
        except UnicodeDecodeError:
            return self._answer(HTTPStatus.FORBIDDEN, {"error": "signature does not match"})
        if not self._signed(body):
            return self._answer(HTTPStatus.FORBIDDEN, {"error": "signature does not match"})
        try:
            parsed = parse_events(body)
        except NotAnEventArray as exc:
            return self._answer(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
        try:
            with self.server.store_lock:
                result = store_events(self.server.db_path, parsed.events, source="webhook")
                self.server.totals.add(result)
        except Exception as exc:  # the database is locked or full: SendGrid will retry a 5xx
            self.server.log(f"could not store {len(parsed.events)} events: {type(exc).__name__}")
            return self._answer(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "could not store the events"})
        skipped = len(parsed.problems) + parsed.unknown_types
        self.server.log(
            f"stored {result.stored} event(s), {result.repeated} repeat(s), {skipped} skipped; "
            f"{result.suppressed} address(es) added to the suppression list, {result.resubscribed} taken off it "
            "by a resubscribe")
        self._answer(HTTPStatus.OK, {"stored": result.stored, "repeated": result.repeated, "skipped": skipped})

    def _refusal_before_body(self) -> tuple[HTTPStatus, str] | None:
        """Everything that can be refused without reading the body, cheapest first."""
        if self.headers.get_all("Transfer-Encoding"):
            return HTTPStatus.LENGTH_REQUIRED, "send a Content-Length, not a chunked body"
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            return HTTPStatus.LENGTH_REQUIRED, "send a Content-Length"
        if len(lengths) > 1 or not _DIGITS.fullmatch(lengths[0].strip()):
            return HTTPStatus.BAD_REQUEST, "Content-Length should be one whole number"
        if int(lengths[0].strip()) > self.server.max_body:
            return HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the body is over {self.server.max_body} bytes"
        signatures = self.headers.get_all(EventWebhookHeader.SIGNATURE) or []
        stamps = self.headers.get_all(EventWebhookHeader.TIMESTAMP) or []
        if not signatures or not stamps or not signatures[0].strip() or not stamps[0].strip():
            return HTTPStatus.FORBIDDEN, "the request is not signed"
        if len(signatures) > 1 or len(stamps) > 1:
            return HTTPStatus.BAD_REQUEST, "the signature headers are given more than once"
        if not _DIGITS.fullmatch(stamps[0].strip()):
            return HTTPStatus.BAD_REQUEST, "the timestamp should be whole seconds since 1970"
        age = self.server.clock() - int(stamps[0].strip())
        if age > MAX_AGE_SECONDS:
            return HTTPStatus.FORBIDDEN, "the timestamp is older than SendGrid's 24 hours of retries"
        if age < -MAX_AHEAD_SECONDS:
            return HTTPStatus.FORBIDDEN, "the timestamp is in the future"
        return None

    def _signed(self, body: str) -> bool:
        signature = self.headers[EventWebhookHeader.SIGNATURE].strip()
        stamp = self.headers[EventWebhookHeader.TIMESTAMP].strip()
        try:
            return bool(self.server.verifier.verify_signature(body, signature, stamp))
        except (binascii.Error, ValueError, TypeError):
            # The helper raises rather than returning False for a signature that is not base64.
            return False

    def _answer(self, status: HTTPStatus, payload: dict[str, object]) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        # Request lines go to the server's log without the client's address; bodies never do. A request
        # line is the client's text: cut short and with control characters shown, not acted on.
        line = (format % args)[:200]
        self.server.log("".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in line))


def make_server(db_path: Path, public_key: str, host: str = "127.0.0.1", port: int = 8025, *,
                max_body: int = MAX_BODY_BYTES, clock: Callable[[], float] = time.time,
                log: Callable[[str], None] | None = None, workers: int = WORKERS,
                request_deadline: float = REQUEST_DEADLINE_SECONDS,
                header_deadline: float = HEADER_DEADLINE_SECONDS,
                idle_timeout: float = IDLE_TIMEOUT_SECONDS) -> EventWebhookServer:
    """A server bound to ``host:port`` (port 0 picks a free one), not yet serving."""
    verifier = make_verifier(public_key)
    try:
        return EventWebhookServer((host, port), db_path, verifier, max_body=max_body, clock=clock, log=log,
                                  workers=workers, request_deadline=request_deadline,
                                  header_deadline=header_deadline, idle_timeout=idle_timeout)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); "
                          "is the port in use? Try another with --port") from None
