"""Signing in to the relay with OAuth 2.0 (XOAUTH2 over STARTTLS), against stand-ins on 127.0.0.1: the
Microsoft identity platform over HTTPS (reached through SMTP_OAUTH_AUTHORITY, via msal), Google's token
endpoint (via google-auth) and an aiosmtpd relay that accepts only the tokens they issued."""

from __future__ import annotations

import dataclasses
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from mailroom.send.dispatch import StopReason
from mailroom.send.ledger import SendState
from mailroom.send.transports.oauth import (
    GoogleServiceAccountTokens,
    MicrosoftAppTokens,
    MicrosoftUserTokens,
    make_token_source,
)
from mailroom.send.transports.smtp import SmtpTransport
from mailroom.settings import Settings, load_settings
from tests.identity_standin import (
    App,
    GoogleTokenEndpoint,
    MicrosoftIdentity,
    OAuthSmtpHandler,
    Tokens,
    start_oauth_smtp,
)
from tests.send_project import send_project
from tests.smtp_server import FakeClock
from tests.test_smtp import dispatch, people

MAILBOX = "newsletter@oakfield.example.org"
CLIENT_ID = "5a0c1f4e-0000-4000-8000-00000000c1d0"
SECRET = "Qx8Q~standin.secret-value_never-shown"
ROOT = Path(__file__).resolve().parent.parent


# --- fixtures ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA(organization_name="Oakfield Primary School IT", organization_unit_name="Oakfield Internal CA")


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "oakfield-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def tokens(clock: FakeClock) -> Tokens:
    return Tokens(clock)


@pytest.fixture
def identity(tokens: Tokens, ca: trustme.CA) -> Iterator[MicrosoftIdentity]:
    context = _server_context(ca, "127.0.0.1")
    standin = MicrosoftIdentity(tokens, context).start()
    standin.apps[CLIENT_ID] = App(CLIENT_ID, secret=SECRET)
    yield standin
    standin.stop()


@pytest.fixture
def handler(tokens: Tokens, clock: FakeClock) -> OAuthSmtpHandler:
    return OAuthSmtpHandler(tokens, clock=clock)


@pytest.fixture
def relay(handler: OAuthSmtpHandler, ca: trustme.CA) -> Iterator[int]:
    controller = start_oauth_smtp(handler, _server_context(ca, "127.0.0.1"))
    yield controller.port
    controller.stop()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return send_project(tmp_path / "school")


@pytest.fixture
def http(ca_file: Path) -> requests.Session:
    """What msal talks HTTPS with: trusts the test CA (in production, the computer's usual authorities)."""
    session = requests.Session()
    session.verify = str(ca_file)
    session.trust_env = False  # REQUESTS_CA_BUNDLE in the environment would otherwise win over verify
    return session


def _server_context(ca: trustme.CA, *names: str):  # type: ignore[no-untyped-def]
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


def oauth_env(folder: Path, port: int, identity: MicrosoftIdentity | None, ca_file: Path,
              **extra: str) -> dict[str, str]:
    env = {"MAILROOM_TRANSPORT": "smtp", "MAILROOM_DB": str(folder / "mailroom.sqlite3"),
           "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port), "SMTP_SECURITY": "starttls",
           "SMTP_USERNAME": MAILBOX, "SMTP_CA_FILE": str(ca_file), "SMTP_AUTH": "oauth2-microsoft",
           "SMTP_OAUTH_TENANT_ID": "oakfield-tenant-id", "SMTP_OAUTH_CLIENT_ID": CLIENT_ID,
           "SMTP_OAUTH_CLIENT_SECRET": SECRET, "SMTP_OAUTH_TOKEN_CACHE": str(folder / "private" / "signin.json")}
    if identity is not None:
        env["SMTP_OAUTH_AUTHORITY"] = identity.authority
    env.update(extra)
    return {k: v for k, v in env.items() if v != ""}


def paced(settings: Settings, per_minute: int) -> Settings:
    return dataclasses.replace(settings, smtp=dataclasses.replace(settings.smtp, messages_per_minute=per_minute))


def transport_for(settings: Settings, clock: FakeClock, http: requests.Session) -> SmtpTransport:
    source = make_token_source(settings, clock=clock, http_client=http)
    return SmtpTransport(settings, clock=clock, sleep=clock.sleep, tokens=source)


# --- Microsoft: signing in as the app ----------------------------------------------------------------------

