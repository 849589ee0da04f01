"""SendGrid delivery events in: checked, stored once each, and turned into suppressions.

Events arrive as the JSON array SendGrid's Event Webhook posts (``mailroom events serve``) or as a
file of the same shape (``mailroom events import``). Both go through ``parse_events`` and
``store_events``, so they de-duplicate the same way: SendGrid retries a delivery for up to 24 hours,
and each event's ``sg_event_id`` is stored once.

What is kept is what the report needs: the event type and time, the opaque ids send put in
``custom_args`` (newsletter, audience, recipient_id), the message id, and a clicked link. The address
is not stored with the events; it is only used, at once, to suppress a bounced, complaining or
unsubscribing reader (see ``suppression_reason``).
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from mailroom.addresses import address_key
from mailroom.database import connect, to_text, utc_now
from mailroom.errors import InputError
from mailroom.events.suppressions import (
    GROUP_RESUBSCRIBE,
    GROUP_UNSUBSCRIBE,
    SUPPRESS,
    apply_event_history,
    looks_like_address,
    record_event,
)
from mailroom.events.suppressions import ensure_schema as ensure_suppression_schema

EVENT_TYPES = frozenset({
    "processed", "deferred", "delivered", "bounce", "dropped", "open", "click",
    "spamreport", "unsubscribe", "group_unsubscribe", "group_resubscribe",
})

_YEAR_2100 = 4_102_444_800  # a timestamp beyond this is a mistake, not an event
# SendGrid's events nest two or three levels (the array, an event, a list of categories). Python's
# json module recurses once per level and fails with RecursionError near 1,000, so depth is checked
# first, on the text, with a scan that does not recurse.
MAX_NESTING = 32
_STRUCTURE = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]')

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    sg_event_id   TEXT PRIMARY KEY,
    event         TEXT NOT NULL,
    occurred_at   INTEGER NOT NULL,   -- Unix seconds, as SendGrid sends them
    newsletter    TEXT,               -- custom_args: the newsletter's slug
    audience      TEXT,               -- custom_args: the list whose version was sent
    recipient_id  TEXT,               -- custom_args: the ledger's opaque id, never an address
    sg_message_id TEXT,
    url           TEXT,               -- click events: the link, as the reader followed it
    bounce_type   TEXT,               -- bounce events: "bounce" or "blocked"
    source        TEXT NOT NULL,      -- "webhook" or "import"
    received_at   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_newsletter ON events (newsletter, audience, event);
"""


@dataclass(frozen=True)
class Event:
    """One delivery event, reduced to what the report and the suppression list need."""

    sg_event_id: str
    event: str
    timestamp: int
    email: str
    newsletter: str | None = None
    audience: str | None = None
    recipient_id: str | None = None
    sg_message_id: str | None = None
    url: str | None = None
    reason: str | None = None  # bounce/dropped; used to decide, never stored (it can quote the address)
    bounce_type: str | None = None

    @property
    def occurred_at(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp, UTC)


@dataclass(frozen=True)
class Problem:
    """An event that could not be used: which one (1-based), where it starts, and why."""

    number: int
    line: int
    message: str


@dataclass
class ParsedEvents:
    events: list[Event] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    unknown_types: int = 0


@dataclass
class StoreResult:
    """What one batch of events changed; counts only, so it can be printed and logged safely."""

    stored: int = 0
    repeated: int = 0
    suppressed: int = 0  # addresses newly on the suppression list
    resubscribed: int = 0  # taken off it by a group resubscribe after their group unsubscribe
    resubscribe_requests: int = 0  # resubscribes noted against a suppression they cannot lift

    def add(self, other: StoreResult) -> None:
        self.stored += other.stored
        self.repeated += other.repeated
        self.suppressed += other.suppressed
        self.resubscribed += other.resubscribed
        self.resubscribe_requests += other.resubscribe_requests


