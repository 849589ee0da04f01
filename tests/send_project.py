"""Helpers for send tests: a composed copy of the project (``send_project``), an audiences.csv of
fictional people, the environment that picks a transport, and a way to run send.py as the office would.

Also ``write_build``: a tiny hand-made build (manifest + html/txt) in the format mailroom/compose/build.py
reads, for tests that need a build without running compose.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from contextlib import chdir
from pathlib import Path

from mailroom.compose.build import BUILD_DIR, MANIFEST, MANIFEST_VERSION, digest_build
from mailroom.send.dispatch import RETRY_SCALE_VARIABLE
from mailroom.settings import Settings, load_settings
from tests.projects import SAMPLE as SAMPLE  # re-exported: send tests name the sample from here
from tests.projects import SEND_SETTINGS, make_project

ROOT = Path(__file__).resolve().parent.parent
RETRY_SCALE = "0.001"
API_KEY = "SG.standin-secret-key-0123456789abcdef"


def send_project(dest: Path, *, timeout: float = 5.0, school_toml: Mapping[str, str] | None = None) -> Path:
    """A composed copy of the sample project in ``dest`` (SendGrid timeout ``timeout`` s, no SMTP cap).

    ``school_toml``: more edits of school.toml (old -> new). Edits to how the email looks are made before
    compose; sending settings, which a build does not depend on, are changed on a copy of the shared build.
    """
    edits = {**SEND_SETTINGS, "timeout_seconds = 30": f"timeout_seconds = {timeout:g}", **(school_toml or {})}
    return make_project(dest, school_toml=edits, composed=True).parents[1]


def write_audiences(path: Path, rows: Iterable[tuple[str, str, str, str]]) -> Path:
    """rows: (email, first_name, last_name, lists)."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write("email,first_name,last_name,lists,status\n")
        for email, first, last, lists in rows:
            handle.write(f'{email},{first},{last},"{lists}",subscribed\n')
    return path


def many_people(count: int, lists: str = "parents", domain: str = "example.org") -> list[tuple[str, str, str, str]]:
    return [(f"parent{i:06d}@{domain}", f"Pat{i}", f"Example{i}", lists) for i in range(count)]


def environ(folder: Path, *, transport: str = "outbox", host: str = "", key: str = API_KEY) -> dict[str, str]:
    env = {"MAILROOM_TRANSPORT": transport, "MAILROOM_DB": str(folder / "mailroom.sqlite3"),
           "MAILROOM_OUTBOX": str(folder / "outbox"),
           RETRY_SCALE_VARIABLE: RETRY_SCALE}  # real backoff, scaled down: tests never sleep through it
    if transport == "sendgrid":
        env.update({"SENDGRID_API_KEY": key, "SENDGRID_API_HOST": host})
    return env


def settings_for(folder: Path, **kwargs: str) -> Settings:
    return load_settings(folder, environ=environ(folder, **kwargs))


def send_py(folder: Path, *args: str, env: Mapping[str, str], input: str | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run send.py in the project folder (as the office does), output not on a terminal."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("MAILROOM_", "SENDGRID_", "SMTP_"))}
    full_env.update(env)
    full_env["COLUMNS"] = "200"
    return subprocess.run([sys.executable, str(ROOT / "send.py"), *args], cwd=folder, env=full_env, text=True,
                          capture_output=True, input=input, timeout=timeout)


def run_send(folder: Path, *args: str, env: Mapping[str, str], input: str | None = None
             ) -> subprocess.CompletedProcess[str]:
    """send.py's command run inside this process (click's CliRunner), in ``folder`` with only ``env``'s
    MAILROOM_/SENDGRID_/SMTP_ variables, its answer shaped like ``send_py``'s.

    For tests of what a send decides (ledger, plan, refusals, messages): the same command, boundary and exit
    status as send.py, without paying Python's start-up and imports each time. Tests of the process itself
    (signals, a kill mid-send, what reaches the real stdout and stderr, the entry point) use ``send_py``.
    Prompts read ``input``; unlike a terminal, CliRunner echoes typed answers into stdout.
    """
    from click.testing import CliRunner

    from mailroom.cli import send_command

    variables: dict[str, str | None] = {name: None for name in os.environ
                                        if name.startswith(("MAILROOM_", "SENDGRID_", "SMTP_"))}
    variables.update(env)
    variables["COLUMNS"] = "200"
    with chdir(folder):
        result = CliRunner().invoke(send_command, list(args), input=input, env=variables, prog_name="send.py")
    return subprocess.CompletedProcess(["send.py", *args], result.exit_code, result.stdout, result.stderr)


def start_send_py(folder: Path, *args: str, env: Mapping[str, str]) -> subprocess.Popen[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("MAILROOM_", "SENDGRID_", "SMTP_"))}
    full_env.update(env)
    return subprocess.Popen([sys.executable, str(ROOT / "send.py"), *args], cwd=folder, env=full_env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


def write_build(newsletter_dir: Path, *, root: Path, versions: Mapping[str, tuple[str, str]],
                subject: str = "Test newsletter", images: Mapping[str, bytes] | None = None) -> Path:
    """A hand-made build: versions maps audience -> (html, text), tokens as compose leaves them."""
    build_dir = newsletter_dir / BUILD_DIR
    (build_dir / "images").mkdir(parents=True, exist_ok=True)
    source = newsletter_dir / "newsletter.md"
    if not source.exists():
        source.write_text(f"---\nsubject: {subject}\n---\n", encoding="utf-8")
    image_list = []
    for filename, data in (images or {}).items():
        (build_dir / "images" / filename).write_bytes(data)
        image_list.append({"filename": filename, "content_type": "image/png", "size": len(data)})
    manifest_versions = {}
    (build_dir / "versions").mkdir(exist_ok=True)
    for audience, (html, text) in versions.items():
        html_name, text_name = f"versions/{audience}.tokens.html", f"versions/{audience}.tokens.txt"
        (build_dir / html_name).write_text(html, encoding="utf-8")
        (build_dir / text_name).write_text(text, encoding="utf-8")
        manifest_versions[audience] = {
            "html": html_name, "text": text_name, "html_bytes": len(html.encode()),
            "text_bytes": len(text.encode()), "links": [], "tokens": [], "images": image_list}
    sources = {str(source.relative_to(root)): hashlib.sha256(source.read_bytes()).hexdigest()}
    files = {path.relative_to(build_dir).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
             for path in build_dir.rglob("*") if path.is_file()}
    manifest = {"manifest_version": MANIFEST_VERSION, "slug": newsletter_dir.name, "subject": subject,
                "preheader": "", "date": "2024-11-08", "campaign": "", "versions": manifest_versions,
                "sources": sources, "files": files, "build_hash": digest_build(files, sources)}
    (build_dir / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    return newsletter_dir
