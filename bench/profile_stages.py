"""cProfile of the slowest stage of each benchmark, summarised as the functions that take the time.

Stages: compose as a cold process, sending 10,000 people through SendGrid (to the stand-in), 10,000 into the
outbox, 10,000 through SMTP (to a local aiosmtpd, when the SMTP transport exists), loading 100,000 audience
rows. Each runs once under cProfile (which slows Python code down, so read shares, not seconds).

Run: python bench/profile_stages.py [--json] [--top N]
"""

from __future__ import annotations

import argparse
import io
import os
import pstats
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench_audience import write_file
from bench_send_compare import API_KEY, StandIn, write_people
from benchlib import ROOT, SAMPLE_SLUG, copy_project, emit

sys.path.insert(0, str(ROOT))

from mailroom.settings import load_settings
from mailroom.workflows.compose import compose_newsletter


def summarise(profile: Path, top: int) -> dict[str, Any]:
    """Total time, the functions with the most time of their own, and mailroom's own functions by cumulative time."""
    stats = pstats.Stats(str(profile), stream=io.StringIO())
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = []
    for (filename, line, name), (_cc, calls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": _where(filename, line, name), "calls": calls, "own": tottime, "cumulative": cumtime,
                     "mailroom": "/mailroom/" in filename})
    own = sorted(rows, key=lambda r: r["own"], reverse=True)[:top]
    ours = sorted((r for r in rows if r["mailroom"]), key=lambda r: r["cumulative"], reverse=True)[:top]
    return {"total": total, "by_own_time": own, "mailroom_by_cumulative": ours}


def _where(filename: str, line: int, name: str) -> str:
    if filename == "~":
        return name  # a built-in
    path = Path(filename)
    for anchor in ("mailroom", "site-packages", "python3.11", "python3.12", "python3.13"):
        if anchor in path.parts:
            index = path.parts.index(anchor)
            return f"{'/'.join(path.parts[index + (anchor != 'mailroom'):])}:{line}({name})"
    return f"{path.name}:{line}({name})"


def profiled(script: list[str], cwd: Path, env: dict[str, str], out: Path, expect: str = "") -> Path:
    """Run ``script`` under cProfile; ``expect`` must appear in its output (cProfile swallows the exit status)."""
    done = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(out), *script], cwd=cwd, env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0 or expect not in done.stdout:
        raise SystemExit(f"profiling {' '.join(script)} failed:\n{done.stdout[-1500:]}\n{done.stderr[-1500:]}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args()
    stages: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="mailroom-profile-") as tmp_name:
        tmp = Path(tmp_name)
        project = copy_project(tmp / "project")
        toml = project / "school.toml"  # the SMTP rate cap off, as in bench_smtp.py (before compose: it is a source)
        toml.write_text(re.sub(r"(?m)^messages_per_minute = \d+", "messages_per_minute = 0", toml.read_text()))
        compose_newsletter(load_settings(project, environ={}), project / "newsletters" / SAMPLE_SLUG)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MAILROOM_", "SENDGRID_", "SMTP_"))}
        people = write_people(tmp / "people-10000.csv", 10_000)
        send = [str(ROOT / "send.py"), f"newsletters/{SAMPLE_SLUG}", "--to", "parents", "--yes", "--untested",
                    "--start-again",  # a fresh ledger each run, on purpose
                    "--audiences", str(people)]

        stages["compose (cold process)"] = profiled(
            ["compose.py", f"newsletters/{SAMPLE_SLUG}"], project, env, tmp / "compose.prof", "Composed")

        standin = StandIn()
        try:
            stages["send 10,000 via SendGrid"] = profiled(send, project, {
                **env, "MAILROOM_TRANSPORT": "sendgrid", "SENDGRID_API_KEY": API_KEY, "SENDGRID_API_HOST": standin.url,
                "MAILROOM_DB": str(tmp / "sg.sqlite3")}, tmp / "sendgrid.prof", "Done: sent to 10000")
        finally:
            standin.close()

        stages["outbox 10,000"] = profiled(send, project, {
            **env, "MAILROOM_TRANSPORT": "outbox", "MAILROOM_OUTBOX": str(tmp / "outbox"),
            "MAILROOM_DB": str(tmp / "outbox.sqlite3")}, tmp / "outbox.prof", "Done: sent to 10000")

        if (ROOT / "mailroom" / "transports" / "smtp.py").exists() and (ROOT / "bench" / "bench_smtp.py").exists():
            from bench_smtp import free_port, start_sink

            port = free_port()
            server = start_sink(port)
            try:
                stages["SMTP 10,000"] = profiled(send, project, {
                    **env, "MAILROOM_TRANSPORT": "smtp", "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port),
                    "SMTP_SECURITY": "none", "MAILROOM_DB": str(tmp / "smtp.sqlite3")}, tmp / "smtp.prof",
                    "Done: sent to 10000")
            finally:
                server.terminate()
                server.wait(10)

        rows = tmp / "audiences-100000.csv"
        write_file(rows, 100_000)
        script = tmp / "load.py"
        script.write_text(
            "import sys\nfrom pathlib import Path\nsys.path.insert(0, sys.argv[1])\n"
            "from mailroom.audience.lists import load_audience\nfrom mailroom.settings import load_settings\n"
            "load_audience(Path(sys.argv[2]), load_settings(sys.argv[1], environ={}), ['staff', 'parents'])\n")
        stages["audiences 100,000 rows"] = profiled([str(script), str(ROOT), str(rows)], project, env,
                                                   tmp / "audience.prof")
        result = {"name": "profile", "stages": {name: summarise(path, args.top) for name, path in stages.items()}}

    if not args.json:
        for name, summary in result["stages"].items():
            print(f"\n== {name}: {summary['total']:.2f} s under cProfile")
            for row in summary["by_own_time"]:
                print(f"  {row['own']:7.3f} s own  {row['cumulative']:7.3f} s cum  {row['calls']:>8}  "
                      f"{row['function']}")
    emit(result, args.json)


if __name__ == "__main__":
    main()
