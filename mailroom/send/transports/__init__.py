"""Transports: where a send's messages go (the outbox folder, SendGrid, an SMTP relay).

Each transport is imported only when chosen, so the outbox never loads the SendGrid client.
To add one, see docs/architecture.md, "Adding a transport".
"""

from __future__ import annotations

from mailroom.errors import ConfigError
from mailroom.send.transports.base import Transport
from mailroom.settings import Settings


def make_transport(settings: Settings, *, sandbox: bool = False) -> Transport:
    """The transport chosen by MAILROOM_TRANSPORT (the outbox unless something else is configured)."""
    if sandbox and settings.transport != "sendgrid":
        raise ConfigError("--sandbox only works when sending through SendGrid (MAILROOM_TRANSPORT=sendgrid)")
    if settings.transport == "sendgrid":
        from mailroom.send.transports.sendgrid import SendGridTransport

        return SendGridTransport(settings)
    if settings.transport == "smtp":
        from mailroom.send.transports.smtp import SmtpTransport

        return SmtpTransport(settings)
    from mailroom.send.transports.outbox import OutboxTransport

    return OutboxTransport(settings.outbox_dir)
