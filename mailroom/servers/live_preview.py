"""`mailroom preview`: serve the preview on 127.0.0.1 and recompose whenever a source changes.

Staff edit newsletter.md (or a template, an image, school.toml) and the page in the browser updates
by itself, within half a second of the save (bench/bench_preview_refresh.py): the watcher looks at the
sources' sizes and times every ``POLL_SECONDS``, composes once they have stopped changing (editors save
in two steps), and the served preview.html carries a small script that asks ``/__version`` every
``RELOAD_POLL_MS`` and reloads when a new compose has finished; the file on disk stays script-free.
Both questions are cheap (a few stat calls; a tiny JSON answer on 127.0.0.1); the compose itself takes
about 0.1 s. A compose that fails while watching is shown at the top of the page, in the header's status
line as well, and reported to the terminal; the server carries on serving the last good build and tries
again at the next change.
"""

from __future__ import annotations

import html
import json
import threading
from collections.abc import Callable, Mapping
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any, TypedDict

from mailroom.compose.build import BUILD_DIR
from mailroom.compose.content import SOURCE_FILE
from mailroom.compose.render import TEMPLATE_DIR
from mailroom.errors import MailroomError
from mailroom.preview.page import replace_status
from mailroom.servers.http_base import HardenedHTTPServer, QuietHandler
from mailroom.settings import load_settings
from mailroom.workflows.compose import ComposeResult, compose_newsletter

VERSION_PATH = "/__version"
POLL_SECONDS = 0.05  # how often the watcher looks for a save (was 0.5 s + a fixed 0.1 s pause); ~1.5 ms a look
SETTLE_SECONDS = 0.05  # a save counts once the files have not changed for this long
RELOAD_POLL_MS = 200  # how often the page asks whether there is a new compose (was 1 s)

_RELOAD_SCRIPT = """<script>
(function () {
  var shown = %(version)d;
  function check() {
    fetch("%(path)s", {cache: "no-store"}).then(function (r) { return r.json(); }).then(function (state) {
      if (state.version !== shown) { location.reload(); }
    }).catch(function () {}).finally(function () { setTimeout(check, %(poll)d); });
  }
  setTimeout(check, %(poll)d);
})();
</script>"""

_BARE_PAGE = """<!doctype html><html lang="en-GB"><head><meta charset="utf-8"><title>Newsletter preview</title>
<style>body{font:16px/1.5 system-ui,Arial,sans-serif;margin:0;padding:24px;background:#eef1f5;color:#111827}</style>
</head><body><main><h1>Newsletter preview</h1>%s</main></body></html>"""


# The header's status line while the last save could not be composed: the checks below it are of the
# last version that worked, so "Ready to send" there would be untrue.
_STALE_STATUS = ('<p class="status status-error"><strong>Not up to date:</strong> your last change could not be '
                 'composed (see the message below). This page shows the last version that worked.</p>')


class WatchState(TypedDict):
    """What the page polls for: a new version number after each rebuild, or the error that stopped it."""

    version: int
    error: str | None


class Watcher:
    """Composes the newsletter now and again whenever one of its sources changes."""

    def __init__(self, folder: Path, root: Path, environ: Mapping[str, str] | None = None,
                 on_compose: Callable[[ComposeResult], None] | None = None,
                 on_error: Callable[[MailroomError], None] | None = None) -> None:
        self.folder = Path(folder)  # as given, so messages show the path the user typed
        self.root = Path(root).resolve()
        self.environ = environ
        self.on_compose = on_compose
        self.on_error = on_error
        self.version = 0
        self.error: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._snapshot: dict[str, tuple[int, int]] = {}
        self._thread: threading.Thread | None = None

    @property
    def build_dir(self) -> Path:
        return self.folder.resolve() / BUILD_DIR

    def watched_files(self) -> list[Path]:
        """newsletter.md and the school's translations of it, images/, templates/, school.toml (and the logo)."""
        root = self.root
        files = [self.folder / SOURCE_FILE, *sorted(self.folder.glob("newsletter.*.md")), root / "school.toml"]
        for folder in (self.folder / "images", root / TEMPLATE_DIR, root / "assets"):
            if folder.is_dir():
                files += sorted(p for p in folder.rglob("*") if p.is_file())
        return files

    def _take_snapshot(self) -> dict[str, tuple[int, int]]:
        snapshot = {}
        for path in self.watched_files():
            try:
                stat = path.stat()
            except OSError:
                continue
            snapshot[str(path)] = (stat.st_mtime_ns, stat.st_size)
        return snapshot

    def compose(self) -> None:
        """Compose once; remember the error instead of raising it, so the watch goes on."""
        self._snapshot = self._take_snapshot()
        try:
            settings = load_settings(self.root, self.environ)
            result = compose_newsletter(settings, self.folder)
        except MailroomError as exc:
            self._failed(exc)
            return
        except Exception as exc:  # a bug must not stop the watch either; say what happened and carry on
            self._failed(MailroomError(f"something went wrong while composing ({type(exc).__name__}: {exc})"))
            return
        with self._lock:
            self.error = None
            self.version += 1
        if self.on_compose:
            self.on_compose(result)

    def _failed(self, exc: MailroomError) -> None:
        with self._lock:
            self.error = str(exc)
            self.version += 1
        if self.on_error:
            self.on_error(exc)

    def changed(self) -> bool:
        return self._take_snapshot() != self._snapshot

    def state(self) -> WatchState:
        with self._lock:
            return WatchState(version=self.version, error=self.error)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mailroom-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            if self.changed():
                self._wait_until_settled()
                self.compose()

    def _wait_until_settled(self) -> None:
        """Editors often save in two steps (truncate, then write): wait until the files stop changing."""
        before = self._take_snapshot()
        while not self._stop.wait(SETTLE_SECONDS):
            now = self._take_snapshot()
            if now == before:
                return
            before = now


