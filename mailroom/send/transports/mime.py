"""Fast RFC 5322 messages for transports that build each email themselves (outbox, SMTP).

The MIME structure of a version is built once (boundaries, headers shared by everyone, images already
base64-encoded); per person only the To/Message-ID/List-Unsubscribe headers and the two personalised
text parts are made. Structure:
  multipart/alternative [ text/plain, text/html ]                               (no images)
  multipart/alternative [ text/plain, multipart/related [ text/html, images ] ]  (with images, cid: links)
A header value from data is either plain ASCII matched by a strict pattern (written as is) or goes
through the email package's header registry; anything with a line break is refused, so no data can
add a header.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy as email_policy
from email.headerregistry import Address
from email.utils import format_datetime

from mailroom.compose.build import IMAGE_PREFIX
from mailroom.errors import TransportError
from mailroom.send.transports.base import Message, Version
from mailroom.tokens import FIELD_TOKEN

_POLICY = email_policy.SMTP  # CRLF line ends, RFC 2047 for non-ASCII header text
_CRLF = b"\r\n"
_ONE_CLICK = b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"


def header(name: str, value: str) -> bytes:
    """One folded, encoded header line; refuses a value that could start another header."""
    if any(ch in value for ch in "\r\n\x00"):
        raise TransportError(f"the {name} header would contain a line break; refusing to build the message",
                             retryable=False)
    line = f"{name}: {value}"
    if len(line) <= 78 and line.isascii() and _PLAIN_VALUE.fullmatch(value) and "=?" not in value:
        # Already what the header registry would write (tested); parsing it there cost more than the
        # rest of a message put together (profile of 10,000 outbox messages).
        return line.encode("ascii") + _CRLF
    return _POLICY.header_factory(name, value).fold(policy=_POLICY).encode("ascii")


_PLAIN_VALUE = re.compile(r"[!-~]+(?: [!-~]+)*")  # printable ASCII words, single spaces, none at either end
_PLAIN_NAME = re.compile(r"[A-Za-z0-9 '_-]*")
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9._+-]+@[A-Za-z0-9.-]+")


def address_header(name: str, display_name: str, email: str) -> bytes:
    """An address header (From/To/Reply-To) for exactly one address."""
    if (_PLAIN_NAME.fullmatch(display_name) and _PLAIN_ADDRESS.fullmatch(email)
            and len(name) + len(display_name) + len(email) < 70):
        # Plain ASCII needs no quoting or encoding: skip the (slow) header registry.
        line = f"{name}: {display_name.strip()} <{email}>\r\n" if display_name.strip() else f"{name}: {email}\r\n"
        return line.encode("ascii")
    try:
        value = str(Address(display_name=display_name, addr_spec=email))
    except (ValueError, IndexError) as exc:
        raise TransportError(f"the address {email!r} cannot go in a {name} header ({exc})", retryable=False) from None
    return header(name, value)


def embed_images(markup: str, version: Version) -> str:
    """Point the version's local images at their inline attachments (``cid:<filename>``)."""
    for image, _data in version.images:
        markup = markup.replace(f'src="{IMAGE_PREFIX}{image.filename}"', f'src="cid:{image.filename}"')
    return markup


def list_unsubscribe(url: str, mailto: str) -> str:
    links = [f"<{url}>"]
    if mailto:
        links.append(f"<mailto:{mailto}?subject=unsubscribe>")
    return ", ".join(links)


def _qp(text: str) -> bytes:
    """Quoted-printable UTF-8 with CRLF line ends (C speed; '=' is always encoded, so no boundary can appear)."""
    encoded = binascii.b2a_qp(text.replace("\r\n", "\n").encode("utf-8"), istext=True)
    # b2a_qp ends soft line breaks like the data's first line (LF here); the message needs CRLF throughout.
    return encoded.replace(b"\n", b"\r\n")


def _soft_break_after(encoded: bytes) -> bytes:
    """``encoded`` and a soft line break, the last line broken early if "=" would take it past 76 characters."""
    start = encoded.rfind(b"\n") + 1
    if len(encoded) - start > 75:
        cut = start + 75
        # Never inside an "=XX" escape: in the encoded text "=" only ever starts one (hex digits follow).
        if encoded[cut - 1] == 0x3D:
            cut -= 1
        elif encoded[cut - 2] == 0x3D:
            cut -= 2
        encoded = encoded[:cut] + b"=\r\n" + encoded[cut:]
    return encoded + b"=\r\n"


def _segments(template: str) -> tuple[bytes | str, ...]:
    """A template as quoted-printable pieces, with each token left as its field name.

    Each static piece is encoded once and ends in a soft line break, so a person's values can be
    encoded on their own and slotted in between: stamping out a message is then a join.
    """
    pieces: list[bytes | str] = []
    for index, piece in enumerate(_split(template)):
        if index % 2:
            pieces.append(piece)
        elif piece:
            pieces.append(_soft_break_after(_qp(piece)))
    return tuple(pieces)


def _split(template: str) -> list[str]:
    """Static text and field names, alternating (always starting and ending with static text)."""
    pieces: list[str] = []
    last = 0
    for match in FIELD_TOKEN.finditer(template):
        pieces += [template[last:match.start()], match.group(1)]
        last = match.end()
    pieces.append(template[last:])
    return pieces


