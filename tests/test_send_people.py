"""Issue 12's people cases end to end, through send.py as the office runs it: hostile names and
subjects stay literal text, one person's bad data never stops the others, every spelling of an
address is one person, accented mailbox names are decided per transport before anything goes, and
limits and sign-in problems are plain messages. Outbox files, aiosmtpd and the SendGrid stand-in."""

from __future__ import annotations

import base64
import email
import email.header
import email.policy
import json
import sqlite3
import unicodedata
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailroom.send.ledger import Ledger
from tests.send_project import SAMPLE, environ, run_send, send_project, send_py, write_audiences, write_build
from tests.smtp_server import Authenticator, ScriptedHandler, start_server

# A first name that is an RFC 2047 encoded word decoding to a line break and a Bcc header (issue 12).
EVIL_NAME = "=?utf-8?b?" + base64.b64encode(b"Amelia\r\nBcc: attacker@example.net").decode() + "?="
EVIL_SUBJECT = "=?utf-8?q?Hi=0D=0AReply-To=3A_attacker=40evil.example?="
USERNAME, PASSWORD = "office@oakfield.example.org", "Gänseblümchen-Paßwort-№7"


def eleven_with_the_encoded_name_sixth() -> list[tuple[str, str, str, str]]:
    rows = [(f"parent{i:02d}@example.org", f"Pat{i}", "Example", "parents") for i in range(11)]
    rows[5] = ("amelia@example.org", EVIL_NAME, "Hughes", "parents")
    return rows


@pytest.fixture(scope="module")
def composed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return send_project(tmp_path_factory.mktemp("people") / "school")


@pytest.fixture
def project(composed: Path, tmp_path: Path) -> Path:
    """A fresh copy of the composed project (its own ledger and outbox)."""
    import shutil

    return Path(shutil.copytree(composed, tmp_path / "school", symlinks=True))


@pytest.fixture
def smtp() -> Iterator[tuple[ScriptedHandler, int]]:
    handler = ScriptedHandler()
    controller = start_server(handler)
    yield handler, int(controller.port)
    controller.stop()


def smtp_env(project: Path, port: int, **extra: str) -> dict[str, str]:
    return {**environ(project), "MAILROOM_TRANSPORT": "smtp", "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port),
            "SMTP_SECURITY": "none", **extra}


def send(project: Path, env: dict[str, str], *more: str, process: bool = False):
    """A live send to parents: in this process, or with ``process`` as send.py itself (where what crosses
    into a real process matters: the environment's encoding, the real stdout)."""
    run = send_py if process else run_send
    return run(project, f"newsletters/{SAMPLE}", "--to", "parents", "--yes", "--untested", *more, env=env)


def outbox_messages(project: Path) -> list[EmailMessage]:
    folder = project / "outbox" / SAMPLE
    return [email.message_from_string(p.read_bytes().decode("utf-8"), policy=email.policy.SMTPUTF8)  # type: ignore[misc]
            for p in sorted(folder.glob("*.eml"))]


def head(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0]


def rfc2047_header(raw: bytes, name: str) -> str:
    """The named header's value unfolded and decoded strictly as RFC 2047 says (one pass, nothing more)."""
    unfolded = head(raw).decode("utf-8").replace("\r\n ", " ").split("\r\n")
    (value,) = [line.split(":", 1)[1].strip() for line in unfolded if line.lower().startswith(name.lower() + ":")]
    return str(email.header.make_header(email.header.decode_header(value)))


def ledger_states(project: Path) -> dict[str, str]:
    """Each person's state as the ledger reads it (those of a batch still in flight: in flight)."""
    with Ledger(project / "mailroom.sqlite3") as ledger:
        keys = [key for (key,) in ledger.conn.execute("SELECT address_key FROM sends WHERE newsletter = ?", (SAMPLE,))]
        return {key: str(row.state) for key, row in ledger.states(SAMPLE, keys).items()}


# --- 5. no data can become a header -------------------------------------------------------------------

