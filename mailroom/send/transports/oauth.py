"""Signing in to an SMTP relay without a password: OAuth 2.0 access tokens, handed over as SASL XOAUTH2.

Three ways, chosen by SMTP_AUTH:
- ``oauth2-microsoft`` with a client secret or certificate: the school's app registration signs in as
  itself (client credentials, the SMTP.SendAsApp permission, scope https://outlook.office365.com/.default).
  Nobody has to be at the keyboard; the IT helper sets it up once.
- ``oauth2-microsoft`` without either: the mailbox's user signs in once in a browser with a code
  (``python -m mailroom sign-in``); the refresh token is kept in a token cache file only its owner can read,
  and every send after that renews the access token silently.
- ``oauth2-google``: a Google Workspace service account with domain-wide delegation acts as the mailbox
  (scope https://mail.google.com/).

Microsoft's library (msal) and Google's (google-auth) do the OAuth; this module decides when to ask
them for a token, turns their refusals into office words (``signin_errors``), and builds the XOAUTH2
string. A token source remembers its token and when to renew it (a few minutes before it expires), so
the SMTP transport can sign in afresh on a new connection before a long send's token runs out.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mailroom.errors import ConfigError, TransportError
from mailroom.send.transports.signin_errors import explain_google, explain_microsoft
from mailroom.settings import Settings

MICROSOFT_APP_SCOPE = "https://outlook.office365.com/.default"
MICROSOFT_USER_SCOPE = "https://outlook.office.com/SMTP.Send"
GOOGLE_SCOPE = "https://mail.google.com/"
RENEW_BEFORE = 300.0  # seconds before expiry that a token is renewed (a quarter of its life if that is shorter)
DEFAULT_TOKEN_CACHE = Path.home() / ".mailroom" / "microsoft-sign-in.json"

# Microsoft's own sign-in hosts: msal checks an authority on them against Microsoft's instance discovery.
# Any other host (a stand-in in the tests, a proxy) is taken as given, without that check.
_MICROSOFT_HOSTS = frozenset({
    "login.microsoftonline.com", "login.microsoft.com", "login.windows.net", "sts.windows.net",
    "login.microsoftonline.us", "login.chinacloudapi.cn", "login.partner.microsoftonline.cn",
    "login.microsoftonline.de"})


@dataclass(frozen=True)
class AccessToken:
    value: str  # never printed or stored by mailroom
    renew_at: float  # on the token source's clock: sign in afresh after this


def xoauth2(username: str, token: str) -> str:
    """The SASL XOAUTH2 initial response (base64), as Microsoft and Google document it."""
    raw = f"user={username}\x01auth=Bearer {token}\x01\x01"
    return base64.b64encode(raw.encode("utf-8")).decode("ascii")


class TokenSource(ABC):
    """Hands out an access token for one mailbox and knows when it is due for renewal."""

    #: for explanations of a 535 at AUTH (``signin_errors.explain_smtp_refusal``)
    provider = ""

    def __init__(self, username: str, *, clock: Callable[[], float] = time.time) -> None:
        self.username = username
        self.clock = clock
        self._token: AccessToken | None = None
        self.fetched = 0  # tokens obtained from the identity platform (for tests and the doctor)

    def token(self, *, renew: bool = False) -> AccessToken:
        """The current token; a new one when asked, when none is held yet, or when it is due for renewal."""
        if renew or self._token is None or self.due():
            self._token = self._fetch(force=renew or self._token is not None)
            self.fetched += 1
        return self._token

    def due(self) -> bool:
        """True once the token held is close enough to expiry that a new connection should get a new one."""
        return self._token is not None and self.clock() >= self._token.renew_at

    def _token_for(self, value: str, expires_in: float) -> AccessToken:
        margin = min(RENEW_BEFORE, max(expires_in, 0) / 4)
        return AccessToken(value, self.clock() + max(expires_in, 0) - margin)

    @abstractmethod
    def _fetch(self, *, force: bool) -> AccessToken:
        """Ask the identity platform; ``force`` means the token held must not be handed out again."""

    @abstractmethod
    def describe(self) -> str:
        """How the doctor and the plan name this way of signing in."""


# --- Microsoft -------------------------------------------------------------------------------------------

def _authority_url(settings: Settings) -> str:
    oauth = settings.smtp.oauth
    return f"{oauth.authority}/{oauth.tenant_id or 'organizations'}"


def _msal_options(settings: Settings) -> dict[str, Any]:
    """msal's arguments for the configured authority. On a host that is not one of Microsoft's own
    (a national cloud proxy, the tests' stand-in) msal's instance discovery would ask
    login.microsoftonline.com about it, so it is switched off: the authority is taken as configured."""
    host = (urlsplit(settings.smtp.oauth.authority).hostname or "").lower()
    options: dict[str, Any] = {"authority": _authority_url(settings), "timeout": settings.smtp.timeout_seconds}
    if host not in _MICROSOFT_HOSTS:
        options.update(instance_discovery=False, validate_authority=False)
    return options


def _reach_microsoft(call: Callable[[], Any], what: str) -> Any:
    """Run an msal call; network trouble and an authority msal cannot use become plain TransportErrors."""
    import requests

    try:
        return call()
    except requests.exceptions.SSLError:
        raise TransportError(f"could not reach Microsoft's sign-in service securely ({what}); check "
                             "SMTP_OAUTH_AUTHORITY and that this computer's date and time are right",
                             retryable=False) from None
    except requests.exceptions.RequestException as exc:
        raise TransportError(f"could not reach Microsoft's sign-in service ({what}: {exc.__class__.__name__}); "
                             "check the internet connection", retryable=True) from None
    except ValueError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else "no reason given"
        if "authority" not in reason.lower() and "oidc" not in reason.lower():
            # e.g. a certificate file whose key cryptography cannot read
            raise TransportError(f"mailroom could not prepare the Microsoft sign-in ({reason}). For IT: check "
                                 "SMTP_OAUTH_CLIENT_CERTIFICATE or SMTP_OAUTH_CLIENT_SECRET", retryable=False) from None
        # msal raises ValueError when the tenant's OpenID configuration cannot be read (an unknown tenant)
        raise TransportError(f"Microsoft's sign-in service does not know the tenant '{_tenant_of(what)}'. For "
                             "IT: check SMTP_OAUTH_TENANT_ID (the Directory (tenant) ID on the app registration's "
                             f"Overview page) and SMTP_OAUTH_AUTHORITY ({reason})", retryable=False) from None


def _tenant_of(what: str) -> str:
    return what.rsplit("/", 1)[-1]


def _client_credential(settings: Settings) -> str | dict[str, str]:
    """The app's secret, or its certificate (a PEM file holding the private key and the certificate,
    or a .pfx) in the form msal takes."""
    oauth = settings.smtp.oauth
    path = oauth.client_certificate
    if path is None:
        return oauth.client_secret.reveal()
    if path.suffix.lower() in (".pfx", ".p12"):
        return {"private_key_pfx_path": str(path)}
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"SMTP_OAUTH_CLIENT_CERTIFICATE names a file mailroom cannot read ({exc.__class__.__name__})",
                          path) from None
    key = re.search(r"-----BEGIN (?:RSA |EC )?PRIVATE KEY-----.+?-----END (?:RSA |EC )?PRIVATE KEY-----", text, re.S)
    cert = re.search(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", text, re.S)
    if not key or not cert:
        raise ConfigError("SMTP_OAUTH_CLIENT_CERTIFICATE should be a PEM file holding both the app's private key "
                          "and its certificate (or a .pfx file)", path)
    return {"private_key": key.group(0), "public_certificate": cert.group(0)}


class MicrosoftAppTokens(TokenSource):
    """Client credentials: the app registration signs in as itself and sends as the mailbox."""

    provider = "microsoft-app"

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time,
                 http_client: Any = None) -> None:
        super().__init__(settings.smtp.username, clock=clock)
        self.settings = settings
        self.scope = settings.smtp.oauth.scope or MICROSOFT_APP_SCOPE
        self._http_client = http_client
        self._app: Any = None

    def describe(self) -> str:
        return f"Microsoft 365 OAuth, signed in as the app {self.settings.smtp.oauth.client_id}"

    def _application(self) -> Any:
        if self._app is None:
            import msal

            options = _msal_options(self.settings)
            if self._http_client is not None:
                options["http_client"] = self._http_client
            self._app = _reach_microsoft(lambda: msal.ConfidentialClientApplication(
                self.settings.smtp.oauth.client_id, client_credential=_client_credential(self.settings),
                token_cache=msal.TokenCache(), **options), options["authority"])
        return self._app

    def _fetch(self, *, force: bool) -> AccessToken:
        import msal

        app = self._application()
        if force:  # msal would hand back its cached token, which the server just refused or which is due
            cache = app.token_cache
            for item in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
                cache.remove_at(item)
        result = _reach_microsoft(lambda: app.acquire_token_for_client(scopes=[self.scope]), _authority_url(
            self.settings))
        return _token_from(self, result)


def _token_from(source: TokenSource, result: dict[str, Any] | None) -> AccessToken:
    if not result or "access_token" not in result:
        raise TransportError(explain_microsoft(result or {}), retryable=False)
    return source._token_for(result["access_token"], float(result.get("expires_in", 3600)))


class MicrosoftUserTokens(TokenSource):
    """Device-code sign-in as the mailbox's user, once; afterwards the saved refresh token renews silently."""

    provider = "microsoft-user"

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time,
                 http_client: Any = None) -> None:
        super().__init__(settings.smtp.username, clock=clock)
        self.settings = settings
        self.scope = settings.smtp.oauth.scope or MICROSOFT_USER_SCOPE
        self.cache_path = settings.smtp.oauth.token_cache or DEFAULT_TOKEN_CACHE
        self._http_client = http_client
        self._app: Any = None
        self._cache: Any = None

    def describe(self) -> str:
        return f"Microsoft 365 OAuth, signed in as {self.username}"

    def _application(self) -> Any:
        if self._app is None:
            import msal

            self._cache = msal.SerializableTokenCache()
            if self.cache_path.is_file():
                try:
                    self._cache.deserialize(self.cache_path.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    raise ConfigError("the saved Microsoft sign-in cannot be read; delete the file and run  python -m "
                                      "mailroom sign-in  again", self.cache_path) from None
            options = _msal_options(self.settings)
            if self._http_client is not None:
                options["http_client"] = self._http_client
            self._app = _reach_microsoft(lambda: msal.PublicClientApplication(
                self.settings.smtp.oauth.client_id, token_cache=self._cache, **options), options["authority"])
        return self._app

    def _account(self) -> Any:
        accounts = self._application().get_accounts(username=self.username)
        return accounts[0] if accounts else None

    def signed_in(self) -> bool:
        return self._account() is not None

    def _fetch(self, *, force: bool) -> AccessToken:
        account = self._account()
        if account is None:
            raise TransportError(
                f"nobody has signed in to Microsoft 365 as {self.username} on this computer yet. Run  python -m "
                "mailroom sign-in  and follow what it says (once; mailroom remembers the sign-in)",
                retryable=False)
        app = self._application()
        result = _reach_microsoft(lambda: app.acquire_token_silent_with_error(
            [self.scope], account=account, force_refresh=force), _authority_url(self.settings))
        if result is None:
            raise TransportError(
                f"the saved Microsoft 365 sign-in for {self.username} can no longer be used. Run  python -m "
                "mailroom sign-in  again", retryable=False)
        token = _token_from(self, result)
        self._save()
        return token

    def sign_in(self, show: Callable[[str], None]) -> str:
        """Device-code sign-in: ``show`` gets Microsoft's instruction (a web address and a code); blocks until
        the person has signed in in a browser (on any device) or the code expires. Returns the account."""
        app = self._application()
        flow = _reach_microsoft(lambda: app.initiate_device_flow(scopes=[self.scope]), _authority_url(
            self.settings))
        if "user_code" not in flow:
            raise TransportError(explain_microsoft(flow), retryable=False)
        show(flow.get("message") or f"Go to {flow['verification_uri']} and enter the code {flow['user_code']}")
        result = _reach_microsoft(lambda: app.acquire_token_by_device_flow(flow), _authority_url(self.settings))
        if not result or "access_token" not in result:
            raise TransportError(explain_microsoft(result or {}), retryable=False)
        signed_in_as = str((result.get("id_token_claims") or {}).get("preferred_username", ""))
        if signed_in_as and signed_in_as.lower() != self.username.lower():
            raise TransportError(
                f"you signed in as {signed_in_as}, but SMTP_USERNAME is {self.username}; sign in again with the "
                "newsletter mailbox's account (or change SMTP_USERNAME)", retryable=False)
        self._save()
        return signed_in_as or self.username

    def _save(self) -> None:
        if self._cache is not None and self._cache.has_state_changed:
            write_private_file(self.cache_path, self._cache.serialize())
            self._cache.has_state_changed = False


def write_private_file(path: Path, text: str) -> None:
    """Write ``text`` so only this computer account can read it (0600 in a 0700 folder), atomically.

    On Windows the mode bits only set "read-only", so the file relies on its folder's permissions: the
    default (under the user's profile) is readable by that user and administrators only.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    if sys.platform != "win32":
        os.chmod(temporary, 0o600)  # in case the file was there before with wider permissions
    os.replace(temporary, path)


# --- Google ----------------------------------------------------------------------------------------------

class GoogleServiceAccountTokens(TokenSource):
    """A service account with domain-wide delegation acts as the mailbox (its ``subject``)."""

    provider = "google"

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(settings.smtp.username, clock=clock)
        self.settings = settings
        self.key_file = settings.smtp.oauth.service_account_file
        self._credentials: Any = None

    def describe(self) -> str:
        return f"Google Workspace OAuth, the service account acting as {self.username}"

    def _load(self) -> Any:
        if self._credentials is None:
            from google.oauth2 import service_account

            assert self.key_file is not None  # checked by oauth_setting_problems
            try:
                info = json.loads(self.key_file.read_text(encoding="utf-8"))
                self._credentials = service_account.Credentials.from_service_account_info(
                    info, scopes=[GOOGLE_SCOPE], subject=self.username)
            except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValueError, KeyError, TypeError):
                raise ConfigError("SMTP_OAUTH_SERVICE_ACCOUNT_FILE should be the service account's JSON key file, "
                                  "as Google Cloud console > IAM & Admin > Service accounts > Keys downloads it",
                                  self.key_file) from None
        return self._credentials

    def _fetch(self, *, force: bool) -> AccessToken:
        import google.auth.exceptions
        from google.auth.transport.requests import Request

        credentials = self._load()
        try:
            credentials.refresh(Request())
        except google.auth.exceptions.RefreshError as exc:
            details = exc.args[1] if len(exc.args) > 1 else None
            raise TransportError(explain_google(str(exc.args[0]) if exc.args else "", details),
                                 retryable=False) from None
        except google.auth.exceptions.TransportError as exc:
            raise TransportError(f"could not reach Google's sign-in service ({exc.__class__.__name__}); check the "
                                 "internet connection", retryable=True) from None
        expiry = credentials.expiry  # naive UTC
        from datetime import UTC, datetime

        left = (expiry.replace(tzinfo=UTC) - datetime.now(UTC)).total_seconds() if expiry else 3600.0
        return self._token_for(credentials.token, left)


# --- choosing one --------------------------------------------------------------------------------------

def oauth_setting_problems(settings: Settings) -> list[str]:
    """What is missing for the chosen SMTP_AUTH, one plain sentence each (empty: all there)."""
    smtp, oauth = settings.smtp, settings.smtp.oauth
    problems: list[str] = []
    if smtp.auth == "password":
        return problems
    if not smtp.username:
        problems.append(f"SMTP_AUTH is {smtp.auth}, so SMTP_USERNAME must be the mailbox's address "
                        "(the mailbox mailroom sends from)")
    if smtp.security == "none" and not _loopback(smtp.host):
        problems.append("SMTP_AUTH signs in with a token, which must not cross the network unprotected; set "
                        "SMTP_SECURITY to starttls (port 587)")
    if smtp.auth == "oauth2-microsoft":
        if not oauth.tenant_id:
            problems.append("SMTP_OAUTH_TENANT_ID is not set (the Directory (tenant) ID on the app registration's "
                            "Overview page in the Microsoft Entra admin centre)")
        if not oauth.client_id:
            problems.append("SMTP_OAUTH_CLIENT_ID is not set (the Application (client) ID on the app "
                            "registration's Overview page)")
        if oauth.client_certificate is not None and not oauth.client_certificate.is_file():
            problems.append(f"SMTP_OAUTH_CLIENT_CERTIFICATE names {oauth.client_certificate}, which does not exist")
    if smtp.auth == "oauth2-google":
        path = oauth.service_account_file
        if path is None:
            problems.append("SMTP_OAUTH_SERVICE_ACCOUNT_FILE is not set (the service account's JSON key file)")
        elif not path.is_file():
            problems.append(f"SMTP_OAUTH_SERVICE_ACCOUNT_FILE names {path}, which does not exist")
    return problems


def device_code_sign_in(settings: Settings, *, show: Callable[[str], None]) -> str:
    """``mailroom sign-in``: the device-code sign-in as the mailbox's user; returns what to tell the office."""
    if settings.smtp.auth != "oauth2-microsoft":
        raise ConfigError("mailroom sign-in is for Microsoft 365 sign-in as the mailbox's user: set "
                          "SMTP_AUTH=oauth2-microsoft in .env (Google and app sign-in need no sign-in here)")
    source = make_token_source(settings)
    if not isinstance(source, MicrosoftUserTokens):
        raise ConfigError("SMTP_OAUTH_CLIENT_SECRET (or a certificate) is set, so mailroom signs in as the app and "
                          "nobody needs to sign in here; remove it from .env to sign in as the mailbox's user")
    show(f"Sign in as {settings.smtp.username}, on this computer or your phone:")
    account = source.sign_in(show)
    return (f"Signed in as {account}. mailroom keeps this sign-in in {source.cache_path} (readable only by you) "
            "and renews it by itself; sign in again only if it asks you to.")


def _loopback(host: str) -> bool:
    return host in ("localhost", "127.0.0.1", "::1")


def make_token_source(settings: Settings, *, clock: Callable[[], float] = time.time,
                      http_client: Any = None) -> TokenSource | None:
    """The token source SMTP_AUTH asks for (None for a username and password); ConfigError if incomplete."""
    if settings.smtp.auth == "password":
        return None
    problems = oauth_setting_problems(settings)
    if problems:
        raise ConfigError(problems[0])
    if settings.smtp.auth == "oauth2-google":
        return GoogleServiceAccountTokens(settings, clock=clock)
    oauth = settings.smtp.oauth
    if oauth.client_secret or oauth.client_certificate is not None:
        return MicrosoftAppTokens(settings, clock=clock, http_client=http_client)
    return MicrosoftUserTokens(settings, clock=clock, http_client=http_client)
