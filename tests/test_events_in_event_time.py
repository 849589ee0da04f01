"""Suppression decided from all of a person's events in event time, whatever order the POSTs came in.

SendGrid retries a failed POST for up to 24 hours, so a POST carrying older events can arrive after one
carrying newer ones. Every order of arrival must leave the same suppression list as the events' own order.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from mailroom.events.intake import parse_events, store_events
from mailroom.events.suppressions import add_suppression, list_suppressions, remove_suppression
from tests.sendgrid_events import Signer, event, post, running_server

DAY = 86_400
T0 = 1_763_629_200  # 2025-11-20 09:00 UTC


def state(db: Path) -> list[tuple[str, str, str, str | None]]:
    """The open suppression list, as the office and the next send see it."""
    return sorted((s.key, s.reason, f"{s.suppressed_at:%Y-%m-%d %H:%M}",
                   f"{s.resubscribed_at:%Y-%m-%d}" if s.resubscribed_at else None) for s in list_suppressions(db))


def store(db: Path, *items: dict[str, object], source: str = "webhook") -> None:
    store_events(db, parse_events(json.dumps(list(items))).events, source)


# Each person's events, in event time; the comments say what they add up to.
HISTORIES = {
    "resubscribed": [  # the case: unsubscribed from the group, then came back
        event("group_unsubscribe", "a1", "ada@example.org", timestamp=T0, asm_group_id=7),
        event("group_resubscribe", "a2", "ada@example.org", timestamp=T0 + DAY, asm_group_id=7),
    ],
    "unsubscribed again": [
        event("group_unsubscribe", "b1", "bob@example.com", timestamp=T0),
        event("group_resubscribe", "b2", "bob@example.com", timestamp=T0 + DAY),
        event("group_unsubscribe", "b3", "bob@example.com", timestamp=T0 + 2 * DAY),
    ],
    "bounced, then resubscribed": [  # a resubscribe cannot undo a bounce: noted for the office
        event("group_unsubscribe", "c1", "cat@example.org", timestamp=T0),
        event("bounce", "c2", "Cat@Example.org", timestamp=T0 + DAY, type="bounce"),
        event("group_resubscribe", "c3", "cat@example.org", timestamp=T0 + 2 * DAY),
    ],
    "blocked only": [  # a block is the receiving server refusing the school for a while: no suppression
        event("bounce", "d1", "dan@example.org", timestamp=T0, type="blocked"),
        event("delivered", "d2", "dan@example.org", timestamp=T0 + DAY),
    ],
    "spam after a block": [
        event("bounce", "e1", "eve@example.org", timestamp=T0, type="blocked"),
        event("spamreport", "e2", "eve@example.org", timestamp=T0 + DAY),
        event("unsubscribe", "e3", "eve@example.org", timestamp=T0 + 2 * DAY),
    ],
}
EXPECTED = [
    ("bob@example.com", "unsubscribed", "2025-11-22 09:00", None),
    ("cat@example.org", "bounced", "2025-11-21 09:00", "2025-11-22"),
    ("eve@example.org", "marked the email as spam", "2025-11-21 09:00", None),
]


def test_in_event_order_the_histories_add_up_as_documented(tmp_path: Path) -> None:
    db = tmp_path / "in-order.sqlite3"
    for items in sorted((e for h in HISTORIES.values() for e in h), key=lambda e: e["timestamp"]):
        store(db, items)  # one POST per event, oldest first
    assert state(db) == EXPECTED


@pytest.mark.parametrize("name", list(HISTORIES))
def test_every_order_of_arrival_gives_the_same_state(tmp_path: Path, name: str) -> None:
    history = HISTORIES[name]
    in_order = tmp_path / "in-order.sqlite3"
    for item in history:
        store(in_order, item)
    expected = state(in_order)
    for n, order in enumerate(itertools.permutations(history)):
        db = tmp_path / f"order-{n}.sqlite3"
        for item in order:
            store(db, item)
        assert state(db) == expected, [e["sg_event_id"] for e in order]


def test_out_of_order_posts_to_the_webhook_give_the_in_order_state(tmp_path: Path) -> None:
    signer = Signer()
    everything = [e for h in HISTORIES.values() for e in h]
    newest_first = sorted(everything, key=lambda e: -e["timestamp"])  # e.g. the older POSTs were retried
    db = tmp_path / "mailroom.sqlite3"
    with running_server(db, signer.public_key) as server:
        for start in range(0, len(newest_first), 2):
            body = json.dumps(newest_first[start:start + 2])
            assert post(server, body, signer.headers(body)).status == 200
        again = json.dumps(everything)  # and every POST retried once more, all together
        assert post(server, again, signer.headers(again)).body["repeated"] == len(everything)
    assert state(db) == EXPECTED


def test_events_from_before_the_office_took_an_address_back_do_not_count(tmp_path: Path) -> None:
    db = tmp_path / "mailroom.sqlite3"
    store(db, event("bounce", "f1", "fay@example.org", timestamp=T0, type="bounce"))
    remove_suppression(db, "fay@example.org", "new mailbox, parent phoned")
    store(db, event("spamreport", "f0", "fay@example.org", timestamp=T0 - DAY))  # a late, older event
    assert state(db) == []
    store(db, event("unsubscribe", "f2", "fay@example.org", timestamp=4_000_000_000))  # a new one does
    assert [s[:2] for s in state(db)] == [("fay@example.org", "unsubscribed")]


def test_the_offices_own_entry_is_never_lifted_by_an_event(tmp_path: Path) -> None:
    db = tmp_path / "mailroom.sqlite3"
    add_suppression(db, "gus@example.org", "asked by phone not to be emailed", "office")
    store(db, event("group_unsubscribe", "g1", "gus@example.org", timestamp=4_000_000_000),
          event("group_resubscribe", "g2", "gus@example.org", timestamp=4_000_000_100))
    [row] = list_suppressions(db)
    assert (row.reason, row.source) == ("asked by phone not to be emailed", "office")
    assert row.resubscribed_at is not None