def test_app_sign_in_sends_with_the_token_the_identity_platform_issued(
        project: Path, identity: MicrosoftIdentity, relay: int, handler: OAuthSmtpHandler, tokens: Tokens,
        clock: FakeClock, http: requests.Session, ca_file: Path) -> None:
    settings = load_settings(project, environ=oauth_env(project, relay, identity, ca_file))
    transport = transport_for(settings, clock, http)
    recipients = people(5)
    report, ledger = dispatch(settings, transport, recipients)

    assert report.sent == 5 and ledger.counts("2024-11-08-online-safety") == {SendState.SENT: 5}
    assert sorted(handler.to_addresses()) == sorted(p.email for p in recipients)
    (token,) = handler.accepted_tokens()
    assert token in tokens.issued and handler.auth_attempts == [(MAILBOX, token, True)]
    grants = [form for path, form in identity.requests if path.endswith("/token")]
    assert [(g["grant_type"], g["scope"], g["client_id"]) for g in grants] == [
        ("client_credentials", "https://outlook.office365.com/.default", CLIENT_ID)]
    assert "Microsoft 365 OAuth, signed in as the app" in transport.describe()
    stored = b"".join(p.read_bytes() for p in project.glob("mailroom.sqlite3*"))
    assert token.encode() not in stored and SECRET.encode() not in stored


def test_a_token_that_expires_during_a_long_send_is_renewed_between_messages_and_nobody_is_lost(
        project: Path, identity: MicrosoftIdentity, relay: int, handler: OAuthSmtpHandler, tokens: Tokens,
        clock: FakeClock, http: requests.Session, ca_file: Path) -> None:
    identity.lifetime = 360.0  # six-minute tokens; 6 messages a minute: 60 messages take almost ten minutes
    settings = paced(load_settings(project, environ=oauth_env(project, relay, identity, ca_file)), 6)
    transport = transport_for(settings, clock, http)
    recipients = people(60)
    report, ledger = dispatch(settings, transport, recipients)

    assert report.sent == 60 and report.failed == 0 and report.uncertain == 0
    assert sorted(handler.to_addresses()) == sorted(p.email for p in recipients)  # each exactly once
    accepted = handler.accepted_tokens()
    assert len(accepted) == len(set(accepted)) == 3 == transport.connections  # signed in afresh twice
    assert all(a[2] for a in handler.auth_attempts)  # never refused: renewed before the server would say so
    assert handler.mails == 60  # no MAIL refused for an expired token
    assert ledger.counts("2024-11-08-online-safety") == {SendState.SENT: 60}


def test_a_session_whose_token_the_server_expires_early_reconnects_and_renews_without_duplicates(
        project: Path, identity: MicrosoftIdentity, relay: int, handler: OAuthSmtpHandler, tokens: Tokens,
        clock: FakeClock, http: requests.Session, ca_file: Path) -> None:
    """The server ends the token's life before mailroom expected (revoked, or clocks apart): a 421 at MAIL,
    then a 535 for the old token on the new connection; one renewed token carries on."""
    def revoke_after_the_fifth(n: int, rcpt: str) -> None:
        if n == 5:
            for grant in tokens.issued.values():
                grant.expires_at = clock()

    handler.on_data = revoke_after_the_fifth
    settings = load_settings(project, environ=oauth_env(project, relay, identity, ca_file))
    transport = transport_for(settings, clock, http)
    recipients = people(12)
    sleeps: list[float] = []
    report, _ledger = dispatch(settings, transport, recipients, sleeps)

    assert report.sent == 12 and report.failed == 0
    assert sorted(handler.to_addresses()) == sorted(p.email for p in recipients)
    assert [ok for _u, _t, ok in handler.auth_attempts] == [True, False, True]
    assert handler.auth_attempts[0][1] == handler.auth_attempts[1][1] != handler.auth_attempts[2][1]
    assert len(sleeps) == 1  # dispatch's one pause after the 421


