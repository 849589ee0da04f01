"""The ledger on a real SQLite file: opaque ids, states, test sends, the one-send-at-a-time lock."""

from __future__ import annotations

import multiprocessing
import re
import sqlite3
from pathlib import Path

import pytest

from mailroom.errors import RefusedForSafety
from mailroom.send.ledger import (
    SENDABLE,
    BatchKind,
    BatchState,
    BuildCount,
    Ledger,
    Outcome,
    PlannedPerson,
    SendState,
    send_lock,
)


def test_recipient_ids_are_random_stable_and_never_the_address(tmp_path):
    db = tmp_path / "ledger.sqlite3"
    with Ledger(db) as ledger:
        first = ledger.recipient_ids(["amelia.hughes@example.org", "rahul.patel@example.com"])
    with Ledger(db) as ledger:
        again = ledger.recipient_ids(["rahul.patel@example.com", "amelia.hughes@example.org", "new@example.org"])
    assert again["amelia.hughes@example.org"] == first["amelia.hughes@example.org"]
    assert again["rahul.patel@example.com"] == first["rahul.patel@example.com"]
    assert len(set(again.values())) == 3
    for key, rid in again.items():
        assert len(rid) == 32 and key.split("@")[0] not in rid
    other = Ledger(tmp_path / "other.sqlite3").recipient_ids(["amelia.hughes@example.org"])
    assert other["amelia.hughes@example.org"] != first["amelia.hughes@example.org"]  # random, not a hash


def test_a_batch_is_in_flight_until_settled_and_abandoned_ones_become_uncertain(tmp_path):
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        ledger.draft_plan([planned("a@example.org"), planned("b@example.org"), planned("c@example.org", "staff")])
        ledger.freeze_plan("n1", build_hash="h", composed_at="", resend_uncertain=False)
        batch = ledger.begin_batch(newsletter="n1", audience="parents", kind=BatchKind.LIVE, transport="sendgrid",
                                   build_hash="h", keys=["a@example.org", "b@example.org"])
        assert {r.state for r in ledger.states("n1", ["a@example.org", "b@example.org"]).values()} == {"in_flight"}
        assert ledger.counts("n1") == {"in_flight": 2, "pending": 1}
        ledger.record_outcomes(batch, "n1", BatchKind.LIVE, [Outcome("a@example.org", SendState.SENT, message_id="m1")])
        assert ledger.counts("n1") == {"sent": 1, "in_flight": 1, "pending": 1}
    # the process dies here: b is still in flight; the next run settles it
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        assert ledger.settle_abandoned("n1") == 1
        assert ledger.settle_abandoned("n1") == 0
        states = ledger.states("n1", ["a@example.org", "b@example.org", "c@example.org"])
        assert (states["a@example.org"].state, states["a@example.org"].message_id) == (SendState.SENT, "m1")
        assert states["b@example.org"].state == SendState.UNCERTAIN and states["c@example.org"].state == "pending"
        [uncertain] = ledger.uncertain_batches("n1")
        assert (uncertain.batch_id, uncertain.audience, uncertain.keys) == (batch, "parents", ("b@example.org",))
        assert ledger.resolve_uncertain("n1", as_sent=True) == 1
        assert ledger.counts("n1") == {SendState.SENT: 2, "pending": 1}
        assert ledger.uncertain_batches("n1") == []


