"""Throwaway copies of the project, so tests that compose never write into the repository's build/."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mailroom.settings import Settings, load_settings
from mailroom.workflows.compose import ComposeResult, compose_newsletter

REPO = Path(__file__).resolve().parent.parent
SAMPLE = "2024-11-08-online-safety"
FIXTURE_NEWSLETTERS = REPO / "tests" / "fixtures" / "newsletters"


def make_project(dest: Path, newsletter: Path | None = None, *, name: str | None = None) -> Path:
    """Copy school.toml, templates/, assets/ and one newsletter (default: the sample) into ``dest``.

    A fixture newsletter may carry a ``templates/`` folder of its own: its files replace the
    project's templates of the same name, so a fixture can bring in what a broken template would.
    Returns the copied newsletter folder.
    """
    source = newsletter or REPO / "newsletters" / SAMPLE
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO / "school.toml", dest / "school.toml")
    shutil.copytree(REPO / "templates", dest / "templates")
    shutil.copytree(REPO / "assets", dest / "assets")
    folder = dest / "newsletters" / (name or source.name)
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("build", "templates"))
    overrides = source / "templates"
    if overrides.is_dir():
        shutil.copytree(overrides, dest / "templates", dirs_exist_ok=True)
    return folder


def project_settings(root: Path) -> Settings:
    """The copy's settings, with an empty environment (nothing from the machine running the tests)."""
    return load_settings(root, environ={})


def compose_copy(folder: Path) -> ComposeResult:
    return compose_newsletter(project_settings(folder.parent.parent), folder)


@pytest.fixture
def sample_folder(tmp_path: Path) -> Path:
    """A fresh copy of the sample newsletter's project, not yet composed."""
    return make_project(tmp_path / "project")


@pytest.fixture(scope="session")
def composed_sample(tmp_path_factory: pytest.TempPathFactory) -> ComposeResult:
    """The sample, composed once for the session (tests must not change it)."""
    folder = make_project(tmp_path_factory.mktemp("sample"))
    return compose_copy(folder)
