"""Compose the sample newsletter (every version), beside the npm mjml + juice pipeline on the same MJML.

- mailroom cold: ``python compose.py newsletters/<slug>`` as a new process, what office staff wait for.
- mailroom warm: ``compose_newsletter`` called again and again in one process.
- reference cold: per version, the ``mjml`` command line then the ``juice`` command line, fed the very MJML our
  templates produce (``Renderer.mjml``), as a web developer would run them.
- reference warm: mjml2html then juice in one node process, again and again.
Everything runs in a temporary copy of the project, so the repository's build is not touched. The npm tools are
installed into bench/.node/ (gitignored) when node and npm are present; without them the reference is skipped.

Run: python bench/bench_compose.py [--runs N] [--json]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import ROOT, SAMPLE_SLUG, arguments, copy_project, emit, repeat, stats

sys.path.insert(0, str(ROOT))

from mailroom.compose.content import load_newsletter
from mailroom.compose.render import WEB_AUDIENCE
from mailroom.settings import load_settings
from mailroom.workflows.compose import compose_newsletter, renderer_for

NODE_DIR = ROOT / "bench" / ".node"
NODE_MODULES = NODE_DIR / "node_modules"
NPM_PACKAGES = ("mjml", "juice")


def ensure_reference() -> str | None:
    """Install mjml and juice under bench/.node once; the reason they are unavailable otherwise."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        return "node and npm are not installed on this machine, so the JavaScript reference was skipped"
    bins = [NODE_MODULES / ".bin" / name for name in NPM_PACKAGES]
    if not all(b.exists() for b in bins):
        done = subprocess.run([npm, "install", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund", *NPM_PACKAGES],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0 or not all(b.exists() for b in bins):
            return f"npm install of {', '.join(NPM_PACKAGES)} failed: {done.stderr.strip()[-300:]}"
    return None


def npm_version(package: str) -> str:
    return json.loads((NODE_MODULES / package / "package.json").read_text())["version"]


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")


def main() -> None:
    args = arguments(__doc__.splitlines()[0], runs=7)
    result: dict[str, Any] = {"name": "compose", "notes": []}
    with tempfile.TemporaryDirectory(prefix="mailroom-bench-") as tmp:
        project = copy_project(Path(tmp) / "project")
        folder = project / "newsletters" / SAMPLE_SLUG
        env = dict(os.environ)
        for name in ("MAILROOM_TRANSPORT", "SENDGRID_API_KEY", "SMTP_HOST"):
            env.pop(name, None)
        compose_cmd = [sys.executable, "compose.py", f"newsletters/{SAMPLE_SLUG}"]
        run(compose_cmd, project, env)  # first run writes the bytecode caches: not what a user waits for daily

        # mailroom, cold process
        cold = repeat(lambda: run(compose_cmd, project, env), args.runs)
        result["mailroom_cold"] = stats(cold)

        # mailroom, warm in-process
        settings = load_settings(project, environ={})
        compose_newsletter(settings, folder)
        warm = repeat(lambda: compose_newsletter(settings, folder), args.runs * 3)
        result["mailroom_warm"] = stats(warm)

        # The MJML source of every version, as our templates produce it
        newsletter = load_newsletter(folder, settings.list_names())
        renderer = renderer_for(settings, newsletter)
        versions = [*newsletter.front.audiences, WEB_AUDIENCE]
        result["versions"] = versions
        work = Path(tmp) / "reference"
        work.mkdir()
        sources = []
        for audience in versions:
            path = work / f"{audience}.mjml"
            path.write_text(renderer.mjml(newsletter, audience), encoding="utf-8")
            sources.append(path)

        # mailroom's own share for the same step (MJML -> inlined HTML), warm, for the record
        render_all = repeat(lambda: [renderer.render(newsletter, a) for a in versions], args.runs * 3)
        result["mailroom_render_warm"] = stats(render_all)

        reason = ensure_reference()
        if reason:
            result["notes"].append(reason)
            result["reference"] = None
        else:
            result["reference"] = {"mjml": npm_version("mjml"), "juice": npm_version("juice"),
                                   "node": subprocess.run(["node", "--version"], capture_output=True,
                                                          text=True, check=False).stdout.strip()}
            mjml_bin, juice_bin = (str(NODE_MODULES / ".bin" / name) for name in NPM_PACKAGES)

            def reference_version(source: Path) -> float:
                started = time.perf_counter()
                raw, inlined = source.with_suffix(".raw.html"), source.with_suffix(".html")
                run([mjml_bin, str(source), "-o", str(raw)], work)
                run([juice_bin, str(raw), str(inlined)], work)
                return time.perf_counter() - started

            for source in sources:  # warm the disk cache of node_modules, as for python above
                reference_version(source)
            per_version: dict[str, list[float]] = {a: [] for a in versions}
            totals = []
            for _ in range(args.runs):
                total = 0.0
                for audience, source in zip(versions, sources, strict=True):
                    spent = reference_version(source)
                    per_version[audience].append(spent)
                    total += spent
                totals.append(total)
            result["reference_cold"] = stats(totals)
            result["reference_cold_per_version"] = {a: stats(t) for a, t in per_version.items()}
            done = subprocess.run(["node", str(ROOT / "bench" / "reference_pipeline.js"), str(NODE_MODULES),
                                   str(args.runs * 3), *map(str, sources)],
                                  capture_output=True, text=True, check=True)
            result["reference_warm"] = stats(json.loads(done.stdout.strip().splitlines()[-1]))
            sizes = {a: (work / f"{a}.html").stat().st_size for a in versions}
            ours = {a: len(renderer.render(newsletter, a).html.encode()) for a in versions}
            result["html_bytes"] = {"mailroom": ours, "reference": sizes}

    if not args.json:
        def show(label: str, figure: dict[str, Any] | None) -> None:
            if figure:
                print(f"{label:<44} median {figure['median']:7.3f} s  (min {figure['min']:.3f}, "
                      f"max {figure['max']:.3f}, {len(figure['runs'])} runs)")

        print(f"Sample newsletter {SAMPLE_SLUG}, versions: {', '.join(result['versions'])}")
        show("mailroom, cold process (python compose.py)", result["mailroom_cold"])
        show("mailroom, warm (compose_newsletter)", result["mailroom_warm"])
        show("mailroom, warm render only (all versions)", result["mailroom_render_warm"])
        show("reference cold (mjml CLI + juice CLI, all)", result.get("reference_cold"))
        show("reference warm (mjml2html + juice in node)", result.get("reference_warm"))
        for note in result["notes"]:
            print("Note:", note)
        if result.get("reference_cold"):
            print(f"mailroom / reference, cold: "
                  f"{result['mailroom_cold']['median'] / result['reference_cold']['median']:.2f}")
    emit(result, args.json)


if __name__ == "__main__":
    main()
