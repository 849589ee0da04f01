"""school.toml + .env + the environment, read once and validated, as one frozen object.

Nothing else in mailroom reads the environment or school.toml: everything takes a ``Settings``.
Secrets are wrapped in ``Secret`` so that printing or logging a settings object never shows them.
"""

from __future__ import annotations

import os
import re
import tomllib
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from mailroom.errors import ConfigError
from mailroom.secrets import Secret, register_environment

SCHOOL_FILE = "school.toml"
TRANSPORTS = ("outbox", "sendgrid", "smtp")
SMTP_SECURITY = ("starttls", "ssl", "none")
SMTP_AUTH = ("password", "oauth2-microsoft", "oauth2-google")
MICROSOFT_AUTHORITY = "https://login.microsoftonline.com"
_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
_LIST_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_EMAIL = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")


@dataclass(frozen=True)
class School:
    name: str
    address: str
    website: str
    language: str = "en-GB"
    direction: str = "ltr"


@dataclass(frozen=True)
class Sender:
    name: str
    email: str
    reply_to: str


@dataclass(frozen=True)
class MailingList:
    """One list in school.toml: who it is for and how to greet someone whose name we don't have.

    ``file``: everyone in that file (an export of its own, e.g. staff) is on this list, read with ``columns``."""

    name: str
    description: str
    greeting: str
    file: Path | None = None
    columns: ColumnMapping | None = None  # how ``file``'s columns are named; None: [audiences_csv]'s


@dataclass(frozen=True)
class Brand:
    primary: str
    accent: str
    text: str
    background: str
    logo: Path | None
    logo_alt: str


@dataclass(frozen=True)
class Tracking:
    utm_source: str
    utm_medium: str
    click_tracking: bool = True
    # Tracking pixels need consent under UK PECR, so opens are off unless the school turns them on.
    open_tracking: bool = False


@dataclass(frozen=True)
class Unsubscribe:
    """Where a reader goes to stop receiving the newsletter. ``{recipient_id}`` is an opaque id."""

    url: str
    mailto: str


# What a consent column may say, matched ignoring case, spaces, '-' and '_' (docs/audiences.md). Blank is
# "subscribed" by default, as it always was for the status column: schools send the newsletter to every
# parent unless they opted out. A school whose column is an opt-in question lists its own values, and then
# blank means whatever they say, or is a problem on its line if they do not say.
SUBSCRIBED_VALUES = ("subscribed", "yes", "y", "true", "1", "opted in", "opt in", "")
UNSUBSCRIBED_VALUES = ("unsubscribed", "no", "n", "false", "0", "opted out", "opt out")
# Names a list cannot have: compose writes web.html and preview.html beside the versions.
RESERVED_LIST_NAMES = {"web": "the web copy (build/web.html)", "preview": "the preview page (build/preview.html)"}


@dataclass(frozen=True)
class ContactColumns:
    """One contact's columns on a row holding several (e.g. 'Contact 1 Email', 'Contact 1 Forename')."""

    email: str
    first_name: str = ""  # "": no such column
    last_name: str = ""
    status: str = ""  # "": the row's status column, if any


@dataclass(frozen=True)
class ColumnMapping:
    """Which heading in a lists file holds each field (matched ignoring case, spaces and punctuation),
    which sheet of a workbook to read, and what the consent column's values mean."""

    email: str = "email"
    first_name: str = "first_name"
    last_name: str = "last_name"
    lists: str = "lists"
    status: str = "status"
    language: str = "language"  # optional: each person's language (pl, ar, pt-PT; blank: the school's)
    sheet: str = ""  # a workbook's sheet; "": the first
    contacts: tuple[ContactColumns, ...] = ()  # several contacts per row; (): one, from email/first/last_name
    subscribed_values: tuple[str, ...] = SUBSCRIBED_VALUES
    unsubscribed_values: tuple[str, ...] = UNSUBSCRIBED_VALUES

    def people_columns(self) -> tuple[ContactColumns, ...]:
        """The contacts a row holds: those of ``contacts``, or the one of email/first_name/last_name."""
        return self.contacts or (ContactColumns(self.email, self.first_name, self.last_name),)


