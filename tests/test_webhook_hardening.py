"""The Event Webhook under load and bad input, on 127.0.0.1 with bounded loops and injected deadlines.

- 32 parallel posters with 10,000 events: no connection reset, every event stored once;
- a slow body (slowloris) cut off at the request deadline, while others are still served;
- idle connections hold no worker thread;
- malformed headers and deeply nested JSON answered 400; no input prints a traceback.
"""

from __future__ import annotations

import http.client
import json
import socket
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from tests.sendgrid_events import Signer, event, post, running_server

POSTERS = 32
EVENTS = 10_000


@pytest.fixture
def signer() -> Signer:
    return Signer()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "mailroom.sqlite3"


@pytest.fixture(autouse=True)
def no_traceback(capfd: pytest.CaptureFixture[str]):
    yield
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err


def stored(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute("SELECT sg_event_id FROM events")]


def test_32_parallel_posters_with_10000_events_are_all_stored_once_without_a_reset(signer, db) -> None:
    per_post = 125  # 80 POSTs; each poster also re-posts one of its batches (SendGrid's retry)
    bodies = [json.dumps([event("delivered", f"ev-{n:05d}", recipient_id=f"r-{n}")
                          for n in range(start, start + per_post)]) for start in range(0, EVENTS, per_post)]
    mine = [bodies[i::POSTERS] for i in range(POSTERS)]
    start = threading.Barrier(POSTERS)
    statuses: list[int] = []
    failures: list[str] = []

    def poster(batch: list[str]) -> None:
        start.wait()
        for body in [*batch, batch[0]]:
            try:
                statuses.append(post(server, body, signer.headers(body)).status)
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                failures.append(type(exc).__name__)

    with running_server(db, signer.public_key) as server:
        threads = [threading.Thread(target=poster, args=(batch,)) for batch in mine]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        workers = server.threads_in_use
    assert failures == []  # no reset, no refused connection
    assert statuses == [200] * (len(bodies) + POSTERS)
    ids = stored(db)
    assert len(ids) == EVENTS == len(set(ids))
    assert server.totals.stored == EVENTS and server.totals.repeated == POSTERS * per_post
    assert workers <= server.max_workers