def test_a_wrong_secret_is_explained_and_nothing_is_sent(
        project: Path, identity: MicrosoftIdentity, relay: int, handler: OAuthSmtpHandler, clock: FakeClock,
        http: requests.Session, ca_file: Path) -> None:
    settings = load_settings(project, environ=oauth_env(project, relay, identity, ca_file,
                                                        SMTP_OAUTH_CLIENT_SECRET="Qx8Q~an-old-secret"))
    report, _ledger = dispatch(settings, transport_for(settings, clock, http), people(3))

    assert report.stopped == StopReason.REFUSED and report.sent == 0 and handler.received == []
    assert report.stop_message == (
        "Microsoft did not accept the app's secret (SMTP_OAUTH_CLIENT_SECRET). For IT: copy the secret's Value (not "
        "its Secret ID) from Microsoft Entra admin centre > App registrations > the mailroom app > Certificates & "
        "secrets into SMTP_OAUTH_CLIENT_SECRET in .env, or create a new client secret there. (Microsoft's code "
        "AADSTS7000215)")
    assert "an-old-secret" not in report.stop_message


def test_an_app_without_the_exchange_permission_is_told_what_to_run(
        project: Path, identity: MicrosoftIdentity, relay: int, handler: OAuthSmtpHandler, clock: FakeClock,
        http: requests.Session, ca_file: Path) -> None:
    identity.apps[CLIENT_ID] = App(CLIENT_ID, secret=SECRET, roles=())  # SMTP.SendAsApp not granted
    settings = load_settings(project, environ=oauth_env(project, relay, identity, ca_file))
    report, _ledger = dispatch(settings, transport_for(settings, clock, http), people(3))

    assert report.stopped == StopReason.REFUSED and handler.received == []
    assert [ok for _u, _t, ok in handler.auth_attempts] == [False, False]  # one renewed token, then it stops
    message = report.stop_message
    assert message.startswith("Microsoft 365 issued mailroom a sign-in, but the mailbox refused it. For IT: the "
                              "app's service principal must be registered in Exchange")
    assert "New-ServicePrincipal -AppId <SMTP_OAUTH_CLIENT_ID>" in message
    assert "Add-MailboxPermission -Identity <mailbox>" in message and "SMTP.SendAsApp" in message
    assert message.endswith("(the server said: 535 5.7.3 Authentication unsuccessful)")


def test_smtp_auth_switched_off_for_the_mailbox_names_the_powershell_fix(
        project: Path, identity: MicrosoftIdentity, relay: int, handler: OAuthSmtpHandler, clock: FakeClock,
        http: requests.Session, ca_file: Path) -> None:
    handler.smtp_auth_disabled = True
    settings = load_settings(project, environ=oauth_env(project, relay, identity, ca_file))
    report, _ledger = dispatch(settings, transport_for(settings, clock, http), people(2))

    assert report.stopped == StopReason.REFUSED
    assert report.stop_message.startswith(
        "Microsoft 365 has SMTP sign-in (SMTP AUTH) switched off for this mailbox or for the whole school. For IT: "
        "in Exchange Online PowerShell run  Set-CASMailbox -Identity <mailbox> -SmtpClientAuthenticationDisabled "
        "$false")
    assert "535 5.7.139" in report.stop_message


def test_an_unknown_tenant_is_named(project: Path, identity: MicrosoftIdentity, relay: int, clock: FakeClock,
                                    http: requests.Session, ca_file: Path) -> None:
    settings = load_settings(project, environ=oauth_env(project, relay, identity, ca_file,
                                                        SMTP_OAUTH_TENANT_ID="oakfeild-tenant-id"))
    report, _ledger = dispatch(settings, transport_for(settings, clock, http), people(2))
    assert report.stopped == StopReason.REFUSED
    assert report.stop_message.startswith(
        "Microsoft's sign-in service does not know the tenant 'oakfeild-tenant-id'. For IT: check "
        "SMTP_OAUTH_TENANT_ID")


def _certificate_pem(folder: Path) -> tuple[Path, bytes]:
    """An app certificate as an IT helper makes one: a key and a self-signed certificate in one PEM."""
    import datetime as dt

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mailroom newsletter app")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=365)).sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    path = folder / "mailroom-app.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()) + cert_pem)
    return path, cert_pem


