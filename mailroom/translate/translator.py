"""A newsletter in, the same newsletter in another language out, block by block.

For each language the translator gathers every piece of text a reader sees (subject, preheader, each
paragraph, heading and list item, alert titles, button labels, alt text, the templates' words, the
list's greeting, the date, and the notice), turns each into a protected snippet,
takes what it can from the cache, sends the rest to the engine in a few batched requests, and reads
the answers back. A block whose answer lost a link, a token, a phone number or a kept name stays in
English, and the fallback is reported with the block's line and the language.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from markdown_it.token import Token

from mailroom.compose.content import Block, Image, Newsletter
from mailroom.errors import ConfigError
from mailroom.settings import Settings
from mailroom.translate import protect
from mailroom.translate.cache import TranslationCache
from mailroom.translate.engines import Engine, EngineError, make_engine
from mailroom.translate.languages import Localisation, Notice, describe, direction, english_name

NOTICE_TEXT = "This newsletter was translated automatically from English, so some words may not be quite right."
NOTICE_LINK = "Read the original in English"
NOTICE_NO_LINK = "The school office can give you the original in English."
BATCH_SNIPPETS = 50  # DeepL takes at most 50 texts per request
BATCH_CHARACTERS = 30_000  # well under DeepL's 128 KiB request limit and LibreTranslate's defaults


@dataclass(frozen=True)
class Fallback:
    """A block (or a subject, a label...) kept in English because the engine lost something in it."""

    line: int | None  # in newsletter.md; None for the subject, the templates' words...
    what: str  # "the alert 'Safeguarding alert'"
    reason: str  # "the link to 'https://...' was lost"


@dataclass
class EngineUse:
    """How one language used the engine: what the office is charged for (characters) and what the cache saved."""

    characters_sent: int = 0
    requests: int = 0
    snippets: int = 0  # distinct texts to translate
    from_cache: int = 0  # of those, answered from the cache


@dataclass
class LanguageResult:
    """One language's translation, or why it could not be made (``error``; its readers get English)."""

    language: str
    newsletter: Newsletter | None = None
    localisation: Localisation | None = None
    fallbacks: list[Fallback] = field(default_factory=list)
    error: str = ""
    use: EngineUse = field(default_factory=EngineUse)

    @property
    def made(self) -> bool:
        return self.newsletter is not None


@dataclass
class _Unit:
    """One snippet and where its answer goes."""

    snippet: protect.Snippet
    block: int | None  # index in newsletter.blocks, or None for the subject and the other words
    apply: Callable[[str], None]  # takes the engine's answer; raises protect.Lost
    what: str = ""  # for a unit outside the blocks: "the subject"


@dataclass
class _Draft:
    """The translation as it is put together: starts as a copy of the English, answers replace its parts."""

    subject: str
    preheader: str
    blocks: list[Block]
    greetings: dict[str, str]
    extra: dict[str, str]
    strings: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, settings: Settings, newsletter: Newsletter) -> _Draft:
        date = newsletter.front.date
        return cls(subject=newsletter.front.subject, preheader=newsletter.front.preheader,
                   blocks=[copy.copy(block) for block in newsletter.blocks],
                   greetings={name: lst.greeting for name, lst in settings.lists.items()},
                   extra={"notice": NOTICE_TEXT, "date": f"{date:%A} {date.day} {date:%B %Y}"})

    def set_subject(self, text: str) -> None:
        self.subject = text

    def set_preheader(self, text: str) -> None:
        self.preheader = text

    def localisation(self, language: str, web_url: str) -> Localisation:
        extra = self.extra
        if web_url:
            notice = Notice(text=extra["notice"], link_label=extra["notice_link"], url=web_url)
        else:
            notice = Notice(text=f"{extra['notice']} {extra['notice_link']}")
        return Localisation(language=language, direction=direction(language), strings=dict(self.strings),
                            greetings=dict(self.greetings), date_long=extra["date"], notice=notice)


