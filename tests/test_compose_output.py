"""What compose leaves and says: only the preview and the web copy are pointed at (the versions holding
each reader's placeholders are in build/versions/, named *.tokens.html), --open without a browser says so,
one compose at a time per newsletter, and nothing left behind by a compose that was killed."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mailroom.compose.build import load_build
from mailroom.workflows.compose import compose_lock
from tests.projects import REPO, compose_copy


def run_compose(project: Path, folder: Path, *args: str, env: dict[str, str] | None = None
                ) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    return subprocess.run([sys.executable, str(REPO / "compose.py"), f"newsletters/{folder.name}", *args],
                          cwd=project, env={**base, **(env or {})}, capture_output=True, text=True, timeout=60)


def test_compose_points_at_the_preview_and_the_web_copy_never_at_a_file_with_tokens(sample_folder: Path) -> None:
    result = run_compose(sample_folder.parent.parent, sample_folder)
    assert result.returncode == 0, result.stderr
    slug = sample_folder.name
    assert f"Preview in your browser: newsletters/{slug}/build/preview.html" in result.stdout
    assert f"Web copy, to publish on the school website: newsletters/{slug}/build/web.html" in result.stdout
    assert "tokens" not in result.stdout and "versions/" not in result.stdout
    build = load_build(sample_folder, sample_folder.parent.parent)
    for version in build.versions.values():  # the files send reads say what they hold
        assert version.html_path.name == f"{version.audience}.tokens.html"
        assert version.html_path.parent.name == "versions"
        assert "%%greeting%%" in version.html()
    for page in ("preview.html", "web.html"):
        assert "%%" not in (sample_folder / "build" / page).read_text(encoding="utf-8")


def test_open_without_a_browser_says_so_and_gives_the_full_path(sample_folder: Path, tmp_path: Path) -> None:
    no_browser = tmp_path / "no-browser"
    no_browser.write_text("#!/bin/sh\nexit 1\n")
    no_browser.chmod(0o755)
    result = run_compose(sample_folder.parent.parent, sample_folder, "--open", env={"BROWSER": str(no_browser)})
    assert result.returncode == 0, result.stderr
    preview = (sample_folder / "build" / "preview.html").resolve()
    assert ("Could not open a web browser on this computer. Open this file in your browser: "
            f"{preview}") in result.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="Windows locks a file in the folder (msvcrt), not the folder")
def test_compose_holds_a_lock_on_the_newsletter_folder(sample_folder: Path) -> None:
    """While one compose writes the build, another cannot take the folder's lock (so it waits)."""
    import fcntl

    def try_lock() -> bool:
        descriptor = os.open(sample_folder, os.O_RDONLY)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            assert exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
            return False
        finally:
            os.close(descriptor)

    with compose_lock(sample_folder):
        assert not try_lock()
    assert try_lock()


def test_two_composes_at_once_both_succeed(sample_folder: Path) -> None:
    project = sample_folder.parent.parent
    command = [sys.executable, str(REPO / "compose.py"), f"newsletters/{sample_folder.name}"]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    runs = [subprocess.Popen(command, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    for run in runs:
        out, err = run.communicate(timeout=60)
        assert run.returncode == 0, err
        assert "Composed" in out
    build = load_build(sample_folder, project)
    assert build.changed_sources() == []
    for version in build.versions.values():
        assert version.html_bytes == version.html_path.stat().st_size
    assert sorted(p.name for p in sample_folder.iterdir()) == ["build", "images", "newsletter.md"]


@pytest.mark.parametrize("leftover", [".build-k1ll3d", ".build-old-.build-k1ll3d"])
def test_a_killed_composes_folder_is_removed_by_the_next_compose(sample_folder: Path, leftover: str) -> None:
    """A compose killed part-way leaves its staging folder (or the old build it was swapping out)."""
    stale = sample_folder / leftover
    (stale / "versions").mkdir(parents=True)
    (stale / "versions" / "parents.tokens.html").write_text("half written", encoding="utf-8")
    compose_copy(sample_folder)
    assert sorted(p.name for p in sample_folder.iterdir()) == ["build", "images", "newsletter.md"]
