"""SendGrid's v3 Mail Send: up to 1000 people per request, one personalization (one ``to``) each.

The version's HTML and text go once per request; each person's fields travel as ``substitutions``,
with separate tags for the HTML part (values HTML-escaped here, since SendGrid does not) and for the
text part (raw). SendGrid's answer is turned into what dispatch needs to know:
- 2xx: everyone in the request accepted, under one ``X-Message-Id``;
- 429 and 5xx, or no connection at all: known not accepted, worth retrying (429 says how long to wait);
- 400/401/403/413 and other 4xx: refused for good, with SendGrid's own words;
- a timeout or a connection dropped after the request went out: nobody knows (uncertain).
SendGrid's v3 Mail Send limits are respected here: 1000 personalizations and addresses per request, each
address once, substitutions and custom_args under 10,000 bytes, at most 10 categories.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import socket
import time
import urllib.error
from collections.abc import Callable, Mapping
from email.message import Message
from email.utils import parsedate_to_datetime
from typing import Any

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient

from mailroom.errors import TransportError
from mailroom.send.personalize import html_values
from mailroom.send.transports.base import Batch, BatchResult, Delivery, Transport, Version
from mailroom.send.transports.mime import embed_images, list_unsubscribe
from mailroom.settings import Settings
from mailroom.tokens import RECIPIENT_FIELDS, token

MAX_PERSONALIZATIONS = 1000
MAX_SUBSTITUTION_BYTES = 10_000
MAX_CATEGORIES = 10
_NAME_FORBIDDEN = re.compile(r"[;,\r\n]+")

# What python_http_client gives as a response's headers (an email.message.Message), or a plain mapping.
Headers = Message | Mapping[str, str] | None


def html_tag(name: str) -> str:
    return token(f"h:{name}")


def text_tag(name: str) -> str:
    return token(f"t:{name}")


def _to_tags(template: str, tag: Callable[[str], str]) -> tuple[str, tuple[str, ...]]:
    """Swap the build's tokens for SendGrid tags; also say which fields the template uses."""
    used = []
    for name in RECIPIENT_FIELDS:
        if token(name) in template:
            template = template.replace(token(name), tag(name))
            used.append(name)
    return template, tuple(used)


class _Prepared:
    """The parts of a request that are the same for everyone getting a version (built once)."""

    def __init__(self, version: Version, settings: Settings, sandbox: bool) -> None:
        html, html_fields = _to_tags(embed_images(version.html, version), html_tag)
        text, text_fields = _to_tags(version.text, text_tag)
        subject, subject_fields = _to_tags(version.subject, text_tag)
        self.html_fields = html_fields
        self.text_fields = tuple(dict.fromkeys(text_fields + subject_fields))
        categories = list(dict.fromkeys((*settings.sendgrid.categories, version.newsletter)))[:MAX_CATEGORIES]
        headers = {"List-Id": version.list_id}
        if _https(settings.unsubscribe.url):
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        self.shared: dict[str, Any] = {
            "from": {"email": version.from_email, "name": _clean_name(version.from_name)},
            "reply_to": {"email": version.reply_to},
            "subject": subject,
            "content": [{"type": "text/plain", "value": text}, {"type": "text/html", "value": html}],
            "categories": categories,
            "headers": headers,
            "tracking_settings": {
                "click_tracking": {"enable": settings.tracking.click_tracking, "enable_text": False},
                "open_tracking": {"enable": settings.tracking.open_tracking},
                # SendGrid's own unsubscribe footer would duplicate ours (and leak a second link).
                "subscription_tracking": {"enable": False},
            },
        }
        if version.images:
            self.shared["attachments"] = [
                {"content": base64.b64encode(path.read_bytes()).decode("ascii"), "type": image.content_type,
                 "filename": image.filename, "disposition": "inline", "content_id": image.filename}
                for image, path in version.images]
        if settings.sendgrid.asm_group_id:
            self.shared["asm"] = {"group_id": settings.sendgrid.asm_group_id}
        if sandbox:
            self.shared["mail_settings"] = {"sandbox_mode": {"enable": True}}
        self.custom_args = {"newsletter": version.newsletter, "audience": version.audience}
        self.mailto = version.unsubscribe_mailto


