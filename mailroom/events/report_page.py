"""The report as one self-contained HTML page: tables, a bar chart per audience, notes.

The page must open from file:// on an office PC with no network: CSS is inline, charts are inline SVG,
and a Content-Security-Policy forbids fetching anything. Each chart carries a text alternative that
says every number it shows, and the same numbers are in the table above it. Colours were chosen for
at least 4.5:1 contrast on white, so they do not depend on the school's brand colours.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment

from mailroom.events.report import NOT_TRACKED, REPORT_FILE, AudienceNumbers, NewsletterReport

INK = "#111827"  # 17.7:1 on white
REACH = "#1e3a8a"  # navy, 10.4:1
WAITING = "#92400e"  # amber-brown, 7.1:1
PROBLEM = "#b91c1c"  # red, 6.5:1

CHART_WIDTH = 640
LABEL_WIDTH = 130
BAR_SPACE = 420
ROW_HEIGHT = 30
BAR_HEIGHT = 18


@dataclass(frozen=True)
class Bar:
    label: str
    value: int
    colour: str
    y: int
    width: float


def chart_bars(numbers: AudienceNumbers) -> list[Bar]:
    """The bars of one audience's chart, scaled to its largest number (only "Sent" when not tracked)."""
    rows: list[tuple[str, int | None, str]] = [("Sent", numbers.sent, REACH)]
    if numbers.tracked:
        rows += [
            ("Delivered", numbers.delivered, REACH),
            ("Opened", numbers.opened, REACH),
            ("Clicked", numbers.clicked, REACH),
            ("Deferred", numbers.deferred, WAITING),
            ("Bounced", numbers.bounced, PROBLEM),
            ("Blocked", numbers.blocked, WAITING),
            ("Dropped", numbers.dropped, PROBLEM),
            ("Unsubscribed", numbers.unsubscribed, PROBLEM),
            ("Spam reports", numbers.spam_reports, PROBLEM),
        ]
    shown = [(label, value, colour) for label, value, colour in rows if value is not None]
    largest = max((value for _, value, _ in shown), default=0) or 1
    return [Bar(label, value, colour, 10 + i * ROW_HEIGHT, round(BAR_SPACE * value / largest, 1))
            for i, (label, value, colour) in enumerate(shown)]


def chart_description(numbers: AudienceNumbers) -> str:
    """The chart in words, for screen readers and anyone who cannot see the bars."""
    parts = [f"{bar.label.lower()} {bar.value}" for bar in chart_bars(numbers)]
    return f"{numbers.audience.capitalize()}: " + ", ".join(parts) + "."


