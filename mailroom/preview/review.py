"""The translation review page (build/review.html): each language beside the English, block by block.

Written for the colleague or parent volunteer who reads the language: the English on one side, the
translation on the other, in the order of the newsletter, with the engine's problems on the block they
concern, so a wrong word is found by reading along rather than by hunting through two emails. Like the
preview, one self-contained page that works from file:// with nothing fetched.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from markdown_it import MarkdownIt

from mailroom.checks.rules import Finding
from mailroom.compose.content import Block, Newsletter, markdown_parser
from mailroom.translate.languages import describe, direction, own_name
from mailroom.translate.step import MACHINE, SCHOOL, LanguageOutcome

e = html.escape
REVIEW_PAGE = "review.html"


def review_page(english: Newsletter, outcomes: Sequence[LanguageOutcome], school_language: str) -> str:
    """The whole review page as one HTML document (inline CSS, no scripts)."""
    md = markdown_parser()
    nav = "".join(f'<li><a href="#lang-{e(o.language)}">{e(describe(o.language))}</a></li>' for o in outcomes)
    sections = "".join(_language_section(english, outcome, md, school_language) for outcome in outcomes)
    return f"""<!doctype html>
<html lang="en-GB"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Translations: {e(english.front.subject)}</title>
<style>{_CSS}</style></head>
<body>
<header class="top"><div class="wrap">
  <p class="eyebrow">Translation review</p>
  <h1>{e(english.front.subject)}</h1>
  <p class="lead">Each language beside the English, block by block. If you read the language, read along and
  tell the office about anything wrong. <a href="preview.html">Back to the preview</a></p>
  <nav aria-label="Languages"><ul>{nav}</ul></nav>
</div></header>
<main class="wrap">{sections}</main>
</body></html>
"""


def _language_section(english: Newsletter, outcome: LanguageOutcome, md: MarkdownIt, school_language: str) -> str:
    tag = outcome.language
    title = f"{describe(tag)} · {own_name(tag)}"
    if outcome.source == SCHOOL:
        how = f"The school's own translation, from newsletter.{tag}.md. Readers see no notice."
    elif outcome.source == MACHINE:
        how = (f"Translated automatically by {outcome.engine}. Readers see a notice saying so, in their language, "
               "at the top of the email.")
    else:
        how = "Not made: readers of this language get the English version."
    problems = "".join(_problem(f) for f in outcome.findings)
    problems_box = (f'<ul class="problems" aria-label="Problems with the {e(describe(tag))} translation">{problems}'
                    "</ul>") if problems else '<p class="all-clear">No problems found.</p>'
    table = _blocks_table(english, outcome, md, school_language) if outcome.newsletter is not None else ""
    return f"""
<section id="lang-{e(tag)}" class="card" aria-labelledby="title-{e(tag)}">
  <h2 id="title-{e(tag)}">{e(title)}</h2>
  <p class="hint">{e(how)}</p>
  {problems_box}
  {table}