def test_app_sign_in_with_a_certificate_instead_of_a_secret(
        project: Path, identity: MicrosoftIdentity, relay: int, handler: OAuthSmtpHandler, clock: FakeClock,
        http: requests.Session, ca_file: Path, tmp_path: Path) -> None:
    pem, public = _certificate_pem(tmp_path)
    identity.apps[CLIENT_ID] = App(CLIENT_ID, certificate_pem=public)
    settings = load_settings(project, environ=oauth_env(project, relay, identity, ca_file, SMTP_OAUTH_CLIENT_SECRET="",
                                                        SMTP_OAUTH_CLIENT_CERTIFICATE=str(pem)))
    transport = transport_for(settings, clock, http)
    assert isinstance(transport._tokens, MicrosoftAppTokens)
    report, _ledger = dispatch(settings, transport, people(2))

    assert report.sent == 2 and len(handler.received) == 2
    (grant,) = [form for path, form in identity.requests if path.endswith("/token")]
    assert "client_secret" not in grant and grant["client_assertion_type"].endswith("jwt-bearer")

    other, _ = _certificate_pem(tmp_path / "..")  # a certificate the registration does not have
    settings = load_settings(project, environ=oauth_env(project, relay, identity, ca_file, SMTP_OAUTH_CLIENT_SECRET="",
                                                        SMTP_OAUTH_CLIENT_CERTIFICATE=str(other),
                                                        MAILROOM_DB=str(tmp_path / "second.sqlite3")))
    report, _ledger = dispatch(settings, transport_for(settings, clock, http), people(2))
    assert report.stopped == StopReason.REFUSED
    assert report.stop_message.startswith("Microsoft did not accept the app's certificate.")


# --- Microsoft: signing in as the mailbox's user (device code) ---------------------------------------------

def test_device_code_sign_in_once_then_sends_renew_silently_from_a_private_token_cache(
        project: Path, identity: MicrosoftIdentity, relay: int, handler: OAuthSmtpHandler, clock: FakeClock,
        tokens: Tokens, http: requests.Session, ca_file: Path) -> None:
    identity.apps[CLIENT_ID] = App(CLIENT_ID, public_client=True)
    identity.lifetime = 240  # under MSAL's five minutes: a later run must renew the access token at once
    settings = load_settings(project, environ=oauth_env(project, relay, identity, ca_file, SMTP_OAUTH_CLIENT_SECRET=""))
    source = make_token_source(settings, clock=clock, http_client=http)
    assert isinstance(source, MicrosoftUserTokens)

    # before anyone signed in, the send stops and says what to run
    report, _ledger = dispatch(settings, SmtpTransport(settings, clock=clock, sleep=clock.sleep, tokens=source),
                               people(1))
    assert report.stopped == StopReason.REFUSED and report.stop_message.startswith(
        f"nobody has signed in to Microsoft 365 as {MAILBOX} on this computer yet. Run  python -m mailroom sign-in")

    shown: list[str] = []

    def person_reads_and_signs_in(message: str) -> None:
        shown.append(message)
        identity.approve_device_codes(MAILBOX)

    assert source.sign_in(person_reads_and_signs_in) == MAILBOX
    assert "https://microsoft.com/devicelogin" in shown[0]
    cache = settings.smtp.oauth.token_cache
    assert cache is not None and cache.is_file()
    if sys.platform != "win32":
        assert stat.S_IMODE(cache.stat().st_mode) == 0o600
        assert stat.S_IMODE(cache.parent.stat().st_mode) == 0o700

    # a later run (a new process): the saved refresh token gets a new access token, nobody at the keyboard
    later = make_token_source(settings, clock=clock, http_client=http)
    transport = SmtpTransport(settings, clock=clock, sleep=clock.sleep, tokens=later)
    report, _ledger = dispatch(settings, transport, people(3))
    assert report.sent == 3 and len(handler.received) == 3
    grants = [form["grant_type"] for path, form in identity.requests if path.endswith("/token")]
    assert grants[-2:] == ["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"]  # renewed silently
    assert handler.accepted_tokens()[-1] in tokens.issued
    assert handler.auth_attempts[-1][:1] == (MAILBOX,)