class SendGridTransport(Transport):
    name = "sendgrid"

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.max_batch_size = min(settings.sendgrid.batch_size, MAX_PERSONALIZATIONS)
        self.clock = clock
        self._client: SendGridAPIClient | None = None
        self._prepared: dict[tuple[Version, bool], _Prepared] = {}

    def describe(self) -> str:
        return f"SendGrid ({self.settings.sendgrid.host})"

    def open(self) -> None:
        sg = self.settings.sendgrid
        self._client = SendGridAPIClient(api_key=sg.api_key.reveal(), host=sg.host)
        # The library waits forever by default; a stuck request must end (as "uncertain").
        self._client.client.timeout = sg.timeout_seconds

    def close(self) -> None:
        self._client = None

    def address_problem(self, email: str) -> str | None:
        """SendGrid's API takes ASCII addresses only: an IDN domain has one (punycode), an accented mailbox
        name has none, so that person is left out at the plan."""
        if email.rpartition("@")[0].isascii():
            return None
        return "SendGrid can only send to addresses written in plain letters before the @"

    def body(self, batch: Batch) -> tuple[dict[str, Any], BatchResult]:
        """The request body for a batch, plus the people refused before sending (too-long fields)."""
        key = (batch.version, batch.sandbox)
        prepared = self._prepared.get(key)
        if prepared is None:
            prepared = self._prepared[key] = _Prepared(batch.version, self.settings, batch.sandbox)
        refused = BatchResult()
        personalizations = []
        seen: set[str] = set()
        for message in batch.messages:
            address = message.email.strip().lower()
            if address in seen:  # never one address twice in a request (SendGrid answers 400)
                refused.add(message.key, Delivery.REJECTED, error="the same address twice in one request")
                continue
            escaped = html_values({f: message.values[f] for f in prepared.html_fields})
            substitutions = {html_tag(f): v for f, v in escaped.items()}
            substitutions.update({text_tag(f): message.values[f] for f in prepared.text_fields})
            # JSON spells a character in at most 12 bytes (an escaped surrogate pair), so only a person near
            # the limit needs the exact count (json.dumps per person led the profile of building a body).
            bound = 12 * sum(len(k) + len(v) for k, v in substitutions.items()) + 6 * len(substitutions) + 2
            if bound > MAX_SUBSTITUTION_BYTES and len(json.dumps(substitutions)) > MAX_SUBSTITUTION_BYTES:
                refused.add(message.key, Delivery.REJECTED, error="this person's name is too long for SendGrid")
                continue
            seen.add(address)
            to: dict[str, str] = {"email": message.email}
            name = _clean_name(message.name)
            if name:
                to["name"] = name
            personalization: dict[str, Any] = {
                "to": [to],
                "custom_args": {**prepared.custom_args, "recipient_id": message.recipient_id},
                "headers": {"List-Unsubscribe": list_unsubscribe(message.unsubscribe_url, prepared.mailto)},
            }
            if substitutions:
                personalization["substitutions"] = substitutions
            personalizations.append(personalization)
        return {"personalizations": personalizations, **prepared.shared}, refused

    def send_batch(self, batch: Batch) -> BatchResult:
        if self._client is None:
            self.open()
        assert self._client is not None
        body, result = self.body(batch)
        if not body["personalizations"]:
            return result
        try:
            response = self._client.client.mail.send.post(request_body=body)
        except HTTPError as exc:
            raise self._http_error(exc) from None
        except urllib.error.URLError as exc:
            # urllib wraps failures while connecting or sending: SendGrid never got the whole request.
            raise TransportError(self._scrub(f"could not reach SendGrid ({_reason(exc.reason)})"),
                                 retryable=True) from None
        except (TimeoutError, ConnectionError, http.client.HTTPException, OSError) as exc:
            # After the request went out: it may have been accepted. Never retried automatically.
            raise TransportError(self._scrub(
                f"no answer from SendGrid after the request was sent ({_reason(exc)}); it may or may not "
                "have been accepted"), retryable=False, uncertain=True) from None
        message_id = _header(response.headers, "x-message-id")
        for message in batch.messages:
            if message.key not in result.deliveries:
                result.add(message.key, Delivery.SENT, message_id=message_id)
        return result

    def _http_error(self, exc: HTTPError) -> TransportError:
        status = int(exc.status_code)
        said = self._scrub(_sendgrid_messages(exc.body))
        told = f" SendGrid said: {said}" if said else ""
        if status == 429:
            return TransportError(f"SendGrid asked us to slow down (429).{told}", retryable=True, status=status,
                                  retry_after=self._retry_after(exc.headers))
        if status >= 500:
            return TransportError(f"SendGrid had a problem on its side ({status}).{told}", retryable=True,
                                  status=status, retry_after=self._retry_after(exc.headers))
        if status == 401:
            message = ("SendGrid did not accept the API key (401): it is wrong or has been revoked. "
                       f"Check SENDGRID_API_KEY in .env.{told}")
        elif status == 403:
            message = (f"SendGrid refused to send (403): often the sender address "
                       f"{self.settings.sender.email} is not verified in SendGrid, or the account is "
                       f"blocked.{told}")
        elif status == 413:
            message = f"the email is too large for SendGrid (413): use smaller images.{told}"
        elif status == 400:
            message = f"SendGrid rejected the request as invalid (400).{told}"
        else:
            message = f"SendGrid refused the request ({status}).{told}"
        return TransportError(message, retryable=False, status=status)

    def _retry_after(self, headers: Headers) -> float | None:
        """Seconds to wait, from Retry-After or X-RateLimit-Reset (any spelling, seconds or a time)."""
        for name in ("retry-after", "x-ratelimit-reset"):
            value = _header(headers, name)
            if not value:
                continue
            value = value.strip()
            try:
                number = float(value)
            except ValueError:
                try:
                    return max(0.0, parsedate_to_datetime(value).timestamp() - self.clock())
                except (TypeError, ValueError):
                    continue
            # A reset header holds a Unix time; Retry-After holds seconds.
            return max(0.0, number - self.clock()) if number > 1_000_000_000 else max(0.0, number)
        return None

    def _scrub(self, text: str) -> str:
        key = self.settings.sendgrid.api_key.reveal()
        return text.replace(key, "********") if key else text


