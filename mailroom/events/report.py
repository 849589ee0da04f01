"""What happened to one newsletter: numbers per audience, clicks per link, as a table and a page.

Events belong to a newsletter and an audience only through the opaque ``custom_args`` send wrote
(``newsletter`` = the folder name, ``audience``, ``recipient_id``). The report counts people, not
events, wherever "how many parents" is the question: a reader who opens twice is one opener. It
shows no addresses or names, only counts and the newsletter's own links.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from mailroom.compose.links import strip_tracking
from mailroom.database import connect_existing, has_table, utc_now
from mailroom.errors import InputError
from mailroom.send.ledger import BatchKind
from mailroom.settings import Settings

REPORT_FILE = "report.html"

APPLE_MPP_NOTE = (
    "Opens are over-counted: Apple Mail Privacy Protection opens every email on the reader's behalf "
    "when it arrives, and some other mail services load images in advance too. Treat opens as an "
    "upper bound and clicks as the better sign of interest.")
NO_OPEN_TRACKING_NOTE = (
    "Opens are not counted: open tracking is off in school.toml (it needs readers' consent under UK PECR).")
BLOCKED_NOTE = (
    "Blocked means the reader's mail service refused the email because of something about the sender "
    "(reputation, content), often only for a while. It is counted apart from bounced, as SendGrid's own "
    "statistics do, and does not put the address on the suppression list.")
NOT_TRACKED = "not tracked for this transport"
DEFERRED_NOTE = (
    "Deferred means the reader's mail service asked SendGrid to try again later; most deferred "
    "emails are delivered on a later try and then count as delivered too.")


@dataclass(frozen=True)
class AudienceNumbers:
    """The counts for one audience. People are counted once per measure; clicks also in total."""

    audience: str
    sent: int
    delivered: int
    bounced: int
    dropped: int
    deferred: int
    opened: int | None  # None: open tracking was off, so there is nothing honest to show
    clicked: int
    clicks: int
    unsubscribed: int
    spam_reports: int
    blocked: int = 0  # bounce events of type "blocked": the receiving server refused the sender, not the address
    # Set (e.g. "the outbox") when this version went out only through a transport that reports no delivery
    # events: then every event-based number means "not tracked", never "0".
    untracked_via: str | None = None

    @property
    def tracked(self) -> bool:
        return self.untracked_via is None

    def share(self, part: int | None, whole: int) -> str:
        """``part`` as a percentage of ``whole``, for people to read ("—" when it means nothing)."""
        if part is None or whole <= 0:
            return "—"
        return f"{100 * part / whole:.0f}%"


@dataclass(frozen=True)
class LinkClicks:
    url: str  # the link with utm_* removed (how clicks on it are matched)
    label: str  # what to show: the link, or "Unsubscribe link"
    clicked: int  # people
    clicks: int  # total


@dataclass(frozen=True)
class NewsletterReport:
    slug: str
    subject: str
    sent_from: str  # "the send ledger" or "SendGrid's processed events"
    audiences: tuple[AudienceNumbers, ...]
    links: tuple[LinkClicks, ...]
    notes: tuple[str, ...]
    events_counted: int
    generated_at: datetime = field(default_factory=utc_now)


# --- where "sent" comes from ---------------------------------------------------------------------

def sent_counts(db_path: Path, slug: str) -> dict[str, int] | None:
    """How many people each audience's version was sent to, from the send ledger (mailroom/ledger.py).

    Counts the ledger's ``sends`` rows whose state is ``sent`` (confirmed by the transport); test
    copies are not in that table. None when the ledger has no record of this newsletter (it was sent
    before the ledger existed, or by another tool): the report then counts SendGrid's ``processed``
    events instead. Reads the table directly rather than opening a ``Ledger``, which would create
    the database file.
    """
    conn = connect_existing(db_path)
    if conn is None:
        return None
    try:
        if not has_table(conn, "sends"):
            return None
        rows = conn.execute(
            "SELECT audience, SUM(state = 'sent') FROM sends WHERE newsletter = ? GROUP BY audience",
            (slug,)).fetchall()
    finally:
        conn.close()
    return {row[0]: int(row[1]) for row in rows} or None


TRANSPORT_NAMES = {"outbox": "the outbox", "smtp": "SMTP", "sendgrid": "SendGrid"}


def transports_used(db_path: Path, slug: str) -> dict[str, set[str]]:
    """audience -> the transports its live sends went through, from the ledger's batches."""
    conn = connect_existing(db_path)
    if conn is None:
        return {}
    try:
        if not has_table(conn, "send_batches"):
            return {}
        rows = conn.execute("SELECT DISTINCT audience, transport FROM send_batches WHERE newsletter = ?"
                            " AND kind = ?", (slug, BatchKind.LIVE)).fetchall()
    finally:
        conn.close()
    used: dict[str, set[str]] = {}
    for audience, transport in rows:
        used.setdefault(audience, set()).add(transport)
    return used


