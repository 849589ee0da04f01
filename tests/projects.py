"""The one way tests make a project: a throwaway copy of school.toml, templates/, assets/ and a newsletter.

``make_project`` copies; with ``composed=True`` the newsletter is also composed (once per test session
for each look of the email, then copied, so send tests stay fast). ``school_toml`` edits school.toml's text
(old -> new) for the settings a test needs, e.g. a short SendGrid timeout. Tests never write into
the repository.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import pytest

from mailroom.compose.build import RENDERING_PART, source_digest
from mailroom.settings import Settings, load_settings
from mailroom.workflows.compose import ComposeResult, compose_newsletter

REPO = Path(__file__).resolve().parent.parent
SAMPLE = "2024-11-08-online-safety"
FIXTURE_NEWSLETTERS = REPO / "tests" / "fixtures" / "newsletters"

# school.toml edits the send tests use: a short request timeout, and no SMTP rate cap (a cap is measured
# with a fake clock, never slept through)
SEND_SETTINGS = {"timeout_seconds = 30": "timeout_seconds = 5", "messages_per_minute = 30": "messages_per_minute = 0"}

_COMPOSED: dict[tuple[object, ...], Path] = {}


def make_project(dest: Path, newsletter: Path | None = None, *, name: str | None = None,
                 school_toml: Mapping[str, str] | None = None, composed: bool = False) -> Path:
    """Copy school.toml, templates/, assets/ and one newsletter (default: the sample) into ``dest``.

    A fixture newsletter may carry a ``templates/`` folder of its own: its files replace the
    project's templates of the same name, so a fixture can bring in what a broken template would.
    Returns the copied newsletter folder (the project is its ``parents[1]``).

    With ``composed``, edits that only touch sending settings (timeouts, pace, limits, where the lists
    come from) reuse the build composed without them, as the product itself does: they are not part of
    the rendering digest a build records, so the build stays up to date (a send would refuse otherwise).
    Edits to what the email looks like get a compose of their own.
    """
    source = newsletter or REPO / "newsletters" / SAMPLE
    folder_name = name or source.name
    edits = dict(school_toml or {})
    if composed:
        looks = tuple(sorted(edits.items())) if _changes_the_email(edits) else ()
        key = (source, folder_name, looks)
        if key not in _COMPOSED:
            template = Path(tempfile.mkdtemp(prefix="mailroom-project-"))
            atexit.register(shutil.rmtree, template, True)
            compose_copy(_copy_project(template, source, folder_name, dict(looks)))
            _COMPOSED[key] = template
        shutil.copytree(_COMPOSED[key], dest, dirs_exist_ok=True)
        (dest / "school.toml").write_text(_school_toml(edits), encoding="utf-8")
        return dest / "newsletters" / folder_name
    return _copy_project(dest, source, folder_name, edits)


def _school_toml(edits: Mapping[str, str]) -> str:
    toml = (REPO / "school.toml").read_text(encoding="utf-8")
    for old, new in edits.items():
        assert old in toml, f"school.toml no longer has {old!r}; update the test's edit"
        toml = toml.replace(old, new)
    return toml


def _changes_the_email(edits: Mapping[str, str]) -> bool:
    """Whether the edits change school.toml's rendering part (what a build records of it)."""
    if not edits:
        return False
    with tempfile.TemporaryDirectory() as folder:
        edited = Path(folder) / "school.toml"
        edited.write_text(_school_toml(edits), encoding="utf-8")
        return source_digest(edited, RENDERING_PART) != source_digest(REPO / "school.toml", RENDERING_PART)


# What running the sample by hand leaves in a newsletter folder (the README's first command does): the build,
# the record that it was sent (with no ledger beside the copy, a send would rightly refuse), a killed compose's
# staging folder, the compose lock. A copy for a test takes the newsletter's sources only.
NOT_SOURCES = shutil.ignore_patterns("build", "templates", "sent.json", ".build-*", ".compose-lock")


def _copy_project(dest: Path, source: Path, folder_name: str, edits: Mapping[str, str]) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "school.toml").write_text(_school_toml(edits), encoding="utf-8")
    shutil.copytree(REPO / "templates", dest / "templates")
    shutil.copytree(REPO / "assets", dest / "assets")
    folder = dest / "newsletters" / folder_name
    shutil.copytree(source, folder, ignore=NOT_SOURCES)
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
