"""`mailroom preview`: the live server on 127.0.0.1 recomposes on a change and the page reloads itself."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from mailroom.servers.live_preview import PreviewServer, Watcher
from tests.browser import open_page
from tests.projects import REPO

OLD = "Thank you for helping us to keep our children safe online."
NEW = "Thank you, all of you, for helping us to keep our children safe online."


def wait_for(condition: Callable[[], object], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)  # the conditions are cheap: a stat, a tiny local request


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""


@pytest.fixture
def server(sample_folder: Path) -> Iterator[PreviewServer]:
    watcher = Watcher(sample_folder, sample_folder.parent.parent, environ={})
    watcher.compose()
    preview = PreviewServer(watcher, 0)
    preview.start_in_background()
    yield preview
    preview.shutdown()


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def version(server: PreviewServer) -> dict[str, object]:
    return json.loads(get(server.url + "__version")[1])


def test_the_page_reloads_after_an_edit(browser: Browser, server: PreviewServer) -> None:
    newsletter = server.watcher.folder / "newsletter.md"
    with open_page(browser, 1280) as (page, log):
        page.goto(server.url)
        assert OLD in page.locator("#version-parents .text-part").inner_text()
        edit(newsletter, OLD, NEW)
        wait_for(lambda: NEW in page.locator("#version-parents .text-part").inner_text())
        frame = page.frame_locator("#version-staff iframe").first
        assert NEW in frame.locator("body").inner_text()
    assert log.console_errors == []


def test_a_compose_error_is_shown_and_the_watch_goes_on(server: PreviewServer) -> None:
    newsletter = server.watcher.folder / "newsletter.md"
    assert version(server) == {"version": 1, "error": None}
    edit(newsletter, "date: 2024-11-08", "date: 2024-13-08")
    wait_for(lambda: version(server)["version"] == 2)
    message = f"{newsletter}, line 4: 'date' should be a date like 2024-11-08, not '2024-13-08'"
    assert version(server)["error"] == message
    status, page = get(server.url)
    assert status == 200
    assert ('<div id="live-status" class="status status-error" role="alert"><strong>The newsletter could not be '
            "composed:</strong> " + message.replace("'", "&#x27;")) in page
    assert OLD in page  # the last build that worked is still shown
    # The header agrees with the banner: the checks shown are of the last build that worked.
    header = page[page.index('<header class="top">'):page.index("</header>")]
    assert "Not up to date" in header and "Ready to send" not in header
    assert get(server.url + "images/school-logo.png")[0] == 200
    edit(newsletter, "date: 2024-13-08", "date: 2024-11-08")
    wait_for(lambda: version(server)["version"] == 3)
    header = get(server.url)[1].split('<header class="top">', 1)[1].split("</header>", 1)[0]
    assert "Ready to send" in header and "Not up to date" not in header
    assert version(server)["error"] is None
    assert 'id="live-status"' not in get(server.url)[1]


def test_templates_and_school_toml_are_watched(server: PreviewServer) -> None:
    root = server.watcher.root
    edit(root / "school.toml", 'address = "Oakfield Lane', 'address = "1 Oakfield Lane')
    wait_for(lambda: version(server)["version"] == 2)
    assert "1 Oakfield Lane" in get(server.url + "versions/parents.tokens.html")[1]
    edit(root / "templates" / "footer.mjml.j2", "You are receiving this email", "You get this email")
    wait_for(lambda: version(server)["version"] == 3)
    assert "You get this email" in get(server.url + "versions/staff.tokens.html")[1]


def test_only_the_served_page_has_the_reload_script(server: PreviewServer) -> None:
    served = get(server.url + "preview.html")[1]
    assert 'fetch("/__version"' in served
    on_disk = (server.watcher.build_dir / "preview.html").read_text(encoding="utf-8")
    assert "<script" not in on_disk
    assert served.replace(served[served.index("<script>"):served.index("</script>") + 9], "") == on_disk


def test_serves_the_build_folder_only(server: PreviewServer) -> None:
    assert get(server.url + "../newsletter.md")[0] == 404
    assert get(server.url + "%2e%2e/newsletter.md")[0] == 404
    assert get(server.url + "manifest.json")[0] == 200
    assert server.url.startswith("http://127.0.0.1:")


def read_until(process: subprocess.Popen[bytes], marker: str, seconds: float = 30) -> str:
    """What the command printed, up to and including ``marker`` (fails after ``seconds``)."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    selector = selectors.DefaultSelector()
    selector.register(fd, selectors.EVENT_READ)
    seen = b""
    deadline = time.monotonic() + seconds
    while marker.encode() not in seen:
        left = deadline - time.monotonic()
        if left <= 0 or not selector.select(timeout=left):
            raise AssertionError(f"no {marker!r} in: {seen.decode()}")
        chunk = os.read(fd, 65536)
        if not chunk:
            raise AssertionError(f"the command ended early: {seen.decode()}")
        seen += chunk
    return seen.decode()


