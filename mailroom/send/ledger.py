"""The ledger: who has been sent which newsletter, so a send can resume and never mails anyone twice.

SQLite at ``settings.db_path`` (shared with events and suppressions; each module creates its own tables).
The rule that makes resuming safe: a batch is written as *in flight* before its request goes out, and
its people become *sent* only once the transport confirms. If the process dies in between, the rows
stay in flight and the next run reports them as *uncertain* instead of guessing.

The plan is frozen here too: when the office confirms a send, everyone in it is written to ``sends``
(address as sent, names, greeting list, version) before the first message, and the batches are read
from those rows, never from audiences.csv again. Each row also keeps the build hash its message was
made from, so a send resumed with a recomposed build can say who has which version.

States of one (newsletter, address) row:
  pending    planned, not yet handed to the transport
  left_out   planned by an earlier run but not by the latest one (off the lists, unsubscribed), or
             suppressed while the send was running; never sent unless a later plan takes them back
  in_flight  handed over; no answer yet
  sent       the transport confirmed it (with its message id)
  failed     known not to have been accepted (a rerun tries again)
  uncertain  may or may not have been accepted; the user decides (resend or mark as sent)

Nothing secret is stored here: no API key, no password, no message content.
"""

from __future__ import annotations

import enum
import errno
import json
import secrets
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import compress, islice
from pathlib import Path
from typing import NamedTuple

from mailroom.addresses import address_key
from mailroom.database import connect, has_table
from mailroom.errors import LedgerError, RefusedForSafety
from mailroom.send.lock import FileLock, LockHeld


class SendState(enum.StrEnum):
    """The state of one (newsletter, address) row; stored as its value, so the strings never change."""

    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    SENT = "sent"
    FAILED = "failed"
    UNCERTAIN = "uncertain"
    LEFT_OUT = "left_out"


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


# States a plan may send to; an uncertain person only when the office said to send again.
SENDABLE = (SendState.PENDING, SendState.FAILED)
SENDABLE_RESENDING = (*SENDABLE, SendState.UNCERTAIN, SendState.IN_FLIGHT)


_CHUNK = 500  # keys per IN (...) query: well under SQLite's variable limit
_DRAFT_ROWS = 100  # people per INSERT of a draft plan (7 values each: under SQLite's limit of 32,766)
_DRAFT_INSERT = ("INSERT INTO plan_draft (address_key, email, first_name, last_name, greeting_list, version, "
                 "language) VALUES ")
_DRAFT_ONE = "(?, ?, ?, ?, ?, ?, ?)"
_DRAFT_MANY = ",".join([_DRAFT_ONE] * _DRAFT_ROWS)
# The rows of such an INSERT when the address is the key and the last three values are everyone's: numbered
# parameters, so the three shared values bind once for all, and no address (NULL: the key is the address).
_ALIKE_ROWS = ",".join(f"(?{3 * i + 1}, NULL, ?{3 * i + 2}, ?{3 * i + 3}, "
                       f"?{3 * _DRAFT_ROWS + 1}, ?{3 * _DRAFT_ROWS + 2}, ?{3 * _DRAFT_ROWS + 3})"
                       for i in range(_DRAFT_ROWS))

# A new recipient id is 128 random bits (32 hex digits), like a version 4 UUID: among a million people, two
# would share one with a chance of about 10^-27, so no index has to prove ids unique. (Ids made
# before were 64 bits under a UNIQUE index; they are kept, since old unsubscribe links carry them. That
# index cost a second b-tree insert at a random place for each newcomer: about 2 to 3 µs a person.)
# The digits are upper case, as SQLite's hex() writes them (ids from before are lower case): an id is only ever
# compared whole, and lower() cost three more function steps a newcomer. Nothing reads meaning into the case.
RECIPIENT_ID_BYTES = 16

_RECIPIENTS_TABLE = """
CREATE TABLE IF NOT EXISTS recipients (
    address_key   TEXT PRIMARY KEY,
    recipient_id  TEXT NOT NULL,          -- random and opaque: what goes to SendGrid, never the address
    created_at    TEXT NOT NULL
) WITHOUT ROWID                           -- found by address_key only: one b-tree (see RECIPIENT_ID_BYTES)
"""

