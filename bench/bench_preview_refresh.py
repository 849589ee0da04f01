"""How long a saved edit takes to reach the live preview (`mailroom preview`).

The live preview server runs in this process on 127.0.0.1, on a throwaway copy of the project. Each run
writes a new sentence into newsletter.md (as an editor's save does) and times two things:
- until the page the server serves has it (the watcher noticing the save, the compose, the page);
- until a simulated browser shows it: a thread that does what the page's script does, asking
  /__version every ``RELOAD_POLL_MS`` (1 s before that constant existed) and loading the page again
  when the version changes. This is what the person at the screen waits for.

Target: under 0.5 s from the save to the page in the browser.
Run: python bench/bench_preview_refresh.py [--runs N] [--json]
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from benchlib import SAMPLE_SLUG, arguments, copy_project, stats  # noqa: E402

from mailroom.servers import live_preview  # noqa: E402
from mailroom.servers.live_preview import PreviewServer, Watcher  # noqa: E402

TARGET_SECONDS = 0.5
TIMEOUT_SECONDS = 10.0


def served(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode("utf-8")


class SimulatedBrowser(threading.Thread):
    """Polls /__version like the page's script and notes when the page it shows contains ``wanted``."""

    def __init__(self, url: str, poll_seconds: float) -> None:
        super().__init__(daemon=True)
        self.url, self.poll_seconds = url, poll_seconds
        self.wanted = ""
        self.seen = threading.Event()
        self.stopping = threading.Event()

    def run(self) -> None:
        shown = json.loads(served(self.url + "__version"))["version"]
        while not self.stopping.wait(self.poll_seconds):
            version = json.loads(served(self.url + "__version"))["version"]
            if version != shown:
                shown = version
                if self.wanted and self.wanted in served(self.url):
                    self.seen.set()


def main() -> None:
    args = arguments(__doc__.splitlines()[0], runs=10)
    poll = getattr(live_preview, "RELOAD_POLL_MS", 1000) / 1000
    with tempfile.TemporaryDirectory() as tmp:
        root = copy_project(Path(tmp) / "project")
        folder = root / "newsletters" / SAMPLE_SLUG
        source = folder / "newsletter.md"
        original = source.read_text(encoding="utf-8")
        watcher = Watcher(folder, root, environ={})
        watcher.compose()
        server = PreviewServer(watcher, 0)
        server.start_in_background()
        browser = SimulatedBrowser(server.url, poll)
        browser.start()
        to_served, to_browser = [], []
        phases = random.Random(14)
        try:
            for run in range(args.runs):
                marker = f"Refresh marker {run} {time.time_ns()}."
                time.sleep(0.3 + phases.uniform(0, poll))  # saves land anywhere in the page's polling cycle
                browser.seen.clear()
                browser.wanted = marker
                started = time.perf_counter()
                source.write_text(original + f"\n{marker}\n", encoding="utf-8")
                while marker not in served(server.url):
                    if time.perf_counter() - started > TIMEOUT_SECONDS:
                        raise SystemExit(f"the preview did not show the edit within {TIMEOUT_SECONDS} s")
                    time.sleep(0.005)
                to_served.append(time.perf_counter() - started)
                if not browser.seen.wait(TIMEOUT_SECONDS):
                    raise SystemExit(f"the browser did not show the edit within {TIMEOUT_SECONDS} s")
                to_browser.append(time.perf_counter() - started)
        finally:
            browser.stopping.set()
            server.shutdown()
    result = {"save_to_served_page": stats(to_served), "save_to_browser": stats(to_browser),
              "browser_poll_seconds": poll, "target_seconds": TARGET_SECONDS,
              "met": stats(to_browser)["median"] < TARGET_SECONDS}
    if args.json:
        print(json.dumps(result))
        return
    for label, key in (("save -> page served", "save_to_served_page"),
                       ("save -> page in the browser", "save_to_browser")):
        figure = result[key]
        print(f"{label:<28} median {figure['median']:.3f} s (min {figure['min']:.3f}, max {figure['max']:.3f}, "
              f"{len(figure['runs'])} runs)")
    print(f"the page asks for news every {poll:.2f} s; target: a median under {TARGET_SECONDS} s in the browser: "
          f"{'met' if result['met'] else 'NOT met'}")


if __name__ == "__main__":
    main()
