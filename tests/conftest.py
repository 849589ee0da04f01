"""Shared fixtures: a throwaway copy of the project (tests never write into the repository), and the
stand-in SendGrid on 127.0.0.1."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.sendgrid_standin import SendGridStandIn

REPO = Path(__file__).resolve().parents[1]
SAMPLE_SLUG = "2024-11-08-online-safety"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the project in a temporary folder, which is also the working directory."""
    from tests.projects import make_project  # a plugin (below): imported late so pytest can rewrite it

    root = make_project(tmp_path / "project").parents[1]
    shutil.copy(REPO / "audiences.csv", root / "audiences.csv")
    monkeypatch.chdir(root)
    for name in ("MAILROOM_TRANSPORT", "SENDGRID_API_KEY", "SENDGRID_API_HOST", "SMTP_HOST", "MAILROOM_OUTBOX",
                 "MAILROOM_DB", "SMTP_PASSWORD", "SMTP_USERNAME", "SMTP_PORT", "SMTP_SECURITY"):
        monkeypatch.delenv(name, raising=False)
    return root


@pytest.fixture
def sample_dir(project: Path) -> Path:
    return project / "newsletters" / SAMPLE_SLUG


@pytest.fixture
def sg() -> Iterator[SendGridStandIn]:
    """The stand-in SendGrid, which checks every request body; a test fails if SendGrid would have said 400."""
    from tests.send_project import API_KEY
    from tests.sendgrid_standin import SendGridStandIn

    with SendGridStandIn(api_key=API_KEY) as standin:
        yield standin
        assert standin.violations == []


# Fixtures of their own concerns (copies of the project with fixture newsletters; headless Chromium).
pytest_plugins = ["tests.projects", "tests.browser"]