# --- counting ------------------------------------------------------------------------------------

_PEOPLE = "COUNT(DISTINCT COALESCE(recipient_id, sg_message_id, sg_event_id))"


def _counts(conn: sqlite3.Connection, slug: str) -> dict[str, dict[str, int]]:
    """audience -> {event type: people, "click_total": clicks, "events": events}."""
    result: dict[str, dict[str, int]] = {}
    # A "blocked" bounce is counted apart, as SendGrid's statistics report bounces and blocks separately.
    rows = conn.execute(
        "SELECT COALESCE(audience, '') AS audience, CASE WHEN event = 'bounce' AND"
        " LOWER(COALESCE(bounce_type, '')) = 'blocked' THEN 'blocked' ELSE event END AS event,"
        f" {_PEOPLE} AS people, COUNT(*) AS total FROM events WHERE newsletter = ? GROUP BY 1, 2",
        (slug,)).fetchall()
    for row in rows:
        numbers = result.setdefault(row["audience"], {})
        numbers[row["event"]] = row["people"]
        numbers["events"] = numbers.get("events", 0) + row["total"]
        if row["event"] == "click":
            numbers["click_total"] = row["total"]
    # An unsubscribe through SendGrid's own link and one through a group are the same wish.
    unsubscribed = conn.execute(
        f"SELECT COALESCE(audience, '') AS audience, {_PEOPLE} AS people FROM events"
        " WHERE newsletter = ? AND event IN ('unsubscribe', 'group_unsubscribe') GROUP BY 1", (slug,)).fetchall()
    for row in unsubscribed:
        result[row["audience"]]["unsubscribed"] = row["people"]
    return result


def _link_clicks(conn: sqlite3.Connection | None, slug: str, unsubscribe: str,
                 known_links: Iterable[str]) -> list[LinkClicks]:
    people: dict[str, set[str]] = {}
    totals: dict[str, int] = {}
    labels: dict[str, str] = {}
    rows = [] if conn is None else conn.execute(
        "SELECT url, COALESCE(recipient_id, sg_message_id, sg_event_id) AS who FROM events"
        " WHERE newsletter = ? AND event = 'click' AND url IS NOT NULL", (slug,))
    for row in rows:
        if row["url"].startswith(unsubscribe):
            url = "unsubscribe"
            labels[url] = "Unsubscribe link"
        else:
            url = strip_tracking(row["url"])
        people.setdefault(url, set()).add(row["who"])
        totals[url] = totals.get(url, 0) + 1
    for link in known_links:  # links nobody clicked still belong in the list
        url = strip_tracking(link)
        if url.startswith(("http://", "https://")) and not link.startswith(unsubscribe):
            people.setdefault(url, set())
            totals.setdefault(url, 0)
    found = [LinkClicks(url, labels.get(url, url), len(people[url]), totals[url]) for url in people]
    return sorted(found, key=lambda link: (-link.clicked, -link.clicks, link.label))


def _unsubscribe_prefix(settings: Settings) -> str:
    """The school's unsubscribe link up to the reader's id, so those clicks group as one link."""
    return settings.unsubscribe.url.split("{recipient_id}")[0]


