"""Link policy (which links may be in an email) and tracking parameters (utm_*) on the ones that may.

Tracking tells the office which links parents follow, without personal data: the parameters name the
newsletter, the medium and the audience, never the reader.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from mailroom.tokens import token

ALLOWED_SCHEMES = ("http", "https", "mailto", "tel")
DANGEROUS_SCHEMES = ("javascript", "data", "vbscript")
_SCHEME = re.compile(r"^\s*([a-zA-Z][a-zA-Z0-9+.-]*):")
_HREF = re.compile(r'(<a\b[^>]*?\bhref=")([^"]*)(")', re.IGNORECASE)


def check_link(url: str) -> str | None:
    """Why ``url`` cannot go in an email, or None when it can."""
    if not url.strip():
        return "a link has no address"
    match = _SCHEME.match(url)
    if match is None:
        if url.startswith("#"):
            return None
        return f"the link '{url}' should be a full address starting with https://"
    scheme = match.group(1).lower()
    if scheme in DANGEROUS_SCHEMES:
        return f"a {scheme}: link is not allowed in an email (it could run code or hide content): '{url[:60]}'"
    if scheme not in ALLOWED_SCHEMES:
        return f"the link '{url}' should start with https://, mailto: or tel:"
    return None


@dataclass(frozen=True)
class TrackingParameters:
    source: str
    medium: str
    campaign: str
    content: str

    def as_pairs(self) -> list[tuple[str, str]]:
        return [("utm_source", self.source), ("utm_medium", self.medium),
                ("utm_campaign", self.campaign), ("utm_content", self.content)]


def tag_url(url: str, tracking: TrackingParameters) -> str:
    """``url`` with utm_* added; the author's own query, fragment and utm_* values are kept."""
    scheme = _SCHEME.match(url)
    if scheme is None or scheme.group(1).lower() not in ("http", "https") or token("unsubscribe_url") in url:
        return url
    parts = urlsplit(url.strip())
    present = {key.lower() for key, _ in parse_qsl(parts.query, keep_blank_values=True)}
    added = urlencode([(key, value) for key, value in tracking.as_pairs() if key not in present])
    if not added:
        return url
    query = f"{parts.query}&{added}" if parts.query else added
    return urlunsplit(parts._replace(query=query, path=parts.path or "/"))


def tag_links_in_html(document: str, tag: Callable[[str], str]) -> tuple[str, list[str]]:
    """Rewrite every ``<a href>`` with ``tag``; returns the new document and the links in order."""
    links: list[str] = []

    def replace(match: re.Match[str]) -> str:
        url = tag(html.unescape(match.group(2)))
        links.append(url)
        return match.group(1) + html.escape(url, quote=True) + match.group(3)

    return _HREF.sub(replace, document), links


def strip_tracking(url: str) -> str:
    """``url`` without utm_* parameters, so clicks on one link can be counted together."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not k.lower().startswith("utm_")]
    return urlunsplit(parts._replace(query=urlencode(query)))
