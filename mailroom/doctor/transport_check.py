"""Can mailroom reach the service, over verified TLS, and is its sign-in accepted? Nothing is sent.

SMTP: EHLO, STARTTLS (or TLS from the start), AUTH, then QUIT: the same code path a send uses, so the
doctor's message for a refusal is the one a send would give. SendGrid: GET /v3/scopes, which lists what
the key may do and sends nothing; the key must have mail.send.
"""

from __future__ import annotations

from mailroom.doctor.findings import Finding, Level
from mailroom.errors import ConfigError, TransportError
from mailroom.settings import Settings

AREA = "Connection"


def check_transport(settings: Settings) -> list[Finding]:
    if settings.transport == "smtp":
        return _smtp(settings)
    if settings.transport == "sendgrid":
        return _sendgrid(settings)
    return []


def _smtp(settings: Settings) -> list[Finding]:
    from mailroom.send.transports.smtp import SmtpTransport

    try:
        probe = SmtpTransport(settings).probe()
    except ConfigError as exc:
        return [Finding(AREA, Level.PROBLEM, str(exc), todo="Fix it in .env (docs/smtp.md).")]
    except TransportError as exc:
        return [Finding(_area_of(exc.message), Level.PROBLEM, exc.message,
                        todo="Nothing can be sent until this is fixed; show this message to whoever manages the "
                             "school's email." if not exc.retryable else
                             "Check the internet connection and run  python -m mailroom doctor  again.")]
    where = f"{settings.smtp.host}:{settings.smtp.port}"
    findings = [Finding(AREA, Level.OK, f"Reached the mail server {where} ({probe.banner or 'it answered'}).")]
    if probe.tls:
        findings.append(Finding("Security", Level.OK, f"The connection is encrypted: {probe.tls}."))
    else:
        findings.append(Finding("Security", Level.WARNING, "The connection to the mail server is not encrypted "
                                "(SMTP_SECURITY=none).", todo="Use starttls unless the relay is on this computer.",
                                it="SMTP_SECURITY=starttls with SMTP_PORT=587, or ssl with 465."))
    if probe.signed_in:
        findings.append(Finding("Sign-in", Level.OK, f"The mail server accepted the sign-in ({probe.signed_in}); "
                                "nothing was sent."))
    return findings


def _area_of(message: str) -> str:
    if "did not prove who it is" in message or "STARTTLS" in message:
        return "Security"
    if any(word in message for word in ("sign-in", "signed in", "Sign in", "password", "SMTP AUTH", "secret",
                                        "tenant", "permission", "Google", "Microsoft")):
        return "Sign-in"
    return AREA


def _sendgrid(settings: Settings) -> list[Finding]:
    import requests

    url = f"{settings.sendgrid.host}/v3/scopes"
    try:
        answer = requests.get(url, headers={"Authorization": f"Bearer {settings.sendgrid.api_key.reveal()}"},
                              timeout=settings.sendgrid.timeout_seconds)
    except requests.exceptions.RequestException as exc:
        return [Finding(AREA, Level.PROBLEM, f"Could not reach SendGrid at {settings.sendgrid.host} "
                        f"({exc.__class__.__name__}).", todo="Check the internet connection and run the doctor again.",
                        it="Check SENDGRID_API_HOST (https://api.sendgrid.com, or https://api.eu.sendgrid.com for EU "
                           "data residency) and any proxy or firewall.")]
    if answer.status_code in (401, 403):
        return [Finding("Sign-in", Level.PROBLEM, "SendGrid did not accept the API key (SENDGRID_API_KEY).",
                        todo="Ask whoever manages SendGrid for a new key and put it in .env.",
                        it="SendGrid > Settings > API Keys > Create API Key, Restricted Access, Mail Send: Full "
                           "Access; copy it into SENDGRID_API_KEY (it is shown only once).")]
    try:
        scopes = set(answer.json().get("scopes", [])) if answer.ok else None
    except ValueError:
        scopes = None
    if scopes is None:
        return [Finding(AREA, Level.PROBLEM, f"SendGrid answered {answer.status_code} to the key check.",
                        todo="Run the doctor again in a few minutes; if it persists, check status.sendgrid.com.")]
    findings = [Finding(AREA, Level.OK, f"Reached SendGrid at {settings.sendgrid.host}; the key is valid (nothing "
                        "was sent).")]
    if "mail.send" not in scopes:
        findings.append(Finding("Sign-in", Level.PROBLEM, "The SendGrid API key may not send email (it lacks the "
                                "Mail Send permission).", todo="Ask whoever manages SendGrid to give the key Mail "
                                "Send permission.", it="SendGrid > Settings > API Keys > the key > Edit API Key > "
                                "Mail Send: Full Access."))
    else:
        findings.append(Finding("Sign-in", Level.OK, "The SendGrid API key has the Mail Send permission."))
    return findings
