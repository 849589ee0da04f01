"""SendGrid's 10,000-byte limit on one person's substitutions: checked exactly only near the limit, never skipped."""

from __future__ import annotations

from pathlib import Path

from tests.send_project import send_project
from tests.sendgrid_standin import SendGridStandIn
from tests.test_send_sendgrid import Run


def test_only_a_person_whose_fields_pass_the_limit_is_refused(tmp_path: Path, sg: SendGridStandIn) -> None:
    # "é" is 6 bytes in SendGrid's JSON (\u00e9) and the sample uses the first name twice (the greeting,
    # in the HTML and the text tags): 900 of them pass 10,000 bytes, 700 stay under.
    people = [("long@example.org", "é" * 900, "Example", "parents"),
              ("near@example.org", "é" * 700, "Example", "parents"),
              ("short@example.org", "Pat", "Example", "parents")]
    run = Run(send_project(tmp_path / "school", timeout=1.0), sg, people)
    report = run()
    assert dict(sg.received) == {"near@example.org": 1, "short@example.org": 1}
    assert report.sent == 2 and report.failed == 1
    assert report.errors == {"this person's name is too long for SendGrid": 1}
