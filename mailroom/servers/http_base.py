"""An HTTP server that holds up under load and bad input: the base of both of mailroom's servers.

The standard library's ``ThreadingHTTPServer`` starts one thread per connection, waits forever for a
slow client and listens with a backlog of 5. Here instead:

- **A backlog** (1024) big enough for bursts (SendGrid posts in parallel): connections queue in the
  kernel instead of being dropped or reset.
- **A waiting room for the headers.** An accepted connection gets no thread until its whole request
  head (request line and headers) has arrived: one thread (``selectors``) reads the heads of every
  waiting connection without blocking. A connection that sends nothing within ``idle_timeout``, or
  starts but does not finish its headers within ``header_deadline``, is closed. Idle connections and
  clients dribbling header bytes (slowloris) therefore cost a file descriptor, never a worker; when
  more than ``max_waiting`` are open, the oldest is closed to make room.
- **A bounded worker pool** (``max_workers`` threads) handles requests whose heads are complete; at
  most ``max_queued`` wait for a free worker, and beyond that new ones are closed (load shed).
- **A deadline for the body**: the rest of the request must arrive within ``request_deadline``
  seconds of a worker taking it, however slowly it trickles in. The watcher shuts a connection past
  its deadline, which ends the worker's blocked read at once.
- **Only expected Host headers**, when ``allowed_hosts`` is set (the preview: DNS rebinding).
- **Quiet failures**: a client that disappears or sends garbage is logged in one line, never as a
  traceback.

Handlers must derive from ``QuietHandler``: it answers one request per connection (so a worker never
waits on a kept-alive connection) and reads the head the watcher already received.
"""

from __future__ import annotations

import contextlib
import heapq
import io
import itertools
import selectors
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

_WAKE = b"w"
MAX_HEAD_BYTES = 64 * 1024  # a longer head is handed on as it is, for the handler to refuse (431/414)


class HardenedHTTPServer(HTTPServer):
    """``HTTPServer`` with a waiting room for request heads, a worker pool and per-request deadlines."""

    request_queue_size = 1024  # the listen backlog (the standard library's 5 drops and resets bursts)
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: Callable[..., QuietHandler], *,
                 max_workers: int = 8, max_waiting: int = 512, max_queued: int = 512,
                 idle_timeout: float = 10.0, header_deadline: float = 5.0, request_deadline: float = 15.0,
                 log: Callable[[str], None] | None = None) -> None:
        super().__init__(address, handler)
        self.max_workers = max_workers
        self.max_waiting = max_waiting
        self.max_queued = max_queued
        self.idle_timeout = idle_timeout
        self.header_deadline = header_deadline
        self.request_deadline = request_deadline
        self.log = log or (lambda _message: None)
        self._heads = threading.local()  # the head the watcher read, for the handler on this worker
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

    def take_head(self) -> bytes:
        """For the handler: the bytes the watcher already read from this worker's connection."""
        head: bytes = getattr(self._heads, "head", b"")
        self._heads.head = b""
        return head

    def _work(self, request: socket.socket, client_address: Any, head: bytes) -> None:
        """On a pool thread: handle one request under its deadline, then close the connection."""
        self._watcher.set_deadline(request, time.monotonic() + self.request_deadline)
        self._heads.head = head
        try:
            request.settimeout(self.request_deadline)  # a backstop; the watcher's deadline is the rule
            self.finish_request(request, client_address)
        except Exception as exc:
            self.handle_error_quietly(exc)
        finally:
            self._heads.head = b""
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


@dataclass
class _Waiting:
    """A connection in the waiting room: when it came, and what of its head has arrived."""

    address: Any
    arrived: float
    head: bytearray = field(default_factory=bytearray)
    first_byte: float | None = None

    def deadline(self, idle_timeout: float, header_deadline: float) -> float:
        if self.first_byte is None:
            return self.arrived + idle_timeout
        return self.first_byte + header_deadline

    def complete(self) -> bool:
        return b"\r\n\r\n" in self.head or b"\n\n" in self.head or len(self.head) > MAX_HEAD_BYTES


