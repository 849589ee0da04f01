"""Messages per second through the SMTP transport to a local aiosmtpd, with the rate cap off.

    python bench/bench_smtp.py [COUNT ...] [--runs N] [--json]    (default: 1000 10000, 1 run)

The sample newsletter is composed in a temporary folder; aiosmtpd runs in its own process (its Sink
handler accepts and discards), so the figures are the client's: rendering each person's copy, the SMTP
dialogue (MAIL, RCPT, DATA on one reused connection) and, in the "whole send" column, everything send.py
does around it: reading audiences.csv, planning against the ledger, and the ledger writes around every
batch (the same ``SendSession`` send.py uses). A real relay is far slower (and Microsoft 365 caps a mailbox at 30 a
minute), so this shows the tool is never the bottleneck.
"""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_send_compare import write_people  # noqa: E402
from benchlib import copy_project  # noqa: E402

from mailroom.audience.lists import Recipient  # noqa: E402
from mailroom.compose.build import load_build  # noqa: E402
from mailroom.send.dispatch import make_message, make_version  # noqa: E402
from mailroom.send.transports.base import Batch  # noqa: E402
from mailroom.send.transports.mime import MimeTemplate  # noqa: E402
from mailroom.send.transports.smtp import SmtpTransport  # noqa: E402
from mailroom.settings import load_settings  # noqa: E402
from mailroom.workflows.compose import compose_newsletter  # noqa: E402
from mailroom.workflows.send import SendSession  # noqa: E402

SLUG = "2024-11-08-online-safety"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_sink(port: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen([sys.executable, "-m", "aiosmtpd", "-n", "-c", "aiosmtpd.handlers.Sink",
                               "-l", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return server
        except OSError:
            time.sleep(0.05)
    server.kill()
    raise SystemExit("aiosmtpd did not start")


def project(folder: Path) -> Path:
    copy_project(folder)
    compose_newsletter(load_settings(folder, environ={}), folder / "newsletters" / SLUG)
    return folder


def people(count: int) -> list[Recipient]:
    return [Recipient(f"parent{i:06d}@example.org", f"parent{i:06d}@example.org", f"First{i}", f"Last{i}",
                      "parents", i + 2) for i in range(count)]


def main(counts: list[int], runs: int = 1, as_json: bool = False) -> None:
    figures: dict[str, dict[str, list[float]]] = {}
    port = free_port()
    server = start_sink(port)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = project(Path(tmp) / "project")
            settings = load_settings(root, environ={"MAILROOM_TRANSPORT": "smtp", "SMTP_HOST": "127.0.0.1",
                                                    "SMTP_PORT": str(port), "SMTP_SECURITY": "none"})
            smtp = dataclasses.replace(settings.smtp, messages_per_minute=0)
            settings = dataclasses.replace(settings, smtp=smtp)
            build = load_build(root / "newsletters" / SLUG, root=root)
            version = make_version(build, settings, "parents")
            _mid, sample = MimeTemplate.build(version).render(make_message(people(1)[0], "x" * 16, settings))
            print(f"SMTP transport to aiosmtpd (Sink, separate process) on 127.0.0.1, cap off; "
                  f"{len(sample) / 1024:.0f} KB per message (HTML, text and inline images)")
            print(f"{'messages':>9}  {'transport only':>16}  {'whole send':>14}  connections")
            for count, run in ((c, r) for c in counts for r in range(runs)):
                recipients = people(count)
                # transport alone: batches handed straight over
                transport = SmtpTransport(settings)
                messages = [make_message(p, f"{i:016x}", settings) for i, p in enumerate(recipients)]
                start = time.perf_counter()
                with transport:
                    for first in range(0, count, transport.max_batch_size):
                        chunk = tuple(messages[first:first + transport.max_batch_size])
                        result = transport.send_batch(Batch(first, version, chunk))
                        assert len(result.message_ids) == len(chunk), result.errors
                alone = time.perf_counter() - start
                # the whole send, as send.py makes it: audiences.csv, the plan, a real SQLite ledger
                audiences = write_people(Path(tmp) / f"audiences-{count}.csv", count)
                run_settings = dataclasses.replace(settings, db_path=Path(tmp) / f"ledger-{count}-{run}.sqlite3")
                transport2 = SmtpTransport(run_settings)
                start = time.perf_counter()
                with SendSession(run_settings, build.newsletter_dir, ["parents"], transport=transport2) as session:
                    # a fresh ledger each run, on purpose: start again despite sent.json
                    result = session.send_live(session.plan_live(audiences_file=audiences), untested=True,
                                               start_again=True)
                whole = time.perf_counter() - start
                assert result.complete and result.report.sent == count, result.report
                print(f"{count:>9,}  {count / alone:>10,.0f} msg/s  {count / whole:>8,.0f} msg/s  "
                      f"{transport.connections}/{transport2.connections}")
                figure = figures.setdefault(str(count), {"transport_only": [], "whole_send": []})
                figure["transport_only"].append(count / alone)
                figure["whole_send"].append(count / whole)
    finally:
        server.terminate()
        server.wait(10)
    if as_json:  # for bench/run_all.py
        from benchlib import emit, stats

        emit({"name": "smtp", "message_kb": len(sample) / 1024,
              "sizes": {c: {k: stats(v) for k, v in f.items()} for c, f in figures.items()}}, True)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("counts", nargs="*", type=int, default=[1000, 10000])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line at the end")
    args = parser.parse_args()
    main(args.counts, args.runs, args.json)
