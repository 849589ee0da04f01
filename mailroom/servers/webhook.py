"""The HTTP endpoint for SendGrid's signed Event Webhook (``mailroom events serve``).

Every POST must carry SendGrid's ECDSA signature over the timestamp header plus the raw body,
checked with the ``sendgrid`` library's ``EventWebhook`` helper and the public key from .env. The
helper does not look at the time, so this module refuses timestamps more than ten minutes away from
now: a captured request cannot be replayed later. Events are stored before the answer, in one short
transaction, so a 2xx always means "kept" and anything else makes SendGrid try again.

Statuses: 200 stored (or all repeats); 400 not an event array; 403 unsigned, badly signed or stale;
411 no Content-Length; 413 body over the limit; 500 the database failed (SendGrid retries).
"""

from __future__ import annotations

import binascii
import json
import re
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.eventwebhook.eventwebhook_header import EventWebhookHeader

from mailroom.errors import ConfigError
from mailroom.events.intake import NotAnEventArray, StoreResult, parse_events, store_events

MAX_BODY_BYTES = 5 * 1024 * 1024
MAX_CLOCK_SKEW_SECONDS = 10 * 60
READ_TIMEOUT_SECONDS = 15

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


class EventWebhookServer(ThreadingHTTPServer):
    """A threading HTTP server that knows where to store events and how to check signatures."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], db_path: Path, verifier: EventWebhook, *,
                 max_body: int = MAX_BODY_BYTES, clock: Callable[[], float] = time.time,
                 log: Callable[[str], None] | None = None) -> None:
        super().__init__(address, _Handler)
        self.db_path = Path(db_path)
        self.verifier = verifier
        self.max_body = max_body
        self.clock = clock
        self.log = log or (lambda _message: None)
        self.totals = StoreResult()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        if isinstance(host, bytes):  # only for AF_UNIX-style servers; ours bind an IP address
            host = host.decode()
        return f"http://{host}:{port}/"


class _Handler(BaseHTTPRequestHandler):
    server: EventWebhookServer
    server_version = "mailroom-events"
    sys_version = ""
    timeout = READ_TIMEOUT_SECONDS

    def do_GET(self) -> None:
        # For a reverse proxy's health check; says nothing about what has been stored.
        self._answer(HTTPStatus.OK, {"ok": True, "service": "mailroom event webhook"})

    def do_POST(self) -> None:
        refusal = self._refusal_before_body()
        if refusal is not None:
            status, message = refusal
            self.close_connection = True  # the body is left unread
            return self._answer(status, {"error": message})
        length = int(self.headers["Content-Length"])
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
            result = store_events(self.server.db_path, parsed.events, source="webhook")
        except Exception as exc:  # the database is locked or full: SendGrid will retry a 5xx
            self.server.log(f"could not store {len(parsed.events)} events: {type(exc).__name__}")
            return self._answer(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "could not store the events"})
        self.server.totals.add(result)
        skipped = len(parsed.problems) + parsed.unknown_types
        self.server.log(
            f"stored {result.stored} event(s), {result.repeated} repeat(s), {skipped} skipped; "
            f"{result.suppressed} address(es) added to the suppression list")
        self._answer(HTTPStatus.OK, {"stored": result.stored, "repeated": result.repeated, "skipped": skipped})

    def _refusal_before_body(self) -> tuple[HTTPStatus, str] | None:
        """Everything that can be refused without reading the body, cheapest first."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return HTTPStatus.LENGTH_REQUIRED, "send a Content-Length"
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            return HTTPStatus.LENGTH_REQUIRED, "send a Content-Length"
        if not length_text.strip().isdigit():
            return HTTPStatus.BAD_REQUEST, "Content-Length is not a number"
        if int(length_text) > self.server.max_body:
            return HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the body is over {self.server.max_body} bytes"
        signature = self.headers.get(EventWebhookHeader.SIGNATURE, "").strip()
        stamp = self.headers.get(EventWebhookHeader.TIMESTAMP, "").strip()
        if not signature or not stamp:
            return HTTPStatus.FORBIDDEN, "the request is not signed"
        if not stamp.isdigit():
            return HTTPStatus.FORBIDDEN, "the timestamp is not a number"
        if abs(self.server.clock() - int(stamp)) > MAX_CLOCK_SKEW_SECONDS:
            return HTTPStatus.FORBIDDEN, "the timestamp is too old or in the future"
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
        # Request lines go to the server's log without the client's address; bodies never do.
        self.server.log(format % args)


def make_server(db_path: Path, public_key: str, host: str = "127.0.0.1", port: int = 8025, *,
                max_body: int = MAX_BODY_BYTES, clock: Callable[[], float] = time.time,
                log: Callable[[str], None] | None = None) -> EventWebhookServer:
    """A server bound to ``host:port`` (port 0 picks a free one), not yet serving."""
    verifier = make_verifier(public_key)
    try:
        return EventWebhookServer((host, port), db_path, verifier, max_body=max_body, clock=clock, log=log)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); "
                          "is the port in use? Try another with --port") from None
