"""The per-recipient vocabulary: which fields a version leaves open, and how they are written.

Compose renders each audience's version once and leaves a token such as ``%%first_name%%`` wherever a
person's own value goes (stage 1); at send time each token is filled in for one recipient (stage 2,
docs/architecture.md, "Two-stage rendering"). Every module that writes, finds, checks or fills a token
uses this one module, so the syntax and the set of fields cannot drift apart.
"""

from __future__ import annotations

import re

# The closed set of per-recipient fields. ``greeting`` is "Dear Sam" or, when the first name is empty,
# the list's default greeting.
RECIPIENT_FIELDS: tuple[str, ...] = ("greeting", "first_name", "last_name", "unsubscribe_url", "recipient_id")

_MARK = "%%"

# Exactly the tokens of RECIPIENT_FIELDS; group 1 is the field's name.
FIELD_TOKEN = re.compile(re.escape(_MARK) + "(" + "|".join(map(re.escape, RECIPIENT_FIELDS)) + ")" + re.escape(_MARK))
# Anything shaped like a token, known or not (``%%class_code%%``, ``%%%%``); group 1 is the name, maybe empty.
ANY_TOKEN = re.compile(re.escape(_MARK) + r"([A-Za-z0-9_]*)" + re.escape(_MARK))


def token(name: str) -> str:
    """The placeholder written into a version for the field ``name``."""
    return f"{_MARK}{name}{_MARK}"


def fields_used(*templates: str) -> tuple[str, ...]:
    """The recipient fields whose tokens appear in any of ``templates``, sorted by name."""
    return tuple(sorted({match.group(1) for template in templates for match in FIELD_TOKEN.finditer(template)}))
