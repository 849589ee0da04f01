"""Messages per second into the local outbox (one .eml per person), for 1,000 and 10,000 people.

``python send.py newsletters/<slug> --to parents --yes --untested`` with the default outbox transport, timed as
a whole process (start-up included, as the office sees it), a fresh ledger and outbox each run.
Target: at least 1,000 messages per second.

Run: python bench/bench_outbox.py [--runs N] [--json]
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench_send_compare import timed_process, write_people
from benchlib import ROOT, SAMPLE_SLUG, arguments, copy_project, emit, stats

sys.path.insert(0, str(ROOT))

from mailroom.settings import load_settings
from mailroom.workflows.compose import compose_newsletter

SIZES = (1_000, 10_000)


def main() -> None:
    args = arguments(__doc__.splitlines()[0], runs=3)
    result: dict[str, Any] = {"name": "outbox", "sizes": {}}
    with tempfile.TemporaryDirectory(prefix="mailroom-bench-outbox-") as tmp:
        project = copy_project(Path(tmp) / "project")
        compose_newsletter(load_settings(project, environ={}), project / "newsletters" / SAMPLE_SLUG)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MAILROOM_", "SENDGRID_", "SMTP_"))}
        for size in SIZES:
            people = write_people(Path(tmp) / f"audiences-{size}.csv", size)
            times, peaks = [], []
            for run in range(args.runs):
                outbox, db = Path(tmp) / f"outbox-{run}", Path(tmp) / f"ledger-{size}-{run}.sqlite3"
                run_env = {**env, "MAILROOM_TRANSPORT": "outbox", "MAILROOM_OUTBOX": str(outbox),
                           "MAILROOM_DB": str(db)}
                elapsed, peak, code, _cpu = timed_process(
                    [str(ROOT / "send.py"), f"newsletters/{SAMPLE_SLUG}", "--to", "parents", "--yes", "--untested",
                    "--start-again",  # a fresh ledger each run, on purpose
                    "--audiences", str(people)], project, run_env, Path(tmp) / "send.log")
                written = sum(1 for _ in outbox.rglob("*.eml"))
                if code != 0 or written != size:
                    raise SystemExit(f"outbox send of {size} failed (exit {code}, {written} files):\n"
                                     f"{(Path(tmp) / 'send.log').read_text()[-2000:]}")
                times.append(elapsed)
                peaks.append(peak)
                shutil.rmtree(outbox)
                for leftover in Path(tmp).glob(f"ledger-{size}-{run}.sqlite3*"):
                    leftover.unlink()
            rates = [size / t for t in times]
            result["sizes"][str(size)] = {"seconds": stats(times), "per_second": stats(rates),
                                          "peak_rss_mb": stats(peaks)}
            if not args.json:
                print(f"outbox {size:>6,}: {stats(times)['median']:6.2f} s, {stats(rates)['median']:7.0f} messages/s "
                      f"(min {stats(rates)['min']:.0f}, max {stats(rates)['max']:.0f}), "
                      f"peak RSS {stats(peaks)['median']:.1f} MB")
    emit(result, args.json)


if __name__ == "__main__":
    main()
