"""newsletter.md -> Newsletter: front matter, then Markdown blocks, each knowing its line and audiences.

The body is CommonMark (markdown-it-py) with smart quotes, plus container blocks fenced with ``:::``:

    ::: alert Safeguarding alert      a callout box, with an optional title
    ::: button                        one link, shown as a button
    ::: only parents                  shown only to the named lists (comma-separated)

An image alone in its paragraph, optionally wrapped in a link, becomes an image block. Every
mistake is an ``InputError`` naming newsletter.md and the line.
"""

from __future__ import annotations

import datetime as dt
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from markdown_it import MarkdownIt
from markdown_it.token import Token
from mdit_py_plugins.container import container_plugin

from mailroom.compose.links import check_link
from mailroom.errors import InputError

SOURCE_FILE = "newsletter.md"
FRONT_MATTER_FIELDS = ("subject", "preheader", "date", "audiences", "campaign", "translated_from")
REQUIRED_FIELDS = ("subject", "preheader", "date", "audiences")
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif"}
_URL_LIKE = re.compile(r"^(https?://|www\.)", re.IGNORECASE)


@dataclass(frozen=True)
class FrontMatter:
    subject: str
    preheader: str
    date: dt.date
    audiences: tuple[str, ...]
    campaign: str | None
    translated_from: str | None = None  # in a school's own translation: which newsletter.md it translates


@dataclass(frozen=True)
class Image:
    """A picture in the newsletter: a local file under the newsletter folder."""

    path: Path
    alt: str
    width: int
    height: int
    content_type: str


@dataclass(eq=False)
class Block:
    """One piece of the email body, in the order written.

    ``kind`` is one of text, alert, button, image. ``tokens`` are the markdown-it tokens of a text or
    alert body, kept so the plain-text part is written from the same source as the HTML.
    """

    kind: str
    line: int
    audiences: frozenset[str] | None = None  # None: everyone
    tokens: list[Token] = field(default_factory=list)
    title: str = ""
    url: str = ""
    label: str = ""
    image: Image | None = None

    def shown_to(self, audience: str) -> bool:
        return self.audiences is None or audience in self.audiences


@dataclass(frozen=True)
class Newsletter:
    path: Path  # the newsletter.md file
    slug: str
    front: FrontMatter
    blocks: tuple[Block, ...]

    @property
    def folder(self) -> Path:
        return self.path.parent

    def blocks_for(self, audience: str) -> list[Block]:
        return [block for block in self.blocks if block.shown_to(audience)]

    def images(self) -> list[Image]:
        return [block.image for block in self.blocks if block.image is not None]


class _LetEveryLinkThrough(MarkdownIt):
    """Every link reaches the parsed tokens, so a dangerous one is reported with its line, not hidden."""

    def validateLink(self, url: str) -> bool:
        return True


def markdown_parser() -> MarkdownIt:
    """CommonMark with typographic quotes; raw HTML off (it is shown as text, never trusted)."""
    md = _LetEveryLinkThrough("commonmark", {"typographer": True, "html": False})
    md.enable(["replacements", "smartquotes"])
    md.use(container_plugin, "block", validate=lambda params, *args: True)
    return md


