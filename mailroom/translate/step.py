"""Compose's translation step: which languages to make, and each one's newsletter, or why not.

The school's own ``newsletter.<lang>.md`` comes first; machine translation makes the rest. A language
that cannot be made is never a reason to stop: its readers get the school's language, and the finding
says why and what to do.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mailroom.checks.rules import WARNING, Finding
from mailroom.compose.content import Newsletter
from mailroom.errors import InputError, MailroomError
from mailroom.settings import Settings
from mailroom.translate.languages import Localisation, describe, direction, is_tag, same_language
from mailroom.translate.own import compare, load_own_translation, own_translations, unreadable
from mailroom.translate.translator import EngineUse, Translator

if TYPE_CHECKING:  # send reads the language plan through this module and never renders
    from mailroom.compose.render import Renderer

SCHOOL = "school"  # the school's own translation
MACHINE = "machine"
NONE = "none"  # could not be made: readers get the school's language
AUDIENCES_FILE = "audiences.csv"


@dataclass
class LanguageOutcome:
    language: str
    source: str
    newsletter: Newsletter | None = None
    localisation: Localisation | None = None
    findings: list[Finding] = field(default_factory=list)
    engine: str = ""
    use: EngineUse = field(default_factory=EngineUse)
    kept_in_english: int = 0  # blocks that fell back to English

    def summary(self) -> dict[str, object]:
        """What the manifest records about this language."""
        return {"source": self.source, "engine": self.engine, **dataclasses.asdict(self.use),
                "kept_in_english": self.kept_in_english,
                "problems": [f.message for f in self.findings]}


def readers_languages(settings: Settings, newsletter: Newsletter, path: Path | None = None) -> list[str]:
    """The languages of the people on the newsletter's lists (the audiences file's language column).

    A missing or unreadable audiences file is not compose's problem (send reports it): no languages then.
    """
    from mailroom.audience.lists import load_audience

    path = path or settings.root / AUDIENCES_FILE
    if not path.is_file():
        return []
    try:
        plan = load_audience(path, settings, newsletter.front.audiences)
    except MailroomError:
        return []
    return sorted({person.language for person in plan.recipients if is_tag(person.language)})


def languages_to_make(settings: Settings, newsletter: Newsletter, wanted: Sequence[str]) -> list[str]:
    """The readers' languages plus those the school has translated, minus the school's own, in a stable order."""
    found = [*wanted, *own_translations(newsletter.folder)]
    return sorted({tag for tag in found if not same_language(tag, settings.school.language)})


def make_languages(settings: Settings, newsletter: Newsletter, renderer: Renderer, languages: Sequence[str],
                   translator: Translator | None = None) -> list[LanguageOutcome]:
    """Each language's newsletter (the school's own translation, else the engine's), or why there is none."""
    own = own_translations(newsletter.folder)
    strings: list[str] = []
    for audience in newsletter.front.audiences:
        strings += renderer.template_strings(newsletter, audience)
    web_url = settings.web_url.replace("{slug}", newsletter.slug)
    outcomes: list[LanguageOutcome] = []
    translator = translator or Translator(settings)
    with translator:
        for language in languages:
            outcome = None
            if language in own:
                outcome = _school_translation(settings, newsletter, own[language].name, language)
            if outcome is None or outcome.newsletter is None:
                machine = _machine_translation(translator, newsletter, language, strings, web_url)
                if outcome is not None:
                    machine.findings[:0] = outcome.findings
                outcome = machine
            outcomes.append(outcome)
    return outcomes


def _school_translation(settings: Settings, english: Newsletter, file_name: str, language: str) -> LanguageOutcome:
    path = english.folder / file_name
    outcome = LanguageOutcome(language, SCHOOL)
    try:
        translation = load_own_translation(english, path, settings.list_names())
    except InputError as exc:
        outcome.findings.append(Finding(WARNING, "own-translation-unreadable", unreadable(path, exc)))
        return outcome
    outcome.newsletter = translation
    outcome.localisation = Localisation(language, direction(language))
    for mismatch in compare(english, translation, language):
        outcome.findings.append(Finding(WARNING, "own-translation-mismatch", mismatch.message,
                                        source_line=mismatch.line))
    return outcome


def _machine_translation(translator: Translator, english: Newsletter, language: str, strings: Sequence[str],
                         web_url: str) -> LanguageOutcome:
    result = translator.translate(english, language, strings, web_url)
    outcome = LanguageOutcome(language, MACHINE if result.made else NONE, result.newsletter, result.localisation,
                              engine=translator.engine_name, use=result.use)
    if result.error:
        outcome.findings.append(Finding(WARNING, "translation-failed", result.error))
    for fallback in result.fallbacks:
        message = (f"{describe(language)}: {fallback.what} is kept in English, because {translator.engine_name}'s "
                   f"translation of it did not keep everything that must stay as written ({fallback.reason})")
        outcome.findings.append(Finding(WARNING, "translation-kept-english", message, source_line=fallback.line,
                                        block=fallback.what))
        if fallback.line is not None:
            outcome.kept_in_english += 1
    return outcome