def test_encoded_word_name_sixth_of_eleven_over_the_outbox(project: Path) -> None:
    write_audiences(project / "audiences.csv", eleven_with_the_encoded_name_sixth())
    run = send(project, environ(project), process=True)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    messages = outbox_messages(project)
    assert sorted(m["To"].addresses[0].addr_spec for m in messages) == sorted(
        r[0] for r in eleven_with_the_encoded_name_sixth())
    raw = b"".join(head(p.read_bytes()) for p in (project / "outbox" / SAMPLE).glob("*.eml"))
    assert b"\nBcc:" not in raw and b"attacker" not in raw
    assert all(m["Bcc"] is None for m in messages)
    (amelia,) = [p.read_bytes() for p in (project / "outbox" / SAMPLE).glob("*.eml")
                 if b"amelia@example.org" in head(p.read_bytes())]
    assert rfc2047_header(amelia, "To") == f"{EVIL_NAME} Hughes <amelia@example.org>"  # literal, as written
    assert set(ledger_states(project).values()) == {"sent"}


def test_encoded_word_name_sixth_of_eleven_over_smtp(project: Path, smtp: tuple[ScriptedHandler, int]) -> None:
    handler, port = smtp
    write_audiences(project / "audiences.csv", eleven_with_the_encoded_name_sixth())
    run = send(project, smtp_env(project, port))
    assert run.returncode == 0, run.stderr
    assert sorted(handler.to_addresses()) == sorted(r[0] for r in eleven_with_the_encoded_name_sixth())
    assert all(len(r.rcpt_tos) == 1 for r in handler.received)  # nobody got a Bcc
    for received in handler.received:
        assert b"\nBcc:" not in head(received.content) and b"attacker" not in head(received.content)
        assert received.parsed()["Bcc"] is None
    (amelia,) = [r for r in handler.received if r.rcpt_tos == ["amelia@example.org"]]
    assert rfc2047_header(amelia.content, "To") == f"{EVIL_NAME} Hughes <amelia@example.org>"


def test_encoded_word_subject_never_makes_a_reply_to_in_the_outbox(tmp_path: Path) -> None:
    project = send_project(tmp_path / "school")
    newsletter = project / "newsletters" / SAMPLE / "newsletter.md"
    text = newsletter.read_text(encoding="utf-8")
    start = text.index("subject:")
    end = text.index("\n", start)
    newsletter.write_text(text[:start] + f'subject: "{EVIL_SUBJECT}"' + text[end:], encoding="utf-8")
    composed = _compose(project)
    assert composed.returncode == 0, composed.stderr
    write_audiences(project / "audiences.csv", [("pat@example.org", "Pat", "Example", "parents")])
    run = send(project, environ(project))
    assert run.returncode == 0, run.stderr
    (path,) = (project / "outbox" / SAMPLE).glob("*.eml")
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert message["Reply-To"] == "office@oakfield.example.org"  # the school's own, once
    assert len(message.get_all("Reply-To")) == 1 and b"evil.example" not in head(path.read_bytes())
    assert message["Subject"] == EVIL_SUBJECT


def _compose(project: Path):
    import subprocess
    import sys

    from tests.send_project import ROOT

    return subprocess.run([sys.executable, str(ROOT / "compose.py"), f"newsletters/{SAMPLE}"], cwd=project,
                          capture_output=True, text=True, timeout=120)


# --- 6. one address, one spelling; accented mailbox names per transport ---------------------------------

def test_a_first_send_with_a_refused_recipient_records_exactly_who_has_it(project: Path,
                                                                          smtp: tuple[ScriptedHandler, int]) -> None:
    """The summary and sent.json count who has the newsletter without reading every row again after a
    first send: the figure must still be the ledger's own, with one person refused by the server."""
    handler, port = smtp
    rows = eleven_with_the_encoded_name_sixth()
    handler.rcpt_replies[rows[2][0]] = "550 5.1.1 mailbox unavailable"
    write_audiences(project / "audiences.csv", rows)
    run = send(project, smtp_env(project, port))
    assert run.returncode != 0 and "Traceback" not in run.stderr  # one person not sent: the run says so
    states = ledger_states(project)
    assert states[rows[2][0]] == "failed" and list(states.values()).count("sent") == len(rows) - 1
    record = json.loads((project / "newsletters" / SAMPLE / "sent.json").read_text(encoding="utf-8"))
    assert record["people_sent"] == len(rows) - 1