def test_a_batch_in_flight_writes_its_people_once_and_its_outcome_carries_the_batch_and_build(tmp_path):
    """In flight is the batch's own row (its people listed there): each person's row is written once, with
    the outcome, and then holds the batch; the build and message id the batch shares are kept once, in the
    batch's row, and read as each person's (so a row does not grow when its outcome is written)."""
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        ledger.draft_plan([planned("a@example.org"), planned("b@example.org")])
        ledger.freeze_plan("n1", build_hash="h1", composed_at="", resend_uncertain=False)
        rows = ledger.planned_batch("n1", "parents", after=0, size=10, states=SENDABLE)
        raw = "SELECT address_key, state, batch_id, build_hash, message_id FROM sends ORDER BY rowid"
        before = ledger.conn.execute(raw).fetchall()
        batch = ledger.begin_batch(newsletter="n1", audience="parents", kind=BatchKind.LIVE, transport="sendgrid",
                                   build_hash="h1", keys=rows.keys)
        assert ledger.conn.execute(raw).fetchall() == before  # nobody's row rewritten before the request
        ledger.record_batch(batch, "n1", BatchKind.LIVE, SendState.SENT, message_id="m1")
        assert [tuple(r) for r in ledger.conn.execute(raw)] == [
            ("a@example.org", "sent", batch, None, None), ("b@example.org", "sent", batch, None, None)]
        states = ledger.states("n1", ["a@example.org", "b@example.org"])
        assert {(s.state, s.batch_id, s.message_id) for s in states.values()} == {(SendState.SENT, batch, "m1")}
        assert [(b.build_hash, b.people) for b in ledger.sent_by_build("n1")] == [("h1", 2)]


def test_a_persons_own_message_id_and_an_earlier_build_are_kept_apart_from_the_batch(tmp_path):
    """An outcome with the person's own message id (an SMTP relay gives one per message) keeps it; someone
    refused in a batch does not take the batch's message id; and rows an earlier mailroom wrote with their
    own build keep it."""
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        ledger.draft_plan([planned("a@example.org"), planned("b@example.org"), planned("c@example.org")])
        ledger.freeze_plan("n1", build_hash="h1", composed_at="2024-11-01T09:00:00Z", resend_uncertain=False)
        batch = ledger.begin_batch(newsletter="n1", audience="parents", kind=BatchKind.LIVE, transport="smtp",
                                   build_hash="h1", keys=["a@example.org", "b@example.org", "c@example.org"])
        ledger.record_outcomes(batch, "n1", BatchKind.LIVE, [
            Outcome("a@example.org", SendState.SENT, message_id="<a.1@relay>"),
            Outcome("b@example.org", SendState.FAILED, error="550 no such mailbox"),
            Outcome("c@example.org", SendState.SENT, message_id="<c.1@relay>")])
        ledger.finish_batch(batch, BatchState.PARTLY_SENT, message_id="<a.1@relay>")
        states = ledger.states("n1", ["a@example.org", "b@example.org", "c@example.org"])
        assert [states[k].message_id for k in ("a@example.org", "b@example.org", "c@example.org")] == [
            "<a.1@relay>", None, "<c.1@relay>"]
        ledger.conn.execute("UPDATE sends SET build_hash = 'h0' WHERE address_key = 'c@example.org'")
        assert [(b.build_hash, b.people) for b in ledger.sent_by_build("n1")] == [("h0", 1), ("h1", 1)]


def test_a_batch_finished_with_someone_never_recorded_leaves_them_uncertain(tmp_path):
    """No transport path should leave a person of a batch without an outcome; if one ever did, that person
    must not go back to the queue (they may have it): finishing the batch makes them uncertain."""
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        ledger.draft_plan([planned("a@example.org"), planned("b@example.org")])
        ledger.freeze_plan("n1", build_hash="h1", composed_at="", resend_uncertain=False)
        batch = ledger.begin_batch(newsletter="n1", audience="parents", kind=BatchKind.LIVE, transport="smtp",
                                   build_hash="h1", keys=["a@example.org", "b@example.org"])
        ledger.record_outcomes(batch, "n1", BatchKind.LIVE, [Outcome("a@example.org", SendState.SENT, "m1")])
        ledger.finish_batch(batch, BatchState.PARTLY_SENT)
        assert ledger.counts("n1") == {"sent": 1, "uncertain": 1}
        [uncertain] = ledger.uncertain_batches("n1")
        assert uncertain.keys == ("b@example.org",)