class _ConnectionWatcher(threading.Thread):
    """One thread: reads request heads without blocking, hands complete ones to the pool, enforces deadlines."""

    def __init__(self, server: HardenedHTTPServer) -> None:
        super().__init__(name="mailroom-http-watcher", daemon=True)
        self.server = server
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._lock = threading.Lock()
        self._arrivals: list[tuple[socket.socket, Any, float]] = []
        self._waiting: OrderedDict[socket.socket, _Waiting] = OrderedDict()  # oldest first
        self._deadlines: list[tuple[float, int, socket.socket]] = []  # heap of requests' body deadlines
        self._active: dict[socket.socket, float] = {}
        self._queued = 0  # handed to the pool and not finished
        self._order = itertools.count()
        self._stopping = threading.Event()

    # --- called from other threads ------------------------------------------------------------------------

    def admit(self, sock: socket.socket, address: Any) -> None:
        with self._lock:
            self._arrivals.append((sock, address, time.monotonic()))
        self._wake()

    def set_deadline(self, sock: socket.socket, deadline: float) -> None:
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
                        self._readable(key.fileobj)  # type: ignore[arg-type]
                self._take_arrivals()
                self._expire()
        finally:
            for sock in list(self._waiting):
                self._forget(sock)
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
        idle, heads = self.server.idle_timeout, self.server.header_deadline
        for waiting in self._waiting.values():  # at most max_waiting of them
            soonest = min(soonest, waiting.deadline(idle, heads))
        return max(0.0, soonest - now)

    def _drain_wake(self) -> None:
        with contextlib.suppress(OSError):
            while self._wake_r.recv(4096):
                pass

    def _take_arrivals(self) -> None:
        with self._lock:
            arrivals, self._arrivals = self._arrivals, []
        for sock, address, arrived in arrivals:
            while len(self._waiting) >= self.server.max_waiting:
                oldest = next(iter(self._waiting))
                self._forget(oldest)
                self._close(oldest)
            try:
                sock.setblocking(False)
                self._selector.register(sock, selectors.EVENT_READ)
            except (ValueError, OSError):  # closed already
                self._close(sock)
                continue
            self._waiting[sock] = _Waiting(address, arrived)

    def _readable(self, sock: socket.socket) -> None:
        waiting = self._waiting.get(sock)
        if waiting is None:
            return
        try:
            data = sock.recv(MAX_HEAD_BYTES)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the client went away before sending a request
            self._forget(sock)
            self._close(sock)
            return
        if waiting.first_byte is None:
            waiting.first_byte = time.monotonic()
        waiting.head += data
        if waiting.complete():
            self._forget(sock)
            self._hand_over(sock, waiting)

    def _hand_over(self, sock: socket.socket, waiting: _Waiting) -> None:
        """The head is complete: a worker takes the connection from here."""
        with self._lock:
            full = self._queued >= self.server.max_workers + self.server.max_queued
            if not full:
                self._queued += 1
        if full:
            self.server.log("too many requests at once: one was turned away")
            self._close(sock)
            return
        try:
            sock.setblocking(True)
            self.server._pool.submit(self.server._work, sock, waiting.address, bytes(waiting.head))
        except (RuntimeError, OSError):  # the pool is shut down (the server is stopping), or the socket closed
            self.done()
            self._close(sock)

    def _forget(self, sock: socket.socket) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(sock)
        self._waiting.pop(sock, None)

    def _expire(self) -> None:
        now = time.monotonic()
        idle, heads = self.server.idle_timeout, self.server.header_deadline
        late = [sock for sock, waiting in self._waiting.items() if waiting.deadline(idle, heads) <= now]
        for sock in late:
            self._forget(sock)
            self._close(sock)
        if late:
            self.server.log(f"{len(late)} connection(s) closed: no complete request in time")
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


class _HeadThenSocket(io.RawIOBase):
    """Reads first the head the watcher already received, then the rest from the socket."""

    def __init__(self, head: bytes, sock: socket.socket) -> None:
        self._head = memoryview(head)
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            count = min(len(buffer), len(self._head))
            buffer[:count] = self._head[:count]
            self._head = self._head[count:]
            return count
        return self._sock.recv_into(buffer)


class QuietHandler(BaseHTTPRequestHandler):
    """Shared manners of mailroom's handlers: one request per connection, Host checked, no traceback."""

    server: HardenedHTTPServer
    protocol_version = "HTTP/1.0"
    default_request_version = "HTTP/1.0"  # a garbled request line still gets a status line, not HTTP/0.9
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the plain socket reader is replaced (closing it leaves the socket open)
        self.rfile = io.BufferedReader(_HeadThenSocket(self.server.take_head(), self.connection))

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
