"""The preview page (build/preview.html): what every reader will see, and what the checks found.

One self-contained page that works from file:// with no server and no network: the inbox line
(sender, subject, preheader), each audience's version at phone and desktop width, its plain-text
part and its tracked links, and the preflight findings. Each version is shown in an iframe whose
document has the tokens filled with a sample reader's values (no first name on file, so the
list's default greeting), which is what a parent with no name in audiences.csv will see.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Mapping, Sequence
from urllib.parse import parse_qsl, urlsplit

from mailroom.checks.rules import Finding, merge_audiences
from mailroom.compose.links import strip_tracking
from mailroom.compose.render import RenderedVersion
from mailroom.send.personalize import personalize, recipient_values
from mailroom.settings import Settings
from mailroom.tokens import token
from mailroom.translate.languages import describe
from mailroom.versions import VersionKey

PHONE_WIDTH = 375
DESKTOP_WIDTH = 600
FRAME_HEIGHT = 760
PREVIEW_UNSUBSCRIBE = "#unsubscribe-preview"
# Around the header's status line, so the live preview can say when the page is not up to date.
STATUS_START, STATUS_END = "<!-- status -->", "<!-- /status -->"

e = html.escape


def sample_values(settings: Settings, audience: str) -> dict[str, str]:
    """What the tokens show in the preview: a reader with no name on file, greeted as the version's first list."""
    greeting_list = VersionKey.from_slug(audience).greeting_list
    return recipient_values(first_name="", last_name="", default_greeting=settings.lists[greeting_list].greeting,
                            unsubscribe_url=PREVIEW_UNSUBSCRIBE, recipient_id="preview")


def sample_document(settings: Settings, audience: str, document: str) -> str:
    """A version's HTML as the sample reader gets it."""
    return personalize(document, sample_values(settings, audience), is_html=True)


def version_title(slug: str) -> str:
    """'Parents', or 'Parents, Polish (pl)' for a version in another language."""
    lists, _, language = slug.partition(".")
    name = " + ".join(part.capitalize() for part in lists.split("+"))
    return f"{name}, {describe(language)}" if language else name


def preview_page(settings: Settings, subject: str, preheader: str, versions: Mapping[str, RenderedVersion],
                 findings: Sequence[Finding] = (), *, date: dt.date | None = None, review_page: str = "") -> str:
    """The whole preview page as one HTML document (inline CSS, no scripts, nothing fetched).

    ``review_page``: the file name of the translation review page, linked from the top when there is one.
    """
    """The whole preview page as one HTML document (inline CSS, no scripts, nothing fetched)."""
    errors = sum(1 for f in findings if f.is_error)
    warnings = len(findings) - errors
    merged = merge_audiences(findings)
    errors_shown = sum(1 for m in merged if m.finding.is_error)
    warnings_shown = len(merged) - errors_shown
    if errors:
        status = (f'<p class="status status-error"><strong>Cannot be sent yet:</strong> '
                  f'{_count(errors_shown, "error")} to fix'
                  f'{", and " + _count(warnings_shown, "warning") + " to look at" if warnings else ""}.</p>')
    elif warnings:
        status = (f'<p class="status status-warning"><strong>Ready to send</strong>, '
                  f'with {_count(warnings_shown, "warning")} to look at first.</p>')
    else:
        status = '<p class="status status-ok"><strong>Ready to send:</strong> the checks found nothing wrong.</p>'
    nav = "".join(f'<li><a href="#version-{e(a)}">{e(version_title(a))} version</a></li>' for a in versions)
    if review_page:
        nav += f'<li><a href="{e(review_page)}">Translations, side by side</a></li>'
    sections = "".join(_version_section(settings, audience, version) for audience, version in versions.items())
    return f"""<!doctype html>
<html lang="en-GB"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Preview: {e(subject)}</title>
<style>{_CSS}</style></head>
<body>
<a class="skip" href="#main">Skip to the preview</a>
<header class="top">
  <div class="wrap">
    <p class="eyebrow">Newsletter preview</p>
    <h1>{e(subject)}</h1>
    {STATUS_START}{status}{STATUS_END}
    <nav aria-label="On this page"><ul>
      <li><a href="#inbox">In the inbox</a></li><li><a href="#checks">Checks</a></li>{nav}
    </ul></nav>
  </div>
</header>
<main id="main" class="wrap">
{_inbox_section(settings, subject, preheader, date)}
{_findings_section(merged, errors, warnings)}
{sections}
</main>
<footer class="wrap foot"><p>Made by mailroom when the newsletter was composed. Names and the unsubscribe
link are filled in for each reader when it is sent; here every reader has no first name on file.</p></footer>
</body></html>
"""


