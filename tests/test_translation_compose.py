"""Translated versions end to end: compose.py against the DeepL and LibreTranslate stand-ins.

What a school relies on: each language's readers get a version with the right lang and dir, every link
and personal field survives whatever the engine does to the markup, the school's own translation is
used without asking an engine, nothing is translated twice, and a failing engine never stops compose.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailroom.compose.build import load_build
from mailroom.settings import load_settings
from mailroom.translate.own import fingerprint
from mailroom.workflows.compose import ComposeResult, compose_newsletter
from tests.projects import make_project
from tests.translation_standins import DeepLStandIn, LibreTranslateStandIn

ROOT = Path(__file__).resolve().parents[1]
TRANSLATION = '\n[translation]\nengine = "{engine}"\nkeep = ["CEOP", "INSET", "NSPCC", "Childline"]\n' \
              'timeout_seconds = 0.3\nretries = 0\n'


@pytest.fixture
def deepl() -> Iterator[DeepLStandIn]:
    with DeepLStandIn() as standin:
        yield standin


def project_with(tmp_path: Path, engine: str = "deepl") -> Path:
    folder = make_project(tmp_path / "project")
    toml = folder.parent.parent / "school.toml"
    toml.write_text(toml.read_text(encoding="utf-8") + TRANSLATION.format(engine=engine), encoding="utf-8")
    return folder


def env_for(standin: DeepLStandIn | LibreTranslateStandIn, root: Path) -> dict[str, str]:
    env = {"MAILROOM_TRANSLATION_CACHE": str(root / "translations.sqlite3")}
    if isinstance(standin, DeepLStandIn):
        return env | {"DEEPL_AUTH_KEY": standin.api_key, "DEEPL_SERVER_URL": standin.url}
    return env | {"LIBRETRANSLATE_URL": standin.url, "LIBRETRANSLATE_API_KEY": standin.api_key}


def compose_in_process(folder: Path, standin: DeepLStandIn | LibreTranslateStandIn, *languages: str
                       ) -> ComposeResult:
    root = folder.parent.parent
    return compose_newsletter(load_settings(root, environ=env_for(standin, root)), folder, languages=languages)


def compose_py(folder: Path, standin: DeepLStandIn, *args: str) -> subprocess.CompletedProcess[str]:
    root = folder.parent.parent
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **env_for(standin, root)}
    return subprocess.run([sys.executable, str(ROOT / "compose.py"), str(folder), *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)


def html_tag(html: str) -> str:
    match = re.match(r"(?:<!doctype html>)?\s*(<html[^>]*>)", html, re.IGNORECASE)
    assert match, html[:200]
    return match.group(1)


def test_polish_and_arabic_readers_get_their_own_versions(tmp_path: Path, deepl: DeepLStandIn) -> None:
    folder = project_with(tmp_path)
    english_only = compose_newsletter(load_settings(folder.parent.parent, environ={}),
                                      make_project(tmp_path / "english"))

    run = compose_py(folder, deepl, "--language", "pl,ar")
    assert run.returncode == 0, run.stderr
    assert "Polish (pl)" in run.stdout and "Arabic (ar)" in run.stdout
    sent = int(re.search(r"Characters sent to DeepL: ([\d,]+)", run.stdout).group(1).replace(",", ""))
    assert sent == deepl.characters > 0

    build = load_build(folder, folder.parent.parent)
    assert set(build.versions) == {"parents", "staff", "parents.pl", "staff.pl", "parents.ar", "staff.ar",
                                   # people on both lists: the combined version, in each language too
                                   "parents+staff", "parents+staff.pl", "parents+staff.ar"}
    for slug, english in english_only.build.versions.items():
        # English readers are untouched: the same bytes as a compose with no translation at all.
        assert build.versions[slug].html() == english.html() and build.versions[slug].text() == english.text()
        assert 'lang="en-GB" dir="ltr"' in html_tag(english.html())
    for language, direction in (("pl", "ltr"), ("ar", "rtl")):
        for audience in ("parents", "staff"):
            version = build.versions[f"{audience}.{language}"]
            english = build.versions[audience]
            html = version.html()
            assert f'lang="{language}" dir="{direction}"' in html_tag(html)
            assert version.language == language
            assert version.subject.startswith(f"[{language.upper()}] ")
            # Every link and personal field of the English is there, the unsubscribe link included; the
            # greeting is the list's own, in the reader's language, for everyone.
            assert version.links == english.links
            assert set(version.tokens) == set(english.tokens) - {"greeting"}
            assert "%%unsubscribe_url%%" in html and "%%unsubscribe_url%%" in version.text()
            assert "translation-notice" in html and "translation-notice" not in english.html()
    assert 'align="right"' in build.versions["parents.ar"].html() or "text-align:right" in \
        build.versions["parents.ar"].html().replace(" ", "")
    manifest = json.loads((build.build_dir / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["translations"]["pl"]["source"] == "machine"

    # Nothing changed: nothing is sent, not even the question of which languages DeepL offers.
    deepl.reset_counts()
    again = compose_py(folder, deepl, "--language", "pl,ar")
    assert again.returncode == 0, again.stderr
    assert (deepl.calls, deepl.language_calls) == (0, 0)
    assert "Characters sent to DeepL: 0" in again.stdout and "all from the cache, nothing sent" in again.stdout

    # A small edit: only the paragraph that changed goes to the engine, once per language.
    source = folder / "newsletter.md"
    source.write_text(source.read_text(encoding="utf-8").replace(
        "Thank you for helping us", "Thank you very much for helping us"), encoding="utf-8")
    deepl.reset_counts()
    compose_in_process(folder, deepl, "pl", "ar")  # the cache on disk was already shown to outlive a process
    assert deepl.calls == 2 and len(deepl.texts) == 2
    assert all("Thank you very much" in text for text in deepl.texts)


def test_nothing_personal_goes_to_the_engine(tmp_path: Path, deepl: DeepLStandIn) -> None:
    folder = project_with(tmp_path)
    compose_in_process(folder, deepl, "pl")
    sent = "\n".join(deepl.texts)
    people = (ROOT / "audiences.csv").read_text(encoding="utf-8").splitlines()[1:]
    for row in people:
        email, first, last = row.split(",")[:3]
        assert email not in sent and f"{first} {last}" not in sent


@pytest.mark.parametrize("markup", ["drop", "mangle"])
def test_links_and_tokens_survive_an_engine_that_breaks_markup(tmp_path: Path, deepl: DeepLStandIn,
                                                               markup: str) -> None:
    folder = project_with(tmp_path)
    deepl.markup = markup
    result = compose_in_process(folder, deepl, "pl")
    build = result.build
    for audience in ("parents", "staff"):
        assert build.versions[f"{audience}.pl"].links == build.versions[audience].links
        assert set(build.versions[f"{audience}.pl"].tokens) == set(build.versions[audience].tokens) - {"greeting"}
    kept = [f for f in result.findings if f.code == "translation-kept-english"]
    assert kept, "the blocks with links should have been kept in English"
    for finding in kept:
        assert finding.message.startswith("Polish (pl): ") and "kept in English" in finding.message
    lines = {f.source_line for f in kept if f.source_line}
    assert lines  # each named by its line in newsletter.md
    html = build.versions["parents.pl"].html()
    assert "If a child tells you" in html  # the text with links and phone numbers stayed English
    assert "Read INEQE" not in html  # a button's address is never sent, so its label is translated
    if markup == "drop":
        assert "[PL] wHAT IS" in html  # a heading with nothing to protect was still translated


def test_only_the_block_that_lost_something_falls_back(tmp_path: Path, deepl: DeepLStandIn) -> None:
    folder = project_with(tmp_path)
    deepl.markup, deepl.mangle_only = "mangle", "0800 1111"
    result = compose_in_process(folder, deepl, "ar")
    kept = [f for f in result.findings if f.code == "translation-kept-english"]
    assert len(kept) == 1
    newsletter_lines = (folder / "newsletter.md").read_text(encoding="utf-8").splitlines()
    assert newsletter_lines[kept[0].source_line - 1] == "## If it happens: where to get help"
    html = result.build.versions["parents.ar"].html()
    assert "tel:08001111" in html and "If a child tells you" in html  # that block in English, intact
    assert "Safeguarding alert" not in html  # the rest translated


def write_romanian(folder: Path, *, translated_from: str | None) -> Path:
    english = (folder / "newsletter.md").read_text(encoding="utf-8")
    romanian = english.replace("subject: Online safety: sextortion and the rise of AI",
                               "subject: Siguranța online: sextorsiunea și ascensiunea IA")
    romanian = romanian.replace("Thank you for helping us to keep our children safe online.",
                                "Vă mulțumim că ne ajutați să ne păstrăm copiii în siguranță online.")
    if translated_from:
        romanian = romanian.replace("campaign: online-safety-2024-11",
                                    f"campaign: online-safety-2024-11\ntranslated_from: {translated_from}")
    path = folder / "newsletter.ro.md"
    path.write_text(romanian, encoding="utf-8")
    return path


def test_the_schools_own_translation_is_used_without_the_engine(tmp_path: Path, deepl: DeepLStandIn) -> None:
    folder = project_with(tmp_path)
    romanian = write_romanian(folder, translated_from=fingerprint(folder / "newsletter.md"))
    result = compose_in_process(folder, deepl)
    assert (deepl.calls, deepl.language_calls) == (0, 0)
    version = result.build.versions["parents.ro"]
    html = version.html()
    assert 'lang="ro" dir="ltr"' in html_tag(html)
    assert "Vă mulțumim că ne ajutați" in html and "translation-notice" not in html
    assert version.subject == "Siguranța online: sextorsiunea și ascensiunea IA"
    assert not [f for f in result.findings if f.code.startswith("own-translation")]

    # The Romanian loses a link, and the English is edited: both are warned about.
    romanian.write_text(romanian.read_text(encoding="utf-8").replace(
        "[Report Remove](https://www.childline.org.uk/info-advice/bullying-abuse-safety/online-mobile-safety/"
        "remove-nude-image-shared-online/)", "Report Remove"), encoding="utf-8")
    source = folder / "newsletter.md"
    source.write_text(source.read_text(encoding="utf-8").replace("Mrs J. Example", "Mrs J. Example-Smith"),
                      encoding="utf-8")
    result = compose_in_process(folder, deepl)
    messages = [f.message for f in result.findings if f.code == "own-translation-mismatch"]
    assert any("newsletter.ro.md has lost the link to https://www.childline.org.uk" in m for m in messages)
    assert any("newsletter.md has been edited since newsletter.ro.md was translated" in m
               and fingerprint(source) in m for m in messages)
    assert deepl.calls == 0


def test_a_translation_without_translated_from_is_asked_for_it(tmp_path: Path, deepl: DeepLStandIn) -> None:
    folder = project_with(tmp_path)
    write_romanian(folder, translated_from=None)
    result = compose_in_process(folder, deepl)
    expected = f"add 'translated_from: {fingerprint(folder / 'newsletter.md')}'"
    assert any(expected in f.message for f in result.findings)


@pytest.mark.parametrize(("problem", "words"), [
    ("bad key", "DeepL did not accept the key (403): check DEEPL_AUTH_KEY in .env"),
    ("quota", "used all the characters it may translate this month (456)"),
    ("timeout", "DeepL did not answer within 0.3 seconds"),
    ("unsupported", "DeepL does not translate into this language. Its readers get the English version; to send "
                    "them their own, add the school's translation as newsletter.pl.md"),
])
def test_engine_failures_leave_english_for_that_language(tmp_path: Path, deepl: DeepLStandIn, problem: str,
                                                         words: str) -> None:
    folder = project_with(tmp_path)
    deepl.status = {"quota": 456}.get(problem, 0)
    deepl.hang = problem == "timeout"
    deepl.refuse = {"pl"} if problem == "unsupported" else set()
    root = folder.parent.parent
    env = env_for(deepl, root) | ({"DEEPL_AUTH_KEY": "wrong:fx"} if problem == "bad key" else {})
    result = compose_newsletter(load_settings(root, environ=env), folder, languages=["pl"])
    assert set(result.build.versions) == {"parents", "staff", "parents+staff"}  # compose still succeeds
    failed = [f for f in result.findings if f.code == "translation-failed"]
    assert len(failed) == 1 and failed[0].message.startswith("Polish (pl): ")
    assert words in failed[0].message


def test_libretranslate_makes_an_urdu_version_right_to_left(tmp_path: Path) -> None:
    folder = project_with(tmp_path, engine="libretranslate")
    with LibreTranslateStandIn() as libre:
        result = compose_in_process(folder, libre, "ur")
        assert libre.calls == 1
    html = result.build.versions["parents.ur"].html()
    assert 'lang="ur" dir="rtl"' in html_tag(html)
    assert result.build.versions["parents.ur"].links == result.build.versions["parents"].links


def test_the_live_preview_watches_the_schools_translations(tmp_path: Path) -> None:
    from mailroom.servers.live_preview import Watcher

    folder = project_with(tmp_path)
    write_romanian(folder, translated_from=None)
    watcher = Watcher(folder, folder.parent.parent, environ={})
    assert folder / "newsletter.ro.md" in watcher.watched_files()
