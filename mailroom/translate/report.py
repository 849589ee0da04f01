"""What compose says about each language, in words for office staff (the CLI prints these lines)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from mailroom.translate.languages import describe, english_name, is_tag

if TYPE_CHECKING:  # the send's plan (plan_language_lines) needs none of compose's translation step
    from mailroom.translate.step import LanguageOutcome


def language_lines(outcomes: Sequence[LanguageOutcome]) -> list[str]:
    """One line per language, then the characters sent (engines charge per character)."""
    from mailroom.translate.step import MACHINE, SCHOOL

    if not outcomes:
        return []
    lines = ["Languages:"]
    width = max(len(describe(o.language)) for o in outcomes)
    engine = next((o.engine for o in outcomes if o.engine), "")
    for outcome in outcomes:
        name = describe(outcome.language).ljust(width)
        if outcome.source == SCHOOL:
            how = f"the school's own translation (newsletter.{outcome.language}.md)"
        elif outcome.source == MACHINE:
            how = f"translated by {outcome.engine}: "
            use = outcome.use
            if use.requests:
                cached = f", {use.from_cache} from the cache" if use.from_cache else ""
                how += (f"{use.characters_sent:,} characters sent in {_count(use.requests, 'request')}"
                        f"{cached}")
            else:
                how += "all from the cache, nothing sent"
            if outcome.kept_in_english:
                how += f"; {_count(outcome.kept_in_english, 'block')} kept in English (see the warnings)"
        else:
            how = "not made: its readers get the English version (see the warnings)"
        lines.append(f"  {name}  {how}")
    if engine:
        sent = sum(o.use.characters_sent for o in outcomes)
        lines.append(f"Characters sent to {engine}: {sent:,}")
    return lines


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def plan_language_lines(languages: Mapping[str, int], english_instead: Mapping[str, int],
                        school_language: str) -> list[str]:
    """The send plan's count of people per language, and who gets the school's language instead, and why."""
    if set(languages) <= {""} and not english_instead:
        return []  # everyone reads the school's language: nothing to say
    shown = ", ".join(f"{describe(tag) if tag else english_name(school_language)} {count}"
                      for tag, count in sorted(languages.items(), key=lambda item: (item[0] != "", item[0])))
    lines = [f"Languages: {shown}"]
    school = english_name(school_language)
    for value, count in sorted(english_instead.items()):
        if is_tag(value):
            lines.append(f"  {_count(count, 'reader')} of {describe(value)} get the {school} version: that "
                         "language could not be made when the newsletter was composed (see compose's warnings)")
        else:
            lines.append(f"  {_count(count, 'reader')} get the {school} version because their language, "
                         f"'{value}', is not one mailroom recognises: use a tag like pl, ar or pt-PT")
    return lines