def test_people_marked_in_flight_by_an_earlier_mailroom_become_uncertain(tmp_path):
    """Before batches listed their people, each person's row said in flight; such a ledger, left by a run
    that died, is upgraded and settled the same way."""
    db = tmp_path / "l.sqlite3"
    with Ledger(db) as ledger:
        ledger.draft_plan([planned("a@example.org")])
        ledger.freeze_plan("n1", build_hash="h1", composed_at="", resend_uncertain=False)
        ledger.conn.executescript(
            "ALTER TABLE send_batches DROP COLUMN people;"
            "INSERT INTO send_batches (batch_id, newsletter, audience, kind, transport, build_hash, size, state, "
            "started_at) VALUES (7, 'n1', 'parents', 'live', 'smtp', 'h1', 1, 'in_flight', '2024-01-01T00:00:00Z');"
            "UPDATE sends SET state = 'in_flight', batch_id = 7;")
    with Ledger(db) as ledger:
        assert ledger.counts("n1") == {"in_flight": 1}
        assert ledger.settle_abandoned("n1") == 1
        assert [b.keys for b in ledger.uncertain_batches("n1")] == [("a@example.org",)]


def test_a_draft_given_someone_twice_holds_them_once_as_first_given(tmp_path):
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        ledger.draft_plan([planned("a@example.org"), planned("b@example.org"), planned("a@example.org", "staff")])
        assert by_state(ledger.plan_figures("n1", resend_uncertain=False)) == {None: 2}
        ledger.freeze_plan("n1", build_hash="h1", composed_at="", resend_uncertain=False)
        assert dict(ledger.conn.execute("SELECT address_key, audience FROM sends")) == {
            "a@example.org": "parents", "b@example.org": "parents"}


def test_resending_uncertain_puts_them_back_in_the_queue(tmp_path):
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        batch = ledger.begin_batch(newsletter="n1", audience="parents", kind=BatchKind.LIVE, transport="outbox",
                                   build_hash="h", keys=["a@example.org"])
        ledger.record_outcomes(batch, "n1", BatchKind.LIVE,
                               [Outcome("a@example.org", SendState.UNCERTAIN, error="dropped")])
        assert ledger.resolve_uncertain("n1", as_sent=False) == 1
        assert ledger.counts("n1") == {"pending": 1}


def test_test_sends_count_only_for_the_same_build(tmp_path):
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        batch = ledger.begin_batch(newsletter="n1", audience="parents", kind=BatchKind.TEST, transport="outbox",
                                   build_hash="hash-1", keys=["office@example.org"])
        ledger.record_test_send(newsletter="n1", build_hash="hash-1", address="office@example.org",
                                audiences=["parents", "staff"], transport="outbox", batch_id=batch)
        [test] = ledger.test_sends("n1", "hash-1")
        assert (test.address, test.audiences, test.transport) == ("office@example.org", ("parents", "staff"),
                                                                  "outbox")
        assert ledger.test_sends("n1", "hash-2") == []  # recomposed: test again
        assert ledger.counts("n1") == {}  # a test send never touches the send state


def test_failed_rows_keep_their_reason(tmp_path):
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        batch = ledger.begin_batch(newsletter="n1", audience="staff", kind=BatchKind.LIVE, transport="smtp",
                                   build_hash="h", keys=["x@example.org"])
        ledger.record_outcomes(batch, "n1", BatchKind.LIVE,
                               [Outcome("x@example.org", SendState.FAILED, error="550 no such user")])
        assert ledger.states("n1", ["x@example.org"])["x@example.org"].error == "550 no such user"


def test_the_ledger_uses_wal(tmp_path):
    Ledger(tmp_path / "l.sqlite3").close()
    with sqlite3.connect(tmp_path / "l.sqlite3") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_new_ledger_has_16_kb_pages_and_one_made_with_4_kb_pages_keeps_working(tmp_path):
    with Ledger(tmp_path / "new.sqlite3") as ledger:  # and the draft's temporary table a bounded cache
        ledger.draft_plan([planned("a@example.org")])
        assert ledger.conn.execute("PRAGMA temp.cache_size").fetchone()[0] == -2000
    with sqlite3.connect(tmp_path / "new.sqlite3") as conn:
        assert conn.execute("PRAGMA page_size").fetchone()[0] == 16_384
    old = sqlite3.connect(tmp_path / "old.sqlite3")  # as an earlier mailroom made it: SQLite's default pages
    old.execute("PRAGMA page_size=4096")
    old.execute("PRAGMA journal_mode=WAL")
    old.execute("CREATE TABLE ledger_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
    old.close()
    with Ledger(tmp_path / "old.sqlite3") as ledger:
        ledger.draft_plan([planned("a@example.org")])
        ledger.freeze_plan("n1", build_hash="h1", composed_at="", resend_uncertain=False)
        assert ledger.conn.execute("PRAGMA page_size").fetchone()[0] == 4096
        assert ledger.counts("n1") == {"pending": 1}


def _hold_lock(db: str, ready, release) -> None:
    with send_lock(Path(db)):
        ready.set()
        release.wait(10)


def test_only_one_send_at_a_time_and_a_dead_sender_frees_the_lock(tmp_path):
    db = tmp_path / "l.sqlite3"
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(db), ready, release))
    holder.start()
    try:
        assert ready.wait(20)
        with pytest.raises(RefusedForSafety, match="another send is running right now"), send_lock(db):
            pass
    finally:
        holder.kill()  # dies without letting go
        holder.join()
    with send_lock(db):  # the lock went with the process
        pass


