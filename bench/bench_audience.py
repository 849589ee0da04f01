"""How long load_audience takes, and how much memory it needs, for 10,000 and 100,000 rows, from CSV and
from the same rows in an Excel workbook (.xlsx, read with openpyxl in read-only mode).

Target: 100,000 CSV rows in under 2 seconds. Run: python bench/bench_audience.py [--runs N] [--json]
(--json: one JSON line at the end for bench/run_all.py, with every run's time).
The generated files look like a real export: mixed case, some people on both lists, a few unsubscribed,
duplicated and invalid rows, quoted names with commas, and names with accents.
"""

from __future__ import annotations

import json
import random
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mailroom.audience.lists import load_audience  # noqa: E402
from mailroom.settings import load_settings  # noqa: E402

FIRST = ["Amelia", "Rahul", "Grace", "Tom", "Siobhan", "Wei", "Fatima", "Zoë", "Seán", "Marta", "Kwame", "Priya"]
LAST = ["Hughes", "Patel", "Okafor", "Fletcher", "Murphy", "Chen", "Begum", "Richardson", "Ó Conchúir", "Nowak"]
DOMAINS = ["example.org", "example.com", "mail.example.org", "oakfield.example.org"]


def write_file(path: Path, rows: int, seed: int = 1) -> None:
    """A CSV of ``rows`` people: 5% on both lists, 2% unsubscribed, 1% duplicated, 0.5% invalid."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write("email,first_name,last_name,lists,status,notes\r\n")
        for i in range(rows):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            roll = rng.random()
            if roll < 0.005:
                email = f"{first.lower()}.{i}@example"  # no dot in the domain: invalid
            elif roll < 0.015 and i:
                email = f"Person.{i - 1}@{DOMAINS[(i - 1) % len(DOMAINS)]}".upper()  # same as the previous row
            else:
                email = f"person.{i}@{DOMAINS[i % len(DOMAINS)]}"
            lists = "parents;staff" if rng.random() < 0.05 else ("staff" if rng.random() < 0.1 else "parents")
            status = "unsubscribed" if rng.random() < 0.02 else ("subscribed" if rng.random() < 0.5 else "")
            name = f'"{last}, Jr"' if rng.random() < 0.01 else last
            handle.write(f"{email},{first},{name},{lists},{status},Year {rng.randint(1, 6)}\r\n")


def write_workbook(csv_path: Path, path: Path) -> None:
    """The same rows as an .xlsx, written as Excel would store them (openpyxl's streaming writer)."""
    import csv

    import openpyxl

    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("Contacts")
    with csv_path.open(encoding="utf-8", newline="") as handle:
        for row in csv.reader(handle):
            sheet.append(row)
    book.save(path)


def measure(path: Path, rows: int, runs: int = 3, as_json: bool = False) -> None:
    """Time and memory of one load, in a fresh process so one size's memory doesn't colour the next."""
    settings = load_settings(ROOT, environ={})
    load_audience(ROOT / "audiences.csv", settings, ["staff"])  # warm up imports and caches
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(runs):  # the best of three by default: other work on the machine only ever adds time
        started = time.perf_counter()
        plan = load_audience(path, settings, ["staff", "parents"])
        times.append(time.perf_counter() - started)
        del plan
    rss = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) / 1024  # ru_maxrss is in KB on Linux
    # tracemalloc slows Python down, so the figure users see is the plain run above.
    tracemalloc.start()
    started = time.perf_counter()
    plan = load_audience(path, settings, ["staff", "parents"])
    traced = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    size = path.stat().st_size / 1e6
    kind = "xlsx" if path.suffix == ".xlsx" else "csv"
    if as_json:
        print(json.dumps({"rows": rows, "kind": kind, "mb": size, "times": times, "traced_peak_mb": peak / 1e6,
                          "grew_mb": rss, "receive": len(plan.recipients), "left_out": len(plan.left_out)}))
        return
    print(f"{rows:>7,} rows, {kind:<4} ({size:4.1f} MB file): {min(times):5.2f} s (slowest of 3: {max(times):4.2f} s); "
          f"peak memory {peak / 1e6:5.1f} MB "
          f"(tracemalloc, {traced:4.2f} s under it), process grew {rss:5.1f} MB; "
          f"{len(plan.recipients):,} receive, {len(plan.left_out):,} left out, {len(plan.problems()):,} problems")


def main() -> None:
    if len(sys.argv) >= 4 and sys.argv[1] == "--measure":
        measure(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:] == ["--json"])
        return
    args = sys.argv[1:]
    as_json = "--json" in args
    runs = int(args[args.index("--runs") + 1]) if "--runs" in args else 3
    sizes = []
    with tempfile.TemporaryDirectory() as folder:
        for rows in (10_000, 100_000):
            path = Path(folder) / f"audiences-{rows}.csv"
            write_file(path, rows)
            workbook = path.with_suffix(".xlsx")
            write_workbook(path, workbook)
            for each in (path, workbook):
                done = subprocess.run([sys.executable, __file__, "--measure", str(each), str(rows), str(runs),
                                       *(["--json"] if as_json else [])], check=True, capture_output=as_json,
                                      text=True)
                if as_json:
                    sizes.append(json.loads(done.stdout.strip().splitlines()[-1]))
    if as_json:
        from benchlib import emit, stats

        for figure in sizes:
            figure["seconds"] = stats(figure.pop("times"))
        emit({"name": "audiences", "sizes": sizes}, True)


if __name__ == "__main__":
    main()