@dataclass(frozen=True)
class SendGridSettings:
    api_key: Secret
    host: str
    timeout_seconds: float
    batch_size: int
    categories: tuple[str, ...]
    asm_group_id: int | None
    webhook_public_key: str


@dataclass(frozen=True)
class OAuthSettings:
    """How mailroom signs in to the relay without a password (SMTP_AUTH=oauth2-microsoft / oauth2-google).

    Only read here; ``mailroom.send.transports.oauth`` checks that what its way of signing in needs is set.
    """

    tenant_id: str = ""
    client_id: str = ""
    client_secret: Secret = field(default_factory=lambda: Secret(""))
    client_certificate: Path | None = None  # a PEM file with the app's private key and its certificate
    authority: str = MICROSOFT_AUTHORITY  # another host for national clouds (and the tests' stand-in)
    scope: str = ""  # "" = the usual Exchange Online scope for the way of signing in
    token_cache: Path | None = None  # the signed-in user's token cache file (device-code sign-in)
    service_account_file: Path | None = None  # Google: the service account's JSON key file


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    username: str
    password: Secret
    security: str
    messages_per_minute: int  # 0 means no cap
    daily_limit: int  # 0 means no limit
    timeout_seconds: float
    auth: str = "password"  # one of SMTP_AUTH
    oauth: OAuthSettings = field(default_factory=OAuthSettings)
    ca_file: Path | None = None  # a private certificate authority the relay's certificate comes from


ENGINES = ("deepl", "libretranslate")


@dataclass(frozen=True)
class TranslationSettings:
    """[translation] in school.toml and the engines' secrets in .env. ``engine`` "" means no machine translation."""

    engine: str = ""
    keep: tuple[str, ...] = ()  # names never translated: the school's name is always added
    timeout_seconds: float = 30.0
    retries: int = 2
    deepl_auth_key: Secret = field(default_factory=lambda: Secret(""))
    deepl_server_url: str = ""
    libretranslate_url: str = ""
    libretranslate_api_key: Secret = field(default_factory=lambda: Secret(""))
    cache_path: Path = Path("translations.sqlite3")


@dataclass(frozen=True)
class Settings:
    root: Path
    school: School
    sender: Sender
    lists: Mapping[str, MailingList]
    brand: Brand
    tracking: Tracking
    unsubscribe: Unsubscribe
    columns: ColumnMapping
    archive_audience: str
    transport: str
    outbox_dir: Path
    db_path: Path
    sendgrid: SendGridSettings
    smtp: SmtpSettings
    source_file: Path = field(default=Path(SCHOOL_FILE))
    dns_server: str = ""  # MAILROOM_DNS_SERVER ("host" or "host:port"): where ``mailroom doctor`` asks; "" = system
    translation: TranslationSettings = field(default_factory=TranslationSettings)
    web_url: str = ""  # where the web copy is published ({slug}: the newsletter folder's name); "" if it is not

    def list_names(self) -> list[str]:
        return list(self.lists)


