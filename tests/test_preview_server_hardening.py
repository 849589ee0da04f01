"""The preview server is for this computer only: foreign Host headers get 403, idle connections hold no
thread and time out, and the threads stay bounded however many connections are opened (127.0.0.1)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailroom.servers.live_preview import PREVIEW_WORKERS, PreviewServer, Watcher

IDLE = 3000

# Opens the idle connections from another process, as an attacker's page would: in this process the
# test's own loop would compete with the server for the interpreter lock and slow the accepts.
_IDLE_CLIENT = """
import socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(count)]
print("open", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def server(sample_folder: Path) -> Iterator[PreviewServer]:
    watcher = Watcher(sample_folder, sample_folder.parent.parent, environ={})
    watcher.compose()
    preview = PreviewServer(watcher, 0, idle_timeout=0.5)
    preview.start_in_background()
    yield preview
    preview.shutdown()


def request(server: PreviewServer, host: str | None, path: str = "/") -> tuple[int, bytes]:
    port = server.httpd.server_address[1]
    head = f"GET {path} HTTP/1.1\r\n" + (f"Host: {host}\r\n" if host is not None else "") + "\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head.encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.partition(b"\r\n\r\n")[2]


def test_only_its_own_address_is_answered(server: PreviewServer) -> None:
    port = server.httpd.server_address[1]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}"):
        status, body = request(server, host)
        assert status == 200 and b"<html" in body.lower(), host
    for host in ("attacker.example", f"attacker.example:{port}", f"127.0.0.1.attacker.example:{port}",
                 "127.0.0.1", f"localhost:{port + 1}", f"127.0.0.1:{port}@attacker.example", "", None):
        for path in ("/", "/__version", "/manifest.json"):
            status, body = request(server, host, path)
            assert status == 403 and b"Newsletter" not in body and b"version" not in body, (host, path)


def test_3000_idle_connections_do_not_make_3000_threads_and_the_page_still_loads(server: PreviewServer) -> None:
    port = server.httpd.server_address[1]
    before = threading.active_count()
    client = subprocess.Popen([sys.executable, "-c", _IDLE_CLIENT, str(port), str(IDLE)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert client.stdout is not None and client.stdout.readline().strip() == "open"
        status, _body = request(server, f"127.0.0.1:{port}")
        during = threading.active_count()
    finally:
        client.communicate(timeout=30)
    assert status == 200
    assert during - before <= PREVIEW_WORKERS, (before, during)
    assert server.httpd.threads_in_use <= PREVIEW_WORKERS


def test_an_idle_connection_is_closed_after_the_timeout(server: PreviewServer) -> None:
    port = server.httpd.server_address[1]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        began = time.monotonic()
        assert sock.recv(1) == b""
        took = time.monotonic() - began
    assert 0.3 <= took < 3.0