class _Handler(QuietHandler, SimpleHTTPRequestHandler):
    """Serves the build folder; QuietHandler first: one request per connection, only our own Host."""

    watcher: Watcher
    server_version = "mailroom-preview"

    def __init__(self, *args: Any, watcher: Watcher, **kwargs: Any) -> None:
        self.watcher = watcher
        super().__init__(*args, directory=str(watcher.build_dir), **kwargs)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the terminal is for messages about the newsletter, not every request."""

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == VERSION_PATH:
            self._send(HTTPStatus.OK, "application/json", json.dumps(self.watcher.state()))
        elif path in ("/", "/preview.html"):
            self._send(HTTPStatus.OK, "text/html; charset=utf-8", self._preview_page())
        else:
            super().do_GET()

    def do_HEAD(self) -> None:
        self.do_GET()

    def _send(self, status: HTTPStatus, content_type: str, body: str) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _preview_page(self) -> str:
        state = self.watcher.state()
        script = _RELOAD_SCRIPT % {"version": state["version"], "path": VERSION_PATH, "poll": RELOAD_POLL_MS}
        banner = ""
        if state["error"]:
            banner = ('<div id="live-status" class="status status-error" role="alert"><strong>The newsletter could '
                      f'not be composed:</strong> {html.escape(state["error"])}<br>Fix it and save: this page '
                      'updates by itself. Until then it shows the last version that worked.</div>')
        try:
            page = (self.watcher.build_dir / "preview.html").read_text(encoding="utf-8")
        except OSError:
            return _BARE_PAGE % (banner or "<p>Composing…</p>") + script
        if banner:
            page = page.replace('<main id="main" class="wrap">', '<main id="main" class="wrap">' + banner, 1)
            page = replace_status(page, _STALE_STATUS)
        return page.replace("</body>", script + "</body>", 1)


class _LocalOnlyHTTPServer(HardenedHTTPServer):
    """For this computer only: answers just to Host 127.0.0.1:PORT or localhost:PORT (others get 403).

    A web page elsewhere can make its own name resolve to 127.0.0.1 (DNS rebinding) and then read
    anything this server answers to that name; checking Host closes that door. Idle connections hold
    no thread and time out; at most ``PREVIEW_WORKERS`` threads serve requests.
    """

    def allowed_hosts(self) -> frozenset[str]:
        port = self.server_address[1]
        return frozenset({self.host_and_port.lower(), f"127.0.0.1:{port}", f"localhost:{port}"})


PREVIEW_WORKERS = 4  # one person's browser: the page, its images and the version check
PREVIEW_IDLE_SECONDS = 5.0
PREVIEW_REQUEST_SECONDS = 10.0


class PreviewServer:
    """A hardened HTTP server on 127.0.0.1 serving one newsletter's build, plus its watcher."""

    def __init__(self, watcher: Watcher, port: int = 0, host: str = "127.0.0.1", *,
                 idle_timeout: float = PREVIEW_IDLE_SECONDS) -> None:
        self.watcher = watcher
        self.httpd = _LocalOnlyHTTPServer((host, port), partial(_Handler, watcher=watcher),
                                          max_workers=PREVIEW_WORKERS, idle_timeout=idle_timeout,
                                          request_deadline=PREVIEW_REQUEST_SECONDS, max_waiting=256)

    @property
    def url(self) -> str:
        return f"http://{self.httpd.host_and_port}/"

    def serve_forever(self) -> None:
        self.watcher.start()
        try:
            self.httpd.serve_forever(poll_interval=0.05)  # shutdown() waits for the next poll; 20 a second cost nothing
        finally:
            self.watcher.stop()
            self.httpd.server_close()

    def start_in_background(self) -> threading.Thread:
        """For tests and embedding: serve from a daemon thread; ``shutdown`` stops it."""
        thread = threading.Thread(target=self.serve_forever, name="mailroom-preview", daemon=True)
        thread.start()
        return thread

    def shutdown(self) -> None:
        self.httpd.shutdown()
