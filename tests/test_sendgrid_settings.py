"""The SendGrid part of the settings: the API host parsed (not prefix-matched), the sender and the
categories checked before anything is sent, and secrets masked in every message."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailroom.errors import ConfigError, InputError
from mailroom.secrets import MASK, mask
from mailroom.settings import load_settings, sendgrid_api_host
from tests.send_project import send_py, write_build


@pytest.mark.parametrize(("given", "base"), [
    ("", "https://api.sendgrid.com"),
    ("https://api.eu.sendgrid.com", "https://api.eu.sendgrid.com"),
    ("https://api.eu.sendgrid.com/v3", "https://api.eu.sendgrid.com"),
    ("https://api.eu.sendgrid.com/v3/", "https://api.eu.sendgrid.com"),
    ("HTTPS://API.SendGrid.com/", "https://api.sendgrid.com"),
    ("http://127.0.0.1:8025", "http://127.0.0.1:8025"),
    ("http://localhost:8025/v3", "http://localhost:8025"),
    ("http://[::1]:8025", "http://[::1]:8025"),
])
def test_api_host_is_reduced_to_the_base_the_library_adds_v3_to(given: str, base: str) -> None:
    assert sendgrid_api_host(given) == base


@pytest.mark.parametrize("host", [
    "http://127.0.0.1.attacker.example",
    "http://localhost.attacker.example:80",
    "http://localhost@evil.example",
    "http://127.0.0.1@evil.example",
    "http://evil.example#@127.0.0.1",
    "http://evil.example?@localhost",
    "http://127.0.0.1\\@evil.example",
    "http://127.1",
    "http://0x7f000001",
    "http://[::ffff:127.0.0.1]",
    "http://api.sendgrid.com",
    "https://user:secret@api.sendgrid.com",
    "https://api.sendgrid.com/v3/mail/send",
    "https://api.sendgrid.com:99999",
    "ftp://api.sendgrid.com",
    "api.sendgrid.com",
    "https://",
    "https://api.sendgrid.com\r\nX-Injected: 1",
])
def test_lookalike_and_plain_http_hosts_are_settings_errors(host: str) -> None:
    with pytest.raises(ConfigError, match="SENDGRID_API_HOST should be SendGrid's API address"):
        sendgrid_api_host(host)


def test_the_eu_host_with_v3_reaches_v3_mail_send_once(tmp_path: Path) -> None:
    """The library's URL for the EU host given with /v3: .../v3/mail/send, not .../v3/v3/mail/send."""
    from sendgrid import SendGridAPIClient

    client = SendGridAPIClient(api_key="SG.x", host=sendgrid_api_host("https://api.eu.sendgrid.com/v3"))
    assert client.client.mail.send._build_url(None) == "https://api.eu.sendgrid.com/v3/mail/send"


def _toml(project: Path, old: str, new: str) -> Path:
    toml = project / "school.toml"
    text = toml.read_text(encoding="utf-8")
    assert old in text
    toml.write_text(text.replace(old, new, 1), encoding="utf-8")
    return toml


def test_a_non_ascii_sender_address_is_refused_naming_school_toml(project: Path) -> None:
    toml = _toml(project, 'email = "office@oakfield.example.org"', 'email = "office@oakfïeld.example.org"')
    with pytest.raises(ConfigError) as caught:
        load_settings(project, environ={})
    assert str(caught.value).startswith(f"{toml}: 'sender.email' should be an address in plain letters")
    assert "office@xn--oakfeld-rza.example.org" in str(caught.value)  # the spelling that works


def test_a_non_ascii_sender_name_is_refused_for_sendgrid_only(project: Path) -> None:
    toml = _toml(project, "[sender]\nname = \"Oakfield Primary School\"", "[sender]\nname = \"École Oakfield\"")
    assert load_settings(project, environ={}).sender.name == "École Oakfield"  # SMTP and the outbox encode it
    with pytest.raises(ConfigError) as caught:
        load_settings(project, environ={"MAILROOM_TRANSPORT": "sendgrid", "SENDGRID_API_KEY": "SG.k"})
    assert str(caught.value).startswith(f"{toml}: 'sender.name' should be written in plain letters (A-Z) for SendGrid")


@pytest.mark.parametrize(("categories", "message"), [
    ('["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]', "at most 9 names"),
    ('["' + "x" * 256 + '"]', "names of at most 255 characters"),
])
def test_categories_sendgrid_would_refuse_are_settings_errors(project: Path, categories: str, message: str) -> None:
    _toml(project, 'categories = ["newsletter"]', f"categories = {categories}")
    with pytest.raises(ConfigError, match=message):
        load_settings(project, environ={})


def test_categories_given_twice_are_kept_once(project: Path) -> None:
    _toml(project, 'categories = ["newsletter"]', 'categories = ["newsletter", "weekly", "newsletter"]')
    assert load_settings(project, environ={}).sendgrid.categories == ("newsletter", "weekly")


# --- secrets --------------------------------------------------------------------------------------------

KEY = "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"


@pytest.mark.parametrize("variable", ["SENDGRID_API_HOST", "SMTP_PORT", "SMTP_SECURITY", "MAILROOM_TRANSPORT"])
def test_a_sendgrid_key_in_the_wrong_variable_is_never_printed(project: Path, variable: str) -> None:
    (project / ".env").write_text(f"{variable}={KEY}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(project, environ={})
    assert variable in str(caught.value) and KEY not in str(caught.value) and MASK in str(caught.value)
    assert KEY[:12] not in str(caught.value)


def test_the_command_line_never_prints_the_key_from_the_wrong_variable(project: Path) -> None:
    write_build(project / "newsletters" / "n", root=project, versions={"parents": ("<p>Hi</p>", "Hi")})
    result = send_py(project, "newsletters/n", "--to", "parents", "--dry-run",
                     env={"SENDGRID_API_HOST": KEY, "MAILROOM_TRANSPORT": "sendgrid"})
    assert result.returncode == 2
    assert "SENDGRID_API_HOST" in result.stderr
    assert KEY not in result.stdout + result.stderr and KEY[3:20] not in result.stdout + result.stderr


def test_a_configured_secret_is_masked_wherever_it_is_quoted(project: Path) -> None:
    """An SMTP password (no recognisable shape) pasted into SMTP_PORT as well is masked by its value."""
    with pytest.raises(ConfigError) as caught:
        load_settings(project, environ={"SMTP_PASSWORD": "correct-horse-battery", "SMTP_PORT": "correct-horse-battery"})
    assert "correct-horse-battery" not in str(caught.value) and "SMTP_PORT" in str(caught.value)
    assert "correct-horse-battery" not in str(InputError("the server said: correct-horse-battery is wrong"))


def test_mask_leaves_ordinary_text_alone() -> None:
    text = "SG. is SendGrid's prefix; the SGX team met at 10.30; see https://example.org/a.b"
    assert mask(text) == text
    assert mask(f"key {KEY}, again {KEY}.") == f"key {MASK}, again {MASK}."
