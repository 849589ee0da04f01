"""Every command, and the one place that turns errors into messages and exit statuses.

The library raises ``MailroomError`` subclasses; ``_report_errors`` prints them for office staff
(no traceback) and exits with the error's status. compose.py and send.py call ``compose_main`` and
``send_main``; everything else hangs off the ``mailroom`` group (``python -m mailroom``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from mailroom.errors import EXIT_INTERRUPTED, MailroomError

F = TypeVar("F", bound=Callable[..., Any])

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _report_errors(func: F) -> F:
    """Turn a domain error into one message on stderr and the exit status it carries."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except MailroomError as exc:
            err.print(f"[bold red]Error:[/] {_plain(str(exc))}")
            sys.exit(exc.exit_status)
        except KeyboardInterrupt:
            err.print("Stopped.")
            sys.exit(EXIT_INTERRUPTED)

    return wrapper  # type: ignore[return-value]


def _plain(text: str) -> str:
    """Escape rich markup so file names and user text print as they are."""
    return text.replace("[", r"\[")


newsletter_argument = click.argument(
    "newsletter", type=click.Path(file_okay=False, path_type=Path), metavar="NEWSLETTER_DIR")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """mailroom: compose and send the school newsletter."""


# --- compose -----------------------------------------------------------------------------------

@main.command("compose")
@newsletter_argument
@click.option("--open", "open_browser", is_flag=True, help="Open the preview in your web browser.")
@_report_errors
def compose_command(newsletter: Path, open_browser: bool) -> None:
    """Turn NEWSLETTER_DIR/newsletter.md into the email for each audience."""
    from mailroom.compose import compose_newsletter
    from mailroom.settings import load_settings

    settings = load_settings()
    result = compose_newsletter(settings, newsletter)
    build = result.build
    out.print(f"[bold green]Composed[/] \u201c{_plain(build.subject)}\u201d")
    for version in build.versions.values():
        out.print(f"  {version.audience:<10} {version.html_bytes / 1024:5.1f} KB, {len(version.links)} links"
                  f"  ->  {_plain(_shown(version.html_path))}")
    out.print(f"  {'web copy':<10} {_plain(_shown(result.web_path))}")
    preview = result.preview_path
    out.print(f"Preview in your browser: {_plain(_shown(preview))}")
    if open_browser:
        import webbrowser

        webbrowser.open(preview.resolve().as_uri())


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def compose_main() -> None:
    """Entry point of compose.py."""
    compose_command.main(prog_name="compose.py")


def send_main() -> None:
    """Entry point of send.py."""
    send_command = main.commands.get("send")
    if send_command is None:
        err.print("Sending is not built yet: compose.py works, send.py comes next.")
        sys.exit(2)
    send_command.main(prog_name="send.py")


# --- events ------------------------------------------------------------------------------------

@main.group("events")
def events_group() -> None:
    """Delivery events from SendGrid: receive them, or import a file of them."""


@events_group.command("serve")
@click.option("--port", default=8025, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0 picks a free one).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Keep 127.0.0.1 behind a reverse proxy or tunnel.")
@_report_errors
def events_serve_command(port: int, host: str) -> None:
    """Receive SendGrid's signed Event Webhook until stopped with Ctrl+C."""
    from datetime import datetime

    from mailroom.settings import load_settings
    from mailroom.webhook import make_server

    settings = load_settings()

    def log(message: str) -> None:
        err.print(f"{datetime.now():%H:%M:%S} {_plain(message)}")

    server = make_server(settings.db_path, settings.sendgrid.webhook_public_key, host, port, log=log)
    out.print(f"Listening for SendGrid events on {server.url} (Ctrl+C to stop).")
    out.print(f"Events are stored in {_plain(_shown(settings.db_path))}.")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        totals = server.totals
        out.print(f"Stopped. {totals.stored} event(s) stored, {totals.repeated} repeat(s), "
                  f"{totals.suppressed} address(es) added to the suppression list.")
    finally:
        server.server_close()


@events_group.command("import")
@click.argument("file", type=click.Path(dir_okay=True, path_type=Path))
@_report_errors
def events_import_command(file: Path) -> None:
    """Store the events in FILE (a JSON list, as SendGrid posts them); repeats are ignored."""
    from mailroom.events import import_events_file
    from mailroom.settings import load_settings

    settings = load_settings()
    result = import_events_file(settings.db_path, file)
    out.print(f"Imported {result.stored} new event(s) from {_plain(str(file))}; "
              f"{result.repeated} were already stored.")
    if result.suppressed:
        out.print(f"{result.suppressed} address(es) added to the suppression list "
                  "(see: python -m mailroom suppressions).")
    if result.resubscribe_requests:
        out.print(f"{result.resubscribe_requests} suppressed reader(s) asked to be resubscribed. They stay "
                  "suppressed until the office takes them back:\n"
                  "  python -m mailroom suppressions remove ADDRESS --note ...")