class NotAnEventArray(ValueError):
    """The text is not JSON, or not a JSON array; carries json's line and column when it knows them."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.line, self.column = line, column


# --- parsing -----------------------------------------------------------------------------------

def parse_events(text: str) -> ParsedEvents:
    """Read a JSON array of SendGrid events, keeping each item's line for error messages.

    The array is walked item by item (``raw_decode``) rather than loaded whole, so a problem in the
    37th event can be reported at its own line. Raises ``NotAnEventArray`` if the text is not a JSON
    array; items that are not usable events are returned as ``problems``.
    """
    _check_nesting(text)
    decoder = json.JSONDecoder()
    pos = _skip_space(text, 0)
    if pos < len(text) and text[pos] == "\ufeff":  # a byte-order mark some editors add
        pos = _skip_space(text, pos + 1)
    if pos >= len(text) or text[pos] != "[":
        line, column = _where(text, pos)
        if pos < len(text) and text[pos] == "{":
            raise NotAnEventArray("expected a list of events in [ ... ], but found a single { ... } object",
                                  line, column)
        raise NotAnEventArray("expected a list of events in [ ... ]", line, column)
    parsed = ParsedEvents()
    lines = _LineCounter(text)
    pos = _skip_space(text, pos + 1)
    number = 0
    if pos < len(text) and text[pos] == "]":
        pos += 1
    else:
        while True:
            try:
                item, end = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                raise NotAnEventArray(f"this is not valid JSON: {exc.msg}", exc.lineno, exc.colno) from None
            except (ValueError, RecursionError):  # e.g. a number of more than 4,300 digits
                line, column = _where(text, pos)
                raise NotAnEventArray(f"event {number + 1} cannot be read: a number in it is too long", line,
                                      column) from None
            number += 1
            _check_item(item, number, lines.line_at(pos), parsed)
            pos = _skip_space(text, end)
            if pos < len(text) and text[pos] == ",":
                pos = _skip_space(text, pos + 1)
                continue
            if pos < len(text) and text[pos] == "]":
                pos += 1
                break
            line, column = _where(text, pos)
            raise NotAnEventArray("this is not valid JSON: expected ',' or ']' after an event", line, column)
    pos = _skip_space(text, pos)
    if pos < len(text):
        line, column = _where(text, pos)
        raise NotAnEventArray("this is not valid JSON: there is more after the closing ]", line, column)
    return parsed


def _check_nesting(text: str) -> None:
    """Refuse JSON nested deeper than ``MAX_NESTING`` before the json module recurses into it."""
    depth = 0
    for match in _STRUCTURE.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > MAX_NESTING:
                line, column = _where(text, match.start())
                raise NotAnEventArray(f"the JSON is nested more than {MAX_NESTING} levels deep; SendGrid's "
                                      "events are never nested like this", line, column)
        elif token in "]}":
            depth -= 1


class _LineCounter:
    """Line numbers for positions met in increasing order, counting each newline only once."""

    def __init__(self, text: str) -> None:
        self.text, self.pos, self.line = text, 0, 1

    def line_at(self, pos: int) -> int:
        self.line += self.text.count("\n", self.pos, pos)
        self.pos = pos
        return self.line


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _where(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


def _check_item(item: object, number: int, line: int, parsed: ParsedEvents) -> None:
    def problem(message: str) -> None:
        parsed.problems.append(Problem(number, line, message))

    if not isinstance(item, dict):
        return problem(f"event {number} should be an object in {{ ... }}")
    kind = item.get("event")
    if not isinstance(kind, str) or not kind:
        return problem(f'event {number} has no "event" type')
    if kind not in EVENT_TYPES:
        # SendGrid may add event types; they are not ours to judge, so skip them quietly.
        parsed.unknown_types += 1
        return None
    event_id = item.get("sg_event_id")
    if not isinstance(event_id, str) or not event_id.strip():
        return problem(f'event {number} ({kind}) has no "sg_event_id", so repeats could not be recognised')
    stamp = item.get("timestamp")
    if isinstance(stamp, bool) or not isinstance(stamp, int | float) or not 0 <= stamp < _YEAR_2100:
        return problem(f'event {number} ({kind}) has no "timestamp" (seconds since 1970)')
    email = item.get("email")
    if not isinstance(email, str) or not looks_like_address(email):
        return problem(f'event {number} ({kind}) has no "email" address')
    texts: dict[str, str | None] = {}
    for name in ("newsletter", "audience", "recipient_id", "sg_message_id", "url", "reason", "type"):
        value = item.get(name)
        if value is not None and not isinstance(value, str):
            return problem(f'event {number} ({kind}): "{name}" should be text')
        texts[name] = value.strip() if isinstance(value, str) and value.strip() else None
    if kind == "click" and not texts["url"]:
        return problem(f'event {number} (click) has no "url"')
    parsed.events.append(Event(
        sg_event_id=event_id.strip(), event=kind, timestamp=int(stamp), email=email.strip(),
        newsletter=texts["newsletter"], audience=texts["audience"], recipient_id=texts["recipient_id"],
        sg_message_id=texts["sg_message_id"], url=texts["url"] if kind == "click" else None,
        reason=texts["reason"], bounce_type=texts["type"] if kind == "bounce" else None,
    ))
    return None


def read_events_file(path: Path) -> list[Event]:
    """The events in a JSON file, or an ``InputError`` naming the file and line of the first problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("no such file", path) from None
    except IsADirectoryError:
        raise InputError("this is a folder; give the JSON file of events", path) from None
    except UnicodeDecodeError:
        raise InputError("this is not a text (UTF-8) file; expected SendGrid's events as JSON", path) from None
    try:
        parsed = parse_events(text)
    except NotAnEventArray as exc:
        where = f" (column {exc.column})" if exc.column else ""
        raise InputError(f"{exc}{where}", path, exc.line) from None
    if parsed.problems:
        first = parsed.problems[0]
        more = len(parsed.problems) - 1
        also = f" ({more} more event{'s' if more != 1 else ''} with problems)" if more else ""
        raise InputError(f"{first.message}{also}; nothing was imported", path, first.line)
    return parsed.events


