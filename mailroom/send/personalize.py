"""Stage 2 of rendering: fill one recipient's fields into a version's tokens.

SMTP and the outbox call ``personalize`` per message; the SendGrid transport hands the same values
to SendGrid as ``substitutions`` (``html_values`` / ``text_values``) so one request serves many people.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping

from mailroom.compose.build import RECIPIENT_FIELDS, token

_TOKEN = re.compile("|".join(re.escape(token(name)) for name in RECIPIENT_FIELDS))


def recipient_values(*, first_name: str, last_name: str, default_greeting: str,
                     unsubscribe_url: str, recipient_id: str) -> dict[str, str]:
    """The raw (unescaped) per-recipient fields; the greeting falls back to the list's default."""
    first = first_name.strip()
    return {
        "greeting": f"Dear {first}" if first else default_greeting,
        "first_name": first,
        "last_name": last_name.strip(),
        "unsubscribe_url": unsubscribe_url,
        "recipient_id": recipient_id,
    }


def html_values(values: Mapping[str, str]) -> dict[str, str]:
    """Values made safe to drop into HTML text or a quoted attribute."""
    return {name: html.escape(value, quote=True) for name, value in values.items()}


def personalize(template: str, values: Mapping[str, str], *, is_html: bool) -> str:
    """Replace every token in ``template``; values are HTML-escaped when ``is_html``."""
    ready = html_values(values) if is_html else dict(values)
    return _TOKEN.sub(lambda m: ready[m.group(0)[2:-2]], template)
