"""The real command, as the office runs it: `python -m mailroom events serve` in its own process."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from mailroom.events.suppressions import suppressed_addresses
from tests.sendgrid_events import Signer, event

ROOT = Path(__file__).resolve().parent.parent


def test_serve_command_stores_signed_events_and_reports_totals_on_ctrl_c(tmp_path):
    import http.client

    shutil.copy(ROOT / "school.toml", tmp_path / "school.toml")
    shutil.copytree(ROOT / "assets", tmp_path / "assets")
    signer = Signer()
    (tmp_path / ".env").write_text(f"SENDGRID_WEBHOOK_PUBLIC_KEY={signer.public_key}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAILROOM_", "SENDGRID_"))}
    env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", COLUMNS="200")
    process = subprocess.Popen([sys.executable, "-m", "mailroom", "events", "serve", "--port", "0"],
                               cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", first)
        assert match, first + process.stderr.read()
        body = json.dumps([event("delivered", "ev-1"), event("unsubscribe", "ev-2", "bob.carer@example.com")])
        conn = http.client.HTTPConnection("127.0.0.1", int(match.group(1)), timeout=10)
        conn.request("POST", "/", body=body, headers=signer.headers(body))
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        process.send_signal(signal.SIGINT)
        output, errors = process.communicate(timeout=10)
    assert process.returncode == 0, errors
    assert "Stopped. 2 event(s) stored, 0 repeat(s), 1 address(es) added to the suppression list." in output
    assert "bob.carer@example.com" not in output + errors  # the log says how many, never who
    assert set(suppressed_addresses(tmp_path / "mailroom.sqlite3")) == {"bob.carer@example.com"}
