"""Where in newsletter.md a piece of a rendered email came from, so a finding can name the line.

The rendered HTML has lost the Markdown's line numbers; this map keeps, for one audience's blocks,
each link address, link text, heading, image and paragraph with the line it was written on.
"""

from __future__ import annotations

import bisect
import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the send's checks need no Markdown parser: only a build's source map does
    from markdown_it.token import Token

    from mailroom.compose.content import Block, Newsletter




def normalise(text: str) -> str:
    """Collapse white space so text from HTML and from Markdown compare equal."""
    return re.sub(r"\s+", " ", html.unescape(text)).strip()


@dataclass(frozen=True)
class Place:
    """A line of newsletter.md and what is there, for the message ("the button", "the heading 'Help'")."""

    line: int
    what: str


@dataclass
class SourceMap:
    """What each piece of one version came from. Filled in by ``build_source_map``, then only looked up.

    Every lookup goes through dictionaries or one search of the text in reading order, so finding the
    lines of n links or n paragraphs takes time in proportion to n (it was n squared: 2,000 links took 23 s).
    """

    links: list[tuple[str, Place]] = field(default_factory=list)  # (address as written, place)
    link_texts: list[tuple[str, Place]] = field(default_factory=list)
    headings: list[tuple[str, Place]] = field(default_factory=list)
    images: list[tuple[str, str, Place]] = field(default_factory=list)  # (alt, file name, place)
    texts: list[tuple[str, Place]] = field(default_factory=list)  # paragraph text as shown
    lines: list[tuple[int, str]] = field(default_factory=list)  # the raw source, line by line
    pieces: list[tuple[str, Place]] = field(default_factory=list)  # headings, paragraphs, labels in reading order
    _index: _Index | None = field(default=None, init=False, repr=False)

    def index(self) -> _Index:
        """The lookup tables, made on the first lookup (the map is complete by then)."""
        if self._index is None:
            self._index = _Index(self)
        return self._index

    # --- lookups -------------------------------------------------------------------------------

    def link(self, href: str) -> Place | None:
        """The place of a link whose (tracked) address began as one written in newsletter.md.

        Tracking adds ``?utm_...`` or ``&utm_...`` (before any ``#``), so the address as written is
        the whole of ``href`` or a part of it that ends just before a '?', '&' or '#'; the longest wins.
        """
        href = html.unescape(href).strip()
        by_url = self.index().links
        if href in by_url:
            return by_url[href]
        for cut in range(len(href) - 1, 0, -1):
            if href[cut] in "?&#" and href[:cut] in by_url:
                return by_url[href[:cut]]
        return None

    def link_text(self, text: str) -> Place | None:
        return self.index().link_texts.get(normalise(text))

    def heading(self, text: str) -> Place | None:
        return self.index().headings.get(normalise(text))

    def image(self, alt: str, src: str) -> Place | None:
        index = self.index()
        wanted = normalise(alt)
        return (index.image_alts.get(wanted) if wanted else None) or index.image_files.get(Path(src).name)

    def text(self, snippet: str) -> Place | None:
        """The heading, paragraph, link or button that shows ``snippet``.

        The checks ask in reading order, so the search starts where the last answer was: the same words
        written twice are traced to the place that is next in the email, not always to the first.
        """
        wanted = normalise(snippet)[:80]
        if not wanted:
            return None
        found = self.index().find_text(wanted)
        return found if found is not None else self.raw(wanted)

    def raw(self, needle: str, *, ignore_case: bool = False) -> Place | None:
        """The first body line of newsletter.md that contains ``needle`` as written."""
        return self.index().find_raw(needle, ignore_case)

    def written_escaped(self, shown: str) -> bool:
        """Whether ``shown`` (like ``{{ name }}``) was written with its brace escaped (``\\{{ name }}``)."""
        return any(text.startswith(shown) for text in self.index().escaped)


class _Index:
    """Dictionaries over a finished SourceMap, and a cursor for reading-order text search."""

    def __init__(self, smap: SourceMap) -> None:
        self.lines = smap.lines
        self.links: dict[str, Place] = {}
        for url, place in smap.links:
            self.links.setdefault(url, place)
        self.link_texts = _first_places(smap.link_texts)
        self.headings = _first_places(smap.headings)
        self.image_alts: dict[str, Place] = {}
        self.image_files: dict[str, Place] = {}
        for alt, name, place in smap.images:
            if alt:
                self.image_alts.setdefault(alt, place)
            self.image_files.setdefault(name, place)
        self.known_lines: dict[int, Place] = {}
        for _, place in [*smap.headings, *smap.texts]:
            self.known_lines.setdefault(place.line, place)
        # Exact texts first: each text -> the pieces (in reading order) that show exactly it.
        self.pieces = smap.pieces
        self.exact: dict[str, list[int]] = {}
        for number, (shown, _) in enumerate(self.pieces):
            self.exact.setdefault(shown, []).append(number)
        # Then any part of a text: one string of every piece, separated by a character text never holds.
        self.starts: list[int] = []
        parts: list[str] = []
        offset = 0
        for shown, _ in self.pieces:
            self.starts.append(offset)
            parts.append(shown)
            offset += len(shown) + 1
        self.document = "\0".join(parts)
        self.cursor = 0  # the piece the last answer came from
        self.missing: set[str] = set()
        # The text from each escaped brace on, as shown: "\\{{ x }}" is shown "{{ x }}".
        self.escaped = [_unescape(line[at:]) for _, line in self.lines for at in _positions(line, "\\{")]
        self.raw_found: dict[tuple[str, bool], Place | None] = {}

    def find_text(self, wanted: str) -> Place | None:
        if wanted in self.missing:
            return None
        exact = self.exact.get(wanted)
        if exact:
            number = next((n for n in exact[bisect.bisect_left(exact, self.cursor):]), exact[0])
        else:
            at = self.document.find(wanted, self.starts[self.cursor]) if self.pieces else -1
            if at < 0:
                at = self.document.find(wanted)
            if at < 0:
                self.missing.add(wanted)
                return None
            number = bisect.bisect_right(self.starts, at) - 1
        self.cursor = number
        return self.pieces[number][1]

    def find_raw(self, needle: str, ignore_case: bool) -> Place | None:
        key = (needle, ignore_case)
        if key not in self.raw_found:
            wanted = needle.lower() if ignore_case else needle
            found: Place | None = None
            for number, line in self.lines:
                if wanted in (line.lower() if ignore_case else line):
                    found = self.known_lines.get(number) or Place(number, "")
                    break
            self.raw_found[key] = found
        return self.raw_found[key]


