"""Small helpers shared by the bench scripts: repeat and summarise timings, a throwaway project copy, memory.

Every bench script prints figures for people by default and, with ``--json``, one JSON object on its
last line of output that ``bench/run_all.py`` collects into RESULTS.md.
"""

from __future__ import annotations

import argparse
import compileall
import json
import resource
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_SLUG = "2024-11-08-online-safety"
_PROJECT_SKIP = shutil.ignore_patterns(".git", ".venv", "build", ".build-*", "outbox", ".node", "node_modules",
                                       "__pycache__", "*.sqlite3*", "uncertain-*.csv", "sent.json", ".env",
                                       ".pytest_cache", ".ruff_cache", "bench", "tests")


def arguments(description: str, runs: int) -> argparse.Namespace:
    """--json (machine-readable last line) and --runs (how many times each figure is measured)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object at the end")
    parser.add_argument("--runs", type=int, default=runs, help=f"runs per figure (default {runs})")
    return parser.parse_args()


def stats(values: list[float]) -> dict[str, Any]:
    """Median, min and max of several runs, with the runs themselves."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "runs": [round(v, 6) for v in values]}


def repeat(function: Callable[[], object], runs: int) -> list[float]:
    """Wall time in seconds of ``runs`` calls of ``function``."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return times


def copy_project(target: Path) -> Path:
    """The project (code, settings, templates, sample newsletter) without builds, outbox, git or secrets."""
    shutil.copytree(ROOT, target, ignore=_PROJECT_SKIP, dirs_exist_ok=True)
    # Compiled now, as an installed copy is: otherwise the first timed run would also compile every module.
    compileall.compile_dir(target / "mailroom", quiet=1)
    return target


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def emit(result: dict[str, Any], as_json: bool) -> None:
    """The JSON line run_all.py reads (people get the printed lines instead)."""
    if as_json:
        sys.stdout.flush()
        print(json.dumps(result))
