"""A stand-in for SendGrid's POST /v3/mail/send on 127.0.0.1, for tests and the benchmark.

It checks every body against tests/fixtures/sendgrid/mail_send.schema.json (SendGrid's published request
schema, resolved), with ``format: email`` checked as SendGrid checks it (ASCII only: no accented mailbox
names, no unencoded international domains), and the per-request limits SendGrid documents, sizes counted
in bytes of UTF-8 (answering 400 in SendGrid's error shape, ``field`` naming the place as SendGrid does,
e.g. ``personalizations.3.to.0.email``, and remembering the violation so a test can fail on it),
answers 202 with an X-Message-Id, and counts what each address received. It can be scripted, request
by request, to answer 429 (with reset headers), 500, 401, to drop the connection, or to hang.

    with SendGridStandIn(api_key="SG.test") as sg:
        sg.script(Answer(429, headers={"X-RateLimit-Reset": "..."}), Answer(202))
        ... SENDGRID_API_HOST=sg.url ...
        sg.received["amelia@example.org"] == 1

``refuse`` makes it refuse chosen addresses as SendGrid refuses one it judges invalid: a 400 whose error
names that person's personalization (not a violation: the request itself was valid).
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA_PATH = Path(__file__).resolve().parent / "fixtures" / "sendgrid" / "mail_send.schema.json"
MAX_BODY_BYTES = 30 * 1000 * 1000

# An address as SendGrid's validator takes it: ASCII, one @, a dotted domain of letters, digits and
# hyphens (punycode included), no spaces or angle brackets.
_EMAIL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+"
                    r"[A-Za-z0-9-]{2,}$")


def sendgrid_format_checker() -> jsonschema.FormatChecker:
    """``format: email`` as SendGrid applies it (jsonschema's own check only looks for an @)."""
    checker = jsonschema.FormatChecker(formats=())

    @checker.checks("email")
    def is_email(value: object) -> bool:
        return not isinstance(value, str) or bool(_EMAIL.match(value))

    return checker


@dataclass(frozen=True)
class Problem:
    """One entry of SendGrid's error answer."""

    message: str
    field: str | None = None
    help: str | None = None

    def __str__(self) -> str:
        return f"{self.field or 'body'}: {self.message}"


@dataclass
class Answer:
    """What the stand-in does with one request.

    status: the HTTP status to answer (202 = accepted).
    drop: close the connection without answering (after reading the body).
    hang: seconds to wait before answering (or before dropping); ``release()`` ends every wait early.
    accepted: whether the request counts as delivered (default: a 2xx, or a drop/hang that SendGrid
    would have taken in before the line went quiet).
    """

    status: int = 202
    headers: dict[str, str] = field(default_factory=dict)
    errors: list[str | Problem] = field(default_factory=list)  # SendGrid's messages (or whole entries)
    drop: bool = False
    hang: float = 0.0
    accepted: bool | None = None

    def counts(self) -> bool:
        return self.accepted if self.accepted is not None else (200 <= self.status < 300)


class _QuietServer(ThreadingHTTPServer):
    """A sender that goes away mid-request (a timeout test, Ctrl-C, a killed send.py) is what some tests are
    about: not a traceback on the test run's stderr. Anything else is still printed."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class SendGridStandIn:
    def __init__(self, api_key: str = "SG.standin-key", *, delay: float = 0.0,
                 refuse: dict[str, str] | None = None, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.api_key = api_key
        self.delay = delay  # seconds before every answer (for kill-mid-send tests and realism)
        self.refuse = {k.lower(): v for k, v in (refuse or {}).items()}  # address -> SendGrid's message
        self.refused: list[str] = []  # addresses refused that way, in order
        self.body_sizes: list[int] = []  # bytes of every body that arrived
        self.max_body_bytes = max_body_bytes
        self.validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")),
                                                         format_checker=sendgrid_format_checker())
        self._script: list[Answer] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        self.received: Counter[str] = Counter()  # address -> accepted copies
        self.requests: list[dict[str, Any]] = []  # every body that arrived (when keep_bodies)
        self.request_count = 0
        self.arrived = threading.Event()  # set whenever a request arrives
        self.violations: list[str] = []
        self.message_ids: list[str] = []
        self.keep_bodies = True
        # Connections are kept open between requests (HTTP/1.1), as SendGrid's are: how many were made, and the
        # ones open now (``close_idle_connections`` ends them, as a server does after a while).
        self.connections_made = 0
        self._open_connections: set[Any] = set()
        # Called with the request's number (1 = the first) once a valid body arrived and before it is answered:
        # a test's way to make something happen mid-send (edit a file, store an unsubscribe, compose again).
        self.on_request: Callable[[int], None] | None = None
        self.server = _QuietServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        # a short poll so shutdown() returns at once (the default 0.5 s wait adds up over a suite)
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01},
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def script(self, *answers: Answer) -> None:
        """Answers for the next requests, in order; after them every valid request gets 202."""
        with self._lock:
            self._script.extend(answers)

    def release(self) -> None:
        """End every hang now."""
        self._released.set()

    def close_idle_connections(self) -> None:
        """Close every kept connection from this side, as a server does to one left idle."""
        with self._lock:
            for connection in list(self._open_connections):
                with contextlib.suppress(OSError):  # already closed by the client
                    connection.shutdown(2)

    def __enter__(self) -> SendGridStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()

    # --- checking a body -----------------------------------------------------------------------------

    def problems(self, body: Any) -> list[Problem]:
        """Why SendGrid would answer 400: the schema, then the limits the schema does not encode."""
        found = [Problem(e.message, ".".join(map(str, e.absolute_path)) or None)
                 for e in self.validator.iter_errors(body)]
        if found:
            return found
        personalizations = body["personalizations"]
        if len(personalizations) > 1000:
            found.append(Problem("more than 1000 personalizations", "personalizations"))
        addresses = [a["email"].lower() for p in personalizations for kind in ("to", "cc", "bcc")
                     for a in p.get(kind, [])]
        if len(addresses) > 1000:
            found.append(Problem("more than 1000 addresses in one request", "personalizations"))
        if len(addresses) != len(set(addresses)):
            found.append(Problem("an address appears more than once in the request", "personalizations"))
        for i, p in enumerate(personalizations):
            where = f"personalizations.{i}"
            if len(p.get("to", [])) != 1 or p.get("cc") or p.get("bcc"):
                found.append(Problem("not exactly one recipient", where))
            subs = p.get("substitutions", {})
            if any(not isinstance(v, str) for v in subs.values()):
                found.append(Problem("substitutions must be strings", f"{where}.substitutions"))
            if _utf8_size(subs) > 10_000:
                found.append(Problem("substitutions over 10,000 bytes", f"{where}.substitutions"))
            if _utf8_size(p.get("custom_args", {})) > 10_000:
                found.append(Problem("custom_args over 10,000 bytes", f"{where}.custom_args"))
            for a in p.get("to", []):
                if any(ch in a.get("name", "") for ch in ";,"):
                    found.append(Problem("a name contains ';' or ','", f"{where}.to.0.name"))
        if _utf8_size(body.get("custom_args", {})) > 10_000:
            found.append(Problem("custom_args over 10,000 bytes", "custom_args"))
        categories = body.get("categories", [])
        if len(categories) > 10 or len(set(categories)) != len(categories):
            found.append(Problem("more than 10 categories, or one twice", "categories"))
        return found

    def refusals(self, body: Any) -> list[Problem]:
        """The people of a valid body that this stand-in was told to refuse, as SendGrid names them."""
        found = []
        for i, p in enumerate(body["personalizations"]):
            address = p["to"][0]["email"].lower()
            if address in self.refuse:
                self.refused.append(address)
                found.append(Problem(self.refuse[address], f"personalizations.{i}.to.0.email",
                                     "https://www.twilio.com/docs/sendgrid/api-reference/mail-send/errors"))
        return found

    # --- the HTTP side ---------------------------------------------------------------------------------

    def _next_answer(self) -> tuple[int, Answer]:
        with self._lock:
            self.request_count += 1
            return self.request_count, self._script.pop(0) if self._script else Answer()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def setup(self) -> None:
                super().setup()
                with standin._lock:
                    standin.connections_made += 1
                    standin._open_connections.add(self.connection)

            def finish(self) -> None:
                with standin._lock:
                    standin._open_connections.discard(self.connection)
                super().finish()

            def _answer(self, status: int, payload: Any = None, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode() if payload is not None else b""
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                if data:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                standin.body_sizes.append(len(raw))
                if self.path != "/v3/mail/send":
                    self._answer(404, _errors([Problem("not found")]))
                    return
                number, answer = standin._next_answer()
                standin.arrived.set()
                if self.headers.get("Authorization") != f"Bearer {standin.api_key}" or answer.status == 401:
                    said = "The provided authorization grant is invalid, expired, or revoked"
                    self._answer(401, _errors([Problem(said)]))
                    return
                try:
                    body = json.loads(raw)
                except ValueError:
                    standin.violations.append("the body is not JSON")
                    self._answer(400, _errors([Problem("Bad Request")]))
                    return
                if standin.keep_bodies:
                    standin.requests.append(body)
                if len(raw) > standin.max_body_bytes:
                    standin.violations.append(f"the body is {len(raw)} bytes, over {standin.max_body_bytes}")
                    self._answer(413, _errors([Problem("Payload too large")]))
                    return
                problems = standin.problems(body)
                if problems:
                    standin.violations.extend(map(str, problems))
                    self._answer(400, _errors(problems))
                    return
                refusals = standin.refusals(body)
                if refusals:
                    self._answer(400, _errors(refusals))
                    return
                if standin.on_request is not None:
                    standin.on_request(number)
                if answer.hang or standin.delay:
                    standin._released.wait(answer.hang or standin.delay)
                if answer.counts():
                    with standin._lock:
                        for p in body["personalizations"]:
                            standin.received[p["to"][0]["email"].lower()] += 1
                if answer.drop:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if 200 <= answer.status < 300:
                    message_id = uuid.uuid4().hex[:22]
                    standin.message_ids.append(message_id)
                    sandbox = body.get("mail_settings", {}).get("sandbox_mode", {}).get("enable")
                    self._answer(200 if sandbox else answer.status, None, {"X-Message-Id": message_id})
                else:
                    said = [m if isinstance(m, Problem) else Problem(m)
                            for m in answer.errors or [f"status {answer.status}"]]
                    self._answer(answer.status, _errors(said), answer.headers)

        return Handler


def _errors(problems: list[Problem]) -> dict[str, Any]:
    return {"errors": [{"message": p.message, "field": p.field, "help": p.help} for p in problems]}


def _utf8_size(value: object) -> int:
    """Bytes of UTF-8, as SendGrid counts them (not the length of \\u-escaped JSON)."""
    return len(json.dumps(value, ensure_ascii=False).encode("utf-8"))


def wait_until(predicate: Any, timeout: float = 20.0) -> bool:
    """Poll ``predicate`` until it is true (for tests that watch a subprocess)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False
