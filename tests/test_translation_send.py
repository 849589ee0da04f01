"""Readers' languages end to end: audiences.csv's language column -> compose.py -> send.py -> the outbox.

Against the DeepL stand-in (which, like DeepL, does not offer Urdu): Polish and Arabic readers get their
versions, the Urdu reader and one whose language is not recognised get English and the plan says so,
English readers are untouched, and --test sends every version or those chosen with --language.
"""

from __future__ import annotations

import email
import email.policy
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.projects import make_project
from tests.send_project import ROOT, run_send, send_py
from tests.translation_standins import DeepLStandIn

PEOPLE = """email,first_name,last_name,lists,status,Home Language
amelia.hughes@example.org,Amelia,Hughes,parents,subscribed,
katarzyna.nowak@example.org,Katarzyna,Nowak,parents,subscribed,Polish
tomasz.wisniewski@example.com,Tomasz,Wiśniewski,parents,subscribed,pl
layla.haddad@example.org,Layla,Haddad,parents,subscribed,AR
imran.qureshi@example.com,Imran,Qureshi,parents,subscribed,ur
sam.rivers@example.org,Sam,Rivers,parents,subscribed,Klingon
julia.morgan@example.org,Julia,Morgan,staff,subscribed,
marek.kowalski@example.org,Marek,Kowalski,parents;staff,subscribed,Polish
"""


@pytest.fixture(scope="module")
def composed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, subprocess.CompletedProcess[str],
                                                                         list[str]]]:
    """The sample with PEOPLE, composed once by compose.py against the DeepL stand-in."""
    folder = make_project(tmp_path_factory.mktemp("languages") / "school")
    root = folder.parent.parent
    (root / "audiences.csv").write_text(PEOPLE, encoding="utf-8")
    toml = root / "school.toml"
    toml.write_text(toml.read_text(encoding="utf-8").replace('status = "status"', 'status = "status"\n'
                    'language = "Home Language"') + '\n[translation]\nengine = "deepl"\nretries = 0\n',
                    encoding="utf-8")
    with DeepLStandIn() as deepl:
        run = compose_py(root, {"DEEPL_AUTH_KEY": deepl.api_key, "DEEPL_SERVER_URL": deepl.url,
                                "MAILROOM_TRANSLATION_CACHE": str(root / "translations.sqlite3")})
        yield root, run, list(deepl.texts)


@pytest.fixture
def project(composed: tuple[Path, subprocess.CompletedProcess[str], list[str]], tmp_path: Path
            ) -> tuple[Path, dict[str, str]]:
    """A fresh copy of the composed project (its own ledger and outbox) for one test."""
    root = tmp_path / "school"
    shutil.copytree(composed[0], root)
    env = {"MAILROOM_TRANSPORT": "outbox", "MAILROOM_DB": str(root / "mailroom.sqlite3"),
           "MAILROOM_OUTBOX": str(root / "outbox")}
    return root, env


def compose_py(root: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "COLUMNS": "200", **env}
    return subprocess.run([sys.executable, str(ROOT / "compose.py"), "newsletters/2024-11-08-online-safety"],
                          cwd=root, env=full, capture_output=True, text=True, timeout=120)


