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

import enum
import errno
import secrets
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import filelock

from mailroom.database import connect
from mailroom.errors import LedgerError, RefusedForSafety


class SendState(enum.StrEnum):
    """The state of one (newsletter, address) row; stored as its value, so the strings never change."""

    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    SENT = "sent"
    FAILED = "failed"
    UNCERTAIN = "uncertain"


class BatchState(enum.StrEnum):
    """The state of one batch (one request): as ``SendState``, plus partly sent."""

    IN_FLIGHT = "in_flight"
    SENT = "sent"
    PARTLY_SENT = "partly_sent"
    FAILED = "failed"
    UNCERTAIN = "uncertain"


class BatchKind(enum.StrEnum):
    """A real send, a test copy to one address, or a SendGrid sandbox run (validated, never delivered)."""

    LIVE = "live"
    TEST = "test"
    SANDBOX = "sandbox"



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
    state: SendState
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
    state: SendState  # SENT, FAILED, UNCERTAIN or PENDING (not tried: back in the queue)
    message_id: str | None = None
    error: str | None = None


class Ledger:
    """One open connection to the ledger; every method is one short transaction."""

    def __init__(self, db_path: Path, *, busy_timeout: float | None = None) -> None:
        """Open (or create) the ledger; a file that cannot be used is a ``LedgerError`` naming it.

        ``busy_timeout``: seconds to wait for another program's lock (default: ``database.connect``'s).
        """
        self.path = Path(db_path)
        try:
            self.conn = connect(self.path) if busy_timeout is None else connect(self.path, busy_timeout)
        except (sqlite3.Error, OSError) as exc:
            raise ledger_error(self.path, exc) from None
        try:
            self.conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            self.conn.close()
            raise ledger_error(self.path, exc) from None

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
                rows[r[0]] = SendRow(r[0], r[1], SendState(r[2]), r[3], r[4], r[5])
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

    def begin_batch(self, *, newsletter: str, audience: str, kind: BatchKind, transport: str, build_hash: str,
                    keys: Sequence[str]) -> int:
        """Write the batch (and, for a live send, its people) as in flight BEFORE the request goes out."""
        now = _now()
        with self._transaction() as conn:
            cur = conn.execute(
                "INSERT INTO send_batches (newsletter, audience, kind, transport, build_hash, size, state, "
                "started_at) VALUES (?, ?, ?, ?, ?, ?, 'in_flight', ?)",
                (newsletter, audience, kind, transport, build_hash, len(keys), now))
            batch_id = int(cur.lastrowid or 0)
            if kind == BatchKind.LIVE:
                conn.executemany(
                    "INSERT INTO sends (newsletter, address_key, audience, state, batch_id, created_at, updated_at) "
                    "VALUES (?, ?, ?, 'in_flight', ?, ?, ?) ON CONFLICT (newsletter, address_key) DO UPDATE SET "
                    "state = 'in_flight', batch_id = excluded.batch_id, audience = excluded.audience, "
                    "error = NULL, updated_at = excluded.updated_at",
                    ((newsletter, key, audience, batch_id, now, now) for key in keys))
        return batch_id

    def count_attempt(self, batch_id: int) -> None:
        self.conn.execute("UPDATE send_batches SET attempts = attempts + 1 WHERE batch_id = ?", (batch_id,))

    def record_outcomes(self, batch_id: int, newsletter: str, kind: BatchKind, outcomes: Iterable[Outcome]) -> None:
        """What the transport said about some of the batch's people (only live sends touch their rows)."""
        if kind != BatchKind.LIVE:
            return
        now = _now()
        with self._transaction() as conn:
            conn.executemany(
                "UPDATE sends SET state = ?, message_id = COALESCE(?, message_id), error = ?, updated_at = ? "
                "WHERE newsletter = ? AND address_key = ? AND batch_id = ?",
                ((o.state, o.message_id, o.error, now, newsletter, o.key, batch_id) for o in outcomes))

    def finish_batch(self, batch_id: int, state: BatchState, *, message_id: str | None = None,
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


def ledger_error(path: Path, exc: BaseException) -> LedgerError:
    """What to tell the office when SQLite or the file system will not let us use the ledger file."""
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return LedgerError("another program is using the send ledger right now (is it open in a database "
                           "viewer, or is another mailroom command still running?). Close it and try again; "
                           "nothing was sent", path)
    if isinstance(exc, sqlite3.DatabaseError) and ("not a database" in text or "malformed" in text
                                                   or "corrupt" in text):
        return LedgerError("this file is damaged or is not mailroom's send ledger, so mailroom cannot tell who "
                           "already has which newsletter. Nothing was sent. Restore it from a backup, or "
                           "move it aside to start a new ledger (then nobody counts as sent yet)", path)
    if isinstance(exc, OSError) and exc.errno in (errno.ENOTDIR, errno.EEXIST):
        reason = "part of this path is a file, not a folder"
    elif isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason = "this place is read-only, or you may not write to it"
    elif isinstance(exc, OSError):
        reason = exc.strerror or str(exc)
    else:
        reason = str(exc)
    return LedgerError(f"mailroom cannot read and write the send ledger here ({reason}). Nothing was sent. "
                       "Check that the folder exists and that you may write to it, or set MAILROOM_DB to "
                       "another place", path)


@contextmanager
def send_lock(db_path: Path) -> Iterator[None]:
    """Only one send at a time per ledger; the operating system frees the lock when its process ends.

    ``filelock`` works the same on Windows and Linux; the lock file stays next to the ledger.
    """
    lock_path = Path(str(db_path) + ".send-lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(lock_path, timeout=0, thread_local=False)
        lock.acquire()
    except filelock.Timeout:
        raise RefusedForSafety(
            "another send is running right now; wait for it to finish, then try again") from None
    except OSError as exc:
        raise ledger_error(Path(db_path), exc) from None
    try:
        yield
    finally:
        lock.release()
