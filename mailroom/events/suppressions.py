"""Who must not be mailed again, and why: bounces, spam complaints and unsubscribes.

Rows are never deleted. Taking an address back (``remove_suppression``) closes its row with a note,
so the office can always see who was suppressed, when, and who decided otherwise. At most one row per
address is open at a time; an address's key is ``mailroom.addresses.address_key`` (as in audience/lists.py).

**Events are applied in event time.** SendGrid's POSTs can arrive out of order (a retried POST carries
older events than one that got through first), so a person's suppression is never decided by the event
that happens to arrive last. Every event that bears on it is kept in ``suppression_events`` and the
person's state is worked out again from all of them, ordered by their timestamps
(``apply_event_history``); the same events in any order of arrival give the same state:
- a bounce (not a block), a spam report, a global unsubscribe or a drop for a bad address suppresses
  for good, from the first such event;
- a group unsubscribe suppresses until a *later* group resubscribe lifts it (the reader asked, on
  SendGrid's preferences page); a resubscribe never lifts anything else, and is only noted there;
- events from before the office last took the address back are not counted (the office decided).

A missing database file means nothing is suppressed yet: reading never creates the file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mailroom.addresses import address_key
from mailroom.database import connect, connect_existing, from_text, has_table, to_text, utc_now
from mailroom.errors import InputError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS suppressions (
    id            INTEGER PRIMARY KEY,
    address_key   TEXT NOT NULL,
    email         TEXT NOT NULL,
    reason        TEXT NOT NULL,   -- short and human: "bounced", "marked the email as spam", ...
    source        TEXT NOT NULL,   -- "webhook", "import", "office"
    suppressed_at TEXT NOT NULL,   -- when it happened (the event's time), UTC
    recorded_at   TEXT NOT NULL,
    resubscribed_at TEXT,          -- a later group_resubscribe: noted for the office, not acted on
    removed_at    TEXT,
    removal_note  TEXT,
    removed_by    TEXT            -- "office", or "event" (lifted by a resubscribe); NULL in older files
);
CREATE UNIQUE INDEX IF NOT EXISTS suppressions_one_open
    ON suppressions (address_key) WHERE removed_at IS NULL;
CREATE INDEX IF NOT EXISTS suppressions_by_address ON suppressions (address_key, removed_at);
CREATE TABLE IF NOT EXISTS suppression_events (
    sg_event_id   TEXT PRIMARY KEY,
    address_key   TEXT NOT NULL,
    email         TEXT NOT NULL,
    kind          TEXT NOT NULL,   -- "suppress" (for good), "group_unsubscribe" or "group_resubscribe"
    reason        TEXT,            -- what the suppression list shows, for the suppressing kinds
    occurred_at   INTEGER NOT NULL, -- the event's own timestamp (Unix seconds)
    source        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS suppression_events_by_address ON suppression_events (address_key);
"""

SUPPRESS, GROUP_UNSUBSCRIBE, GROUP_RESUBSCRIBE = "suppress", "group_unsubscribe", "group_resubscribe"
# At the same second, a resubscribe is applied before an unsubscribe: a tie never lifts a suppression.
_SAME_SECOND_ORDER = {GROUP_RESUBSCRIBE: 0, GROUP_UNSUBSCRIBE: 1, SUPPRESS: 1}