_SCHEMA = _RECIPIENTS_TABLE + """;
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
    finished_at   TEXT,
    people        TEXT                    -- a live batch's plan rows (sends.rowid), as a JSON list
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
-- No index by batch: a batch finds its people through its own list of their rows (send_batches.people), and an
-- index entry per person sent cost a b-tree insert each. (Earlier mailrooms made one; it is dropped on open.)
DROP INDEX IF EXISTS sends_by_batch;
-- The batches in flight: few, and what every read of people's states looks at.
CREATE INDEX IF NOT EXISTS batches_in_flight ON send_batches (newsletter) WHERE state = 'in_flight';
CREATE TABLE IF NOT EXISTS builds (       -- every build a live send used: for "who has which version"
    newsletter    TEXT NOT NULL,
    build_hash    TEXT NOT NULL,
    composed_at   TEXT NOT NULL,          -- from the manifest (ISO, UTC)
    first_used_at TEXT NOT NULL,
    PRIMARY KEY (newsletter, build_hash)
);
CREATE TABLE IF NOT EXISTS ledger_meta (
    name          TEXT PRIMARY KEY,
    value         TEXT NOT NULL
);
-- No index on state: every state change (in flight, then sent) would rewrite it for each person, and the
-- queries by state read one newsletter's rows through the primary key anyway.
DROP INDEX IF EXISTS sends_by_state;
-- No index by version either: a version's batches are read in plan order by walking the table from the row
-- after the last batch (planned_batch), which needs none, and an entry per person cost a b-tree insert each.
DROP INDEX IF EXISTS sends_by_version;
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


# Columns added to ``sends`` after its first release (a ledger from then gets them on open, empty).
_ADDED_SEND_COLUMNS = {
    "email": "TEXT",  # the address as sent (normalised), from the confirmed plan; NULL: the same as address_key
    "first_name": "TEXT",
    "last_name": "TEXT",
    "greeting_list": "TEXT",  # the list whose greeting and settings this person's copy uses
    "build_hash": "TEXT",  # the build this person's message was made from; NULL: their batch's (send_batches)
}
# A person's row holds only what is theirs: the message id and build their batch shares are NULL there and read
# from the batch (``_SENT_AS``). A row written with the outcome then does not grow, so SQLite rewrites it in place
# (the 64-character build hash and the message id in every row made each batch split its pages).
# ``sends.audience`` is the person's version (its slug: "parents", later "parents+staff" or "parents.pl").

ADDRESS_KEYS = "address_keys"  # ledger_meta: which address_key rules the keys were written with
ADDRESS_KEYS_NOW = "2"  # 2: mailroom.addresses.address_key (NFC, punycode domain); before: strip().lower()
# When two old spellings of one address both have a row, the row that says the most is kept.
_STATE_WEIGHT = {SendState.SENT: 5, SendState.UNCERTAIN: 4, SendState.IN_FLIGHT: 3, SendState.FAILED: 2,
                 SendState.PENDING: 1, SendState.LEFT_OUT: 0}


# For reading people's states: the rows of the live batches of a newsletter (the first ?) now in flight,
# as (row, batch_id). A row in one whose outcome is not written yet (its batch_id is another) is in flight.
_IN_FLIGHT_NOW = ("WITH flying (row, batch_id) AS (SELECT j.value, b.batch_id FROM send_batches b, "
                  "json_each(b.people) j WHERE b.newsletter = ? AND b.state = 'in_flight' AND b.people IS NOT NULL)")
_STATE_NOW = "CASE WHEN f.batch_id IS NULL THEN s.state ELSE 'in_flight' END"
# A person's message id: their own, or (sent with everyone of their batch alike) the batch's.
_MESSAGE_ID = ("CASE WHEN s.message_id IS NULL AND s.state = 'sent' AND f.batch_id IS NULL THEN "
               "(SELECT b.message_id FROM send_batches b WHERE b.batch_id = s.batch_id) ELSE s.message_id END")


@dataclass
class _OpenBatch:
    """A live batch begun by this connection and not finished: its people, and whose outcome is written."""

    newsletter: str
    keys: frozenset[str]
    recorded: set[str] = field(default_factory=set)
    span: tuple[int, int] | None = None  # first and last plan row, when its rows are every row between them


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


class Outcome(NamedTuple):
    """What became of one person in a batch, as the ledger records it (a tuple: one is made per person)."""

    key: str
    state: SendState  # SENT, FAILED, UNCERTAIN or PENDING (not tried: back in the queue)
    message_id: str | None = None
    error: str | None = None


# One person of a draft plan, in the draft table's column order: (key, email, first name, last name, greeting
# list, version, language). A PlannedPerson is one.
PlanRow = tuple[str, str, str, str, str, str, str]
# Some people of a draft plan, a column per field of PlanRow, in order: how the planner's people arrive (no
# tuple made per person).
PlanColumns = tuple[Sequence[str], ...]


def _alike(columns: Sequence[Sequence[str]], start: int, end: int) -> bool:
    """Whether people ``start`` to ``end`` of a draft's columns each have their key as their address and all
    share one greeting list, version and language (asked in C, a column at a time)."""
    keys, emails, _, _, *shared = (column[start:end] for column in columns)
    return keys == emails and all(column.count(column[0]) == len(column) for column in shared)


def plan_columns(people: Iterable[PlanRow]) -> Iterator[PlanColumns]:
    """``people`` a chunk at a time, as columns; a row without PlanRow's seven values is refused."""
    rows = iter(people)
    while chunk := list(islice(rows, 1000)):
        if set(map(len, chunk)) != {7}:
            raise sqlite3.ProgrammingError(
                f"a person of a draft plan has 7 values, not {min(set(map(len, chunk)) - {7})}")
        yield tuple(zip(*chunk, strict=True))


class PlannedPerson(NamedTuple):
    """One person of a plan as the ledger holds it: everything a batch needs, nothing read from the file.
    A tuple: 100,000 are made per send."""

    key: str  # mailroom.addresses.address_key
    email: str  # the address as sent
    first_name: str
    last_name: str
    audience: str  # the list whose greeting and settings their copy uses (dispatch.Person)
    version: str  # the slug of the version they get
    language: str = ""  # the language the lists file asks for ("" the school's); the version may differ


class PlannedBatch(NamedTuple):
    """The next people of a frozen plan for one version, a column each, in plan order: what a batch's messages
    are made from with no object per person (a tuple per person, made and taken apart again, cost more
    than reading them). ``greeting_lists`` is None when everyone's is the version's own list."""

    rows: Sequence[int]  # their plan rows (sends.rowid; the draft's seq for a sandbox run)
    keys: Sequence[str]
    emails: Sequence[str]  # the address as sent
    first_names: Sequence[str]
    last_names: Sequence[str]
    greeting_lists: Sequence[str] | None
    recipient_ids: Sequence[str | None]  # None: no opaque id yet (a sandbox run's newcomer)
    version: str

    def greeting_list_of(self) -> Sequence[str]:
        """Each person's greeting list."""
        return [self.version] * len(self.keys) if self.greeting_lists is None else self.greeting_lists

    def people(self) -> list[PlannedPerson]:
        """The batch a person at a time."""
        return [PlannedPerson(key, email, first, last, greeting, self.version) for key, email, first, last, greeting
                in zip(self.keys, self.emails, self.first_names, self.last_names, self.greeting_list_of(),
                       strict=True)]

    def only(self, kept: Sequence[bool]) -> PlannedBatch:
        """The batch without the people whose ``kept`` is false."""
        greeting_lists = None if self.greeting_lists is None else list(compress(self.greeting_lists, kept))
        return PlannedBatch(list(compress(self.rows, kept)), list(compress(self.keys, kept)),
                            list(compress(self.emails, kept)), list(compress(self.first_names, kept)),
                            list(compress(self.last_names, kept)), greeting_lists,
                            list(compress(self.recipient_ids, kept)), self.version)