def _slow_client(port: int, head: bytes, results: list[float], started: threading.Event) -> None:
    """Sends ``head`` at once, then a body one byte at a time; records when the server cut it off."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    began = time.monotonic()
    started.set()
    try:
        sock.sendall(head)
        for _ in range(150):  # bounded: at most 150 bytes, 20 ms apart (3 s)
            sock.sendall(b"[")
            time.sleep(0.02)
        results.append(float("inf"))  # never cut off
    except OSError:
        results.append(time.monotonic() - began)
    finally:
        sock.close()


def _slow_clients(port: int, head: bytes, count: int) -> tuple[list[threading.Thread], list[float]]:
    cut_off: list[float] = []
    started = [threading.Event() for _ in range(count)]
    threads = [threading.Thread(target=_slow_client, args=(port, head, cut_off, s)) for s in started]
    for thread in threads:
        thread.start()
    for event_ in started:
        event_.wait(5)
    return threads, cut_off


def test_dribbled_headers_hold_no_worker_and_are_cut_off_at_the_header_deadline(signer, db) -> None:
    header_deadline = 1.0
    with running_server(db, signer.public_key, workers=2, header_deadline=header_deadline,
                        request_deadline=5.0) as server:
        # The request line arrives, then header bytes one at a time: the headers never end. Ten times as
        # many slow clients as workers: they wait for their headers without a worker.
        began = time.monotonic()
        threads, cut_off = _slow_clients(server.server_address[1], b"POST /events HTTP/1.1\r\nX-Slow: ", 20)
        body = json.dumps([event("delivered", "ev-fast")])
        answer = post(server, body, signer.headers(body))
        served_at = time.monotonic() - began
        for thread in threads:
            thread.join(10)
        workers = server.threads_in_use
    assert answer.status == 200 and stored(db) == ["ev-fast"]
    assert served_at < min(cut_off)  # served while every slow client was still connected
    assert len(cut_off) == 20 and all(0.8 * header_deadline <= t < 3 * header_deadline for t in cut_off), cut_off
    assert workers <= 2


def test_a_dribbled_body_is_cut_off_at_the_request_deadline(signer, db) -> None:
    deadline = 0.8
    body = GOOD_BODY.encode()
    signed = signer.headers(GOOD_BODY)
    head = (f"POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body) + 1000}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in signed.items()) + "\r\n").encode()
    with running_server(db, signer.public_key, header_deadline=0.2, request_deadline=deadline) as server:
        threads, cut_off = _slow_clients(server.server_address[1], head, 2)
        for thread in threads:
            thread.join(10)
    # Past the short header deadline (the headers came at once), cut at the request deadline instead.
    assert len(cut_off) == 2 and all(0.8 * deadline <= t < 3 * deadline for t in cut_off), cut_off
    assert not db.exists() or stored(db) == []


def test_idle_connections_hold_no_worker_and_the_server_keeps_answering(signer, db) -> None:
    with running_server(db, signer.public_key, workers=2, idle_timeout=30) as server:
        idle = [socket.create_connection(server.server_address[:2], timeout=5) for _ in range(200)]
        try:
            body = json.dumps([event("delivered", "ev-1")])
            began = time.monotonic()
            answer = post(server, body, signer.headers(body))
            took = time.monotonic() - began
            threads = server.threads_in_use
        finally:
            for sock in idle:
                sock.close()
    assert answer.status == 200 and took < 2.0 and threads <= 2


def test_a_connection_that_never_speaks_is_closed_after_the_idle_timeout(signer, db) -> None:
    with running_server(db, signer.public_key, idle_timeout=0.3) as server:
        sock = socket.create_connection(server.server_address[:2], timeout=5)
        began = time.monotonic()
        closed = sock.recv(1) == b""  # the server closes it: recv returns, no data
        took = time.monotonic() - began
        sock.close()
    assert closed and 0.2 <= took < 3.0


def _raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


GOOD_BODY = json.dumps([event("delivered", "ev-1")])


@pytest.mark.parametrize(("headers", "status"), [
    ({"Content-Length": "²"}, 400),
    ({"Content-Length": "٣"}, 400),
    ({"Content-Length": "-1"}, 400),
    ({"Content-Length": "1e3"}, 400),
    ({"Content-Length": "99999999999999999999999"}, 400),
    ({"Content-Length": ["5", "7"]}, 400),
    ({"Timestamp": "²"}, 400),
    ({"Timestamp": "1.7e9"}, 400),
    ({"Timestamp": "-5"}, 400),
    ({"Timestamp": ["1", "2"]}, 400),
    ({"Transfer-Encoding": "chunked"}, 411),
])
def test_malformed_headers_are_answered_400(signer, db, headers, status) -> None:
    signed = signer.headers(GOOD_BODY)
    values: dict[str, str | list[str]] = {
        "Host": "127.0.0.1", "Content-Length": str(len(GOOD_BODY.encode())),
        "X-Twilio-Email-Event-Webhook-Signature": signed["X-Twilio-Email-Event-Webhook-Signature"],
        "X-Twilio-Email-Event-Webhook-Timestamp": signed["X-Twilio-Email-Event-Webhook-Timestamp"]}
    for name, value in headers.items():
        values["X-Twilio-Email-Event-Webhook-Timestamp" if name == "Timestamp" else name] = value
    lines = [f"{name}: {v}" for name, value in values.items() for v in (value if isinstance(value, list) else [value])]
    request = ("POST /events HTTP/1.1\r\n" + "\r\n".join(lines) + "\r\n\r\n").encode() + GOOD_BODY.encode()
    with running_server(db, signer.public_key) as server:
        answer = _raw(server.server_address[1], request)
        after = post(server, GOOD_BODY, signer.headers(GOOD_BODY))  # still up
    assert answer.startswith(f"HTTP/1.0 {status} ".encode()), answer[:200]
    assert after.status == 200


@pytest.mark.parametrize("request_bytes", [
    b"\x00\xff\xfe garbage\r\n\r\n",
    b"POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n",
    b"POST /events HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150)) + b"\r\n",
    b"GET / HTTP/9.9\r\n\r\n",
    b"POST /events HTTP/1.1\r\nContent-Length: 10\r\n\r\n[",  # the body ends early
    b"",
])
def test_garbage_gets_an_error_answer_or_a_closed_connection_never_a_traceback(signer, db, request_bytes) -> None:
    with running_server(db, signer.public_key) as server:
        answer = _raw(server.server_address[1], request_bytes)
        after = post(server, GOOD_BODY, signer.headers(GOOD_BODY))
    assert answer == b"" or answer.startswith((b"HTTP/1.0 4", b"HTTP/1.0 505 "))
    assert after.status == 200


@pytest.mark.parametrize("body", [
    "[" * 200_000,
    '[{"event": "open", "x": ' + "[" * 40 + "]" * 40 + "}]",
    "[" + "{\"a\":" * 10_000 + "1" + "}" * 10_000 + "]",
])
def test_deeply_nested_json_is_a_bad_request(signer, db, body) -> None:
    with running_server(db, signer.public_key) as server:
        answer = post(server, body, signer.headers(body))
    assert answer.status == 400 and "nested more than 32 levels deep" in str(answer.body["error"])