def test_idn_and_nfc_spellings_are_one_person_each(project: Path) -> None:
    nfc = unicodedata.normalize("NFC", "chloë@example.org")
    nfd = unicodedata.normalize("NFD", "chloë@example.org")
    assert nfc != nfd
    rows = [("zoe@bücher.example", "Zoë", "Buch", "parents"), ("pat@example.org", "Pat", "Example", "parents"),
            (nfc, "Chloë", "Nfc", "parents"), (nfd, "Chloë", "Nfd", "parents")]
    path = write_audiences(project / "audiences.csv", rows)
    with path.open("a", encoding="utf-8") as handle:  # the punycode spelling of Zoë's address, unsubscribed
        handle.write('zoe@xn--bcher-kva.example,Zoë,Buch,"parents",unsubscribed\n')
    run = send(project, environ(project))
    assert run.returncode == 0, run.stderr
    addresses = sorted(m["To"].addresses[0].addr_spec for m in outbox_messages(project))
    assert addresses == sorted(["pat@example.org", nfc])  # Zoë unsubscribed in one spelling: not mailed
    assert "zoe@bücher.example" in run.stdout and "unsubscribed" in run.stdout


def test_idn_domain_goes_in_punycode_in_the_to_header(project: Path, smtp: tuple[ScriptedHandler, int]) -> None:
    handler, port = smtp
    write_audiences(project / "audiences.csv", [("Zoe@Bücher.example", "Zoë", "Buch", "parents")])
    run = send(project, smtp_env(project, port))
    assert run.returncode == 0, run.stderr
    (received,) = handler.received
    assert received.rcpt_tos == ["Zoe@xn--bcher-kva.example"]
    assert b"<Zoe@xn--bcher-kva.example>" in head(received.content) and b"=?utf-8?q?b" not in received.content
    assert received.parsed()["To"].addresses[0].domain == "xn--bcher-kva.example"


def noe_among_good_rows() -> list[tuple[str, str, str, str]]:
    return [("pat@example.org", "Pat", "Example", "parents"), ("noé@example.com", "Noé", "Martin", "parents"),
            ("sam@example.org", "Sam", "Example", "parents")]


def test_noe_goes_through_the_outbox_as_a_valid_smtputf8_message(project: Path) -> None:
    write_audiences(project / "audiences.csv", noe_among_good_rows())
    run = send(project, environ(project))
    assert run.returncode == 0, run.stderr
    assert "Sent: 3" in run.stdout or "sent to 3 people" in run.stdout
    (noe,) = [p for p in (project / "outbox" / SAMPLE).glob("*.eml") if "noé".encode() in p.read_bytes()]
    raw = noe.read_bytes()
    assert "<noé@example.com>".encode() in head(raw)  # RFC 6532: the address in UTF-8 as it is
    assert b"=?utf-8?b?" in head(raw).split(b"\r\nTo: ")[1].split(b"<")[0]  # the name as an encoded word
    message = email.message_from_string(raw.decode("utf-8"), policy=email.policy.SMTPUTF8)
    (to,) = message["To"].addresses
    assert not message.defects and (to.display_name, to.addr_spec) == ("Noé Martin", "noé@example.com")


def test_noe_goes_over_smtp_with_smtputf8(project: Path, smtp: tuple[ScriptedHandler, int]) -> None:
    handler, port = smtp
    write_audiences(project / "audiences.csv", noe_among_good_rows())
    run = send(project, smtp_env(project, port))
    assert run.returncode == 0, run.stderr
    assert sorted(handler.to_addresses()) == sorted(r[0] for r in noe_among_good_rows())


def test_noe_is_named_and_left_out_where_smtp_has_no_smtputf8(project: Path) -> None:
    handler = ScriptedHandler()
    controller = start_server(handler, smtputf8=False)
    try:
        write_audiences(project / "audiences.csv", noe_among_good_rows())
        run = send(project, smtp_env(project, int(controller.port)))
    finally:
        controller.stop()
    assert run.returncode == 0, run.stderr
    assert sorted(handler.to_addresses()) == ["pat@example.org", "sam@example.org"]
    assert "noé@example.com" in run.stdout and "does not offer SMTPUTF8" in run.stdout


