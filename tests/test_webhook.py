import http.client
import json
import sqlite3
import time

import pytest

from mailroom.errors import ConfigError
from mailroom.events.suppressions import suppressed_addresses
from mailroom.servers.webhook import make_server
from tests.sendgrid_events import SIGNATURE, TIMESTAMP, Signer, event, post, running_server


@pytest.fixture
def signer():
    return Signer()


@pytest.fixture
def db(tmp_path):
    return tmp_path / "mailroom.sqlite3"


def stored_ids(db):
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        try:
            return [row[0] for row in conn.execute("SELECT sg_event_id FROM events ORDER BY sg_event_id")]
        except sqlite3.OperationalError:
            return []


PAYLOAD = json.dumps([
    event("processed", "ev-1"),
    event("delivered", "ev-2"),
    event("click", "ev-3", url="https://www.oakfield.example.org/safety?utm_source=x"),
])


def test_signed_events_are_stored(signer, db):
    with running_server(db, signer.public_key) as server:
        answer = post(server, PAYLOAD, signer.headers(PAYLOAD))
    assert answer.status == 200
    assert answer.body == {"stored": 3, "repeated": 0, "skipped": 0}
    assert stored_ids(db) == ["ev-1", "ev-2", "ev-3"]


def test_events_table_keeps_no_address(signer, db):
    with running_server(db, signer.public_key) as server:
        post(server, PAYLOAD, signer.headers(PAYLOAD))
    with sqlite3.connect(db) as conn:
        dump = "\n".join(conn.iterdump())
    events_rows = [line for line in dump.splitlines() if line.startswith('INSERT INTO "events"')]
    assert len(events_rows) == 3
    assert not any("ada.parent@example.org" in line for line in events_rows)


def test_a_repeated_delivery_counts_once(signer, db):
    with running_server(db, signer.public_key) as server:
        first = post(server, PAYLOAD, signer.headers(PAYLOAD))
        again = post(server, PAYLOAD, signer.headers(PAYLOAD))
    assert first.body["stored"] == 3
    assert again.status == 200
    assert again.body == {"stored": 0, "repeated": 3, "skipped": 0}
    assert stored_ids(db) == ["ev-1", "ev-2", "ev-3"]


def test_signature_from_another_key_is_refused(signer, db):
    other = Signer()
    with running_server(db, signer.public_key) as server:
        answer = post(server, PAYLOAD, other.headers(PAYLOAD))
    assert answer.status == 403
    assert stored_ids(db) == []


def test_body_changed_after_signing_is_refused(signer, db):
    headers = signer.headers(PAYLOAD)
    tampered = PAYLOAD.replace("ev-1", "ev-9")
    with running_server(db, signer.public_key) as server:
        answer = post(server, tampered, headers)
    assert answer.status == 403
    assert stored_ids(db) == []


@pytest.mark.parametrize("missing", [SIGNATURE, TIMESTAMP])
def test_unsigned_request_is_refused(signer, db, missing):
    headers = signer.headers(PAYLOAD)
    del headers[missing]
    with running_server(db, signer.public_key) as server:
        answer = post(server, PAYLOAD, headers)
    assert (answer.status, answer.body) == (403, {"error": "the request is not signed"})
    assert stored_ids(db) == []


@pytest.mark.parametrize("signature", ["not base64!", "abc", "%%%%"])
def test_signature_that_is_not_base64_is_refused_not_a_crash(signer, db, signature):
    headers = signer.headers(PAYLOAD)
    headers[SIGNATURE] = signature
    with running_server(db, signer.public_key) as server:
        answer = post(server, PAYLOAD, headers)
        # the server is still up afterwards
        good = post(server, PAYLOAD, signer.headers(PAYLOAD))
    assert answer.status == 403
    assert good.status == 200


@pytest.mark.parametrize(("offset", "error"), [
    (-26 * 3600, "the timestamp is older than SendGrid's 24 hours of retries"),
    (11 * 60, "the timestamp is in the future"),
])
def test_a_timestamp_outside_the_window_is_refused_even_when_correctly_signed(signer, db, offset, error):
    stamp = int(time.time()) + offset
    with running_server(db, signer.public_key) as server:
        answer = post(server, PAYLOAD, signer.headers(PAYLOAD, timestamp=stamp))
        recent = post(server, PAYLOAD, signer.headers(PAYLOAD, timestamp=int(time.time()) - 9 * 60))
    assert (answer.status, answer.body) == (403, {"error": error})
    assert recent.status == 200