@pytest.mark.parametrize(("setup", "expected"), [
    ("no-consent", "The app has not been given permission to send email yet. For IT: in Microsoft Entra admin "
                   "centre > App registrations > the mailroom app > API permissions, add Office 365 Exchange Online "
                   "> Application permissions > SMTP.SendAsApp (to sign in as the app) or Microsoft Graph > "
                   "Delegated permissions > SMTP.Send (to sign in as the mailbox's user), then press \"Grant admin "
                   "consent\". (Microsoft's code AADSTS65001)"),
    ("mfa", "This account must confirm the sign-in with multi-factor authentication. For IT: run  python -m mailroom "
            "sign-in  and complete the sign-in, with its second step, in the browser; a conditional-access rule may "
            "also need to allow the device-code sign-in. (Microsoft's code AADSTS50076)"),
    ("no-public-client", "The app is not set up for signing in from a device. For IT: in Microsoft Entra admin centre "
                         "> App registrations > the mailroom app > Authentication, set \"Allow public client flows\" "
                         "to Yes, or give mailroom a client secret (SMTP_OAUTH_CLIENT_SECRET) to sign in as the app. "
                         "(Microsoft's code AADSTS7000218)"),
])
def test_device_code_sign_in_refusals_are_explained(
        project: Path, identity: MicrosoftIdentity, clock: FakeClock, http: requests.Session, ca_file: Path,
        setup: str, expected: str) -> None:
    from mailroom.errors import TransportError

    identity.apps[CLIENT_ID] = App(CLIENT_ID, public_client=setup != "no-public-client",
                                   consented_scopes=() if setup == "no-consent" else
                                   ("https://outlook.office.com/SMTP.Send",))
    identity.mfa_required = setup == "mfa"
    settings = load_settings(project, environ=oauth_env(project, 2525, identity, ca_file, SMTP_OAUTH_CLIENT_SECRET=""))
    source = make_token_source(settings, clock=clock, http_client=http)
    assert isinstance(source, MicrosoftUserTokens)
    with pytest.raises(TransportError) as caught:
        source.sign_in(lambda message: identity.approve_device_codes(MAILBOX))
    assert caught.value.message == expected


# --- end to end: .env, send.py and `mailroom sign-in` --------------------------------------------------------

