"""Per-message progress from the SMTP transport: at 30 messages a minute a batch of ten takes 20 seconds,
so each person is reported as the server answers, not when the batch ends."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailroom.send.transports.base import Delivery
from mailroom.send.transports.smtp import SmtpTransport
from mailroom.settings import load_settings
from tests.send_project import send_project
from tests.smtp_server import FakeClock, ScriptedHandler, start_server
from tests.test_smtp import dispatch, people


@pytest.fixture
def handler() -> ScriptedHandler:
    return ScriptedHandler()


@pytest.fixture
def port(handler: ScriptedHandler) -> Iterator[int]:
    controller = start_server(handler)
    yield int(controller.port)
    controller.stop()


def test_each_person_is_reported_as_the_server_answers(tmp_path: Path, port: int, handler: ScriptedHandler) -> None:
    clock = FakeClock()
    handler.clock = clock
    handler.rcpt_replies["parent003@example.org"] = "550 5.1.1 User unknown"
    root = send_project(tmp_path / "school")
    settings = load_settings(root, environ={"MAILROOM_TRANSPORT": "smtp", "SMTP_HOST": "127.0.0.1",
                                            "SMTP_PORT": str(port), "SMTP_SECURITY": "none",
                                            "MAILROOM_DB": str(root / "mailroom.sqlite3")})
    settings = dataclasses.replace(settings, smtp=dataclasses.replace(settings.smtp, messages_per_minute=30))
    transport = SmtpTransport(settings, clock=clock, sleep=clock.sleep)
    heard: list[tuple[str, Delivery, float, int]] = []
    transport.on_delivery = lambda key, delivery: heard.append((key, delivery, clock(), len(handler.received)))
    report, _ledger = dispatch(settings, transport, people(20))

    assert transport.max_batch_size == 10 and report.sent == 19 and report.failed == 1
    assert [key for key, *_ in heard] == [p.key for p in people(20)]  # everyone once, in order
    assert heard[3][1] is Delivery.REJECTED and all(d is Delivery.SENT for k, d, *_ in heard if k != heard[3][0])
    times = [at for _k, _d, at, _n in heard]
    assert times[9] - times[0] == pytest.approx(18.0)  # within the first batch, two seconds apart
    # each report came while the batch was going, right after that person's message arrived
    assert [arrived for _k, delivery, _at, arrived in heard if delivery is Delivery.SENT][:5] == [1, 2, 3, 4, 5]
