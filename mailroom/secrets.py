"""Secrets, and the masking that keeps them out of every message mailroom prints.

A secret can leak in two ways: printed from where it belongs (the settings object), or echoed back from
where it was put by mistake (a SendGrid key pasted into ``SENDGRID_API_HOST`` and quoted by the message
that says the host is wrong). ``Secret`` covers the first; ``mask`` covers the second, and is applied
where messages are made (``MailroomError.__str__``) and where they are printed (the CLI), so no message
has to remember it.

``mask`` hides two kinds of text:
- anything shaped like a SendGrid API key (``SG.`` and a long run of key characters), whichever variable
  it came from;
- any value registered as secret: every ``Secret`` registers itself, and settings registers the values
  of .env variables whose names say they are secret (``..._KEY``, ``..._PASSWORD``, ``..._TOKEN``).
"""

from __future__ import annotations

import re
import threading

MASK = "********"

# SendGrid keys are "SG." + 22 characters + "." + 43 characters; a shortened or test key keeps the
# "SG." and a long run of the same alphabet, so the shape alone is enough to recognise one.
# Matched in any case: a message may show a value lower-cased ("MAILROOM_TRANSPORT is 'sg.abc...'").
_SENDGRID_KEY = re.compile(r"SG\.[A-Za-z0-9_\-]{6,}(?:\.[A-Za-z0-9_\-]+)*", re.IGNORECASE)
_SECRET_NAME = re.compile(r"(?:KEY|PASSWORD|PASSWD|SECRET|TOKEN)$", re.IGNORECASE)
_NOT_SECRET_NAMES = frozenset({"SENDGRID_WEBHOOK_PUBLIC_KEY"})  # a public key, shown in SendGrid's page
_MIN_LENGTH = 4  # shorter "secrets" would mask ordinary words and numbers in every message

_known: set[str] = set()
_known_pattern: re.Pattern[str] | None = None  # all registered values, longest first, any case
_lock = threading.Lock()


def register(value: str) -> None:
    """Mask ``value`` in every message from now on (empty and very short values are ignored)."""
    global _known_pattern
    value = value.strip()
    if len(value) >= _MIN_LENGTH:
        with _lock:
            if value not in _known:
                _known.add(value)
                # Longest first, so a secret that contains another is masked whole.
                alternatives = "|".join(re.escape(v) for v in sorted(_known, key=len, reverse=True))
                _known_pattern = re.compile(alternatives, re.IGNORECASE)


def register_environment(environment: dict[str, str]) -> None:
    """Register the values of variables whose names say they hold a secret (``*_KEY``, ``*_PASSWORD``...)."""
    for name, value in environment.items():
        if _SECRET_NAME.search(name) and name.upper() not in _NOT_SECRET_NAMES:
            register(value)


def mask(text: str) -> str:
    """``text`` with every SendGrid-shaped key and every registered secret replaced by ``********``."""
    if not text:
        return text
    known = _known_pattern
    if known is not None:
        text = known.sub(MASK, text)
    return _SENDGRID_KEY.sub(MASK, text)


class Secret:
    """A value that must never be shown: its repr and str are masked, and it is masked in messages."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        register(value)

    def reveal(self) -> str:
        """The real value, for the one place that hands it to a server."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return f"Secret('{MASK}')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)
