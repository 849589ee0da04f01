"""Where in newsletter.md a piece of a rendered email came from, so a finding can name the line.

The rendered HTML has lost the Markdown's line numbers; this map keeps, for one audience's blocks,
each link address, link text, heading, image and paragraph with the line it was written on.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from pathlib import Path

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
    links: list[tuple[str, Place]] = field(default_factory=list)  # (address as written, place)
    link_texts: list[tuple[str, Place]] = field(default_factory=list)
    headings: list[tuple[str, Place]] = field(default_factory=list)
    images: list[tuple[str, str, Place]] = field(default_factory=list)  # (alt, file name, place)
    texts: list[tuple[str, Place]] = field(default_factory=list)  # paragraph text as shown
    lines: list[tuple[int, str]] = field(default_factory=list)  # the raw source, line by line

    # --- lookups -------------------------------------------------------------------------------

    def link(self, href: str) -> Place | None:
        """The place of a link whose (tracked) address began as one written in newsletter.md."""
        href = html.unescape(href).strip()
        best: tuple[int, Place] | None = None
        for url, place in self.links:
            matches = href == url or (href.startswith(url) and href[len(url):len(url) + 1] in ("?", "&", "#"))
            if matches and (best is None or len(url) > best[0]):
                best = (len(url), place)
        return best[1] if best else None

    def link_text(self, text: str) -> Place | None:
        wanted = normalise(text)
        return next((place for shown, place in self.link_texts if shown == wanted), None)

    def heading(self, text: str) -> Place | None:
        wanted = normalise(text)
        return next((place for shown, place in self.headings if shown == wanted), None)

    def image(self, alt: str, src: str) -> Place | None:
        wanted, name = normalise(alt), Path(src).name
        for image_alt, _name, place in self.images:
            if wanted and image_alt == wanted:
                return place
        return next((place for _, file_name, place in self.images if file_name == name), None)

    def text(self, snippet: str) -> Place | None:
        """The paragraph (or heading, button...) that shows ``snippet``."""
        wanted = normalise(snippet)[:80]
        if not wanted:
            return None
        for shown, place in [*self.headings, *self.link_texts, *self.texts]:
            if wanted in shown:
                return place
        return self.raw(wanted)

    def raw(self, needle: str, *, ignore_case: bool = False) -> Place | None:
        """The first body line of newsletter.md that contains ``needle`` as written."""
        for number, line in self.lines:
            haystack, wanted = (line.lower(), needle.lower()) if ignore_case else (line, needle)
            if wanted in haystack:
                known = [place for _, place in [*self.headings, *self.texts] if place.line == number]
                return known[0] if known else Place(number, "")
        return None


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
        return
    if block.kind == "image" and block.image is not None:
        place = Place(block.line, f"the image {_quote(block.image.alt)}")
        smap.images.append((normalise(block.image.alt), block.image.path.name, place))
        if block.url:
            smap.links.append((block.url, place))
        return
    if block.kind == "alert" and block.title:
        smap.texts.append((normalise(block.title), Place(block.line, f"the alert {_quote(block.title)}")))
    tokens = block.tokens
    for index, token in enumerate(tokens):
        if token.type != "inline":
            continue
        line = token.map[0] + offset + 1 if token.map else block.line
        shown = _inline_text(token)
        if index > 0 and tokens[index - 1].type == "heading_open":
            smap.headings.append((shown, Place(line, f"the heading {_quote(shown)}")))
        else:
            smap.texts.append((shown, Place(line, f"the paragraph {_quote(shown)}")))
        link_stack: list[tuple[str, int]] = []
        parts: list[str] = []
        for child in token.children or []:
            if child.type in ("text", "code_inline"):
                parts.append(child.content)
            elif child.type in ("softbreak", "hardbreak"):
                parts.append(" ")
            elif child.type == "link_open":
                link_stack.append((str(child.attrs.get("href", "")), len(parts)))
            elif child.type == "link_close" and link_stack:
                href, start = link_stack.pop()
                text = normalise("".join(parts[start:]))
                place = Place(line, f"the link {_quote(text)}")
                smap.links.append((href, place))
                smap.link_texts.append((text, place))
