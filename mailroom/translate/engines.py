"""Machine-translation engines behind one small interface.

An engine translates a batch of HTML snippets from English into one language and says which languages
it offers. Every failure becomes an ``EngineError`` whose message names the engine, what went wrong
and what the office can do about it; the translator adds the language and carries on with the others.

- DeepL through its official Python library (``deepl``), ``DEEPL_AUTH_KEY`` and, for a stand-in or a
  proxy, ``DEEPL_SERVER_URL`` (the library's ``server_url``).
- LibreTranslate, which a school or trust can host itself so the text never leaves its own server,
  through its documented HTTP API: ``POST /translate`` and ``GET /languages``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mailroom.errors import ConfigError
from mailroom.settings import TranslationSettings
from mailroom.translate.languages import primary

# The kinds of failure, each with its own advice.
AUTH = "auth"
QUOTA = "quota"
TIMEOUT = "timeout"
UNSUPPORTED = "unsupported"
UNREACHABLE = "unreachable"
FAILED = "failed"


class EngineError(Exception):
    """An engine could not translate. ``kind`` is one of the constants above; ``message`` is for office staff.

    ``affects_all`` is true when every other language would fail the same way (a bad key, no quota
    left, no answer), so the translator stops asking the engine for this compose.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message

    @property
    def affects_all(self) -> bool:
        return self.kind in (AUTH, QUOTA, TIMEOUT, UNREACHABLE)


@dataclass(frozen=True)
class Usage:
    """What the engine returned for one batch, and the characters it charged for."""

    texts: list[str]
    characters: int


class Engine(ABC):
    """Translate HTML snippets from English; every snippet comes back in the same order."""

    name: str  # for people: "DeepL"
    key: str  # for the cache: "deepl"

    def __init__(self) -> None:
        self._targets: dict[str, str] | None = None

    @abstractmethod
    def _fetch_targets(self) -> dict[str, str]:
        """The engine's target languages: lower-case code -> the code the engine wants."""

    @abstractmethod
    def _translate(self, snippets: Sequence[str], target_code: str) -> list[str]:
        """Translate ``snippets`` (HTML) into ``target_code``; raise ``EngineError``."""

    def target_code(self, tag: str) -> str:
        """The engine's code for ``tag`` (``pt-PT`` -> ``PT-PT``), or an ``EngineError`` if it does not offer it."""
        if self._targets is None:
            self._targets = self._fetch_targets()
        for candidate in _candidates(tag):
            if candidate in self._targets:
                return self._targets[candidate]
        raise EngineError(UNSUPPORTED, f"{self.name} does not translate into this language")

    def translate(self, snippets: Sequence[str], tag: str) -> list[str]:
        if not snippets:
            return []
        code = self.target_code(tag)
        texts = self._translate(list(snippets), code)
        if len(texts) != len(snippets):
            raise EngineError(FAILED, f"{self.name} sent back {len(texts)} pieces of text for {len(snippets)}")
        return texts


def _candidates(tag: str) -> list[str]:
    """``pt-PT`` -> [pt-pt, pt]; ``pt`` -> [pt, pt-pt] (Portugal's Portuguese, for UK families, first)."""
    low = tag.lower()
    out = [low]
    if primary(low) != low:
        out.append(primary(low))
    defaults = {"pt": ["pt-pt", "pt-br"], "zh": ["zh-hans", "zh"], "en": ["en-gb"], "no": ["nb"]}
    out.extend(defaults.get(low, []))
    return out


# --- DeepL ------------------------------------------------------------------------------------------

class DeepLEngine(Engine):
    """DeepL's v2 API through the ``deepl`` library, with HTML tag handling.

    Elements with ``translate="no"`` are left as they are by DeepL's HTML handling; ``ignore_tags``
    names the element mailroom wraps protected text in (``span``; formatting uses b, i, a) as a second guard.
    """

    name = "DeepL"
    key = "deepl"

    def __init__(self, settings: TranslationSettings) -> None:
        super().__init__()
        import deepl

        if not settings.deepl_auth_key:
            raise ConfigError("[translation] engine is \"deepl\", but DEEPL_AUTH_KEY is not set (put it in .env)")
        self._deepl = deepl
        deepl.http_client.min_connection_timeout = settings.timeout_seconds
        deepl.http_client.max_network_retries = settings.retries
        self.timeout = settings.timeout_seconds
        self._translator = deepl.Translator(settings.deepl_auth_key.reveal(),
                                            server_url=settings.deepl_server_url or None,
                                            send_platform_info=False)

    def _fetch_targets(self) -> dict[str, str]:
        languages = self._call(self._translator.get_target_languages)
        return {language.code.lower(): language.code for language in languages}

    def _translate(self, snippets: Sequence[str], target_code: str) -> list[str]:
        results = self._call(lambda: self._translator.translate_text(
            list(snippets), source_lang="EN", target_lang=target_code, tag_handling="html",
            ignore_tags=["span"], preserve_formatting=True))
        return [result.text for result in results]

    def _call(self, call: Callable[[], Any]) -> Any:
        deepl = self._deepl
        try:
            return call()
        except deepl.AuthorizationException:
            raise EngineError(AUTH, "DeepL did not accept the key (403): check DEEPL_AUTH_KEY in .env against "
                                    "the key on your DeepL account's API keys page") from None
        except deepl.QuotaExceededException:
            raise EngineError(QUOTA, "the DeepL account has used all the characters it may translate this "
                                     "month (456): raise the limit on the DeepL account, or wait for it to "
                                     "renew, then compose again") from None
        except deepl.ConnectionException as exc:
            if "timed out" in str(exc):
                raise EngineError(TIMEOUT, f"DeepL did not answer within {self.timeout:g} seconds: compose "
                                           "again in a few minutes") from None
            raise EngineError(UNREACHABLE, "could not connect to DeepL: check the internet connection (and "
                                           "DEEPL_SERVER_URL in .env, if set), then compose again") from None
        except deepl.DeepLException as exc:
            status = getattr(exc, "http_status_code", None)
            if status == 400 and "target_lang" in str(exc).lower():
                raise EngineError(UNSUPPORTED, "DeepL does not translate into this language") from None
            raise EngineError(FAILED, f"DeepL could not translate it ({exc})") from None


