"""Which version of a newsletter a reader gets, and what each version is called (notes/VERSIONS.md).

A *version* is one email the build holds: the sections meant for a combination of the newsletter's
lists (a teacher who is also a parent gets the ``only parents`` and the ``only staff`` sections in one
email), in one language. Compose, the preview, the send plan, the ledger and every transport name a
version by its slug, ``parents``, ``parents+staff``, ``parents.pl``, ``parents+staff.ar``, so this module
is the only place that joins or splits one, and ``version_for`` the only place that decides a reader's.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

LIST_JOINER = "+"
LANGUAGE_MARK = "."
# Every combination of a newsletter's lists is made when it has at most this many lists (2**4 - 1 = 15
# versions); with more, only the combinations readers are on (see ``combinations_needed``).
ALL_COMBINATIONS_UP_TO = 4


@dataclass(frozen=True, order=True)
class VersionKey:
    """One version: its lists in the newsletter's order, and its language ("" is the school's own)."""

    lists: tuple[str, ...]
    language: str = ""

    @property
    def slug(self) -> str:
        lists = LIST_JOINER.join(self.lists)
        return f"{lists}{LANGUAGE_MARK}{self.language}" if self.language else lists

    @property
    def greeting_list(self) -> str:
        return self.lists[0]

    @classmethod
    def from_slug(cls, slug: str) -> VersionKey:
        lists, _, language = slug.partition(LANGUAGE_MARK)
        return cls(tuple(lists.split(LIST_JOINER)), language)


def version_for(lists: Iterable[str], order: Sequence[str], language: str = "") -> VersionKey:
    """The version for a reader on ``lists``: those of them in ``order`` (the newsletter's audiences), in
    that order, in ``language`` ("" for the school's). ValueError if none of ``lists`` is in ``order``."""
    wanted = set(lists)
    chosen = tuple(name for name in order if name in wanted)
    if not chosen:
        raise ValueError(f"none of {sorted(wanted)} is among {list(order)}")
    return VersionKey(chosen, language)


def all_combinations(order: Sequence[str]) -> list[tuple[str, ...]]:
    """Every non-empty combination of ``order``'s lists, single lists first, each in ``order``'s order."""
    return [combo for size in range(1, len(order) + 1) for combo in itertools.combinations(order, size)]


def combinations_needed(order: Sequence[str], occurring: Iterable[Iterable[str]] | None = None
                        ) -> list[tuple[str, ...]]:
    """The list combinations a build of a newsletter for ``order``'s lists holds.

    With up to ``ALL_COMBINATIONS_UP_TO`` lists: all of them, so the build does not depend on who is in
    the lists file at compose time (a fresh export the next morning needs no new compose). With more,
    2**n grows too fast to render and preview, so: each list alone, plus the combinations found in
    ``occurring`` (the readers' lists, as the lists files had them when composing); a send that then
    meets a combination the build lacks is refused with "compose again" (``missing_versions``).
    """
    if len(order) <= ALL_COMBINATIONS_UP_TO or occurring is None:
        if len(order) <= ALL_COMBINATIONS_UP_TO:
            return all_combinations(order)
        return [(name,) for name in order]
    found = {version_for(lists, order).lists for lists in occurring if any(n in order for n in lists)}
    singles = [(name,) for name in order]
    return singles + sorted(found - set(singles), key=lambda c: (len(c), [order.index(n) for n in c]))


def describe(key: VersionKey | str) -> str:
    """How the office reads a version's name: "Parents + staff" (and its language's tag, if any)."""
    key = VersionKey.from_slug(key) if isinstance(key, str) else key
    lists = " + ".join(key.lists)
    text = lists[:1].upper() + lists[1:]
    return f"{text} ({key.language})" if key.language else text