class _Reader:
    """Typed access to one TOML table, with messages that name the file and the key."""

    def __init__(self, path: Path, data: Mapping[str, Any], prefix: str = "") -> None:
        self.path, self.data, self.prefix = path, data, prefix

    def _name(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def fail(self, key: str, expected: str) -> ConfigError:
        return ConfigError(f"'{self._name(key)}' should be {expected}", self.path)

    def table(self, key: str, required: bool = True) -> _Reader:
        value = self.data.get(key, None)
        if value is None and not required:
            return _Reader(self.path, {}, f"{self._name(key)}.")
        if not isinstance(value, Mapping):
            raise ConfigError(f"a [{self._name(key)}] section is needed", self.path)
        return _Reader(self.path, value, f"{self._name(key)}.")

    def text(self, key: str, default: str | None = None) -> str:
        value = self.data.get(key, default)
        if value is None:
            raise ConfigError(f"'{self._name(key)}' is missing", self.path)
        if not isinstance(value, str):
            raise self.fail(key, "text in quotes")
        if not value.strip() and default is None:
            raise ConfigError(f"'{self._name(key)}' is empty", self.path)
        if any(ch in value for ch in "\r\n\x00"):
            raise self.fail(key, "a single line")
        return value.strip()

    def email(self, key: str, default: str | None = None) -> str:
        value = self.text(key, default)
        if value and not _EMAIL.match(value):
            raise self.fail(key, f"an email address like office@school.example.org, not '{value}'")
        return value

    def colour(self, key: str, default: str) -> str:
        value = self.text(key, default)
        if not _COLOUR.match(value):
            raise self.fail(key, f"a colour like #1d3f72, not '{value}'")
        return value.lower()

    def boolean(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, "true or false")
        return value

    def integer(self, key: str, default: int | None, minimum: int = 0) -> int | None:
        value = self.data.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(key, f"a whole number, at least {minimum}")
        return value

    def number(self, key: str, default: float, minimum: float = 0.0) -> float:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= minimum:
            raise self.fail(key, f"a number above {minimum:g}")
        return float(value)

    def text_list(self, key: str, default: list[str]) -> tuple[str, ...]:
        value = self.data.get(key, default)
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise self.fail(key, 'a list of text, like ["newsletter"]')
        return tuple(v.strip() for v in value)


def _column_mapping(table: _Reader, base: ColumnMapping, *, lists_column: bool) -> ColumnMapping:
    """[audiences_csv] (or a list file's ``columns``) over ``base``: headings, sheet, contacts, consent values."""
    if not lists_column and "lists" in table.data:
        raise table.fail("lists", "left out: everyone in a list's own file is on that list")
    names = {f: table.text(f, getattr(base, f)) for f in ("email", "first_name", "last_name", "lists", "status",
                                                           "language", "sheet")}
    contacts = base.contacts if not any(f in table.data for f in ("email", "first_name", "last_name")) else ()
    if "contacts" in table.data:
        if any(f in table.data for f in ("email", "first_name", "last_name")):
            raise table.fail("contacts", "given instead of email, first_name and last_name, not as well "
                                         "(each contact names its own columns)")
        contacts = _contacts(table)
    values = base.subscribed_values, base.unsubscribed_values
    given = [key for key in ("subscribed_values", "unsubscribed_values") if key in table.data]
    if len(given) == 1:
        raise table.fail(given[0], "given together with "
                         f"{'unsubscribed_values' if given[0] == 'subscribed_values' else 'subscribed_values'}, "
                         "so every value of the column has one meaning")
    if given:
        values = (_consent_values(table, "subscribed_values"), _consent_values(table, "unsubscribed_values"))
        both = set(values[0]) & set(values[1])
        if both:
            raise table.fail("unsubscribed_values", f"different from subscribed_values (both have "
                                                    f"'{sorted(both)[0]}')")
    return ColumnMapping(**names, contacts=contacts, subscribed_values=values[0], unsubscribed_values=values[1])


def consent_key(value: str) -> str:
    """A consent value as compared: "Opted-In " and "opted in" are the same."""
    return " ".join(value.replace("-", " ").replace("_", " ").casefold().split())


def _consent_values(table: _Reader, key: str) -> tuple[str, ...]:
    value = table.data.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str | int | bool) for v in value):
        raise table.fail(key, 'a list of the values the column holds, like ["Yes", "Y"] ("" for a blank cell)')
    return tuple(dict.fromkeys(consent_key(str(v).upper() if isinstance(v, bool) else str(v)) for v in value))


def _contacts(table: _Reader) -> tuple[ContactColumns, ...]:
    value = table.data.get("contacts")
    example = '[{email = "Contact 1 Email", first_name = "Contact 1 Forename", last_name = "Contact 1 Surname"}, ...]'
    if not isinstance(value, list) or not value or not all(isinstance(v, Mapping) for v in value):
        raise table.fail("contacts", f"a list of contacts, each with its columns, like {example}")
    contacts = []
    for number, item in enumerate(value, start=1):
        one = _Reader(table.path, item, f"{table.prefix}contacts[{number}].")
        unknown = sorted(set(item) - {"email", "first_name", "last_name", "status"})
        if unknown:
            raise one.fail(unknown[0], "one of email, first_name, last_name, status")
        contacts.append(ContactColumns(email=one.text("email"), first_name=one.text("first_name", ""),
                                       last_name=one.text("last_name", ""), status=one.text("status", "")))
    return tuple(contacts)


