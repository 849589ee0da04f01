"""newsletters/<slug>/sent.json: a small record, kept with the newsletter, that it has been sent.

The ledger (SQLite) says who has which newsletter; if it is deleted, replaced or pointed elsewhere, a
send would start again from nobody and mail everyone a second copy. This record lives in the
newsletter's folder (so it is backed up and committed with it) and says how many people were sent it,
when, and which ledger file holds who. It holds no personal data: no address, name or id.

A send writes it before its first message and again when it ends; a send that finds the record but a
ledger that knows nothing of the newsletter refuses, unless the office says to start again.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mailroom.errors import InputError

SENT_RECORD = "sent.json"


@dataclass(frozen=True)
class SentRecord:
    """What sent.json says (figures may be missing from a record that was damaged by hand)."""

    path: Path
    people_sent: int | None
    first_sent_at: str
    last_sent_at: str
    ledger: str  # the ledger file, relative to the project folder when inside it


def read_sent_record(newsletter_dir: Path) -> SentRecord | None:
    """The record, or None if this newsletter has never been sent (live) from this folder.

    A damaged record still counts as a record: it cannot say how many, but it says a send happened.
    """
    path = newsletter_dir / SENT_RECORD
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}

    def text(name: str) -> str:
        value = data.get(name)
        return value if isinstance(value, str) else ""

    people = data.get("people_sent")
    return SentRecord(path=path, people_sent=people if isinstance(people, int) else None,
                      first_sent_at=text("first_sent_at"), last_sent_at=text("last_sent_at"), ledger=text("ledger"))


def write_sent_record(newsletter_dir: Path, *, newsletter: str, people_sent: int, sent_at: str, ledger: Path,
                      root: Path) -> Path:
    """Write (or update) the record; the first send's time is kept. Replaced in one step, never half-written."""
    path = newsletter_dir / SENT_RECORD
    earlier = read_sent_record(newsletter_dir)
    try:
        shown_ledger = ledger.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        shown_ledger = str(ledger.resolve())
    data = {
        "about": "Written by mailroom's send. It says this newsletter was sent; the ledger file names who. "
                 "Keep it with the newsletter.",
        "newsletter": newsletter,
        "people_sent": people_sent,
        "first_sent_at": (earlier.first_sent_at if earlier and earlier.first_sent_at else sent_at),
        "last_sent_at": sent_at,
        "ledger": shown_ledger,
    }
    try:
        handle, temporary = tempfile.mkstemp(prefix=".sent-", suffix=".json", dir=newsletter_dir)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        os.replace(temporary, path)
    except OSError as exc:
        raise InputError(f"mailroom could not write its record that this newsletter was sent ({exc.strerror}); "
                         "nothing more was sent. Check that you may write to the newsletter's folder", path) from None
    return path
