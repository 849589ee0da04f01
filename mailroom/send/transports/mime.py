"""Fast RFC 5322 messages for transports that build each email themselves (outbox, SMTP).

The MIME structure of a version is built once (boundaries, headers shared by everyone, images already
base64-encoded); per person only the To/Message-ID/List-Unsubscribe headers and the two personalised
text parts are made. Structure:
  multipart/alternative [ text/plain, text/html ]                               (no images)
  multipart/alternative [ text/plain, multipart/related [ text/html, images ] ]  (with images, cid: links)
Every header from data is written by ``headers`` (never the email package): literal text, encoded
words of our own making where needed, so no data can add a header. A subject holding tokens
(``%%first_name%%``) is filled in per person, as SendGrid does.
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
from email.utils import format_datetime
from urllib.parse import quote

from mailroom.addresses import ascii_domain
from mailroom.compose.build import IMAGE_PREFIX
from mailroom.errors import TransportError
from mailroom.send.personalize import personalize
from mailroom.send.transports import headers
from mailroom.send.transports.base import Message, Version
from mailroom.tokens import FIELD_TOKEN

_CRLF = b"\r\n"
_ONE_CLICK = b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
_SAFE_FILENAME = re.compile(r"[A-Za-z0-9._-]{1,100}")


def header(name: str, value: str) -> bytes:
    """One header of free text (a subject, a description): literal, folded, encoded where needed."""
    return headers.unstructured(name, value)


def address_header(name: str, display_name: str, email: str, *, utf8: bool = False) -> bytes:
    """An address header (From/To/Reply-To) for exactly one address; refuses an address that is not one."""
    try:
        return headers.address_header(name, display_name, email, utf8=utf8)
    except headers.HeaderProblem as exc:
        raise TransportError(f"{exc}, so the {name} header cannot be written", retryable=False) from None


def _list_id(value: str) -> bytes:
    """List-Id: the school's description (literal text) and the list's id in angle brackets (RFC 2919)."""
    description, _, ident = value.rpartition(" <")
    ident = ident.rstrip(">")
    local, _, domain = ident.rpartition(".")
    ident = f"{local}.{headers.address('x@' + domain).partition('@')[2]}" if domain else ident
    return headers.fold("List-Id", [*headers.phrase(description), f"<{ident}>"])


def embed_images(markup: str, version: Version) -> str:
    """Point the version's local images at their inline attachments (``cid:<filename>``)."""
    for image, _data in version.images:
        markup = markup.replace(f'src="{IMAGE_PREFIX}{image.filename}"', f'src="cid:{image.filename}"')
    return markup


def list_unsubscribe(url: str, mailto: str) -> str:
    """List-Unsubscribe's value: this person's link, and the school's mailto when there is one."""
    return f"<{url}>, <mailto:{mailto}?subject=unsubscribe>" if mailto else f"<{url}>"


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
    shared_headers: bytes  # From, Reply-To, Subject (unless personal), List-Id, MIME-Version, Content-Type
    personal_subject: bool  # the subject holds tokens (``%%first_name%%``): written per person
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
        personal_subject = FIELD_TOKEN.search(version.subject) is not None
        shared = b"".join([
            address_header("From", version.from_name, version.from_email),
            address_header("Reply-To", "", version.reply_to),
            b"" if personal_subject else header("Subject", version.subject),
            _list_id(version.list_id),
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
                if not _SAFE_FILENAME.fullmatch(image.filename) or "/" not in image.content_type:
                    raise TransportError(f"the image {image.filename!r} has a name or type that cannot go in an "
                                         "email; compose the newsletter again", retryable=False)
                parts.append(
                    b"\r\n--" + inner + b"\r\n"
                    + f"Content-Type: {image.content_type}\r\n".encode("ascii")
                    + b"Content-Transfer-Encoding: base64\r\n"
                    + f"Content-ID: <{image.filename}>\r\n".encode("ascii")
                    + f'Content-Disposition: inline; filename="{image.filename}"\r\n'.encode("ascii")
                    + b"\r\n" + _b64_lines(data))
            after = b"".join(parts) + b"\r\n--" + inner + b"--\r\n--" + outer + b"--\r\n"
        else:
            between = b"\r\n--" + outer + b"\r\n" + html_head
            after = b"\r\n--" + outer + b"--\r\n"
        domain = ascii_domain(version.from_email.rpartition("@")[2]) or "mailroom.invalid"
        return cls(version, shared, personal_subject, _segments(embed_images(version.html, version)),
                   _segments(version.text), before_text, between, after, domain)

    def render(self, message: Message, *, now: datetime | None = None) -> tuple[str, bytes]:
        """(Message-ID, the whole message as bytes) for one person.

        Raises ``TransportError`` when this person's data cannot make a valid message (an address that
        cannot be written in a header): only they miss out. A mailbox name beyond ASCII gives an SMTPUTF8
        message (RFC 6532: the address in UTF-8 in the header), which only such a route may carry.
        """
        message_id = f"<{secrets.token_hex(12)}@{self.msgid_domain}>"
        moment = now or datetime.now(UTC)
        head = b"".join([
            b"Date: " + format_datetime(moment).encode("ascii") + _CRLF,
            b"Message-ID: " + message_id.encode("ascii") + _CRLF,
            address_header("To", message.name, message.email, utf8=needs_smtputf8(message.email)),
            header("Subject", personalize(self.version.subject, message.values, is_html=False))
            if self.personal_subject else b"",
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
    """List-Unsubscribe, one link per line (the links come from school.toml and an opaque id).

    A URL is never encoded-word text (RFC 2369): anything but printable ASCII in it is percent-encoded.
    """
    links = [_uri(url)] + ([_uri(f"mailto:{mailto}?subject=unsubscribe")] if mailto else [])
    return ("List-Unsubscribe: " + ",\r\n ".join(f"<{link}>" for link in links) + "\r\n").encode("ascii")


def _uri(text: str) -> str:
    """A link as header text: printable ASCII only, no spaces or angle brackets (percent-encoded)."""
    text = headers.literal(text)
    if text.isascii() and text.isprintable() and not any(ch in text for ch in " <>"):
        return text
    return quote(text, safe="!#$&'()*+,/:;=?@[]~%")


def needs_smtputf8(email: str) -> bool:
    """Whether a message to ``email`` must travel as SMTPUTF8 (a mailbox name beyond ASCII)."""
    return not email.rpartition("@")[0].isascii()


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
