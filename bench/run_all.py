"""Run every benchmark on this machine and write bench/RESULTS.md: one command, figures anyone can reproduce.

    python bench/run_all.py            (about 10 minutes on 2 cores)
    python bench/run_all.py --quick    (fewer runs and sizes, for trying it out)

Each bench script runs in its own process with ``--json``; this collects what they print and writes the
machine, the date, every figure as the median of several runs with its min and max, and the ratios.
Nothing here asserts a time: a slow machine gets slower figures, not a failure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
LATENCY_MS = 20
RAW = BENCH / "out" / "results.json"  # the last run's figures (git-ignored), for --report-only


def machine() -> dict[str, str]:
    """CPU, cores, memory, Python, OS, node: what a reader needs to compare their figures with these."""
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    else:
        cpu = platform.processor() or cpu
    ram = "unknown"
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        kib = int(meminfo.read_text().split("MemTotal:")[1].split()[0])
        ram = f"{kib / 1024 / 1024:.1f} GiB"
    os_name = platform.platform()
    release = Path("/etc/os-release")
    if release.exists():
        for line in release.read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = f"{line.split('=', 1)[1].strip(chr(34))} ({platform.system()} {platform.release()})"
    node = shutil.which("node")
    node_version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False).stdout.strip() \
        if node else "not installed"
    return {"CPU": cpu, "Cores": str(os.cpu_count()), "Memory": ram,
            "Python": f"{platform.python_version()} ({platform.python_implementation()})", "OS": os_name,
            "Node": node_version}


def run_step(name: str, script: str, args: list[str], log: list[str]) -> dict[str, Any] | None:
    """Run one bench script with --json; its figures, or None (with the reason in ``log``)."""
    path = BENCH / script
    if not path.exists():
        log.append(f"{name}: skipped, {script} is not in bench/ on this branch")
        return None
    print(f"-- {name}: {script} {' '.join(args)}", flush=True)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(path), "--json", *args], cwd=ROOT, capture_output=True, text=True,
                          check=False)
    print(f"   {time.perf_counter() - started:.0f} s", flush=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        log.append(f"{name}: failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()[-400:]}")
        return None
    try:
        return json.loads(lines[-1])
    except ValueError:
        log.append(f"{name}: its last line was not JSON: {lines[-1][:200]}")
        return None


def run_printing_step(name: str, script: str, args: list[str], log: list[str]) -> str | None:
    """Run a bench script that prints its figures (no --json); its output as text, or None."""
    print(f"-- {name}: {script} {' '.join(args)}", flush=True)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(BENCH / script), *args], cwd=ROOT, capture_output=True, text=True,
                          check=False)
    print(f"   {time.perf_counter() - started:.0f} s", flush=True)
    if done.returncode != 0:
        log.append(f"{name}: failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()[-400:]}")
        return None
    return done.stdout.strip()


# --- formatting -------------------------------------------------------------------------------------------

def secs(figure: dict[str, Any] | None, digits: int = 3) -> str:
    if not figure:
        return "–"
    return (f"{figure['median']:.{digits}f} s ({figure['min']:.{digits}f}–{figure['max']:.{digits}f}, "
            f"{len(figure['runs'])} runs)")


def plain(figure: dict[str, Any] | None, unit: str, digits: int = 0) -> str:
    if not figure:
        return "–"
    return (f"{figure['median']:,.{digits}f} {unit} ({figure['min']:,.{digits}f}–{figure['max']:,.{digits}f}, "
            f"{len(figure['runs'])} runs)")


def ratio(slow: dict[str, Any] | None, fast: dict[str, Any] | None) -> float | None:
    if not slow or not fast or not fast["median"]:
        return None
    return slow["median"] / fast["median"]


def outbox_marginal(outbox: dict[str, Any]) -> float | None:
    """Messages per second once running: the extra people over the extra time between the two sizes."""
    sizes = outbox["sizes"]
    if "1000" not in sizes or "10000" not in sizes:
        return None
    extra = sizes["10000"]["seconds"]["median"] - sizes["1000"]["seconds"]["median"]
    return 9000 / extra if extra > 0 else None


def verdict(ok: bool | None) -> str:
    return "–" if ok is None else ("met" if ok else "**not met**")


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


# --- the report ---------------------------------------------------------------------------------------------

def report(results: dict[str, Any], info: dict[str, str], when: str, load: list[str], log: list[str],
           command: str) -> str:
    out: list[str] = ["# Benchmark results", ""]
    out += [f"Written by `{command}` on {when}. Every figure is the median of several runs, with the min and max "
            "in brackets and the number of runs. Times are wall-clock on this machine: rerun the command to "
            "compare with yours. No test asserts any of these.", ""]
    out += ["## Machine", ""]
    out += table(["", ""], [[k, v] for k, v in info.items()]
                 + [["Load average (1 min) at start / end", f"{load[0]} / {load[1]}"]])
    out += ["", "A load average above the number of cores means other work shared the machine during the run "
            "and the figures are slower and more spread out than on an idle one.", ""]

    compose, send, latency = results.get("compose"), results.get("send"), results.get("send_latency")
    outbox, smtp, audiences = results.get("outbox"), results.get("smtp"), results.get("audiences")
    out += ["## Headline figures", ""]
    heads: list[list[str]] = []
    if compose and compose.get("reference_cold"):
        r = ratio(compose["mailroom_cold"], compose["reference_cold"])
        heads.append(["Compose, cold: mailroom / npm mjml + juice", f"{r:.2f} (mailroom takes {r:.0%} of the "
                      f"reference's time, {1 / r:.1f}× faster)", "–"])
        r = ratio(compose["mailroom_warm"], compose["reference_warm"])
        heads.append(["Compose, warm: whole mailroom compose / mjml2html + juice in node", f"{r:.2f}", "–"])
        r = ratio(compose["mailroom_render_warm"], compose["reference_warm"])
        heads.append(["Compose, warm, like for like: mailroom's render / mjml2html + juice in node", f"{r:.2f}", "–"])
    if send:
        for size in ("1000", "10000"):
            r = ratio(send["naive"].get(size, {}).get("seconds"), send["mailroom"].get(size, {}).get("seconds"))
            if r:
                heads.append([f"Send {int(size):,} via SendGrid: naive / mailroom (stand-in on loopback)",
                              f"{r:.1f}×", f"≥ 30×: {verdict(r >= 30)}"])
    if latency:
        r = ratio(latency["naive"].get("1000", {}).get("seconds"), latency["mailroom"].get("1000", {}).get("seconds"))
        if r:
            heads.append([f"Send 1,000 via SendGrid: naive / mailroom, {latency['latency_ms']:.0f} ms round trip",
                          f"{r:.1f}×", f"≥ 30×: {verdict(r >= 30)}"])
    if send and "100000" in send["mailroom"]:
        big = send["mailroom"]["100000"]
        heads.append(["Send 100,000: requests per 1,000 people", f"{big['requests'] / 100:.1f}",
                      f"1: {verdict(big['requests'] <= 100)}"])
        if "cpu_us_per_person" in big:
            cpu = big["cpu_us_per_person"]["median"]
            heads.append(["Send 100,000: the sender's own CPU per person", f"{cpu:.1f} µs",
                          f"≤ 20 µs: {verdict(cpu <= 20)}"])
        heads.append(["Send 100,000: peak RSS", f"{big['peak_rss_mb']['median']:.1f} MB",
                      f"< 150 MB: {verdict(big['peak_rss_mb']['median'] < 150)}"])
        if "10000" in send["mailroom"]:
            r = ratio(big["peak_rss_mb"], send["mailroom"]["10000"]["peak_rss_mb"])
            heads.append(["Send: peak RSS at 100,000 / at 10,000", f"{r:.2f}", f"≤ 1.3: {verdict(r <= 1.3)}"])
    if outbox:
        for size, figure in outbox["sizes"].items():
            rate = figure["per_second"]["median"]
            heads.append([f"Outbox, {int(size):,} people (whole process)", f"{rate:,.0f} messages/s",
                          f"≥ 1,000/s: {verdict(rate >= 1000)}"])
        marginal = outbox_marginal(outbox)
        if marginal:
            heads.append(["Outbox, start-up excluded", f"{marginal:,.0f} messages/s",
                          f"≥ 1,000/s: {verdict(marginal >= 1000)}"])
    if audiences:
        for figure in audiences["sizes"]:
            if figure["rows"] == 100_000 and figure.get("kind", "csv") == "csv":  # the target is about CSV
                heads.append(["Audiences: load 100,000 rows from CSV", f"{figure['seconds']['median']:.2f} s",
                              f"< 2 s: {verdict(figure['seconds']['median'] < 2)}"])
            elif figure["rows"] == 100_000:
                heads.append([f"Audiences: load 100,000 rows from {figure['kind']} (openpyxl reads the workbook)",
                              f"{figure['seconds']['median']:.2f} s", "–"])
    out += table(["What", "Figure", "Target"], heads) if heads else ["(no figures: see the notes below)"]
    out.append("")

    if compose:
        out += ["## 1. Compose the sample newsletter", ""]
        out += [f"`newsletters/{'2024-11-08-online-safety'}`, every version ({', '.join(compose['versions'])}). "
                "mailroom cold is `python compose.py newsletters/<slug>` as a new process in a temporary copy of the "
                "project (Markdown, templates, MJML, inlined CSS, tracked links, text parts, preview, manifest). "
                "The reference is what a web developer would run on the same email: the npm `mjml` command line, "
                "then `juice` to inline the CSS, once per version, fed the very MJML our templates produce "
                "(`Renderer.mjml`); it does less than mailroom (no Markdown, no text part, no link tracking).", ""]
        rows = [["mailroom, cold process (all versions)", secs(compose["mailroom_cold"])],
                ["mailroom, warm: `compose_newsletter` again in one process", secs(compose["mailroom_warm"], 4)],
                ["mailroom, warm: only the render (MJML → inlined HTML, text) of all versions",
                 secs(compose["mailroom_render_warm"], 4)]]
        if compose.get("reference_cold"):
            ref = compose["reference"]
            rows += [[f"reference, cold: `mjml` {ref['mjml']} + `juice` {ref['juice']} CLIs (node {ref['node']}), "
                      "all versions", secs(compose["reference_cold"])]]
            rows += [[f"reference, cold, `{a}` only", secs(f)]
                     for a, f in compose["reference_cold_per_version"].items()]
            rows += [["reference, warm: `mjml2html` + `juice` in one node process, all versions",
                      secs(compose["reference_warm"], 4)]]
        out += table(["What", "Wall time"], rows)
        if compose.get("reference_cold"):
            r = ratio(compose["mailroom_cold"], compose["reference_cold"])
            w = ratio(compose["mailroom_warm"], compose["reference_warm"])
            lk = ratio(compose["mailroom_render_warm"], compose["reference_warm"])
            out += ["", f"**mailroom / reference: {r:.2f} cold, {w:.2f} warm, {lk:.2f} warm render only** (below 1 "
                    "means mailroom is faster; the whole warm compose also writes the build, the text parts, the "
                    "preview and the manifest, and checks every version). "
                    "HTML sizes, mailroom vs reference: " + ", ".join(
                        f"{a} {compose['html_bytes']['mailroom'][a] / 1024:.0f} KB vs "
                        f"{compose['html_bytes']['reference'][a] / 1024:.0f} KB" for a in compose["versions"]) + "."]
        for note in compose.get("notes", []):
            out += ["", f"Note: {note}."]
        out.append("")

    if send:
        out += ["## 2. Send through the SendGrid transport", ""]
        out += ["`python send.py newsletters/<slug> --to parents --yes --untested` with "
                "`MAILROOM_TRANSPORT=sendgrid` and `SENDGRID_API_HOST` pointing at the stand-in "
                "(`tests/sendgrid_standin.py`, run in its own process, checking every body against SendGrid's "
                "schema and limits), a fresh ledger each run. Wall time is the "
                "whole process (start-up, reading audiences.csv, ledger, requests). Peak RSS is the sender's own "
                "(VmHWM). The naive way (`bench/naive_send.py`): for each row fill in the whole HTML and make one "
                "request with the sendgrid library's quick-start pattern `Mail(from, to, subject, html)` + "
                "`SendGridAPIClient(key).send`, against the same stand-in.", ""]
        rows = []
        for size, figure in send["mailroom"].items():
            n = int(size)
            rows.append([f"{n:,}", "mailroom", secs(figure["seconds"], 2), f"{figure['requests']:,}",
                         plain(figure["peak_rss_mb"], "MB", 1), "–"])
            naive = send["naive"].get(size)
            if naive:
                r = ratio(naive["seconds"], figure["seconds"])
                rows.append([f"{n:,}", "naive", secs(naive["seconds"], 2), f"{naive['requests']:,}",
                             plain(naive["peak_rss_mb"], "MB", 1), f"**{r:.1f}×**"])
        if latency:
            for size, figure in latency["mailroom"].items():
                rows.append([f"{int(size):,}", f"mailroom, {latency['latency_ms']:.0f} ms round trip",
                             secs(figure["seconds"], 2), f"{figure['requests']:,}",
                             plain(figure["peak_rss_mb"], "MB", 1), "–"])
                naive = latency["naive"].get(size)
                if naive:
                    r = ratio(naive["seconds"], figure["seconds"])
                    rows.append([f"{int(size):,}", f"naive, {latency['latency_ms']:.0f} ms round trip",
                                 secs(naive["seconds"], 2), f"{naive['requests']:,}",
                                 plain(naive["peak_rss_mb"], "MB", 1), f"**{r:.1f}×**"])
        out += table(["People", "How", "Wall time", "Requests", "Peak RSS", "naive / mailroom"], rows)
        out += ["", "On loopback a request costs the naive script only a few milliseconds, so the ratio there is the "
                "least favourable to mailroom; the largest share of mailroom's wall time at 10,000 and 100,000 is "
                "the stand-in checking 1,000-person bodies against the JSON schema (see the profile). Real SendGrid is "
                "a TLS round trip across the Atlantic per request, which the naive way pays once per person: the "
                f"{LATENCY_MS} ms row adds that wait (the stand-in sleeps before answering) and is still kind to it.",
                ""]

    if outbox or smtp:
        out += ["## 3. Outbox and SMTP", ""]
        rows = []
        if outbox:
            for size, figure in outbox["sizes"].items():
                rows.append([f"{int(size):,}", "outbox (`send.py`, whole process)",
                             plain(figure["per_second"], "msg/s"), secs(figure["seconds"], 2),
                             plain(figure["peak_rss_mb"], "MB", 1)])
            marginal = outbox_marginal(outbox)
            if marginal:
                rows.append(["9,000 more", "outbox, start-up excluded: (10,000 − 1,000) / (time at 10,000 − at 1,000)",
                             f"{marginal:,.0f} msg/s", "–", "–"])
        if smtp:
            for size, figure in smtp["sizes"].items():
                rows.append([f"{int(size):,}", "SMTP to aiosmtpd, transport alone",
                             plain(figure["transport_only"], "msg/s"), "–", "–"])
                rows.append([f"{int(size):,}", "SMTP to aiosmtpd, the whole send (audiences.csv, plan, ledger)",
                             plain(figure["whole_send"], "msg/s"), "–", "–"])
        out += table(["People", "Transport", "Messages per second", "Wall time", "Peak RSS"], rows)
        out += ["", "Outbox: one complete .eml per person written atomically (temporary name, then rename). "
                "SMTP (`bench/bench_smtp.py`): rate cap off, one reused connection, aiosmtpd's Sink handler in its "
                + (f"own process; about {smtp['message_kb']:.0f} KB per message. " if smtp else "own process. ")
                + "A real relay is the limit there: Microsoft 365 allows 30 messages a minute.", ""]

    if audiences:
        out += ["## 4. Audiences", ""]
        rows = [[f"{f['rows']:,}", f"{f.get('kind', 'csv')}, {f['mb']:.1f} MB", secs(f["seconds"], 3),
                 f"{f['traced_peak_mb']:.1f} MB", f"{f['receive']:,}", f"{f['left_out']:,}"]
                for f in audiences["sizes"]]
        out += table(["Rows", "File", "load_audience", "Peak Python memory (tracemalloc)", "Receive", "Left out"], rows)
        out += ["", "Generated exports like a real one: mixed case, people on both lists, some unsubscribed, "
                "duplicated and invalid rows, quoted names with commas, accents (`bench/bench_audience.py`).", ""]

    refresh = results.get("preview_refresh")
    if refresh:
        out += ["## Live preview", "",
                f"A save reaches the page in the browser in {secs(refresh['save_to_browser'])} "
                f"(the server has the new page after {secs(refresh['save_to_served_page'])}; the page asks every "
                f"{refresh['browser_poll_seconds']:.2f} s). Target: a median under {refresh['target_seconds']} s: "
                f"{verdict(refresh['met'])} (`bench/bench_preview_refresh.py`).", ""]

    links = results.get("link_lines")
    if links:
        out += ["## Checks with many links", ""]
        rows = [[f"{f['links']:,}", f"{f['lookup_s']:.2f} s",
                 f"{f['check_version_s']:.2f} s" if "check_version_s" in f else "not run"] for f in links["sizes"]]
        out += table(["Links", "Source lines found", "All checks"], rows)
        out += ["", f"Finding the newsletter.md line of every link and text run (`bench/bench_link_lines.py`). "
                f"Target: 10,000 links under {links['target_seconds']:g} s: {verdict(links['met'])}.", ""]

    translate = results.get("translate")
    if translate:
        out += ["## Translation", "",
                f"Composing the sample with {len(translate['languages'])} languages "
                f"({', '.join(translate['languages'])}) through the DeepL stand-in "
                f"(`bench/bench_translate.py`, {translate['latency_ms']:g} ms a request), as a new process:", ""]
        out += table(["What", "Wall time", "Requests"], [
            ["English only", secs(translate["english_only_s"], 2), "–"],
            ["+ languages, empty cache", secs(translate["cold_s"], 2),
             f"{translate['cold_requests']} ({translate['cold_characters']:,} characters)"],
            ["+ languages, cached", secs(translate["cached_s"], 2), str(translate["cached_requests"])]])
        out.append("")

    servers = results.get("servers")
    if servers:
        out += ["## The two servers under load and bad input", "",
                "`bench/bench_servers.py` (the Event Webhook under parallel signed POSTs and a slowloris; the "
                "preview server with thousands of idle connections), as it printed:", "", "```", servers, "```", ""]

    profile = results.get("profile")
    if profile:
        out += ["## 5. Profiles of the slowest stage of each", "",
                "`bench/profile_stages.py`: each stage once under cProfile (which slows Python code, so read the "
                "shares, not the seconds). The functions with the most time of their own:", ""]
        for name, summary in profile["stages"].items():
            out += [f"### {name} ({summary['total']:.2f} s under cProfile)", ""]
            out += table(["Own time", "Cumulative", "Calls", "Function"],
                         [[f"{r['own']:.3f} s", f"{r['cumulative']:.3f} s", f"{r['calls']:,}", f"`{r['function']}`"]
                          for r in summary["by_own_time"]])
            out.append("")
        out += [FINDINGS, ""]

    if log:
        out += ["## Notes from this run", ""] + [f"- {line}" for line in log] + [""]
    return "\n".join(out)


FINDINGS = """### What the profiles pointed to, and what changed (each a separate commit saying so)