def _header(headers: Headers, name: str) -> str | None:
    """A header's value whatever its capitalisation (SendGrid spells rate-limit headers several ways)."""
    if headers is None:
        return None
    for key, value in headers.items():
        if str(key).lower() == name:
            return str(value)
    return None


def _sendgrid_messages(body: bytes | str | None) -> str:
    """SendGrid's ``errors[].message`` texts joined, or "" when the body is not SendGrid's JSON."""
    if not body:
        return ""
    try:
        data = json.loads(body)
        messages = [str(e.get("message", "")).strip() for e in data.get("errors", []) if isinstance(e, dict)]
    except (ValueError, AttributeError, TypeError):
        return ""
    return "; ".join(m.rstrip(".") + "." for m in messages if m)


def _reason(exc: object) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "the connection was refused"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "it took too long to answer"
    if isinstance(exc, http.client.RemoteDisconnected | ConnectionResetError | http.client.IncompleteRead):
        return "the connection was dropped"
    return str(exc) or type(exc).__name__


def _clean_name(name: str) -> str:
    """SendGrid refuses ';' and ',' in a display name; a name is never worth a refused request."""
    return " ".join(_NAME_FORBIDDEN.sub(" ", name).split())


def _https(url: str) -> bool:
    return url.lower().startswith("https://")
