"""How long the preflight checks take on one version: the sample (about 38 KB), and the same repeated
past Gmail's 102 KB clip.

Target: under 0.5 s per version, so compose and the live preview stay quick.
Run: python bench/bench_checks.py
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mailroom.checks.rules import check_version  # noqa: E402
from mailroom.compose.content import load_newsletter  # noqa: E402
from mailroom.settings import load_settings  # noqa: E402
from mailroom.workflows.compose import compose_newsletter  # noqa: E402

SAMPLE = "2024-11-08-online-safety"


def best_of(runs: int, func: object) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        func()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in ("school.toml", "templates", "assets"):
            source = ROOT / name
            (shutil.copytree if source.is_dir() else shutil.copy)(source, root / name)
        folder = root / "newsletters" / SAMPLE
        shutil.copytree(ROOT / "newsletters" / SAMPLE, folder, ignore=shutil.ignore_patterns("build"))
        settings = load_settings(root, environ={})
        result = compose_newsletter(settings, folder)
        newsletter = load_newsletter(folder, settings.list_names())
        version = result.build.versions["parents"]
        html, text = version.html(), version.text()
        images = result.build.build_dir / "images"
        for label, document in (("sample", html), ("repeated", _grow(html))):
            seconds = best_of(5, lambda d=document: check_version(d, text, audience="parents", newsletter=newsletter,
                                                                  preheader=result.build.preheader, image_dir=images))
            print(f"{label:>14}: {len(document.encode()) / 1024:6.1f} KB checked in {seconds * 1000:6.1f} ms")


def _grow(html: str) -> str:
    """The sample with its body repeated past 95 KB (the checks do not care that it repeats)."""
    head, _, rest = html.partition("<body")
    body_open, _, inner = rest.partition(">")
    inner_body, _, tail = inner.rpartition("</body>")
    grown = inner_body
    while len(grown.encode()) < 95 * 1024:
        grown += inner_body
    return f"{head}<body{body_open}>{grown}</body>{tail}"


if __name__ == "__main__":
    main()