def replace_status(page: str, status: str) -> str:
    """``page`` with its header's status line replaced by ``status`` (HTML)."""
    start, end = page.find(STATUS_START), page.find(STATUS_END)
    if start < 0 or end < start:
        return page
    return page[:start + len(STATUS_START)] + status + page[end:]


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _inbox_section(settings: Settings, subject: str, preheader: str, date: dt.date | None) -> str:
    when = f"{date.day} {date:%b}" if date else "Today"
    sender = e(settings.sender.name)
    return f"""
<section id="inbox" class="card" aria-labelledby="inbox-title">
  <h2 id="inbox-title">In the inbox</h2>
  <p class="hint">How the newsletter appears in a list of emails, before anyone opens it. Long subjects and
  preheaders are cut off, phones sooner than desktops.</p>
  <div class="inboxes">
    <figure class="inbox-desktop">
      <figcaption>On a desktop</figcaption>
      <div class="mail-row" data-testid="inbox-desktop">
        <span class="mail-from">{sender}</span>
        <span class="mail-line"><span class="mail-subject">{e(subject)}</span>
          <span class="mail-pre"> – {e(preheader)}</span></span>
        <span class="mail-date">{e(when)}</span>
      </div>
      <div class="mail-row mail-other" aria-hidden="true"><span class="mail-from">Another sender</span>
        <span class="mail-line"><span class="mail-subject">Other mail</span></span><span class="mail-date"></span></div>
    </figure>
    <figure class="inbox-phone">
      <figcaption>On a phone</figcaption>
      <div class="phone-row" data-testid="inbox-phone">
        <div class="phone-top"><span class="mail-from">{sender}</span><span class="mail-date">{e(when)}</span></div>
        <div class="mail-subject one-line">{e(subject)}</div>
        <div class="mail-pre two-lines">{e(preheader) or "(no preheader: the first words of the email show here)"}</div>
      </div>
    </figure>
  </div>
</section>"""


def _findings_section(merged: Sequence, errors: int, warnings: int) -> str:
    if not merged:
        body = '<p class="all-clear">No problems found: no errors and no warnings.</p>'
    else:
        items = []
        for entry in merged:
            finding: Finding = entry.finding
            kind = "Error" if finding.is_error else "Warning"
            where = e(finding.where()) if finding.source_line else "from the templates or the whole email"
            audiences = ", ".join(entry.audiences) if entry.audiences else "every version"
            what = f" ({e(finding.block)})" if finding.block else ""
            items.append(f"""<li class="finding finding-{e(finding.severity)}" data-code="{e(finding.code)}">
  <span class="badge">{kind}</span>
  <div><p class="finding-message">{e(finding.message)}</p>
  <p class="finding-where">{where}{what} · {e(audiences)}</p></div></li>""")
        body = f'<ul class="findings">{"".join(items)}</ul>'
    explain = ("Errors stop the newsletter from being sent until they are fixed in newsletter.md (or the "
               "templates) and it is composed again. Warnings are worth fixing but do not stop a send.")
    return f"""
<section id="checks" class="card" aria-labelledby="checks-title">
  <h2 id="checks-title">Checks <span class="counts">{_count(errors, "error")}, {_count(warnings, "warning")}</span></h2>
  <p class="hint">{explain}</p>
  {body}
</section>"""


def _version_section(settings: Settings, audience: str, version: RenderedVersion) -> str:
    values = sample_values(settings, version.audience)
    document = personalize(version.html, values, is_html=True)
    text = personalize(version.text, values, is_html=False)
    name = version_title(audience)
    lists = VersionKey.from_slug(audience).lists
    on = (f"the {e(lists[0])} list" if len(lists) == 1 else
          "the " + ", ".join(e(n) for n in lists[:-1]) + f" and {e(lists[-1])} lists")
    greeted = f', greeted as “{e(values["greeting"])}”' if token("greeting") in version.html else ""
    return f"""
<section id="version-{e(audience)}" class="version card" aria-labelledby="title-{e(audience)}">
  <h2 id="title-{e(audience)}">{e(name)} version</h2>
  <p class="hint">What a reader on {on} sees{_in_language(audience)}{greeted}.</p>
  <div class="frames">
    <figure class="device phone">
      <figcaption>Phone, {PHONE_WIDTH} px wide<span class="narrow-note-inline"> (here: as wide as your screen)</span>
      </figcaption>
      <iframe title="{e(name)} version on a phone, {PHONE_WIDTH} pixels wide" width="{PHONE_WIDTH}"
              height="{FRAME_HEIGHT}" srcdoc="{e(document)}"></iframe>
    </figure>
    <figure class="device desktop">
      <figcaption>Desktop, {DESKTOP_WIDTH} px wide</figcaption>
      <iframe title="{e(name)} version on a desktop, {DESKTOP_WIDTH} pixels wide" width="{DESKTOP_WIDTH}"
              height="{FRAME_HEIGHT}" srcdoc="{e(document)}"></iframe>
    </figure>
    <p class="narrow-note">Open this page on a wider screen to see the desktop version too.</p>
  </div>
  <div class="parts">
    <section aria-labelledby="text-{e(audience)}">
      <h3 id="text-{e(audience)}">Plain-text part</h3>
      <p class="hint">Shown by email programs that do not show pictures and layout.</p>
      <pre class="text-part" tabindex="0" role="region" aria-label="{e(name)} plain-text part">{e(text)}</pre>
    </section>
    <section aria-labelledby="links-{e(audience)}">
      <h3 id="links-{e(audience)}">Links ({len(version.links)})</h3>
      <p class="hint">Web links carry tracking labels (with source “{e(settings.tracking.utm_source)}” and
      medium “{e(settings.tracking.utm_medium)}”), so the school can see which links readers follow, never who.</p>
      <div class="links-box" tabindex="0" role="region" aria-label="{e(name)} links">{_links_table(version.links)}</div>
    </section>
  </div>
</section>"""