def planned(key: str, version: str = "parents") -> PlannedPerson:
    return PlannedPerson(key, key, "Pat", "Example", version, version)


def by_state(figures) -> dict[str | None, int]:
    """The draft's people per state in the ledger (None: no row yet)."""
    found: dict[str | None, int] = {}
    for group in figures.groups:
        found[group.state] = found.get(group.state, 0) + group.people
    return found


def test_a_frozen_plan_keeps_who_has_it_leaves_out_who_left_and_takes_back_who_returns(tmp_path):
    composed = "2026-12-04T09:12:00+00:00"
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        ledger.draft_plan([planned("a@example.org"), planned("b@example.org"), planned("c@example.org")])
        first = ledger.plan_figures("n1", resend_uncertain=False)
        assert by_state(first) == {None: 3} and not first.planned_before
        assert ledger.counts("n1") == {}  # a draft decides nothing
        ledger.freeze_plan("n1", build_hash="h1", composed_at=composed, resend_uncertain=False)
        batch = ledger.begin_batch(newsletter="n1", audience="parents", kind=BatchKind.LIVE, transport="outbox",
                                   build_hash="h1", keys=["a@example.org"])
        ledger.record_outcomes(batch, "n1", BatchKind.LIVE, [Outcome("a@example.org", SendState.SENT, "m1")])

        # The next run's lists: a (who has it) and b are gone, d is new.
        ledger.draft_plan([planned("c@example.org"), planned("d@example.org")])
        second = ledger.plan_figures("n1", resend_uncertain=False)
        assert (second.planned_before, second.now_left_out) == (True, 1)
        assert second.now_left_out_keys == ("b@example.org",)
        assert by_state(second) == {SendState.PENDING: 1, None: 1}  # c planned before, d new
        assert second.sent_by_build == (BuildCount("h1", composed, 1),)
        assert ledger.freeze_plan("n1", build_hash="h2", composed_at=composed, resend_uncertain=False) == 1
        assert ledger.counts("n1") == {SendState.SENT: 1, SendState.LEFT_OUT: 1, SendState.PENDING: 2}

        # b is back on the lists: planned again, counted as new; c and d, not on them now, are left out.
        ledger.draft_plan([planned("b@example.org")])
        assert by_state(ledger.plan_figures("n1", resend_uncertain=False)) == {SendState.LEFT_OUT: 1}
        ledger.freeze_plan("n1", build_hash="h2", composed_at=composed, resend_uncertain=False)
        rows = ledger.planned_batch("n1", "parents", after=0, size=10, states=SENDABLE)
        assert [(person.key, person.version) for person in rows.people()] == [("b@example.org", "parents")]
        assert all(rid and len(rid) == 32 for rid in rows.recipient_ids)  # its opaque id was made at freeze
        assert ledger.counts("n1") == {SendState.SENT: 1, SendState.LEFT_OUT: 2, SendState.PENDING: 1}


def test_the_person_sent_keeps_the_build_their_copy_was_made_from(tmp_path):
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        for build_hash, key in (("h1", "a@example.org"), ("h2", "b@example.org"), ("h2", "c@example.org")):
            batch = ledger.begin_batch(newsletter="n1", audience="parents", kind=BatchKind.LIVE, transport="outbox",
                                       build_hash=build_hash, keys=[key])
            ledger.record_outcomes(batch, "n1", BatchKind.LIVE, [Outcome(key, SendState.SENT, "m")])
        assert [(b.build_hash, b.people) for b in ledger.sent_by_build("n1")] == [("h1", 1), ("h2", 2)]


