"""Test helpers: sign Event Webhook payloads exactly as SendGrid does, and build events.

SendGrid signs ``timestamp + raw body`` (UTF-8) with ECDSA P-256 / SHA-256, sends the DER signature
base64-encoded, and shows the public key as base64 DER SubjectPublicKeyInfo (the PEM body without its
header lines), which is what ``sendgrid.helpers.eventwebhook.EventWebhook`` expects.
"""

from __future__ import annotations

import base64
import http.client
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mailroom.servers.webhook import EventWebhookServer, make_server

SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"


class Signer:
    def __init__(self) -> None:
        self.private_key = ec.generate_private_key(ec.SECP256R1())

    @property
    def public_key(self) -> str:
        der = self.private_key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(der).decode("ascii")

    def sign(self, body: str, timestamp: str) -> str:
        der = self.private_key.sign((timestamp + body).encode("utf-8"), ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(der).decode("ascii")

    def headers(self, body: str, timestamp: int | None = None) -> dict[str, str]:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        return {SIGNATURE: self.sign(body, stamp), TIMESTAMP: stamp, "Content-Type": "application/json"}


def event(kind: str, event_id: str, email: str = "ada.parent@example.org", *, audience: str = "parents",
          newsletter: str = "2024-11-08-online-safety", recipient_id: str | None = "r-ada",
          timestamp: int = 1_731_060_000, **extra: object) -> dict[str, object]:
    """One event as SendGrid posts it, with send's custom_args as top-level keys."""
    item: dict[str, object] = {
        "email": email, "timestamp": timestamp, "event": kind, "sg_event_id": event_id,
        "sg_message_id": f"msg-{recipient_id}.filter0001", "category": ["newsletter", newsletter],
        "newsletter": newsletter, "audience": audience,
    }
    if recipient_id is not None:
        item["recipient_id"] = recipient_id
    item.update(extra)
    return item


@dataclass
class Response:
    status: int
    body: dict[str, object]


def post(server: EventWebhookServer, body: str | bytes, headers: dict[str, str]) -> Response:
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("POST", "/events", body=body.encode("utf-8") if isinstance(body, str) else body,
                     headers=headers)
        answer = conn.getresponse()
        return Response(answer.status, json.loads(answer.read() or b"{}"))
    finally:
        conn.close()


@contextmanager
def running_server(db_path: Path, public_key: str, **options: object) -> Iterator[EventWebhookServer]:
    server = make_server(db_path, public_key, "127.0.0.1", 0, **options)  # type: ignore[arg-type]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