- **Outbox (and SMTP, which builds the same messages):** quoted-printable encoding of the whole ~60 KB HTML
  part and the text part for every person (`binascii.b2a_qp`) was the largest cost. Each version's body is
  now encoded once and only the person's values are encoded per message, between soft line breaks (the send
  branch arrived at the same design at the same time and its version was kept; the benchmark branch added
  breaking lines early so that none passes the 76 characters RFC 2045 allows). Next came the email
  package's header registry parsing `Message-ID`, `To` and `List-Unsubscribe` for every message: short
  plain ASCII values are now written directly, exactly as the registry would write them (tested against
  it). What is left is the file system (`open`, `write`, `rename` per message).
- **SMTP:** most of the time is waiting for aiosmtpd's replies (a Python server on the same two cores);
  the sender's own largest cost was dot-stuffing each ~67 KB message with a multiline regex, now
  `bytes.replace` with the same rule (tested against the regex). A real relay is the limit anyway:
  Microsoft 365 allows 30 messages a minute.
- **SendGrid (2026-12-04):** after the wait for the stand-in's answers, the sender's own CPU went, in order:
  SQLite (drafting the plan, freezing it, reading each batch, the in-flight and sent records), the
  audience read, each person's JSON, and the `sendgrid` library formatting every 1 MB body into a debug
  log line even with logging off (4.4 ms a request). Changed: the body is handed over as bytes that format
  as their size; a batch's personalizations are written at once (one escape, one `%` for everyone); the
  usual audience row is taken in one step (the full checks decide everything else, tested to give the same
  plan); messages and ledger rows are tuples; batch rows are found by rowid; the index on state (rewritten
  on every state change) is gone and the batch index holds batched rows only. 100,000 people: about 70 µs
  of CPU a person before, about half that after; see `docs/benchmarks.md` for what is left.
