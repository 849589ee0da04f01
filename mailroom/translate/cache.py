"""Every snippet an engine translated, so it is never paid for twice.

Keyed by engine, target language, the keep-list and the snippet itself (hashed): a recompose after a
small edit sends only the changed paragraphs, and one with nothing changed sends nothing, which keeps
the live preview fast. A separate SQLite file from the send ledger (``translations.sqlite3`` by
default) because it holds only the newsletter's public text and can be deleted at any time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from mailroom.database import connect, to_text, utc_now

_SCHEMA = """
CREATE TABLE IF NOT EXISTS translations (
    engine TEXT NOT NULL,
    language TEXT NOT NULL,
    keep_hash TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    translated TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (engine, language, keep_hash, text_hash)
)"""


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def keep_hash(keep: Sequence[str]) -> str:
    """The keep-list as part of the key: a new kept name changes what the engine is sent."""
    return hashlib.sha256("\n".join(sorted(keep)).encode("utf-8")).hexdigest()[:16]


class TranslationCache:
    def __init__(self, path: Path, engine: str, keep: Sequence[str]) -> None:
        self.conn = connect(path)
        self.conn.execute(_SCHEMA)
        self.engine = engine
        self.keep_hash = keep_hash(keep)

    def close(self) -> None:
        self.conn.close()

    def lookup(self, language: str, snippets: Iterable[str]) -> dict[str, str]:
        """The cached translations of ``snippets`` into ``language`` (those not cached are absent)."""
        wanted = {text_hash(s): s for s in snippets}
        found: dict[str, str] = {}
        hashes = list(wanted)
        for start in range(0, len(hashes), 500):
            chunk = hashes[start:start + 500]
            rows = self.conn.execute(
                f"SELECT text_hash, translated FROM translations WHERE engine = ? AND language = ? AND keep_hash = ? "
                f"AND text_hash IN ({','.join('?' * len(chunk))})",
                (self.engine, language, self.keep_hash, *chunk)).fetchall()
            found.update({wanted[row["text_hash"]]: row["translated"] for row in rows})
        return found

    def store(self, language: str, translated: Mapping[str, str]) -> None:
        now = to_text(utc_now())
        self.conn.execute("BEGIN")
        try:
            self.conn.executemany(
                "INSERT OR REPLACE INTO translations VALUES (?, ?, ?, ?, ?, ?)",
                [(self.engine, language, self.keep_hash, text_hash(s), t, now) for s, t in translated.items()])
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