def test_a_ledger_from_before_the_batch_index_change_is_upgraded_and_still_records_batches(tmp_path):
    """Ledgers written before indexed every row's batch (the plan's unsent rows too) and every row's state:
    opened now, both indexes are gone (a batch finds its people through its own list), and sending and
    counting what a transport sent still work."""
    db = tmp_path / "l.sqlite3"
    with Ledger(db) as ledger:  # today's tables, then the indexes as the earlier mailroom made them
        ledger.conn.executescript(
            "CREATE INDEX sends_by_batch ON sends (batch_id);"
            "CREATE INDEX sends_by_state ON sends (newsletter, state);")
        ledger.draft_plan([planned("a@example.org"), planned("b@example.org")])
        ledger.freeze_plan("n1", build_hash="h1", composed_at="2024-11-08T09:00:00Z", resend_uncertain=False)
    with Ledger(db) as ledger:
        indexes = dict(ledger.conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                                           "AND name LIKE 'sends_by_%'").fetchall())
        assert "sends_by_state" not in indexes and "sends_by_batch" not in indexes
        rows = ledger.planned_batch("n1", "parents", after=0, size=10, states=SENDABLE)
        batch = ledger.begin_batch(newsletter="n1", audience="parents", kind=BatchKind.LIVE, transport="outbox",
                                   build_hash="h1", keys=rows.keys)
        ledger.record_batch(batch, "n1", BatchKind.LIVE, SendState.SENT, message_id="m1")
        assert ledger.counts("n1") == {"sent": 2}
        assert ledger.sent_recently("outbox", "2000-01-01T00:00:00Z") == 2


def test_a_ledger_whose_recipient_ids_were_indexed_as_unique_keeps_every_id(tmp_path):
    """Ledgers written before kept a UNIQUE index on the ids (64 bits each): opened now, the table is rebuilt
    without it, every id stays the same (old unsubscribe links carry them), and newcomers get 128-bit ids."""
    db = tmp_path / "l.sqlite3"
    conn = sqlite3.connect(db)
    conn.executescript(
        "CREATE TABLE recipients (address_key TEXT PRIMARY KEY, recipient_id TEXT NOT NULL UNIQUE, "
        "created_at TEXT NOT NULL);"
        "INSERT INTO recipients VALUES ('a@example.org', '0123456789abcdef', '2024-01-01T00:00:00Z');")
    conn.close()
    with Ledger(db) as ledger:
        table = ledger.conn.execute("SELECT sql FROM sqlite_master WHERE name = 'recipients'").fetchone()[0]
        assert "UNIQUE" not in table.upper() and "WITHOUT ROWID" in table.upper()
        ids = ledger.recipient_ids(["a@example.org", "b@example.org"])
    assert ids["a@example.org"] == "0123456789abcdef" and len(ids["b@example.org"]) == 32
    with Ledger(db) as ledger:  # opened again: nothing left to upgrade, the ids as they were
        assert ledger.recipient_ids(["a@example.org", "b@example.org"]) == ids


