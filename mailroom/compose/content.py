"""newsletter.md -> Newsletter: front matter, then Markdown blocks, each knowing its line and audiences.

The body is CommonMark (markdown-it-py) with smart quotes, plus container blocks fenced with ``:::``:

    ::: alert Safeguarding alert      a callout box, with an optional title
    ::: button                        one link, shown as a button
    ::: only parents                  shown only to the named lists (comma-separated)

An image alone in its paragraph, optionally wrapped in a link, becomes an image block. Every
mistake is an ``InputError`` naming newsletter.md and the line; things shown differently from how
they were written (HTML left out, a campaign another newsletter uses) are warnings on the Newsletter.

Text pasted from Word reads as it looks (``mailroom.compose.pasted``): its bullets and numbered lines
are lists, and a line break is a line break. Author text reaches the templates only as values, never
as template source, so ``{{`` in the text is shown as written; the checks report one as a mail-merge
field that will not be filled in unless it is written ``\\{{``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from markdown_it import MarkdownIt
from markdown_it.token import Token
from mdit_py_plugins.container import container_plugin
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from mailroom.compose.build import SOURCE_FILE
from mailroom.compose.images import allow_heif, is_heif
from mailroom.compose.links import check_link
from mailroom.compose.pasted import PastedWarning, pasted_text_rule, prepare_lines
from mailroom.errors import InputError

FRONT_MATTER_FIELDS = ("subject", "preheader", "date", "audiences", "campaign", "translated_from")
REQUIRED_FIELDS = ("subject", "date", "audiences")
PREHEADER_FROM_TEXT_MAX = 110  # characters of the first paragraph used when there is no preheader
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif"}
_URL_LIKE = re.compile(r"^(https?://|www\.)", re.IGNORECASE)
ORIENTATION_TAG = 0x0112  # EXIF: how the camera was held
_CLOSING_FENCE = re.compile(r"^[ \t]*(:{3,})[ \t]*$")


@dataclass(frozen=True)
class FrontMatter:
    subject: str
    preheader: str
    date: dt.date
    audiences: tuple[str, ...]
    campaign: str | None
    translated_from: str | None = None  # in a school's own translation: which newsletter.md it translates
    preheader_from_text: bool = False  # no preheader was written: it is the start of the first paragraph


@dataclass(frozen=True)
class ContentWarning:
    """Something in newsletter.md that will not look as written; the checks show it as a warning."""

    line: int
    code: str
    message: str


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
    warnings: tuple[ContentWarning, ...] = ()

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
    """CommonMark as office staff expect it: typographic quotes, a line break where a line ends, no
    code block for an indented line (Word indents paragraphs), and HTML judged tag by tag
    (``pasted_text_rule``: a few inline tags kept, the rest left out with a warning, never shown as text)."""
    md = _LetEveryLinkThrough("commonmark", {"typographer": True, "html": True, "breaks": True})
    md.enable(["replacements", "smartquotes"])
    md.disable("code")
    md.core.ruler.after("inline", "pasted_text", pasted_text_rule)
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
    prepared = prepare_lines(source.split("\n")[body_start:])
    env: dict[str, object] = {"check_url": check_link, "lettered": prepared.lettered}
    tokens = markdown_parser().parse(prepared.text, env)
    _check_boxes_closed(path, tokens, prepared.text.split("\n"), body_start, prepared.source_line)
    for token in tokens:  # line numbers from here on are newsletter.md's, as written
        if token.map:
            start, end = token.map
            token.map = [prepared.source_line(start), prepared.source_line(end - 1) + 1 if end > start else
                         prepared.source_line(start)]
    parser = _BodyParser(path, folder, body_start, front.audiences)
    blocks = parser.blocks(tokens, None)
    if not blocks:
        raise InputError("the newsletter has no text after its front matter", path, body_start + 1)
    pasted = cast(list[PastedWarning], env.get("warnings", []))
    warnings = [ContentWarning(prepared.source_line(w.line) + body_start + 1, w.code, w.message) for w in pasted]
    warnings += _campaign_shared(path, folder, front, source)
    if not front.preheader:
        front = _with_preheader_from_text(front, blocks)
    return Newsletter(path=path, slug=folder.resolve().name, front=front, blocks=tuple(blocks),
                      warnings=tuple(warnings))


def _check_boxes_closed(path: Path, tokens: list[Token], lines: list[str], body_start: int,
                        source_line: Callable[[int], int]) -> None:
    """Every ``:::`` box needs its closing line; without one the rest of the newsletter would be inside it."""
    ends: list[int] = [len(lines)]  # where the enclosing box (or the document) ends
    for token in tokens:
        if token.type == "container_block_open" and token.map:
            start, end = token.map
            fence = _CLOSING_FENCE.match(lines[end]) if end < len(lines) else None
            opener = lines[start].strip()
            if fence is None or end >= ends[-1] or len(fence.group(1)) < len(token.markup):
                line = source_line(start) + body_start + 1
                raise InputError(f"the box '{opener}' that starts on line {line} is never closed; add a line "
                                 f"with just '{token.markup}' where the box should end", path, line)
            ends.append(end)
        elif token.type == "container_block_close":
            ends.pop()


def _with_preheader_from_text(front: FrontMatter, blocks: list[Block]) -> FrontMatter:
    """The start of the first paragraph everyone gets, as inboxes would show it anyway, cut at a word."""
    for block in blocks:
        if block.audiences is not None or block.kind not in ("text", "alert"):
            continue
        for index, token in enumerate(block.tokens):
            if token.type == "inline" and index and block.tokens[index - 1].type == "paragraph_open":
                words = " ".join("".join(c.content if c.type in ("text", "code_inline") else " "
                                         for c in token.children or []).split())
                if not words:
                    continue
                if len(words) > PREHEADER_FROM_TEXT_MAX:
                    words = words[:PREHEADER_FROM_TEXT_MAX].rsplit(" ", 1)[0].rstrip(",;:–-") + "…"
                return FrontMatter(subject=front.subject, preheader=words, date=front.date,
                                   audiences=front.audiences, campaign=front.campaign, preheader_from_text=True)
    return front


def _front_matter_value(source: str, key: str) -> tuple[str, int] | None:
    """One field of a newsletter's front matter, read without checking the rest (for other newsletters)."""
    lines = source.split("\n")
    if not lines or lines[0].strip() != "---":
        return None
    for number, raw in enumerate(lines[1:], start=2):
        if raw.strip() == "---":
            return None
        name, sep, value = raw.partition(":")
        if sep and name.strip().lower() == key:
            return _unquote(value), number
    return None


