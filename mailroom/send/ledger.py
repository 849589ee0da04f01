"""The ledger: who has been sent which newsletter, so a send can resume and never mails anyone twice.

SQLite at ``settings.db_path`` (shared with events and suppressions; each module creates its own tables).
The rule that makes resuming safe: a batch is written as *in flight* before its request goes out, and
its people become *sent* only once the transport confirms. If the process dies in between, the rows
stay in flight and the next run reports them as *uncertain* instead of guessing.

States of one (newsletter, address) row:
  pending    planned, not yet handed to the transport
  in_flight  handed over; no answer yet
  sent       the transport confirmed it (with its message id)
  failed     known not to have been accepted (a rerun tries again)
  uncertain  may or may not have been accepted; the user decides (resend or mark as sent)

Nothing secret is stored here: no API key, no password, no message content.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mailroom.database import connect
from mailroom.errors import RefusedForSafety

PENDING, IN_FLIGHT, SENT, FAILED, UNCERTAIN = "pending", "in_flight", "sent", "failed", "uncertain"
STATES = (PENDING, IN_FLIGHT, SENT, FAILED, UNCERTAIN)

# Batch kinds: a real send, a test copy to one address, a SendGrid sandbox run (validated, never delivered).
LIVE, TEST, SANDBOX = "live", "test", "sandbox"

_CHUNK = 500  # keys per IN (...) query: well under SQLite's variable limit

_SCHEMA = """
CREATE TABLE IF NOT EXISTS recipients (
    address_key   TEXT PRIMARY KEY,
    recipient_id  TEXT NOT NULL UNIQUE,   -- random and opaque: what goes to SendGrid, never the address
    created_at    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS send_batches (
    batch_id      INTEGER PRIMARY KEY,
    newsletter    TEXT NOT NULL,
    audience      TEXT NOT NULL,
    kind          TEXT NOT NULL,          -- live | test | sandbox
    transport     TEXT NOT NULL,
    build_hash    TEXT NOT NULL,
    size          INTEGER NOT NULL,
    state         TEXT NOT NULL,          -- in_flight | sent | partly_sent | failed | uncertain
    message_id    TEXT,
    error         TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    started_at    TEXT NOT NULL,
    finished_at   TEXT
);
CREATE TABLE IF NOT EXISTS sends (
    newsletter    TEXT NOT NULL,
    address_key   TEXT NOT NULL,
    audience      TEXT NOT NULL,
    state         TEXT NOT NULL,
    batch_id      INTEGER,
    message_id    TEXT,
    error         TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (newsletter, address_key)
);
CREATE INDEX IF NOT EXISTS sends_by_batch ON sends (batch_id);
CREATE INDEX IF NOT EXISTS sends_by_state ON sends (newsletter, state);
CREATE TABLE IF NOT EXISTS test_sends (
    id            INTEGER PRIMARY KEY,
    newsletter    TEXT NOT NULL,
    build_hash    TEXT NOT NULL,
    address       TEXT NOT NULL,
    audiences     TEXT NOT NULL,          -- comma-separated list names whose versions were sent
    transport     TEXT NOT NULL,
    batch_id      INTEGER,
    sent_at       TEXT NOT NULL
);
"""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _chunks(items: Sequence[str], size: int = _CHUNK) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


@dataclass(frozen=True)
class SendRow:
    key: str
    audience: str
    state: str
    batch_id: int | None
    message_id: str | None
    error: str | None


@dataclass(frozen=True)
class UncertainBatch:
    """A batch whose outcome nobody knows: the people in it may or may not have the newsletter."""

    batch_id: int
    audience: str
    started_at: str
    error: str | None
    keys: tuple[str, ...]


@dataclass(frozen=True)
class TestSend:
    address: str
    audiences: tuple[str, ...]
    transport: str
    sent_at: str


@dataclass(frozen=True)
class Outcome:
    """What became of one person in a batch, as the ledger records it."""

    key: str
    state: str  # SENT, FAILED, UNCERTAIN or PENDING (not tried: back in the queue)
    message_id: str | None = None
    error: str | None = None


class Ledger:
    """One open connection to the ledger; every method is one short transaction."""

    def __init__(self, db_path: Path) -> None:
        self.path = Path(db_path)
        self.conn = connect(self.path)
        self.conn.executescript(_SCHEMA)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # --- recipient ids ---------------------------------------------------------------------

    def recipient_ids(self, keys: Sequence[str]) -> dict[str, str]:
        """The opaque id of each address key, creating (random, stable) ids for keys seen first now."""
        found: dict[str, str] = {}
        for chunk in _chunks(keys):
            marks = ",".join("?" * len(chunk))
            found.update(self.conn.execute(
                f"SELECT address_key, recipient_id FROM recipients WHERE address_key IN ({marks})", chunk))
        missing = [k for k in dict.fromkeys(keys) if k not in found]
        if missing:
            now = _now()
            new = {k: secrets.token_hex(8) for k in missing}
            with self._transaction() as conn:
                conn.executemany("INSERT OR IGNORE INTO recipients VALUES (?, ?, ?)",
                                 [(k, rid, now) for k, rid in new.items()])
            for chunk in _chunks(missing):
                marks = ",".join("?" * len(chunk))
                found.update(self.conn.execute(
                    f"SELECT address_key, recipient_id FROM recipients WHERE address_key IN ({marks})", chunk))
        return found

    # --- per-recipient state ------------------------------------------------------------------

    def states(self, newsletter: str, keys: Sequence[str]) -> dict[str, SendRow]:
        """The rows that exist for these keys (a key with no row has never been planned)."""
        rows: dict[str, SendRow] = {}
        for chunk in _chunks(keys):
            marks = ",".join("?" * len(chunk))
            for r in self.conn.execute(
                    "SELECT address_key, audience, state, batch_id, message_id, error FROM sends "
                    f"WHERE newsletter = ? AND address_key IN ({marks})", (newsletter, *chunk)):
                rows[r[0]] = SendRow(*r)
        return rows

    def plan_pending(self, newsletter: str, people: Iterable[tuple[str, str]]) -> None:
        """Record (key, audience) as pending unless the person already has a row for this newsletter."""
        now = _now()
        with self._transaction() as conn:
            conn.executemany(
                "INSERT INTO sends (newsletter, address_key, audience, state, created_at, updated_at) "
                "VALUES (?, ?, ?, 'pending', ?, ?) ON CONFLICT DO NOTHING",
                ((newsletter, key, audience, now, now) for key, audience in people))

    def counts(self, newsletter: str) -> dict[str, int]:
        return dict(self.conn.execute(
            "SELECT state, COUNT(*) FROM sends WHERE newsletter = ? GROUP BY state", (newsletter,)))

    # --- batches ---------------------------------------------------------------------------------

    def begin_batch(self, *, newsletter: str, audience: str, kind: str, transport: str, build_hash: str,
                    keys: Sequence[str]) -> int:
        """Write the batch (and, for a live send, its people) as in flight BEFORE the request goes out."""
        now = _now()
        with self._transaction() as conn:
            cur = conn.execute(
                "INSERT INTO send_batches (newsletter, audience, kind, transport, build_hash, size, state, "
                "started_at) VALUES (?, ?, ?, ?, ?, ?, 'in_flight', ?)",
                (newsletter, audience, kind, transport, build_hash, len(keys), now))
            batch_id = int(cur.lastrowid or 0)
            if kind == LIVE:
                conn.executemany(
                    "INSERT INTO sends (newsletter, address_key, audience, state, batch_id, created_at, updated_at) "
                    "VALUES (?, ?, ?, 'in_flight', ?, ?, ?) ON CONFLICT (newsletter, address_key) DO UPDATE SET "
                    "state = 'in_flight', batch_id = excluded.batch_id, audience = excluded.audience, "
                    "error = NULL, updated_at = excluded.updated_at",
                    ((newsletter, key, audience, batch_id, now, now) for key in keys))
        return batch_id

    def count_attempt(self, batch_id: int) -> None:
        self.conn.execute("UPDATE send_batches SET attempts = attempts + 1 WHERE batch_id = ?", (batch_id,))

    def record_outcomes(self, batch_id: int, newsletter: str, kind: str, outcomes: Iterable[Outcome]) -> None:
        """What the transport said about some of the batch's people (only live sends touch their rows)."""
        if kind != LIVE:
            return
        now = _now()
        with self._transaction() as conn:
            conn.executemany(
                "UPDATE sends SET state = ?, message_id = COALESCE(?, message_id), error = ?, updated_at = ? "
                "WHERE newsletter = ? AND address_key = ? AND batch_id = ?",
                ((o.state, o.message_id, o.error, now, newsletter, o.key, batch_id) for o in outcomes))

    def finish_batch(self, batch_id: int, state: str, *, message_id: str | None = None,
                     error: str | None = None) -> None:
        self.conn.execute(
            "UPDATE send_batches SET state = ?, message_id = COALESCE(?, message_id), error = ?, "
            "finished_at = ? WHERE batch_id = ?", (state, message_id, error, _now(), batch_id))

    # --- resume ------------------------------------------------------------------------------------

    def settle_abandoned(self, newsletter: str) -> int:
        """Rows left in flight by a run that died are uncertain: nobody knows if their request arrived.

        Only call this while holding ``send_lock`` (so no other run is sending right now).
        """
        now = _now()
        with self._transaction() as conn:
            cur = conn.execute(
                "UPDATE sends SET state = 'uncertain', updated_at = ?, "
                "error = 'the send stopped while this request was on its way' "
                "WHERE newsletter = ? AND state = 'in_flight'", (now, newsletter))
            conn.execute(
                "UPDATE send_batches SET state = 'uncertain', finished_at = ?, "
                "error = COALESCE(error, 'the send stopped while this request was on its way') "
                "WHERE newsletter = ? AND state = 'in_flight'", (now, newsletter))
        return cur.rowcount

    def uncertain_batches(self, newsletter: str) -> list[UncertainBatch]:
        groups: dict[int, list[str]] = {}
        for batch_id, key in self.conn.execute(
                "SELECT batch_id, address_key FROM sends WHERE newsletter = ? AND state = 'uncertain' "
                "ORDER BY batch_id, rowid", (newsletter,)):
            groups.setdefault(batch_id, []).append(key)
        result = []
        for batch_id, keys in groups.items():
            row = self.conn.execute(
                "SELECT audience, started_at, error FROM send_batches WHERE batch_id = ?", (batch_id,)).fetchone()
            audience, started, error = row if row else ("?", "?", None)
            result.append(UncertainBatch(batch_id, audience, started, error, tuple(keys)))
        return result

    def resolve_uncertain(self, newsletter: str, *, as_sent: bool) -> int:
        """The user's decision on uncertain rows: resend them (back to pending) or count them as sent."""
        now = _now()
        if as_sent:
            sql = ("UPDATE sends SET state = 'sent', error = 'marked as sent by the office', updated_at = ? "
                   "WHERE newsletter = ? AND state = 'uncertain'")
        else:
            sql = ("UPDATE sends SET state = 'pending', error = NULL, updated_at = ? "
                   "WHERE newsletter = ? AND state = 'uncertain'")
        with self._transaction() as conn:
            cur = conn.execute(sql, (now, newsletter))
        return cur.rowcount

    # --- test sends ----------------------------------------------------------------------------------

    def record_test_send(self, *, newsletter: str, build_hash: str, address: str, audiences: Sequence[str],
                         transport: str, batch_id: int | None) -> None:
        self.conn.execute(
            "INSERT INTO test_sends (newsletter, build_hash, address, audiences, transport, batch_id, sent_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (newsletter, build_hash, address, ",".join(audiences), transport, batch_id, _now()))

    def test_sends(self, newsletter: str, build_hash: str) -> list[TestSend]:
        """Test copies of exactly this build (a recomposed newsletter needs a new test)."""
        return [TestSend(a, tuple(filter(None, auds.split(","))), t, at) for a, auds, t, at in self.conn.execute(
            "SELECT address, audiences, transport, sent_at FROM test_sends WHERE newsletter = ? AND build_hash = ? "
            "ORDER BY id", (newsletter, build_hash))]

    def batch_rows(self, newsletter: str) -> list[Mapping[str, object]]:
        """Every batch of a newsletter, oldest first (for reports and tests)."""
        cur = self.conn.execute("SELECT * FROM send_batches WHERE newsletter = ? ORDER BY batch_id", (newsletter,))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur]


@contextmanager
def send_lock(db_path: Path) -> Iterator[None]:
    """Only one send at a time per ledger; the lock dies with its process, so a killed run frees it."""
    lock_path = Path(str(db_path) + ".send-lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(lock_path, "a+")  # noqa: SIM115 - held for the whole block
    try:
        try:
            _lock_file(handle)
        except OSError:
            raise RefusedForSafety(
                "another send is running right now; wait for it to finish, then try again") from None
        yield
    finally:
        handle.close()


def _lock_file(handle: object) -> None:
    fileno = handle.fileno()  # type: ignore[attr-defined]
    if os.name == "nt":  # pragma: no cover - Windows offices
        import msvcrt

        msvcrt.locking(fileno, msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(fileno, fcntl.LOCK_EX | fcntl.LOCK_NB)