def test_sent_recently_counts_live_people_sent_and_test_copies_through_one_transport_since_a_time(tmp_path):
    from mailroom.send.ledger import BatchState

    with Ledger(tmp_path / "l.sqlite3") as ledger:
        live = ledger.begin_batch(newsletter="n1", audience="parents", kind=BatchKind.LIVE, transport="smtp",
                                  build_hash="h", keys=["a@example.org", "b@example.org", "c@example.org"])
        ledger.record_outcomes(live, "n1", BatchKind.LIVE, [Outcome("a@example.org", SendState.SENT, "m"),
                                                              Outcome("b@example.org", SendState.SENT, "m"),
                                                              Outcome("c@example.org", SendState.FAILED)])
        test = ledger.begin_batch(newsletter="n1", audience="parents", kind=BatchKind.TEST, transport="smtp",
                                  build_hash="h", keys=["office@example.org"])
        ledger.finish_batch(test, BatchState.SENT)
        other = ledger.begin_batch(newsletter="n2", audience="parents", kind=BatchKind.LIVE, transport="sendgrid",
                                   build_hash="h", keys=["d@example.org"])
        ledger.record_batch(other, "n2", BatchKind.LIVE, SendState.SENT)
        assert ledger.sent_recently("smtp", "2000-01-01T00:00:00Z") == 3  # two people and one test copy
        assert ledger.sent_recently("sendgrid", "2000-01-01T00:00:00Z") == 1
        assert ledger.sent_recently("smtp", "2999-01-01T00:00:00Z") == 0
        # A person sent again in a later batch counts once; a batch of an earlier mailroom (no list of its
        # people: each person's row named the batch) still counts its people.
        again = ledger.begin_batch(newsletter="n1", audience="parents", kind=BatchKind.LIVE, transport="smtp",
                                   build_hash="h", keys=["c@example.org"])
        ledger.record_batch(again, "n1", BatchKind.LIVE, SendState.SENT)
        assert ledger.sent_recently("smtp", "2000-01-01T00:00:00Z") == 4
        ledger.conn.execute("UPDATE send_batches SET people = NULL WHERE batch_id = ?", (live,))
        assert ledger.sent_recently("smtp", "2000-01-01T00:00:00Z") == 4
        ledger.conn.execute("UPDATE send_batches SET people = NULL WHERE batch_id = ?", (again,))
        assert ledger.sent_recently("smtp", "2000-01-01T00:00:00Z") == 4


def test_batches_are_read_in_plan_order_per_version_among_other_newsletters_rows(tmp_path):
    """A version's batches walk the table in plan order from the last row read, with no index by version: rows of
    other newsletters and other versions in between are passed over, people whose address is their key come
    back with it, and the walk never makes SQLite sort the newsletter's rows."""
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        for newsletter in ("old", "n1", "newer"):
            people = [planned(f"p{i}@example.org", "staff" if i % 3 == 0 else "parents") for i in range(12)]
            people[4] = people[4]._replace(email="P4@Example.org")  # an address as written, not the key
            people[5] = people[5]._replace(audience="staff")  # greeted as staff, in the parents' version
            ledger.draft_plan(people)
            ledger.freeze_plan(newsletter, build_hash="h", composed_at="", resend_uncertain=False)
        read: dict[str, list[str]] = {}
        for version in ("parents", "staff"):
            after = 0
            while rows := ledger.planned_batch("n1", version, after=after, size=3, states=SENDABLE):
                after = rows.rows[-1]
                read.setdefault(version, []).extend(rows.emails)
                assert {(p.audience, p.version, p.language) for p in rows.people() if p.key != "p5@example.org"} == {
                    (version, version, "")}
                assert [(p.audience, p.version) for p in rows.people() if p.key == "p5@example.org"] in (
                    [], [("staff", "parents")])
        assert read == {"parents": [f"p{i}@example.org" if i != 4 else "P4@Example.org" for i in range(12) if i % 3],
                        "staff": [f"p{i}@example.org" for i in range(0, 12, 3)]}
        asked: list[str] = []
        ledger.conn.set_trace_callback(asked.append)  # the statement as run, its values filled in
        ledger.planned_batch("n1", "parents", after=0, size=3, states=SENDABLE)
        ledger.conn.set_trace_callback(None)
        [query] = [sql for sql in asked if "FROM sends" in sql]
        plan = " ".join(str(tuple(r)) for r in ledger.conn.execute(f"EXPLAIN QUERY PLAN {query}"))
        assert "rowid>?" in plan and "TEMP B-TREE" not in plan