def _positions(line: str, needle: str) -> list[int]:
    """The position of the character after each backslash of ``needle`` (the escaped one) in ``line``."""
    found, at = [], line.find(needle)
    while at >= 0:
        found.append(at + 1)
        at = line.find(needle, at + 1)
    return found


def _unescape(text: str) -> str:
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", text)


def _first_places(entries: list[tuple[str, Place]]) -> dict[str, Place]:
    first: dict[str, Place] = {}
    for shown, place in entries:
        first.setdefault(shown, place)
    return first


def _body_offset(source_lines: list[str]) -> int:
    """The line number of the '---' that closes the front matter (the body starts after it)."""
    for number, line in enumerate(source_lines[1:], start=2):
        if line.strip() == "---":
            return number
    return 0


def _inline_text(inline: Token) -> str:
    parts = []
    for child in inline.children or []:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
    return normalise("".join(parts))


def _quote(text: str, limit: int = 40) -> str:
    return f"'{text[:limit]}…'" if len(text) > limit else f"'{text}'"


def build_source_map(newsletter: Newsletter, audience: str) -> SourceMap:
    """The map for ``audience``'s version (blocks for other audiences are left out)."""
    smap = SourceMap()
    try:
        source_lines = newsletter.path.read_text(encoding="utf-8-sig").replace("\r\n", "\n").split("\n")
    except OSError:
        source_lines = []
    offset = _body_offset(source_lines)
    smap.lines = [(number, line) for number, line in enumerate(source_lines, start=1) if number > offset]
    for block in newsletter.blocks_for(audience):
        _add_block(smap, block, offset)
    return smap


def _add_block(smap: SourceMap, block: Block, offset: int) -> None:
    if block.kind == "button":
        place = Place(block.line, f"the button {_quote(block.label)}")
        smap.links.append((block.url, place))
        smap.link_texts.append((normalise(block.label), place))
        smap.pieces.append((normalise(block.label), place))
        return
    if block.kind == "image" and block.image is not None:
        place = Place(block.line, f"the image {_quote(block.image.alt)}")
        smap.images.append((normalise(block.image.alt), block.image.path.name, place))
        if block.url:
            smap.links.append((block.url, place))
        return
    if block.kind == "alert" and block.title:
        title = (normalise(block.title), Place(block.line, f"the alert {_quote(block.title)}"))
        smap.texts.append(title)
        smap.pieces.append(title)
    tokens = block.tokens
    for index, token in enumerate(tokens):
        if token.type != "inline":
            continue
        line = token.map[0] + offset + 1 if token.map else block.line
        shown = _inline_text(token)
        if index > 0 and tokens[index - 1].type == "heading_open":
            piece = (shown, Place(line, f"the heading {_quote(shown)}"))
            smap.headings.append(piece)
        else:
            piece = (shown, Place(line, f"the paragraph {_quote(shown)}"))
            smap.texts.append(piece)
        smap.pieces.append(piece)
        _add_inline_pieces(smap, token, piece[1])


def _add_inline_pieces(smap: SourceMap, inline: Token, where: Place) -> None:
    """Each link in a paragraph, and the text each element shows directly (what the checks' runs are).

    A checked run is the text that sits directly in one HTML element, without its children's text:
    the paragraph's words around its links and bold parts, each link's words, each bold part's words.
    Recording those exact texts lets nearly every run be found by a dictionary lookup.
    """
    line = where.line
    # One entry per open element: (its own words, all its words, its link address or None).
    stack: list[tuple[list[str], list[str], str | None]] = [([], [], None)]
    for child in inline.children or []:
        kind = child.type
        if kind in ("text", "code_inline", "softbreak", "hardbreak"):
            words = child.content if kind in ("text", "code_inline") else " "
            stack[-1][0].append(words if kind != "code_inline" else "")
            for _, every, _ in stack:
                every.append(words)
            if kind == "code_inline":  # <code> is an element of its own
                smap.pieces.append((normalise(child.content), where))
        elif child.nesting == 1:
            href = str(child.attrs.get("href", "")) if kind == "link_open" else None
            stack.append(([], [], href))
        elif child.nesting == -1 and len(stack) > 1:
            own, every, href = stack.pop()
            text = normalise("".join(every))
            if href is not None:
                place = Place(line, f"the link {_quote(text)}")
                smap.links.append((href, place))
                smap.link_texts.append((text, place))
                smap.pieces.append((text, place))
            own_text = normalise("".join(own))
            if own_text and (href is None or own_text != text):
                smap.pieces.append((own_text, where))
    own_text = normalise("".join(stack[0][0]))
    if own_text:
        smap.pieces.append((own_text, where))
