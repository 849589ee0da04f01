"""Per-message progress from the SMTP transport through dispatch: at 30 messages a minute a batch of ten
takes 20 seconds, so each person is reported as the server answers, not when the batch ends."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailroom.send.transports.smtp import SmtpTransport
from mailroom.settings import load_settings
from tests.send_project import send_project
from tests.smtp_server import FakeClock, ScriptedHandler, start_server
from tests.test_smtp import people


@pytest.fixture
def handler() -> ScriptedHandler:
    return ScriptedHandler()


@pytest.fixture
def port(handler: ScriptedHandler) -> Iterator[int]:
    controller = start_server(handler)
    yield int(controller.port)
    controller.stop()


def test_the_send_progress_moves_per_message_and_a_log_gets_one_line_per_batch(
        tmp_path: Path, port: int, handler: ScriptedHandler) -> None:
    from mailroom.send.dispatch import Progress
    from mailroom.workflows.send import SendSession
    from tests.send_project import write_audiences
    from tests.test_smtp import SLUG

    clock = FakeClock()
    root = send_project(tmp_path / "school")
    settings = load_settings(root, environ={"MAILROOM_TRANSPORT": "smtp", "SMTP_HOST": "127.0.0.1",
                                            "SMTP_PORT": str(port), "SMTP_SECURITY": "none",
                                            "MAILROOM_DB": str(root / "mailroom.sqlite3")})
    settings = dataclasses.replace(settings, smtp=dataclasses.replace(settings.smtp, messages_per_minute=30))
    write_audiences(root / "audiences.csv", [tuple(p) for p in people(25)])  # type: ignore[misc]
    handler.rcpt_replies["parent003@example.org"] = "550 5.1.1 User unknown"
    seen: list[tuple[Progress, float, int]] = []  # (progress, when, messages the server had by then)
    transport = SmtpTransport(settings, clock=clock, sleep=clock.sleep)
    with SendSession(settings, root / "newsletters" / SLUG, ["parents"], transport=transport) as session:
        result = session.send_live(session.plan_live(), untested=True, on_progress=lambda progress: seen.append(
            (progress, clock(), len(handler.received))))

    assert transport.max_batch_size == 10  # 30 a minute: batches of ten, 20 seconds each
    assert result.report.sent == 24 and result.report.failed == 1 and len(handler.received) == 24
    per_message = [(p.done, p.sent, at, arrived) for p, at, arrived in seen if p.partial]
    assert [done for done, *_ in per_message] == list(range(1, 26))  # moves with every person, refused one too
    assert [sent for _done, sent, *_ in per_message][:5] == [1, 2, 3, 3, 4]
    assert [arrived for *_, arrived in per_message][:5] == [1, 2, 3, 3, 4]  # each as soon as the server answered
    assert all(b[2] - a[2] == pytest.approx(2.0) for a, b in itertools.pairwise(per_message))
    per_batch = [p.done for p, _at, _n in seen if not p.partial and not p.note]
    assert per_batch == [10, 20, 25]  # what a log (output not on a terminal) prints: one line per batch
