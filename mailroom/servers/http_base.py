"""An HTTP server that holds up under load and bad input: the base of both of mailroom's servers.

The standard library's ``ThreadingHTTPServer`` starts one thread per connection, waits forever for a
slow client and listens with a backlog of 5. Here instead:

- **A backlog** (1024) big enough for bursts (SendGrid posts in parallel): connections queue in the kernel
  instead of being reset.
- **A waiting room.** An accepted connection gets no thread until its first bytes arrive: one thread
  watches every idle connection (``selectors``) and closes those that stay silent past
  ``idle_timeout``. Idle connections therefore cost a file descriptor, not a thread; when more than
  ``max_waiting`` are open, the oldest silent one is closed to make room.
- **A bounded worker pool** (``max_workers`` threads) handles connections that have started talking;
  at most ``max_queued`` wait for a free worker, and beyond that new ones are closed (load shed).
- **A deadline per request**: the whole request (headers and body) must arrive within
  ``request_deadline`` seconds of a worker taking it, however slowly it trickles in (slowloris). The
  watcher shuts a connection past its deadline, which ends the worker's blocked read at once.
- **Only expected Host headers**, when ``allowed_hosts`` is set (the preview: DNS rebinding).
- **Quiet failures**: a client that disappears or sends garbage is logged in one line, never as a
  traceback (``handle_error``).

Handlers answer one request per connection (HTTP/1.0 style), so a worker never waits on a kept-alive
connection.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import selectors
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

_WAKE = b"w"


class HardenedHTTPServer(HTTPServer):
    """``HTTPServer`` with a waiting room for idle connections, a worker pool and per-request deadlines."""

    request_queue_size = 1024  # the listen backlog (the standard library's 5 drops and resets bursts)
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: Callable[..., BaseHTTPRequestHandler], *,
                 max_workers: int = 8, max_waiting: int = 512, max_queued: int = 512,
                 idle_timeout: float = 10.0, request_deadline: float = 15.0,
                 log: Callable[[str], None] | None = None) -> None:
        super().__init__(address, handler)
        self.max_workers = max_workers
        self.max_waiting = max_waiting
        self.max_queued = max_queued
        self.idle_timeout = idle_timeout
        self.request_deadline = request_deadline
        self.log = log or (lambda _message: None)
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="mailroom-http")
        self._watcher = _ConnectionWatcher(self)
        self._watcher.start()

    # socketserver calls this for every accepted connection, on the thread running serve_forever.
    def process_request(self, request: Any, client_address: Any) -> None:
        self._watcher.admit(request, client_address)

    @property
    def host_and_port(self) -> str:
        """``127.0.0.1:8025`` (``[::1]:8025`` for IPv6), as a browser writes it in the Host header."""
        host, port = self.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        return f"[{name}]:{port}" if ":" in name else f"{name}:{port}"

    def allowed_hosts(self) -> frozenset[str] | None:
        """Host header values to serve (lower case), or None for any. The preview overrides this."""
        return None

    def _work(self, request: socket.socket, client_address: Any) -> None:
        """On a pool thread: handle one request under its deadline, then close the connection."""
        self._watcher.start_deadline(request)
        try:
            request.settimeout(self.request_deadline)  # a backstop; the watcher's deadline is the rule
            self.finish_request(request, client_address)
        except Exception as exc:
            self.handle_error_quietly(exc)
        finally:
            self._watcher.end_deadline(request)
            self.shutdown_request(request)
            self._watcher.done()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """socketserver's hook (it prints a traceback): replaced by one line in the log."""
        self.log("a connection failed and was closed")

    def handle_error_quietly(self, exc: BaseException) -> None:
        if isinstance(exc, OSError | TimeoutError):
            self.log("a connection was closed before its request was complete")
        else:
            self.log(f"a request could not be handled ({type(exc).__name__}); it was closed")

    def server_close(self) -> None:
        self._watcher.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)
        super().server_close()

    @property
    def threads_in_use(self) -> int:
        """Worker threads started so far (never more than ``max_workers``)."""
        return len(self._pool._threads)


