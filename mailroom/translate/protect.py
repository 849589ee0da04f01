"""What must come back from an engine unchanged, and the check that it did.

Text goes to an engine as a small HTML snippet:

- links become ``<a id="a1">words</a>``: the engine translates the words but never sees the address,
  which is put back from our own copy afterwards;
- personal tokens (``%%first_name%%``), web and email addresses, phone numbers, template slots
  (``{email}``) and the names the school keeps (``[translation] keep``) become
  ``<span translate="no" class="notranslate" id="k1">CEOP</span>``, which DeepL and LibreTranslate
  leave alone; the words stay visible so the sentence around them still reads right;
- bold and italics become ``<b>`` and ``<i>``.

``decode_*`` reads the answer back and raises ``Lost`` naming the first protected item the engine
dropped or changed; the translator then keeps that block in English.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser

from markdown_it.token import Token

_TOKEN = r"%%[a-z_]+%%"
_SLOT = r"\{[a-z_]+\}"
_URL = r"(?:https?://|www\.)[^\s<>\"']*[^\s<>\"'.,;:!?)\]]"
_EMAIL = r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
_DOMAIN = r"\b(?:[a-z0-9-]+\.)+(?:uk|com|org|net|gov|edu|info|io|eu|ie|int)\b(?:/[^\s<>\"']*[^\s<>\"'.,;:!?)\]])?"
# A phone number: six or more digits with spaces, dots, dashes or brackets between; or a UK short number.
_PHONE = r"(?<![\w+])\+?\(?\d(?:[\d\s().-]{4,}\d)(?!\w)|\b(?:999|101|111|112|105)\b"
KEEP_ATTRIBUTES = 'translate="no" class="notranslate"'


class Lost(Exception):
    """The engine dropped or changed something that had to survive; the message says what, for staff."""


@dataclass
class Snippet:
    """One piece of text as it goes to the engine, and what must come back."""

    html: str
    kept: dict[str, str] = field(default_factory=dict)  # span id -> the exact text it holds
    links: dict[str, dict[str, str | int | float]] = field(default_factory=dict)  # a id -> link attributes
    kinds: dict[str, str] = field(default_factory=dict)  # id -> "link", "token", "phone number"...

    @property
    def characters(self) -> int:
        """What an engine charges for: the characters of text, not the markup around them."""
        return len(_strip_tags(self.html))


class Protector:
    """Finds the protected items in text, for one keep-list."""

    def __init__(self, keep: Sequence[str]) -> None:
        names = sorted({name for name in keep if name.strip()}, key=len, reverse=True)
        parts = [("token", _TOKEN), ("slot", _SLOT), ("link", _URL), ("email address", _EMAIL),
                 ("web address", _DOMAIN)]
        if names:
            parts.append(("name", r"(?<!\w)(?:" + "|".join(re.escape(n) for n in names) + r")(?!\w)"))
        parts.append(("phone number", _PHONE))
        self.kinds = [kind for kind, _ in parts]
        self.pattern = re.compile("|".join(f"({p})" for _, p in parts), re.IGNORECASE)

    def protect(self, text: str, snippet: Snippet) -> str:
        """``text`` as escaped HTML with each protected item wrapped in a kept span."""
        out: list[str] = []
        last = 0
        for match in self.pattern.finditer(text):
            out.append(html.escape(text[last:match.start()], quote=False))
            kind = self.kinds[(match.lastindex or 1) - 1]
            out.append(_kept_span(snippet, match.group(0), kind))
            last = match.end()
        out.append(html.escape(text[last:], quote=False))
        return "".join(out)


def _kept_span(snippet: Snippet, text: str, kind: str) -> str:
    ident = f"k{len(snippet.kept) + 1}"
    snippet.kept[ident] = text
    snippet.kinds[ident] = kind
    return f'<span {KEEP_ATTRIBUTES} id="{ident}">{html.escape(text, quote=False)}</span>'


# --- encoding -----------------------------------------------------------------------------------

def encode_text(text: str, protector: Protector) -> Snippet:
    """A plain string (subject, alt text, button label, a template's words) as a snippet."""
    snippet = Snippet("")
    snippet.html = protector.protect(text, snippet)
    return snippet


def encode_inline(children: Sequence[Token], protector: Protector) -> Snippet:
    """The children of one markdown-it inline token (a paragraph, heading or list item) as a snippet."""
    snippet = Snippet("")
    out: list[str] = []
    for child in children:
        kind = child.type
        if kind == "text":
            out.append(protector.protect(child.content, snippet))
        elif kind == "code_inline":
            out.append(_kept_span(snippet, child.content, "code"))
        elif kind == "softbreak":
            out.append("\n")
        elif kind == "hardbreak":
            out.append("<br>")
        elif kind in ("strong_open", "strong_close", "em_open", "em_close"):
            tag = "b" if kind.startswith("strong") else "i"
            out.append(f"<{tag}>" if kind.endswith("open") else f"</{tag}>")
        elif kind == "link_open":
            ident = f"a{len(snippet.links) + 1}"
            snippet.links[ident] = dict(child.attrs)
            snippet.kinds[ident] = "link"
            out.append(f'<a id="{ident}">')
        elif kind == "link_close":
            out.append("</a>")
        else:  # anything else (an image in a link) is kept whole
            out.append(_kept_span(snippet, child.content, "text"))
    snippet.html = "".join(out)
    return snippet


# --- decoding -----------------------------------------------------------------------------------

class _Reader(HTMLParser):
    """Turns an engine's answer back into markdown-it inline tokens, noting what came back."""

    def __init__(self, snippet: Snippet) -> None:
        super().__init__(convert_charrefs=True)
        self.snippet = snippet
        self.children: list[Token] = []
        self.stack: list[tuple[str, str | None]] = []  # (tag, id of a kept span or link, if ours)
        self.seen: dict[str, int] = {}
        self.kept_text: dict[str, list[str]] = {}

    def _in_kept(self) -> str | None:
        for tag, ident in reversed(self.stack):
            if tag == "span" and ident in self.snippet.kept:
                return ident
        return None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        ident = dict(attrs).get("id") or None
        if tag == "br":
            self.children.append(Token("hardbreak", "br", 0))
            return
        if tag == "span" and ident in self.snippet.kept and self._in_kept() is None:
            self.seen[ident] = self.seen.get(ident, 0) + 1
            self.kept_text.setdefault(ident, [])
            self.stack.append((tag, ident))
            return
        if tag == "a" and ident in self.snippet.links and self._in_kept() is None:
            self.seen[ident] = self.seen.get(ident, 0) + 1
            self.children.append(Token("link_open", "a", 1, attrs=dict(self.snippet.links[ident]), markup=""))
            self.stack.append((tag, ident))
            return
        if tag in ("b", "strong", "i", "em") and self._in_kept() is None:
            name = "strong" if tag in ("b", "strong") else "em"
            self.children.append(Token(f"{name}_open", name, 1, markup="**" if name == "strong" else "*"))
            self.stack.append((tag, name))
            return
        self.stack.append((tag, None))  # anything else the engine added: its words are kept, the tag is not

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag != "br":
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "br":
            return
        for depth in range(len(self.stack) - 1, -1, -1):
            if self.stack[depth][0] == tag:
                break
        else:
            return  # a stray closing tag
        while len(self.stack) > depth:
            open_tag, ident = self.stack.pop()
            if open_tag == "span" and ident in self.snippet.kept:
                self.children.append(Token("text", "", 0, content=self.snippet.kept[ident]))
            elif open_tag == "a" and ident in self.snippet.links:
                self.children.append(Token("link_close", "a", -1))
            elif open_tag in ("b", "strong", "i", "em") and ident in ("strong", "em"):
                self.children.append(Token(f"{ident}_close", ident, -1, markup="**" if ident == "strong" else "*"))

    def handle_data(self, data: str) -> None:
        kept = self._in_kept()
        if kept is not None:
            self.kept_text[kept].append(data)
            return
        if self.children and self.children[-1].type == "text":
            self.children[-1].content += data
        else:
            self.children.append(Token("text", "", 0, content=data))

    def finish(self) -> list[Token]:
        self.close()
        while self.stack:
            self.handle_endtag(self.stack[-1][0])
        self._verify()
        return [child for child in self.children if not (child.type == "text" and not child.content)]

    def _verify(self) -> None:
        snippet = self.snippet
        plain = "".join(c.content for c in self.children if c.type == "text")
        for ident, original in snippet.kept.items():
            kind = snippet.kinds[ident]
            count = self.seen.get(ident, 0)
            if count == 0:
                # The engine dropped the markup; the words may still be there exactly as they were.
                if original in plain:
                    continue
                raise Lost(f"the {_kind_name(kind)} {_shown(original)} was lost or changed")
            if count > 1:
                raise Lost(f"the {_kind_name(kind)} {_shown(original)} came back {count} times")
            inner = "".join(self.kept_text.get(ident, []))
            if _squash(inner) != _squash(original):
                raise Lost(f"the {_kind_name(kind)} {_shown(original)} was changed to {_shown(inner)}")
        for ident, attrs in snippet.links.items():
            count = self.seen.get(ident, 0)
            where = str(attrs.get("href", ""))
            if count == 0:
                raise Lost(f"the link to {_shown(where)} was lost")
            if count > 1:
                raise Lost(f"the link to {_shown(where)} came back {count} times")


def decode_inline(answer: str, snippet: Snippet) -> list[Token]:
    """The engine's ``answer`` as inline tokens with every link and kept item back; ``Lost`` if one is missing."""
    reader = _Reader(snippet)
    reader.feed(answer)
    children = reader.finish()
    for child in children:
        if child.type == "text":
            child.content = child.content.replace("\n", " ")
    return children


def decode_text(answer: str, snippet: Snippet) -> str:
    """The engine's answer for a plain string: the text, every kept item back; ``Lost`` if one is missing."""
    children = decode_inline(answer, snippet)
    return re.sub(r"\s+", " ", "".join(c.content for c in children if c.type == "text")).strip()


def _kind_name(kind: str) -> str:
    return {"token": "personal field", "slot": "template field", "name": "name", "code": "code"}.get(kind, kind)


def _shown(text: str) -> str:
    return f"'{text if len(text) <= 60 else text[:57] + '...'}'"


def _squash(text: str) -> str:
    return " ".join(text.split())


def _strip_tags(text: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", text))
