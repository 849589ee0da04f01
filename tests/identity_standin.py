"""Stand-ins on 127.0.0.1 for the identity platforms mailroom signs in with, speaking their documented APIs,
and an SMTP server (aiosmtpd) that offers AUTH XOAUTH2 and accepts only the tokens they issued.

- ``MicrosoftIdentity``: the Microsoft identity platform (v2.0) over HTTPS with a test certificate
  authority: the tenant's OpenID configuration, the token endpoint (client credentials with a secret or a
  certificate's signed assertion, device code, refresh token) and the device-code endpoint. Errors are the
  documented JSON bodies with their AADSTS codes.
- ``GoogleTokenEndpoint``: Google's OAuth 2.0 token endpoint for service accounts (a JWT bearer grant,
  RFC 7523), checking the assertion's signature against the service account's public key.
- ``OAuthSmtpHandler``: aiosmtpd handler offering XOAUTH2 (and nothing else) that accepts a token only for
  the mailbox it was issued for, while it has not expired on the shared clock, and (Microsoft) only when the
  app holds SMTP.SendAsApp. A session whose token expires is refused at the next MAIL with a 421.
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from tests.smtp_server import ScriptedHandler, free_port


@dataclass
class Grant:
    mailbox: str  # who may be signed in with it ("" = any mailbox the app may use)
    roles: tuple[str, ...]
    expires_at: float
    issuer: str  # "microsoft" or "google"


@dataclass
class Tokens:
    """Every access token the stand-ins issued, so the SMTP server can accept exactly those."""

    clock: Callable[[], float]
    issued: dict[str, Grant] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def issue(self, mailbox: str, roles: tuple[str, ...], lifetime: float, issuer: str) -> str:
        value = "eyJ0eXAi." + secrets.token_urlsafe(24)
        with self.lock:
            self.issued[value] = Grant(mailbox, roles, self.clock() + lifetime, issuer)
        return value


def _b64url(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


@dataclass
class App:
    """An app registration in the stand-in tenant."""

    client_id: str
    secret: str = ""
    certificate_pem: bytes = b""  # the public certificate uploaded to the registration
    roles: tuple[str, ...] = ("SMTP.SendAsApp",)  # application permissions with admin consent
    public_client: bool = False  # "Allow public client flows"
    consented_scopes: tuple[str, ...] = ("https://outlook.office.com/SMTP.Send",)


class MicrosoftIdentity:
    """The identity platform for one tenant; start() serves it over HTTPS on 127.0.0.1."""

    def __init__(self, tokens: Tokens, tls: ssl.SSLContext, *, tenant: str = "oakfield-tenant-id",
                 lifetime: float = 3600.0) -> None:
        self.tokens, self.tenant, self.lifetime = tokens, tenant, lifetime
        self.apps: dict[str, App] = {}
        self.users = {"newsletter@oakfield.example.org"}
        self.device_codes: dict[str, dict[str, Any]] = {}  # device_code -> {"user", "polls", "client_id"}
        self.refresh_tokens: dict[str, tuple[str, str]] = {}  # refresh token -> (user, client_id)
        self.requests: list[tuple[str, dict[str, str]]] = []  # (path, form) in order
        self.mfa_required = False
        self.auto_approve = ""  # a user who approves every device code after the first poll (for subprocesses)
        port = free_port()
        self.base = f"https://127.0.0.1:{port}"
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    @property
    def authority(self) -> str:
        return self.base

    def token_endpoint(self) -> str:
        return f"{self.base}/{self.tenant}/oauth2/v2.0/token"

    def start(self) -> MicrosoftIdentity:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- the documented answers -------------------------------------------------------------------

    def configuration(self, tenant: str) -> tuple[int, dict[str, Any]]:
        if tenant != self.tenant:
            return 400, {"error": "invalid_tenant", "error_codes": [90002],
                         "error_description": f"AADSTS90002: Tenant '{tenant}' not found."}
        root = f"{self.base}/{tenant}"
        return 200, {"token_endpoint": f"{root}/oauth2/v2.0/token",
                     "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
                     "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
                     "issuer": f"{root}/v2.0", "response_types_supported": ["code"]}

    @staticmethod
    def _error(status: int, error: str, code: int, text: str) -> tuple[int, dict[str, Any]]:
        return status, {"error": error, "error_codes": [code], "error_description": f"AADSTS{code}: {text}",
                        "timestamp": "2026-12-04 08:00:00Z", "trace_id": secrets.token_hex(8)}

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        app = self.apps.get(form.get("client_id", ""))
        if app is None:
            return self._error(400, "unauthorized_client", 700016,
                               f"Application with identifier '{form.get('client_id')}' was not found in the "
                               f"directory '{self.tenant}'.")
        grant = form.get("grant_type", "")
        if grant == "client_credentials":
            return self._client_credentials(app, form)
        if grant == "urn:ietf:params:oauth:grant-type:device_code":
            return self._device_code_grant(app, form)
        if grant == "refresh_token":
            user, client_id = self.refresh_tokens.pop(form.get("refresh_token", ""), ("", ""))
            if not user or client_id != app.client_id:
                return self._error(400, "invalid_grant", 70008, "The provided authorization code or refresh "
                                   "token has expired due to inactivity.")
            return 200, self._user_tokens(app, user)
        return 400, {"error": "unsupported_grant_type"}

    def _client_credentials(self, app: App, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if form.get("client_assertion"):
            if not self._assertion_valid(app, form["client_assertion"]):
                return self._error(401, "invalid_client", 700027, "Client assertion failed signature validation.")
        elif form.get("client_secret") != app.secret or not app.secret:
            return self._error(401, "invalid_client", 7000215,
                               "Invalid client secret provided. Ensure the secret being sent in the request is "
                               "the client secret value, not the client secret ID.")
        if form.get("scope") != "https://outlook.office365.com/.default":
            return self._error(400, "invalid_scope", 70011, f"The provided value for scope {form.get('scope')} "
                               "is not valid.")
        # Entra issues a token whatever was consented; the roles claim says what the app may do.
        token = self.tokens.issue("", app.roles, self.lifetime, "microsoft")
        return 200, {"token_type": "Bearer", "expires_in": int(self.lifetime), "ext_expires_in": int(self.lifetime),
                     "access_token": token}

    def _assertion_valid(self, app: App, assertion: str) -> bool:
        from cryptography import x509

        if not app.certificate_pem:
            return False
        key = x509.load_pem_x509_certificate(app.certificate_pem).public_key()
        try:
            claims = jwt.decode(assertion, key=key, algorithms=["RS256", "PS256"], audience=self.token_endpoint(),
                                options={"verify_exp": False, "verify_nbf": False, "verify_iat": False})
        except jwt.PyJWTError:
            return False
        return bool(claims.get("iss") == app.client_id == claims.get("sub"))

    def device_code(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        app = self.apps.get(form.get("client_id", ""))
        if app is None:
            return self._error(400, "unauthorized_client", 700016,
                               f"Application with identifier '{form.get('client_id')}' was not found.")
        if not app.public_client:
            return self._error(401, "invalid_client", 7000218,
                               "The request body must contain the following parameter: 'client_assertion' or "
                               "'client_secret'.")
        code = secrets.token_urlsafe(16)
        user_code = secrets.token_hex(4).upper()
        self.device_codes[code] = {"user": "", "client_id": app.client_id, "scope": form.get("scope", "")}
        return 200, {"device_code": code, "user_code": user_code, "verification_uri": "https://microsoft.com/devicelogin",
                     "expires_in": 900, "interval": 0,
                     "message": f"To sign in, use a web browser to open the page https://microsoft.com/devicelogin "
                                f"and enter the code {user_code} to authenticate."}

    def approve_device_codes(self, user: str) -> None:
        """What the person does in the browser: sign in as ``user`` and accept."""
        for entry in self.device_codes.values():
            entry["user"] = user

    def _device_code_grant(self, app: App, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        entry = self.device_codes.get(form.get("device_code", ""))
        if entry is None:
            return 400, {"error": "expired_token", "error_description": "AADSTS70020: The provided value for the "
                         "input parameter 'device_code' is not valid. This device code has expired."}
        if not entry["user"]:
            entry["user"] = self.auto_approve  # the person signs in in the browser while mailroom polls
            return 400, {"error": "authorization_pending", "error_description": "AADSTS70016: OAuth 2.0 device flow "
                         "error. Authorization is pending. Continue polling."}
        if self.mfa_required:
            return self._error(400, "invalid_grant", 50076, "Due to a configuration change made by your "
                               "administrator, or because you moved to a new location, you must use multi-factor "
                               "authentication to access '00000002-0000-0ff1-ce00-000000000000'.")
        if "https://outlook.office.com/SMTP.Send" not in app.consented_scopes:
            return self._error(400, "invalid_grant", 65001, "The user or administrator has not consented to use "
                               f"the application with ID '{app.client_id}'. Send an interactive authorization "
                               "request for this user and resource.")
        del self.device_codes[form["device_code"]]
        return 200, self._user_tokens(app, entry["user"])

    def _user_tokens(self, app: App, user: str) -> dict[str, Any]:
        refresh = "rt." + secrets.token_urlsafe(24)
        self.refresh_tokens[refresh] = (user, app.client_id)
        oid = "00000000-0000-0000-0000-0000000000aa"
        id_token = ".".join([_b64url({"alg": "none", "typ": "JWT"}), _b64url({
            "iss": f"{self.base}/{self.tenant}/v2.0", "aud": app.client_id, "sub": "subject-" + oid, "oid": oid,
            "tid": self.tenant, "preferred_username": user, "name": "Newsletter", "exp": 4_000_000_000,
            "iat": 1_700_000_000}), "sig"])
        return {"token_type": "Bearer", "scope": "https://outlook.office.com/SMTP.Send",
                "expires_in": int(self.lifetime), "ext_expires_in": int(self.lifetime),
                "access_token": self.tokens.issue(user, ("SMTP.Send",), self.lifetime, "microsoft"),
                "refresh_token": refresh, "id_token": id_token,
                "client_info": _b64url({"uid": oid, "utid": self.tenant})}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        identity = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                parts = urlsplit(self.path).path.strip("/").split("/")
                identity.requests.append((self.path, {}))
                if len(parts) == 4 and parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
                    self._answer(*identity.configuration(parts[0]))
                else:
                    self._answer(404, {"error": "not_found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                path = urlsplit(self.path).path
                identity.requests.append((path, form))
                tenant = path.strip("/").split("/")[0]
                if tenant != identity.tenant:
                    self._answer(*identity.configuration(tenant))
                elif path.endswith("/oauth2/v2.0/token"):
                    self._answer(*identity.token(form))
                elif path.endswith("/oauth2/v2.0/devicecode"):
                    self._answer(*identity.device_code(form))
                else:
                    self._answer(404, {"error": "not_found"})

        return Handler


GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"


class GoogleTokenEndpoint:
    """https://oauth2.googleapis.com/token for service accounts, over plain HTTP on 127.0.0.1 (the key
    file's token_uri points here)."""

    def __init__(self, tokens: Tokens, *, lifetime: float = 3599.0) -> None:
        self.tokens, self.lifetime = tokens, lifetime
        self.accounts: dict[str, Any] = {}  # client_email -> public key
        self.delegated: dict[str, set[str]] = {}  # client_email -> scopes allowed by domain-wide delegation
        self.users = {"newsletter@oakfield.example.org"}
        self.assertions: list[dict[str, Any]] = []
        port = free_port()
        self.token_uri = f"http://127.0.0.1:{port}/token"
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    def start(self) -> GoogleTokenEndpoint:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def service_account_file(self, folder: Path, *, delegated: bool = True) -> Path:
        """A key file as Google Cloud console downloads it, for a new service account of this stand-in."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        email = f"mailroom-{secrets.token_hex(3)}@oakfield-newsletter.iam.gserviceaccount.com"
        self.accounts[email] = key.public_key()
        self.delegated[email] = {"https://mail.google.com/"} if delegated else set()
        info = {"type": "service_account", "project_id": "oakfield-newsletter", "private_key_id": secrets.token_hex(20),
                "private_key": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()).decode(),
                "client_email": email, "client_id": "1" + secrets.token_hex(10), "token_uri": self.token_uri,
                "auth_uri": "https://accounts.google.com/o/oauth2/auth"}
        path = folder / "service-account.json"
        path.write_text(json.dumps(info))
        return path

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return 400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type: "}
        assertion = form.get("assertion", "")
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
            key = self.accounts[unverified["iss"]]
            # google-auth signs for Google's token endpoint whatever the file's token_uri says, as Google expects
            claims = jwt.decode(assertion, key=key, algorithms=["RS256"], audience=GOOGLE_TOKEN_AUDIENCE,
                                options={"verify_exp": False, "verify_iat": False})
        except (jwt.PyJWTError, KeyError):
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        self.assertions.append(claims)
        scopes = set(claims.get("scope", "").split())
        if not scopes or not scopes <= self.delegated[claims["iss"]]:
            return 401, {"error": "unauthorized_client", "error_description": "Client is unauthorized to retrieve "
                         "access tokens using this method, or client not authorized for any of the scopes "
                         "requested."}
        if claims.get("sub") not in self.users:
            return 400, {"error": "invalid_grant", "error_description": "Invalid email or User ID"}
        token = self.tokens.issue(claims["sub"], tuple(sorted(scopes)), self.lifetime, "google")
        return 200, {"access_token": token, "expires_in": int(self.lifetime), "token_type": "Bearer"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                status, body = endpoint.token(form)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


class OAuthSmtpHandler(ScriptedHandler):
    """aiosmtpd handler: AUTH XOAUTH2 accepting only issued, unexpired tokens for the right mailbox."""

    def __init__(self, tokens: Tokens, *, style: str = "microsoft", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tokens = tokens
        self.style = style  # "microsoft" answers 535 at once; "google" sends a 334 JSON error first
        self.smtp_auth_disabled = False
        self.refuse_next_valid_token = 0  # refuse this many valid tokens (as if revoked), to test renewal
        self.auth_attempts: list[tuple[str, str, bool]] = []  # (user, token, accepted)

    def _refusal(self, grant: Grant | None, user: str) -> str | None:
        if self.smtp_auth_disabled:
            return ("535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox. "
                    "Visit https://aka.ms/smtp_auth_disabled for more information.")
        if (grant is None or grant.expires_at <= self.tokens.clock() or grant.mailbox not in ("", user)
                or not ({"SMTP.SendAsApp", "SMTP.Send", "https://mail.google.com/"} & set(grant.roles))):
            return ("535 5.7.3 Authentication unsuccessful" if self.style == "microsoft"
                    else "535-5.7.8 Username and Password not accepted.")
        if self.refuse_next_valid_token:
            self.refuse_next_valid_token -= 1
            return "535 5.7.3 Authentication unsuccessful"
        return None

    async def auth_XOAUTH2(self, server: Any, args: list[str]) -> AuthResult:
        blob = base64.b64decode(args[1]) if len(args) > 1 else await server.challenge_auth("")
        fields = dict(part.split("=", 1) for part in blob.decode().split("\x01") if "=" in part)
        user, token = fields.get("user", ""), fields.get("auth", "").removeprefix("Bearer ")
        grant = self.tokens.issued.get(token)
        refusal = self._refusal(grant, user)
        self.auth_attempts.append((user, token, refusal is None))
        if refusal is None:
            return AuthResult(success=True, auth_data=grant)
        if self.style == "google":
            await server.challenge_auth(json.dumps({"status": "400", "schemes": "Bearer",
                                                    "scope": "https://mail.google.com/"}))
        return AuthResult(success=False, handled=False, message=refusal)

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]) -> str:
        grant = session.auth_data
        if isinstance(grant, Grant) and grant.expires_at <= self.tokens.clock():
            return "421 4.7.0 The access token has expired; sign in again"
        return await super().handle_MAIL(server, session, envelope, address, mail_options)

    def accepted_tokens(self) -> list[str]:
        return [token for _user, token, ok in self.auth_attempts if ok]


def start_oauth_smtp(handler: OAuthSmtpHandler, tls: ssl.SSLContext) -> Controller:
    """aiosmtpd on 127.0.0.1 requiring STARTTLS, offering AUTH XOAUTH2 only (as Exchange Online and Gmail do
    for OAuth); the caller stops it."""
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), tls_context=tls, require_starttls=True,
                            auth_require_tls=True, auth_exclude_mechanism=["PLAIN", "LOGIN"])
    controller.start()
    return controller
