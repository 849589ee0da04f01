"""How a request body reaches SendGrid's mail/send: one connection kept open from batch to batch.

The sendgrid library's HTTP client (python_http_client) opens a new connection for every call, and builds
a new urllib opener for it (about 0.3 ms of CPU). Over https each new connection is also a TLS handshake.
A send of 100,000 people is 100 requests, one after the other, so here they share one connection.

What each failure means is kept exactly as the library (through urllib) reports it, because the send
decides from it whether a batch may be tried again:

- an HTTP error status raises the library's own ``HTTPError`` subclass (``BadRequestsError``, ...), made by
  its ``handle_error``;
- a failure before the whole request was written (connecting, TLS, writing) raises ``urllib.error.URLError``:
  SendGrid cannot have accepted it;
- a failure after that (no answer, a connection dropped while waiting) raises the ``OSError`` or
  ``http.client.HTTPException`` itself: the request may have been accepted.

A kept connection the server has closed while it sat idle would turn the next batch "uncertain" for no
reason, so before each reuse the socket is checked: if the server has closed it (or it sat idle longer than
servers usually keep one), a new connection is made first. When a proxy is set for the host (HTTPS_PROXY
and the like), the library's own way is used, which honours it.
"""

from __future__ import annotations

import http.client
import io
import select
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from email.message import Message
from typing import Any

from python_http_client import Client
from python_http_client.exceptions import handle_error

MAIL_SEND_PATH = "/v3/mail/send"  # the library's URL: the host, its API version (3), then the endpoint
IDLE_SECONDS = 30.0  # a connection idle longer is not reused (servers close idle ones after about a minute)


class Answer:
    """A success status's answer: its headers (for X-Message-Id) and status."""

    def __init__(self, status: int, headers: Message) -> None:
        self.status_code = status
        self.headers = headers


class SendGridConnection:
    """POSTs request bodies to ``host``'s mail/send with ``headers``, over one connection kept open."""

    def __init__(self, host: str, headers: Mapping[str, str], timeout: float, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.host, self.headers, self.timeout, self.clock = host, dict(headers), timeout, clock
        parts = urllib.parse.urlsplit(host)
        self._https = parts.scheme == "https"
        self._netloc = parts.netloc
        self._url = host + MAIL_SEND_PATH
        self._conn: http.client.HTTPConnection | None = None
        self._last_used = 0.0
        self.connections_made = 0  # how many connections this sender opened (for tests and curiosity)
        self._via_library = _proxy_for(self._url) is not None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def post(self, body: Sequence[bytes], content_type: str, library_body: Callable[[bytes], str]) -> Answer:
        """One POST of ``body`` (its parts, sent one after the other): the answer of a 2xx status, or an error
        raised as the module docstring says. ``library_body``: the body as the library takes it (a str), for
        the proxy way."""
        if self._via_library:
            return self._post_through_library(b"".join(body), content_type, library_body)
        conn = self._ready_connection()
        size = sum(map(len, body))
        headers = {**self.headers, "Content-Type": content_type, "Content-Length": str(size)}
        try:
            # With its length given, http.client sends an iterable body's parts as they are (not chunked).
            conn.request("POST", MAIL_SEND_PATH, body=iter(body), headers=headers)
        except OSError as exc:  # connecting, TLS or writing: the request never got there whole
            self.close()
            raise urllib.error.URLError(exc) from None
        try:
            response = conn.getresponse()
            data = response.read()
        except BaseException:
            self.close()
            raise
        self._last_used = self.clock()
        if response.will_close:
            self.close()
        if response.status >= 400:
            raise handle_error(urllib.error.HTTPError(self._url, response.status, response.reason, response.headers,
                                                      io.BytesIO(data)))
        return Answer(response.status, response.headers)

    def _ready_connection(self) -> http.client.HTTPConnection:
        """The kept connection if it is still good to use, else a new one (connected by its first request)."""
        if self._conn is not None and (self.clock() - self._last_used > IDLE_SECONDS or _dropped(self._conn)):
            self.close()
        if self._conn is None:
            kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = kind(self._netloc, timeout=self.timeout)
            self.connections_made += 1
        return self._conn

    def _post_through_library(self, body: bytes, content_type: str, library_body: Callable[[bytes], str]) -> Answer:
        client: Any = Client(host=self.host, version=3, request_headers=self.headers)  # endpoints made by attribute
        client.timeout = self.timeout
        response = client.mail.send.post(request_body=library_body(body),
                                         request_headers={"Content-Type": content_type})
        return Answer(response.status_code, response.headers)


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """Whether the server has closed (or written unasked to) a kept connection: its socket reads as ready."""
    sock = conn.sock
    if sock is None:
        return False  # not connected yet, or closed by http.client itself: it connects again by itself
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _proxy_for(url: str) -> str | None:
    """The proxy urllib would use for ``url`` (from the environment), or None."""
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme)
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy
