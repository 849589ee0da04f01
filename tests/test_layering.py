"""mailroom's modules import each other without cycles, counting imports inside functions too.

A cycle hidden in a function works until someone moves the import to the top of the file; keeping
the graph acyclic keeps the stages (compose -> checks -> send -> events) readable in one direction.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mailroom

PACKAGE_DIR = Path(mailroom.__file__).resolve().parent


def module_name(path: Path, package_dir: Path = PACKAGE_DIR) -> str:
    parts = path.relative_to(package_dir.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package_dir: Path = PACKAGE_DIR) -> dict[str, set[str]]:
    """Module -> the mailroom modules it imports anywhere in its source (top level or in functions)."""
    paths = {module_name(path, package_dir): path for path in sorted(package_dir.rglob("*.py"))}
    graph: dict[str, set[str]] = {name: set() for name in paths}
    for name, path in paths.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: resolve against this module's package
                    package = name.split(".") if is_package else name.split(".")[:-1]
                    package = package[:len(package) - (node.level - 1)]
                    base = ".".join([*package, base] if base else package)
                # "from a.b import c" imports the module a.b.c when there is one, else names in a.b.
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in paths else base
                           for alias in node.names]
            graph[name].update(target for target in targets if target in paths and target != name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as [a, b, ..., a], or [] when the graph is acyclic."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(node: str) -> list[str]:
        path.append(node)
        on_path.add(node)
        for target in sorted(graph.get(node, ())):
            if target in on_path:
                return [*path[path.index(target):], target]
            if target not in done:
                cycle = visit(target)
                if cycle:
                    return cycle
        on_path.discard(path.pop())
        done.add(node)
        return []

    for start in sorted(graph):
        if start not in done:
            cycle = visit(start)
            if cycle:
                return cycle
    return []


def test_find_cycle_reports_a_cycle_and_accepts_a_tree() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_the_graph_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    package = tmp_path / "mailroom"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "one.py").write_text("def f():\n    from mailroom.sub import two\n")
    (package / "sub" / "two.py").write_text("from .one import f\nimport json\n")
    graph = import_graph(package)
    assert graph["mailroom.sub.one"] == {"mailroom.sub.two"} and graph["mailroom.sub.two"] == {"mailroom.sub.one"}
    assert find_cycle(graph) == ["mailroom.sub.one", "mailroom.sub.two", "mailroom.sub.one"]


def test_the_real_graph_is_read() -> None:
    graph = import_graph()
    assert "mailroom.tokens" in graph["mailroom.send.personalize"]
    assert "mailroom.send.transports.smtp" in graph["mailroom.send.transports"]  # imported inside a function


def test_mailroom_has_no_import_cycles() -> None:
    assert find_cycle(import_graph()) == []