def _stamp(segments: tuple[bytes | str, ...], values: Mapping[str, str]) -> bytes:
    return b"".join(p if isinstance(p, bytes) else _soft_break_after(_qp(values[p])) for p in segments)


def _b64_lines(data: bytes) -> bytes:
    encoded = base64.b64encode(data)
    return _CRLF.join(encoded[i:i + 76] for i in range(0, len(encoded), 76))


@dataclass(frozen=True)
class MimeTemplate:
    """A version's message, ready to be stamped out per person."""

    version: Version
    shared_headers: bytes  # From, Reply-To, Subject, List-Id, MIME-Version, Content-Type
    html: tuple[bytes | str, ...]  # with cid: images, as _segments
    text: tuple[bytes | str, ...]
    before_text: bytes
    between: bytes  # after the text part, up to the HTML part's body
    after_html: bytes  # the rest: images and closing boundaries
    msgid_domain: str

    @classmethod
    def build(cls, version: Version) -> MimeTemplate:
        outer = f"=_mailroom_alt_{secrets.token_hex(8)}".encode()
        inner = f"=_mailroom_rel_{secrets.token_hex(8)}".encode()
        shared = b"".join([
            address_header("From", version.from_name, version.from_email),
            address_header("Reply-To", "", version.reply_to),
            header("Subject", version.subject),
            header("List-Id", version.list_id),
            b"MIME-Version: 1.0\r\n",
            b'Content-Type: multipart/alternative; boundary="' + outer + b'"\r\n',
        ])
        text_head = (b'Content-Type: text/plain; charset="utf-8"\r\n'
                     b"Content-Transfer-Encoding: quoted-printable\r\n\r\n")
        html_head = (b'Content-Type: text/html; charset="utf-8"\r\n'
                     b"Content-Transfer-Encoding: quoted-printable\r\n\r\n")
        before_text = b"\r\n--" + outer + b"\r\n" + text_head
        if version.images:
            between = (b"\r\n--" + outer + b"\r\n" + b'Content-Type: multipart/related; boundary="' + inner
                       + b'"\r\n\r\n--' + inner + b"\r\n" + html_head)
            parts = []
            for image, data in version.images:
                parts.append(
                    b"\r\n--" + inner + b"\r\n"
                    + header("Content-Type", image.content_type)
                    + b"Content-Transfer-Encoding: base64\r\n"
                    + header("Content-ID", f"<{image.filename}>")
                    + header("Content-Disposition", f'inline; filename="{image.filename}"')
                    + b"\r\n" + _b64_lines(data))
            after = b"".join(parts) + b"\r\n--" + inner + b"--\r\n--" + outer + b"--\r\n"
        else:
            between = b"\r\n--" + outer + b"\r\n" + html_head
            after = b"\r\n--" + outer + b"--\r\n"
        domain = version.from_email.rpartition("@")[2] or "mailroom.invalid"
        return cls(version, shared, _segments(embed_images(version.html, version)), _segments(version.text),
                   before_text, between, after, domain)

    def render(self, message: Message, *, now: datetime | None = None) -> tuple[str, bytes]:
        """(Message-ID, the whole message as bytes) for one person."""
        message_id = f"<{secrets.token_hex(12)}@{self.msgid_domain}>"
        moment = now or datetime.now(UTC)
        head = b"".join([
            b"Date: " + format_datetime(moment).encode("ascii") + _CRLF,
            b"Message-ID: " + message_id.encode("ascii") + _CRLF,
            address_header("To", message.name, message.email),
            self.shared_headers,
            _list_unsubscribe_header(message.unsubscribe_url, self.version.unsubscribe_mailto),
            # One-click unsubscribe (RFC 8058) is only allowed for an https link.
            _ONE_CLICK if message.unsubscribe_url.lower().startswith("https://") else b"",
        ])
        html_values = {name: html.escape(value, quote=True) for name, value in message.values.items()}
        body = b"".join([self.before_text, _stamp(self.text, message.values), self.between,
                         _stamp(self.html, html_values), self.after_html])
        return message_id, head + body


def _list_unsubscribe_header(url: str, mailto: str) -> bytes:
    """List-Unsubscribe, one link per line (the links come from school.toml and an opaque id)."""
    value = list_unsubscribe(url, mailto)
    if not value.isascii() or any(ch in value for ch in "\r\n\x00") or len(url) > 900:
        return header("List-Unsubscribe", value)
    return ("List-Unsubscribe: " + value.replace(", ", ",\r\n ") + "\r\n").encode("ascii")


_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


def safe_filename(text: str) -> str:
    return _UNSAFE_NAME.sub("_", text)[:80] or "message"


def stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime())


class MimeTemplates:
    """Each version's template, built on first use: a run stamps out one or two versions many times."""

    def __init__(self) -> None:
        self._built: dict[Version, MimeTemplate] = {}

    def for_version(self, version: Version) -> MimeTemplate:
        template = self._built.get(version)
        if template is None:
            template = self._built[version] = MimeTemplate.build(version)
        return template