@dataclass(frozen=True)
class Suppression:
    """One row of the suppression list, open (``removed_at`` is None) or taken back."""

    email: str
    key: str
    reason: str
    source: str
    suppressed_at: datetime
    removed_at: datetime | None = None
    removal_note: str | None = None
    resubscribed_at: datetime | None = None

    def describe(self) -> str:
        """The reason as a plan shows it, e.g. "bounced on 2026-11-20"."""
        return f"{self.reason} on {self.suppressed_at:%Y-%m-%d}"


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the suppression tables if this database does not have them yet, add newer columns, re-key old rows."""
    conn.executescript(_SCHEMA)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(suppressions)")}
    if "removed_by" not in columns:
        conn.execute("ALTER TABLE suppressions ADD COLUMN removed_by TEXT")
    _rekey(conn)


def _rekey(conn: sqlite3.Connection) -> None:
    """Re-key rows written when keys were only trimmed and lower-cased (before punycode domains and NFC).

    Only an address with a non-ASCII character can have changed key. If the new key already has an
    open row, the older spelling's row is closed with a note, so one address keeps one open row.
    """
    rows = conn.execute("SELECT id, address_key, email, removed_at FROM suppressions"
                        " WHERE email GLOB '*[^ -~]*' ORDER BY id").fetchall()
    for row_id, old_key, email, removed_at in rows:
        key = address_key(email)
        if key == old_key:
            continue
        clash = removed_at is None and conn.execute(
            "SELECT 1 FROM suppressions WHERE address_key = ? AND removed_at IS NULL", (key,)).fetchone()
        if clash:
            # removed_by 'duplicate': not the office's decision, so it does not hide earlier events.
            conn.execute("UPDATE suppressions SET address_key = ?, removed_at = ?, removal_note = ?,"
                         " removed_by = 'duplicate' WHERE id = ?",
                         (key, to_text(utc_now()), "the same address was already suppressed", row_id))
        else:
            conn.execute("UPDATE suppressions SET address_key = ? WHERE id = ?", (key, row_id))


def looks_like_address(email: str) -> bool:
    """Loose shape check (something@something, no spaces): enough to key a suppression on."""
    key = address_key(email)
    local, at, domain = key.partition("@")
    return bool(local and at and domain) and not any(ch.isspace() for ch in key)


def _check_address(email: str) -> str:
    if not looks_like_address(email):
        raise InputError(f"'{email.strip()}' is not an email address")
    return address_key(email)


def add_suppression(db_path: Path, email: str, reason: str, source: str,
                    occurred_at: datetime | None = None) -> bool:
    """Keep ``email`` out of future sends. Returns False when nothing changed.

    Nothing changes if the address is already suppressed (the first reason is kept), or if the
    office took it back *after* ``occurred_at``: a late or re-imported old event must not undo
    their decision.
    """
    conn = connect(db_path)
    try:
        ensure_schema(conn)
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            return suppress(conn, email, reason, source, occurred_at)
    finally:
        conn.close()


def suppress(conn: sqlite3.Connection, email: str, reason: str, source: str,
             occurred_at: datetime | None = None) -> bool:
    """``add_suppression`` inside a transaction the caller holds (events store and suppress together)."""
    key = _check_address(email)
    reason = reason.strip()
    if not reason:
        raise InputError("a suppression needs a reason")
    when = to_text(occurred_at or utc_now())
    open_row = conn.execute(
        "SELECT 1 FROM suppressions WHERE address_key = ? AND removed_at IS NULL", (key,)).fetchone()
    if open_row is not None:
        return False
    last_removed = conn.execute(
        "SELECT MAX(removed_at) FROM suppressions WHERE address_key = ?", (key,)).fetchone()[0]
    if last_removed is not None and last_removed >= when:
        return False
    conn.execute(
        "INSERT INTO suppressions (address_key, email, reason, source, suppressed_at, recorded_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (key, email.strip(), reason, source, when, to_text(utc_now())))
    return True


def record_event(conn: sqlite3.Connection, *, event_id: str, email: str, kind: str, reason: str | None,
                 occurred_at: int, source: str) -> bool:
    """Keep one event that bears on ``email``'s suppression; False if it was already kept."""
    cursor = conn.execute(
        "INSERT OR IGNORE INTO suppression_events (sg_event_id, address_key, email, kind, reason, occurred_at,"
        " source) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (event_id, _check_address(email), email.strip(), kind, reason, occurred_at, source))
    return cursor.rowcount > 0


@dataclass(frozen=True)
class HistoryChange:
    """What working out one person's state again changed."""

    suppressed: bool = False  # newly on the list
    lifted: bool = False  # taken off by a later group resubscribe
    noted_resubscribe: bool = False  # a resubscribe noted against a suppression it cannot lift


@dataclass(frozen=True)
class _Decided:
    email: str
    reason: str
    since: int
    source: str
    resubscribed_at: int | None


def apply_event_history(conn: sqlite3.Connection, key: str) -> HistoryChange:
    """Bring ``key``'s suppression in line with all of its events, in event time (caller holds a transaction).

    The office's own entries are never changed by events (only a resubscribe is noted on them), and
    events from before the office last took the address back are not counted.
    """
    open_row = conn.execute(
        "SELECT * FROM suppressions WHERE address_key = ? AND removed_at IS NULL", (key,)).fetchone()
    taken_back = conn.execute(
        "SELECT MAX(removed_at) FROM suppressions WHERE address_key = ? AND removed_at IS NOT NULL"
        " AND (removed_by IS NULL OR removed_by = 'office')", (key,)).fetchone()[0]
    after = int(from_text(taken_back).timestamp()) if taken_back else -1
    rows = conn.execute(
        "SELECT * FROM suppression_events WHERE address_key = ? AND occurred_at > ?", (key, after)).fetchall()
    rows.sort(key=lambda r: (r["occurred_at"], _SAME_SECOND_ORDER.get(r["kind"], 1), r["sg_event_id"]))
    decided = _decide(rows)

    if open_row is not None and open_row["source"] == "office":
        latest = max((r["occurred_at"] for r in rows if r["kind"] == GROUP_RESUBSCRIBE), default=None)
        return HistoryChange(noted_resubscribe=_note(conn, open_row, latest))
    if open_row is None:
        if decided is None:
            return HistoryChange()
        conn.execute(
            "INSERT INTO suppressions (address_key, email, reason, source, suppressed_at, recorded_at,"
            " resubscribed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (key, decided.email, decided.reason, decided.source, _text(decided.since), to_text(utc_now()),
             _text(decided.resubscribed_at)))
        return HistoryChange(suppressed=True, noted_resubscribe=decided.resubscribed_at is not None)
    if decided is None:
        lifted_at = max(r["occurred_at"] for r in rows if r["kind"] == GROUP_RESUBSCRIBE)
        conn.execute(
            "UPDATE suppressions SET removed_at = ?, removed_by = 'event', removal_note = ? WHERE id = ?",
            (to_text(utc_now()), f"resubscribed through SendGrid on {_when(lifted_at)[:10]}", open_row["id"]))
        return HistoryChange(lifted=True)
    had_note = open_row["resubscribed_at"] is not None
    conn.execute(
        "UPDATE suppressions SET email = ?, reason = ?, source = ?, suppressed_at = ?, resubscribed_at = ?"
        " WHERE id = ?", (decided.email, decided.reason, decided.source, _text(decided.since),
                          _text(decided.resubscribed_at), open_row["id"]))
    return HistoryChange(noted_resubscribe=decided.resubscribed_at is not None and not had_note)


