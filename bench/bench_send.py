"""How fast and how lean is a send? Prints figures; not a test.

1. send.py through the SendGrid transport to the local stand-in (tests/sendgrid_standin.py), for 10,000
   and 100,000 people: wall time, requests made, and the sender's peak memory (its own VmHWM, see peak_memory.py).
   Targets: one request per 1000 people; peak memory under 150 MB at 100,000 and at most 1.3x the
   figure at 10,000 (people are streamed in batches, never all rendered at once).
2. The outbox transport: messages written per second for 1,000 and 10,000 people (target >= 1000/s),
   and send.py end to end into the outbox for 10,000.

    python bench/bench_send.py [--quick]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mailroom.build import load_build  # noqa: E402
from mailroom.dispatch import make_message, make_version  # noqa: E402
from mailroom.transports.base import Batch  # noqa: E402
from mailroom.transports.outbox import OutboxTransport  # noqa: E402
from tests.send_project import (  # noqa: E402
    API_KEY,
    SAMPLE,
    environ,
    make_project,
    many_people,
    settings_for,
    write_audiences,
)
from tests.sendgrid_standin import SendGridStandIn  # noqa: E402


def run_send(folder: Path, env: dict[str, str]) -> tuple[float, float, int]:
    """(seconds, peak RSS in MB, exit status) of one send.py run in its own process."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("MAILROOM_", "SENDGRID_", "SMTP_"))}
    full_env.update(env)
    started = time.perf_counter()
    result = subprocess.run(measured(folder / "peak.txt", ROOT / "send.py", f"newsletters/{SAMPLE}", "--to",
                                     "parents", "--yes", "--untested"),
                            cwd=folder, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - started
    if result.returncode:
        print(result.stderr, file=sys.stderr)
    return seconds, peak_mb(folder / "peak.txt"), result.returncode


def measured(peak_file: Path, script: Path, *args: str) -> list[str]:
    """A command running ``script`` that leaves its own peak memory in ``peak_file``."""
    return [sys.executable, str(ROOT / "bench" / "peak_memory.py"), str(peak_file), str(script), *args]


def peak_mb(peak_file: Path) -> float:
    return int(peak_file.read_text()) / 1024


def bench_sendgrid(work: Path, sizes: list[int]) -> None:
    print("SendGrid transport -> local stand-in (bodies checked against the schema)")
    print(f"{'people':>8} {'seconds':>8} {'requests':>9} {'per 1000':>9} {'peak MB':>8} {'msgs/s':>8}")
    peaks = {}
    for size in sizes:
        folder = work / f"sg-{size}"
        shutil.copytree(work / "project", folder)
        write_audiences(folder / "audiences.csv", many_people(size))
        with SendGridStandIn() as standin:
            standin.keep_bodies = False
            seconds, peak, status = run_send(folder, environ(folder, transport="sendgrid", host=standin.url,
                                                             key=standin.api_key))
            assert status == 0, f"send.py exited {status}"
            assert len(standin.received) == size and set(standin.received.values()) == {1}
            assert not standin.violations, standin.violations[:3]
            requests = standin.request_count
        peaks[size] = peak
        print(f"{size:>8} {seconds:>8.1f} {requests:>9} {requests / (size / 1000):>9.2f} {peak:>8.1f} "
              f"{size / seconds:>8.0f}")
    if len(sizes) > 1:
        small, large = peaks[sizes[0]], peaks[sizes[-1]]
        print(f"peak memory {sizes[-1]:,} / {sizes[0]:,}: {large / small:.2f}x (target <= 1.3x, and < 150 MB)")


class StreamedPeople(Sequence):
    """People made on demand (as a streaming audience reader would yield them): nothing held."""

    class Person:
        __slots__ = ("audience", "email", "first_name", "key", "last_name")

        def __init__(self, i: int) -> None:
            self.email = self.key = f"parent{i:06d}@example.org"
            self.first_name, self.last_name, self.audience = f"Pat{i}", f"Example{i}", "parents"

    def __init__(self, count: int) -> None:
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index):  # type: ignore[no-untyped-def, override]
        if isinstance(index, slice):
            return [self.Person(i) for i in range(*index.indices(self.count))]
        if not 0 <= index < self.count:
            raise IndexError(index)
        return self.Person(index)