def test_the_people_not_accepted_are_read_from_the_frozen_plan_in_plan_order(tmp_path):
    """After a send, who was not sent to (and why) comes from the plan frozen in the ledger: the address as
    sent, the names and version planned, the service's words; not from the lists, which the send let go of."""
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        people = [planned(f"p{i}@example.org") for i in range(4)]
        people[2] = people[2]._replace(email="P2@Example.org", first_name="Zoë", last_name="Brontë")
        ledger.draft_plan(people)
        ledger.freeze_plan("n1", build_hash="h1", composed_at="", resend_uncertain=False)
        batch = ledger.begin_batch(newsletter="n1", audience="parents", kind=BatchKind.LIVE, transport="smtp",
                                   build_hash="h1", keys=[p.key for p in people])
        ledger.record_outcomes(batch, "n1", BatchKind.LIVE, [
            Outcome("p3@example.org", SendState.FAILED, error="550 no such user"),
            Outcome("p0@example.org", SendState.SENT, "m"), Outcome("p1@example.org", SendState.SENT, "m"),
            Outcome("p2@example.org", SendState.FAILED, error="552 mailbox full")])
        assert ledger.failed_people("n1") == [
            ("P2@Example.org", "Zoë", "Brontë", "parents", "552 mailbox full"),
            ("p3@example.org", "Pat", "Example", "parents", "550 no such user")]
        assert ledger.failed_people("other") == []


def test_a_draft_of_hundreds_is_written_a_hundred_at_a_time_in_order_with_every_value(tmp_path):
    """The draft takes a hundred people a statement: every person comes back in their order, each with their own
    values, the last 50 included, whether their hundred shares a greeting list, version and language and has
    every address as its own key (bound once each) or not; a row of the wrong shape is refused, not shifted
    into its neighbours."""
    def alike(i: int, version: str, language: str) -> PlannedPerson:
        return PlannedPerson(f"a{i:03d}@example.org", f"a{i:03d}@example.org", f"First{i}", f"Last{i}", version,
                             version, language)

    mixed = [PlannedPerson(f"p{i:03d}@example.org", f"P{i:03d}@Example.org", f"First{i}", f"Last{i}",
                           "staff" if i % 7 == 0 else "parents", "parents", "pl" if i % 5 == 0 else "")
             for i in range(150)]
    # Hundreds alike but for one value, a different one each time: each such hundred is bound value by value.
    nearly = [alike(i, "parents", "") for i in range(1000, 1400)]
    nearly[10] = nearly[10]._replace(email="A1010@Example.org")
    nearly[120] = nearly[120]._replace(audience="staff")
    nearly[230] = nearly[230]._replace(version="parents.pl")
    nearly[399] = nearly[399]._replace(language="pl")
    people = [*(alike(i, "parents", "") for i in range(100)), *mixed[:100], *nearly,
              *(alike(i, "staff.pl", "pl") for i in range(200, 300)), *mixed[100:]]
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        ledger.draft_plan(iter(people))
        drafted = ledger.conn.execute("SELECT address_key, COALESCE(email, address_key), first_name, last_name, "
                                      "greeting_list, version, language FROM plan_draft ORDER BY seq").fetchall()
        assert [tuple(row) for row in drafted] == [tuple(person) for person in people]
        bad = [*people[:150], ("x@example.org", "x@example.org", "X"), *people[150:]]
        with pytest.raises(sqlite3.ProgrammingError):
            ledger.draft_plan(iter(bad))


def test_a_draft_given_in_chunks_of_any_size_holds_everyone_in_order(tmp_path):
    """The planner gives its people a chunk at a time, as columns, in chunks that are not whole hundreds: those
    short of a statement wait for the next chunk, and everyone is drafted once, in order, with their values."""
    people = [PlannedPerson(f"p{i:04d}@example.org", f"p{i:04d}@example.org", f"First{i}", f"Last{i}",
                            "parents", "parents", "") for i in range(1300)]
    people[700] = people[700]._replace(email="P0700@Example.org", audience="staff")  # a hundred not alike
    chunks = [people[0:512], people[512:549], people[549:1250], people[1250:]]
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        ledger.draft_columns(tuple(zip(*chunk, strict=True)) for chunk in chunks)
        drafted = ledger.conn.execute("SELECT address_key, COALESCE(email, address_key), first_name, last_name, "
                                      "greeting_list, version, language FROM plan_draft ORDER BY seq").fetchall()
        assert [tuple(row) for row in drafted] == [tuple(person) for person in people]