def test_noe_is_named_and_left_out_at_the_plan_for_sendgrid(project: Path, sg) -> None:
    write_audiences(project / "audiences.csv", noe_among_good_rows())
    run = send(project, environ(project, transport="sendgrid", host=sg.url))
    assert run.returncode == 0, run.stderr
    assert "noé@example.com" in run.stdout and "SendGrid can only send to addresses written in plain" in run.stdout
    sent_to = sorted(p["to"][0]["email"] for body in sg.requests for p in body["personalizations"])
    assert sent_to == ["pat@example.org", "sam@example.org"]


# --- 9. tokens in the subject -----------------------------------------------------------------------------

def test_a_token_in_the_subject_is_filled_in_by_outbox_and_smtp(tmp_path: Path) -> None:
    project = send_project(tmp_path / "school")
    newsletter = project / "newsletters" / SAMPLE / "newsletter.md"
    text = newsletter.read_text(encoding="utf-8")
    start = text.index("subject:")
    end = text.index("\n", start)
    newsletter.write_text(text[:start] + 'subject: "News for %%first_name%%"' + text[end:], encoding="utf-8")
    composed = _compose(project)
    assert composed.returncode == 0, composed.stdout + composed.stderr
    web = (project / "newsletters" / SAMPLE / "build" / "web.html").read_text(encoding="utf-8")
    assert "%%" not in web
    write_audiences(project / "audiences.csv", [("pat@example.org", "Pat", "Example", "parents"),
                                                ("zoe@example.org", "Zoë", "Example", "parents")])
    run = send(project, environ(project))
    assert run.returncode == 0, run.stderr
    assert sorted(m["Subject"] for m in outbox_messages(project)) == ["News for Pat", "News for Zoë"]
    handler = ScriptedHandler()
    controller = start_server(handler)
    try:
        env = {**smtp_env(project, int(controller.port)), "MAILROOM_DB": str(project / "smtp.sqlite3")}
        run = send(project, env, "--start-again")  # a second ledger of its own, on purpose
    finally:
        controller.stop()
    assert run.returncode == 0, run.stderr
    assert sorted(r.parsed()["Subject"] for r in handler.received) == ["News for Pat", "News for Zoë"]


# --- 8. size limits ----------------------------------------------------------------------------------------

def test_a_message_over_the_servers_size_is_refused_at_the_plan(project: Path) -> None:
    handler = ScriptedHandler()
    controller = start_server(handler, size=40_000)  # the server announces SIZE 40000
    try:
        write_audiences(project / "audiences.csv", noe_among_good_rows()[:1])
        run = send(project, smtp_env(project, int(controller.port)))
    finally:
        controller.stop()
    assert run.returncode == 2, run.stdout + run.stderr
    assert "more than the 40 KB the mail server 127.0.0.1 says it takes" in run.stderr
    assert "Nothing was sent" in run.stderr and handler.received == [] and handler.mails == 0


def test_a_30_mb_image_is_refused_at_the_plan_before_anyone_gets_it(tmp_path: Path) -> None:
    project = send_project(tmp_path / "school")
    big = write_build(project / "newsletters" / "big-photo", root=project,
                      versions={"parents": ('<p>%%greeting%%</p><img src="images/photo.png" alt="The trip">'
                                           '<a href="%%unsubscribe_url%%">Unsubscribe</a>',
                                           "%%greeting%%\nUnsubscribe: %%unsubscribe_url%%\n")},
                      images={"photo.png": b"\x89PNG\r\n\x1a\n" + bytes(31 * 1000 * 1000)})
    write_audiences(project / "audiences.csv", noe_among_good_rows())
    run = send_py(project, str(big.relative_to(project)), "--to", "parents", "--yes", "--untested",
                  env=environ(project))
    assert run.returncode == 2, run.stdout + run.stderr
    assert ("the email for the list 'parents' is 42.4 MB, more than the 25 MB most mail services (Gmail among "
            "them) take") in run.stderr
    assert not (project / "outbox").exists() or not any((project / "outbox").rglob("*.eml"))


# --- 10. non-ASCII SMTP password ------------------------------------------------------------------------

