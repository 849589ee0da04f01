"""Are the settings and secrets the chosen transport needs all there? (Nothing is contacted.)"""

from __future__ import annotations

from mailroom.doctor.findings import Finding, Level
from mailroom.settings import Settings

AREA = "Settings"


def check_settings(settings: Settings) -> list[Finding]:
    if settings.transport == "outbox":
        return [Finding(AREA, Level.NOTE, "MAILROOM_TRANSPORT is outbox: newsletters are written as .eml files on "
                        "this computer and nothing is emailed.",
                        todo="To email them, set MAILROOM_TRANSPORT to sendgrid or smtp in .env (see docs/smtp.md).")]
    if settings.transport == "sendgrid":
        return [Finding(AREA, Level.OK, "SENDGRID_API_KEY is set (its value is never shown).")]
    return _smtp(settings)


def _smtp(settings: Settings) -> list[Finding]:
    from mailroom.send.transports.oauth import oauth_setting_problems

    smtp = settings.smtp
    problems = list(oauth_setting_problems(settings))
    if smtp.auth == "password":
        if smtp.password and not smtp.username:
            problems.append("SMTP_PASSWORD is set but SMTP_USERNAME is not; set both (or neither)")
        if smtp.password and smtp.security == "none" and smtp.host not in ("127.0.0.1", "localhost", "::1"):
            problems.append("SMTP_SECURITY is none, so the password would cross the network unprotected; set "
                            "SMTP_SECURITY to starttls (port 587)")
    if smtp.ca_file is not None and not smtp.ca_file.is_file():
        problems.append(f"SMTP_CA_FILE names {smtp.ca_file}, which does not exist")
    if problems:
        return [Finding(AREA, Level.PROBLEM, problem, todo="Fix it in .env (docs/smtp.md says what goes there).")
                for problem in problems]
    how = {"password": "a username and password" if smtp.username else "no sign-in (the relay knows the school "
           "by its network address)", "oauth2-microsoft": "Microsoft 365 OAuth", "oauth2-google": "Google OAuth"}
    return [Finding(AREA, Level.OK, f"Everything mailroom needs to send through {smtp.host}:{smtp.port} with "
                    f"{how[smtp.auth]} is in .env (secrets are never shown).")]
