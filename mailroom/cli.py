"""Every command, and the one place that turns errors into messages and exit statuses.

The library raises ``MailroomError`` subclasses; ``_report_errors`` prints them for office staff
(no traceback) and exits with the error's status. compose.py and send.py call ``compose_main`` and
``send_main``; everything else hangs off the ``mailroom`` group (``python -m mailroom``).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.console import Console

from mailroom.errors import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    InputError,
    MailroomError,
    RefusedForSafety,
    TransportError,
)

if TYPE_CHECKING:
    from mailroom.checks.rules import Finding
    from mailroom.workflows.compose import ComposeResult

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

@main.command("compose", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("newsletter", required=False, type=click.Path(file_okay=False, path_type=Path),
                metavar="NEWSLETTER_DIR")
@click.option("--open", "open_browser", is_flag=True, help="Open the preview in your web browser.")
@click.option("--new", "new_topic", metavar="TOPIC",
              help='Start next week\'s newsletter from the latest one instead, e.g. --new "Christmas fair".')
@_report_errors
def compose_command(newsletter: Path | None, open_browser: bool, new_topic: str | None) -> None:
    """Turn NEWSLETTER_DIR/newsletter.md into the email for each audience."""
    from mailroom.settings import load_settings
    from mailroom.workflows.compose import compose_newsletter

    if new_topic is not None:
        if newsletter is not None:
            raise click.UsageError(f'put the whole topic in quotes, like: --new "{new_topic} {newsletter}"')
        _start_new_newsletter(new_topic, None)
        return
    if newsletter is None:
        raise click.UsageError("say which newsletter to compose, like: python compose.py "
                               "newsletters/2024-11-08-online-safety (or start one with --new \"Topic\")")

    settings = load_settings()
    result = compose_newsletter(settings, newsletter)
    build = result.build
    out.print(f"[bold green]Composed[/] \u201c{_plain(build.subject)}\u201d")
    for version in build.versions.values():
        out.print(f"  {version.audience:<10} {version.html_bytes / 1024:5.1f} KB, {len(version.links)} links"
                  f"  ->  {_plain(_shown(version.html_path))}")
    out.print(f"  {'web copy':<10} {_plain(_shown(result.web_path))}")
    _print_pictures(result)
    preview = result.preview_path
    out.print(f"Preview in your browser: {_plain(_shown(preview))}")
    # Compose succeeds (exit 0) even when the checks find errors: the build is there to look at and
    # fix from; send.py is what refuses it. The message says so plainly.
    _print_findings(result.findings, list(build.versions), stopping=False)
    if open_browser:
        import webbrowser

        webbrowser.open(preview.resolve().as_uri())


def _print_pictures(result: ComposeResult) -> None:
    """Each picture's size before and after it was made to fit email (the files in images/ stay as they were)."""
    from mailroom.compose.images import size_text

    if not result.images:
        return
    out.print("Pictures, made to fit email (your files are not changed):")
    for image in result.images:
        out.print(f"  {_plain(image.source.name):<28} {size_text(image.source_bytes):>8} -> "
                  f"{size_text(image.bytes):>8}  ({image.width} x {image.height} px)")


# --- new ----------------------------------------------------------------------------------------

