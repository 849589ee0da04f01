"""The school's own translations: ``newsletter.<lang>.md`` beside ``newsletter.md``.

A person who reads the language wrote it, so it is used as it is, with no engine and no notice. Compose
checks it against the English and warns when they no longer match: a block or a link missing, a
personal field gone, or ``newsletter.md`` edited since the translation was made. To know the last, the
translation names the English it was made from in its front matter::

    translated_from: 3f9a1c2b7d4e

which is the fingerprint compose prints in the warning (the first 12 hex digits of the SHA-256 of
``newsletter.md``, ignoring line endings and trailing spaces). Kept in the file rather than in the
build, so it travels with the translation and survives a fresh checkout.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mailroom.compose.content import SOURCE_FILE, Block, Newsletter, load_newsletter
from mailroom.errors import InputError
from mailroom.translate.languages import describe, normalise_tag
from mailroom.translate.translator import describe_block

_OWN_FILE = re.compile(r"^newsletter\.([A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*)\.md$")
_TOKEN = re.compile(r"%%[a-z_]+%%")


@dataclass(frozen=True)
class Mismatch:
    """One way a school's translation no longer matches the English."""

    message: str
    line: int | None = None  # in newsletter.md


def own_translations(folder: Path) -> dict[str, Path]:
    """The school's translation files in ``folder``: language tag -> path."""
    found: dict[str, Path] = {}
    for path in sorted(folder.glob("newsletter.*.md")):
        match = _OWN_FILE.match(path.name)
        tag = normalise_tag(match.group(1)) if match else None
        if tag:
            found[tag] = path
    return found


def fingerprint(path: Path) -> str:
    """Which English a translation was made from: line endings and trailing spaces do not count."""
    text = path.read_text(encoding="utf-8-sig").replace("\r\n", "\n").replace("\r", "\n")
    text = "\n".join(line.rstrip() for line in text.split("\n")).strip()
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def load_own_translation(english: Newsletter, path: Path, known_lists: Sequence[str]) -> Newsletter:
    """The translation as a ``Newsletter``; an ``InputError`` naming its file and line if it cannot be read."""
    return load_newsletter(english.folder, known_lists, source_name=path.name)


def compare(english: Newsletter, translation: Newsletter, language: str) -> list[Mismatch]:
    """How ``translation`` no longer matches ``english`` (empty when it does)."""
    name = translation.path.name
    problems: list[Mismatch] = []
    expected = fingerprint(english.path)
    made_from = translation.front.translated_from
    if not made_from:
        problems.append(Mismatch(f"{name} does not say which {SOURCE_FILE} it translates, so mailroom cannot tell "
                                 f"you when the English changes: add 'translated_from: {expected}' to its front "
                                 "matter once it matches"))
    elif made_from != expected:
        problems.append(Mismatch(f"{SOURCE_FILE} has been edited since {name} was translated from it: check the "
                                 f"{describe(language)} translation still says the same, then change its "
                                 f"'translated_from' to {expected}"))
    if english.front.audiences != translation.front.audiences:
        problems.append(Mismatch(f"{name} is for {', '.join(translation.front.audiences)}, but {SOURCE_FILE} is "
                                 f"for {', '.join(english.front.audiences)}"))
    problems += _compare_blocks(english.blocks, translation.blocks, name)
    for url, line in _links(english.blocks).items():
        if url not in _links(translation.blocks):
            problems.append(Mismatch(f"{name} has lost the link to {url}", line))
    english_tokens = _tokens(english)
    for token in sorted(english_tokens - _tokens(translation)):
        problems.append(Mismatch(f"{name} has lost the personal field {token}"))
    return problems


def _compare_blocks(english: Sequence[Block], translation: Sequence[Block], name: str) -> list[Mismatch]:
    """The first place the two stop having the same blocks, in the same order, for the same lists."""
    for index, block in enumerate(english):
        if index >= len(translation):
            return [Mismatch(f"{name} has nothing matching {describe_block(block)} (and what follows it)", block.line)]
        other = translation[index]
        if (block.kind, block.audiences) != (other.kind, other.audiences):
            return [Mismatch(f"{name} has {_kind(other)} (its line {other.line}) where {SOURCE_FILE} has "
                             f"{describe_block(block)}", block.line)]
    if len(translation) > len(english):
        extra = translation[len(english)]
        return [Mismatch(f"{name} has more blocks than {SOURCE_FILE}, from its line {extra.line}")]
    return []


def _kind(block: Block) -> str:
    kind = {"text": "text", "alert": "an alert", "button": "a button", "image": "a picture"}[block.kind]
    if block.audiences is not None:
        kind += f" only for {', '.join(sorted(block.audiences))}"
    return kind


def _links(blocks: Sequence[Block]) -> dict[str, int]:
    """Every link address in the blocks, with the line of its first use."""
    found: dict[str, int] = {}
    for block in blocks:
        if block.url:
            found.setdefault(block.url, block.line)
        for token in block.tokens:
            for child in token.children or []:
                if child.type == "link_open":
                    found.setdefault(str(child.attrs.get("href", "")), block.line)
    return found


def _tokens(newsletter: Newsletter) -> set[str]:
    text = newsletter.front.subject + newsletter.front.preheader
    for block in newsletter.blocks:
        text += block.title + block.label + " ".join(t.content for t in block.tokens)
    return set(_TOKEN.findall(text))


def unreadable(path: Path, exc: InputError) -> str:
    return f"{path.name} could not be used, so its readers get the English version: {exc}"
