"""The send's CPU work per person as instructions counted by valgrind (callgrind), which does not drift.

On a shared or virtual machine the CPU's speed changes from minute to minute (here a fixed pure-Python
loop took from 0.75 s to 1.4 s within the same hour), so CPU seconds from ``bench_send_compare.py`` can only
be compared run against run. Instructions executed are the same every run. This sends the sample newsletter
to 1,000 and then 10,000 people through the SendGrid transport to the local stand-in, each under callgrind,
and prints:

- the instructions each further person costs (the difference of the two runs over 9,000 people);
- the fixed cost of a send (start-up, the build's checks), the rest of the 1,000-person run;
- what that makes per person at 100,000 people.

It takes about a minute (callgrind runs Python some 50 times slower). Needs valgrind (Debian: ``valgrind``).
Usage: python bench/bench_send_instructions.py [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_send_compare import API_KEY, StandIn, write_people
from benchlib import ROOT, SAMPLE_SLUG, copy_project

SIZES = (1_000, 10_000)


def instructions(root: Path, project: Path, people: Path, standin: StandIn, ledger: Path) -> int:
    """Instructions of one send.py run of ``root`` (a checkout) under callgrind."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MAILROOM_", "SENDGRID_", "SMTP_", "PYTHONDONTWRITEBYTECODE"))}
    env.update({"MAILROOM_TRANSPORT": "sendgrid", "SENDGRID_API_KEY": API_KEY, "SENDGRID_API_HOST": standin.url,
                "MAILROOM_OUTBOX": str(ledger.parent / "outbox"), "MAILROOM_DB": str(ledger)})
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, str(root / "send.py"),
         f"newsletters/{SAMPLE_SLUG}", "--to", "parents", "--yes", "--untested", "--start-again",
         "--audiences", str(people)], cwd=project, env=env, capture_output=True, text=True, check=False)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"the send under callgrind failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind); nothing was measured")
    root = ROOT
    # Compiled modules first, so neither run pays for compiling them (the send's machine has them too).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(root / "mailroom")], check=True,
                   env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"})
    from mailroom.settings import load_settings
    from mailroom.workflows.compose import compose_newsletter

    with tempfile.TemporaryDirectory(prefix="mailroom-bench-instr-") as tmp:
        project = copy_project(Path(tmp) / "project")
        compose_newsletter(load_settings(project, environ={}), project / "newsletters" / SAMPLE_SLUG)
        standin = StandIn(0)
        try:
            counts = {size: instructions(root, project, write_people(Path(tmp) / f"people-{size}.csv", size),
                                         standin, Path(tmp) / f"ledger-{size}.sqlite3") for size in SIZES}
        finally:
            standin.close()
    small, large = SIZES
    per_person = (counts[large] - counts[small]) / (large - small)
    fixed = counts[small] - small * per_person
    at_100k = fixed / 100_000 + per_person
    result = {"name": "send_instructions", "instructions": counts,
              "per_person": round(per_person), "fixed": round(fixed), "per_person_at_100000": round(at_100k)}
    print(f"each further person: {per_person:,.0f} instructions; fixed cost of a send: {fixed / 1e9:.2f} billion; "
          f"per person at 100,000: {at_100k:,.0f}")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
