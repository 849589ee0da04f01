"""``mailroom doctor``: check a school's set-up before the first send, without sending anything.

Settings and secrets present; the transport reachable, its TLS verified and its sign-in accepted; the sender
domain's SPF, DKIM and DMARC records; the unsubscribe link; the list against the daily limit. Each finding
says what to do, plainly for the office and precisely for IT (``findings.Finding``). ``run_doctor`` only
gathers findings; the command in ``mailroom.cli`` prints them and sets the exit status.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import dns.resolver

from mailroom.doctor.audience_check import check_daily_limit, check_unsubscribe
from mailroom.doctor.dns_check import check_dns
from mailroom.doctor.findings import Finding, Level, blocking
from mailroom.doctor.settings_check import check_settings
from mailroom.doctor.transport_check import check_transport
from mailroom.errors import InputError
from mailroom.settings import Settings

__all__ = ["Finding", "Level", "blocking", "list_size", "run_doctor"]


def list_size(settings: Settings, audiences: Path, lists: list[str]) -> tuple[int, Finding | None]:
    """How many people the lists would send to now (suppressed addresses left out), or a finding saying why not."""
    from mailroom.audience.lists import load_audience
    from mailroom.events.suppressions import suppressed_addresses

    try:
        plan = load_audience(audiences, settings, lists, dict(suppressed_addresses(settings.db_path)))
    except (InputError, OSError) as exc:
        return 0, Finding("Lists", Level.WARNING, f"Could not read the mailing lists: {exc}",
                          todo="Fix the file (python -m mailroom audiences shows the problems) and run the doctor "
                               "again.")
    return len(plan.recipients), None


def _sent_recently(settings: Settings) -> int:
    """Messages the configured transport took from mailroom in the last 24 hours (0 without a ledger yet)."""
    from datetime import UTC, datetime, timedelta

    from mailroom.database import connect_existing, to_text
    from mailroom.send.ledger import sent_recently

    try:
        conn = connect_existing(settings.db_path)
        if conn is None:
            return 0
        try:
            return sent_recently(conn, settings.transport, to_text(datetime.now(UTC) - timedelta(hours=24)))
        finally:
            conn.close()
    except (sqlite3.Error, OSError):
        return 0  # an unreadable ledger is for the send to report; the doctor only leaves this out


def run_doctor(settings: Settings, *, audiences: Path | None = None, lists: list[str] | None = None,
               resolver: dns.resolver.Resolver | None = None, connect: bool = True) -> list[Finding]:
    """Every finding, in the order the office reads them. ``connect=False`` skips the transport check."""
    chosen = lists or settings.list_names()
    size, unreadable = list_size(settings, audiences or settings.root / "audiences.csv", chosen)
    findings = check_settings(settings)
    if connect and not any(f.level is Level.PROBLEM for f in findings):
        findings += check_transport(settings)
    findings += check_dns(settings, size, resolver=resolver)
    findings += check_unsubscribe(settings, size)
    findings += [unreadable] if unreadable else check_daily_limit(settings, size, chosen, _sent_recently(settings))
    return findings