# --- suppression rules -------------------------------------------------------------------------

def suppression_reason(event: Event) -> str | None:
    """Why this event keeps the address out of future sends, or None if it does not.

    - bounce: the mailbox refused the message for good. A ``blocked`` bounce is the receiving
      server refusing *us* for a while (reputation, content), not a bad address, so it does not
      suppress; SendGrid itself does not suppress blocks either.
    - dropped: SendGrid did not even try. Only drops that say the address is bad (a bounced or
      invalid address) or belongs to someone who complained suppress; a drop for "Invalid SMTPAPI
      header" is our mistake, not the reader's.
    - spamreport, unsubscribe, group_unsubscribe: the reader asked not to be mailed.
    """
    kind = event.event
    reason = (event.reason or "").lower()
    if kind == "bounce":
        return None if (event.bounce_type or "").lower() == "blocked" else "bounced"
    if kind == "dropped":
        if "smtpapi" in reason:
            return None
        if "bounce" in reason:
            return "bounced earlier, so SendGrid dropped the email"
        if "invalid" in reason:
            return "address not valid, so SendGrid dropped the email"
        if "spam" in reason:
            return "marked an email as spam, so SendGrid dropped the email"
        return None
    return {
        "spamreport": "marked the email as spam",
        "unsubscribe": "unsubscribed",
        "group_unsubscribe": "unsubscribed",
    }.get(kind)


# --- storage -----------------------------------------------------------------------------------

def ensure_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(_SCHEMA)
    ensure_suppression_schema(conn)


def store_events(db_path: Path, events: Iterable[Event], source: str) -> StoreResult:
    """Store events not seen before and bring the suppression list in line, in one short transaction.

    An event already stored (same ``sg_event_id``) changes nothing, so a retried webhook delivery
    or a re-imported file is harmless. Events that bear on a suppression are kept with the address
    (``suppression_events``), and each person they concern is decided again from all of their events
    in event time, so the order the POSTs arrived in makes no difference (mailroom/events/suppressions.py).
    """
    result = StoreResult()
    received = to_text(utc_now())
    concerned: dict[str, None] = {}  # address keys, in order
    conn = connect(db_path)
    try:
        ensure_schema(conn)
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            for event in events:
                cursor = conn.execute(
                    "INSERT OR IGNORE INTO events (sg_event_id, event, occurred_at, newsletter, audience,"
                    " recipient_id, sg_message_id, url, bounce_type, source, received_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (event.sg_event_id, event.event, event.timestamp, event.newsletter, event.audience,
                     event.recipient_id, event.sg_message_id, event.url, event.bounce_type, source, received))
                if cursor.rowcount == 0:
                    result.repeated += 1
                    continue
                result.stored += 1
                kind, reason = _suppression_kind(event)
                if kind and record_event(conn, event_id=event.sg_event_id, email=event.email, kind=kind,
                                         reason=reason, occurred_at=event.timestamp, source=source):
                    concerned[address_key(event.email)] = None
            for key in concerned:
                change = apply_event_history(conn, key)
                result.suppressed += change.suppressed
                result.resubscribed += change.lifted
                result.resubscribe_requests += change.noted_resubscribe
    finally:
        conn.close()
    return result


def _suppression_kind(event: Event) -> tuple[str | None, str | None]:
    """How an event bears on its person's suppression: (kind, reason shown), or (None, None)."""
    if event.event == "group_resubscribe":
        return GROUP_RESUBSCRIBE, None
    reason = suppression_reason(event)
    if reason is None:
        return None, None
    return (GROUP_UNSUBSCRIBE if event.event == "group_unsubscribe" else SUPPRESS), reason


def import_events_file(db_path: Path, path: Path) -> StoreResult:
    """``mailroom events import``: all of the file's events, or (on any problem) none."""
    return store_events(db_path, read_events_file(path), source="import")
