"""Every version of the sample checked by tools we did not write, as a mail client or a spam filter would:

- html-validate (npm, "recommended" rules): zero findings beyond the email idioms on
  tests/validators/html-validate-allowlist.json, each with its reason;
- Can I Email's data (npm doiuse-email) for Gmail, Outlook for Windows, Outlook.com, Apple Mail on iOS and
  Yahoo: each unsupported feature is on tests/validators/can-i-email-allowlist.json with its fallback;
- SpamAssassin (Debian's, local rules only, no network tests) on the .eml files a test send puts in the
  outbox: a score of 0.0 or less for each version.

To stay fast the validators run once for the module: one node process over all the files and one
SpamAssassin process over all the messages (as an mbox), started together. Each run also carries a
known-bad document, so a tool that silently stopped working would fail the tests instead of passing them.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from email.message import EmailMessage
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest

from mailroom.preview.page import PREVIEW_UNSUBSCRIBE, sample_document
from tests.projects import project_settings
from tests.send_project import SAMPLE, environ, send_project, send_py

REPO = Path(__file__).resolve().parent.parent
VALIDATORS = REPO / "tests" / "validators"
NODE_MODULES = REPO / ".venv" / "node_modules"
HTML_ALLOWED = json.loads((VALIDATORS / "html-validate-allowlist.json").read_text(encoding="utf-8"))["allowed"]
CAN_I_EMAIL = json.loads((VALIDATORS / "can-i-email-allowlist.json").read_text(encoding="utf-8"))
AUDIENCES = ("parents", "staff", "parents+staff")  # parents+staff: someone on both lists
DOCUMENTS = (*AUDIENCES, "web")
MAX_SPAM_SCORE = 0.0
LABEL = "X-Mailroom-Check"
UNSUBSCRIBE = "https://www.oakfield.example.org/newsletter/unsubscribe?r=r0000000000001"  # as send fills it in

# A document with real mistakes, checked in the same run: the validators must find them.
BAD_HTML = ('<!DOCTYPE html><html lang="en"><head><title>Bad</title></head><body>'
            '<img src="a.png"><p id="x">one</p><p id="x">two<div style="position:fixed">fixed</div></body></html>')


@dataclass
class Checked:
    """What the tools said about each document (key: audience, "web" or "bad") and each sent message."""

    html: dict[str, dict[str, Any]]
    spam: dict[str, tuple[float, list[str]]]


def _need(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        pytest.fail(f"{tool} is not installed: scripts/test installs it (apt-get install spamassassin nodejs)")
    return found


def _mbox(messages: dict[str, bytes]) -> bytes:
    """Messages as one mbox (From_ lines, ">From " quoting), so one SpamAssassin process scores them all.
    SpamAssassin may reorder an mbox (by date), so each message is labelled with a header of ours."""
    out = bytearray()
    for key, raw in messages.items():
        body = f"{LABEL}: {key}\n".encode() + raw.replace(b"\r\n", b"\n")
        body = re.sub(rb"(?m)^From ", b">From ", body)
        out += f"From {key}@mailroom.invalid Thu Jan  1 00:00:00 1970\n".encode() + body + b"\n"
    return bytes(out)


def _scores(output: bytes) -> dict[str, tuple[float, list[str]]]:
    """Each labelled message's score and the rules that fired, from SpamAssassin's X-Spam-Status headers."""
    scores = {}
    for message in re.split(rb"(?m)^From ", output):
        label = re.search(rf"^{LABEL}: (\S+)".encode(), message, re.M)
        status = re.search(rb"^X-Spam-Status: (?:Yes|No), score=(-?[\d.]+) .*?tests=(.*?)\s+autolearn=",
                           message, re.M | re.S)
        if label and status:
            tests = re.sub(rb"\s+", b"", status.group(2)).decode().split(",")
            scores[label.group(1).decode()] = (float(status.group(1)), tests)
    return scores


def _with_low_contrast_preheader(raw: bytes) -> bytes:
    """The message with the preheader MJML writes (white text on the grey page): the known-bad canary."""
    message: EmailMessage = email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[assignment]
    html_part = message.get_body(preferencelist=("html",))
    assert html_part is not None
    html = html_part.get_content()
    html = html.replace('<div class="preheader" style="display:none;',
                        '<div class="preheader" style="display:none;color:#ffffff;', 1)
    html_part.set_content(html, subtype="html", cte="quoted-printable")
    return message.as_bytes()


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> Checked:
    node, spamassassin = _need("node"), _need("spamassassin")
    for package in ("html-validate", "doiuse-email"):
        if not (NODE_MODULES / package).is_dir():
            pytest.fail(f"npm package {package} is missing from {NODE_MODULES}: run scripts/test")
    project = send_project(tmp_path_factory.mktemp("validators") / "school")
    build = project / "newsletters" / SAMPLE / "build"
    manifest = json.loads((build / "manifest.json").read_text(encoding="utf-8"))
    settings = project_settings(project)

    # The HTML each reader gets (tokens filled in), and the web copy as published.
    pages = tmp_path_factory.mktemp("pages")
    files = {}
    for audience in AUDIENCES:
        files[audience] = pages / f"{audience}.html"
        tokens_html = (build / manifest["versions"][audience]["html"]).read_text(encoding="utf-8")
        reader_html = sample_document(settings, audience, tokens_html).replace(PREVIEW_UNSUBSCRIBE, UNSUBSCRIBE)
        files[audience].write_text(reader_html, encoding="utf-8")
    files["web"] = build / "web.html"
    files["bad"] = pages / "bad.html"
    files["bad"].write_text(BAD_HTML, encoding="utf-8")

    # A test send through send.py puts one .eml per version in the outbox.
    sent = send_py(project, f"newsletters/{SAMPLE}", "--to", "parents,staff", "--test",
                   "office@oakfield.example.org", env=environ(project))
    assert sent.returncode == 0, sent.stderr
    messages = {}
    for audience in AUDIENCES:
        found = sorted((project / "outbox" / SAMPLE).glob(f"test-{audience.replace('+', '_')}-*.eml"))
        assert len(found) == 1, found
        messages[audience] = found[0].read_bytes()
    messages["low-contrast"] = _with_low_contrast_preheader(messages["parents"])
    mbox = tmp_path_factory.mktemp("spam") / "sent.mbox"
    mbox.write_bytes(_mbox(messages))

    # Both tools at once: SpamAssassin (local tests only: -L) and one node process for the HTML validators.
    prefs = mbox.with_name("user_prefs")
    prefs.write_text("", encoding="utf-8")
    with mbox.open("rb") as stdin:
        spam_run = subprocess.Popen([spamassassin, "--mbox", "-L", "-p", str(prefs)], stdin=stdin,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        node_run = subprocess.run(
            [node, str(VALIDATORS / "check_email_html.cjs"), str(NODE_MODULES), ",".join(CAN_I_EMAIL["clients"]),
             *map(str, files.values())], capture_output=True, text=True, timeout=120, check=False)
        spam_out, spam_err = spam_run.communicate(timeout=120)
    assert node_run.returncode == 0, node_run.stderr
    assert spam_run.returncode == 0, spam_err.decode(errors="replace")
    report = json.loads(node_run.stdout)
    html = {key: report[str(path)] for key, path in files.items()}

    spam = _scores(spam_out)
    assert set(spam) == set(messages), spam_out[:2000]
    return Checked(html=html, spam=spam)


def _html_allowed(finding: dict[str, Any]) -> bool:
    return any(entry["rule"] == finding["rule"] and re.search(entry["match"], finding["message"])
               for entry in HTML_ALLOWED)


def _client_allowed(feature: str, client: str) -> bool:
    entry = CAN_I_EMAIL["allowed"].get(feature)
    return entry is not None and client in entry["clients"]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_html_validate_finds_nothing_but_the_allowed_email_idioms(checked: Checked, document: str) -> None:
    others = [f"line {f['line']}: {f['rule']}: {f['message']} ({f['selector']})"
              for f in checked.html[document]["html_validate"] if not _html_allowed(f)]
    assert others == []


def test_every_html_validate_allowance_is_still_needed(checked: Checked) -> None:
    found = [f for document in DOCUMENTS for f in checked.html[document]["html_validate"]]
    unused = [entry["match"] for entry in HTML_ALLOWED
              if not any(f["rule"] == entry["rule"] and re.search(entry["match"], f["message"]) for f in found)]
    assert unused == []
    assert all(len(entry["reason"]) > 40 for entry in HTML_ALLOWED)


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_feature_a_client_lacks_has_a_fallback(checked: Checked, document: str) -> None:
    missing = sorted({f"{u['feature']} in {u['client']}" for u in checked.html[document]["can_i_email"]
                      if not _client_allowed(u["feature"], u["client"])})
    assert missing == []


def test_every_can_i_email_allowance_is_still_needed(checked: Checked) -> None:
    found = {(u["feature"], u["client"]) for document in DOCUMENTS for u in checked.html[document]["can_i_email"]}
    unused = [f"{feature} in {client}" for feature, entry in CAN_I_EMAIL["allowed"].items()
              for client in entry["clients"] if (feature, client) not in found]
    assert unused == []
    for entry in CAN_I_EMAIL["allowed"].values():
        assert len(entry["fallback"]) > 40
        assert all(any(fnmatch(client, pattern) for pattern in CAN_I_EMAIL["clients"]) for client in entry["clients"])


def test_the_validators_find_real_mistakes(checked: Checked) -> None:
    rules = {f["rule"] for f in checked.html["bad"]["html_validate"]}
    assert {"no-dup-id", "wcag/h37"} <= rules  # a repeated id, an image with no alt text
    assert any(u["feature"] == "position" for u in checked.html["bad"]["can_i_email"])


@pytest.mark.parametrize("audience", AUDIENCES)
def test_spamassassin_scores_the_sent_email_at_zero_or_less(checked: Checked, audience: str) -> None:
    score, tests = checked.spam[audience]
    assert score <= MAX_SPAM_SCORE, tests
    assert "HTML_FONT_LOW_CONTRAST" not in tests


def test_spamassassin_still_catches_a_preheader_hidden_by_colour(checked: Checked) -> None:
    """The preheader MJML writes (white on the grey page) is what scored 0.7 before; the rule still fires."""
    score, tests = checked.spam["low-contrast"]
    assert "HTML_FONT_LOW_CONTRAST" in tests and score > MAX_SPAM_SCORE