def test_a_non_ascii_smtp_password_signs_in(project: Path) -> None:
    handler = ScriptedHandler()
    controller = start_server(handler, authenticator=Authenticator(USERNAME, PASSWORD))
    try:
        write_audiences(project / "audiences.csv", noe_among_good_rows()[:1])
        run = send(project, smtp_env(project, int(controller.port), SMTP_USERNAME=USERNAME, SMTP_PASSWORD=PASSWORD),
                   process=True)
        wrong = send(project, smtp_env(project, int(controller.port), SMTP_USERNAME=USERNAME,
                                       SMTP_PASSWORD="Gänseblümchen-falsch", MAILROOM_DB=str(project / "b.sqlite3")),
                     "--start-again", process=True)  # a second ledger of its own, on purpose
    finally:
        controller.stop()
    assert run.returncode == 0, run.stderr
    assert handler.to_addresses() == ["pat@example.org"]
    assert wrong.returncode == 1 and "Traceback" not in wrong.stderr
    assert "the SMTP username or password was not accepted" in wrong.stderr
    assert PASSWORD not in run.stdout + run.stderr + wrong.stdout + wrong.stderr
    with sqlite3.connect(project / "b.sqlite3") as conn:
        assert dict(conn.execute("SELECT address_key, state FROM sends")) == {"pat@example.org": "failed"}


# --- 4. each person recorded as it happens ------------------------------------------------------------------

def test_a_run_that_dies_mid_batch_leaves_only_the_unconfirmed_uncertain(project: Path) -> None:
    """The outbox records each person as their file is written: if the process dies at the 6th of 11
    (here an unexpected fault while writing), the 5 before are sent in the ledger and
    --resend-uncertain sends only the 6 after, never the first 5 again."""
    from mailroom.send.transports import outbox
    from mailroom.settings import load_settings
    from mailroom.workflows.send import SendSession

    rows = eleven_with_the_encoded_name_sixth()
    write_audiences(project / "audiences.csv", rows)
    settings = load_settings(project, environ=environ(project))
    real_write = outbox._write_atomically
    written: list[Path] = []

    def dies_at_the_sixth(path: Path, data: bytes) -> None:
        if len(written) == 5:
            raise RuntimeError("the machine lost power")
        written.append(path)
        real_write(path, data)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(outbox, "_write_atomically", dies_at_the_sixth)
        with SendSession(settings, project / "newsletters" / SAMPLE, ["parents"]) as session, \
                pytest.raises(RuntimeError):
            session.send_live(session.plan_live(), untested=True)
    states = ledger_states(project)
    assert sorted(k for k, v in states.items() if v == "sent") == sorted(r[0] for r in rows[:5])
    assert sorted(k for k, v in states.items() if v == "in_flight") == sorted(r[0] for r in rows[5:])

    rerun = send(project, environ(project), "--resend-uncertain")
    assert rerun.returncode == 0, rerun.stderr
    assert "6 people will get it now" in rerun.stdout
    assert sorted(m["To"].addresses[0].addr_spec for m in outbox_messages(project)) == sorted(r[0] for r in rows)
    assert set(ledger_states(project).values()) == {"sent"}


def test_the_big_hosts_known_limits_apply_when_the_server_announces_no_size(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Gmail (25 MB) and Microsoft 365 (35 MB) by SMTP_HOST; the plan-time EHLO is replaced (no internet)."""
    from mailroom.compose.build import load_build
    from mailroom.errors import InputError
    from mailroom.send.dispatch import make_version
    from mailroom.send.transports import smtp
    from mailroom.settings import load_settings

    project = send_project(tmp_path / "school")
    big = write_build(project / "newsletters" / "big", root=project,
                      versions={"parents": ('<img src="images/p.png" alt="x"><a href="%%unsubscribe_url%%">u</a>',
                                            "%%unsubscribe_url%%\n")},
                      images={"p.png": bytes(20 * 1000 * 1000)})  # a 27.4 MB message once base64-encoded
    monkeypatch.setattr(smtp, "ehlo_features", lambda *args: {"smtputf8": ""})  # no SIZE announced
    for host, refused in (("smtp.gmail.com", True), ("smtp.office365.com", False), ("mail.example.org", False)):
        settings = load_settings(project, environ={**environ(project), "MAILROOM_TRANSPORT": "smtp",
                                                   "SMTP_HOST": host, "SMTP_PORT": "587"})
        transport = smtp.SmtpTransport(settings)
        version = make_version(load_build(big, root=project), settings, "parents")
        if refused:
            with pytest.raises(InputError, match="more than the 25 MB Gmail and Google Workspace take"):
                transport.check_version(version)
        else:
            transport.check_version(version)