- **Peak memory:** at 100,000 people the planner keeps each person as one packed string (not an object
  with a dozen fields) and the frozen plan lives in the SQLite ledger, so the send's peak grows by about a
  quarter from 10,000 to 100,000 people (target: at most 1.3×).
- **Compose, cold:** mostly imports (regular-expression compilation and module loading in the libraries;
  `python -X importtime` puts premailer, which brings requests and cssutils, at about a quarter of the cold
  run); the render itself is tens of milliseconds (see the warm figures). Nothing changed: the cold compose
  is already a fraction of the reference's time.
- **Audiences:** the per-row checks in `mailroom/audience/lists.py`, streamed from the file (CSV or .xlsx);
  100,000 rows load well inside the 2-second target."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs and no 100,000-person send")
    parser.add_argument("--output", type=Path, default=BENCH / "RESULTS.md")
    parser.add_argument("--report-only", action="store_true",
                        help=f"write the report again from the last run's figures ({RAW.relative_to(ROOT)})")
    args = parser.parse_args()
    if args.report_only:
        raw = json.loads(RAW.read_text(encoding="utf-8"))
        args.output.write_text(report(**raw) + "\n", encoding="utf-8")
        print(f"Wrote {args.output}")
        return
    quick = args.quick
    started = time.perf_counter()
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_start = f"{os.getloadavg()[0]:.2f}"
    log: list[str] = []
    steps: list[tuple[str, str, list[str]]] = [
        ("compose", "bench_compose.py", ["--runs", "2" if quick else "7"]),
        ("send", "bench_send_compare.py", ["--runs", "1" if quick else "3", "--sizes",
                                           "1000,10000" if quick else "1000,10000,100000"]),
        ("send_latency", "bench_send_compare.py", ["--runs", "1", "--sizes", "1000", "--latency-ms",
                                                   str(LATENCY_MS)]),
        ("outbox", "bench_outbox.py", ["--runs", "1" if quick else "3"]),
        ("smtp", "bench_smtp.py", ["--runs", "1" if quick else "3"]),
        ("audiences", "bench_audience.py", ["--runs", "2" if quick else "5"]),
        ("preview_refresh", "bench_preview_refresh.py", ["--runs", "5" if quick else "12"]),
        ("link_lines", "bench_link_lines.py", ["--sizes", "1000,10000" if quick else "1000,10000,100000"]),
        ("translate", "bench_translate.py", ["--runs", "2" if quick else "5"]),
        ("profile", "profile_stages.py", ["--top", "8"]),
    ]
    results: dict[str, Any] = {name: run_step(name, script, extra, log) for name, script, extra in steps}
    results["servers"] = run_printing_step("servers", "bench_servers.py",
                                           ["--events", "2000", "--idle", "1000"] if quick else [], log)
    load_end = f"{os.getloadavg()[0]:.2f}"
    log.append(f"the whole run took {time.perf_counter() - started:.0f} s")
    command = "python bench/run_all.py" + (" --quick" if quick else "")
    raw = {"results": results, "info": machine(), "when": when, "load": [load_start, load_end], "log": log,
           "command": command}
    RAW.parent.mkdir(exist_ok=True)
    RAW.write_text(json.dumps(raw, indent=1), encoding="utf-8")
    text = report(**raw)
    args.output.write_text(text + "\n", encoding="utf-8")
    print(f"Wrote {args.output}")


if __name__ == "__main__":
    main()
