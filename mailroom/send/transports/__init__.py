"""Transports: where a send's messages go (the outbox folder, SendGrid, an SMTP relay)."""

from __future__ import annotations

import importlib

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
        try:
            module = importlib.import_module("mailroom.send.transports.smtp")
        except ImportError:
            raise ConfigError("sending through an SMTP relay is not available in this version yet") from None
        return module.SmtpTransport(settings)  # type: ignore[no-any-return]
    from mailroom.send.transports.outbox import OutboxTransport

    return OutboxTransport(settings.outbox_dir)
