"""Opening the one SQLite file (settings.db_path) that the ledger, events and suppressions share.

Each module creates its own tables with CREATE TABLE IF NOT EXISTS; this module only decides how a
connection behaves: WAL so the webhook server can write while a send or a report reads, a busy timeout
so two commands never fail on a momentary lock, and autocommit so every ``with conn:`` block is one
short transaction.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

BUSY_TIMEOUT_SECONDS = 30.0
PAGE_SIZE = 16_384  # bytes, for files made from now on
CACHE_SIZE = -2_000  # SQLite's own default for a file: 2,000 KiB (negative: KiB, not pages)


def connect(db_path: Path, busy_timeout: float = BUSY_TIMEOUT_SECONDS) -> sqlite3.Connection:
    """A connection to ``db_path`` in WAL mode, creating the file (and its folder) if needed."""
    db_path = Path(db_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db_path, timeout=busy_timeout, isolation_level=None,
                           check_same_thread=False)
    conn.row_factory = sqlite3.Row
    # A new file gets 16 KB pages (a file made before keeps its own size: SQLite fixes it at creation). A send
    # writes its plan and outcomes a whole page at a time, and at 4 KB the system calls for them cost as much
    # CPU as the writing: 100,000 people made some 40,000 writes and 15,000 reads of the file; now a quarter.
    conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
    # Temporary tables (a send's draft plan) get the same 2 MB of cache as the file: left to SQLite, a temporary
    # database with 16 KB pages kept 8 MB of a 100,000-person draft in memory.
    conn.execute(f"PRAGMA temp.cache_size={CACHE_SIZE}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def connect_existing(db_path: Path) -> sqlite3.Connection | None:
    """A connection only if the file already exists: reading must never create an empty database."""
    if not Path(db_path).is_file():
        return None
    return connect(db_path)


def has_table(conn: sqlite3.Connection, name: str) -> bool:
    """Whether ``name`` exists yet (a fresh ledger may not have every module's tables)."""
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
    return row is not None


def utc_now() -> datetime:
    """The current time in UTC, second precision (what the tables store)."""
    return datetime.now(UTC).replace(microsecond=0)


def to_text(moment: datetime) -> str:
    """A UTC timestamp as stored: ISO 8601 with a Z, which sorts as text."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_text(text: str) -> datetime:
    """The inverse of ``to_text``."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