class _ConnectionWatcher(threading.Thread):
    """One thread: hands connections to the pool once they speak, and enforces idle and request deadlines."""

    def __init__(self, server: HardenedHTTPServer) -> None:
        super().__init__(name="mailroom-http-watcher", daemon=True)
        self.server = server
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._lock = threading.Lock()
        self._arrivals: list[tuple[socket.socket, Any]] = []
        self._waiting: OrderedDict[socket.socket, tuple[float, Any]] = OrderedDict()  # oldest first
        self._deadlines: list[tuple[float, int, socket.socket]] = []  # heap of active requests' deadlines
        self._active: dict[socket.socket, float] = {}
        self._queued = 0  # handed to the pool and not finished
        self._order = itertools.count()
        self._stopping = threading.Event()

    # --- called from other threads ------------------------------------------------------------------------

    def admit(self, sock: socket.socket, address: Any) -> None:
        with self._lock:
            self._arrivals.append((sock, address))
        self._wake()

    def start_deadline(self, sock: socket.socket) -> None:
        deadline = time.monotonic() + self.server.request_deadline
        with self._lock:
            self._active[sock] = deadline
            heapq.heappush(self._deadlines, (deadline, next(self._order), sock))
        self._wake()

    def end_deadline(self, sock: socket.socket) -> None:
        with self._lock:
            self._active.pop(sock, None)

    def done(self) -> None:
        with self._lock:
            self._queued -= 1

    def stop(self) -> None:
        self._stopping.set()
        self._wake()
        self.join(timeout=5)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # the pipe is full (already woken) or closed (stopping)
            self._wake_w.send(_WAKE)

    # --- the watcher's own thread -----------------------------------------------------------------------

    def run(self) -> None:
        try:
            while not self._stopping.is_set():
                for key, _events in self._selector.select(timeout=self._next_timeout()):
                    if key.fileobj is self._wake_r:
                        self._drain_wake()
                    else:
                        self._speaking(key.fileobj)  # type: ignore[arg-type]
                self._take_arrivals()
                self._expire()
        finally:
            for sock in list(self._waiting):
                self._close(sock)
            self._selector.close()
            self._wake_r.close()
            self._wake_w.close()

    def _next_timeout(self) -> float:
        now = time.monotonic()
        soonest = now + 1.0
        with self._lock:
            if self._deadlines:
                soonest = min(soonest, self._deadlines[0][0])
        if self._waiting:
            first_arrival = next(iter(self._waiting.values()))[0]
            soonest = min(soonest, first_arrival + self.server.idle_timeout)
        return max(0.0, soonest - now)

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _take_arrivals(self) -> None:
        with self._lock:
            arrivals, self._arrivals = self._arrivals, []
        now = time.monotonic()
        for sock, address in arrivals:
            while len(self._waiting) >= self.server.max_waiting:
                oldest = next(iter(self._waiting))
                self._forget(oldest)
                self._close(oldest)
            try:
                self._selector.register(sock, selectors.EVENT_READ)
            except (ValueError, OSError):  # closed already
                self._close(sock)
                continue
            self._waiting[sock] = (now, address)

    def _speaking(self, sock: socket.socket) -> None:
        """The first bytes arrived: a worker takes the connection from here."""
        _arrived, address = self._forget(sock)
        with self._lock:
            full = self._queued >= self.server.max_workers + self.server.max_queued
            if not full:
                self._queued += 1
        if full:
            self.server.log("too many requests at once: one was turned away")
            self._close(sock)
            return
        try:
            self.server._pool.submit(self.server._work, sock, address)
        except RuntimeError:  # the pool is shut down: the server is stopping
            self.done()
            self._close(sock)

    def _forget(self, sock: socket.socket) -> tuple[float, Any]:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(sock)
        return self._waiting.pop(sock, (0.0, None))

    def _expire(self) -> None:
        now = time.monotonic()
        while self._waiting:
            sock, (arrived, _address) = next(iter(self._waiting.items()))
            if now - arrived < self.server.idle_timeout:
                break
            self._forget(sock)
            self._close(sock)
        overdue = []
        with self._lock:
            while self._deadlines and self._deadlines[0][0] <= now:
                deadline, _n, sock = heapq.heappop(self._deadlines)
                if self._active.get(sock) == deadline:
                    overdue.append(sock)
        for sock in overdue:
            self.server.log("a request took too long to arrive and was cut off")
            with contextlib.suppress(OSError):
                # Ends the worker's blocked read at once; the worker then closes the socket itself.
                sock.shutdown(socket.SHUT_RDWR)

    @staticmethod
    def _close(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.close()


class QuietHandler(BaseHTTPRequestHandler):
    """Shared manners of mailroom's handlers: one request per connection, Host checked, no traceback."""

    server: HardenedHTTPServer
    protocol_version = "HTTP/1.0"
    default_request_version = "HTTP/1.0"  # a garbled request line still gets a status line, not HTTP/0.9
    sys_version = ""

    def version_string(self) -> str:
        return self.server_version  # no Python version for a scanner to read

    def handle(self) -> None:
        # One request per connection: a worker never sits waiting on a kept-alive socket.
        self.close_connection = True
        self.handle_one_request()

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        allowed = self.server.allowed_hosts()
        hosts = self.headers.get_all("Host") or [""]
        if allowed is not None and (len(hosts) != 1 or hosts[0].strip().lower() not in allowed):
            # A page on another site that made its name resolve to 127.0.0.1 (DNS rebinding) sends its own
            # name here; the browser then treats our answers as that site's. Refuse them.
            self.send_error(403, "This server answers only to its own address")
            return False
        return True