@main.command("new", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("topic", nargs=-1, required=True)
@click.option("--date", "on_date", type=click.DateTime(formats=["%Y-%m-%d"]), metavar="YYYY-MM-DD",
              help="The new newsletter's date (default: a week after the latest one).")
@_report_errors
def new_command(topic: tuple[str, ...], on_date: Any) -> None:
    """Start next week's newsletter from the latest one, named by its date and TOPIC."""
    _start_new_newsletter(" ".join(topic), on_date.date() if on_date else None)


def _start_new_newsletter(topic: str, on_date: Any) -> None:
    import datetime as dt

    from mailroom.settings import load_settings
    from mailroom.workflows.new_newsletter import start_next_newsletter

    settings = load_settings()
    made = start_next_newsletter(settings.root / "newsletters", topic, today=dt.date.today(), date=on_date)
    pictures = f", with its {_count(len(made.pictures), 'picture')}" if made.pictures else ""
    out.print(f"[bold green]Started[/] {_plain(_shown(made.folder))} (copied from {_plain(made.copied_from.name)}"
              f"{pictures}).")
    out.print(f"  Date {made.date:%A} {made.date.day} {made.date:%B %Y}, subject \u201c{_plain(made.subject)}\u201d, "
              f"campaign {_plain(made.campaign)}.")
    out.print(f"Start writing in {_plain(_shown(made.source))}: last week's text is there to write over.")
    out.print(f"Then: python compose.py {_plain(_shown(made.folder))} --open")


# --- checks ------------------------------------------------------------------------------------

def _print_findings(findings: Sequence[Finding], audiences: Sequence[str], *, stopping: bool) -> None:
    """The findings for office staff: errors in red, warnings in yellow, each with its line if known."""
    from mailroom.checks.rules import merge_audiences

    merged = merge_audiences(findings)
    errors = sum(1 for m in merged if m.finding.is_error)
    warnings = len(merged) - errors
    if not merged:
        out.print("[green]Checks: no problems found.[/]")
        return
    out.print(f"Checks: {_count(errors, 'error')}, {_count(warnings, 'warning')}")
    for entry in merged:
        finding = entry.finding
        label = "[bold red]Error:  [/]" if finding.is_error else "[yellow]Warning:[/]"
        colour = "red" if finding.is_error else "yellow"
        where = f"{finding.where()}: " if finding.source_line else ""
        only = ""
        if entry.audiences and set(entry.audiences) != set(audiences):
            only = f" (in the {', '.join(entry.audiences)} version{'s' if len(entry.audiences) > 1 else ''})"
        out.print(f"  {label} [{colour}]{_plain(where + finding.message + only)}[/]")
    if errors:
        out.print("[bold red]This newsletter cannot be sent until the errors are fixed.[/]"
                  + ("" if stopping else " Fix them and compose again."))


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


@main.command("check")
@newsletter_argument
@_report_errors
def check_command(newsletter: Path) -> None:
    """Run the preflight checks on NEWSLETTER_DIR's composed build (exit 2 if there are errors)."""
    from mailroom.checks.rules import check_build, has_errors, newsletter_for_build
    from mailroom.compose.build import load_build

    build = load_build(newsletter)
    changed = build.changed_sources()
    if changed:
        out.print(f"[yellow]Note:[/] {_plain(', '.join(changed))} changed since the newsletter was composed; "
                  "these checks are of the last compose. Compose again to check your changes.")
    findings = check_build(build, newsletter_for_build(build))
    _print_findings(findings, list(build.versions), stopping=True)
    if has_errors(findings):
        sys.exit(EXIT_BAD_INPUT)


# --- preview ------------------------------------------------------------------------------------

DEFAULT_PREVIEW_PORT = 8040


@main.command("preview")
@newsletter_argument
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PREVIEW_PORT, show_default=True,
              help="The port to serve on (0: any free port).")
@click.option("--no-open", "no_open", is_flag=True, help="Do not open the web browser.")
@_report_errors
def preview_command(newsletter: Path, port: int, no_open: bool) -> None:
    """Show NEWSLETTER_DIR in the browser and update it every time you save a change."""
    import datetime as dt
    import errno

    from mailroom.errors import InputError
    from mailroom.servers.live_preview import PreviewServer, Watcher

    if not newsletter.is_dir():
        raise InputError("there is no such newsletter folder", newsletter)

    def composed(result: ComposeResult) -> None:
        out.print(f"{dt.datetime.now():%H:%M:%S} [green]Composed[/] \u201c{_plain(result.build.subject)}\u201d")
        _print_findings(result.findings, list(result.build.versions), stopping=False)
        out.file.flush()

    def failed(exc: MailroomError) -> None:
        err.print(f"{dt.datetime.now():%H:%M:%S} [bold red]Could not compose:[/] {_plain(str(exc))}")
        err.print("  Fix it and save; the preview shows the last version that worked until then.")

    watcher = Watcher(newsletter, Path.cwd(), on_compose=composed, on_error=failed)
    watcher.compose()
    try:
        server = PreviewServer(watcher, port)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        server = PreviewServer(watcher, 0)
        out.print(f"Port {port} is in use, so the preview uses another one.")
    out.print(f"[bold]Preview at {server.url}[/]")
    out.print("Edit newsletter.md, an image, a template or school.toml and save: the page updates by itself. "
              "Press Ctrl+C to stop.")
    out.file.flush()  # the address must show even when the output goes to a pipe or a log
    if not no_open:
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        out.print("Stopped the preview.")


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

    from mailroom.servers.webhook import make_server
    from mailroom.settings import load_settings

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
    from mailroom.events.intake import import_events_file
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

    from mailroom.events.suppressions import list_suppressions
    from mailroom.settings import load_settings

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
    from mailroom.events.suppressions import remove_suppression
    from mailroom.settings import load_settings

    settings = load_settings()
    removed = remove_suppression(settings.db_path, address, note)
    out.print(f"{_plain(removed.email)} is no longer suppressed (it was: {_plain(removed.describe())}).")


