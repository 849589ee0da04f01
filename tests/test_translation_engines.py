"""The translation engines, the protection of links and tokens, and the cache, against the stand-ins.

DeepL is driven through the official ``deepl`` library pointed at the stand-in (``server_url``), so
what is tested is the library's own requests and error handling, not a copy of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mailroom.compose.content import markdown_parser
from mailroom.settings import Secret, TranslationSettings
from mailroom.translate import protect
from mailroom.translate.engines import AUTH, QUOTA, TIMEOUT, UNSUPPORTED, DeepLEngine, EngineError, LibreTranslateEngine
from mailroom.translate.languages import direction, normalise_tag, parse_tags
from tests.translation_standins import DeepLStandIn, LibreTranslateStandIn, fake_translate, fake_words

KEEP = ("Oakfield Primary School", "CEOP", "INSET")


def inline_children(markdown: str) -> list:
    tokens = markdown_parser().parse(markdown)
    return next(t for t in tokens if t.type == "inline").children


PARAGRAPH = ("Dear %%first_name%%, **report it** to [CEOP](https://www.ceop.police.uk/Safety-Centre/) or call "
             "[0800 1111](tel:08001111). Oakfield Primary School's INSET day: see www.oakfield.example.org/inset.")


def test_protected_items_come_back_from_a_well_behaved_engine() -> None:
    snippet = protect.encode_inline(inline_children(PARAGRAPH), protect.Protector(KEEP))
    assert "https://" not in snippet.html  # the engine never sees a link's address
    children = protect.decode_inline(fake_translate(snippet.html, "PL"), snippet)
    links = [c.attrs["href"] for c in children if c.type == "link_open"]
    # a bare www. address is a link too (compose links it), and comes back as its own address
    assert links == ["https://www.ceop.police.uk/Safety-Centre/", "tel:08001111", "https://www.oakfield.example.org/inset"]
    text = "".join(c.content for c in children if c.type == "text")
    for kept in ("%%first_name%%", "CEOP", "0800 1111", "Oakfield Primary School", "INSET",
                 "www.oakfield.example.org/inset"):
        assert kept in text
    assert "REPORT IT TO" in text and "dEAR" in text  # the rest was translated
    assert [c.type for c in children].count("strong_open") == 1


@pytest.mark.parametrize("markup", ["drop", "mangle"])
def test_an_engine_that_drops_or_mangles_markup_is_caught(markup: str) -> None:
    snippet = protect.encode_inline(inline_children(PARAGRAPH), protect.Protector(KEEP))
    with pytest.raises(protect.Lost, match="was lost") as caught:
        protect.decode_inline(fake_translate(snippet.html, "PL", markup), snippet)
    expected = "link to 'https://www.ceop.police.uk" if markup == "drop" else "personal field '%%first_name%%'"
    assert expected in str(caught.value)


def test_a_changed_phone_number_or_token_is_caught_even_when_the_markup_survives() -> None:
    snippet = protect.encode_text("Call 0800 1111 and quote %%recipient_id%%.", protect.Protector(KEEP))
    answer = fake_translate(snippet.html, "PL").replace("0800 1111", "0800 111")
    with pytest.raises(protect.Lost, match="phone number '0800 1111' was changed"):
        protect.decode_text(answer, snippet)
    answer = fake_translate(snippet.html, "PL").replace("%%recipient_id%%", "%%RECIPIENT_ID%%")
    with pytest.raises(protect.Lost, match="personal field '%%recipient_id%%'"):
        protect.decode_text(answer, snippet)


def test_kept_words_whose_markup_was_dropped_still_count_when_they_are_intact() -> None:
    snippet = protect.encode_text("Ring 0800 1111 today", protect.Protector(()))
    assert protect.decode_text("[PL] zADZWOŃ 0800 1111 DZIŚ", snippet) == "[PL] zADZWOŃ 0800 1111 DZIŚ"


def test_language_tags_as_schools_write_them() -> None:
    assert [normalise_tag(t) for t in ("PL", " ar ", "pt_pt", "zh-hans", "en-gb")] == ["pl", "ar", "pt-PT",
                                                                                        "zh-Hans", "en-GB"]
    assert normalise_tag("Polish!") is None
    assert [direction(t) for t in ("ar", "ur", "fa", "he", "pl", "ro")] == ["rtl"] * 4 + ["ltr"] * 2
    assert parse_tags("pl, AR;pl", "--language") == ["pl", "ar"]


# --- the engines through their stand-ins ---------------------------------------------------------

@pytest.fixture
def deepl_standin() -> Iterator[DeepLStandIn]:
    with DeepLStandIn() as standin:
        yield standin


@pytest.fixture
def libre_standin() -> Iterator[LibreTranslateStandIn]:
    with LibreTranslateStandIn() as standin:
        yield standin


# Engines answer the stand-ins in milliseconds; the timeout is short only where a test is about it (a busy
# machine can take longer than 0.2 s to answer).
ANSWER_WITHIN = 10.0


def deepl_settings(standin: DeepLStandIn, key: str | None = None, timeout: float = ANSWER_WITHIN
                   ) -> TranslationSettings:
    return TranslationSettings(engine="deepl", keep=KEEP, timeout_seconds=timeout, retries=0,
                               deepl_auth_key=Secret(key or standin.api_key), deepl_server_url=standin.url)


def libre_settings(standin: LibreTranslateStandIn, key: str | None = None, timeout: float = ANSWER_WITHIN
                   ) -> TranslationSettings:
    return TranslationSettings(engine="libretranslate", keep=KEEP, timeout_seconds=timeout, retries=0,
                               libretranslate_url=standin.url,
                               libretranslate_api_key=Secret(key or standin.api_key))


def test_deepl_through_the_official_library(deepl_standin: DeepLStandIn) -> None:
    engine = DeepLEngine(deepl_settings(deepl_standin))
    out = engine.translate(['Hello <span translate="no" class="notranslate" id="k1">CEOP</span>', "Bye"], "pl")
    assert out == ['[PL] hELLO <span translate="no" class="notranslate" id="k1">CEOP</span>', "[PL] bYE"]
    request = deepl_standin.requests[-1]
    assert request["target_lang"] == "PL" and request["source_lang"] == "EN" and request["tag_handling"] == "html"
    assert engine.target_code("pt") == "PT-PT" and engine.target_code("pt-BR") == "PT-BR"


def test_libretranslate_through_its_http_api(libre_standin: LibreTranslateStandIn) -> None:
    engine = LibreTranslateEngine(libre_settings(libre_standin))
    assert engine.translate(["Hello", "<b>Bye</b>"], "ur") == [f"[UR] {fake_words('Hello', 'ur')}",
                                                               f"[UR] <b>{fake_words('Bye', 'ur')}</b>"]
    assert fake_words("Hello", "ur") != "Hello"
    assert libre_standin.calls == 1  # one request for the batch


@pytest.mark.parametrize("which", ["deepl", "libretranslate"])
@pytest.mark.parametrize(("problem", "kind", "words"), [
    ("bad key", AUTH, "did not accept the key"),
    ("quota", QUOTA, ""),
    ("hang", TIMEOUT, "did not answer within 0.2 seconds"),
    ("refused", UNSUPPORTED, "does not translate into this language"),
])
def test_each_engine_failure_has_its_own_message(which: str, problem: str, kind: str, words: str,
                                                 deepl_standin: DeepLStandIn,
                                                 libre_standin: LibreTranslateStandIn) -> None:
    standin = deepl_standin if which == "deepl" else libre_standin
    key = "wrong-key" if problem == "bad key" else None
    timeout = 0.2 if problem == "hang" else ANSWER_WITHIN
    engine = (DeepLEngine(deepl_settings(deepl_standin, key, timeout)) if which == "deepl"
              else LibreTranslateEngine(libre_settings(libre_standin, key, timeout)))
    if problem == "quota":
        standin.status = 456 if which == "deepl" else 429
        words = "456" if which == "deepl" else "429"
    standin.hang = problem == "hang"
    if problem == "refused":
        standin.refuse = {"ar"}
    with pytest.raises(EngineError) as caught:
        engine.translate(["Hello"], "ar")
    assert caught.value.kind == kind
    assert words in caught.value.message
    assert "standin" not in caught.value.message and standin.api_key not in caught.value.message  # no secret shown


def test_the_cache_sends_each_snippet_once(tmp_path: Path, deepl_standin: DeepLStandIn) -> None:
    from mailroom.translate.cache import TranslationCache

    cache = TranslationCache(tmp_path / "t.sqlite3", "deepl", KEEP)
    cache.store("pl", {"<b>Hi</b>": "[PL] <b>hI</b>"})
    assert cache.lookup("pl", ["<b>Hi</b>", "other"]) == {"<b>Hi</b>": "[PL] <b>hI</b>"}
    assert cache.lookup("ar", ["<b>Hi</b>"]) == {}
    assert TranslationCache(tmp_path / "t.sqlite3", "deepl", (*KEEP, "NSPCC")).lookup("pl", ["<b>Hi</b>"]) == {}
    assert TranslationCache(tmp_path / "t.sqlite3", "libretranslate", KEEP).lookup("pl", ["<b>Hi</b>"]) == {}
