"""How big a message each way of sending takes, checked while the send is planned.

A message over the limit is an error at the plan, never a failure per person: the service would
refuse every copy, so nothing should go. Figures are in decimal megabytes, rounded down, so a
message we let through is never one the service refuses for size.

- SendGrid: 30 MB per request in all (checked by the SendGrid transport itself, which counts its body).
- An SMTP relay: the size the server announces in its EHLO answer (RFC 1870 SIZE) when it does;
  otherwise the known limit of the big hosts by SMTP_HOST (Microsoft 365 35 MB, Gmail and Google
  Workspace 25 MB); otherwise no limit is assumed (the server still refuses with a 552 per message).
- The outbox: 25 MB, the smallest of the common services' limits, since its files stand for what
  would be emailed (a 50 MB photo should not quietly make a 1.4 GB outbox).
"""

from __future__ import annotations

from mailroom.errors import InputError
from mailroom.send.personalize import recipient_values
from mailroom.send.transports.base import Message, Version
from mailroom.send.transports.mime import MimeTemplate

MB = 1000 * 1000
OUTBOX_LIMIT = 25 * MB
# SMTP_HOST (lower case) -> (bytes, who takes that much: the end of "more than 35 MB ...")
KNOWN_HOSTS: dict[str, tuple[int, str]] = {
    "smtp.office365.com": (35 * MB, "Microsoft 365 takes"),
    "outlook.office365.com": (35 * MB, "Microsoft 365 takes"),
    "smtp-mail.outlook.com": (35 * MB, "Microsoft 365 takes"),
    "smtp.gmail.com": (25 * MB, "Gmail and Google Workspace take"),
    "smtp-relay.gmail.com": (25 * MB, "Gmail and Google Workspace take"),
}
# Room for one person's own values (names, links) on top of the shared message.
_PERSON_ALLOWANCE = 4096


def message_bytes(template: MimeTemplate) -> int:
    """The size of one person's message of a version as the outbox and SMTP write it (a typical person)."""
    values = recipient_values(first_name="Sam", last_name="Example", default_greeting="Hello",
                              unsubscribe_url="https://example.org/unsubscribe", recipient_id="0" * 16)
    sample = Message.with_values("sam@example.org", "sam@example.org", "Sam Example", values)
    return len(template.render(sample)[1]) + _PERSON_ALLOWANCE


def refuse_if_too_big(version: Version, size: int, limit: int, who: str) -> None:
    """An ``InputError`` when ``size`` bytes is over ``limit``, naming the list, both figures and what to do."""
    if size <= limit:
        return
    raise InputError(
        f"the email for the list '{version.audience}' is {megabytes(size)}, more than the {megabytes(limit)} "
        f"{who}, so nobody would get it. Nothing was sent: make the images smaller (or use fewer) in "
        "newsletter.md and compose again")


def megabytes(size: int) -> str:
    """A size as the office reads it: "31.5 MB", "35 MB", "200 KB"."""
    if size >= MB:
        return f"{size / MB:.1f}".removesuffix(".0") + " MB"
    return f"{size / 1000:.0f} KB"
