"""Shared fixtures: a throwaway copy of the project, so tests never write into the repository."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE_SLUG = "2024-11-08-online-safety"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the project in a temporary folder, which is also the working directory."""
    from tests.projects import make_project  # a plugin (below): imported late so pytest can rewrite it

    root = tmp_path / "project"
    make_project(root)
    shutil.copy(REPO / "audiences.csv", root / "audiences.csv")
    monkeypatch.chdir(root)
    for name in ("MAILROOM_TRANSPORT", "SENDGRID_API_KEY", "SENDGRID_API_HOST", "SMTP_HOST", "MAILROOM_OUTBOX",
                 "MAILROOM_DB", "SMTP_PASSWORD", "SMTP_USERNAME", "SMTP_PORT", "SMTP_SECURITY"):
        monkeypatch.delenv(name, raising=False)
    return root


@pytest.fixture
def sample_dir(project: Path) -> Path:
    return project / "newsletters" / SAMPLE_SLUG


# Fixtures of their own concerns (copies of the project with fixture newsletters; headless Chromium).
pytest_plugins = ["tests.projects", "tests.browser"]