@pytest.mark.parametrize("no_open", [False, True])
def test_the_command_prints_the_address_opens_the_browser_and_stops_on_ctrl_c(sample_folder: Path, tmp_path: Path,
                                                                               no_open: bool) -> None:
    root = sample_folder.parent.parent
    opened = tmp_path / "opened.txt"
    fake_browser = tmp_path / "fake-browser"
    fake_browser.write_text(f'#!/bin/sh\necho "$1" >> {opened}\n')
    fake_browser.chmod(0o755)
    env = {**os.environ, "PYTHONPATH": str(REPO), "BROWSER": str(fake_browser)}
    command = [sys.executable, "-m", "mailroom", "preview", f"newsletters/{sample_folder.name}", "--port", "0"]
    process = subprocess.Popen(command + (["--no-open"] if no_open else []), cwd=root, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        shown = read_until(process, "Press Ctrl+C to stop.")
        address = shown.split("Preview at ")[1].split()[0]
        assert address.startswith("http://127.0.0.1:") and address.endswith("/")
        assert "Checks: no problems found." in shown
        status, page = get(address)
        assert status == 200 and "Online safety: sextortion and the rise of AI" in page
        if not no_open:
            wait_for(opened.exists, 10)
            assert opened.read_text().split() == [address]
        process.send_signal(signal.SIGINT)
        rest = process.communicate(timeout=15)[0].decode()
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    # The command opens the browser (and waits for the BROWSER command) before it serves: once it has stopped,
    # no opened.txt means it never tried, over its whole run, with no sleep to guess how long to wait.
    assert opened.exists() != no_open
    assert rest.strip().endswith("Stopped the preview.")


def test_the_command_refuses_a_missing_folder(tmp_path: Path, sample_folder: Path) -> None:
    root = sample_folder.parent.parent
    result = subprocess.run([sys.executable, "-m", "mailroom", "preview", "newsletters/nope", "--no-open"], cwd=root,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip() == "Error: newsletters/nope: there is no such newsletter folder"


def test_a_first_compose_that_fails_shows_the_error_until_it_is_fixed(sample_folder: Path) -> None:
    newsletter = sample_folder / "newsletter.md"
    edit(newsletter, "::: button", "::: knob")
    watcher = Watcher(sample_folder, sample_folder.parent.parent, environ={})
    watcher.compose()
    server = PreviewServer(watcher, 0)
    server.start_in_background()
    try:
        status, page = get(server.url)
        assert status == 200
        assert "unknown block &#x27;::: knob&#x27;; the blocks are: ::: alert, ::: button, ::: only" in page
        assert 'fetch("/__version"' in page
        edit(newsletter, "::: knob", "::: button")
        wait_for(lambda: version(server) == {"version": 2, "error": None})
        assert "Online safety: sextortion and the rise of AI" in get(server.url)[1]
    finally:
        server.shutdown()

