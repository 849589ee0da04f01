from datetime import UTC, datetime, timedelta

import pytest

from mailroom.errors import InputError
from mailroom.events.suppressions import (
    add_suppression,
    list_suppressions,
    remove_suppression,
    suppressed_addresses,
)

NOV_20 = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


def test_missing_database_means_nothing_suppressed_and_is_not_created(tmp_path):
    db = tmp_path / "mailroom.sqlite3"
    assert suppressed_addresses(db) == {}
    assert list_suppressions(db) == []
    assert not db.exists()


def test_added_address_is_keyed_trimmed_lower_case_with_reason_and_date(tmp_path):
    db = tmp_path / "mailroom.sqlite3"
    assert add_suppression(db, "  Ada.Parent@Example.org ", "bounced", "webhook", occurred_at=NOV_20)
    assert suppressed_addresses(db) == {"ada.parent@example.org": "bounced on 2026-11-20"}
    [row] = list_suppressions(db)
    assert (row.email, row.source) == ("Ada.Parent@Example.org", "webhook")


def test_second_reason_for_the_same_address_keeps_the_first(tmp_path):
    db = tmp_path / "mailroom.sqlite3"
    assert add_suppression(db, "ada@example.org", "bounced", "webhook", occurred_at=NOV_20)
    assert not add_suppression(db, "ADA@example.org", "unsubscribed", "webhook",
                               occurred_at=NOV_20 + timedelta(days=1))
    assert suppressed_addresses(db) == {"ada@example.org": "bounced on 2026-11-20"}


def test_remove_keeps_history_with_the_note(tmp_path):
    db = tmp_path / "mailroom.sqlite3"
    add_suppression(db, "ada@example.org", "bounced", "webhook", occurred_at=NOV_20)
    removed = remove_suppression(db, "Ada@Example.org", "Mailbox fixed, parent phoned the office")
    assert removed.removal_note == "Mailbox fixed, parent phoned the office"
    assert suppressed_addresses(db) == {}
    [history] = list_suppressions(db, include_removed=True)
    assert history.removed_at is not None
    assert history.removal_note == "Mailbox fixed, parent phoned the office"


def test_old_event_does_not_undo_the_offices_decision_but_a_new_one_does(tmp_path):
    db = tmp_path / "mailroom.sqlite3"
    add_suppression(db, "ada@example.org", "bounced", "webhook", occurred_at=NOV_20)
    remove_suppression(db, "ada@example.org", "fixed")
    assert not add_suppression(db, "ada@example.org", "bounced", "import", occurred_at=NOV_20)
    assert suppressed_addresses(db) == {}
    later = datetime.now(UTC) + timedelta(minutes=5)
    assert add_suppression(db, "ada@example.org", "unsubscribed", "webhook", occurred_at=later)
    assert suppressed_addresses(db) == {"ada@example.org": f"unsubscribed on {later:%Y-%m-%d}"}
    assert len(list_suppressions(db, include_removed=True)) == 2


def test_remove_needs_a_note_and_a_suppressed_address(tmp_path):
    db = tmp_path / "mailroom.sqlite3"
    with pytest.raises(InputError) as missing:
        remove_suppression(db, "ada@example.org", "phoned")
    assert str(missing.value) == "ada@example.org is not on the suppression list (nothing is suppressed yet)"
    add_suppression(db, "ada@example.org", "bounced", "webhook")
    with pytest.raises(InputError) as no_note:
        remove_suppression(db, "ada@example.org", "  ")
    assert "--note" in str(no_note.value)
    with pytest.raises(InputError) as other:
        remove_suppression(db, "bob@example.org", "phoned")
    assert str(other.value) == "bob@example.org is not on the suppression list"


def test_not_an_address_is_refused(tmp_path):
    with pytest.raises(InputError) as exc:
        add_suppression(tmp_path / "db.sqlite3", "ada at example.org", "asked by phone", "office")
    assert str(exc.value) == "'ada at example.org' is not an email address"


def test_an_internationalised_address_is_one_suppression_however_it_is_spelt(tmp_path):
    import unicodedata
    db = tmp_path / "mailroom.sqlite3"
    assert add_suppression(db, unicodedata.normalize("NFD", "Zoë@Bücher.example"), "bounced", "webhook",
                           occurred_at=NOV_20)
    assert not add_suppression(db, "zoë@xn--bcher-kva.example", "unsubscribed", "import", occurred_at=NOV_20)
    assert suppressed_addresses(db) == {"zoë@xn--bcher-kva.example": "bounced on 2026-11-20"}
    removed = remove_suppression(db, "ZOË@BÜCHER.EXAMPLE", "asked the office")
    assert removed.removal_note == "asked the office"
    assert suppressed_addresses(db) == {}


def test_rows_keyed_the_old_way_are_re_keyed_and_one_stays_open(tmp_path):
    """Before punycode keys, 'zoe@bücher.example' and 'zoe@xn--bcher-kva.example' were two keys."""
    import sqlite3
    db = tmp_path / "mailroom.sqlite3"
    add_suppression(db, "ada@example.org", "bounced", "webhook", occurred_at=NOV_20)
    conn = sqlite3.connect(db)
    with conn:
        for key in ("zoe@bücher.example", "zoe@xn--bcher-kva.example"):
            conn.execute("INSERT INTO suppressions (address_key, email, reason, source, suppressed_at, recorded_at)"
                         " VALUES (?, ?, 'bounced', 'webhook', '2026-11-20T09:30:00Z', '2026-11-20T09:30:00Z')",
                         (key, key))
    conn.close()
    # Taking it back goes through ensure_schema, which re-keys the old row first.
    remove_suppression(db, "zoe@bücher.example", "asked the office")
    assert suppressed_addresses(db) == {"ada@example.org": "bounced on 2026-11-20"}
    rows = list_suppressions(db, include_removed=True)
    assert sorted(row.key for row in rows) == ["ada@example.org", "zoe@xn--bcher-kva.example",
                                               "zoe@xn--bcher-kva.example"]
    assert {row.removal_note for row in rows if row.removed_at} == {
        "the same address was already suppressed", "asked the office"}