# --- SendGrid ------------------------------------------------------------------------------------

SENDGRID_DEFAULT_HOST = "https://api.sendgrid.com"
# Plain http may carry the API key only to this computer (the tests' stand-in SendGrid).
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
_MAX_CATEGORIES = 10  # SendGrid's limit per request
_MAX_CATEGORY_LENGTH = 255


def sendgrid_api_host(value: str) -> str:
    """SENDGRID_API_HOST as the base URL the SendGrid library wants: ``scheme://host[:port]``, no path.

    The address is parsed, not prefix-matched (``http://127.0.0.1.attacker.example`` starts like a
    loopback address and is not one): https for any host, plain http only for exactly 127.0.0.1, ::1
    or localhost. A trailing ``/v3`` is understood, because the library adds ``/v3`` itself and
    ``.../v3/v3/mail/send`` would not exist. Anything else is a settings error: the API key is sent to
    whatever this names.
    """
    text = value.strip()
    if not text:
        return SENDGRID_DEFAULT_HOST

    def wrong(why: str) -> ConfigError:
        return ConfigError(f"SENDGRID_API_HOST should be SendGrid's API address, like {SENDGRID_DEFAULT_HOST} "
                           f"(or https://api.eu.sendgrid.com for EU data residency); '{text}' {why}")

    if any(ch.isspace() or ord(ch) < 0x21 or ord(ch) > 0x7E or ch == "\\" for ch in text):
        raise wrong("contains spaces or characters an address cannot have")
    parts = urllib.parse.urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or not parts.netloc:
        raise wrong("is not an https:// address")
    if "@" in parts.netloc:
        raise wrong("has a user name or password in it")
    if parts.query or parts.fragment or "?" in text or "#" in text:
        raise wrong("has a query or a fragment (? or #) in it")
    if parts.path.rstrip("/") not in ("", "/v3"):
        raise wrong("has a path; give only the address, optionally ending in /v3")
    try:
        host, port = parts.hostname or "", parts.port
    except ValueError:
        raise wrong("has a port that is not a number from 1 to 65535") from None
    if not host or (port is not None and not 0 < port < 65536):
        raise wrong("has no host name or a port that is not a number from 1 to 65535")
    if scheme == "http" and host not in _LOOPBACK_HOSTS:
        raise wrong("is not https:// (only this computer, 127.0.0.1, ::1 or localhost, may use http://)")
    shown_host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown_host}" + (f":{port}" if port is not None else "")


def _categories(table: _Reader) -> tuple[str, ...]:
    """[sendgrid] categories: at most 9 (the newsletter's own name is always added), unique, short."""
    categories = table.text_list("categories", ["newsletter"])
    if len(categories) > _MAX_CATEGORIES - 1:
        raise table.fail("categories", f"at most {_MAX_CATEGORIES - 1} names (SendGrid allows {_MAX_CATEGORIES} "
                                       "per email, and mailroom adds the newsletter's own)")
    too_long = [c for c in categories if len(c) > _MAX_CATEGORY_LENGTH]
    if too_long:
        raise table.fail("categories", f"names of at most {_MAX_CATEGORY_LENGTH} characters "
                                       f"('{too_long[0][:40]}...' is {len(too_long[0])})")
    return tuple(dict.fromkeys(categories))


def _ascii_address(table: _Reader, key: str, address: str) -> None:
    """The sender's addresses must be plain ASCII: SendGrid refuses others, and so do most SMTP relays."""
    if address.isascii():
        return
    local, _, domain = address.rpartition("@")
    hint = ""
    if local.isascii():
        import idna

        try:
            hint = f" (write the domain as {local}@{idna.encode(domain, uts46=True).decode('ascii')})"
        except idna.IDNAError:
            hint = ""
    raise table.fail(key, f"an address in plain letters (A-Z), digits and punctuation, not '{address}'{hint}")