def dispatch_child(folder: Path, url: str, count: int) -> None:
    """The send path after the audience is read (plan, ledger, batches, SendGrid) over streamed people."""
    from mailroom.dispatch import Dispatcher, live_batches, plan_send
    from mailroom.ledger import Ledger
    from mailroom.transports.sendgrid import SendGridTransport

    settings = settings_for(folder, transport="sendgrid", host=url, key=API_KEY)
    build = load_build(folder / "newsletters" / SAMPLE, root=folder)
    people = StreamedPeople(count)
    transport = SendGridTransport(settings)
    with Ledger(settings.db_path) as ledger:
        plan = plan_send(build, people, ["parents"], ledger)
        ledger.plan_pending(build.slug, ((p.key, p.audience) for p in people))
        with transport:
            report = Dispatcher(transport, ledger, newsletter=build.slug, build_hash=build.build_hash).run(
                live_batches(build, settings, people, ["parents"], ledger, transport.max_batch_size))
    assert report.sent == plan.total == count, (report.sent, plan.total)


def bench_dispatch(work: Path, sizes: list[int]) -> None:
    print("\nThe send path alone (plan + ledger + batches + SendGrid), people streamed instead of read from CSV")
    print(f"{'people':>8} {'seconds':>8} {'requests':>9} {'peak MB':>8}")
    peaks = {}
    for size in sizes:
        folder = work / f"dispatch-{size}"
        shutil.copytree(work / "project", folder)
        with SendGridStandIn(api_key=API_KEY) as standin:
            standin.keep_bodies = False
            started = time.perf_counter()
            status = subprocess.run(measured(folder / "peak.txt", Path(__file__), "--dispatch-child", str(folder),
                                             standin.url, str(size))).returncode
            seconds = time.perf_counter() - started
            assert status == 0 and len(standin.received) == size and not standin.violations
            peaks[size] = peak_mb(folder / "peak.txt")
            print(f"{size:>8} {seconds:>8.1f} {standin.request_count:>9} {peaks[size]:>8.1f}")
    print(f"peak memory {sizes[-1]:,} / {sizes[0]:,}: {peaks[sizes[-1]] / peaks[sizes[0]]:.2f}x")


def bench_outbox(work: Path, sizes: list[int]) -> None:
    print("\nOutbox transport (in-process: render + write one .eml per person)")
    folder = work / "project"
    settings = settings_for(folder)
    build = load_build(folder / "newsletters" / SAMPLE, root=folder)
    version = make_version(build, settings, "parents")

    class Person:
        def __init__(self, email: str, first: str, last: str) -> None:
            self.email, self.key, self.first_name, self.last_name, self.audience = (
                email, email, first, last, "parents")

    for size in sizes:
        outbox = work / f"outbox-{size}"
        transport = OutboxTransport(outbox)
        people = [Person(e, f, last) for e, f, last, _ in many_people(size)]
        started = time.perf_counter()
        for start in range(0, size, transport.max_batch_size):
            chunk = people[start:start + transport.max_batch_size]
            messages = tuple(make_message(p, f"r{start + i:015d}", settings) for i, p in enumerate(chunk))
            transport.send_batch(Batch(batch_id=start, version=version, messages=messages))
        seconds = time.perf_counter() - started
        written = len(list((outbox / SAMPLE).glob("*.eml")))
        print(f"{size:>8} people: {seconds:6.2f} s, {size / seconds:7.0f} messages/s, {written} files")

    size = sizes[-1]
    folder = work / "outbox-e2e"
    shutil.copytree(work / "project", folder)
    write_audiences(folder / "audiences.csv", many_people(size))
    seconds, peak, status = run_send(folder, environ(folder))
    assert status == 0
    print(f"send.py into the outbox, {size:,} people: {seconds:.1f} s ({size / seconds:.0f}/s including "
          f"reading audiences.csv and the ledger), peak {peak:.1f} MB")


def main() -> None:
    if sys.argv[1:2] == ["--dispatch-child"]:
        dispatch_child(Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
        return
    quick = "--quick" in sys.argv
    with tempfile.TemporaryDirectory(prefix="mailroom-bench-") as tmp:
        work = Path(tmp)
        make_project(work / "project")
        sizes = [1000, 10_000] if quick else [10_000, 100_000]
        bench_sendgrid(work, sizes)
        bench_dispatch(work, sizes)
        bench_outbox(work, [1000, 10_000])


if __name__ == "__main__":
    main()
