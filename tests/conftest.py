"""Shared fixtures: a throwaway copy of the project, so tests never write into the repository."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE_SLUG = "2024-11-08-online-safety"


def copy_project(target: Path) -> Path:
    """school.toml, templates, assets, audiences.csv and the sample newsletter, copied under ``target``."""
    for name in ("school.toml", "audiences.csv"):
        if (REPO / name).exists():
            shutil.copy(REPO / name, target / name)
    for name in ("templates", "assets"):
        shutil.copytree(REPO / name, target / name)
    shutil.copytree(REPO / "newsletters" / SAMPLE_SLUG, target / "newsletters" / SAMPLE_SLUG,
                    ignore=shutil.ignore_patterns("build", ".build-*"))
    return target


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the project in a temporary folder, which is also the working directory."""
    root = tmp_path / "project"
    root.mkdir()
    copy_project(root)
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