@dataclass(frozen=True)
class BuildCount:
    """How many people of a newsletter got the version made by one build."""

    build_hash: str | None  # None: sent before the ledger recorded builds per person
    composed_at: str  # ISO UTC, from that build's manifest ("" if unknown)
    people: int


@dataclass(frozen=True)
class PlanGroup:
    """People of the draft alike in list, version, asked-for language and state in the ledger."""

    greeting_list: str
    version: str
    language: str
    state: SendState | None  # None: no row yet (new to this newsletter)
    people: int


@dataclass(frozen=True)
class PlanFigures:
    """The drafted plan against the ledger: who is in which state, and what changed since the last run."""

    groups: tuple[PlanGroup, ...]
    planned_before: bool  # an earlier run of this newsletter planned people in this ledger
    now_left_out: int  # in the last plan and not sent, not in this one: they will not be sent
    now_left_out_keys: tuple[str, ...]  # the first few of them, in plan order
    sent_by_build: tuple[BuildCount, ...]  # who already has it, per build, oldest first


class Ledger:
    """One open connection to the ledger; every method is one short transaction."""

    def __init__(self, db_path: Path, *, busy_timeout: float | None = None) -> None:
        """Open (or create) the ledger; a file that cannot be used is a ``LedgerError`` naming it.

        ``busy_timeout``: seconds to wait for another program's lock (default: ``database.connect``'s).
        """
        self.path = Path(db_path)
        self._open_batches: dict[int, _OpenBatch] = {}  # live batches begun here and not finished
        self._rows_read: tuple[str, dict[str, int]] = ("", {})  # the last planned_batch: newsletter, key -> row
        try:
            self.conn = connect(self.path) if busy_timeout is None else connect(self.path, busy_timeout)
        except (sqlite3.Error, OSError) as exc:
            raise ledger_error(self.path, exc) from None
        try:
            self.conn.executescript(_SCHEMA)
            self._upgrade()
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
    def _transaction(self, begin: str = "BEGIN IMMEDIATE") -> Iterator[sqlite3.Connection]:
        self.conn.execute(begin)
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # --- upgrading a ledger written by an earlier mailroom ----------------------------------------

    def _upgrade(self) -> None:
        """Add the columns and keys later versions rely on; only writes when something is out of date."""
        have = {row[1] for row in self.conn.execute("PRAGMA table_info(sends)")}
        missing = [name for name in _ADDED_SEND_COLUMNS if name not in have]
        keys = self.conn.execute("SELECT value FROM ledger_meta WHERE name = ?", (ADDRESS_KEYS,)).fetchone()
        recipients_sql = self.conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'recipients'").fetchone()
        unique_ids = "UNIQUE" in (recipients_sql[0] if recipients_sql else "").upper()
        batch_people = any(row[1] == "people" for row in self.conn.execute("PRAGMA table_info(send_batches)"))
        if (not missing and keys is not None and keys[0] == ADDRESS_KEYS_NOW
                and not unique_ids and batch_people):
            return
        with self._transaction() as conn:
            if not batch_people:  # batches in flight of an earlier mailroom marked each person's row instead
                conn.execute("ALTER TABLE send_batches ADD COLUMN people TEXT")
            if unique_ids:  # an earlier mailroom indexed every id to prove it unique: same rows, one b-tree now
                conn.execute("ALTER TABLE recipients RENAME TO recipients_before")
                conn.execute(_RECIPIENTS_TABLE)
                conn.execute("INSERT INTO recipients SELECT address_key, recipient_id, created_at "
                             "FROM recipients_before")
                conn.execute("DROP TABLE recipients_before")
            for name in missing:
                conn.execute(f"ALTER TABLE sends ADD COLUMN {name} {_ADDED_SEND_COLUMNS[name]}")
            if "build_hash" in missing:  # rows from before: their batch says which build they got
                conn.execute("UPDATE sends SET build_hash = (SELECT b.build_hash FROM send_batches b "
                             "WHERE b.batch_id = sends.batch_id) WHERE batch_id IS NOT NULL")
            _rekey(conn)
            conn.execute("INSERT INTO ledger_meta VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = "
                         "excluded.value", (ADDRESS_KEYS, ADDRESS_KEYS_NOW))

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
            new = {k: secrets.token_hex(RECIPIENT_ID_BYTES).upper() for k in missing}  # as freeze_plan's
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
                    f"{_IN_FLIGHT_NOW} SELECT s.address_key, s.audience, {_STATE_NOW}, "
                    f"COALESCE(f.batch_id, s.batch_id), {_MESSAGE_ID}, s.error FROM sends s LEFT JOIN flying f "
                    "ON f.row = s.rowid AND s.batch_id IS NOT f.batch_id "
                    f"WHERE s.newsletter = ? AND s.address_key IN ({marks})",
                    (newsletter, newsletter, *chunk)):
                rows[r[0]] = SendRow(r[0], r[1], SendState(r[2]), r[3], r[4], r[5])
        return rows

    # --- the plan: drafted from the lists, frozen when the office confirms ------------------------------

    def draft_plan(self, people: Iterable[PlanRow], *, keys_unique: bool = False) -> None:
        """``draft_columns`` of ``people`` a person at a time."""
        self.draft_columns(plan_columns(people), keys_unique=keys_unique)

    def draft_columns(self, chunks: Iterable[PlanColumns], *, keys_unique: bool = False) -> None:
        """The plan as just read from the lists, in a table only this connection sees; nothing is decided.

        ``chunks`` is streamed in, so a plan of any size costs no memory here. ``keys_unique``: the caller
        gives each address key once (the planner's people do): the index that would keep the first of a
        repeated key is made only when the draft is compared with rows of the ledger.
        """
        self.conn.execute("DROP TABLE IF EXISTS temp.plan_draft")
        self.conn.execute(
            "CREATE TEMP TABLE plan_draft (seq INTEGER PRIMARY KEY, address_key TEXT NOT NULL, "
            "email TEXT, "  # NULL: the address is the key
            "first_name TEXT NOT NULL, last_name TEXT NOT NULL, greeting_list TEXT NOT NULL, "
            "version TEXT NOT NULL, language TEXT NOT NULL)")
        rest: list[list[str]] = [[] for _ in range(7)]  # people short of a whole statement, for the next chunk
        with self._transaction("BEGIN") as conn:  # the draft is this connection's own: no lock on the ledger
            for chunk in chunks:
                columns = [[*before, *column] for before, column in zip(rest, chunk, strict=True)] if rest[0] \
                    else chunk
                whole = len(columns[0]) - len(columns[0]) % _DRAFT_ROWS
                self._draft_whole_statements(conn, columns, whole)
                rest = [list(column[whole:]) for column in columns]
            conn.executemany(_DRAFT_INSERT + _DRAFT_ONE, zip(*rest, strict=True))
            if not keys_unique:
                self._index_draft(conn)

    @staticmethod
    def _draft_whole_statements(conn: sqlite3.Connection, columns: Sequence[Sequence[str]], count: int) -> None:
        """The first ``count`` people of ``columns`` (a multiple of _DRAFT_ROWS), _DRAFT_ROWS a statement: SQLite
        steps (and Python hands its lock over) once for them all, not once a person, which cost about as much
        as binding their seven values. Each statement's values are laid out by slice assignments, a column at a
        time (no tuple made per person)."""
        keys, _, first_names, last_names, greeting_lists, versions, languages = columns
        everyone_alike = bool(count) and _alike(columns, 0, len(keys))
        for start in range(0, count, _DRAFT_ROWS):
            end = start + _DRAFT_ROWS
            if everyone_alike or _alike(columns, start, end):
                # The usual hundred: each address is its own key and everyone has one greeting list, version and
                # language. Each value bound once (binding is a copy and an allocation per value).
                values: list[str | None] = [None] * (3 * _DRAFT_ROWS + 3)
                values[0:3 * _DRAFT_ROWS:3] = keys[start:end]
                values[1:3 * _DRAFT_ROWS:3] = first_names[start:end]
                values[2:3 * _DRAFT_ROWS:3] = last_names[start:end]
                values[3 * _DRAFT_ROWS:] = greeting_lists[start], versions[start], languages[start]
                conn.execute(_DRAFT_INSERT + _ALIKE_ROWS, values)
            else:
                values = [None] * (7 * _DRAFT_ROWS)
                for at, column in enumerate(columns):
                    values[at::7] = column[start:end]
                conn.execute(_DRAFT_INSERT + _DRAFT_MANY, values)

    @staticmethod
    def _index_draft(conn: sqlite3.Connection) -> None:
        """The draft's index by address, made once the rows are in: sorting once is cheaper than growing an
        index row by row (at a random place each time in a school's unsorted lists)."""
        try:
            conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS temp.plan_draft_by_key ON plan_draft (address_key)")
        except sqlite3.IntegrityError:  # the lists gave someone twice (the planner never does): the first counts
            conn.execute("DELETE FROM plan_draft WHERE seq NOT IN (SELECT MIN(seq) FROM plan_draft "
                         "GROUP BY address_key)")
            conn.execute("CREATE UNIQUE INDEX temp.plan_draft_by_key ON plan_draft (address_key)")

    def plan_figures(self, newsletter: str, *, resend_uncertain: bool, named: int = 10) -> PlanFigures:
        """The draft against what the ledger holds for ``newsletter`` (run ``draft_plan`` first)."""
        planned_before = self.has_rows(newsletter)
        if planned_before:
            self._index_draft(self.conn)
        # A first send has nothing to compare with: the draft's own groups, without a look-up per person.
        state = "s.state" if planned_before else "NULL"
        join = "LEFT JOIN sends s ON s.newsletter = ? AND s.address_key = d.address_key " if planned_before else ""
        groups = tuple(PlanGroup(g, v, lang, SendState(state) if state else None, count)
                       for g, v, lang, state, count in self.conn.execute(
            f"SELECT d.greeting_list, d.version, d.language, {state}, COUNT(*) FROM plan_draft d {join}"
            "GROUP BY 1, 2, 3, 4", (newsletter,) if planned_before else ()))
        dropped = self._dropped_sql(resend_uncertain)
        now_left_out = self.conn.execute(f"SELECT COUNT(*) {dropped}", (newsletter,)).fetchone()[0]
        keys = tuple(r[0] for r in self.conn.execute(
            f"SELECT s.address_key {dropped} ORDER BY s.rowid LIMIT ?", (newsletter, named)))
        return PlanFigures(groups=groups, planned_before=planned_before, now_left_out=now_left_out,
                           now_left_out_keys=keys, sent_by_build=tuple(self.sent_by_build(newsletter)))

    @staticmethod
    def _dropped_sql(resend_uncertain: bool) -> str:
        """FROM ... WHERE for the people the last plan would still send to and the draft does not hold."""
        states = ",".join(f"'{state}'" for state in (SENDABLE_RESENDING if resend_uncertain else SENDABLE))
        return (f"FROM sends s WHERE s.newsletter = ? AND s.state IN ({states}) AND NOT EXISTS "
                "(SELECT 1 FROM plan_draft d WHERE d.address_key = s.address_key)")

    def freeze_plan(self, newsletter: str, *, build_hash: str, composed_at: str, resend_uncertain: bool) -> int:
        """The office confirmed the draft: make it the plan the send reads, in one transaction.

        Everyone in the draft gets (or keeps) a row, with the address, names, greeting list and version
        to send; people the last plan would still have sent to and the draft leaves out become
        *left out*. Rows already sent (or uncertain, unless resending) are not touched. Returns how
        many were left out.
        """
        now = _now()
        sendable = SENDABLE_RESENDING if resend_uncertain else SENDABLE
        states = ",".join(f"'{state}'" for state in (*sendable, SendState.LEFT_OUT))
        with self._transaction() as conn:
            if self.has_rows(newsletter):  # people to compare with the draft, by address
                self._index_draft(conn)
            conn.execute("INSERT INTO builds VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                         (newsletter, build_hash, composed_at, now))
            # Opaque ids for newcomers, made here in one statement (RECIPIENT_ID_BYTES random bytes each,
            # from SQLite's ChaCha20 generator, in upper-case hex).
            conn.execute("INSERT INTO recipients (address_key, recipient_id, created_at) SELECT address_key, "
                         "hex(randomblob(?)), ? FROM plan_draft WHERE true ON CONFLICT DO NOTHING",
                         (RECIPIENT_ID_BYTES, now))
            left = conn.execute(
                "UPDATE sends SET state = 'left_out', error = 'not in the plan confirmed at ' || ?, updated_at = ? "
                f"WHERE rowid IN (SELECT s.rowid {self._dropped_sql(resend_uncertain)})",
                (now, now, newsletter)).rowcount
            conn.execute(
                "INSERT INTO sends (newsletter, address_key, audience, email, first_name, last_name, greeting_list, "
                "state, created_at, updated_at) "
                "SELECT ?, address_key, version, NULLIF(email, address_key), first_name, last_name, greeting_list, "
                "'pending', ?, ? "
                "FROM plan_draft WHERE true ORDER BY seq "
                "ON CONFLICT (newsletter, address_key) DO UPDATE SET audience = excluded.audience, "
                "email = excluded.email, first_name = excluded.first_name, last_name = excluded.last_name, "
                "greeting_list = excluded.greeting_list, updated_at = excluded.updated_at, "
                "state = CASE sends.state WHEN 'left_out' THEN 'pending' ELSE sends.state END, "
                "error = CASE sends.state WHEN 'left_out' THEN NULL ELSE sends.error END "
                f"WHERE sends.state IN ({states})", (newsletter, now, now))
        return left

    def planned_batch(self, newsletter: str, version: str, *, after: int, size: int,
                      states: Sequence[SendState]) -> PlannedBatch | None:
        """The next ``size`` people of the frozen plan for ``version`` in ``states``, after row ``after`` (None:
        nobody left). Where they are is remembered, so ``begin_batch`` finds them by row."""
        marks = ",".join("?" * len(states))
        cursor = self.conn.cursor()
        cursor.row_factory = None  # plain tuples: this runs once per person of a send
        # Only the columns that differ from person to person, each a conversion per row; NULL (None, no
        # conversion) for an address that is its own key and a greeting list that is the version's own. The rows
        # are walked in rowid order from ``after`` ("+" keeps SQLite from the primary key's index, which would
        # sort the newsletter's rows for every batch): one pass over the table for each version.
        found = cursor.execute(
            "SELECT s.rowid, s.address_key, s.email, s.first_name, s.last_name, NULLIF(s.greeting_list, s.audience), "
            "r.recipient_id FROM sends s LEFT JOIN recipients r ON r.address_key = s.address_key "
            f"WHERE +s.newsletter = ? AND s.audience = ? AND s.rowid > ? AND s.state IN ({marks}) "
            "ORDER BY s.rowid LIMIT ?", (newsletter, version, after, *states, size)).fetchall()
        if not found:
            self._rows_read = (newsletter, {})
            return None
        # A column at a time, taken apart in C: no Python step per person.
        row_ids, keys, emails, first_names, last_names, greetings, recipient_ids = zip(*found, strict=True)
        addresses = tuple(email or key for email, key in zip(emails, keys, strict=True)) if any(emails) else keys
        greeting_lists = tuple(greeting or version for greeting in greetings) if any(greetings) else None
        self._rows_read = (newsletter, dict(zip(keys, row_ids, strict=True)))
        return PlannedBatch(row_ids, keys, addresses, first_names, last_names, greeting_lists, recipient_ids, version)

    def drafted_batch(self, newsletter: str, version: str, *, after: int, size: int,
                      states: Sequence[SendState]) -> PlannedBatch | None:
        """As ``planned_batch``, from the draft (a sandbox run freezes nothing): no row yet, or in ``states``."""
        marks = ",".join("?" * len(states))
        # Made at the first read (only a sandbox run reads the draft back).
        self.conn.execute("CREATE INDEX IF NOT EXISTS temp.plan_draft_by_version ON plan_draft (version)")
        found = self.conn.execute(
            "SELECT d.seq, d.address_key, COALESCE(d.email, d.address_key), d.first_name, d.last_name, "
            "d.greeting_list, r.recipient_id "
            "FROM plan_draft d LEFT JOIN sends s ON s.newsletter = ? AND s.address_key = d.address_key "
            "LEFT JOIN recipients r ON r.address_key = d.address_key "
            f"WHERE d.version = ? AND d.seq > ? AND (s.state IS NULL OR s.state IN ('left_out', {marks})) "
            "ORDER BY d.seq LIMIT ?", (newsletter, version, after, *states, size)).fetchall()
        if not found:
            return None
        seqs, keys, emails, first_names, last_names, greeting_lists, recipient_ids = zip(*found, strict=True)
        return PlannedBatch(seqs, keys, emails, first_names, last_names, greeting_lists, recipient_ids, version)

    def leave_out(self, newsletter: str, reasons: Mapping[str, str]) -> None:
        """People of the plan who must not be sent after all (e.g. suppressed mid-send), with why."""
        now = _now()
        with self._transaction() as conn:
            conn.executemany(
                "UPDATE sends SET state = 'left_out', error = ?, updated_at = ? WHERE newsletter = ? AND "
                "address_key = ? AND state IN ('pending', 'failed', 'uncertain', 'in_flight')",
                ((reason, now, newsletter, key) for key, reason in reasons.items()))

    def failed_people(self, newsletter: str) -> list[tuple[str, str, str, str, str]]:
        """The people of ``newsletter``'s plan known not to have been accepted, in plan order: (address as sent,
        first name, last name, version, what the service said). Read from the frozen plan, which the send
        holds instead of the lists."""
        return [(email or key, first or "", last or "", version, error or "")
                for key, email, first, last, version, error in self.conn.execute(
                    "SELECT address_key, email, first_name, last_name, audience, error FROM sends "
                    "WHERE newsletter = ? AND state = 'failed' ORDER BY rowid", (newsletter,))]

    def sent_by_build(self, newsletter: str) -> list[BuildCount]:
        """Who has ``newsletter``, per build their copy was made from, oldest build first."""
        return [BuildCount(h, composed or "", n) for h, composed, n in self.conn.execute(
            "SELECT h, b.composed_at, COUNT(*) FROM (SELECT s.rowid AS row_no, s.updated_at, s.newsletter, "
            "COALESCE(s.build_hash, (SELECT sb.build_hash FROM send_batches sb WHERE sb.batch_id = s.batch_id)) AS h "
            "FROM sends s WHERE s.newsletter = ? AND s.state = 'sent') s "
            "LEFT JOIN builds b ON b.newsletter = s.newsletter AND b.build_hash = s.h GROUP BY h "
            "ORDER BY COALESCE(b.composed_at, ''), MIN(s.updated_at), MIN(s.row_no)", (newsletter,))]

    def sent_recently(self, transport: str, since: str) -> int:
        """How many messages ``transport`` accepted from mailroom since ``since`` (see ``sent_recently``)."""
        return sent_recently(self.conn, transport, since)

    def has_rows(self, newsletter: str) -> bool:
        """Whether this ledger knows anything of ``newsletter`` (a lost ledger knows nothing)."""
        return self.conn.execute("SELECT EXISTS (SELECT 1 FROM sends WHERE newsletter = ?)",
                                 (newsletter,)).fetchone()[0] == 1

    def counts(self, newsletter: str) -> dict[str, int]:
        """People of ``newsletter`` per state (those of a batch in flight as in flight)."""
        return dict(self.conn.execute(
            f"{_IN_FLIGHT_NOW} SELECT {_STATE_NOW} AS now, COUNT(*) FROM sends s LEFT JOIN flying f "
            "ON f.row = s.rowid AND s.batch_id IS NOT f.batch_id WHERE s.newsletter = ? GROUP BY now",
            (newsletter, newsletter)))

    # --- batches ---------------------------------------------------------------------------------

    def begin_batch(self, *, newsletter: str, audience: str, kind: BatchKind, transport: str, build_hash: str,
                    keys: Sequence[str]) -> int:
        """Write the batch as in flight BEFORE the request goes out; for a live send, with its people.

        A live batch's people are written once, as the list of their plan rows in the batch's own row
        (``send_batches.people``): while the batch is in flight, that list is what makes them in flight
        (``states`` and ``counts`` say so, ``settle_abandoned`` makes them uncertain after a crash). Their own
        rows are written only with the outcome, once per person instead of twice.
        """
        now = _now()
        span = None
        # This commit is on disk before the request goes: the connection's usual NORMAL syncs the WAL only at a
        # checkpoint, so a power cut could take back "in flight" (and everything since the last checkpoint) and
        # the next run would send these people again. FULL syncs it, with all the commits before.
        self.conn.execute("PRAGMA synchronous=FULL")
        try:
            with self._transaction() as conn:
                people = None
                if kind == BatchKind.LIVE:
                    rows = self._plan_rows(conn, newsletter, audience, keys, now)
                    people = json.dumps(rows)
                    if rows and max(rows) - min(rows) == len(rows) - 1 == len(set(rows)) - 1:
                        span = (min(rows), max(rows))
                cur = conn.execute(
                    "INSERT INTO send_batches (newsletter, audience, kind, transport, build_hash, size, state, "
                    "started_at, people, attempts) VALUES (?, ?, ?, ?, ?, ?, 'in_flight', ?, ?, 1)",
                    (newsletter, audience, kind, transport, build_hash, len(keys), now, people))
                batch_id = int(cur.lastrowid or 0)
        finally:
            self.conn.execute("PRAGMA synchronous=NORMAL")
        if kind == BatchKind.LIVE:
            self._open_batches[batch_id] = _OpenBatch(newsletter, frozenset(keys), span=span)
        return batch_id

    def _plan_rows(self, conn: sqlite3.Connection, newsletter: str, audience: str, keys: Sequence[str],
                   now: str) -> list[int]:
        """The plan rows of ``keys``: from where ``planned_batch`` just read them (the usual case), else looked
        up, with a row made for anyone not planned (a caller without a plan)."""
        read_for, rows = self._rows_read
        if read_for == newsletter and rows:
            if len(keys) == len(rows) and list(rows) == list(keys):  # the whole batch as read (compared in C)
                return list(rows.values())
            if rows.keys() >= set(keys):
                return [rows[key] for key in keys]
        conn.executemany(
            "INSERT INTO sends (newsletter, address_key, audience, state, created_at, updated_at) "
            "VALUES (?, ?, ?, 'pending', ?, ?) ON CONFLICT DO NOTHING",
            ((newsletter, key, audience, now, now) for key in keys))
        found = dict(conn.execute(
            "SELECT address_key, rowid FROM sends WHERE (newsletter, address_key) IN "
            "(SELECT ?, value FROM json_each(?))",
            (newsletter, json.dumps(list(keys)))))
        return [found[key] for key in keys]

    def count_attempt(self, batch_id: int) -> None:
        """One more try of the batch (``begin_batch`` counts the first)."""
        self.conn.execute("UPDATE send_batches SET attempts = attempts + 1 WHERE batch_id = ?", (batch_id,))

    # Writes one outcome to rows of a batch: the batch's id goes with it, and its build and message id are the
    # batch's (NULL here) unless a person's own message id is given (see _ADDED_SEND_COLUMNS). "OR FAIL": it
    # always runs inside a transaction that a failure rolls back whole, so SQLite need not keep a statement
    # journal to undo this statement alone (a batch's rows spilled one into a temporary file: one a batch).
    _SET_OUTCOME = ("UPDATE OR FAIL sends SET state = ?, message_id = ?, error = ?, updated_at = ?, batch_id = ?, "
                    "build_hash = NULL ")
    _IN_BATCH = ("+newsletter = ? AND rowid IN (SELECT value FROM json_each("
                 "(SELECT people FROM send_batches WHERE batch_id = ?)))")

    def record_outcomes(self, batch_id: int, newsletter: str, kind: BatchKind, outcomes: Iterable[Outcome]) -> None:
        """What the transport said about some of the batch's people (only live sends touch their rows)."""
        if kind != BatchKind.LIVE:
            return
        now = _now()
        alike: dict[tuple[SendState, str | None, str | None], list[str]] = {}  # usually one group: all sent
        for o in outcomes:
            alike.setdefault((o.state, o.message_id, o.error), []).append(o.key)
        batch = self._open_batches.get(batch_id)
        with self._transaction() as conn:
            for (state, message_id, error), keys in alike.items():
                if batch is not None and len(keys) >= len(batch.keys) and batch.keys == set(keys):
                    # The usual end of a batch: everyone in it, alike (all sent): found by the batch's row list.
                    conn.execute(self._SET_OUTCOME + "WHERE " + self._IN_BATCH,
                                 (state, message_id, error, now, batch_id, newsletter, batch_id))
                else:
                    if batch is not None and not batch.keys.issuperset(keys):
                        raise LedgerError(f"batch {batch_id} has no such person", self.path)
                    # A few people (a person refused, one SMTP message accepted): found by their keys.
                    where = ("newsletter = ? AND address_key IN (SELECT value FROM json_each(?))" if batch is not None
                             else self._IN_BATCH + " AND address_key IN (SELECT value FROM json_each(?))")
                    found = (newsletter,) if batch is not None else (newsletter, batch_id)
                    conn.execute(self._SET_OUTCOME + "WHERE " + where,
                                 (state, message_id, error, now, batch_id, *found, json.dumps(keys)))
                if batch is not None:
                    batch.recorded.update(keys)

    def record_batch(self, batch_id: int, newsletter: str, kind: BatchKind, state: SendState, *,
                     message_id: str | None = None, error: str | None = None) -> None:
        """The same outcome for everyone ``begin_batch`` put in the batch (e.g. all sent): one statement."""
        if kind != BatchKind.LIVE:
            return
        with self._transaction() as conn:
            # The message id is the batch's, kept once in its row (see _ADDED_SEND_COLUMNS).
            conn.execute("UPDATE send_batches SET message_id = COALESCE(?, message_id) WHERE batch_id = ?",
                         (message_id, batch_id))
            self._record_everyone(conn, batch_id, newsletter, state, error, _now())
        batch = self._open_batches.get(batch_id)
        if batch is not None:
            batch.recorded.update(batch.keys)

    def batch_sent(self, batch_id: int, newsletter: str, kind: BatchKind, *, message_id: str | None = None) -> None:
        """The usual end of a batch: everyone in it accepted alike, and the batch over. ``record_batch`` and
        ``finish_batch`` in one transaction (a commit is a write to the WAL and its locks: one a batch fewer)."""
        now = _now()
        with self._transaction() as conn:
            if kind == BatchKind.LIVE:
                self._record_everyone(conn, batch_id, newsletter, SendState.SENT, None, now)
            conn.execute("UPDATE send_batches SET state = ?, message_id = COALESCE(?, message_id), error = NULL, "
                         "finished_at = ? WHERE batch_id = ?", (BatchState.SENT, message_id, now, batch_id))
        self._open_batches.pop(batch_id, None)

    def _record_everyone(self, conn: sqlite3.Connection, batch_id: int, newsletter: str, state: SendState,
                         error: str | None, now: str) -> None:
        """One outcome written to every row of a live batch: found by the rows' range when they are every row
        between the batch's first and last (a first send's usual batch), else by the batch's list of rows."""
        batch = self._open_batches.get(batch_id)
        if batch is not None and batch.span is not None:
            conn.execute(self._SET_OUTCOME + "WHERE rowid BETWEEN ? AND ? AND +newsletter = ?",
                         (state, None, error, now, batch_id, *batch.span, newsletter))
        else:
            conn.execute(self._SET_OUTCOME + "WHERE " + self._IN_BATCH,
                         (state, None, error, now, batch_id, newsletter, batch_id))

    def finish_batch(self, batch_id: int, state: BatchState, *, message_id: str | None = None,
                     error: str | None = None) -> None:
        """The batch is over. Anyone in it whose outcome was never recorded (no transport path leaves one, but
        the ledger does not rely on it) is uncertain, as after a crash: never sent again without a decision."""
        batch = self._open_batches.pop(batch_id, None)
        now = _now()
        with self._transaction() as conn:
            if batch is not None and len(batch.recorded) < len(batch.keys):
                self._unrecorded_are_uncertain(conn, batch.newsletter, batch_id,
                                               "no outcome was recorded for this person", now)
            conn.execute(
                "UPDATE send_batches SET state = ?, message_id = COALESCE(?, message_id), error = ?, "
                "finished_at = ? WHERE batch_id = ?", (state, message_id, error, now, batch_id))

    # --- resume ------------------------------------------------------------------------------------

    def settle_abandoned(self, newsletter: str) -> int:
        """People left in flight by a run that died are uncertain: nobody knows if their request arrived.

        They are the people of a live batch still in flight whose outcome was never written (and, in a
        ledger from before batches held their people, rows still marked in flight). Only call this while
        holding ``send_lock`` (so no other run is sending right now).
        """
        now = _now()
        error = "the send stopped while this request was on its way"
        with self._transaction() as conn:
            settled = conn.execute(
                "UPDATE sends SET state = 'uncertain', updated_at = ?, error = ? "
                "WHERE newsletter = ? AND state = 'in_flight'", (now, error, newsletter)).rowcount
            for (batch_id,) in conn.execute(
                    "SELECT batch_id FROM send_batches WHERE newsletter = ? AND state = 'in_flight' "
                    "AND people IS NOT NULL", (newsletter,)).fetchall():
                settled += self._unrecorded_are_uncertain(conn, newsletter, batch_id, error, now)
            conn.execute(
                "UPDATE send_batches SET state = 'uncertain', finished_at = ?, error = COALESCE(error, ?) "
                "WHERE newsletter = ? AND state = 'in_flight'", (now, error, newsletter))
        return settled

    def _unrecorded_are_uncertain(self, conn: sqlite3.Connection, newsletter: str, batch_id: int, error: str,
                                  now: str) -> int:
        """The people of a live batch whose outcome was not written become uncertain; returns how many."""
        return int(conn.execute(
            self._SET_OUTCOME + "WHERE " + self._IN_BATCH + " AND batch_id IS NOT ?",
            (SendState.UNCERTAIN, None, error, now, batch_id, newsletter, batch_id, batch_id)).rowcount)

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


def _rekey(conn: sqlite3.Connection) -> None:
    """Re-key rows written when a key was only trimmed and lower-cased, to ``addresses.address_key``.

    Only a key with a non-ASCII character can change (an NFD accent, a Unicode domain). Without this, a
    send resumed across the upgrade would see those people as new and mail them again. Where two old
    spellings of one address both have a row, the row that says the most (sent before uncertain before
    pending) is kept; a recipient id keeps the new spelling's row if there is one.
    """
    rows = conn.execute("SELECT rowid, newsletter, address_key, state FROM sends "
                        "WHERE address_key GLOB '*[^ -~]*' ORDER BY rowid").fetchall()
    for rowid, newsletter, old, state in rows:
        new = address_key(old)
        if new == old:
            continue
        other = conn.execute("SELECT rowid, state FROM sends WHERE newsletter = ? AND address_key = ?",
                             (newsletter, new)).fetchone()
        if other is not None:
            if _STATE_WEIGHT.get(state, 0) <= _STATE_WEIGHT.get(other[1], 0):
                conn.execute("DELETE FROM sends WHERE rowid = ?", (rowid,))
                continue
            conn.execute("DELETE FROM sends WHERE rowid = ?", (other[0],))
        conn.execute("UPDATE sends SET address_key = ? WHERE rowid = ?", (new, rowid))
    for (old,) in conn.execute("SELECT address_key FROM recipients WHERE address_key GLOB '*[^ -~]*'").fetchall():
        new = address_key(old)
        if new == old:
            continue
        if conn.execute("SELECT 1 FROM recipients WHERE address_key = ?", (new,)).fetchone():
            conn.execute("DELETE FROM recipients WHERE address_key = ?", (old,))
        else:
            conn.execute("UPDATE recipients SET address_key = ? WHERE address_key = ?", (new, old))
    for row_id, old in conn.execute("SELECT id, address FROM test_sends WHERE address GLOB '*[^ -~]*'").fetchall():
        conn.execute("UPDATE test_sends SET address = ? WHERE id = ?", (address_key(old), row_id))


def sent_recently(conn: sqlite3.Connection, transport: str, since: str) -> int:
    """Messages ``transport`` (e.g. "smtp") accepted since ``since`` (ISO UTC), every newsletter together:
    the people of live batches now sent, and the test copies. A relay's daily limit counts all of them."""
    if not has_table(conn, "send_batches"):
        return 0
    # A batch's people are found through its list of their rows; a batch of an earlier mailroom (no list) by
    # looking over the table (sends has no index by batch), which only batches of the last hours ask for.
    recent = "b.transport = ? AND b.kind = 'live' AND b.started_at >= ?"
    live = conn.execute(
        "SELECT COUNT(*) FROM send_batches b, json_each(b.people) j JOIN sends s ON s.rowid = j.value "
        f"WHERE {recent} AND b.people IS NOT NULL AND s.batch_id = b.batch_id AND s.state = 'sent'",
        (transport, since)).fetchone()[0]
    if conn.execute(f"SELECT EXISTS (SELECT 1 FROM send_batches b WHERE {recent} AND b.people IS NULL)",
                    (transport, since)).fetchone()[0]:
        live += conn.execute(
            "SELECT COUNT(*) FROM sends s WHERE s.state = 'sent' AND s.batch_id IN (SELECT b.batch_id FROM "
            f"send_batches b WHERE {recent} AND b.people IS NULL)", (transport, since)).fetchone()[0]
    tests = conn.execute(
        "SELECT COUNT(*) FROM send_batches WHERE transport = ? AND kind = 'test' AND state = 'sent' "
        "AND started_at >= ?", (transport, since)).fetchone()[0]
    return int(live) + int(tests)


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

    The lock file stays next to the ledger (mailroom/send/lock.py says how the lock is held).
    """
    lock_path = Path(str(db_path) + ".send-lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(lock_path)
    except LockHeld:
        raise RefusedForSafety(
            "another send is running right now; wait for it to finish, then try again") from None
    except OSError as exc:
        raise ledger_error(Path(db_path), exc) from None
    with lock:
        yield