def outbox(root: Path) -> dict[str, EmailMessage]:
    found = {}
    for path in sorted((root / "outbox").rglob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        found[str(message["To"])] = message
    return found


def html_of(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return part.get_content()


def test_each_reader_gets_their_language(composed: tuple[Path, subprocess.CompletedProcess[str], list[str]],
                                         project: tuple[Path, dict[str, str]]) -> None:
    _, run, texts = composed
    assert run.returncode == 0, run.stderr
    assert "Polish (pl)" in run.stdout and "Arabic (ar)" in run.stdout
    assert re.search(r"Urdu \(ur\) +not made: its readers get the English version", run.stdout)
    assert "Urdu (ur): DeepL does not translate into this language" in run.stdout
    sent_text = "\n".join(texts)
    for person in PEOPLE.splitlines()[1:]:
        address, first, last = person.split(",")[:3]
        assert f"{first} {last}" not in sent_text
        assert address not in sent_text and last not in sent_text  # nobody's data went to the engine

    root, env = project
    run = send_py(root, "newsletters/2024-11-08-online-safety", "--to", "parents,staff", "--yes", "--untested",
                  env=env)
    assert run.returncode == 0, run.stderr + run.stdout
    assert "Languages: English 4, Arabic (ar) 1, Polish (pl) 3" in run.stdout
    assert "To send now, per version: parents 3, staff 1, parents.ar 1, parents.pl 2, parents+staff.pl 1" in run.stdout
    assert "1 reader of Urdu (ur) get the English version" in run.stdout
    assert "1 reader get the English version because their language, 'Klingon', is not one" in run.stdout

    mail = outbox(root)
    assert len(mail) == 8
    # a Polish reader on both lists: the combined version, in Polish, both lists' sections
    marek = mail["Marek Kowalski <marek.kowalski@example.org>"]
    assert '<html lang="pl" dir="ltr"' in html_of(marek)
    text = marek.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    words = text.casefold()  # the stand-in "translates" by swapping case
    assert "for parents and carers" in words and "for education and safeguarding professionals" in words
    assert text.count("[PL] ") > 10  # translated throughout
    for who in ("Katarzyna Nowak <katarzyna.nowak@example.org>", "Tomasz Wiśniewski <tomasz.wisniewski@example.com>"):
        html = html_of(mail[who])
        assert '<html lang="pl" dir="ltr"' in html and str(mail[who]["Subject"]).startswith("[PL] ")
        assert "https://www.oakfield.example.org/newsletter/unsubscribe?r=" in html  # their own unsubscribe link
    arabic = html_of(mail["Layla Haddad <layla.haddad@example.org>"])
    assert '<html lang="ar" dir="rtl"' in arabic
    for who in ("Amelia Hughes <amelia.hughes@example.org>", "Imran Qureshi <imran.qureshi@example.com>",
                "Sam Rivers <sam.rivers@example.org>", "Julia Morgan <julia.morgan@example.org>"):
        html = html_of(mail[who])
        assert '<html lang="en-GB" dir="ltr"' in html and not str(mail[who]["Subject"]).startswith("[")
    assert "Dear Amelia" in html_of(mail["Amelia Hughes <amelia.hughes@example.org>"])


def test_test_sends_every_version_or_the_chosen_languages(project: tuple[Path, dict[str, str]]) -> None:
    root, env = project
    run = run_send(root, "newsletters/2024-11-08-online-safety", "--to", "parents", "--test",
                  "office@oakfield.example.org", env=env)
    assert run.returncode == 0, run.stderr
    assert "Sending a test copy of parents, parents.ar, parents.pl to office@oakfield.example.org" in run.stdout
    files = sorted((root / "outbox").rglob("*.eml"))
    subjects = sorted(str(email.message_from_bytes(p.read_bytes(), policy=email.policy.default)["Subject"])
                      for p in files)
    assert len(subjects) == 3 and all(s.startswith("[TEST] ") for s in subjects)
    assert sum("[TEST] [AR] " in s for s in subjects) == 1 and sum("[TEST] [PL] " in s for s in subjects) == 1

    for path in files:
        path.unlink()
    run = run_send(root, "newsletters/2024-11-08-online-safety", "--to", "parents", "--test",
                  "office@oakfield.example.org", "--language", "pl", env=env)
    assert run.returncode == 0, run.stderr
    assert "Sending a test copy of parents.pl to" in run.stdout
    assert len(list((root / "outbox").rglob("*.eml"))) == 1
    run = run_send(root, "newsletters/2024-11-08-online-safety", "--to", "parents", "--test",
                  "office@oakfield.example.org", "--language", "ro", env=env)
    assert run.returncode == 2 and "this build has no version in ro for parents" in run.stderr
