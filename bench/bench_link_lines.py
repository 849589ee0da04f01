"""How long the checks take to find the newsletter.md line of every link, for 1,000, 10,000 and 100,000 links.

A finding names the line it comes from; with many links that lookup used to be quadratic (2,000 links took
23 s). Target: 10,000 links under 2 s. The email here is the newsletter's own Markdown rendered to HTML with
tracking added to every address (what compose does, without the MJML layout, which these lookups never see),
so the figures are the source map's and the checks' own.

Run: python bench/bench_link_lines.py [--sizes 1000,10000,100000] [--json]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from benchlib import ROOT, emit

sys.path.insert(0, str(ROOT))

from mailroom.checks.rules import check_version
from mailroom.checks.sourcemap import build_source_map
from mailroom.checks.style import scan_html
from mailroom.compose.content import load_newsletter, markdown_parser

TARGET_SECONDS = 2.0  # for 10,000 links
FRONT = ("---\nsubject: Clubs this term\npreheader: Every club, with its page\ndate: 2024-11-08\n"
         "audiences: parents\n---\n")


def newsletter_with_links(folder: Path, count: int) -> Path:
    """A newsletter of ``count`` links, five to a paragraph, each paragraph worded differently."""
    lines = [FRONT, "# Clubs this term", ""]
    for start in range(0, count, 5):
        links = ", ".join(f"[club {n}](https://example.org/clubs/{n})" for n in range(start, min(start + 5, count)))
        lines += [f"Paragraph {start // 5}: this week {links} meet after school.", ""]
    folder.mkdir(parents=True)
    (folder / "newsletter.md").write_text("\n".join(lines), encoding="utf-8")
    return folder


def email_html(folder: Path) -> str:
    """The body as HTML with tracking on every link, in a page with an unsubscribe link."""
    md = markdown_parser()
    body = md.render((folder / "newsletter.md").read_text(encoding="utf-8").split("---\n", 2)[2])
    body = body.replace('" >', '">').replace('">club', '?utm_source=newsletter&amp;utm_campaign=clubs">club')
    return (f"<html><head><title>Clubs</title></head><body>{body}"
            '<p><a href="%%unsubscribe_url%%">Unsubscribe</a></p></body></html>')


def measure(count: int, full_checks: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = newsletter_with_links(Path(tmp) / "clubs", count)
        newsletter = load_newsletter(folder, ("parents",))
        html = email_html(folder)
        _, scan = scan_html(html)
        started = time.perf_counter()
        smap = build_source_map(newsletter, "parents")
        found = sum(smap.link(link.get("href", "")) is not None for link in scan.links)
        found_text = sum(smap.text(run.text) is not None for run in scan.runs)
        lookups = time.perf_counter() - started
        assert found == count + 0, f"only {found} of {count} links found their line"
        result = {"links": count, "lookup_s": lookups, "texts_found": found_text}
        if full_checks:
            text = "Unsubscribe: %%unsubscribe_url%%\n"
            started = time.perf_counter()
            check_version(html, text, audience="parents", newsletter=newsletter)
            result["check_version_s"] = time.perf_counter() - started
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="link counts, comma-separated")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object at the end")
    args = parser.parse_args()
    results = []
    for count in (int(n) for n in args.sizes.split(",")):
        result = measure(count, full_checks=count <= 10_000)
        results.append(result)
        full = f", all checks {result['check_version_s']:.2f} s" if "check_version_s" in result else ""
        print(f"{count:>7,} links: source lines found in {result['lookup_s']:.2f} s{full}")
    ten_thousand = next((r for r in results if r["links"] == 10_000), None)
    met = None if ten_thousand is None else ten_thousand["lookup_s"] < TARGET_SECONDS
    emit({"sizes": results, "target_seconds": TARGET_SECONDS, "met": met}, args.json)


if __name__ == "__main__":
    main()
