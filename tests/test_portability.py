"""School offices run Windows: no mailroom module may need a POSIX-only module just to be imported.

Two checks that catch different mistakes: reading every module's source for an import of a
POSIX-only module that no platform check (or ImportError fallback) guards, and importing every
module in a fresh interpreter where those modules cannot be imported at all, as on Windows.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import mailroom

PACKAGE_DIR = Path(mailroom.__file__).resolve().parent
REPO = PACKAGE_DIR.parent
POSIX_ONLY = frozenset({"fcntl", "termios", "tty", "pty", "pwd", "grp", "resource", "syslog", "posix", "crypt",
                        "spwd", "nis", "readline"})
_PLATFORM_NAMES = ("sys.platform", "os.name", "platform.system")
_IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError"}


def _guarded(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Whether ``node`` sits inside an ``if`` on the platform or a ``try`` that catches ImportError."""
    child, parent = node, parents.get(node)
    while parent is not None:
        if isinstance(parent, ast.If) and any(name in ast.unparse(parent.test) for name in _PLATFORM_NAMES):
            return True
        if isinstance(parent, ast.Try) and child in parent.body:
            caught = {ast.unparse(handler.type) for handler in parent.handlers if handler.type is not None}
            if any(name in text for text in caught for name in _IMPORT_ERRORS):
                return True
        child, parent = parent, parents.get(parent)
    return False


def unguarded_posix_imports(source: str) -> list[tuple[int, str]]:
    """(line, module) for each import of a POSIX-only module that nothing guards."""
    tree = ast.parse(source)
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            if name.partition(".")[0] in POSIX_ONLY and not _guarded(node, parents):
                found.append((node.lineno, name))
    return found


def test_the_checker_finds_unguarded_imports_and_accepts_guarded_ones() -> None:
    source = textwrap.dedent("""
        import fcntl
        from resource import getrusage
        def lock():
            import termios
        if sys.platform != "win32":
            import pwd
        if os.name == "nt":
            import msvcrt
        else:
            from grp import getgrnam
        try:
            import resource
        except ImportError:
            resource = None
        try:
            import tty
        except OSError:
            pass
    """)
    assert unguarded_posix_imports(source) == [(2, "fcntl"), (3, "resource"), (5, "termios"), (17, "tty")]


def test_no_mailroom_module_imports_a_posix_only_module_outside_a_platform_check() -> None:
    problems = [f"{path.relative_to(REPO)}:{line}: import {name}"
                for path in sorted(PACKAGE_DIR.rglob("*.py"))
                for line, name in unguarded_posix_imports(path.read_text(encoding="utf-8"))]
    assert problems == []


_IMPORT_ALL_WITHOUT_POSIX = """
import importlib, importlib.abc, pkgutil, sys

BLOCKED = set(sys.argv[1].split(","))


class Windowsish(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked, as on Windows)", name=name)
        return None


for name in list(sys.modules):
    if name.partition(".")[0] in BLOCKED:
        del sys.modules[name]
sys.meta_path.insert(0, Windowsish())

import mailroom
failed = []
for module in pkgutil.walk_packages(mailroom.__path__, "mailroom."):
    if module.name.endswith(".__main__"):  # runs the command line when imported
        continue
    try:
        importlib.import_module(module.name)
    except ImportError as exc:
        failed.append(f"{module.name}: {exc}")
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


@pytest.mark.parametrize("blocked", [["fcntl"], ["fcntl", "termios", "pwd", "resource", "grp"]])
def test_every_mailroom_module_imports_where_posix_only_modules_do_not_exist(blocked: list[str]) -> None:
    result = subprocess.run([sys.executable, "-c", _IMPORT_ALL_WITHOUT_POSIX, ",".join(blocked)],
                            capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
