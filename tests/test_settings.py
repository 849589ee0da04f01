"""school.toml + .env + environment -> Settings, with clear messages for what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailroom.errors import ConfigError
from mailroom.settings import Secret, load_settings


def test_sample_settings_load(project: Path) -> None:
    settings = load_settings(project, environ={})
    assert settings.school.name == "Oakfield Primary School"
    assert list(settings.lists) == ["parents", "staff"]
    assert settings.lists["parents"].greeting == "Dear Parent/Carer"
    assert settings.transport == "outbox"
    assert settings.outbox_dir == project / "outbox"
    assert settings.db_path == project / "mailroom.sqlite3"
    assert settings.tracking.open_tracking is False and settings.tracking.click_tracking is True


def test_real_environment_wins_over_dotenv(project: Path) -> None:
    (project / ".env").write_text("MAILROOM_TRANSPORT=sendgrid\nSENDGRID_API_KEY=SG.from-dotenv\n")
    from_file = load_settings(project, environ={})
    assert from_file.transport == "sendgrid"
    assert from_file.sendgrid.api_key.reveal() == "SG.from-dotenv"
    overridden = load_settings(project, environ={"MAILROOM_TRANSPORT": "outbox"})
    assert overridden.transport == "outbox"


def test_secrets_never_show_in_repr(project: Path) -> None:
    settings = load_settings(project, environ={"SENDGRID_API_KEY": "SG.very-secret", "SMTP_PASSWORD": "hunter2"})
    shown = repr(settings) + str(settings.sendgrid) + str(settings.smtp)
    assert "SG.very-secret" not in shown and "hunter2" not in shown
    assert "********" in shown
    assert str(Secret("")) == "Secret('')"


@pytest.mark.parametrize(("environ", "message"), [
    ({"MAILROOM_TRANSPORT": "pigeon"}, "MAILROOM_TRANSPORT is 'pigeon'; it should be one of: outbox, sendgrid, smtp"),
    ({"MAILROOM_TRANSPORT": "sendgrid"},
     "MAILROOM_TRANSPORT is sendgrid, but SENDGRID_API_KEY is not set (put it in .env)"),
    ({"MAILROOM_TRANSPORT": "smtp"}, "MAILROOM_TRANSPORT is smtp, but SMTP_HOST is not set (put it in .env)"),
    ({"SMTP_SECURITY": "tls"}, "SMTP_SECURITY is 'tls'; it should be one of: starttls, ssl, none"),
    ({"SMTP_PORT": "twenty-five"}, "SMTP_PORT should be a port number, not 'twenty-five'"),
    ({"SENDGRID_API_HOST": "http://api.sendgrid.com"},
     "SENDGRID_API_HOST should be SendGrid's API address, like https://api.sendgrid.com (or "
     "https://api.eu.sendgrid.com for EU data residency); 'http://api.sendgrid.com' is not https:// (only this "
     "computer, 127.0.0.1, ::1 or localhost, may use http://)"),
])
def test_bad_environment_is_explained(project: Path, environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(project, environ=environ)
    assert str(caught.value) == message


@pytest.mark.parametrize(("old", "new", "message"), [
    ('primary = "#1d3f72"', 'primary = "navy"', "'brand.primary' should be a colour like #1d3f72, not 'navy'"),
    ('email = "office@oakfield.example.org"', 'email = "the office"',
     "'sender.email' should be an email address like office@school.example.org, not 'the office'"),
    ("open_tracking = false", 'open_tracking = "no"', "'tracking.open_tracking' should be true or false"),
    ('logo = "assets/logo.png"', 'logo = "assets/crest.png"',
     "brand.logo names 'assets/crest.png', but there is no such file"),
    ('url = "https://www.oakfield.example.org/newsletter/unsubscribe?r={recipient_id}"',
     'url = "https://www.oakfield.example.org/unsubscribe"',
     "'unsubscribe.url' should be a web address containing {recipient_id}"),
])
def test_bad_school_toml_is_explained(project: Path, old: str, new: str, message: str) -> None:
    toml = project / "school.toml"
    text = toml.read_text()
    assert old in text
    toml.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError) as caught:
        load_settings(project, environ={})
    assert str(caught.value) == f"{toml}: {message}"


def test_toml_syntax_error_names_the_line(project: Path) -> None:
    toml = project / "school.toml"
    lines = toml.read_text().splitlines()
    lines[4] = 'name = "Oakfield'  # an unterminated string on line 5
    toml.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(project, environ={})
    assert caught.value.line == 5
    assert str(caught.value).startswith(f"{toml}, line 5: this is not valid TOML")


def test_missing_school_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path, environ={})
    assert "school.toml: not found" in str(caught.value)
