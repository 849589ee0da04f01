"""A send through SendGrid imports only what it uses.

A send's fixed cost is mostly Python importing modules, and a few cost more to import than the send's own
work for thousands of people: email-validator (its syntax rules compile big regular expressions), the
sendgrid package (its event-webhook helper imports cryptography), filelock, lxml.html (the checks need only
lxml's parser), rich's emoji table. These tests run send.py as the office does, with Python listing every
module it imports, and fail if one of those comes back, and check that what was put off still works when
it is needed.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.send_project import SAMPLE, environ, send_project, send_py, write_audiences
from tests.sendgrid_standin import SendGridStandIn

NEWSLETTER = f"newsletters/{SAMPLE}"
# Packages and modules a send through SendGrid to people at plain domains never needs (with their submodules).
NOT_FOR_A_SEND = ("email_validator", "filelock", "sendgrid", "cryptography", "lxml.html", "rich._emoji_codes")


@pytest.fixture
def composed(tmp_path: Path) -> Path:
    return send_project(tmp_path / "school")


def imported(result: subprocess.CompletedProcess[str]) -> set[str]:
    """The modules a process run with PYTHONPROFILEIMPORTTIME=1 imported."""
    return set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)$", result.stderr, re.MULTILINE))


def test_a_sendgrid_send_imports_none_of_the_packages_it_does_not_use(composed: Path, sg: SendGridStandIn) -> None:
    write_audiences(composed / "audiences.csv", [("amelia.hughes@example.org", "Amelia", "Hughes", "parents"),
                                                 ("rahul.patel@mail.example.com", "Rahul", "Patel", "parents")])
    env = {**environ(composed, transport="sendgrid", host=sg.url), "PYTHONPROFILEIMPORTTIME": "1"}
    result = send_py(composed, NEWSLETTER, "--to", "parents", "--yes", "--untested", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sg.received == {"amelia.hughes@example.org": 1, "rahul.patel@mail.example.com": 1}
    modules = imported(result)
    assert {"mailroom.cli", "sqlite3", "python_http_client", "lxml.etree"} <= modules  # the listing is read right
    assert sorted(name for name in modules if name.startswith(NOT_FOR_A_SEND)) == []


def test_an_address_email_validator_must_judge_is_still_judged_by_it(composed: Path, sg: SendGridStandIn) -> None:
    write_audiences(composed / "audiences.csv", [("amelia.hughes@example.org", "Amelia", "Hughes", "parents"),
                                                 ("zoe@printer.local", "Zoe", "Local", "parents")])
    env = environ(composed, transport="sendgrid", host=sg.url)
    result = send_py(composed, NEWSLETTER, "--to", "parents", "--yes", "--untested", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sg.received == {"amelia.hughes@example.org": 1}, result.stdout
    assert "special-use or reserved name" in result.stdout + result.stderr  # email-validator's own explanation


def test_a_test_send_to_a_malformed_address_gets_email_validators_explanation(composed: Path,
                                                                               sg: SendGridStandIn) -> None:
    env = environ(composed, transport="sendgrid", host=sg.url)
    result = send_py(composed, NEWSLETTER, "--to", "parents", "--test", "office@@oakfield.example.org", env=env)
    assert result.returncode != 0 and sg.request_count == 0
    assert ("--test needs one email address, and 'office@@oakfield.example.org' is not one (The part after the "
            "@-sign contains invalid characters: '@'.)") in result.stderr