def load_newsletter(folder: Path | str, known_lists: Sequence[str], source_name: str = SOURCE_FILE) -> Newsletter:
    """Read and check ``<folder>/newsletter.md`` (or a translation of it, ``newsletter.ro.md``)."""
    folder = Path(folder)
    path = folder / source_name
    if not folder.is_dir():
        raise InputError("there is no such newsletter folder", folder)
    try:
        source = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError("not found: each newsletter folder needs a newsletter.md", path) from None
    except UnicodeDecodeError:
        raise InputError("is not UTF-8 text; save it as UTF-8 and try again", path) from None
    source = source.replace("\r\n", "\n").replace("\r", "\n")
    front, body_start = _parse_front_matter(path, source, known_lists)
    body = "\n".join(source.split("\n")[body_start:])
    md = markdown_parser()
    parser = _BodyParser(path, folder, body_start, front.audiences)
    blocks = parser.blocks(md.parse(body), None)
    if not blocks:
        raise InputError("the newsletter has no text after its front matter", path, body_start + 1)
    return Newsletter(path=path, slug=folder.resolve().name, front=front, blocks=tuple(blocks))


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _parse_front_matter(path: Path, source: str, known_lists: Sequence[str]) -> tuple[FrontMatter, int]:
    lines = source.split("\n")
    example = "---\\nsubject: ...\\npreheader: ...\\ndate: 2024-11-08\\naudiences: parents, staff\\n---"
    if not lines or lines[0].strip() != "---":
        raise InputError(f"should start with front matter between two '---' lines, like: {example}", path, 1)
    values: dict[str, tuple[str, int]] = {}
    end = None
    for number, raw in enumerate(lines[1:], start=2):
        line = raw.strip()
        if line == "---":
            end = number
            break
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if not sep:
            raise InputError(f"expected 'name: value' in the front matter, found '{line}'", path, number)
        if key not in FRONT_MATTER_FIELDS:
            raise InputError(f"unknown front-matter field '{key}'; the fields are: {', '.join(FRONT_MATTER_FIELDS)}",
                             path, number)
        if key in values:
            raise InputError(f"'{key}' is given twice (first on line {values[key][1]})", path, number)
        values[key] = (_unquote(value), number)
    if end is None:
        raise InputError("the front matter is not closed: add a line with just '---' after it", path, 1)
    for key in REQUIRED_FIELDS:
        if not values.get(key, ("", 0))[0]:
            where = values[key][1] if key in values else end
            raise InputError(f"the front matter needs a '{key}'", path, where)

    date_text, date_line = values["date"]
    try:
        date = dt.date.fromisoformat(date_text)
    except ValueError:
        raise InputError(f"'date' should be a date like 2024-11-08, not '{date_text}'", path, date_line) from None

    audiences_text, audiences_line = values["audiences"]
    audiences = tuple(a.strip() for a in audiences_text.strip("[]").split(",") if a.strip())
    for audience in audiences:
        if audience not in known_lists:
            raise InputError(f"unknown audience '{audience}'; the lists in school.toml are: {', '.join(known_lists)}",
                             path, audiences_line)
    if len(set(audiences)) != len(audiences):
        raise InputError("an audience is named twice", path, audiences_line)

    for key in ("subject", "preheader"):
        field_text, field_line = values[key]
        if any(ch in field_text for ch in "\x00\t\r"):
            raise InputError(f"'{key}' has a control character in it", path, field_line)
    campaign = values.get("campaign", ("", 0))[0] or None
    if campaign is not None and not re.fullmatch(r"[A-Za-z0-9._-]+", campaign):
        raise InputError("'campaign' may hold letters, digits, '.', '_' and '-' only", path, values["campaign"][1])
    front = FrontMatter(subject=values["subject"][0], preheader=values["preheader"][0], date=date,
                        audiences=audiences, campaign=campaign,
                        translated_from=values.get("translated_from", ("", 0))[0] or None)
    return front, end