@suppressions_group.command("add")
@click.argument("address")
@click.option("--reason", required=True, help='Why, for example "asked by phone not to be emailed".')
@_report_errors
def suppressions_add_command(address: str, reason: str) -> None:
    """Keep ADDRESS out of every send from now on (for requests made to the office)."""
    from mailroom.events.suppressions import add_suppression
    from mailroom.settings import load_settings

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

    from mailroom.events.report import build_report
    from mailroom.events.report_page import write_report_page
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


# --- audiences ---------------------------------------------------------------------------------

def split_lists(text: str | None, settings: Any) -> list[str]:
    """--to "staff, parents" as a list in the order given; every list in school.toml when not given."""
    if text is None:
        return settings.list_names()
    return [part.strip() for part in text.split(",") if part.strip()]


def suppressed_for(settings: Any) -> dict[str, str]:
    """Addresses that must not be mailed (bounces, complaints, unsubscribes) -> why."""
    from mailroom.events.suppressions import suppressed_addresses

    return dict(suppressed_addresses(settings.db_path))


@main.command("audiences")
@click.option("--to", "to", metavar="LISTS",
              help="Lists, separated by commas, in the order that decides who gets which version "
                   "(default: every list in school.toml).")
@click.option("--audiences", "audiences_file", type=click.Path(dir_okay=False, path_type=Path),
              help="The mailing lists file (default: audiences.csv).")
