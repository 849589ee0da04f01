"""The preview page: every audience's version as a phone and a desktop would show it, from file://.

Each version is shown in an iframe whose document has the tokens filled with a sample reader's
values (the list's default greeting), so staff see what a parent with no first name on file sees.
"""

from __future__ import annotations

import html
from collections.abc import Mapping

from mailroom.personalize import personalize, recipient_values
from mailroom.render import RenderedVersion
from mailroom.settings import Settings

PHONE_WIDTH = 375
DESKTOP_WIDTH = 600


def sample_values(settings: Settings, audience: str) -> dict[str, str]:
    """What the tokens show in the preview: a reader with no name on file."""
    return recipient_values(first_name="", last_name="", default_greeting=settings.lists[audience].greeting,
                            unsubscribe_url="#unsubscribe-preview", recipient_id="preview")


def preview_page(settings: Settings, subject: str, preheader: str,
                 versions: Mapping[str, RenderedVersion]) -> str:
    """A self-contained HTML page (no scripts, no network) showing every version side by side."""
    e = html.escape
    sections = []
    for audience, version in versions.items():
        values = sample_values(settings, audience)
        document = personalize(version.html, values, is_html=True)
        text = personalize(version.text, values, is_html=False)
        links = "".join(f"<li><a href=\"{e(url)}\">{e(url)}</a></li>" for url in version.links)
        sections.append(f"""
<section class="version" id="version-{e(audience)}" aria-labelledby="title-{e(audience)}">
  <h2 id="title-{e(audience)}">{e(audience.capitalize())} version</h2>
  <div class="inbox" aria-label="How the inbox list shows it">
    <strong>{e(settings.sender.name)}</strong><span class="subject">{e(subject)}</span>
    <span class="preheader">{e(preheader)}</span>
  </div>
  <div class="frames">
    <figure><figcaption>Phone ({PHONE_WIDTH} px)</figcaption>
      <iframe class="phone" title="{e(audience)} version on a phone" width="{PHONE_WIDTH}" height="720"
              srcdoc="{e(document)}"></iframe></figure>
    <figure><figcaption>Desktop ({DESKTOP_WIDTH} px)</figcaption>
      <iframe class="desktop" title="{e(audience)} version on a desktop" width="{DESKTOP_WIDTH + 40}" height="720"
              srcdoc="{e(document)}"></iframe></figure>
  </div>
  <details><summary>Plain-text part</summary><pre class="text-part">{e(text)}</pre></details>
  <details><summary>Tracked links ({len(version.links)})</summary><ul class="links">{links}</ul></details>
</section>""")
    return f"""<!doctype html>
<html lang="en-GB"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Preview: {e(subject)}</title>
<style>
body {{ font-family: Arial, Helvetica, sans-serif; margin: 0; padding: 16px 24px;
       background: #e5e7eb; color: #111827; }}
h1 {{ font-size: 22px; }} h2 {{ font-size: 19px; margin-top: 32px; }}
.inbox {{ background: #fff; border: 1px solid #9ca3af; padding: 10px 14px; max-width: 1020px; }}
.inbox .subject {{ margin-left: 12px; font-weight: bold; }} .inbox .preheader {{ margin-left: 8px; color: #4b5563; }}
.frames {{ display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }}
figure {{ margin: 12px 0; }} figcaption {{ font-size: 14px; margin-bottom: 6px; color: #374151; }}
iframe {{ border: 1px solid #6b7280; background: #fff; }}
pre {{ background: #fff; padding: 12px; white-space: pre-wrap; max-width: 80ch; border: 1px solid #9ca3af; }}
</style></head>
<body><main>
<h1>Preview: {e(subject)}</h1>
<p>Each version as a phone and a desktop show it. Names and the unsubscribe link are filled in when it is sent.</p>
{"".join(sections)}
</main></body></html>
"""
