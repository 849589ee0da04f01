"""The plain-text part, written from the same Markdown tokens as the HTML so both say the same thing.

Mail clients that can't or won't show HTML (and some screen-reader set-ups) show this part, and spam
filters compare it with the HTML. Links are written out as "text (address)".
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable

from markdown_it.token import Token

from mailroom.compose.content import Block

WIDTH = 72


def inline_text(token: Token, tag: Callable[[str], str]) -> str:
    """One inline token's children as text, with each link's (tagged) address after its words."""
    parts: list[str] = []
    link_stack: list[tuple[str, int]] = []
    for child in token.children or []:
        kind = child.type
        if kind in ("text", "code_inline"):
            parts.append(child.content)
        elif kind in ("softbreak", "hardbreak"):
            parts.append("\n")  # a line break in newsletter.md is one in the email
        elif kind == "image":
            parts.append(f"[{child.content}]")
        elif kind == "link_open":
            link_stack.append((str(child.attrs.get("href", "")), len(parts)))
        elif kind == "link_close" and link_stack:
            href, start = link_stack.pop()
            words = "".join(parts[start:]).strip()
            shown = href.split(":", 1)[1] if href.startswith(("mailto:", "tel:")) else href
            same_number = href.startswith("tel:") and _digits(words) == _digits(shown)
            if same_number:
                continue
            bare = href.split("://", 1)[1] if href.startswith(("https://", "http://")) else shown
            if words.rstrip("/") in (href.rstrip("/"), shown, bare.rstrip("/")):
                parts[start:] = [tag(href)]
            else:
                parts.append(f" ({tag(href)})")
    return "".join(parts)


def _item_label(number: int, style: str) -> str:
    """"3." or, for a lettered list (``a)`` lines), "c)"."""
    if style in ("a", "A") and 1 <= number <= 26:
        letter = chr(ord("a") + number - 1)
        return f"{letter.upper() if style == 'A' else letter})"
    return f"{number}."


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _wrap(text: str, indent: str = "", first: str | None = None) -> str:
    lines = []
    for paragraph_line in text.split("\n"):
        lines.append(textwrap.fill(paragraph_line, width=WIDTH, initial_indent=first if first is not None else indent,
                                   subsequent_indent=indent, break_long_words=False, break_on_hyphens=False))
        first = None
    return "\n".join(lines)


def tokens_text(tokens: list[Token], tag: Callable[[str], str]) -> str:
    """Block-level Markdown tokens as plain text paragraphs."""
    out: list[str] = []
    list_stack: list[list[int | str | None]] = []  # per open list: [next number, None for bullets, list type]
    list_lines: list[str] = []  # the items of the outermost open list, one per line
    quote_depth = 0
    item_prefix: str | None = None
    for index, token in enumerate(tokens):
        kind = token.type
        if kind == "heading_open":
            inline = inline_text(tokens[index + 1], tag)
            level = int(token.tag[1])
            underline = {1: "=", 2: "-"}.get(level)
            shown = inline.upper() if level == 1 else inline
            out.append(f"{shown}\n{underline * min(len(inline), WIDTH)}" if underline else shown)
        elif kind in ("bullet_list_open", "ordered_list_open"):
            start = token.attrs.get("start", 1) if kind == "ordered_list_open" else None
            list_stack.append([int(start) if start is not None else None, str(token.attrs.get("type", "1"))])
        elif kind in ("bullet_list_close", "ordered_list_close"):
            list_stack.pop()
            if not list_stack:
                out.append("\n".join(list_lines))
                list_lines = []
        elif kind == "list_item_open" and list_stack:
            number, style = list_stack[-1]
            if isinstance(number, int):
                item_prefix = f"{_item_label(number, str(style))} "
                list_stack[-1][0] = number + 1
            else:
                item_prefix = "* "
        elif kind == "blockquote_open":
            quote_depth += 1
        elif kind == "blockquote_close":
            quote_depth -= 1
        elif kind == "inline" and tokens[index - 1].type == "paragraph_open":
            text = inline_text(token, tag)
            quote = "> " * quote_depth
            if list_stack:
                indent = quote + "   " * (len(list_stack) - 1)
                prefix = item_prefix if item_prefix is not None else ""
                item_prefix = None
                list_lines.append(_wrap(text, indent + " " * len(prefix), indent + prefix))
            else:
                out.append(_wrap(text, quote))
        elif kind in ("fence", "code_block"):
            out.append(token.content.rstrip("\n"))
        elif kind == "hr":
            out.append("-" * 20)
    return "\n\n".join(out)


def block_text(block: Block, tag: Callable[[str], str]) -> str:
    """One body block as text."""
    if block.kind == "text":
        return tokens_text(block.tokens, tag)
    if block.kind == "alert":
        title = f"{block.title.upper()}\n" if block.title else ""
        body = tokens_text(block.tokens, tag)
        bar = "*" * 40
        return f"{bar}\n{title}{body}\n{bar}"
    if block.kind == "button":
        return f"{block.label}: {tag(block.url)}"
    if block.kind == "image" and block.image is not None:
        text = f"[Picture: {block.image.alt}]"
        return f"{text}\n{tag(block.url)}" if block.url else text
    raise ValueError(f"unknown block kind {block.kind!r}")
