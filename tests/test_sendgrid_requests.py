"""Every request valid by SendGrid's published description, and a 400 that names one person.

Against the stand-in on 127.0.0.1, which checks each body with SendGrid's request schema (``format:
email`` as SendGrid applies it) and the documented limits; any violation fails the test.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import NamedTuple

import jsonschema
import pytest

from mailroom.compose.build import Manifest, digest_build, load_build
from mailroom.send.dispatch import StopReason, make_message, make_version
from mailroom.send.ledger import SendState
from mailroom.send.transports.base import Batch, Delivery
from mailroom.send.transports.sendgrid import SendGridTransport, categories_for, sendable_address
from tests.send_project import API_KEY, SAMPLE, environ, many_people, send_project, send_py, settings_for
from tests.sendgrid_standin import Answer, Problem, SendGridStandIn, sendgrid_format_checker, wait_until
from tests.test_send_sendgrid import Run

SENT, FAILED, UNCERTAIN = SendState.SENT, SendState.FAILED, SendState.UNCERTAIN


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return send_project(tmp_path / "school", timeout=30.0)


# --- addresses ------------------------------------------------------------------------------------------

def test_the_standin_checks_email_format_as_sendgrid_does(sg: SendGridStandIn) -> None:
    def valid(address: str) -> bool:
        body = {"personalizations": [{"to": [{"email": address}]}], "from": {"email": "office@example.org"},
                "subject": "s", "content": [{"type": "text/plain", "value": "x"}]}
        return not sg.problems(body)

    assert valid("idn@xn--exmple-cua.org") and valid("o'brien+news@example.org")
    assert not valid("zoë@example.org") and not valid("idn@exämple.org") and not valid("no-at-sign")
    assert not valid("two words@example.org")
    jsonschema.validate("zoë@example.org", {"format": "email"}, format_checker=jsonschema.FormatChecker())
    with pytest.raises(jsonschema.ValidationError):  # the stock checker lets it through; SendGrid's does not
        jsonschema.validate("zoë@example.org", {"format": "email"}, format_checker=sendgrid_format_checker())


def test_sendable_address_encodes_the_domain_and_refuses_a_non_ascii_mailbox() -> None:
    assert sendable_address("idn@exämple.org") == "idn@xn--exmple-cua.org"
    assert sendable_address("Pat@Example.org") == "Pat@example.org"  # the mailbox name kept as typed
    assert sendable_address("zoë@example.org") is None
    assert sendable_address("pat@exa mple.org") is None and sendable_address("<pat@example.org>") is None


def test_a_non_ascii_mailbox_is_left_out_at_the_plan_with_a_reason_and_never_fails_the_request(project, sg) -> None:
    people = [("zoë@example.org", "Zoë", "Ångström", "parents"),
              ("idn@exämple.org", "Ida", "Example", "parents"),
              *many_people(3)]
    run = Run(project, sg, people)
    report = run()
    assert sg.request_count == 1  # one valid request: nobody else paid for Zoë's address
    [body] = sg.requests
    sent_to = [p["to"][0]["email"] for p in body["personalizations"]]
    assert sent_to == ["idn@xn--exmple-cua.org", "parent000000@example.org", "parent000001@example.org",
                       "parent000002@example.org"]
    assert body["personalizations"][0]["to"][0]["name"] == "Ida Example"
    assert report.sent == 4 and report.failed == 0
    # named in the plan and left out before anything was sent (issue 12), never a failure at send time
    [left] = run.plan.audience.left_out
    assert (left.email, left.reason) == ("zoë@example.org", "cannot be sent this way")
    assert left.detail == "SendGrid can only send to addresses written in plain letters before the @"
    assert run.counts == {SENT: 4}


def test_a_non_ascii_mailbox_that_reaches_the_transport_is_refused_alone(project, sg) -> None:
    """The send-time check stays as a second line (a caller that did not plan through the session)."""
    settings = settings_for(project, transport="sendgrid", host=sg.url)
    transport = SendGridTransport(settings)
    version = make_version(load_build(project / "newsletters" / SAMPLE, root=project), settings, "parents")
    messages = tuple(make_message(_Person(email, email.lower(), first, last, "parents"), f"rid{i}", settings)
                     for i, (email, first, last, _lists) in enumerate(
                         [("zoë@example.org", "Zoë", "Ångström", "parents"), *many_people(2)]))
    result = transport.send_batch(Batch(batch_id=1, version=version, messages=messages))
    assert result.deliveries["zoë@example.org"] is Delivery.REJECTED
    assert result.errors["zoë@example.org"].startswith("zoë@example.org: SendGrid can only send to addresses")
    assert [d for k, d in result.deliveries.items() if k != "zoë@example.org"] == [Delivery.SENT] * 2


def _batches(project: Path, settings, count: int, size: int = 30) -> list[Batch]:
    version = make_version(load_build(project / "newsletters" / SAMPLE, root=project), settings, "parents")
    people = many_people(count * size)
    return [Batch(batch_id=b + 1, version=version, messages=tuple(
        make_message(_Person(email, email, first, last, "parents"), f"rid{i}", settings)
        for i, (email, first, last, _lists) in enumerate(people[b * size:(b + 1) * size], b * size)))
        for b in range(count)]


def test_a_request_body_goes_whole_and_never_into_a_debug_log(project, sg, caplog) -> None:
    """The stand-in gets exactly the body's bytes, and no log line holds anyone's address or name (the
    library's debug log is not even on the way: the request goes over mailroom's kept connection)."""
    import logging

    from mailroom.send.transports.sendgrid import _serialise

    settings = settings_for(project, transport="sendgrid", host=sg.url)
    transport = SendGridTransport(settings)
    [batch] = _batches(project, settings, 1)
    prepared = transport._prepare(batch.version, False)
    expected = _serialise(prepared, transport.people(batch, prepared)[0]).whole()
    with caplog.at_level(logging.DEBUG):
        result = transport.send_batch(batch)
    assert set(result.deliveries.values()) == {Delivery.SENT}
    assert sg.body_sizes == [len(expected)] and sg.requests == [json.loads(expected)]
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert not any(m.email in logged or m.name in logged for m in batch.messages)


def test_batches_share_one_connection_and_a_closed_one_is_replaced_before_a_request(project, sg) -> None:
    """One connection carries batch after batch (a new one per request would be a TLS handshake each). One the
    server closed while it sat idle is noticed before the next request, which goes on a new connection and is
    sent: not "uncertain", as a request lost on a dead connection would be."""
    settings = settings_for(project, transport="sendgrid", host=sg.url)
    transport = SendGridTransport(settings)
    batches = _batches(project, settings, 4)
    for batch in batches[:3]:
        assert set(transport.send_batch(batch).deliveries.values()) == {Delivery.SENT}
    assert (sg.request_count, sg.connections_made) == (3, 1)
    sg.close_idle_connections()
    assert wait_until(lambda: not sg._open_connections)
    assert set(transport.send_batch(batches[3]).deliveries.values()) == {Delivery.SENT}
    assert (sg.request_count, sg.connections_made) == (4, 2)
    assert sum(sg.received.values()) == 120 and set(sg.received.values()) == {1}
    transport.close()
    assert wait_until(lambda: not sg._open_connections)  # closed when the send is over


def test_a_connection_idle_too_long_is_not_reused(sg) -> None:
    """A connection idle longer than servers keep one is closed and a new one made, even if it looks open."""
    from mailroom.send.transports.sendgrid_http import IDLE_SECONDS, SendGridConnection

    now = [1000.0]
    connection = SendGridConnection(sg.url, {"Authorization": f"Bearer {API_KEY}"}, 10, clock=lambda: now[0])
    body = json.dumps({"personalizations": [{"to": [{"email": "a@example.org"}]}],
                       "from": {"email": "office@example.org"}, "subject": "Hi",
                       "content": [{"type": "text/plain", "value": "Hello"}]}).encode()
    for wait in (0.0, IDLE_SECONDS - 1, IDLE_SECONDS + 1):
        now[0] += wait
        assert connection.post((body[:9], body[9:]), "application/json", str).status_code == 202
    assert (connection.connections_made, sg.connections_made) == (2, 2)
    connection.close()


class _ForwardingProxy:
    """An HTTP proxy on 127.0.0.1 that forwards each request to where its absolute URL says, noting that URL."""

    def __init__(self) -> None:
        import http.client
        import threading
        import urllib.parse
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                seen.append(self.path)
                target = urllib.parse.urlsplit(self.path)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                upstream = http.client.HTTPConnection(target.netloc, timeout=10)
                upstream.request("POST", target.path, body, {k: v for k, v in self.headers.items()
                                                             if k.lower() not in ("connection", "proxy-connection")})
                answer = upstream.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("connection", "transfer-encoding", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                upstream.close()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_proxy_set_for_the_host_is_used_and_the_library_log_names_nobody(project, sg, caplog,
                                                                           monkeypatch) -> None:
    """A school behind a proxy (HTTP_PROXY, HTTPS_PROXY) sends through it, as the library does: the request
    goes the library's way, and the library's debug log line for the payload names nobody (the body is
    handed to it as a view of its bytes)."""
    import logging

    proxy = _ForwardingProxy()
    try:
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("http_proxy", proxy.url)
        settings = settings_for(project, transport="sendgrid", host=sg.url)
        transport = SendGridTransport(settings)
        [batch] = _batches(project, settings, 1)
        with caplog.at_level(logging.DEBUG, logger="python_http_client"):
            result = transport.send_batch(batch)
        assert set(result.deliveries.values()) == {Delivery.SENT}
        assert proxy.seen == [f"{sg.url}/v3/mail/send"] and sg.request_count == 1
        logged = "\n".join(record.getMessage() for record in caplog.records)
        assert "PAYLOAD" in logged  # the library did log the request
        assert not any(m.email in logged or m.name in logged for m in batch.messages)
    finally:
        proxy.close()


class _Person(NamedTuple):
    email: str
    key: str
    first_name: str
    last_name: str
    audience: str


# --- a 400 that names a person ---------------------------------------------------------------------------

def test_a_person_sendgrid_refuses_is_named_and_everyone_else_is_sent(project, tmp_path) -> None:
    bad = "parent000412@example.org"
    with SendGridStandIn(api_key=API_KEY, refuse={bad: "Does not contain a valid address."}) as sg:
        run = Run(project, sg, many_people(1000))
        report = run()
        assert sg.violations == []
    assert sg.request_count == 2 and sg.refused == [bad]
    first, second = (len(body["personalizations"]) for body in sg.requests)
    assert (first, second) == (1000, 999)
    assert len(sg.received) == 999 and bad not in sg.received and set(sg.received.values()) == {1}
    assert report.sent == 999 and report.failed == 1 and report.stopped is None
    [reason] = report.errors
    assert reason == (f"SendGrid refused {bad}: Does not contain a valid address. (field "
                      "personalizations.412.to.0.email; help: "
                      "https://www.twilio.com/docs/sendgrid/api-reference/mail-send/errors)")
    assert run.counts == {SENT: 999, FAILED: 1}


def test_several_refused_people_in_one_answer_cost_one_more_request(project) -> None:
    bad = {"parent000003@example.org": "Invalid address.", "parent000007@example.org": "Invalid address."}
    with SendGridStandIn(api_key=API_KEY, refuse=bad) as sg:
        report = Run(project, sg, many_people(10))()
    assert sg.request_count == 2 and report.sent == 8 and report.failed == 2
    assert set(sg.received) == {f"parent{i:06d}@example.org" for i in range(10)} - set(bad)


def test_a_400_about_the_whole_request_shows_message_field_and_help(project, sg) -> None:
    sg.script(Answer(400, errors=[Problem("The from address does not match a verified Sender Identity.",
                                          "from.email", "http://sendgrid.com/docs/for-developers/sending-email/")]))
    report = Run(project, sg)()
    assert report.stopped == StopReason.REFUSED
    assert report.stop_message == (
        "SendGrid rejected the request as invalid (400). SendGrid said: The from address does not match a "
        "verified Sender Identity. (field from.email; help: http://sendgrid.com/docs/for-developers/sending-email/)")


# --- categories -------------------------------------------------------------------------------------------

def test_the_newsletters_own_category_is_always_kept() -> None:
    configured = (*(f"c{i}" for i in range(12)), "c1", "x" * 300)
    categories = categories_for(configured, SAMPLE)
    assert len(categories) == 10 and categories[-1] == SAMPLE and len(set(categories)) == 10
    assert all(len(c) <= 255 for c in categories)
    assert categories_for((SAMPLE, "weekly"), SAMPLE) == ["weekly", SAMPLE]


def test_nine_configured_categories_and_the_newsletters_go_out_valid(tmp_path, sg) -> None:
    folder = send_project(tmp_path / "school", timeout=30.0)
    names = [f"cat-{i}" for i in range(9)]
    toml = (folder / "school.toml").read_text().replace('categories = ["newsletter"]', f"categories = {names}")
    (folder / "school.toml").write_text(toml)
    Run(folder, sg)()
    assert sg.requests[0]["categories"] == [*names, SAMPLE]


# --- the size of a request ---------------------------------------------------------------------------------

def test_a_batch_over_the_size_limit_goes_as_several_requests_each_under_it(project) -> None:
    limit = 150_000  # the sample's shared parts are ~65 KB (inline images); ~100 people fit beside them
    with SendGridStandIn(api_key=API_KEY, max_body_bytes=limit) as sg:
        run = Run(project, sg, many_people(400), max_request_bytes=limit)
        report = run()
        assert sg.violations == []
    assert sg.request_count >= 2 and max(sg.body_sizes) <= limit
    assert sum(len(body["personalizations"]) for body in sg.requests) == 400
    assert len(sg.received) == 400 and set(sg.received.values()) == {1}
    assert report.sent == 400 and run.counts == {SENT: 400}
    batch_ids = {b["message_id"] for b in run.batches}
    assert len(batch_ids) == 1  # one batch in the ledger; each request had its own X-Message-Id
    assert len(set(sg.message_ids)) == sg.request_count


def test_when_a_later_request_of_a_split_batch_is_lost_only_its_people_are_uncertain(project) -> None:
    limit = 150_000
    with SendGridStandIn(api_key=API_KEY, max_body_bytes=limit) as sg:
        sg.script(Answer(202), Answer(drop=True))
        run = Run(project, sg, many_people(400), max_request_bytes=limit)
        run()
    second = len(sg.requests[1]["personalizations"])
    counts = run.counts
    assert counts[SENT] == 400 - second and counts[UNCERTAIN] == second  # never counted as sent twice
    assert sum(sg.received.values()) == 400 and set(sg.received.values()) == {1}


def test_an_email_over_30_mb_is_refused_at_the_plan(tmp_path: Path) -> None:
    folder = send_project(tmp_path / "school", timeout=30.0)
    # The composed build's photo swapped for 23 MB (30.7 MB once base64-encoded for SendGrid), and recorded in
    # the manifest as compose would have (a file swapped by hand alone is refused before any size check).
    build = folder / "newsletters" / SAMPLE / "build"
    photo = build / "images" / "home-learning-hub.png"
    photo.write_bytes(os.urandom(23_000_000))
    manifest = Manifest.read(build)
    files = {**manifest.files, "images/home-learning-hub.png": hashlib.sha256(photo.read_bytes()).hexdigest()}
    dataclasses.replace(manifest, files=files, build_hash=digest_build(files, manifest.sources)).write(build)
    (folder / "audiences.csv").write_text("email,first_name,last_name,lists,status\n"
                                          "pat@example.org,Pat,Example,parents,subscribed\n")
    with SendGridStandIn(api_key=API_KEY) as sg:
        result = send_py(folder, f"newsletters/{SAMPLE}", "--to", "parents", "--dry-run",
                         env=environ(folder, transport="sendgrid", host=sg.url))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "the parents email is 30.7 MB as SendGrid receives it" in result.stderr
    assert "over SendGrid's limit of 30 MB per email" in result.stderr
    assert sg.request_count == 0