def _decide(rows: list[sqlite3.Row]) -> _Decided | None:
    """The suppression a person's events add up to, walking them in event time; None for none."""
    for_good: sqlite3.Row | None = None  # the first event that suppresses for good
    group: sqlite3.Row | None = None  # the group unsubscribe in force, if any
    last_resubscribe: int | None = None
    for row in rows:
        if row["kind"] == SUPPRESS and for_good is None:
            for_good = row
        elif row["kind"] == GROUP_UNSUBSCRIBE and group is None:
            group = row
        elif row["kind"] == GROUP_RESUBSCRIBE:
            group = None
            last_resubscribe = row["occurred_at"]
    first = min((r for r in (for_good, group) if r is not None), key=lambda r: r["occurred_at"], default=None)
    if first is None:
        return None
    noted = last_resubscribe if last_resubscribe is not None and last_resubscribe >= first["occurred_at"] else None
    return _Decided(email=first["email"], reason=first["reason"], since=first["occurred_at"],
                    source=first["source"], resubscribed_at=noted)


def _note(conn: sqlite3.Connection, row: sqlite3.Row, resubscribed: int | None) -> bool:
    if resubscribed is None or _when(resubscribed) < row["suppressed_at"] or row["resubscribed_at"] == _when(
            resubscribed):
        return False
    conn.execute("UPDATE suppressions SET resubscribed_at = ? WHERE id = ?", (_when(resubscribed), row["id"]))
    return row["resubscribed_at"] is None


