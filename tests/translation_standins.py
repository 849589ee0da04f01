"""Stand-ins on 127.0.0.1 for DeepL's v2 API and LibreTranslate's API, for tests and the benchmark.

Both make the same deterministic fake translation, so a test can tell translated text from English:
every snippet starts with the target's marker (``[PL] ``), Latin words have their case swapped
("Police" -> "pOLICE") and, for right-to-left targets, Latin letters become Arabic (or Hebrew) letters.
Like the real engines with HTML handling, they leave alone anything inside ``translate="no"`` or a
``notranslate`` class (and DeepL's ``ignore_tags``), and keep the markup as it came.

Each can be told to misbehave, the way engines do:

- ``markup = "drop"``: send back the words with every tag removed;
- ``markup = "mangle"``: drop the ``id`` of links and kept spans and translate what they hold;
- ``mangle_only``: misbehave only for snippets holding this text (one block, not the whole email);
- ``status = 403 / 456 / 429``: answer every request with that status (DeepL's 456: quota exceeded);
- ``hang = True``: never answer a translation (until the stand-in stops), so the client times out;
- ``refuse = {"ar"}``: not offer these target languages.

``calls`` counts translation requests, ``characters`` the characters of text sent, and ``texts``
keeps every snippet received, so a test can check that nobody's name or address was ever sent.
"""

from __future__ import annotations

import html
import json
import re
import threading
from collections.abc import Iterable
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

DEEPL_TARGETS = ["AR", "BG", "CS", "DA", "DE", "EL", "EN-GB", "EN-US", "ES", "ET", "FI", "FR", "HE", "HU", "ID",
                 "IT", "JA", "KO", "LT", "LV", "NB", "NL", "PL", "PT-BR", "PT-PT", "RO", "RU", "SK", "SL", "SV",
                 "TR", "UK", "ZH-HANS", "ZH-HANT"]
LIBRE_TARGETS = ["ar", "bn", "de", "es", "fa", "fr", "he", "it", "lt", "pl", "pt", "ro", "ru", "so", "tr", "uk",
                 "ur", "zh"]
RTL = {"ar", "he", "fa", "ur"}
_ARABIC = dict(zip("abcdefghijklmnopqrstuvwxyz", "ابتثجحخدذرزسشصضطظعغفقكلمنه", strict=False))
_HEBREW = dict(zip("abcdefghijklmnopqrstuvwxyz", "אבגדהוזחטיכלמנסעפצקרשתאבגד", strict=False))


def fake_words(text: str, target: str) -> str:
    """The fake translation of plain words into ``target`` (lower-case primary tag)."""
    if target in RTL:
        table = _HEBREW if target == "he" else _ARABIC
        return "".join(table.get(ch.lower(), ch) for ch in text)
    return text.swapcase()


