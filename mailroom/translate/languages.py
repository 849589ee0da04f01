"""Language tags as schools write them, and what a version needs to know about its language."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

# Scripts written right to left among the languages UK families speak (and Hebrew, Persian, Pashto,
# Sindhi, Kurdish (Sorani), Yiddish, Dhivehi for completeness).
RTL_LANGUAGES = frozenset({"ar", "ur", "fa", "he", "ps", "sd", "ckb", "yi", "dv", "ug"})

_TAG = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*$")

# English names, for messages to office staff, and each language's own name, for the review page.
_NAMES: dict[str, tuple[str, str]] = {
    "ar": ("Arabic", "العربية"), "bg": ("Bulgarian", "български"), "bn": ("Bengali", "বাংলা"),
    "cs": ("Czech", "čeština"), "cy": ("Welsh", "Cymraeg"), "da": ("Danish", "dansk"), "de": ("German", "Deutsch"),
    "el": ("Greek", "Ελληνικά"), "en": ("English", "English"), "es": ("Spanish", "español"),
    "et": ("Estonian", "eesti"), "fa": ("Persian", "فارسی"), "fi": ("Finnish", "suomi"),
    "fr": ("French", "français"), "ga": ("Irish", "Gaeilge"), "gu": ("Gujarati", "ગુજરાતી"),
    "he": ("Hebrew", "עברית"), "hi": ("Hindi", "हिन्दी"), "hu": ("Hungarian", "magyar"),
    "id": ("Indonesian", "Bahasa Indonesia"), "it": ("Italian", "italiano"), "ja": ("Japanese", "日本語"),
    "ko": ("Korean", "한국어"), "ku": ("Kurdish", "Kurdî"), "lt": ("Lithuanian", "lietuvių"),
    "lv": ("Latvian", "latviešu"), "nb": ("Norwegian", "norsk bokmål"), "nl": ("Dutch", "Nederlands"),
    "pa": ("Punjabi", "ਪੰਜਾਬੀ"), "pl": ("Polish", "polski"), "ps": ("Pashto", "پښتو"),
    "pt": ("Portuguese", "português"), "pt-br": ("Portuguese (Brazil)", "português (Brasil)"),
    "pt-pt": ("Portuguese (Portugal)", "português (Portugal)"), "ro": ("Romanian", "română"),
    "ru": ("Russian", "русский"), "sk": ("Slovak", "slovenčina"), "sl": ("Slovenian", "slovenščina"),
    "so": ("Somali", "Soomaali"), "sq": ("Albanian", "shqip"), "sv": ("Swedish", "svenska"),
    "ta": ("Tamil", "தமிழ்"), "th": ("Thai", "ไทย"), "ti": ("Tigrinya", "ትግርኛ"), "tr": ("Turkish", "Türkçe"),
    "uk": ("Ukrainian", "українська"), "ur": ("Urdu", "اردو"), "vi": ("Vietnamese", "Tiếng Việt"),
    "zh": ("Chinese", "中文"), "zh-hans": ("Chinese (simplified)", "简体中文"),
    "zh-hant": ("Chinese (traditional)", "繁體中文"),
}


def normalise_tag(text: str) -> str | None:
    """``text`` as the version scheme writes a tag (``pl``, ``pt-PT``, ``zh-Hans``), or None if it is not one.

    Spreadsheet exports write ``PL``, ``pt_pt`` or `` ar ``; all mean the same reader.
    """
    value = text.strip().replace("_", "-")
    if not value or not _TAG.match(value):
        return None
    parts = value.split("-")
    out = [parts[0].lower()]
    for part in parts[1:]:
        if len(part) == 2:
            out.append(part.upper())  # region: GB, PT, BR
        elif len(part) == 4:
            out.append(part.title())  # script: Hans, Latn
        else:
            out.append(part.lower())
    return "-".join(out)


def primary(tag: str) -> str:
    return tag.split("-")[0].lower()


def same_language(a: str, b: str) -> bool:
    """``en`` and ``en-GB`` are the same language for a reader: nothing to translate."""
    return primary(a) == primary(b)


def direction(tag: str) -> str:
    """"rtl" for Arabic, Urdu, Persian, Hebrew...; "ltr" otherwise."""
    return "rtl" if primary(tag) in RTL_LANGUAGES else "ltr"


def english_name(tag: str) -> str:
    """'Polish', 'Portuguese (Portugal)'; the tag itself when mailroom does not know the language."""
    known = _NAMES.get(tag.lower()) or _NAMES.get(primary(tag))
    return known[0] if known else tag


def own_name(tag: str) -> str:
    """The language's name in itself ('polski', 'العربية'), for readers of it."""
    known = _NAMES.get(tag.lower()) or _NAMES.get(primary(tag))
    return known[1] if known else tag


def describe(tag: str) -> str:
    """'Polish (pl)', for messages."""
    return f"{english_name(tag)} ({tag})"


@dataclass(frozen=True)
class Notice:
    """The line a machine-translated version opens with, in the reader's language."""

    text: str
    link_label: str = ""  # "" when there is no web copy to link to
    url: str = ""


@dataclass(frozen=True)
class Localisation:
    """What the templates need to write one version in one language.

    ``strings`` maps the templates' English words (``{{ _("...") }}``) to this language; a string that is
    not there stays English. ``greetings`` are per list; in a translated version
    every reader is greeted with their list's greeting in their language, because "Dear <name>" needs
    a grammatical gender in Polish, Arabic, Urdu... that mailroom does not know.
    """

    language: str
    direction: str = "ltr"
    strings: Mapping[str, str] = field(default_factory=dict)
    greetings: Mapping[str, str] = field(default_factory=dict)
    date_long: str = ""
    notice: Notice | None = None

    @property
    def translated(self) -> bool:
        """Whether greetings are fixed words in another language rather than the per-reader token."""
        return bool(self.greetings)


def parse_tags(text: str, where: str) -> list[str]:
    """``"pl, AR,pt_PT"`` -> ``["pl", "ar", "pt-PT"]``; an ``InputError`` naming ``where`` for a bad one."""
    from mailroom.errors import InputError

    tags: list[str] = []
    for part in text.replace(";", ",").split(","):
        if not part.strip():
            continue
        tag = normalise_tag(part)
        if tag is None:
            raise InputError(f"{where}: '{part.strip()}' is not a language tag; use tags like pl, ar, pt-PT")
        tags.append(tag)
    return list(dict.fromkeys(tags))


@lru_cache(maxsize=512)
def reader_language(cell: str) -> str:
    """A language cell from the audiences file, tidied: ``"PL"`` -> ``"pl"``, ``"Polish"`` -> ``"pl"``.

    Exports from school information systems often give the language's name ("Polish", "Portuguese
    (Brazil)") rather than a tag, so names in English or in the language itself are understood too.
    Blank gives "" (the school's language); a value that is neither is returned trimmed, and the plan
    reports it as not recognised (that reader gets the school's language).
    """
    value = " ".join(cell.split())
    if not value:
        return ""
    folded = value.casefold()
    for tag, (english, own) in _NAMES.items():
        if folded in (english.casefold(), own.casefold()):
            return normalise_tag(tag) or tag
    return normalise_tag(value) or value


def is_tag(value: str) -> bool:
    """Whether ``value`` (from ``reader_language``) is a language tag rather than text not understood."""
    return bool(value) and normalise_tag(value) == value