def _in_language(slug: str) -> str:
    language = slug.partition(".")[2]
    return f" in {e(describe(language))}" if language else ""


def _links_table(links: Sequence[str]) -> str:
    rows = []
    for url in links:
        parts = urlsplit(url)
        if token("unsubscribe_url") in url:
            shown, tracking = "Unsubscribe link (each reader's own)", "not tracked"
        elif parts.scheme in ("mailto", "tel"):
            shown, tracking = url, "not tracked"
        else:
            shown = strip_tracking(url).rstrip("?")
            utm = [(k, v) for k, v in parse_qsl(parts.query) if k in ("utm_campaign", "utm_content")]
            tracking = " ".join(f'<span class="chip">{e(k.removeprefix("utm_"))}: {e(v)}</span>' for k, v in utm)
            tracking = tracking or "not tracked"
        rows.append(f'<tr><td class="url">{e(shown)}</td><td>{tracking}</td></tr>')
    if not rows:
        return "<p>This version has no links.</p>"
    return ('<table class="links"><thead><tr><th scope="col">Address</th><th scope="col">Tracking</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


_CSS = """
:root { --ink: #111827; --muted: #4b5563; --line: #d1d5db; --page: #eef1f5; --card: #ffffff;
        --top: #13294b; --err: #b91c1c; --err-bg: #fef2f2; --warn: #92400e; --warn-bg: #fffbeb;
        --ok: #166534; --ok-bg: #f0fdf4; --link: #1d4ed8; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--page); color: var(--ink);
       font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; }
a { color: var(--link); }
.wrap { max-width: 1280px; margin: 0 auto; padding: 0 24px; }
.skip { position: absolute; left: -9999px; top: 8px; background: #fff; color: var(--ink); padding: 8px 12px; }
.skip:focus { left: 8px; z-index: 10; }
.top { background: var(--top); color: #fff; padding: 20px 0 8px; }
.top a { color: #fff; }
.eyebrow { margin: 0; text-transform: uppercase; letter-spacing: .08em; font-size: 14px; color: #dbe4f0; }
.top h1 { margin: 4px 0 12px; font-size: 28px; line-height: 1.25; }
.status { display: inline-block; margin: 0 0 12px; padding: 8px 14px; border-radius: 6px; font-size: 16px; }
.status-error { background: var(--err-bg); color: var(--err); }
.status-warning { background: var(--warn-bg); color: var(--warn); }
.status-ok { background: var(--ok-bg); color: var(--ok); }
.top nav ul { list-style: none; margin: 0; padding: 0; display: flex; flex-wrap: wrap; gap: 4px 20px; }
.top nav a { display: inline-block; padding: 6px 0; font-size: 15px; }
main.wrap { padding-top: 24px; padding-bottom: 8px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 20px 24px;
        margin: 0 0 24px; }
.card h2 { margin: 0 0 4px; font-size: 22px; }
.card h3 { margin: 0 0 4px; font-size: 18px; }
.hint { margin: 0 0 14px; color: var(--muted); font-size: 15px; }
.counts { font-size: 16px; font-weight: normal; color: var(--muted); margin-left: 8px; }
figure { margin: 0; }
figcaption { font-size: 14px; font-weight: 600; color: var(--muted); margin: 0 0 8px; }
.inboxes { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
.inbox-desktop { flex: 1 1 560px; min-width: 0; }
.mail-row { display: flex; gap: 14px; align-items: baseline; padding: 10px 14px; border: 1px solid var(--line);
            background: #f8fafc; font-size: 15px; min-width: 0; }
.mail-row + .mail-row { border-top: 0; background: #fff; }
.mail-other { color: var(--muted); }
.mail-row .mail-from { flex: 0 0 190px; font-weight: 700; white-space: nowrap; overflow: hidden;
                       text-overflow: ellipsis; }
.mail-line { flex: 1 1 auto; min-width: 0; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.mail-subject { font-weight: 700; }
.mail-pre { color: var(--muted); }
.mail-date { flex: 0 0 auto; font-size: 14px; color: var(--muted); font-weight: 600; }
.inbox-phone { flex: 0 0 340px; }
.phone-row { width: 340px; padding: 12px 16px; border: 1px solid var(--line); border-radius: 12px; background: #fff; }
.phone-top { display: flex; justify-content: space-between; gap: 8px; }
.phone-top .mail-from { font-weight: 700; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.one-line { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.two-lines { display: -webkit-box; -webkit-line-clamp: 2; -webkit-box-orient: vertical; overflow: hidden;
             font-size: 15px; }
.findings { list-style: none; margin: 0; padding: 0; }
.finding { display: flex; gap: 14px; align-items: flex-start; padding: 12px 14px; border-radius: 8px;
           margin: 0 0 8px; border-left: 5px solid; }
.finding-error { background: var(--err-bg); border-color: var(--err); }
.finding-warning { background: var(--warn-bg); border-color: #b45309; }
.badge { flex: 0 0 auto; font-size: 14px; font-weight: 700; padding: 2px 10px; border-radius: 999px; color: #fff;
         min-width: 92px; text-align: center; }
.finding-error .badge { background: var(--err); }
.finding-warning .badge { background: var(--warn); }
.finding-message { margin: 0; }
.finding-where { margin: 2px 0 0; font-size: 14px; color: var(--muted); }
.all-clear { margin: 0; padding: 12px 14px; border-radius: 8px; background: var(--ok-bg); color: var(--ok);
             font-weight: 600; }
.frames { display: flex; flex-wrap: wrap; gap: 32px; align-items: flex-start; margin: 8px 0 24px; }
.device iframe { display: block; background: #fff; border: 0; }
.phone iframe { border: 10px solid #1f2937; border-width: 14px 10px 22px; border-radius: 28px;
               box-sizing: content-box; }
.desktop iframe { border: 1px solid #9ca3af; border-top: 26px solid #d1d5db; border-radius: 8px 8px 0 0;
                  box-sizing: content-box; }
.parts { display: grid; grid-template-columns: minmax(0, 680px) minmax(0, 1fr); gap: 32px; }
.text-part { margin: 0; padding: 14px 16px; max-height: 640px; overflow: auto;
             background: #f8fafc; border: 1px solid var(--line); border-radius: 8px;
             white-space: pre-wrap; overflow-wrap: anywhere; font: 13px/1.5 ui-monospace, Menlo, Consolas, monospace; }
.links { width: 100%; border-collapse: collapse; font-size: 14px; table-layout: fixed; }
.links th:first-child { width: 58%; }
.links th { text-align: left; border-bottom: 2px solid var(--line); padding: 6px 8px; }
.links td { border-bottom: 1px solid var(--line); padding: 8px; vertical-align: top; }
.links .url { overflow-wrap: anywhere; }
.text-part:focus-visible, .links-box:focus-visible { outline: 3px solid var(--link); outline-offset: 2px; }
.links-box { max-height: 640px; overflow: auto; border: 1px solid var(--line); border-radius: 8px; }
.chip { display: inline-block; margin: 0 4px 4px 0; padding: 1px 8px; border-radius: 6px; background: #e0e7ff;
        color: #1e3a8a; overflow-wrap: anywhere; }
.narrow-note-inline { display: none; }
.narrow-note { display: none; margin: 0; color: var(--muted); font-size: 15px; }
.foot { color: var(--muted); font-size: 14px; padding-bottom: 32px; }
#live-status { margin: 0 0 12px; }
@media (max-width: 900px) { .parts { grid-template-columns: minmax(0, 1fr); } }
@media (max-width: 700px) { .wrap { padding: 0 12px; } .card { padding: 16px; }
  .frames, .device { width: 100%; } .device iframe { width: 100%; box-sizing: border-box; }
  .device.desktop { display: none; } .narrow-note { display: block; } .narrow-note-inline { display: inline; }
  .mail-row .mail-from { flex-basis: 110px; } .inbox-phone, .phone-row { width: 100%; flex-basis: auto; } }
"""