# --- suppressions ------------------------------------------------------------------------------

@main.group("suppressions", invoke_without_command=True)
@click.option("--all", "show_all", is_flag=True, help="Also show addresses the office took back.")
@click.pass_context
@_report_errors
def suppressions_group(ctx: click.Context, show_all: bool) -> None:
    """List the addresses that will be left out of every send, and why."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    from mailroom.settings import load_settings
    from mailroom.suppressions import list_suppressions

    settings = load_settings()
    rows = list_suppressions(settings.db_path, include_removed=show_all)
    if not rows:
        out.print("Nobody is on the suppression list.")
        return
    table = Table(title="Suppression list", title_justify="left")
    for column in ("Address", "Reason", "Date", "Source"):
        table.add_column(column)
    active = [row for row in rows if row.removed_at is None]
    for row in active:
        reason = row.reason
        if row.resubscribed_at:
            reason += f" (asked to resubscribe on {row.resubscribed_at:%Y-%m-%d})"
        table.add_row(_plain(row.email), _plain(reason), f"{row.suppressed_at:%Y-%m-%d}", row.source)
    if active:
        out.print(table)
    for row in rows:
        if row.removed_at is not None:
            out.print(f"Taken back: {_plain(row.email)} ({_plain(row.describe())}), on {row.removed_at:%Y-%m-%d} "
                      f"by the office: {_plain(row.removal_note or '')}")
    out.print(f"{len(active)} address(es) suppressed.")


@suppressions_group.command("remove")
@click.argument("address")
@click.option("--note", required=True, help="Why the address may be mailed again (kept with the history).")
@_report_errors
def suppressions_remove_command(address: str, note: str) -> None:
    """Take ADDRESS off the suppression list, so the next send includes it again."""
    from mailroom.settings import load_settings
    from mailroom.suppressions import remove_suppression

    settings = load_settings()
    removed = remove_suppression(settings.db_path, address, note)
    out.print(f"{_plain(removed.email)} is no longer suppressed (it was: {_plain(removed.describe())}).")


@suppressions_group.command("add")
@click.argument("address")
@click.option("--reason", required=True, help='Why, for example "asked by phone not to be emailed".')
@_report_errors
def suppressions_add_command(address: str, reason: str) -> None:
    """Keep ADDRESS out of every send from now on (for requests made to the office)."""
    from mailroom.settings import load_settings
    from mailroom.suppressions import add_suppression

    settings = load_settings()
    if add_suppression(settings.db_path, address, reason, "office"):
        out.print(f"{_plain(address.strip())} will be left out of every send.")
    else:
        out.print(f"{_plain(address.strip())} was already on the suppression list.")


# --- report ------------------------------------------------------------------------------------

@main.command("report")
@newsletter_argument
@_report_errors
def report_command(newsletter: Path) -> None:
    """Show what happened to NEWSLETTER_DIR's emails, and write build/report.html."""
    from rich.table import Table

    from mailroom.report import build_report
    from mailroom.report_page import write_report_page
    from mailroom.settings import load_settings

    settings = load_settings()
    report = build_report(settings, newsletter)
    title = report.slug if report.subject == report.slug else f"{report.subject} ({report.slug})"
    # One column per audience, one row per measure: fits a narrow terminal with several lists.
    table = Table(title=_plain(title), title_justify="left")
    table.add_column("People")
    for a in report.audiences:
        table.add_column(_plain(a.audience), justify="right")
    rows: list[tuple[str, Callable[[Any], str]]] = [
        ("Sent", lambda a: str(a.sent)),
        ("Delivered", lambda a: f"{a.delivered} ({a.share(a.delivered, a.sent)})"),
        ("Bounced", lambda a: str(a.bounced)),
        ("Dropped by SendGrid", lambda a: str(a.dropped)),
        ("Deferred", lambda a: str(a.deferred)),
        ("Opened", lambda a: "not tracked" if a.opened is None else f"{a.opened} ({a.share(a.opened, a.delivered)})"),
        ("Clicked a link", lambda a: f"{a.clicked} ({a.share(a.clicked, a.delivered)})"),
        ("Clicks in total", lambda a: str(a.clicks)),
        ("Unsubscribed", lambda a: str(a.unsubscribed)),
        ("Reported as spam", lambda a: str(a.spam_reports)),
    ]
    for label, cell in rows:
        table.add_row(label, *(cell(a) for a in report.audiences))
    out.print(table)
    if report.links:
        links = Table(title="Clicks per link (tracking parameters removed)", title_justify="left")
        links.add_column("Link", overflow="fold")
        links.add_column("People", justify="right")
        links.add_column("Clicks", justify="right")
        for link in report.links:
            links.add_row(_plain(link.label), str(link.clicked), str(link.clicks))
        out.print(links)
    for note in report.notes:
        out.print(f"- {_plain(note)}")
    page = write_report_page(report, newsletter, settings.school.language, settings.school.name)
    out.print(f"Report page: {_plain(_shown(page))}")