# --- LibreTranslate ---------------------------------------------------------------------------------

class LibreTranslateEngine(Engine):
    """A LibreTranslate server (``LIBRETRANSLATE_URL``, and ``LIBRETRANSLATE_API_KEY`` if it needs one)."""

    name = "LibreTranslate"
    key = "libretranslate"

    def __init__(self, settings: TranslationSettings) -> None:
        super().__init__()
        if not settings.libretranslate_url:
            raise ConfigError("[translation] engine is \"libretranslate\", but LIBRETRANSLATE_URL is not set "
                              "(put the address of the school's LibreTranslate server in .env)")
        self.url = settings.libretranslate_url.rstrip("/")
        self.api_key = settings.libretranslate_api_key
        self.timeout = settings.timeout_seconds

    def _fetch_targets(self) -> dict[str, str]:
        answer = self._request("GET", "/languages", None)
        targets: dict[str, str] = {}
        if isinstance(answer, list):
            for language in answer:
                if isinstance(language, dict) and language.get("code") == "en":
                    targets.update({str(t).lower(): str(t) for t in language.get("targets", [])})
            if not targets:  # servers before 1.3 list languages without targets
                targets = {str(lang.get("code", "")).lower(): str(lang.get("code", ""))
                           for lang in answer if isinstance(lang, dict)}
        targets.pop("en", None)
        return targets

    def _translate(self, snippets: Sequence[str], target_code: str) -> list[str]:
        body: dict[str, object] = {"q": list(snippets), "source": "en", "target": target_code, "format": "html"}
        if self.api_key:
            body["api_key"] = self.api_key.reveal()
        answer = self._request("POST", "/translate", body)
        texts = answer.get("translatedText") if isinstance(answer, dict) else None
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise EngineError(FAILED, "LibreTranslate's answer had no translated text in it")
        return texts

    def _request(self, method: str, path: str, body: dict[str, object] | None) -> object:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read().decode("utf-8") or "null")
        except urllib.error.HTTPError as exc:
            detail = _error_text(exc)
            if exc.code in (401, 403):
                raise EngineError(AUTH, f"LibreTranslate did not accept the key ({exc.code}): check "
                                        "LIBRETRANSLATE_API_KEY in .env") from None
            if exc.code == 429:
                raise EngineError(QUOTA, "the LibreTranslate server says too many requests (429): wait a few "
                                         "minutes, or ask whoever runs it to raise the key's limit") from None
            if exc.code == 400 and "not supported" in detail.lower():
                raise EngineError(UNSUPPORTED, "LibreTranslate does not translate into this language") from None
            raise EngineError(FAILED, f"LibreTranslate answered {exc.code}: {detail or exc.reason}") from None
        except TimeoutError:
            raise EngineError(TIMEOUT, f"LibreTranslate did not answer within {self.timeout:g} seconds: compose "
                                       "again in a few minutes, or check the server") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise EngineError(TIMEOUT, f"LibreTranslate did not answer within {self.timeout:g} seconds: "
                                           "compose again in a few minutes, or check the server") from None
            raise EngineError(UNREACHABLE, f"could not connect to LibreTranslate at {self.url} ({exc.reason}): "
                                           "check LIBRETRANSLATE_URL in .env and that the server is running") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise EngineError(FAILED, "LibreTranslate's answer was not JSON") from None


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        payload = json.loads(exc.read().decode("utf-8"))
    except (ValueError, OSError):
        return ""
    return str(payload.get("error", "")) if isinstance(payload, dict) else ""


ENGINES: dict[str, type[Engine]] = {"deepl": DeepLEngine, "libretranslate": LibreTranslateEngine}


def make_engine(settings: TranslationSettings) -> Engine:
    """The engine school.toml names (settings has already checked the name)."""
    return ENGINES[settings.engine](settings)  # type: ignore[call-arg]