def _campaign_shared(path: Path, folder: Path, front: FrontMatter, source: str) -> list[ContentWarning]:
    """A campaign another newsletter in the same folder already uses (a copied folder keeps last week's)."""
    campaign = front.campaign or folder.resolve().name
    found = _front_matter_value(source, "campaign")
    line = found[1] if found else 1
    others: list[str] = []
    for other in sorted(folder.resolve().parent.iterdir()):
        other_source = other / SOURCE_FILE
        if other == folder.resolve() or not other_source.is_file():
            continue
        try:
            text = other_source.read_text(encoding="utf-8-sig").replace("\r\n", "\n")
        except (OSError, UnicodeDecodeError):
            continue
        value = _front_matter_value(text, "campaign")
        if (value[0] if value and value[0] else other.name) == campaign:
            others.append(other.name)
    if not others:
        return []
    named = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
    return [ContentWarning(line, "campaign-shared",
                           f"the campaign '{campaign}' is also used by {named}; give this newsletter a campaign "
                           "of its own, or its clicks are counted together with that newsletter's")]


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
        field_text, field_line = values.get(key, ("", 0))
        if any(ch in field_text for ch in "\x00\t\r"):
            raise InputError(f"'{key}' has a control character in it", path, field_line)
    campaign = values.get("campaign", ("", 0))[0] or None
    if campaign is not None and not re.fullmatch(r"[A-Za-z0-9._-]+", campaign):
        raise InputError("'campaign' may hold letters, digits, '.', '_' and '-' only", path, values["campaign"][1])
    front = FrontMatter(subject=values["subject"][0], preheader=values.get("preheader", ("", 0))[0], date=date,
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
        if content_type is None and is_heif(path):  # an iPhone's own format: read here, sent as JPEG
            content_type = "image/heic"
        if content_type is None:
            raise self.error(f"the image '{src}' should be a PNG, JPEG, GIF or an iPhone's HEIC file", inline)
        size = image_size(path)
        if size is None:
            raise self.error(f"the image '{src}' is not a picture mailroom can read (a damaged file, or another "
                             "kind of file renamed); open it in a photo editor and save it as PNG, JPEG or GIF",
                             inline)
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
    """Width and height as the picture is shown (a phone photo's orientation tag applied), from its header.

    None when the file is not a picture Pillow can identify; a damaged one is caught when it is prepared.
    """
    if is_heif(path):
        allow_heif()
    try:
        with PILImage.open(path) as picture:
            width, height = picture.size
            try:  # a PNG keeps its EXIF after the pixels, so a cut-off one fails here: judged when prepared
                orientation = picture.getexif().get(ORIENTATION_TAG, 1)
            except (OSError, ValueError, SyntaxError, EOFError):
                orientation = 1
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, EOFError, RuntimeError,
            PILImage.DecompressionBombError):
        return None
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)

