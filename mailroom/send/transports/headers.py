"""Header lines written by mailroom itself, so that no value from data can ever become a header.

Names, subjects and every other value that goes into a header are literal text. The email package is
deliberately not used: how it treats an RFC 2047 encoded word (``=?utf-8?b?...?=``) that arrives inside
data has changed between Python versions, and one version decoded a subject's encoded line break into
a real ``Reply-To:`` header. Here the rules are few and fixed:

- control characters (CR, LF, NUL, tabs...) and the Unicode line and paragraph separators become spaces;
- a value that is plain printable ASCII and holds no ``=?`` is written as it is, folded at spaces;
- anything else (non-ASCII, or text a reader could take for an encoded word) is written as encoded
  words of our own making: UTF-8, base64, each under 76 characters, never splitting a character. A
  reader decodes them once, to exactly the original text, which then is never decoded again;
- in a message sent with SMTPUTF8 (a mailbox name with accents, RFC 6532) an address is written in
  UTF-8 as it is; display names and subjects are still encoded words, which RFC 6532 allows.
"""

from __future__ import annotations

import base64
import re
import unicodedata

from mailroom.addresses import ascii_domain

_CRLF = b"\r\n"
_FOLD = "\r\n "
_MAX_LINE = 78  # RFC 5322's recommended line length (998 is the hard limit)
_LONGEST_WORD = 70  # a longer word could not be folded under 78 characters: it goes as encoded words
_WORD_BYTES = 39  # UTF-8 bytes per encoded word: 52 base64 characters, 64 in all (fits after "Subject: ")

# Printable ASCII words separated by single spaces: safe to write as they are (unless "=?" is in them).
_PLAIN = re.compile(r"[!-~]+(?: [!-~]+)*")
# RFC 5322 atext: a display name made only of these (and spaces) needs no quotes.
_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?: [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
# A dot-atom local part (ASCII, or with UTF-8 letters in an SMTPUTF8 message) and a domain of labels.
# atext is RFC 5322's letters, digits and !#$%&'*+/=?^_`{|}~- plus (RFC 6532) every non-ASCII character:
# written as the characters it leaves out (controls, space, DEL and the specials "(),.:;<>@[\]), the
# same set, because a class listing a range up to U+10FFFF takes Python's regex compiler about 60
# million instructions to build, at every start-up (tests/test_headers.py checks the two agree).
_ATEXT = r'[^\x00-\x20\x7f"(),.:;<>@\[\\\]]+'
_LOCAL = re.compile(_ATEXT + r"(?:\." + _ATEXT + ")*")
_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*")


class HeaderProblem(ValueError):
    """A value that cannot be written into a header at all (an address that is not one)."""


def literal(value: str) -> str:
    """``value`` with every control character (and line/paragraph separator) made a space, trimmed."""
    if value.isprintable():
        return value.strip()
    return "".join(" " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch for ch in value).strip()


def encoded_words(text: str) -> list[str]:
    """``text`` as RFC 2047 encoded words (UTF-8, base64), each whole characters and under 76 characters."""
    words: list[str] = []
    chunk = bytearray()
    for ch in text:
        data = ch.encode("utf-8")
        if len(chunk) + len(data) > _WORD_BYTES:
            words.append(_word(bytes(chunk)))
            chunk.clear()
        chunk += data
    if chunk or not words:
        words.append(_word(bytes(chunk)))
    return words


def _word(data: bytes) -> str:
    return "=?utf-8?b?" + base64.b64encode(data).decode("ascii") + "?="


def needs_encoding(text: str) -> bool:
    """Whether ``text`` must go as encoded words: not plain printable ASCII, or it looks like one itself."""
    return not (text.isascii() and _PLAIN.fullmatch(text) is not None and "=?" not in text)


def fold(name: str, pieces: list[str]) -> bytes:
    """``name: `` and the pieces joined by single spaces, a line broken before a piece that would pass 78."""
    line = f"{name}:"
    lines: list[str] = []
    for piece in pieces:
        if len(line) + 1 + len(piece) > _MAX_LINE and line.strip() and not line.endswith(":"):
            lines.append(line)
            line = piece
        else:
            line += " " + piece
    lines.append(line)
    return _FOLD.join(lines).encode("utf-8") + _CRLF


def unstructured(name: str, value: str) -> bytes:
    """A header holding free text (Subject, List-Id's description...): one folded line, literal."""
    text = literal(value)
    if not text:
        return f"{name}:".encode("ascii") + _CRLF
    words = text.split(" ")
    if needs_encoding(text) or max(map(len, words)) > _LONGEST_WORD:
        return fold(name, encoded_words(text))
    return fold(name, words)


def phrase(display_name: str) -> list[str]:
    """A display name as the pieces of an RFC 5322 phrase: atoms, one quoted string, or encoded words."""
    text = " ".join(literal(display_name).split())
    if not text:
        return []
    if needs_encoding(text) or max(map(len, text.split(" "))) > _LONGEST_WORD:
        return encoded_words(text)
    if _ATOMS.fullmatch(text):
        return text.split(" ")
    return ['"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"']


def address(email: str, *, utf8: bool = False) -> str:
    """``email`` as it goes in a header: the domain in ASCII (punycode), the mailbox name checked.

    A mailbox name with letters beyond ASCII is only allowed when ``utf8`` (an SMTPUTF8 message);
    anything that is not a plain ``name@domain`` raises ``HeaderProblem``.
    """
    local, at, domain = email.strip().rpartition("@")
    if not at or not local or not domain:
        raise HeaderProblem(f"'{email}' is not an email address")
    domain = domain if domain.isascii() else ascii_domain(domain)
    if not _DOMAIN.fullmatch(domain):
        raise HeaderProblem(f"the domain of '{email}' cannot be written in an email header")
    if not _LOCAL.fullmatch(local) or (not local.isascii() and not utf8):
        raise HeaderProblem(f"the part before the @ of '{email}' cannot be written in an email header"
                            + ("" if local.isascii() else " without SMTPUTF8"))
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Zs") for ch in local):
        raise HeaderProblem(f"the part before the @ of '{email}' holds invisible characters")
    return f"{local}@{domain.lower()}"


def address_header(name: str, display_name: str, email: str, *, utf8: bool = False) -> bytes:
    """An address header (From, To, Reply-To) for exactly one address; the name is always literal text."""
    return fold(name, [*phrase(display_name), f"<{address(email, utf8=utf8)}>"] if display_name.strip()
                 else [address(email, utf8=utf8)])
