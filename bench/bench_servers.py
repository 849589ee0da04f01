"""How the two servers hold up (prints figures; not a test).

    python bench/bench_servers.py [--posters 32] [--events 10000] [--idle 3000] [--slow 16]

- the Event Webhook under parallel signed POSTs: resets, failures, events stored, time;
- a slowloris against the webhook, with the production deadline: when each slow client is cut off,
  and how long a normal POST waits meanwhile;
- the preview server with thousands of idle connections: threads before and during, and whether the
  page still loads.
Everything runs on 127.0.0.1; idle and slow clients run in a child process, as an attacker's would.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mailroom.servers.live_preview import PreviewServer, Watcher
from mailroom.servers.webhook import HEADER_DEADLINE_SECONDS, WORKERS
from tests.projects import make_project
from tests.sendgrid_events import Signer, event, post, running_server

_SLOW_CLIENT = """
import socket, sys, time
port, count = int(sys.argv[1]), int(sys.argv[2])
socks = [socket.create_connection(("127.0.0.1", port), timeout=60) for _ in range(count)]
began = time.monotonic()
cut = [None] * count
head = b"POST /events HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nX-Slow: "
for s in socks:
    s.sendall(head)
for tick in range(600):  # one header byte per client per 100 ms (the headers never end), at most 60 s
    for i, s in enumerate(socks):
        if cut[i] is None:
            try:
                s.sendall(b"a")
            except OSError:
                cut[i] = time.monotonic() - began
    if all(c is not None for c in cut):
        break
    time.sleep(0.1)
print(" ".join("%.1f" % c if c is not None else "never" for c in cut), flush=True)
"""

_IDLE_CLIENT = """
import socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
held = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(count)]
print("open", flush=True)
sys.stdin.read()
"""


def parallel_posters(posters: int, events: int) -> None:
    signer = Signer()
    per_post = 100
    bodies = [json.dumps([event("delivered", f"ev-{n}", recipient_id=f"r-{n}")
                          for n in range(start, min(events, start + per_post))])
              for start in range(0, events, per_post)]
    failures: list[str] = []
    with tempfile.TemporaryDirectory() as tmp, running_server(Path(tmp) / "db.sqlite3", signer.public_key) as server:
        barrier = threading.Barrier(posters)

        def poster(mine: list[str]) -> None:
            barrier.wait()
            for body in mine:
                try:
                    if post(server, body, signer.headers(body)).status != 200:
                        failures.append("status")
                except (ConnectionError, http.client.HTTPException, OSError) as exc:
                    failures.append(type(exc).__name__)

        threads = [threading.Thread(target=poster, args=(bodies[i::posters],)) for i in range(posters)]
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        took = time.perf_counter() - began
        with sqlite3.connect(Path(tmp) / "db.sqlite3") as conn:
            stored = conn.execute("SELECT COUNT(DISTINCT sg_event_id) FROM events").fetchone()[0]
        workers = server.threads_in_use
    resets = sum(1 for f in failures if f in ("ConnectionResetError", "RemoteDisconnected", "BrokenPipeError"))
    print(f"webhook: {posters} parallel posters, {len(bodies)} POSTs, {events} events in {took:.2f} s "
          f"({events / took:,.0f} events/s); resets {resets}, other failures {len(failures) - resets}; "
          f"stored {stored} distinct events; worker threads {workers}")


def slowloris(slow: int) -> None:
    signer = Signer()
    with tempfile.TemporaryDirectory() as tmp, running_server(Path(tmp) / "db.sqlite3", signer.public_key) as server:
        port = server.server_address[1]
        client = subprocess.Popen([sys.executable, "-c", _SLOW_CLIENT, str(port), str(slow)],
                                  stdout=subprocess.PIPE, text=True)
        time.sleep(1.0)  # the slow clients are connected and trickling
        body = json.dumps([event("delivered", "ev-fast")])
        began = time.perf_counter()
        status = post(server, body, signer.headers(body)).status
        waited = time.perf_counter() - began
        cut = client.communicate(timeout=120)[0].split()
    times = sorted(float(c) for c in cut if c != "never")
    print(f"slowloris: {slow} clients dribbling headers (1 byte per 100 ms) at {WORKERS} workers; header "
          f"deadline {HEADER_DEADLINE_SECONDS:g} s; cut off after {times[0]:.1f}-{times[-1]:.1f} s "
          f"({len(cut) - len(times)} never); a normal POST meanwhile: {status} in {waited:.2f} s")


def idle_preview(idle: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_project(Path(tmp) / "project") / "newsletters" / "2024-11-08-online-safety"
        watcher = Watcher(folder, folder.parent.parent, environ={})
        watcher.compose()
        server = PreviewServer(watcher, 0)
        server.start_in_background()
        port = server.httpd.server_address[1]
        before = threading.active_count()
        client = subprocess.Popen([sys.executable, "-c", _IDLE_CLIENT, str(port), str(idle)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert client.stdout is not None and client.stdout.readline().strip() == "open"
        began = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            status = sock.recv(64).split(b" ")[1].decode()
        took = time.perf_counter() - began
        during = threading.active_count()
        client.communicate(timeout=60)
        server.shutdown()
    print(f"preview: {idle} idle connections; threads before {before}, during {during}; the page: {status} "
          f"in {took * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posters", type=int, default=32)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--idle", type=int, default=3_000)
    parser.add_argument("--slow", type=int, default=16)
    args = parser.parse_args()
    parallel_posters(args.posters, args.events)
    idle_preview(args.idle)
    slowloris(args.slow)


if __name__ == "__main__":
    main()
