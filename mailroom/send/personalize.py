"""Stage 2 of rendering: fill one recipient's fields into a version's tokens.

The values come from ``recipient_values`` (dispatch builds them for every message). ``personalize``
fills a whole document at once: the preview page uses it for its sample reader. The transports fill
the same tokens their own faster way: the MIME builder (SMTP, outbox) stamps pre-encoded pieces of a
version (transports/mime.py), and SendGrid gets the values as ``substitutions`` (``html_values`` for
the HTML part) so one request serves many people.
"""

from __future__ import annotations

import html
from collections.abc import Mapping

from mailroom.tokens import FIELD_TOKEN


def recipient_values(*, first_name: str, last_name: str, default_greeting: str,
                     unsubscribe_url: str, recipient_id: str) -> dict[str, str]:
    """The raw (unescaped) per-recipient fields; the greeting falls back to the list's default."""
    first = first_name.strip()
    return {
        "greeting": greeting(first, default_greeting),
        "first_name": first,
        "last_name": last_name.strip(),
        "unsubscribe_url": unsubscribe_url,
        "recipient_id": recipient_id,
    }


DEAR = "Dear "  # before a reader's first name: "Dear Amelia"


def greeting(first_name: str, default_greeting: str) -> str:
    """"Dear Amelia" for a reader whose first name is known (trimmed), else their list's own greeting."""
    return DEAR + first_name if first_name else default_greeting


def html_values(values: Mapping[str, str]) -> dict[str, str]:
    """Values made safe to drop into HTML text or a quoted attribute."""
    return {name: html.escape(value, quote=True) for name, value in values.items()}


def personalize(template: str, values: Mapping[str, str], *, is_html: bool) -> str:
    """Replace every token in ``template``; values are HTML-escaped when ``is_html``."""
    ready = html_values(values) if is_html else dict(values)
    return FIELD_TOKEN.sub(lambda match: ready[match.group(1)], template)