def _environment(root: Path, environ: Mapping[str, str] | None) -> dict[str, str]:
    """.env under ``root`` overlaid by the real environment (the real environment wins)."""
    merged: dict[str, str] = {}
    env_file = root / ".env"
    if env_file.is_file():
        merged.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    merged.update(os.environ if environ is None else environ)
    return merged


def _env_path(root: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else root / path


def _optional_path(root: Path, env: Mapping[str, str], name: str) -> Path | None:
    value = env.get(name, "").strip()
    return _env_path(root, value) if value else None


def _smtp_auth(env: Mapping[str, str]) -> str:
    auth = env.get("SMTP_AUTH", "").strip().lower() or "password"
    if auth not in SMTP_AUTH:
        raise ConfigError(f"SMTP_AUTH is '{auth}'; it should be one of: {', '.join(SMTP_AUTH)}")
    return auth


def _oauth_settings(root: Path, env: Mapping[str, str]) -> OAuthSettings:
    authority = env.get("SMTP_OAUTH_AUTHORITY", "").strip().rstrip("/") or MICROSOFT_AUTHORITY
    if not authority.startswith("https://"):
        raise ConfigError(f"SMTP_OAUTH_AUTHORITY should be an https:// address, not '{authority}'")
    return OAuthSettings(
        tenant_id=env.get("SMTP_OAUTH_TENANT_ID", "").strip(),
        client_id=env.get("SMTP_OAUTH_CLIENT_ID", "").strip(),
        client_secret=Secret(env.get("SMTP_OAUTH_CLIENT_SECRET", "").strip()),
        client_certificate=_optional_path(root, env, "SMTP_OAUTH_CLIENT_CERTIFICATE"),
        authority=authority,
        scope=env.get("SMTP_OAUTH_SCOPE", "").strip(),
        token_cache=_optional_path(root, env, "SMTP_OAUTH_TOKEN_CACHE"),
        service_account_file=_optional_path(root, env, "SMTP_OAUTH_SERVICE_ACCOUNT_FILE"),
    )


def load_settings(root: Path | str | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate school.toml, .env and the environment of the project at ``root`` (default: cwd)."""
    root = Path(root or Path.cwd()).resolve()
    path = root / SCHOOL_FILE
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(
            "not found: mailroom needs the school's settings file here (run commands from the project folder)",
            path,
        ) from None
    except tomllib.TOMLDecodeError as exc:
        where = re.search(r"\(at line (\d+)", str(exc))
        line = int(where.group(1)) if where else None
        message = str(exc).split(" (at ")[0]
        raise ConfigError(f"this is not valid TOML: {message}", path, line) from None

    top = _Reader(path, data)
    school_t = top.table("school")
    school = School(
        name=school_t.text("name"),
        address=school_t.text("address"),
        website=school_t.text("website"),
        language=school_t.text("language", "en-GB"),
        direction=school_t.text("direction", "ltr"),
    )
    if school.direction not in ("ltr", "rtl"):
        raise school_t.fail("direction", '"ltr" or "rtl"')
    if not school.website.startswith("https://"):
        raise school_t.fail("website", "an https:// address")

    sender_t = top.table("sender")
    sender = Sender(
        name=sender_t.text("name"),
        email=sender_t.email("email"),
        reply_to=sender_t.email("reply_to", ""),
    )
    if not sender.reply_to:
        sender = Sender(sender.name, sender.email, sender.email)
    for key in ("email", "reply_to"):
        _ascii_address(sender_t, key, getattr(sender, key))

    cols_t = top.table("audiences_csv", required=False)
    columns = _column_mapping(cols_t, ColumnMapping(), lists_column=True)

    lists_t = top.table("lists")
    if not lists_t.data:
        raise ConfigError("[lists] needs at least one list, like [lists.parents]", path)
    lists: dict[str, MailingList] = {}
    for name in lists_t.data:
        if not _LIST_NAME.match(name):
            raise ConfigError(
                f"list name '{name}' should be lower-case letters, digits, '-' or '_'", path)
        if name in RESERVED_LIST_NAMES:
            raise ConfigError(f"a list cannot be called '{name}': that name is kept for "
                              f"{RESERVED_LIST_NAMES[name]}. Rename [lists.{name}], e.g. to [lists.{name}-list], "
                              "and use the new name in --to and the newsletters' audiences", path)
        one = lists_t.table(name)
        file_name = one.text("file", "")
        list_columns = None
        if file_name:
            columns_t = one.table("columns", required=False)
            list_columns = _column_mapping(columns_t, columns, lists_column=False)
        elif "columns" in one.data:
            raise one.fail("columns", 'given only with file = "..." (the columns of that file)')
        lists[name] = MailingList(name=name, description=one.text("description"),
                                  greeting=one.text("greeting"),
                                  file=_env_path(root, file_name) if file_name else None, columns=list_columns)

    brand_t = top.table("brand")
    logo_value = brand_t.text("logo", "")
    logo = (root / logo_value) if logo_value else None
    if logo is not None and not logo.is_file():
        raise ConfigError(f"brand.logo names '{logo_value}', but there is no such file", path)
    brand = Brand(
        primary=brand_t.colour("primary", "#1d3f72"),
        accent=brand_t.colour("accent", "#0f766e"),
        text=brand_t.colour("text", "#1f2937"),
        background=brand_t.colour("background", "#f3f4f6"),
        logo=logo,
        logo_alt=brand_t.text("logo_alt", school.name),
    )

    tracking_t = top.table("tracking")
    tracking = Tracking(
        utm_source=tracking_t.text("utm_source"),
        utm_medium=tracking_t.text("utm_medium", "email"),
        click_tracking=tracking_t.boolean("click_tracking", True),
        open_tracking=tracking_t.boolean("open_tracking", False),
    )

    unsub_t = top.table("unsubscribe")
    unsubscribe = Unsubscribe(url=unsub_t.text("url"), mailto=unsub_t.email("mailto", ""))
    if not unsubscribe.url.startswith(("https://", "http://")) or "{recipient_id}" not in unsubscribe.url:
        raise unsub_t.fail("url", "a web address containing {recipient_id}")

    web_t = top.table("web", required=False)
    archive_audience = web_t.text("archive_audience", next(iter(lists)))
    if archive_audience not in lists:
        raise web_t.fail("archive_audience", f"one of the lists: {', '.join(lists)}")
    web_url = web_t.text("url", "")
    if web_url and not web_url.startswith("https://"):
        raise web_t.fail("url", "an https:// address, like https://www.school.example.org/newsletters/{slug}")

    env = _environment(root, environ)
    register_environment(env)  # before anything below can quote a value back in a message
    translation = _translation_settings(top.table("translation", required=False), school, env, root)
    transport = env.get("MAILROOM_TRANSPORT", "").strip().lower() or "outbox"
    if transport not in TRANSPORTS:
        raise ConfigError(f"MAILROOM_TRANSPORT is '{transport}'; it should be one of: {', '.join(TRANSPORTS)}")

    sg_t = top.table("sendgrid", required=False)
    sendgrid = SendGridSettings(
        api_key=Secret(env.get("SENDGRID_API_KEY", "").strip()),
        host=sendgrid_api_host(env.get("SENDGRID_API_HOST", "")),
        timeout_seconds=sg_t.number("timeout_seconds", 30.0),
        batch_size=sg_t.integer("batch_size", 1000, minimum=1) or 1000,
        categories=_categories(sg_t),
        asm_group_id=sg_t.integer("asm_group_id", None, minimum=1),
        webhook_public_key=env.get("SENDGRID_WEBHOOK_PUBLIC_KEY", "").strip(),
    )
    if sendgrid.batch_size > 1000:
        raise sg_t.fail("batch_size", "at most 1000 (SendGrid's limit per request)")
    if transport == "sendgrid" and not sender.name.isascii():
        raise sender_t.fail("name", "written in plain letters (A-Z) for SendGrid, which does not support "
                            f"accented or other non-ASCII letters in the sender's name, not '{sender.name}'")
    if transport == "sendgrid" and not sendgrid.api_key:
        raise ConfigError("MAILROOM_TRANSPORT is sendgrid, but SENDGRID_API_KEY is not set (put it in .env)")

    smtp_t = top.table("smtp", required=False)
    security = env.get("SMTP_SECURITY", "starttls").strip().lower() or "starttls"
    if security not in SMTP_SECURITY:
        raise ConfigError(f"SMTP_SECURITY is '{security}'; it should be one of: {', '.join(SMTP_SECURITY)}")
    port_text = env.get("SMTP_PORT", "").strip() or {"ssl": "465", "starttls": "587", "none": "25"}[security]
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"SMTP_PORT should be a port number, not '{port_text}'")
    smtp = SmtpSettings(
        host=env.get("SMTP_HOST", "").strip(),
        port=int(port_text),
        username=env.get("SMTP_USERNAME", "").strip(),
        password=Secret(env.get("SMTP_PASSWORD", "")),
        security=security,
        messages_per_minute=smtp_t.integer("messages_per_minute", 30) or 0,
        daily_limit=smtp_t.integer("daily_limit", 10000) or 0,
        timeout_seconds=smtp_t.number("timeout_seconds", 60.0),
        auth=_smtp_auth(env),
        oauth=_oauth_settings(root, env),
        ca_file=_optional_path(root, env, "SMTP_CA_FILE"),
    )
    if transport == "smtp" and not smtp.host:
        raise ConfigError("MAILROOM_TRANSPORT is smtp, but SMTP_HOST is not set (put it in .env)")

    return Settings(
        root=root,
        school=school,
        sender=sender,
        lists=lists,
        brand=brand,
        tracking=tracking,
        unsubscribe=unsubscribe,
        columns=columns,
        archive_audience=archive_audience,
        transport=transport,
        outbox_dir=_env_path(root, env.get("MAILROOM_OUTBOX", "").strip() or "outbox"),
        db_path=_env_path(root, env.get("MAILROOM_DB", "").strip() or "mailroom.sqlite3"),
        sendgrid=sendgrid,
        smtp=smtp,
        source_file=path,
        dns_server=env.get("MAILROOM_DNS_SERVER", "").strip(),
        translation=translation,
        web_url=web_url,
    )


def _translation_settings(table: _Reader, school: School, env: Mapping[str, str], root: Path) -> TranslationSettings:
    """[translation] and the engine's secrets; the engine's key is only needed once a language needs it."""
    engine = table.text("engine", "").lower()
    if engine and engine not in ENGINES:
        raise table.fail("engine", f'one of: {", ".join(f"{e!r}" for e in ENGINES)} (or left out: no machine '
                                   "translation, only the school's own newsletter.<language>.md files)")
    keep = tuple(dict.fromkeys((school.name, *table.text_list("keep", []))))
    libre_url = env.get("LIBRETRANSLATE_URL", "").strip()
    deepl_url = env.get("DEEPL_SERVER_URL", "").strip()
    for name, value in (("LIBRETRANSLATE_URL", libre_url), ("DEEPL_SERVER_URL", deepl_url)):
        if value and not value.startswith(("https://", "http://")):
            raise ConfigError(f"{name} should be a web address like https://translate.example.org, not '{value}'")
    return TranslationSettings(
        engine=engine,
        keep=keep,
        timeout_seconds=table.number("timeout_seconds", 30.0),
        retries=table.integer("retries", 2) or 0,
        deepl_auth_key=Secret(env.get("DEEPL_AUTH_KEY", "").strip()),
        deepl_server_url=deepl_url,
        libretranslate_url=libre_url,
        libretranslate_api_key=Secret(env.get("LIBRETRANSLATE_API_KEY", "").strip()),
        cache_path=_env_path(root, env.get("MAILROOM_TRANSLATION_CACHE", "").strip() or "translations.sqlite3"),
    )