class _BodyParser:
    """Turns markdown-it's token stream into Blocks, checking links and images as it goes."""

    def __init__(self, path: Path, folder: Path, line_offset: int, audiences: tuple[str, ...]) -> None:
        self.path, self.folder, self.offset, self.audiences = path, folder, line_offset, audiences

    def line_of(self, token: Token) -> int:
        return (token.map[0] if token.map else 0) + self.offset + 1

    def error(self, message: str, token: Token) -> InputError:
        return InputError(message, self.path, self.line_of(token))

    def blocks(self, tokens: list[Token], audiences: frozenset[str] | None) -> list[Block]:
        blocks: list[Block] = []
        run: list[Token] = []

        def flush() -> None:
            if run:
                blocks.append(Block("text", self.line_of(run[0]), audiences, tokens=list(run)))
                run.clear()

        i = 0
        while i < len(tokens):
            token = tokens[i]
            if token.type == "container_block_open":
                end = _matching_close(tokens, i)
                flush()
                blocks.extend(self.container(token, tokens[i + 1:end], audiences))
                i = end + 1
                continue
            if token.type == "paragraph_open" and token.level == tokens[0].level:
                image_block = self.image_paragraph(tokens[i + 1], audiences)
                if image_block is not None:
                    flush()
                    blocks.append(image_block)
                    i += 3
                    continue
            if token.type == "inline":
                self.check_inline(token)
            run.append(token)
            i += 1
        flush()
        return blocks

    def container(self, opener: Token, inner: list[Token], audiences: frozenset[str] | None) -> list[Block]:
        kind, _, rest = opener.info.strip().partition(" ")
        rest = rest.strip()
        line = self.line_of(opener)
        if kind == "alert":
            for token in inner:
                if token.type == "container_block_open":
                    raise self.error("an alert cannot hold another ':::' block", token)
                if token.type == "inline":
                    self.check_inline(token)
            return [Block("alert", line, audiences, tokens=inner, title=rest)]
        if kind == "button":
            return [self.button(opener, inner, audiences)]
        if kind == "only":
            names = frozenset(n.strip() for n in rest.split(",") if n.strip())
            if not names:
                raise self.error("'::: only' needs the lists to show the block to, like '::: only parents'", opener)
            for name in names:
                if name not in self.audiences:
                    raise self.error(f"'::: only {rest}' names '{name}', which is not one of this newsletter's "
                                     f"audiences ({', '.join(self.audiences)})", opener)
            narrowed = names if audiences is None else names & audiences
            return self.blocks(inner, frozenset(narrowed))
        raise self.error(f"unknown block '::: {kind}'; the blocks are: ::: alert, ::: button, ::: only", opener)

    def button(self, opener: Token, inner: list[Token], audiences: frozenset[str] | None) -> Block:
        usage = "a button block should hold just one link, like [Visit the Home Learning Hub](https://...)"
        inlines = [t for t in inner if t.type == "inline"]
        if len(inlines) != 1:
            raise self.error(usage, opener)
        children = [c for c in inlines[0].children or [] if not (c.type == "text" and not c.content.strip())]
        if len(children) < 3 or children[0].type != "link_open" or children[-1].type != "link_close":
            raise self.error(usage, opener)
        url = str(children[0].attrs.get("href", ""))
        self.check_url(url, inlines[0])
        label = "".join(c.content for c in children[1:-1] if c.type in ("text", "code_inline")).strip()
        if not label:
            raise self.error("the button's link has no text to show", inlines[0])
        return Block("button", self.line_of(opener), audiences, url=url, label=label)

    def image_paragraph(self, inline: Token, audiences: frozenset[str] | None) -> Block | None:
        children = [c for c in inline.children or [] if not (c.type in ("text", "softbreak") and not c.content.strip())]
        url = ""
        if len(children) == 3 and children[0].type == "link_open" and children[2].type == "link_close":
            url = str(children[0].attrs.get("href", ""))
            children = children[1:2]
        if len(children) != 1 or children[0].type != "image":
            return None
        if url:
            self.check_url(url, inline)
        image = self.load_image(children[0], inline)
        return Block("image", self.line_of(inline), audiences, url=url, image=image)

    def check_inline(self, inline: Token) -> None:
        for child in inline.children or []:
            if child.type == "link_open":
                self.check_url(str(child.attrs.get("href", "")), inline)
            elif child.type == "image":
                raise self.error("put each image in a paragraph of its own, so it can be shown full width", inline)
            elif child.type == "text" and _URL_LIKE.match(child.content):
                # Editors that export Markdown often escape underscores in a pasted URL ("utm\_source").
                child.content = child.content.replace("\\", "")

    def check_url(self, url: str, token: Token) -> None:
        problem = check_link(url)
        if problem:
            raise self.error(problem, token)

    def load_image(self, image: Token, inline: Token) -> Image:
        src = str(image.attrs.get("src", ""))
        alt = image.content.strip()
        if not alt:
            raise self.error(f"the image '{src}' has no alt text: write what it shows, like ![The school choir]({src})",
                             inline)
        if re.match(r"^[a-z][a-z0-9+.-]*:", src, re.IGNORECASE) or src.startswith("/"):
            raise self.error(f"images must be files in this newsletter's images folder, like images/banner.png, "
                             f"not '{src}'", inline)
        path = (self.folder / src).resolve()
        if not path.is_relative_to(self.folder.resolve()):
            raise self.error(f"the image '{src}' is outside this newsletter's folder", inline)
        if not path.is_file():
            raise self.error(f"the image file '{src}' does not exist", inline)
        content_type = IMAGE_TYPES.get(path.suffix.lower())
        if content_type is None:
            raise self.error(f"the image '{src}' should be a PNG, JPEG or GIF file", inline)
        size = image_size(path)
        if size is None:
            raise self.error(f"the image '{src}' could not be read as {content_type}", inline)
        return Image(path=path, alt=alt, width=size[0], height=size[1], content_type=content_type)


def _matching_close(tokens: list[Token], start: int) -> int:
    depth = 0
    for index in range(start, len(tokens)):
        if tokens[index].type == "container_block_open":
            depth += 1
        elif tokens[index].type == "container_block_close":
            depth -= 1
            if depth == 0:
                return index
    return len(tokens)


def image_size(path: Path) -> tuple[int, int] | None:
    """Width and height of a PNG, GIF or JPEG, read from its header (no imaging library needed)."""
    data = path.read_bytes()
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return struct.unpack("<HH", data[6:10])
    if data[:2] == b"\xff\xd8":
        offset = 2
        while offset + 9 < len(data):
            if data[offset] != 0xFF:
                return None
            marker = data[offset + 1]
            length = struct.unpack(">H", data[offset + 2:offset + 4])[0]
            if marker in (0xC0, 0xC1, 0xC2, 0xC3):
                height, width = struct.unpack(">HH", data[offset + 5:offset + 9])
                return width, height
            offset += 2 + length
    return None
