"""SendGrid's 10,000-byte limit on one person's substitutions, counted in bytes of UTF-8 as SendGrid
counts them (not the length of \\u-escaped JSON): checked exactly only near the limit, never skipped.

The ``sg`` fixture's stand-in measures the limit on its own and fails the test on any violation."""

from __future__ import annotations

import json
from pathlib import Path

from tests.send_project import send_project
from tests.sendgrid_standin import SendGridStandIn
from tests.test_send_sendgrid import Run


def test_a_name_that_fits_in_utf8_goes_and_only_one_over_the_limit_is_refused(tmp_path: Path,
                                                                               sg: SendGridStandIn) -> None:
    # "é" is 2 bytes of UTF-8 but 6 in \u-escaped JSON. The sample uses the first name in the greeting of
    # both parts, so 1,500 of them make about 6,000 bytes (36,000 escaped) and 3,000 about 12,000.
    people = [("long@example.org", "é" * 3000, "Example", "parents"),
              ("near@example.org", "é" * 1500, "Example", "parents"),
              ("short@example.org", "Pat", "Example", "parents")]
    run = Run(send_project(tmp_path / "school", timeout=30.0), sg, people)
    report = run()
    assert dict(sg.received) == {"near@example.org": 1, "short@example.org": 1}
    assert report.sent == 2 and report.failed == 1
    assert report.errors == {"this person's name is too long for SendGrid": 1}
    [near] = [p for p in sg.requests[0]["personalizations"] if p["to"][0]["email"] == "near@example.org"]
    escaped = len(json.dumps(near["substitutions"]))
    utf8 = len(json.dumps(near["substitutions"], ensure_ascii=False).encode())
    assert utf8 <= 10_000 < escaped  # refused under the old, escaped count; fits as SendGrid counts


def test_the_body_goes_as_utf8_json_of_the_size_counted(tmp_path: Path, sg: SendGridStandIn) -> None:
    people = [("zoe@example.org", "Zoë", "Ångström", "parents")]
    run = Run(send_project(tmp_path / "school", timeout=30.0), sg, people)
    run()
    [size] = sg.body_sizes
    assert size == len(json.dumps(sg.requests[0], ensure_ascii=False, separators=(",", ":")).encode())