def test_newcomers_get_distinct_random_ids_of_32_hex_digits_that_stay_theirs(tmp_path):
    """Each newcomer's opaque id is made when the plan is frozen: 128 random bits as 32 hex digits, a different
    one for each person, and the same one at their next newsletter (old unsubscribe links keep working)."""
    people = [planned(f"p{i}@example.org") for i in range(1000)]
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        ledger.draft_plan(people)
        ledger.freeze_plan("n1", build_hash="h1", composed_at="", resend_uncertain=False)
        ids = ledger.recipient_ids([p.key for p in people])
        assert all(re.fullmatch(r"[0-9A-F]{32}", rid) for rid in ids.values())
        assert len(set(ids.values())) == 1000
        ledger.draft_plan(people[:10])
        ledger.freeze_plan("n2", build_hash="h2", composed_at="", resend_uncertain=False)
        assert ledger.recipient_ids([p.key for p in people[:10]]) == {p.key: ids[p.key] for p in people[:10]}
        assert re.fullmatch(r"[0-9A-F]{32}", ledger.recipient_ids(["new@example.org"])["new@example.org"])


def test_a_batch_sent_marks_exactly_its_people_whether_or_not_their_rows_follow_each_other(tmp_path):
    """The usual end of a batch finds its people by their rows' range when they are every row between the
    first and the last, else by the batch's list: either way exactly they are sent, nobody around them."""
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        ledger.draft_plan([planned(f"p{i}@example.org", "staff" if i % 2 else "parents") for i in range(8)])
        ledger.freeze_plan("n1", build_hash="h1", composed_at="", resend_uncertain=False)
        for version, size in (("parents", 2), ("staff", 3)):  # parents' rows are every other row
            rows = ledger.planned_batch("n1", version, after=0, size=size, states=SENDABLE)
            batch = ledger.begin_batch(newsletter="n1", audience=version, kind=BatchKind.LIVE, transport="sendgrid",
                                       build_hash="h1", keys=rows.keys)
            ledger.batch_sent(batch, "n1", BatchKind.LIVE, message_id=f"m-{version}")
        ledger.draft_plan([planned(f"q{i}@example.org") for i in range(5)])
        ledger.freeze_plan("n2", build_hash="h1", composed_at="", resend_uncertain=False)
        rows = ledger.planned_batch("n2", "parents", after=0, size=5, states=SENDABLE)
        batch = ledger.begin_batch(newsletter="n2", audience="parents", kind=BatchKind.LIVE, transport="sendgrid",
                                   build_hash="h1", keys=rows.keys[1:4])  # rows that follow each other
        ledger.batch_sent(batch, "n2", BatchKind.LIVE, message_id="m-n2")
        sent = dict(ledger.conn.execute("SELECT address_key, state FROM sends WHERE state = 'sent'").fetchall())
        assert sorted(sent) == ["p0@example.org", "p1@example.org", "p2@example.org", "p3@example.org",
                                "p5@example.org", "q1@example.org", "q2@example.org", "q3@example.org"]
        states = ledger.states("n2", ["q1@example.org", "q0@example.org"])
        assert (states["q1@example.org"].message_id, states["q0@example.org"].state) == ("m-n2", SendState.PENDING)


def test_a_batch_is_on_disk_as_in_flight_before_its_request_goes(tmp_path):
    """The ledger's connection syncs its log only at checkpoints (synchronous=NORMAL), so a power cut could take
    back its last commits; the commit that says a batch is in flight is made with synchronous=FULL, which
    syncs it and every commit before it, and the connection goes back to NORMAL afterwards."""
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        ledger.draft_plan([planned("a@example.org")])
        ledger.freeze_plan("n1", build_hash="h1", composed_at="", resend_uncertain=False)
        statements: list[str] = []
        ledger.conn.set_trace_callback(statements.append)
        ledger.begin_batch(newsletter="n1", audience="parents", kind=BatchKind.LIVE, transport="smtp",
                           build_hash="h1", keys=["a@example.org"])
        ledger.conn.set_trace_callback(None)
        said = [sql.split()[0] + (" " + sql.split()[1] if sql.startswith("PRAGMA") else "") for sql in statements]
        assert said.index("PRAGMA synchronous=FULL") < said.index("INSERT") < said.index("COMMIT") < said.index(
            "PRAGMA synchronous=NORMAL")
        assert ledger.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL again