_TEMPLATE = """<!doctype html>
<html lang="{{ language }}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>Newsletter report: {{ report.subject }}</title>
<style>
body { font-family: Arial, Helvetica, sans-serif; color: {{ ink }}; background: #ffffff; margin: 0;
       padding: 16px 24px 40px; line-height: 1.5; }
main { max-width: 1000px; }
h1 { font-size: 24px; margin-bottom: 4px; } h2 { font-size: 20px; margin-top: 32px; }
.meta { color: #374151; margin-top: 0; }
table { border-collapse: collapse; margin: 8px 0 16px; }
caption { text-align: left; font-weight: bold; padding-bottom: 6px; }
th, td { border: 1px solid #6b7280; padding: 6px 10px; text-align: right; vertical-align: top; }
th[scope=row], .link { text-align: left; }
thead th { background: #e5e7eb; }
.link { word-break: break-all; max-width: 560px; }
.table-scroll { overflow-x: auto; max-width: 100%; }
.share { display: block; font-size: 13px; color: #374151; }
figure { margin: 16px 0 24px; }
figcaption { font-weight: bold; margin-bottom: 4px; }
svg { max-width: 100%; height: auto; }
.notes li { margin-bottom: 6px; }
</style>
</head>
<body>
<main>
<h1>What happened to &ldquo;{{ report.subject }}&rdquo;</h1>
<p class="meta">Newsletter {{ report.slug }} &middot; {{ school }} &middot; report made
{{ report.generated_at.strftime("%d %B %Y at %H:%M") }} UTC from {{ report.events_counted }} delivery events.
People are counted once each; &ldquo;sent&rdquo; comes from {{ report.sent_from }}.</p>

<h2 id="by-audience">By audience</h2>
<div class="table-scroll" role="region" aria-labelledby="by-audience" tabindex="0">
<table aria-labelledby="by-audience">
<caption>How many people each version reached</caption>
<thead><tr>
<th scope="col">Audience</th><th scope="col">Sent</th><th scope="col">Delivered</th>
<th scope="col">Bounced</th><th scope="col">Blocked</th><th scope="col">Dropped</th><th scope="col">Deferred</th>
<th scope="col">Opened</th><th scope="col">Clicked (people)</th><th scope="col">Clicks (total)</th>
<th scope="col">Unsubscribed</th><th scope="col">Spam reports</th>
</tr></thead>
<tbody>
{% for a in report.audiences %}<tr>
<th scope="row">{{ a.audience }}</th><td>{{ a.sent }}</td>
{% if a.tracked %}<td>{{ a.delivered }}<span class="share">{{ a.share(a.delivered, a.sent) }} of sent</span></td>
<td>{{ a.bounced }}</td><td>{{ a.blocked }}</td><td>{{ a.dropped }}</td><td>{{ a.deferred }}</td>
<td>{% if a.opened is none %}not tracked{% else %}{{ a.opened }}<span class="share">{{ a.share(a.opened, a.delivered) }}
of delivered</span>{% endif %}</td>
<td>{{ a.clicked }}<span class="share">{{ a.share(a.clicked, a.delivered) }} of delivered</span></td>
<td>{{ a.clicks }}</td><td>{{ a.unsubscribed }}</td><td>{{ a.spam_reports }}</td>
{% else %}<td colspan="10" class="link">{{ not_tracked|capitalize }} ({{ a.untracked_via }}): delivery, bounces,
opens and clicks are reported only for emails sent through SendGrid.</td>{% endif %}
</tr>
{% else %}<tr><td colspan="12" class="link">Nothing has been sent or reported for this newsletter yet.</td></tr>
{% endfor %}</tbody>
</table>
</div>

{% for a in report.audiences %}{% set bars = chart_bars(a) %}{% set id = "chart-" ~ loop.index %}
<figure>
<figcaption id="{{ id }}-caption">{{ a.audience|capitalize }}: people at each step</figcaption>
<svg role="img" aria-labelledby="{{ id }}-title {{ id }}-desc" xmlns="http://www.w3.org/2000/svg"
     width="{{ width }}" height="{{ bars|length * row_height + 20 }}"
     viewBox="0 0 {{ width }} {{ bars|length * row_height + 20 }}">
<title id="{{ id }}-title">Bar chart for {{ a.audience }}</title>
<desc id="{{ id }}-desc">{{ describe(a) }}</desc>
{% for bar in bars %}<g>
<text x="{{ label_width - 8 }}" y="{{ bar.y + 14 }}" text-anchor="end" font-size="14"
      fill="{{ ink }}">{{ bar.label }}</text>
<rect x="{{ label_width }}" y="{{ bar.y }}" width="{{ bar.width }}" height="{{ bar_height }}"
      fill="{{ bar.colour }}"></rect>
<text x="{{ label_width + bar.width + 6 }}" y="{{ bar.y + 14 }}" font-size="14"
      fill="{{ ink }}">{{ bar.value }}</text>
</g>
{% endfor %}</svg>
</figure>
{% endfor %}

<h2 id="links">Clicks per link</h2>
{% if report.links %}<table aria-labelledby="links">
<caption>Links matched without their tracking (utm_) parameters</caption>
<thead><tr><th scope="col" class="link">Link</th><th scope="col">People</th><th scope="col">Clicks</th></tr></thead>
<tbody>
{% for link in report.links %}<tr><td class="link">{{ link.label }}</td>
<td>{{ link.clicked }}</td><td>{{ link.clicks }}</td></tr>
{% endfor %}</tbody>
</table>
{% else %}<p>No links were clicked.</p>{% endif %}

<h2>Reading these numbers</h2>
<ul class="notes">
{% for note in report.notes %}<li>{{ note }}</li>
{% endfor %}</ul>
</main>
</body>
</html>
"""

_env = Environment(autoescape=True, trim_blocks=False, lstrip_blocks=False, keep_trailing_newline=True)
_page = _env.from_string(_TEMPLATE)


def render_report_page(report: NewsletterReport, language: str = "en-GB", school: str = "") -> str:
    """The report as an HTML document (a string)."""
    return _page.render(
        report=report, language=language, school=school, chart_bars=chart_bars, describe=chart_description,
        not_tracked=NOT_TRACKED,
        ink=INK, width=CHART_WIDTH, label_width=LABEL_WIDTH, row_height=ROW_HEIGHT, bar_height=BAR_HEIGHT)


def write_report_page(report: NewsletterReport, newsletter_dir: Path, language: str = "en-GB",
                      school: str = "") -> Path:
    """Write ``<newsletter>/build/report.html`` atomically (a half-written page is never left behind)."""
    build_dir = Path(newsletter_dir) / "build"
    build_dir.mkdir(parents=True, exist_ok=True)
    target = build_dir / REPORT_FILE
    page = render_report_page(report, language, school)
    handle, temp = tempfile.mkstemp(dir=build_dir, prefix=".report-", suffix=".html")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(page)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return target