def build_report(settings: Settings, newsletter_dir: Path) -> NewsletterReport:
    """Count what happened to the newsletter in ``newsletter_dir`` (its folder name is the slug)."""
    newsletter_dir = Path(newsletter_dir)
    if not newsletter_dir.is_dir():
        raise InputError("there is no newsletter folder here", newsletter_dir)
    slug = newsletter_dir.resolve().name
    subject, built_audiences, known_links = _from_build(newsletter_dir, settings)

    counts: dict[str, dict[str, int]] = {}
    conn = connect_existing(settings.db_path)
    try:
        if conn is not None and not has_table(conn, "events"):
            conn.close()
            conn = None
        if conn is not None:
            counts = _counts(conn, slug)
        links = _link_clicks(conn, slug, _unsubscribe_prefix(settings), known_links)
    finally:
        if conn is not None:
            conn.close()

    ledger = sent_counts(settings.db_path, slug)
    used = transports_used(settings.db_path, slug)
    order = _audience_order(settings.lists, built_audiences, counts, ledger or {})
    open_tracking = settings.tracking.open_tracking
    audiences = []
    for audience in order:
        numbers = counts.get(audience, {})
        transports = used.get(audience, set())
        untracked = None
        if transports and "sendgrid" not in transports and not numbers:
            untracked = " and ".join(sorted(TRANSPORT_NAMES.get(t, t) for t in transports))
        audiences.append(AudienceNumbers(
            audience=audience or "(no list recorded)",
            sent=(ledger or {}).get(audience, 0) if ledger is not None else numbers.get("processed", 0),
            delivered=numbers.get("delivered", 0),
            bounced=numbers.get("bounce", 0),
            dropped=numbers.get("dropped", 0),
            deferred=numbers.get("deferred", 0),
            opened=numbers.get("open", 0) if open_tracking else None,
            clicked=numbers.get("click", 0),
            clicks=numbers.get("click_total", 0),
            unsubscribed=numbers.get("unsubscribed", 0),
            spam_reports=numbers.get("spamreport", 0),
            blocked=numbers.get("blocked", 0),
            untracked_via=untracked,
        ))
    events_counted = sum(numbers.get("events", 0) for numbers in counts.values())
    notes = []
    for a in audiences:
        if not a.tracked:
            notes.append(f"The {a.audience} version was sent through {a.untracked_via}, which reports nothing "
                         "back: delivery, bounces, opens and clicks are known only for emails sent through "
                         "SendGrid, so they are not tracked for this transport.")
    if not events_counted and (not audiences or any(a.tracked for a in audiences)):
        notes.append("No delivery events have arrived for this newsletter yet. They come from SendGrid's "
                      "Event Webhook (mailroom events serve) or a file (mailroom events import).")
    notes.append(APPLE_MPP_NOTE if open_tracking else NO_OPEN_TRACKING_NOTE)
    if any(a.deferred for a in audiences):
        notes.append(DEFERRED_NOTE)
    if any(a.blocked for a in audiences):
        notes.append(BLOCKED_NOTE)
    if ledger is None:
        notes.append("Sent is counted from SendGrid's processed events, because the send ledger has no "
                     "record of this newsletter.")
    if audiences and not any(a.tracked for a in audiences):
        links = []  # clicks are not tracked either: "0 clicks" per link would say something false
    return NewsletterReport(
        slug=slug, subject=subject, sent_from="the send ledger" if ledger is not None else
        "SendGrid's processed events", audiences=tuple(audiences), links=tuple(links), notes=tuple(notes),
        events_counted=events_counted)


def report_rows(audiences: Iterable[AudienceNumbers]) -> list[tuple[str, list[str]]]:
    """The report's table for a terminal: one row per measure, one cell per audience.

    An audience sent through a transport that reports no events shows "not tracked" (delivery:
    "not tracked for this transport"), never a 0 that would read as "nobody got it".
    """
    audiences = list(audiences)

    def row(label: str, cell: Callable[[AudienceNumbers], str], untracked: str = "not tracked"
            ) -> tuple[str, list[str]]:
        return label, [cell(a) if a.tracked else untracked for a in audiences]

    return [
        ("Sent", [str(a.sent) for a in audiences]),
        row("Delivered", lambda a: f"{a.delivered} ({a.share(a.delivered, a.sent)})", NOT_TRACKED),
        row("Bounced", lambda a: str(a.bounced)),
        row("Blocked", lambda a: str(a.blocked)),
        row("Dropped by SendGrid", lambda a: str(a.dropped)),
        row("Deferred", lambda a: str(a.deferred)),
        row("Opened", lambda a: "not tracked" if a.opened is None
            else f"{a.opened} ({a.share(a.opened, a.delivered)})"),
        row("Clicked a link", lambda a: f"{a.clicked} ({a.share(a.clicked, a.delivered)})"),
        row("Clicks in total", lambda a: str(a.clicks)),
        row("Unsubscribed", lambda a: str(a.unsubscribed)),
        row("Reported as spam", lambda a: str(a.spam_reports)),
    ]


def _from_build(newsletter_dir: Path, settings: Settings) -> tuple[str, list[str], list[str]]:
    """Subject, audiences and links from the composed build, if there is one (the report works without)."""
    from mailroom.compose.build import load_build

    try:
        build = load_build(newsletter_dir, root=settings.root)
    except InputError:
        return newsletter_dir.resolve().name, [], []
    links = [link for version in build.versions.values() for link in version.links]
    return build.subject, list(build.versions), links


def _audience_order(lists: Mapping[str, object], *sources: Iterable[str]) -> list[str]:
    present: set[str] = set()
    for source in sources:
        present.update(source)
    known = [name for name in lists if name in present]
    return known + sorted(present - set(known))