def _run(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("MAILROOM_", "SENDGRID_", "SMTP_"))}
    full.update(env)
    full["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, *args], cwd=project, env=full, capture_output=True, text=True, timeout=120)


def test_send_py_signs_in_as_the_app_from_dotenv(
        project: Path, identity: MicrosoftIdentity, relay: int, handler: OAuthSmtpHandler, ca_file: Path) -> None:
    env = oauth_env(project, relay, identity, ca_file)
    (project / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    (project / "audiences.csv").write_text("email,first_name,last_name,lists,status\n"
                                           "amelia.hughes@example.org,Amelia,Hughes,parents,subscribed\n"
                                           "rahul.patel@example.com,Rahul,Patel,parents,subscribed\n")
    # msal's HTTPS trusts the test CA the way requests is told to in any environment
    run = _run(project, {"REQUESTS_CA_BUNDLE": str(ca_file)}, str(ROOT / "send.py"),
               "newsletters/2024-11-08-online-safety", "--to", "parents", "--yes", "--untested")
    assert run.returncode == 0, run.stderr
    assert sorted(handler.to_addresses()) == ["amelia.hughes@example.org", "rahul.patel@example.com"]
    assert "Microsoft 365 OAuth, signed in as the app" in run.stdout
    assert SECRET not in run.stdout + run.stderr


def test_mailroom_sign_in_command_walks_the_office_through_the_device_code(
        project: Path, identity: MicrosoftIdentity, ca_file: Path) -> None:
    identity.apps[CLIENT_ID] = App(CLIENT_ID, public_client=True)
    identity.auto_approve = MAILBOX  # the person signs in in the browser while mailroom waits
    env = oauth_env(project, 2525, identity, ca_file, SMTP_OAUTH_CLIENT_SECRET="", REQUESTS_CA_BUNDLE=str(ca_file))
    run = _run(project, env, "-m", "mailroom", "sign-in")
    assert run.returncode == 0, run.stderr
    assert "https://microsoft.com/devicelogin" in run.stdout
    assert f"Signed in as {MAILBOX}." in run.stdout
    assert (project / "private" / "signin.json").is_file()


# --- Google Workspace ------------------------------------------------------------------------------------

@pytest.fixture
def google(tokens: Tokens) -> Iterator[GoogleTokenEndpoint]:
    endpoint = GoogleTokenEndpoint(tokens).start()
    yield endpoint
    endpoint.stop()


def google_env(folder: Path, port: int, key_file: Path, ca_file: Path) -> dict[str, str]:
    return {"MAILROOM_TRANSPORT": "smtp", "MAILROOM_DB": str(folder / "mailroom.sqlite3"), "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(port), "SMTP_SECURITY": "starttls", "SMTP_USERNAME": MAILBOX, "SMTP_CA_FILE": str(ca_file),
            "SMTP_AUTH": "oauth2-google", "SMTP_OAUTH_SERVICE_ACCOUNT_FILE": str(key_file)}


def test_google_service_account_with_domain_wide_delegation_sends_as_the_mailbox(
        project: Path, google: GoogleTokenEndpoint, tokens: Tokens, ca: trustme.CA, ca_file: Path, clock: FakeClock,
        tmp_path: Path) -> None:
    handler = OAuthSmtpHandler(tokens, style="google", clock=clock)
    controller = start_oauth_smtp(handler, _server_context(ca, "127.0.0.1"))
    try:
        key_file = google.service_account_file(tmp_path)
        settings = load_settings(project, environ=google_env(project, controller.port, key_file, ca_file))
        source = make_token_source(settings, clock=clock)
        assert isinstance(source, GoogleServiceAccountTokens)
        report, _ledger = dispatch(settings, SmtpTransport(settings, clock=clock, sleep=clock.sleep, tokens=source),
                                   people(4))
    finally:
        controller.stop()
    assert report.sent == 4 and len(handler.received) == 4
    (claims,) = google.assertions
    assert claims["sub"] == MAILBOX and claims["scope"] == "https://mail.google.com/"
    assert handler.accepted_tokens()[0] in tokens.issued


@pytest.mark.parametrize(("problem", "expected"), [
    ("no-delegation", "Google has not allowed mailroom's service account to send as the school's mailboxes. For "
                      "IT: in the Google Admin console > Security > Access and data control > API controls > Manage "
                      "domain-wide delegation, add the service account's client ID (the client_id in the key file) "
                      "with the scope https://mail.google.com/ ; it can take a few minutes to apply."),
    ("unknown-user", "Google does not know the mailbox in SMTP_USERNAME. For IT: SMTP_USERNAME must be the full "
                     "address of a user in the school's Google Workspace (not a group or an alias)."),
])
def test_google_refusals_are_explained(project: Path, google: GoogleTokenEndpoint, ca_file: Path, clock: FakeClock,
                                       tmp_path: Path, problem: str, expected: str) -> None:
    from mailroom.errors import TransportError

    key_file = google.service_account_file(tmp_path, delegated=problem != "no-delegation")
    if problem == "unknown-user":
        google.users.clear()
    settings = load_settings(project, environ=google_env(project, 2525, key_file, ca_file))
    source = make_token_source(settings, clock=clock)
    assert source is not None
    with pytest.raises(TransportError) as caught:
        source.token()
    assert caught.value.message.startswith(expected)


def test_gmail_refusing_the_token_after_its_json_challenge_is_explained(
        project: Path, google: GoogleTokenEndpoint, tokens: Tokens, ca: trustme.CA, ca_file: Path, clock: FakeClock,
        tmp_path: Path) -> None:
    handler = OAuthSmtpHandler(tokens, style="google", clock=clock)
    handler.refuse_next_valid_token = 2
    controller = start_oauth_smtp(handler, _server_context(ca, "127.0.0.1"))
    try:
        settings = load_settings(project, environ=google_env(project, controller.port,
                                                             google.service_account_file(tmp_path), ca_file))
        report, _ledger = dispatch(settings, SmtpTransport(settings, clock=clock, sleep=clock.sleep), people(2))
    finally:
        controller.stop()
    assert report.stopped == StopReason.REFUSED and handler.received == []
    assert report.stop_message.startswith("Google issued mailroom a sign-in, but Gmail refused it for this mailbox.")


# --- settings --------------------------------------------------------------------------------------------

def test_missing_oauth_settings_are_named_before_anything_connects(project: Path, ca_file: Path) -> None:
    from mailroom.errors import ConfigError
    from mailroom.send.transports.oauth import oauth_setting_problems

    env = oauth_env(project, 2525, None, ca_file, SMTP_OAUTH_TENANT_ID="", SMTP_OAUTH_CLIENT_ID="")
    settings = load_settings(project, environ=env)
    assert settings.smtp.oauth.authority == "https://login.microsoftonline.com"
    assert oauth_setting_problems(settings) == [
        "SMTP_OAUTH_TENANT_ID is not set (the Directory (tenant) ID on the app registration's Overview page in the "
        "Microsoft Entra admin centre)",
        "SMTP_OAUTH_CLIENT_ID is not set (the Application (client) ID on the app registration's Overview page)"]
    with pytest.raises(ConfigError):
        SmtpTransport(settings)
    with pytest.raises(ConfigError) as caught:
        load_settings(project, environ={**env, "SMTP_AUTH": "oauth"})
    assert str(caught.value) == ("SMTP_AUTH is 'oauth'; it should be one of: password, oauth2-microsoft, "
                                 "oauth2-google")
