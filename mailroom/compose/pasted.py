"""Text pasted from Word, an email or a web page, read the way the person who pasted it sees it.

Two steps around the Markdown parser:

``prepare_lines`` (before parsing) turns Word's list characters (``•``, ``◦``, ``▪``, ``·``, ``–`` and the
Symbol-font bullets Word pastes as private-use characters, followed by a tab or spaces) and lettered lines
(``a)``) into Markdown list items, starts and ends a list where the pasted lines do (Word pastes no blank
line around a list), and keeps indentation made of non-breaking spaces. Blank lines it adds are tracked so
every line number still points into newsletter.md as written.

``tidy_inline`` (after parsing) keeps the meaning of simple inline HTML (``b``, ``strong``, ``i``, ``em``,
``u``, ``br``, ``a href``), drops any other tag with a warning naming its line, and links bare ``www.`` and
``https://`` addresses.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Literal

from markdown_it.rules_core import StateCore
from markdown_it.token import Token

# Word's list characters, and the private-use ones it pastes for its Symbol and Wingdings bullets.
# "o" and "§" count only before a tab: that is how Word pastes its second- and third-level bullets as text.
_BULLET = re.compile(r"^(?P<indent>[ \t\u00a0]*)(?P<mark>[•◦▪·–\uf0b7\uf0a7\uf0d8\uf076]|[o§](?=\t))[ \t\u00a0]+"
                     r"(?P<rest>\S.*)$")
_LETTERED = re.compile(r"^(?P<indent>[ \t\u00a0]*)(?P<letter>[a-z])\)[ \t\u00a0]+(?P<rest>\S.*)$")
_MARKDOWN_ITEM = re.compile(r"^(?P<indent>[ \t]*)(?:[-*+]|\d{1,9}[.)])(?:[ \t]+\S|[ \t]*$)")
_FENCE = re.compile(r"^[ \t]*(```|~~~)")
_LEADING_NBSP = re.compile(r"^(?P<plain>[ \t]*)(?P<nbsp>\u00a0[\u00a0 ]*)(?=\S)")
SPACES_PER_LEVEL = 4  # enough to nest under "- " and "10. "


@dataclass(frozen=True)
class PreparedBody:
    """The body as the parser should read it, and for each of its lines the body line it came from."""

    text: str
    origin: list[int]  # prepared line index -> line index in the body as written
    lettered: dict[int, str]  # prepared line index of a lettered item -> "a" or "A"

    def source_line(self, prepared: int) -> int:
        """The body line (0-based) of a prepared line; past the end, one past the last line."""
        if prepared < len(self.origin):
            return self.origin[prepared]
        return (self.origin[-1] + 1 + prepared - len(self.origin)) if self.origin else prepared


def _indent_width(indent: str) -> int:
    return sum(4 if ch == "\t" else 1 for ch in indent)


def prepare_lines(body_lines: list[str]) -> PreparedBody:
    """Pasted lists and indentation made into Markdown, one written line to one prepared line plus blanks."""
    out: list[str] = []
    origin: list[int] = []
    lettered: dict[int, str] = {}
    in_fence = False
    run_indents: list[int] = []  # the indentation widths of the list being pasted, shallowest first
    previous_kind = "blank"  # of the last written line: blank, list, text

    def emit(line: str, source: int) -> None:
        out.append(line)
        origin.append(source)

    for number, line in enumerate(body_lines):
        # Word's line break inside a paragraph (Shift+Enter) can paste as a vertical tab or U+2028: a <br>,
        # which keeps the line numbers of the lines after it as the editor counts them.
        line = line.replace("\x0b", "<br>").replace("\u2028", "<br>")
        if _FENCE.match(line):
            in_fence = not in_fence
        if in_fence or _FENCE.match(line):
            emit(line, number)
            previous_kind = "text"
            continue
        bullet, letter = _BULLET.match(line), _LETTERED.match(line)
        markdown_item = _MARKDOWN_ITEM.match(line)
        if bullet or letter:
            match = bullet or letter
            assert match is not None
            width = _indent_width(match.group("indent"))
            if previous_kind != "list":
                run_indents = []
            if width not in run_indents:
                run_indents = sorted({*(w for w in run_indents if w < width), width})
            level = run_indents.index(width)
            marker = f"{ord(letter.group('letter')) - ord('a') + 1})" if letter else "-"
            if previous_kind == "text":
                emit("", number)  # Word pastes no blank line before a list; Markdown needs one
            if letter:
                lettered[len(out)] = "a"
            emit(" " * (SPACES_PER_LEVEL * level) + f"{marker} " + match.group("rest"), number)
            previous_kind = "list"
            continue
        if not line.strip():
            emit(line, number)
            previous_kind = "blank"
            continue
        if markdown_item:
            if previous_kind == "text" and markdown_item.group("indent") == "":
                emit("", number)
            emit(line, number)
            previous_kind = "list"
            continue
        if previous_kind == "list" and not line[:1].isspace():
            emit("", number)  # an unindented line after a list is the next paragraph, not more of the last item
        emit(_keep_nbsp_indent(line), number)
        previous_kind = "list" if previous_kind == "list" and line[:1].isspace() else "text"
    return PreparedBody(text="\n".join(out), origin=origin, lettered=lettered)


def _keep_nbsp_indent(line: str) -> str:
    """Leading non-breaking spaces as entities, which the parser keeps (it strips a paragraph's own)."""
    match = _LEADING_NBSP.match(line)
    if not match:
        return line
    nbsp = match.group("nbsp").replace(" ", "\u00a0").replace("\u00a0", "&nbsp;")
    return match.group("plain") + nbsp + line[match.end():]


# --- after parsing: inline HTML and bare addresses ------------------------------------------------

KEPT_TAGS = ("b", "strong", "i", "em", "u", "br", "a")
LINK_SCHEMES = ("http://", "https://", "mailto:", "tel:")
_DROPPED_WITH_CONTENT = ("script", "style")
_BARE_ADDRESS = re.compile(r"(?<![\w@/.:-])(?:https?://|www\.)[^\s<>\"]+", re.IGNORECASE)
_TRAILING = ".,;:!?'\"’”)]}"


@dataclass(frozen=True)
class PastedWarning:
    """Something in the text that is not shown as written; ``line`` is the prepared line (0-based)."""

    line: int
    code: str
    message: str


class _Tag(HTMLParser):
    """One tag's name, whether it closes, and its attributes."""

    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.name, self.closing = "", False
        self.attrs: dict[str, str] = {}
        self.comment = markup.lstrip().startswith(("<!--", "<!", "<?"))
        self.feed(markup)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.name = self.name or tag
        self.attrs = {key: value or "" for key, value in attrs}

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if not self.name:
            self.name, self.closing = tag, True


def _token(kind: str, tag: str, nesting: Literal[-1, 0, 1], **fields: object) -> Token:
    token = Token(kind, tag, nesting)
    for name, value in fields.items():
        setattr(token, name, value)
    return token


def pasted_text_rule(state: StateCore) -> None:
    """A markdown-it core rule (run straight after inline parsing, before smart quotes).

    Reads from ``state.env``: ``check_url`` (why an address may not be linked, or None) and ``lettered``
    (prepared line -> "a"/"A" for lettered lists); adds ``PastedWarning``s to ``env["warnings"]``.
    """
    env = state.env
    check_url: Callable[[str], str | None] = env.get("check_url") or (lambda url: None)
    lettered: dict[int, str] = env.get("lettered", {})
    warnings: list[PastedWarning] = env.setdefault("warnings", [])
    tokens: list[Token] = []
    for token in state.tokens:
        if token.type == "html_block":
            tokens += _html_block_as_paragraph(state, token)
        else:
            tokens.append(token)
    state.tokens = tokens
    for token in tokens:
        if token.type == "ordered_list_open" and token.map and token.map[0] in lettered:
            token.attrSet("type", lettered[token.map[0]])
        elif token.type == "inline":
            token.children = _join_text(token.children or [])
            warnings += tidy_inline(token, token.map[0] if token.map else 0, check_url)


def _html_block_as_paragraph(state: StateCore, block: Token) -> list[Token]:
    """A block of raw HTML, read as a paragraph of inline text so its tags are judged one by one."""
    inline = _token("inline", "", 0, content=block.content.strip(), map=block.map, level=block.level + 1)
    inline.children = []
    state.md.inline.parse(inline.content, state.md, state.env, inline.children)
    return [_token("paragraph_open", "p", 1, map=block.map, level=block.level, block=True), inline,
            _token("paragraph_close", "p", -1, level=block.level, block=True)]


def _join_text(children: list[Token]) -> list[Token]:
    """Escaped characters joined to the text around them (markdown-it does it later; linking needs it now)."""
    joined: list[Token] = []
    for child in children:
        if child.type == "text_special":
            child.type = "text"
        if child.type == "text" and joined and joined[-1].type == "text":
            joined[-1].content += child.content
        else:
            joined.append(child)
    return joined


def tidy_inline(inline: Token, first_line: int, check_url: Callable[[str], str | None]) -> list[PastedWarning]:
    """Rewrite ``inline``'s children: kept HTML as Markdown tokens, other HTML dropped, bare addresses linked.

    ``first_line`` is the body line the inline text starts on; a line break inside it moves to the next.
    ``check_url`` returns why a link address may not be used, or None.
    """
    warnings: list[PastedWarning] = []
    children: list[Token] = []
    open_tags: list[tuple[str, Token | None]] = []  # tags still open: (name, the closing token, None if dropped)
    line = first_line
    skipping = ""  # inside <script> or <style>: their content is dropped too
    warned: set[tuple[int, str]] = set()  # (line, message): each said once per line

    def warn(why: str) -> None:
        if (line, why) not in warned:
            warned.add((line, why))
            warnings.append(PastedWarning(line, "html-left-out", why))

    for child in inline.children or []:
        if child.type in ("softbreak", "hardbreak"):
            line += 1
        if skipping and child.type != "html_inline":
            continue
        if child.type != "html_inline":
            children.append(child)
            continue
        tag = _Tag(child.content)
        if tag.comment or not tag.name:
            continue  # <!-- a note to yourself --> stays out of the email, quietly
        name = tag.name.lower()
        if skipping:
            if tag.closing and name == skipping:
                skipping = ""
            continue
        if name in _DROPPED_WITH_CONTENT and not tag.closing:
            skipping = name
            warn(f"the HTML <{name}> is left out, with everything in it: an email cannot run or restyle itself")
            continue
        if name not in KEPT_TAGS:
            warn(f"the HTML <{name}> is left out (its words are kept): mailroom keeps only <b>, <strong>, <i>, "
                 "<em>, <u>, <br> and <a href=\"https://...\">; use Markdown for the rest")
            continue
        if name == "br":
            children.append(_token("hardbreak", "br", 0))
            continue
        if tag.closing:
            for depth in range(len(open_tags) - 1, -1, -1):
                if open_tags[depth][0] == name:
                    children.extend(closer for _, closer in reversed(open_tags[depth:]) if closer)
                    del open_tags[depth:]
                    break
            continue
        if name == "a":
            href = tag.attrs.get("href", "").strip()
            problem = check_url(href) if href.lower().startswith(LINK_SCHEMES) else None
            if not href.lower().startswith(LINK_SCHEMES) or problem:
                why = problem or "a link must start with https://, http://, mailto: or tel:"
                warn(f"the HTML link to '{href[:60]}' is left out (its words are kept): {why}")
                open_tags.append((name, None))
                continue
            children.append(_token("link_open", "a", 1, attrs={"href": href}, markup="html"))
            open_tags.append((name, _token("link_close", "a", -1, markup="html")))
            continue
        kind, markdown_tag = {"b": ("strong", "strong"), "strong": ("strong", "strong"), "i": ("em", "em"),
                              "em": ("em", "em"), "u": ("u", "u")}[name]
        if kind == "u":
            children.append(_token("html_inline", "u", 1, content="<u>"))
            open_tags.append((name, _token("html_inline", "u", -1, content="</u>")))
        else:
            children.append(_token(f"{kind}_open", markdown_tag, 1, markup="html"))
            open_tags.append((name, _token(f"{kind}_close", markdown_tag, -1, markup="html")))
    children.extend(closer for _, closer in reversed(open_tags) if closer)
    inline.children = _link_bare_addresses(children, check_url)
    return warnings


def _link_bare_addresses(children: list[Token], check_url: Callable[[str], str | None]) -> list[Token]:
    """``www.example.org/dates`` and ``https://example.org`` in running text become links to themselves."""
    result: list[Token] = []
    in_link = 0
    for child in children:
        if child.type == "link_open":
            in_link += 1
        elif child.type == "link_close":
            in_link -= 1
        if child.type != "text" or in_link or not _BARE_ADDRESS.search(child.content):
            result.append(child)
            continue
        text, position = child.content, 0
        for match in _BARE_ADDRESS.finditer(text):
            shown = match.group(0)
            while shown and shown[-1] in _TRAILING and not (shown[-1] == ")" and shown.count("(") >= shown.count(")")):
                shown = shown[:-1]
            href = shown if shown.lower().startswith(("http://", "https://")) else f"https://{shown}"
            if "." not in shown.split("//")[-1].split("/")[0] or check_url(href):
                continue
            if match.start() > position:
                result.append(_token("text", "", 0, content=text[position:match.start()]))
            result.append(_token("link_open", "a", 1, attrs={"href": href}, markup="linkify", info="auto"))
            result.append(_token("text", "", 0, content=shown))
            result.append(_token("link_close", "a", -1, markup="linkify", info="auto"))
            position = match.start() + len(shown)
        if position < len(text):
            result.append(_token("text", "", 0, content=text[position:]))
    return result