def test_a_23_hour_old_signed_retry_is_accepted_once(signer, db):
    """SendGrid retries a failed POST for 24 hours; a replay of it inside the window changes nothing."""
    old = int(time.time()) - 23 * 3600
    headers = signer.headers(PAYLOAD, timestamp=old)
    with running_server(db, signer.public_key) as server:
        retry = post(server, PAYLOAD, headers)
        replay = post(server, PAYLOAD, headers)
    assert (retry.status, retry.body) == (200, {"stored": 3, "repeated": 0, "skipped": 0})
    assert (replay.status, replay.body) == (200, {"stored": 0, "repeated": 3, "skipped": 0})
    assert stored_ids(db) == ["ev-1", "ev-2", "ev-3"]


def test_oversized_body_is_refused_before_it_is_read(signer, db):
    with running_server(db, signer.public_key) as server:
        host, port = server.server_address[:2]
        conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.putrequest("POST", "/events")
        for name, value in signer.headers(PAYLOAD).items():
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(6 * 1024 * 1024))
        conn.endheaders()  # the 6 MB never follow: the answer must come from the header alone
        answer = conn.getresponse()
        status = answer.status
        conn.close()
    assert status == 413
    assert stored_ids(db) == []


def test_body_over_a_small_limit_is_refused(signer, db):
    with running_server(db, signer.public_key, max_body=100) as server:
        answer = post(server, PAYLOAD, signer.headers(PAYLOAD))
    assert answer.status == 413
    assert stored_ids(db) == []


def test_signed_body_that_is_not_an_event_list_is_a_bad_request(signer, db):
    body = '{"event": "delivered"}'
    with running_server(db, signer.public_key) as server:
        answer = post(server, body, signer.headers(body))
    assert answer.status == 400
    assert "single { ... } object" in answer.body["error"]


def test_bounce_and_unsubscribe_suppress_but_a_blocked_bounce_does_not(signer, db):
    body = json.dumps([
        event("bounce", "ev-b", "Ada.Parent@example.org", type="bounce", status="5.1.1",
              reason="550 5.1.1 mailbox unavailable", timestamp=1_763_629_200),  # 2025-11-20
        event("unsubscribe", "ev-u", "bob.carer@example.com", recipient_id="r-bob", timestamp=1_763_715_600),
        event("bounce", "ev-k", "cat.staff@example.org", type="blocked", reason="IP on a blocklist"),
    ])
    with running_server(db, signer.public_key) as server:
        answer = post(server, body, signer.headers(body))
    assert answer.status == 200
    assert suppressed_addresses(db) == {
        "ada.parent@example.org": "bounced on 2025-11-20",
        "bob.carer@example.com": "unsubscribed on 2025-11-21",
    }


def test_get_answers_a_health_check(signer, db):
    with running_server(db, signer.public_key) as server:
        host, port = server.server_address[:2]
        conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.request("GET", "/")
        status = conn.getresponse().status
        conn.close()
    assert status == 200
    assert not db.exists()


def test_refuses_to_start_without_a_public_key(db):
    with pytest.raises(ConfigError) as exc:
        make_server(db, "", port=0)
    assert str(exc.value).startswith("SENDGRID_WEBHOOK_PUBLIC_KEY is not set")


def test_refuses_to_start_with_a_damaged_public_key(db, signer):
    with pytest.raises(ConfigError) as exc:
        make_server(db, signer.public_key[:40], port=0)
    assert "is not a public key SendGrid would give" in str(exc.value)


def test_key_pasted_as_pem_with_line_breaks_is_accepted(db, signer):
    key = signer.public_key
    pem = "-----BEGIN PUBLIC KEY-----\n" + key[:64] + "\n" + key[64:] + "\n-----END PUBLIC KEY-----\n"
    with running_server(db, pem) as server:
        answer = post(server, PAYLOAD, signer.headers(PAYLOAD))
    assert answer.status == 200


def test_signed_batch_with_one_unusable_event_stores_the_rest(signer, db):
    broken = event("bounce", "ev-x", "not-an-address", type="bounce")
    body = json.dumps([event("delivered", "ev-1"), broken, event("bounce", "ev-2", "eve@example.org")])
    with running_server(db, signer.public_key) as server:
        answer = post(server, body, signer.headers(body))
    assert (answer.status, answer.body) == (200, {"stored": 2, "repeated": 0, "skipped": 1})
    assert stored_ids(db) == ["ev-1", "ev-2"]
    assert set(suppressed_addresses(db)) == {"eve@example.org"}