def _when(stamp: int) -> str:
    return to_text(datetime.fromtimestamp(stamp, UTC))


def _text(stamp: int | None) -> str | None:
    return None if stamp is None else _when(stamp)


def remove_suppression(db_path: Path, email: str, note: str) -> Suppression:
    """Take ``email`` off the suppression list, keeping the row with ``note`` saying why."""
    key = address_key(email)
    note = note.strip()
    if not note:
        raise InputError("say why the address is being taken back (--note), so the office can see it later")
    conn = connect_existing(db_path)
    if conn is None:
        raise InputError(f"{email.strip()} is not on the suppression list (nothing is suppressed yet)")
    try:
        ensure_schema(conn)
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute(
                "SELECT * FROM suppressions WHERE address_key = ? AND removed_at IS NULL", (key,)).fetchone()
            if row is None:
                raise InputError(f"{email.strip()} is not on the suppression list")
            removed_at = to_text(utc_now())
            conn.execute("UPDATE suppressions SET removed_at = ?, removal_note = ?, removed_by = 'office'"
                         " WHERE id = ?", (removed_at, note, row["id"]))
        return _from_row(row, removed_at=removed_at, note=note)
    finally:
        conn.close()


def list_suppressions(db_path: Path, include_removed: bool = False) -> list[Suppression]:
    """The suppression list, oldest first; with ``include_removed`` the taken-back rows too."""
    conn = connect_existing(db_path)
    if conn is None:
        return []
    try:
        if not has_table(conn, "suppressions"):
            return []
        where = "" if include_removed else " WHERE removed_at IS NULL"
        rows = conn.execute(f"SELECT * FROM suppressions{where} ORDER BY suppressed_at, id").fetchall()
        return [_from_row(row) for row in rows]
    finally:
        conn.close()


def suppressed_addresses(db_path: Path) -> dict[str, str]:
    """Address key -> reason ("bounced on 2026-11-20") for everyone a send must leave out."""
    # Keyed afresh from the address, so rows a newer mailroom has not re-keyed yet still match.
    return {address_key(s.email): s.describe() for s in list_suppressions(db_path)}


def _from_row(row: sqlite3.Row, removed_at: str | None = None, note: str | None = None) -> Suppression:
    removed = removed_at or row["removed_at"]
    return Suppression(
        email=row["email"],
        key=row["address_key"],
        reason=row["reason"],
        source=row["source"],
        suppressed_at=from_text(row["suppressed_at"]),
        removed_at=from_text(removed) if removed else None,
        removal_note=note or row["removal_note"],
        resubscribed_at=from_text(row["resubscribed_at"]) if row["resubscribed_at"] else None,
    )


def suppressed_among(conn: sqlite3.Connection, keys: Sequence[str]) -> dict[str, str]:
    """Which of ``keys`` (address keys) are suppressed right now -> why, on a connection the caller holds.

    A send asks this before each batch, so an unsubscribe or bounce the webhook stores mid-send is honoured.
    """
    if not keys or not has_table(conn, "suppressions"):
        return {}
    found: dict[str, str] = {}
    for start in range(0, len(keys), 500):
        chunk = keys[start:start + 500]
        marks = ",".join("?" * len(chunk))
        for key, reason, suppressed_at in conn.execute(
                "SELECT address_key, reason, suppressed_at FROM suppressions WHERE removed_at IS NULL "
                f"AND address_key IN ({marks})", tuple(chunk)):
            found[key] = f"{reason} on {from_text(suppressed_at):%Y-%m-%d}, during the send"
    return found
