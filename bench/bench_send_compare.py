"""Send the sample newsletter through the SendGrid transport to a local stand-in, beside the naive approach.

- mailroom: ``python send.py newsletters/<slug> --to parents --yes --untested`` with MAILROOM_TRANSPORT=sendgrid
  and SENDGRID_API_HOST pointing at the stand-in (tests/sendgrid_standin.py, in its own process, which checks every
  body against SendGrid's schema), for 1,000, 10,000 and 100,000 people; a fresh ledger each run.
- naive: bench/naive_send.py, one fully filled-in message and one quick-start API request per person, for
  1,000 and 10,000 people against the same stand-in.
Each figure: wall time of the whole process, the sender's own CPU time per person (user + system of the send
process alone; the stand-in is another process), requests the stand-in received, the process's peak RSS.
Targets: one request per 1000 people; at least 30x the naive approach; CPU at most 20 µs per person at 100,000;
peak RSS under 150 MB at 100,000 and no more than 1.3x the 10,000 figure.

Run: python bench/bench_send_compare.py [--runs N] [--json] [--sizes 1000,10000,100000]
     [--latency-ms MS] (a round trip added to every answer; the default 0 is loopback, kinder to the naive way)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import ROOT, SAMPLE_SLUG, copy_project, emit, stats

sys.path.insert(0, str(ROOT))

from mailroom.compose.build import load_build
from mailroom.settings import load_settings
from mailroom.workflows.compose import compose_newsletter

API_KEY = "SG.bench-standin-key"
NAIVE_SIZES = (1_000, 10_000)


def write_people(path: Path, count: int) -> Path:
    """``count`` fictional parents, all on the parents list."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write("email,first_name,last_name,lists,status\n")
        for i in range(count):
            handle.write(f"parent{i:06d}@example.org,Pat{i},Example{i},parents,subscribed\n")
    return path


class StandIn:
    """The stand-in server process and its counters."""

    def __init__(self, delay: float = 0.0) -> None:
        self.process = subprocess.Popen([sys.executable, str(ROOT / "bench" / "standin_server.py"), API_KEY,
                                         str(delay)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout and self.process.stdin
        self.url = json.loads(self.process.stdout.readline())["url"]

    def ask(self, command: str) -> dict[str, Any]:
        assert self.process.stdout and self.process.stdin
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self) -> None:
        assert self.process.stdin
        self.process.stdin.close()
        self.process.wait(timeout=30)


def timed_process(script: list[str], cwd: Path, env: dict[str, str], log: Path) -> tuple[float, float, int, float]:
    """Wall seconds, peak RSS in MB, exit status and CPU seconds (of that process alone, via bench/peak.py)."""
    peak_file = log.with_suffix(".peak.json")
    with log.open("w") as output:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, str(ROOT / "bench" / "peak.py"), str(peak_file), *script], cwd=cwd,
                              env=env, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False)
        elapsed = time.perf_counter() - started
    measured = json.loads(peak_file.read_text())
    return elapsed, measured["peak_rss_mb"], done.returncode, measured["cpu_seconds"]


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (default 3)")
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--naive-runs", type=int, default=None, help="runs of the naive approach (default: --runs)")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="the stand-in waits this long before every answer, standing in for the network")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    naive_runs = args.naive_runs or args.runs
    result: dict[str, Any] = {"name": "send", "mailroom": {}, "naive": {}, "latency_ms": args.latency_ms}

    with tempfile.TemporaryDirectory(prefix="mailroom-bench-send-") as tmp:
        project = copy_project(Path(tmp) / "project")
        folder = project / "newsletters" / SAMPLE_SLUG
        settings = load_settings(project, environ={})
        compose_newsletter(settings, folder)
        build = load_build(folder, project)
        result["batch_size"] = settings.sendgrid.batch_size
        standin = StandIn(args.latency_ms / 1000)
        base_env = {k: v for k, v in os.environ.items() if not k.startswith(("MAILROOM_", "SENDGRID_", "SMTP_"))}
        base_env.update({"MAILROOM_TRANSPORT": "sendgrid", "SENDGRID_API_KEY": API_KEY,
                         "SENDGRID_API_HOST": standin.url, "MAILROOM_OUTBOX": str(Path(tmp) / "outbox")})
        try:
            for size in sizes:
                people = write_people(Path(tmp) / f"audiences-{size}.csv", size)
                times, peaks, requests, cpus = [], [], [], []
                for run in range(args.runs):
                    db = Path(tmp) / f"ledger-{size}-{run}.sqlite3"
                    env = {**base_env, "MAILROOM_DB": str(db)}
                    standin.ask("reset")
                    elapsed, peak, code, cpu = timed_process(
                        [str(ROOT / "send.py"), f"newsletters/{SAMPLE_SLUG}", "--to", "parents",
                         "--yes", "--untested", "--start-again",  # a fresh ledger each run, on purpose
                         "--audiences", str(people)], project, env, Path(tmp) / "send.log")
                    counts = standin.ask("stats")
                    if code != 0 or counts["delivered"] != size or counts["violation_count"]:
                        raise SystemExit(f"mailroom send of {size} failed (exit {code}, {counts}):\n"
                                         f"{(Path(tmp) / 'send.log').read_text()[-2000:]}")
                    times.append(elapsed)
                    peaks.append(peak)
                    cpus.append(cpu * 1e6 / size)
                    requests.append(counts["requests"])
                    for leftover in Path(tmp).glob(f"ledger-{size}-{run}.sqlite3*"):
                        leftover.unlink()
                result["mailroom"][str(size)] = {"seconds": stats(times), "peak_rss_mb": stats(peaks),
                                                 "cpu_us_per_person": stats(cpus),
                                                 "requests": max(requests), "people": size}
                if not args.json:
                    print(f"mailroom {size:>7,}: {stats(times)['median']:7.2f} s, CPU {stats(cpus)['median']:5.1f} "
                          f"µs/person, {max(requests)} requests, peak RSS {stats(peaks)['median']:.1f} MB")
                if size in NAIVE_SIZES:
                    times, peaks, requests, cpus = [], [], [], []
                    html = build.versions["parents"].html_path
                    sender = f"{settings.sender.name} <{settings.sender.email}>"
                    for _ in range(naive_runs):
                        standin.ask("reset")
                        elapsed, peak, code, cpu = timed_process(
                            [str(ROOT / "bench" / "naive_send.py"), str(html), str(people),
                             standin.url, build.subject, sender], project, base_env, Path(tmp) / "naive.log")
                        counts = standin.ask("stats")
                        if code != 0 or counts["delivered"] != size:
                            raise SystemExit(f"naive send of {size} failed (exit {code}, {counts}):\n"
                                             f"{(Path(tmp) / 'naive.log').read_text()[-2000:]}")
                        times.append(elapsed)
                        peaks.append(peak)
                        cpus.append(cpu * 1e6 / size)
                        requests.append(counts["requests"])
                    result["naive"][str(size)] = {"seconds": stats(times), "peak_rss_mb": stats(peaks),
                                                  "cpu_us_per_person": stats(cpus),
                                                  "requests": max(requests), "people": size}
                    if not args.json:
                        ratio = stats(times)["median"] / result["mailroom"][str(size)]["seconds"]["median"]
                        print(f"naive    {size:>7,}: {stats(times)['median']:7.2f} s, CPU {stats(cpus)['median']:5.0f} "
                              f"µs/person, {max(requests)} requests, "
                              f"peak RSS {stats(peaks)['median']:.1f} MB  ->  mailroom is {ratio:.1f}x faster")
        finally:
            standin.close()
    emit(result, args.json)


if __name__ == "__main__":
    main()