class _FakeTranslator(HTMLParser):
    def __init__(self, target: str, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.target, self.markup = target, markup
        self.out: list[str] = []
        self.keep_depth = 0  # inside translate="no"
        self.stack: list[bool] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        keep = values.get("translate") == "no" or "notranslate" in (values.get("class") or "") or tag == "span"
        if tag != "br":
            self.stack.append(keep)
            self.keep_depth += keep
        if self.markup == "drop":
            return
        if self.markup == "mangle":
            attrs = [(k, v) for k, v in attrs if k not in ("id", "translate", "class", "href")]
        rendered = "".join(f' {k}="{html.escape(v or "", quote=True)}"' for k, v in attrs)
        self.out.append(f"<{tag}{rendered}>")

    def handle_endtag(self, tag: str) -> None:
        if tag == "br":
            return
        if self.stack:
            self.keep_depth -= self.stack.pop()
        if self.markup != "drop":
            self.out.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        keep = self.keep_depth > 0 and self.markup != "mangle"
        words = data if keep else fake_words(data, self.target)
        self.out.append(html.escape(words, quote=False))


def fake_translate(snippet: str, target: str, markup: str = "keep") -> str:
    """``snippet`` (HTML) translated by the stand-ins' rules."""
    primary = target.split("-")[0].lower()
    parser = _FakeTranslator(primary, markup)
    parser.feed(snippet)
    parser.close()
    return f"[{target.upper()}] " + "".join(parser.out)


class _StandIn:
    """What both stand-ins share: the server, the knobs and the counters."""

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.markup = "keep"
        self.mangle_only = ""
        self.status = 0
        self.hang = False
        self.refuse: set[str] = set()
        self.delay = 0.0  # seconds before answering a translation (the benchmark's stand-in for the network)
        self.calls = 0
        self.language_calls = 0
        self.characters = 0
        self.texts: list[str] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def reset_counts(self) -> None:
        with self._lock:
            self.calls = self.language_calls = self.characters = 0
            self.texts = []

    def __enter__(self) -> _StandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self.server.shutdown()
        self.server.server_close()

    def translate_all(self, texts: Iterable[str], target: str) -> list[str]:
        if self.delay:
            self._stopping.wait(self.delay)
        out = []
        for text in texts:
            with self._lock:
                self.texts.append(text)
                self.characters += len(html.unescape(_TAGS_RE.sub("", text)))
            misbehave = not self.mangle_only or self.mangle_only in text
            out.append(fake_translate(text, target, self.markup if misbehave else "keep"))
        return out

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _body(self) -> dict[str, Any]:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                query = {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}
                if not raw:
                    return query
                if "json" in (self.headers.get("Content-Type") or ""):
                    return query | json.loads(raw)
                return query | {k: (v if len(v) > 1 else v[0]) for k, v in parse_qs(raw.decode()).items()}

            def answer(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                stand_in.handle(self, "GET", urlsplit(self.path).path, self._body())

            def do_POST(self) -> None:
                stand_in.handle(self, "POST", urlsplit(self.path).path, self._body())

        return Handler

    def hold(self) -> None:
        """Hang: wait until the stand-in stops (the client gives up long before)."""
        self._stopping.wait()

    def handle(self, request: Any, method: str, path: str, body: dict[str, Any]) -> None:
        raise NotImplementedError


_TAGS_RE = re.compile(r"<[^>]+>")


class DeepLStandIn(_StandIn):
    """DeepL's v2 API: POST /v2/translate, GET /v2/languages?type=target, GET /v2/usage.

    Authentication as DeepL documents it: ``Authorization: DeepL-Auth-Key <key>``; any other key gets 403.
    """

    def __init__(self, api_key: str = "standin-key:fx") -> None:
        super().__init__(api_key)
        self.targets = list(DEEPL_TARGETS)
        self.requests: list[dict[str, Any]] = []

    def handle(self, request: Any, method: str, path: str, body: dict[str, Any]) -> None:
        if request.headers.get("Authorization") != f"DeepL-Auth-Key {self.api_key}" or self.status == 403:
            request.answer(403, {"message": "Wrong endpoint. Use https://api.deepl.com"})
            return
        if self.status:
            request.answer(self.status, {"message": "Quota Exceeded" if self.status == 456 else "error"})
            return
        if method == "GET" and path == "/v2/languages":
            with self._lock:
                self.language_calls += 1
            if body.get("type") != "target":
                request.answer(200, [{"language": "EN", "name": "English"}])
                return
            offered = [code for code in self.targets if code.lower() not in self.refuse
                       and code.split("-")[0].lower() not in self.refuse]
            request.answer(200, [{"language": code, "name": code, "supports_formality": False} for code in offered])
            return
        if method == "GET" and path == "/v2/usage":
            request.answer(200, {"character_count": self.characters, "character_limit": 500000})
            return
        if method == "POST" and path == "/v2/translate":
            self.requests.append(body)
            target = str(body.get("target_lang", ""))
            texts = body.get("text", [])
            texts = [texts] if isinstance(texts, str) else list(texts)
            if not target or target.lower() in self.refuse or target.split("-")[0].lower() in self.refuse:
                request.answer(400, {"message": "Value for 'target_lang' not supported."})
                return
            with self._lock:
                self.calls += 1
            if self.hang:
                self.hold()
                return
            translated = self.translate_all(texts, target)
            request.answer(200, {"translations": [
                {"detected_source_language": "EN", "text": t, "billed_characters": len(s)}
                for s, t in zip(texts, translated, strict=True)]})
            return
        request.answer(404, {"message": "Not found"})


class LibreTranslateStandIn(_StandIn):
    """LibreTranslate's API: POST /translate (q, source, target, format, api_key), GET /languages."""

    def __init__(self, api_key: str = "standin-libre-key") -> None:
        super().__init__(api_key)
        self.targets = list(LIBRE_TARGETS)

    def handle(self, request: Any, method: str, path: str, body: dict[str, Any]) -> None:
        if method == "GET" and path == "/languages":
            with self._lock:
                self.language_calls += 1
            offered = [code for code in self.targets if code not in self.refuse]
            request.answer(200, [{"code": "en", "name": "English", "targets": offered},
                                 *({"code": c, "name": c, "targets": ["en"]} for c in offered)])
            return
        if method == "POST" and path == "/translate":
            if (self.api_key and body.get("api_key") != self.api_key) or self.status == 403:
                request.answer(403, {"error": "Invalid API key"})
                return
            if self.status:
                request.answer(self.status, {"error": "Too many request limits violations"})
                return
            target = str(body.get("target", ""))
            if target not in self.targets or target in self.refuse:
                request.answer(400, {"error": f"{target} is not supported"})
                return
            with self._lock:
                self.calls += 1
            if self.hang:
                self.hold()
                return
            q = body.get("q", [])
            texts = [q] if isinstance(q, str) else list(q)
            translated = self.translate_all(texts, target)
            request.answer(200, {"translatedText": translated if isinstance(q, list) else translated[0]})
            return
        request.answer(404, {"error": "Not Found"})