@click.option("--problems-csv", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Also write the problems to this CSV file (safe to open in Excel).")
@_report_errors
def audiences_command(to: str | None, audiences_file: Path | None, problems_csv: Path | None) -> None:
    """Check audiences.csv: who is on each list, who will receive, who is left out and why.

    Exits with status 2 when some rows have problems (they would be left out of a send).
    """
    from mailroom.audience.lists import load_audience
    from mailroom.audience.report import format_audience_summary, format_left_out, format_problems, write_problems_csv
    from mailroom.errors import EXIT_BAD_INPUT, InputError
    from mailroom.settings import load_settings

    settings = load_settings()
    # Shown relative to where the command runs, as office staff would type it.
    path = audiences_file or Path(_shown(settings.root / "audiences.csv"))
    plan = load_audience(path, settings, split_lists(to, settings), suppressed_for(settings))
    out.print(f"{_shown(plan.path)}: {plan.rows} {'row' if plan.rows == 1 else 'rows'} read, "
              f"lists in this order: {', '.join(plan.lists)}", markup=False)
    for section in (format_audience_summary(plan), format_left_out(plan), format_problems(plan)):
        if section:
            out.print()
            for line in section:
                out.print(line, markup=False)
    problems = len(plan.problems())
    if problems_csv is not None:
        try:
            write_problems_csv(plan, problems_csv)
        except OSError as exc:
            raise InputError(f"could not write the problems report here ({exc.strerror})", problems_csv) from None
        out.print()
        out.print(f"Wrote {problems} {'problem' if problems == 1 else 'problems'} to {_shown(problems_csv)}",
                  markup=False)
    if problems:
        sys.exit(EXIT_BAD_INPUT)


# --- send --------------------------------------------------------------------------------------

_SHOW_UNCERTAIN = 20  # uncertain people named per batch before "and N more"


@main.command("send", context_settings={"help_option_names": ["-h", "--help"]})
@newsletter_argument
@click.option("--to", "to_lists", required=True, metavar="LIST[,LIST...]",
              help="The mailing lists to send to, e.g. parents,staff (someone on both gets the first's version).")
@click.option("--test", "test_address", metavar="ADDRESS",
              help="Send one copy of each version, marked [TEST], to ADDRESS only.")
@click.option("--dry-run", is_flag=True, help="Show who would get what, and send nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--untested", is_flag=True, help="Allow a live send of a build that was never test-sent.")
@click.option("--sandbox", is_flag=True, help="SendGrid checks every request but delivers nothing.")
@click.option("--audiences", "audiences_file", type=click.Path(dir_okay=False, path_type=Path),
              help="The mailing lists file (default: audiences.csv in the project folder).")
@click.option("--resend-uncertain", is_flag=True,
              help="Send again to people whose earlier send may or may not have arrived (they may get it twice).")
@click.option("--mark-uncertain-sent", is_flag=True,
              help="Count people whose earlier send may or may not have arrived as sent (they may not have it).")
@_report_errors
def send_command(newsletter: Path, to_lists: str, test_address: str | None, dry_run: bool, yes: bool,
                 untested: bool, sandbox: bool, audiences_file: Path | None, resend_uncertain: bool,
                 mark_uncertain_sent: bool) -> None:
    """Send NEWSLETTER_DIR's composed newsletter to the chosen lists, safely and resumably."""
    from mailroom.compose.build import load_build
    from mailroom.send.ledger import Ledger, send_lock
    from mailroom.send.transports import make_transport
    from mailroom.settings import load_settings

    if resend_uncertain and mark_uncertain_sent:
        raise click.UsageError("choose one of --resend-uncertain and --mark-uncertain-sent, not both")
    settings = load_settings()
    lists = split_lists(to_lists, settings)
    if not lists:
        raise click.UsageError("--to needs at least one list name, e.g. --to parents")
    build = load_build(newsletter, root=settings.root)
    changed = build.changed_sources()
    if changed:
        raise InputError(
            f"the newsletter has changed since it was composed ({', '.join(changed)}); run  python compose.py "
            f"{_shown(build.newsletter_dir)}  again, check the preview, then send")
    _refuse_preflight_errors(build)
    transport = make_transport(settings, sandbox=sandbox)

    with send_lock(settings.db_path), Ledger(settings.db_path) as ledger:
        if test_address is not None:
            _send_test(settings, build, ledger, transport, lists, test_address, sandbox)
            return
        _send_live(settings, build, ledger, transport, lists, audiences_file=audiences_file, dry_run=dry_run,
                   yes=yes, untested=untested, sandbox=sandbox, resend_uncertain=resend_uncertain,
                   mark_uncertain_sent=mark_uncertain_sent)


def _refuse_preflight_errors(build: Any) -> None:
    """Nothing goes out while the preflight checks find an error."""
    from mailroom.checks.rules import errors_for_build

    errors = [str(problem) for problem in errors_for_build(build)]
    if errors:
        listed = "\n".join(f"  - {problem}" for problem in errors)
        raise InputError(f"the newsletter has problems to fix before it can be sent:\n{listed}\n"
                         "Fix them in newsletter.md and compose again.", build.newsletter_dir / "newsletter.md")


def _send_test(settings: Any, build: Any, ledger: Any, transport: Any, lists: list[str], address: str,
               sandbox: bool) -> None:
    from email_validator import EmailNotValidError, validate_email

    from mailroom.send.dispatch import Dispatcher, test_batches
    from mailroom.send.ledger import SANDBOX, TEST

    unknown = [name for name in lists if name not in settings.lists]
    if unknown:
        raise InputError(f"there is no list called '{unknown[0]}'; the lists are: {', '.join(settings.lists)}",
                         settings.source_file)
    try:
        validate_email(address.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InputError(f"--test needs one email address, and '{address}' is not one ({exc})") from None
    key = address.strip().lower()
    recipient_id = ledger.recipient_ids([key])[key]
    out.print(f"Sending a test copy of {', '.join(lists)} to {_plain(address.strip())} "
              f"through {_plain(transport.describe())}{' (sandbox: nothing is delivered)' if sandbox else ''}.")
    dispatcher = Dispatcher(transport, ledger, newsletter=build.slug, build_hash=build.build_hash,
                            kind=SANDBOX if sandbox else TEST)
    with transport:
        report = dispatcher.run(test_batches(build, settings, lists, address, recipient_id))
    if report.confirmed_test_batches and not sandbox:
        ledger.record_test_send(newsletter=build.slug, build_hash=build.build_hash, address=key, audiences=lists,
                                transport=transport.name, batch_id=report.confirmed_test_batches[0])
    if report.uncertain:
        raise RefusedForSafety(f"the test copy may or may not have been sent ({report.stop_message}); check the "
                               f"inbox of {address.strip()}, or send the test again")
    _finish_run(report, ledger, build, settings)
    out.print("[bold green]Test sent.[/] Check it, then send for real without --test.")


def _send_live(settings: Any, build: Any, ledger: Any, transport: Any, lists: list[str], *,
               audiences_file: Path | None, dry_run: bool, yes: bool, untested: bool, sandbox: bool,
               resend_uncertain: bool, mark_uncertain_sent: bool) -> None:
    from mailroom.audience.lists import load_audience
    from mailroom.send.dispatch import Dispatcher, live_batches, plan_send
    from mailroom.send.ledger import LIVE, SANDBOX

    ledger.settle_abandoned(build.slug)
    audience = load_audience(audiences_file or settings.root / "audiences.csv", settings, lists,
                             suppressed_for(settings))
    if mark_uncertain_sent and not dry_run:
        marked = ledger.resolve_uncertain(build.slug, as_sent=True)
        if marked:
            out.print(f"Counted {marked} people from uncertain batches as sent, as you asked.")
    plan = plan_send(build, audience.recipients, audience.lists, ledger, resend_uncertain=resend_uncertain)
    _show_plan(build.subject, plan, audience, transport, sandbox)
    if plan.uncertain:
        _show_uncertain(plan.uncertain, _uncertain_file(settings, build))
        if not dry_run:
            raise RefusedForSafety(
                "nothing was sent: some people may or may not already have this newsletter (see above). "
                "Run again with --resend-uncertain (they may get it twice) or --mark-uncertain-sent "
                "(they may not get it at all)")
    if dry_run:
        out.print("Dry run: nothing was sent.")
        return
    if plan.total == 0:
        out.print("Nobody is left to send to: everyone on these lists already has this newsletter.")
        return
    if not yes:
        typed = click.prompt(f"To send to {plan.total} people, type {plan.total}", default="", show_default=False)
        if typed.strip().replace(",", "") != str(plan.total):
            raise RefusedForSafety("nothing was sent: the number typed did not match")
    if not plan.test_sends and not sandbox and not untested:
        if yes:
            raise RefusedForSafety(
                "nothing was sent: this build was never test-sent. Send a test first "
                f"(python send.py {_shown(build.newsletter_dir)} --to {','.join(lists)} --test YOUR_ADDRESS), "
                "or add --untested to send it anyway")
        if not click.confirm("This build was never test-sent. Send it anyway?", default=False):
            raise RefusedForSafety("nothing was sent: send a test first with --test YOUR_ADDRESS")

    if not sandbox:
        ledger.plan_pending(build.slug, ((p.key, p.audience) for p in audience.recipients))
    size = transport.max_batch_size
    dispatcher = Dispatcher(transport, ledger, newsletter=build.slug, build_hash=build.build_hash,
                            kind=SANDBOX if sandbox else LIVE)
    batches = live_batches(build, settings, audience.recipients, audience.lists, ledger, size,
                           resend_uncertain=resend_uncertain)
    with transport, _ctrl_c_stops(dispatcher), _progress_display(plan.total) as show:
        dispatcher.on_progress = show
        report = dispatcher.run(batches)
    _finish_run(report, ledger, build, settings)
    if sandbox:
        out.print(f"[bold green]Sandbox:[/] SendGrid checked {report.sent} messages in {report.requests} "
                  "requests and delivered none.")
    else:
        out.print(f"[bold green]Done:[/] sent to {report.sent} people; everyone on {', '.join(lists)} who "
                  "should get this newsletter now has it.")


def _show_plan(subject: str, plan: Any, audience: Any, transport: Any, sandbox: bool) -> None:
    """The plan before anything goes out: the lists (as ``mailroom audiences`` shows them), then this send."""
    from mailroom.audience.report import format_audience_summary, format_left_out, format_problems

    out.print(f"[bold]Sending[/] \u201c{_plain(subject)}\u201d")
    for section in (format_audience_summary(audience), format_left_out(audience), format_problems(audience)):
        for line in section:
            out.print(line, markup=False)
    out.print("To send now: " + ", ".join(f"{name} {plan.to_send.get(name, 0)}" for name in plan.audiences))
    if plan.already_sent:
        out.print(f"Already sent earlier (skipped): {plan.already_sent}")
    if plan.retrying:
        out.print(f"Not accepted last time (trying again): {plan.retrying}")
    if plan.resending_uncertain:
        out.print(f"Uncertain last time (sending again, as you asked): {plan.resending_uncertain}")
    out.print(f"Transport: {_plain(transport.describe())}" + (" - sandbox mode, nothing is delivered" if sandbox
                                                             else ""))
    for note in transport.plan_notes(plan.total):
        out.print(_plain(note))
    if plan.test_sends:
        last = plan.test_sends[-1]
        out.print(f"Test: this exact build was test-sent to {_plain(last.address)} at {last.sent_at}.")
    else:
        out.print("Test: this build has [bold]not[/] been test-sent.")
    out.print(f"[bold]{plan.total}[/] people will get it now.")


def _show_uncertain(batches: Any, full_list: Path) -> None:
    """Name the people whose send may or may not have arrived; all of them go in ``full_list`` (a CSV)."""
    import csv

    from mailroom.audience.report import excel_safe

    people = sum(len(b.keys) for b in batches)
    err.print(f"[bold yellow]Uncertain:[/] {people} people in {len(batches)} earlier batch(es) may or may not "
              "have this newsletter (the send stopped or lost its connection before the answer came):")
    for batch in batches:
        err.print(f"  batch {batch.batch_id} ({batch.audience}, {len(batch.keys)} people, started "
                  f"{batch.started_at}): {_plain(batch.error or 'no answer')}")
        for key in batch.keys[:_SHOW_UNCERTAIN]:
            err.print(f"    {_plain(key)}")
        if len(batch.keys) > _SHOW_UNCERTAIN:
            err.print(f"    ... and {len(batch.keys) - _SHOW_UNCERTAIN} more")
    full_list.parent.mkdir(parents=True, exist_ok=True)
    with full_list.open("w", encoding="utf-8-sig", newline="") as handle:  # utf-8-sig: Excel reads it right
        writer = csv.writer(handle)
        writer.writerow(["batch", "list", "email"])
        for batch in batches:
            writer.writerows([batch.batch_id, batch.audience, excel_safe(key)] for key in batch.keys)
    err.print(f"  Everyone in these batches is listed in {_plain(_shown(full_list))}")


def _uncertain_file(settings: Any, build: Any) -> Path:
    return settings.db_path.parent / f"uncertain-{build.slug}.csv"


def _finish_run(report: Any, ledger: Any, build: Any, settings: Any) -> None:
    """Say how the run ended; anything short of complete becomes the error that sets the exit status."""
    from mailroom.send.dispatch import GAVE_UP, INTERRUPTED, REFUSED

    if report.failed or report.uncertain or report.stopped:
        out.print(f"Sent: {report.sent}. Not sent: {report.failed}. Uncertain: {report.uncertain}.")
    for reason, count in report.errors.most_common(5):
        err.print(f"  {count} not sent: {_plain(reason)}")
    if report.uncertain:
        _show_uncertain(ledger.uncertain_batches(build.slug), _uncertain_file(settings, build))
        raise RefusedForSafety(
            "the send stopped because the outcome of a request is unknown. Run the same command again with "
            "--resend-uncertain (they may get it twice) or --mark-uncertain-sent (they may not get it at all)")
    if report.stopped == INTERRUPTED:
        err.print("Stopped after the batch in flight; what was sent is recorded. Run the same command to carry on.")
        raise KeyboardInterrupt
    if report.stopped == REFUSED:
        raise TransportError(f"{report.stop_message} Nothing more was sent; run the same command again once this "
                             "is fixed, and it will carry on where it stopped.", retryable=False)
    if report.stopped == GAVE_UP:
        raise TransportError(f"gave up after several tries ({report.stop_message}). Run the same command again "
                             "later: it carries on where it stopped.", retryable=True)
    if report.failed:
        raise TransportError(f"{report.failed} people could not be sent to. Run the same command again to retry "
                             "them.", retryable=True)


@contextmanager
def _ctrl_c_stops(dispatcher: Any) -> Iterator[None]:
    """First Ctrl-C: finish and record the batch in flight, then stop. A second one stops at once."""
    def on_interrupt(signum: int, frame: Any) -> None:
        if dispatcher.stop.is_set():
            raise KeyboardInterrupt
        dispatcher.stop.set()
        err.print("Stopping after the batch in flight (press Ctrl-C again to stop at once)...")

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def _progress_display(total: int) -> Iterator[Callable[[Any], None]]:
    """A progress bar on a terminal; plain lines (one per batch) when output goes to a file or a pipe."""
    if out.is_terminal:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("Sending"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      TextColumn("{task.description}"), console=out) as bar:
            task = bar.add_task("", total=total)

            def show(progress: Any) -> None:
                bar.update(task, completed=progress.done, description=_plain(progress.note or ""))

            yield show
        return

    def show_plain(progress: Any) -> None:
        if progress.note:
            out.print(f"  {_plain(progress.note)}")
        else:
            out.print(f"  {progress.done} of {total} done ({progress.sent} sent)")

    yield show_plain