def _inline_setter(token: Token, snippet: protect.Snippet) -> Callable[[str], None]:
    def put(answer: str) -> None:
        children = protect.decode_inline(answer, snippet)
        token.children = children
        token.content = "".join(c.content for c in children if c.type == "text")
    return put


def _attribute_setter(block: Block, name: str) -> Callable[[str], None]:
    def put(text: str) -> None:
        setattr(block, name, text)
    return put


def _alt_setter(block: Block, image: Image) -> Callable[[str], None]:
    def put(text: str) -> None:
        block.image = dataclasses.replace(image, alt=text)
    return put


def _entry_setter(table: dict[str, str], key: str) -> Callable[[str], None]:
    def put(text: str) -> None:
        table[key] = text
    return put


class Translator:
    """Translates newsletters for one compose run; the engine is created on first use, the cache shared."""

    def __init__(self, settings: Settings, engine_factory: Callable[..., Engine] = make_engine) -> None:
        self.settings = settings
        self.config = settings.translation
        self.protector = protect.Protector(self.config.keep)
        self._engine_factory = engine_factory
        self._engine: Engine | None = None
        self._cache: TranslationCache | None = None
        self._stopped: str = ""  # a failure every further language would meet too (bad key, no quota...)

    @property
    def engine_name(self) -> str:
        return {"deepl": "DeepL", "libretranslate": "LibreTranslate"}.get(self.config.engine, "")

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()

    def __enter__(self) -> Translator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def translate(self, newsletter: Newsletter, language: str, template_strings: Sequence[str],
                  web_url: str = "") -> LanguageResult:
        """``newsletter`` in ``language``; never raises for an engine's failure (``error`` says it)."""
        result = LanguageResult(language=language)
        name = describe(language)
        if not self.config.engine:
            result.error = (f"{name}: readers of {english_name(language)} get the English version. To send them "
                            f"their own, add newsletter.{language}.md, or choose a translation engine in "
                            "school.toml ([translation] engine = \"deepl\" or \"libretranslate\")")
            return result
        if self._stopped:
            result.error = f"{name}: {self._stopped}. Its readers get the English version."
            return result
        draft = _Draft.of(self.settings, newsletter)
        units = self._units(newsletter, draft, template_strings, bool(web_url))
        try:
            engine = self._get_engine()
            answers = self._answers(engine, language, [u.snippet.html for u in units], result)
        except EngineError as exc:
            if exc.affects_all:
                self._stopped = exc.message
            result.error = f"{name}: {exc.message}. Its readers get the English version."
            if exc.kind == "unsupported":
                result.error = (f"{name}: {exc.message}. Its readers get the English version; to send them "
                                f"their own, add the school's translation as newsletter.{language}.md")
            return result
        except ConfigError as exc:
            self._stopped = exc.message
            result.error = f"{name}: {exc.message}. Its readers get the English version."
            return result

        failed_blocks: dict[int, str] = {}
        for unit in units:
            try:
                unit.apply(answers[unit.snippet.html])
            except protect.Lost as lost:
                if unit.block is not None:
                    failed_blocks.setdefault(unit.block, str(lost))
                else:
                    result.fallbacks.append(Fallback(None, unit.what, str(lost)))
        for index, reason in sorted(failed_blocks.items()):
            original = newsletter.blocks[index]
            draft.blocks[index] = original
            result.fallbacks.append(Fallback(original.line, describe_block(original), reason))
        front = dataclasses.replace(newsletter.front, subject=draft.subject, preheader=draft.preheader)
        result.newsletter = dataclasses.replace(newsletter, front=front, blocks=tuple(draft.blocks))
        result.localisation = draft.localisation(language, web_url)
        return result

    # --- gathering the text ---------------------------------------------------------------------

    def _units(self, newsletter: Newsletter, draft: _Draft, template_strings: Sequence[str], linked: bool
               ) -> list[_Unit]:
        """Every snippet of ``newsletter``, each with the function that puts its answer into ``draft``."""
        protector = self.protector
        units: list[_Unit] = []

        def text_unit(text: str, block: int | None, put: Callable[[str], None], what: str = "") -> None:
            snippet = protect.encode_text(text, protector)

            def apply(answer: str) -> None:
                put(protect.decode_text(answer, snippet))

            units.append(_Unit(snippet, block, apply, what or f"'{_short(text)}'"))

        text_unit(newsletter.front.subject, None, draft.set_subject, "the subject")
        text_unit(newsletter.front.preheader, None, draft.set_preheader, "the preheader")
        for index, block in enumerate(newsletter.blocks):
            twin = draft.blocks[index]
            if block.tokens:
                twin.tokens = copy.deepcopy(block.tokens)
                for token in twin.tokens:
                    if token.type == "inline" and token.children:
                        snippet = protect.encode_inline(token.children, protector)
                        units.append(_Unit(snippet, index, _inline_setter(token, snippet)))
            if block.title:
                text_unit(block.title, index, _attribute_setter(twin, "title"))
            if block.label:
                text_unit(block.label, index, _attribute_setter(twin, "label"))
            if block.image is not None:
                text_unit(block.image.alt, index, _alt_setter(twin, block.image))
        for msgid in dict.fromkeys(template_strings):
            text_unit(msgid, None, _entry_setter(draft.strings, msgid), f"the template's words '{_short(msgid)}'")
        for name in self.settings.lists:
            text_unit(draft.greetings[name], None, _entry_setter(draft.greetings, name), f"the {name} greeting")
        draft.extra["notice_link"] = NOTICE_LINK if linked else NOTICE_NO_LINK
        for key, text in list(draft.extra.items()):
            text_unit(text, None, _entry_setter(draft.extra, key), f"the {key.replace('_', ' ')}")
        return units

    # --- the engine and the cache ---------------------------------------------------------------

    def _get_engine(self) -> Engine:
        if self._engine is None:
            self._engine = self._engine_factory(self.config)
        return self._engine

    def _get_cache(self, engine: Engine) -> TranslationCache:
        if self._cache is None:
            self._cache = TranslationCache(self.config.cache_path, engine.key, self.config.keep)
        return self._cache

    def _answers(self, engine: Engine, language: str, snippets: Sequence[str], result: LanguageResult
                 ) -> dict[str, str]:
        """Each distinct snippet's translation: from the cache, else from the engine (then cached)."""
        unique = list(dict.fromkeys(snippets))
        result.use.snippets = len(unique)
        cache = self._get_cache(engine)
        answers = cache.lookup(language, unique)
        result.use.from_cache = len(answers)
        missing = [s for s in unique if s not in answers]
        if missing:
            engine.target_code(language)  # asks the engine which languages it offers, only when it is needed
        for batch in _batches(missing):
            texts = engine.translate(batch, language)
            result.use.requests += 1
            result.use.characters_sent += sum(len(protect._strip_tags(s)) for s in batch)
            fresh = dict(zip(batch, texts, strict=True))
            cache.store(language, fresh)
            answers.update(fresh)
        return answers


def _batches(snippets: Sequence[str]) -> list[list[str]]:
    batches: list[list[str]] = []
    current: list[str] = []
    size = 0
    for snippet in snippets:
        if current and (len(current) >= BATCH_SNIPPETS or size + len(snippet) > BATCH_CHARACTERS):
            batches.append(current)
            current, size = [], 0
        current.append(snippet)
        size += len(snippet)
    if current:
        batches.append(current)
    return batches


def describe_block(block: Block) -> str:
    """A block as office staff would point at it: "the alert 'Safeguarding alert'", "the button 'Read…'"."""
    if block.kind == "alert":
        return f"the alert '{block.title}'" if block.title else "the alert"
    if block.kind == "button":
        return f"the button '{_short(block.label)}'"
    if block.kind == "image" and block.image is not None:
        return f"the picture '{_short(block.image.alt)}'"
    for token in block.tokens:
        if token.type == "inline" and token.content.strip():
            return f"the text '{_short(token.content)}'"
    return "a block"


def _short(text: str, limit: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"
