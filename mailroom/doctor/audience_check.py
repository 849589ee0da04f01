"""The reader-facing parts the doctor checks: the unsubscribe link, and the list against the daily limit."""

from __future__ import annotations

from mailroom.doctor.dns_check import BULK
from mailroom.doctor.findings import Finding, Level
from mailroom.settings import Settings


def check_unsubscribe(settings: Settings, list_size: int) -> list[Finding]:
    url = settings.unsubscribe.url
    if url.startswith("https://"):
        return [Finding("Unsubscribe", Level.OK, "The unsubscribe link is https, so Gmail's and Yahoo's one-click "
                        "unsubscribe button works.")]
    level = Level.PROBLEM if list_size >= BULK else Level.WARNING
    return [Finding("Unsubscribe", level, "The unsubscribe link starts with http://, not https://, so Gmail's and "
                    "Yahoo's one-click unsubscribe (required for bulk senders) will not use it, and readers' browsers "
                    "warn that the page is not secure.",
                    todo="Ask whoever runs the school website for an https address for the unsubscribe page.",
                    it=f"[unsubscribe] url in school.toml: {url.replace('http://', 'https://', 1)} (the web server "
                       "needs a certificate, e.g. from Let's Encrypt)")]


def check_daily_limit(settings: Settings, list_size: int, lists: list[str], sent_recently: int = 0) -> list[Finding]:
    """The lists against the relay's daily limit, which the ``sent_recently`` messages of the last 24 hours
    (from the ledger: other newsletters, tests) have used part of already."""
    named = ", ".join(lists)
    if settings.transport == "sendgrid":
        return [Finding("Daily limit", Level.NOTE, f"{list_size:,} people are on {named}. SendGrid's daily limit "
                        "depends on the school's plan (the free plan allows 100 a day).",
                        it="SendGrid > Settings > Account Details > Your Products shows the plan's limit.")]
    if settings.transport != "smtp":
        return []
    limit = settings.smtp.daily_limit
    if not limit:
        return [Finding("Daily limit", Level.NOTE, f"{list_size:,} people are on {named}; no daily_limit is set in "
                        "school.toml, so mailroom assumes the relay has none.")]
    if list_size > limit:
        days = -(-list_size // limit)
        return [Finding("Daily limit", Level.WARNING, f"{list_size:,} people are on {named}, more than the "
                        f"{limit:,} a day the mail server allows: a full send takes {days} days.",
                        todo="Send as usual: when the server starts refusing, run the same command the next day and "
                             "it carries on where it stopped. Or ask IT about a service with a higher limit.",
                        it="daily_limit in [smtp] of school.toml should match the relay's real limit (Microsoft 365: "
                           "10,000 recipients a day per mailbox; Google Workspace: about 2,000).")]
    if sent_recently and list_size + sent_recently > limit:
        return [Finding("Daily limit", Level.WARNING, f"{list_size:,} people are on {named}, and the mail server "
                        f"already took {sent_recently:,} messages from mailroom in the last 24 hours: sending now "
                        f"would pass the {limit:,} a day it allows.",
                        todo="Send tomorrow, or send now and run the same command again tomorrow when the server "
                             "starts refusing: it carries on where it stopped.")]
    already = f" (with the {sent_recently:,} mailroom sent in the last 24 hours)" if sent_recently else ""
    return [Finding("Daily limit", Level.OK, f"{list_size:,} people are on {named}, within the {limit:,} a day the "
                    f"mail server allows{already}.")]