</section>"""


def _problem(finding: Finding) -> str:
    where = f" (newsletter.md, line {finding.source_line})" if finding.source_line else ""
    return f'<li class="problem">{e(finding.message)}{e(where)}</li>'


def _blocks_table(english: Newsletter, outcome: LanguageOutcome, md: MarkdownIt, school_language: str) -> str:
    translated = outcome.newsletter
    assert translated is not None
    tag = outcome.language
    flagged = {f.source_line: f for f in outcome.findings if f.source_line}
    cell = f'lang="{e(tag)}" dir="{direction(tag)}" data-label="{e(own_name(tag))}"'
    rows = [
        _row("Subject", e(english.front.subject), e(translated.front.subject), cell, None),
        _row("Preheader", e(english.front.preheader), e(translated.front.preheader), cell, None),
    ]
    for index, block in enumerate(english.blocks):
        other = translated.blocks[index] if index < len(translated.blocks) else None
        theirs = _block_html(other, md) if other is not None else '<p class="missing">(nothing here)</p>'
        rows.append(_row(_label(block), _block_html(block, md), theirs, cell, flagged.get(block.line)))
    return f"""<table class="side-by-side">
  <thead><tr><th scope="col" class="what">Block</th><th scope="col" lang="{e(school_language)}">English</th>
  <th scope="col" {cell}>{e(own_name(tag))}</th></tr></thead>
  <tbody>{"".join(rows)}</tbody></table>"""


def _row(label: str, english: str, translated: str, cell: str, finding: Finding | None) -> str:
    note = f'<p class="row-problem"><strong>Kept in English:</strong> {e(finding.message)}</p>' if finding else ""
    css = ' class="flagged"' if finding else ""
    return (f'<tr{css}><th scope="row" class="what">{e(label)}</th><td>{english}</td>'
            f'<td {cell}>{translated}{note}</td></tr>')


def _label(block: Block) -> str:
    kind = {"text": "Text", "alert": "Alert", "button": "Button", "image": "Picture"}[block.kind]
    only = f", only {', '.join(sorted(block.audiences))}" if block.audiences is not None else ""
    return f"{kind}, line {block.line}{only}"


def _block_html(block: Block, md: MarkdownIt) -> str:
    if block.kind == "button":
        return f'<p class="button">{e(block.label)}</p><p class="url">{e(block.url)}</p>'
    if block.kind == "image" and block.image is not None:
        return f'<p class="alt"><span class="tag">Picture description</span> {e(block.image.alt)}</p>'
    body = md.renderer.render(block.tokens, md.options, {})
    title = f'<p class="alert-title">{e(block.title)}</p>' if block.title else ""
    return title + body


_CSS = """
* { box-sizing: border-box; }
body { margin: 0; background: #eef1f5; color: #111827;
       font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", Arial, sans-serif; }
a { color: #1d4ed8; }
.wrap { max-width: 1280px; margin: 0 auto; padding: 0 24px; }
.top { background: #13294b; color: #fff; padding: 20px 0 12px; }
.top a { color: #fff; }
.eyebrow { margin: 0; text-transform: uppercase; letter-spacing: .08em; font-size: 14px; color: #dbe4f0; }
.top h1 { margin: 4px 0 8px; font-size: 28px; line-height: 1.25; }
.lead { margin: 0 0 12px; max-width: 70ch; }
.top nav ul { list-style: none; margin: 0; padding: 0; display: flex; flex-wrap: wrap; gap: 4px 20px; }
main.wrap { padding-top: 24px; padding-bottom: 24px; }
.card { background: #fff; border: 1px solid #d1d5db; border-radius: 10px; padding: 20px 24px; margin: 0 0 24px; }
.card h2 { margin: 0 0 4px; font-size: 22px; }
.hint { margin: 0 0 12px; color: #4b5563; }
.problems { margin: 0 0 16px; padding: 0; list-style: none; }
.problem { margin: 0 0 8px; padding: 10px 14px; border-radius: 8px; background: #fffbeb; color: #92400e;
           border-left: 5px solid #b45309; }
.all-clear { margin: 0 0 16px; padding: 10px 14px; border-radius: 8px; background: #f0fdf4; color: #166534; }
.side-by-side { width: 100%; border-collapse: collapse; table-layout: fixed; }
.side-by-side th, .side-by-side td { border-top: 1px solid #d1d5db; padding: 10px 12px; vertical-align: top;
                                     text-align: start; overflow-wrap: anywhere; }
.side-by-side thead th { border-top: 0; border-bottom: 2px solid #d1d5db; }
.side-by-side .what { width: 130px; font-size: 14px; color: #4b5563; font-weight: 600; }
.side-by-side p, .side-by-side ul, .side-by-side ol { margin: 0 0 8px; }
.side-by-side h1, .side-by-side h2, .side-by-side h3 { margin: 0 0 8px; font-size: 18px; }
.flagged td:last-child { background: #fffbeb; }
.row-problem { color: #92400e; font-size: 14px; }
.alert-title { font-weight: 700; color: #7c2d12; }
.button { display: inline-block; padding: 6px 14px; border-radius: 6px; background: #0f766e; color: #fff;
          font-weight: 700; }
.url { font-size: 14px; color: #4b5563; direction: ltr; unicode-bidi: isolate; }
.tag { display: inline-block; font-size: 13px; padding: 0 8px; border-radius: 6px; background: #e0e7ff;
       color: #1e3a8a; }
.missing { color: #b91c1c; }
@media (max-width: 700px) {
  .wrap { padding: 0 12px; } .card { padding: 16px 12px; }
  .side-by-side, .side-by-side tbody, .side-by-side tr, .side-by-side th, .side-by-side td { display: block;
    width: 100%; }
  .side-by-side thead { display: none; }
  .side-by-side td::before { display: block; font-size: 13px; color: #4b5563; font-weight: 600; }
  .side-by-side td:nth-child(2)::before { content: "English"; }
  .side-by-side td:nth-child(3)::before { content: attr(data-label); }
  .side-by-side .what { width: 100%; border-top: 2px solid #9ca3af; }
  .side-by-side td { border-top: 0; }
}
"""
