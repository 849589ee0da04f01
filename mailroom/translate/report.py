"""What compose says about each language, in words for office staff (the CLI prints these lines)."""

from __future__ import annotations

from collections.abc import Sequence

from mailroom.translate.languages import describe
from mailroom.translate.step import MACHINE, SCHOOL, LanguageOutcome


def language_lines(outcomes: Sequence[LanguageOutcome]) -> list[str]:
    """One line per language, then the characters sent (engines charge per character)."""
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
            if outcome.requests:
                cached = f", {outcome.from_cache} from the cache" if outcome.from_cache else ""
                how += (f"{outcome.characters_sent:,} characters sent in {_count(outcome.requests, 'request')}"
                        f"{cached}")
            else:
                how += "all from the cache, nothing sent"
            if outcome.kept_in_english:
                how += f"; {_count(outcome.kept_in_english, 'block')} kept in English (see the warnings)"
        else:
            how = "not made: its readers get the English version (see the warnings)"
        lines.append(f"  {name}  {how}")
    if engine:
        sent = sum(o.characters_sent for o in outcomes)
        lines.append(f"Characters sent to {engine}: {sent:,}")
    return lines


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")
