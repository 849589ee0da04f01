"""``-h`` works wherever ``--help`` does: compose.py, send.py and every ``python -m mailroom`` command."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from mailroom.cli import main
from tests.projects import REPO


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name)


@pytest.mark.parametrize("path", list(_commands(main)), ids=lambda p: " ".join(p) or "mailroom")
def test_every_mailroom_command_takes_dash_h(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*path, "-h"], prog_name="mailroom")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: mailroom {' '.join(path)}".rstrip())


@pytest.mark.parametrize("script", ["compose.py", "send.py"])
def test_the_two_scripts_take_dash_h(script: str) -> None:
    done = subprocess.run([sys.executable, script, "-h"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"Usage: {script} [OPTIONS] NEWSLETTER_DIR")
