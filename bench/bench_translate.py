"""Compose with translation: the sample newsletter in 5 languages against the DeepL stand-in, cold and cached.

- english only: ``python compose.py`` with no languages, the baseline office staff already wait for.
- cold: ``python compose.py --language pl,ar,ro,pt-PT,uk`` as a new process with an empty translation cache
  (every snippet goes to the engine: one request per language).
- cached: the same command again; nothing is sent (0 requests), so this is the price of rendering 10 more
  versions and the review page.
- in one process (``compose_newsletter`` again and again, as the live preview does): the same three, warm.
The stand-in answers from this process; ``--latency-ms`` adds a delay before each translation answer, for
the round trip to DeepL's servers (0 by default, so the figures are mailroom's own work).

Run: python bench/bench_translate.py [--runs N] [--latency-ms MS] [--json]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchlib import ROOT, SAMPLE_SLUG, copy_project, emit, repeat, stats

sys.path.insert(0, str(ROOT))

from mailroom.settings import load_settings
from mailroom.workflows.compose import compose_newsletter
from tests.translation_standins import DeepLStandIn

LANGUAGES = "pl,ar,ro,pt-PT,uk"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, DeepLStandIn() as deepl:
        deepl.delay = args.latency_ms / 1000
        project = copy_project(Path(tmp) / "project")
        toml = project / "school.toml"
        toml.write_text(toml.read_text(encoding="utf-8") + '\n[translation]\nengine = "deepl"\n'
                        'keep = ["CEOP", "INSET", "NSPCC", "Childline"]\n', encoding="utf-8")
        cache = project / "translations.sqlite3"
        env = {**os.environ, "DEEPL_AUTH_KEY": deepl.api_key, "DEEPL_SERVER_URL": deepl.url,
               "MAILROOM_TRANSLATION_CACHE": str(cache)}
        newsletter = f"newsletters/{SAMPLE_SLUG}"

        def compose(*extra: str) -> None:
            subprocess.run([sys.executable, "compose.py", newsletter, *extra], cwd=project, env=env, check=True,
                           capture_output=True)

        def cold() -> None:
            for path in project.glob("translations.sqlite3*"):
                path.unlink()
            compose("--language", LANGUAGES)

        english = repeat(compose, args.runs)
        deepl.reset_counts()
        cold_times = repeat(cold, args.runs)
        cold_requests, cold_characters = deepl.calls // args.runs, deepl.characters // args.runs
        compose("--language", LANGUAGES)  # fill the cache once more
        deepl.reset_counts()
        cached = repeat(lambda: compose("--language", LANGUAGES), args.runs)
        cached_requests = deepl.calls

        settings = load_settings(project, environ=env)
        folder = project / newsletter
        tags = LANGUAGES.split(",")

        def warm_cold() -> None:
            for path in project.glob("translations.sqlite3*"):
                path.unlink()
            compose_newsletter(settings, folder, languages=tags)

        warm_english = repeat(lambda: compose_newsletter(settings, folder), args.runs)
        warm_cold_times = repeat(warm_cold, args.runs)
        warm_cached = repeat(lambda: compose_newsletter(settings, folder, languages=tags), args.runs)

    result: dict[str, Any] = {
        "languages": LANGUAGES.split(","), "latency_ms": args.latency_ms,
        "english_only_s": stats(english), "cold_s": stats(cold_times), "cached_s": stats(cached),
        "cold_requests": cold_requests, "cold_characters": cold_characters, "cached_requests": cached_requests,
        "warm_english_only_s": stats(warm_english), "warm_cold_s": stats(warm_cold_times),
        "warm_cached_s": stats(warm_cached),
    }
    print(f"Compose the sample, 2 lists, as a new process (median of {args.runs}; stand-in latency "
          f"{args.latency_ms:g} ms per request):")
    print(f"  English only:                      {result['english_only_s']['median']:.2f} s")
    print(f"  + 5 languages, empty cache (cold): {result['cold_s']['median']:.2f} s  "
          f"({cold_requests} requests, {cold_characters:,} characters sent)")
    print(f"  + 5 languages, cached:             {result['cached_s']['median']:.2f} s  "
          f"({cached_requests} requests)")
    print("The same in one process, warm (as the live preview recomposes):")
    print(f"  English only:                      {result['warm_english_only_s']['median']:.2f} s")
    print(f"  + 5 languages, empty cache (cold): {result['warm_cold_s']['median']:.2f} s")
    print(f"  + 5 languages, cached:             {result['warm_cached_s']['median']:.2f} s")
    emit(result, args.json)


if __name__ == "__main__":
    main()
