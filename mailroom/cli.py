"""Every command, and the one boundary that turns errors into messages and exit statuses.

The library raises ``MailroomError`` subclasses; every command runs inside ``_Boundary.main``, which
prints them for office staff (no traceback) and exits with the error's ``ExitStatus``. Anything else
is a fault in mailroom: one plain sentence and status 70, with the traceback only under --traceback.
Commands never call sys.exit: they return an ``ExitStatus`` (or None for DONE).
compose.py and send.py call ``compose_main`` and ``send_main``; everything else hangs off the
``mailroom`` group (``python -m mailroom``).
"""

from __future__ import annotations

import gc
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

import click
from rich.console import Console

from mailroom.errors import ExitStatus, InputError, Interrupted, MailroomError, RefusedForSafety
from mailroom.secrets import mask

if TYPE_CHECKING:
    from mailroom.audience.lists import AudiencePlan
    from mailroom.checks.rules import Finding
    from mailroom.send.dispatch import Progress
    from mailroom.send.ledger import UncertainBatch
    from mailroom.settings import Settings
    from mailroom.workflows.compose import ComposeResult
    from mailroom.workflows.send import LivePlan, SendResult, SendSession

out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)

UNEXPECTED = ("mailroom hit an unexpected problem: {problem}; nothing more was sent; run again with --traceback "
              "and report it")


class _Boundary(click.Command):
    """The one place a command's outcome becomes a message and an exit status (httpie's pattern)."""

    show_traceback = False  # set by --traceback, which every command and the group accept

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> NoReturn:
        _Boundary.show_traceback = False
        sys.exit(run_command(lambda: super(_Boundary, self).main(
            args, prog_name, complete_var, standalone_mode=False, **extra)))


def run_command(invoke: Callable[[], object]) -> ExitStatus | int:
    """Run ``invoke`` (a click command, not standalone) and return the exit status it ends with."""
    try:
        status = invoke()
    except click.exceptions.Exit as done:  # --help, --version
        return done.exit_code
    except click.ClickException as mistake:  # usage errors: click's own message, status 2
        mistake.show()
        return ExitStatus.BAD_INPUT
    except Interrupted as exc:
        err.print(_plain(str(exc)))
        return exc.exit_status
    except MailroomError as exc:
        err.print(f"[bold red]Error:[/] {_plain(str(exc))}")
        return exc.exit_status
    except (KeyboardInterrupt, click.exceptions.Abort):
        err.print("Stopped.")
        return ExitStatus.INTERRUPTED
    except Exception as exc:
        if _Boundary.show_traceback:
            err.print(traceback.format_exc(), markup=False)
        problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        err.print(UNEXPECTED.format(problem=problem), markup=False)
        return ExitStatus.INTERNAL_ERROR
    return ExitStatus.DONE if status is None else int(status)  # type: ignore[call-overload]


class MailroomCommand(_Boundary):
    """A command that runs inside the boundary when started on its own (compose.py, send.py)."""


class MailroomGroup(_Boundary, click.Group):
    """The ``mailroom`` group: its subcommands run inside the group's boundary."""

    command_class = MailroomCommand
    group_class = type  # subgroups are MailroomGroups too


def _remember_traceback(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        _Boundary.show_traceback = True


def _traceback_option() -> click.Option:
    return click.Option(["--traceback"], is_flag=True, expose_value=False, is_eager=True,
                        callback=_remember_traceback,
                        help="On an unexpected problem, show the Python traceback (for a bug report).")


def _plain(text: str) -> str:
    """Escape rich markup so file names and user text print as they are; never show a secret."""
    return mask(text).replace("[", r"\[")


newsletter_argument = click.argument(
    "newsletter", type=click.Path(file_okay=False, path_type=Path), metavar="NEWSLETTER_DIR")


@click.group(cls=MailroomGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """mailroom: compose and send the school newsletter."""


# --- compose -----------------------------------------------------------------------------------

@main.command("compose", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("newsletter", required=False, type=click.Path(file_okay=False, path_type=Path),
                metavar="NEWSLETTER_DIR")
@click.option("--open", "open_browser", is_flag=True, help="Open the preview in your web browser.")
@click.option("--language", "languages", default="", metavar="TAGS",
              help="Also make these languages' versions, e.g. --language pl,ar (as well as the languages of the "
                   "people in audiences.csv and the school's own newsletter.<language>.md translations).")
@click.option("--new", "new_topic", metavar="TOPIC",
              help='Start next week\'s newsletter from the latest one instead, e.g. --new "Christmas fair".')
def compose_command(newsletter: Path | None, open_browser: bool, languages: str, new_topic: str | None) -> None:
    """Turn NEWSLETTER_DIR/newsletter.md into the email for each audience (and each readers' language)."""
    from mailroom.settings import load_settings
    from mailroom.translate.languages import parse_tags
    from mailroom.translate.report import language_lines
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
    result = compose_newsletter(settings, newsletter, languages=parse_tags(languages, "--language"))
    build = result.build
    out.print(f"[bold green]Composed[/] \u201c{_plain(build.subject)}\u201d")
    # Only the preview and the web copy are named: the versions in build/versions/ still hold each
    # reader's placeholders (%%greeting%%) and are for send, not for reading.
    width = max(10, *(len(name) for name in build.versions))
    for name, version in build.versions.items():
        out.print(f"  {name:<{width}} {version.html_bytes / 1024:5.1f} KB, {len(version.links)} links")
    for line in language_lines(result.languages):
        out.print(_plain(line))
    _print_pictures(result)
    preview = result.preview_path
    out.print(f"Preview in your browser: {_plain(_shown(preview))}")
    out.print(f"Web copy, to publish on the school website: {_plain(_shown(result.web_path))}")
    # Compose succeeds (exit 0) even when the checks find errors: the build is there to look at and
    # fix from; send.py is what refuses it. The message says so plainly.
    _print_findings(result.findings, list(build.versions), stopping=False)
    if open_browser:
        _open_in_browser(preview)


def _open_in_browser(page: Path | str) -> None:
    """Open ``page`` (a file or an address) in the browser, or say plainly that there is none and where it is."""
    import webbrowser

    url = page if isinstance(page, str) else page.resolve().as_uri()
    try:
        opened = webbrowser.open(url)
    except webbrowser.Error:
        opened = False
    if not opened:
        where = ("Open this address in your browser: " + page if isinstance(page, str)
                 else f"Open this file in your browser: {page.resolve()}")
        out.print(f"[yellow]Could not open a web browser on this computer.[/] {_plain(where)}")


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
def check_command(newsletter: Path) -> ExitStatus | None:
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
    return ExitStatus.BAD_INPUT if has_errors(findings) else ExitStatus.DONE


# --- preview ------------------------------------------------------------------------------------

DEFAULT_PREVIEW_PORT = 8040


@main.command("preview")
@newsletter_argument
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PREVIEW_PORT, show_default=True,
              help="The port to serve on (0: any free port).")
@click.option("--no-open", "no_open", is_flag=True, help="Do not open the web browser.")
def preview_command(newsletter: Path, port: int, no_open: bool) -> None:
    """Show NEWSLETTER_DIR in the browser and update it every time you save a change."""
    import datetime as dt
    import errno

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
        _open_in_browser(server.url)
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
    _collector_for_bulk_work()
    send_command.main(prog_name="send.py")


def _collector_for_bulk_work() -> None:
    """A send makes a few short-lived objects per person and keeps no cycles worth collecting, yet Python's
    cyclic collector ran 400 times in a 100,000-person send, scanning everything held: 5% of the send's CPU.
    What is loaded by now lives as long as the process (gc.freeze moves it out of the collector's sight),
    and a young collection waits for 50,000 new objects instead of 700."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


# --- sign-in and doctor (mailroom.doctor, mailroom.send.transports.oauth hold the logic) -------------------

@main.command("sign-in")
def sign_in_command() -> None:
    """Sign in to Microsoft 365 as the newsletter mailbox's user, once (SMTP_AUTH=oauth2-microsoft)."""
    from mailroom.send.transports.oauth import device_code_sign_in
    from mailroom.settings import load_settings

    def show(text: str) -> None:
        out.print(_plain(text))
        out.file.flush()  # the code must be on screen while mailroom waits for the sign-in

    out.print(_plain(device_code_sign_in(load_settings(), show=show)))


@main.command("doctor")
@click.option("--to", "to_lists", metavar="LISTS", help="Lists to count against the daily limit (default: all).")
@click.option("--no-connect", is_flag=True, help="Do not contact the mail service (settings, DNS and lists only).")
def doctor_command(to_lists: str | None, no_connect: bool) -> ExitStatus:
    """Check the set-up before the first send, without sending anything (exit 2 if something would stop it)."""
    from mailroom.doctor import blocking, run_doctor
    from mailroom.doctor.report import format_findings
    from mailroom.settings import load_settings

    settings = load_settings()
    lists = split_lists(to_lists, settings)
    out.print(f"Checking {_plain(settings.school.name)}'s set-up for sending newsletters (nothing is sent).")
    findings = run_doctor(settings, lists=lists, connect=not no_connect)
    for part in format_findings(findings):
        out.print(part)
    # a problem in the set-up is the same verdict as a wrong setting: nothing would be sent as it is
    return ExitStatus.BAD_INPUT if blocking(findings) else ExitStatus.DONE


# --- events ------------------------------------------------------------------------------------

@main.group("events")
def events_group() -> None:
    """Delivery events from SendGrid: receive them, or import a file of them."""


@events_group.command("serve")
@click.option("--port", default=8025, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0 picks a free one).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Keep 127.0.0.1 behind a reverse proxy or tunnel.")
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
    if result.resubscribed:
        out.print(f"{result.resubscribed} reader(s) resubscribed through SendGrid after unsubscribing, so they "
                  "are no longer suppressed.")
    if result.resubscribe_requests:
        out.print(f"{result.resubscribe_requests} suppressed reader(s) asked to be resubscribed. They stay "
                  "suppressed until the office takes them back:\n"
                  "  python -m mailroom suppressions remove ADDRESS --note ...")


# --- suppressions ------------------------------------------------------------------------------

@main.group("suppressions", invoke_without_command=True)
@click.option("--all", "show_all", is_flag=True, help="Also show addresses the office took back.")
@click.pass_context
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
    from mailroom.events.report import report_rows

    for label, cells in report_rows(report.audiences):
        table.add_row(label, *cells)
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

def split_lists(text: str | None, settings: Settings) -> list[str]:
    """--to "staff, parents" as a list in the order given; every list in school.toml when not given."""
    if text is None:
        return settings.list_names()
    return [part.strip() for part in text.split(",") if part.strip()]


def suppressed_for(settings: Settings) -> dict[str, str]:
    """Addresses that must not be mailed (bounces, complaints, unsubscribes) -> why."""
    from mailroom.events.suppressions import suppressed_addresses

    return dict(suppressed_addresses(settings.db_path))


@main.command("audiences")
@click.option("--to", "to", metavar="LISTS",
              help="Lists, separated by commas, in the order that decides who gets which version "
                   "(default: every list in school.toml).")
@click.option("--audiences", "audiences_file", type=click.Path(path_type=Path),
              help="The mailing lists file (default: audiences.csv).")
@click.option("--problems-csv", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Also write the problems to this CSV file (safe to open in Excel).")
@click.option("--left-out-csv", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Also write everyone left out, and why, to this CSV file (safe to open in Excel).")
def audiences_command(to: str | None, audiences_file: Path | None, problems_csv: Path | None,
                      left_out_csv: Path | None) -> ExitStatus | None:
    """Check audiences.csv: who is on each list, who will receive, who is left out and why.

    Exits with status 2 when some rows have problems (they would be left out of a send).
    """
    from mailroom.audience.lists import load_audience
    from mailroom.audience.report import (
        format_audience_summary,
        format_left_out,
        format_problems,
        write_left_out_csv,
        write_problems_csv,
    )
    from mailroom.settings import load_settings

    settings = load_settings()
    # Shown relative to where the command runs, as office staff would type it.
    # Versions are named in school.toml's list order here: there is no newsletter to take the order from.
    plan = load_audience(audiences_file, settings, split_lists(to, settings), suppressed_for(settings),
                         default=Path(_shown(settings.root / "audiences.csv")), version_order=list(settings.lists))
    files = ", ".join(_shown(path) + (f" (sheet '{sheet}')" if sheet else "") for path, sheet in plan.files)
    out.print(f"{files}: {plan.rows} {'row' if plan.rows == 1 else 'rows'} read, "
              f"lists in this order: {', '.join(plan.lists)}", markup=False)
    full_list = Path(_shown(left_out_csv)) if left_out_csv is not None else None
    for section in (format_audience_summary(plan), format_left_out(plan, full_list),
                    format_problems(plan, Path(_shown(problems_csv)) if problems_csv else full_list)):
        if section:
            out.print()
            for line in section:
                out.print(line, markup=False)
    problems = len(plan.problems())
    written = []
    for path, write, one, many in ((problems_csv, write_problems_csv, "problem", "problems"),
                                   (left_out_csv, write_left_out_csv, "left-out entry", "left-out entries")):
        if path is None:
            continue
        try:
            count = write(plan, path)
        except OSError as exc:
            raise InputError(f"could not write the {many} report here ({exc.strerror})", path) from None
        written.append(f"Wrote {count} {one if count == 1 else many} to {_shown(path)}")
    if written:
        out.print()
        for line in written:
            out.print(line, markup=False)
    return ExitStatus.BAD_INPUT if problems else ExitStatus.DONE


# --- send --------------------------------------------------------------------------------------

_SHOW_UNCERTAIN = 20  # uncertain people named per batch before "and N more"
_SHOW_NOT_SENT = 20  # people not sent named at the end before "and N more"


@main.command("send", context_settings={"help_option_names": ["-h", "--help"]})
@newsletter_argument
@click.option("--to", "to_lists", required=True, metavar="LIST[,LIST...]",
              help="The mailing lists to send to, e.g. parents,staff (someone on both gets the first's version).")
@click.option("--test", "test_address", metavar="ADDRESS",
              help="Send one copy of each version, marked [TEST], to ADDRESS only.")
@click.option("--language", "test_languages", default="", metavar="TAGS",
              help="With --test: send only these languages' versions, e.g. --language pl,ar (en: the English).")
@click.option("--dry-run", is_flag=True, help="Show who would get what, and send nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--untested", is_flag=True, help="Allow a live send of a build that was never test-sent.")
@click.option("--sandbox", is_flag=True, help="SendGrid checks every request but delivers nothing.")
@click.option("--audiences", "audiences_file", type=click.Path(path_type=Path),
              help="The mailing lists file (default: audiences.csv in the project folder).")
@click.option("--resend-uncertain", is_flag=True,
              help="Send again to people whose earlier send may or may not have arrived (they may get it twice).")
@click.option("--mark-uncertain-sent", is_flag=True,
              help="Count people whose earlier send may or may not have arrived as sent (they may not have it).")
@click.option("--accept-new-build", is_flag=True,
              help="Carry on a send with a newsletter composed again since it began: the people still to send "
                   "get the new version, those who had the earlier one keep it.")
@click.option("--start-again", is_flag=True,
              help="Send to everyone as if for the first time although sent.json says this newsletter was sent "
                   "and the ledger has no record of it (they may get it twice).")
def send_command(newsletter: Path, to_lists: str, test_address: str | None, test_languages: str, dry_run: bool,
                 yes: bool, untested: bool, sandbox: bool, audiences_file: Path | None, resend_uncertain: bool,
                 mark_uncertain_sent: bool, accept_new_build: bool, start_again: bool) -> None:
    """Send NEWSLETTER_DIR's composed newsletter to the chosen lists, safely and resumably."""
    from mailroom.settings import load_settings
    from mailroom.translate.languages import parse_tags
    from mailroom.workflows.send import SendSession

    if resend_uncertain and mark_uncertain_sent:
        raise click.UsageError("choose one of --resend-uncertain and --mark-uncertain-sent, not both")
    if test_languages and test_address is None:
        raise click.UsageError("--language goes with --test: it chooses which languages' versions to test")
    settings = load_settings()
    lists = split_lists(to_lists, settings)
    if not lists:
        raise click.UsageError("--to needs at least one list name, e.g. --to parents")
    with SendSession(settings, newsletter, lists, sandbox=sandbox) as session:
        if test_address is not None:
            _send_test(session, test_address, parse_tags(test_languages, "--language"))
        else:
            _send_live(session, audiences_file=audiences_file, dry_run=dry_run, yes=yes, untested=untested,
                       resend_uncertain=resend_uncertain, mark_uncertain_sent=mark_uncertain_sent,
                       accept_new_build=accept_new_build, start_again=start_again)


def _send_test(session: SendSession, address: str, languages: Sequence[str] = ()) -> None:
    plan = session.plan_test(address, languages)
    out.print(f"Sending a test copy of {', '.join(plan.versions)} to {_plain(plan.address)} "
              f"through {_plain(plan.transport)}{' (sandbox: nothing is delivered)' if plan.sandbox else ''}.")
    result = session.send_test(plan)
    _show_result(result)
    out.print("[bold green]Test sent.[/] Check it, then send for real without --test.")


def _send_live(session: SendSession, *, audiences_file: Path | None, dry_run: bool, yes: bool, untested: bool,
               resend_uncertain: bool, mark_uncertain_sent: bool, accept_new_build: bool,
               start_again: bool) -> None:
    plan = session.plan_live(audiences_file=audiences_file, resend_uncertain=resend_uncertain,
                             mark_uncertain_sent=mark_uncertain_sent, dry_run=dry_run)
    if plan.marked_as_sent:
        out.print(f"Counted {plan.marked_as_sent} people from uncertain batches as sent, as you asked.")
    _show_plan(plan)
    if plan.uncertain:
        _show_uncertain(plan.uncertain, plan.uncertain_file)
    if dry_run:
        if plan.lost_ledger is not None:
            from mailroom.workflows.send import lost_ledger_message

            warning = lost_ledger_message(plan.lost_ledger, plan.ledger_path, plan.ledger_was_missing)
            err.print(f"[bold yellow]Warning:[/] {_plain(warning)}")
        out.print("Dry run: nothing was sent.")
        return
    # The refusals that need a flag (lost ledger, uncertain people) come before any question.
    session.check_live(plan, untested=True, accept_new_build=True, start_again=start_again)
    if plan.total == 0:
        out.print("Nobody is left to send to: everyone on these lists already has this newsletter.")
        return
    if not yes:
        typed = click.prompt(f"To send to {plan.total} people, type {plan.total}", default="", show_default=False)
        if typed.strip().replace(",", "") != str(plan.total):
            raise RefusedForSafety("nothing was sent: the number typed did not match")
        if plan.new_build_needs_consent and not accept_new_build:
            # A decision of its own: typing the number is not enough to mix two versions of one newsletter.
            typed = click.prompt("Some people already have an earlier version (see above). To send this new "
                                 "version to the others, type NEW", default="", show_default=False)
            if typed.strip().lower() != "new":
                raise RefusedForSafety("nothing was sent: the new version was not accepted")
            accept_new_build = True
        if plan.untested and not untested:
            if not click.confirm("This build was never test-sent. Send it anyway?", default=False):
                raise RefusedForSafety("nothing was sent: send a test first with --test YOUR_ADDRESS")
            untested = True
    with _ctrl_c_stops(session), _progress_display(plan.total) as show:
        result = session.send_live(plan, untested=untested, accept_new_build=accept_new_build,
                                   start_again=start_again, on_progress=show)
    _show_left_out_during_send(result)
    _show_result(result)
    if plan.sandbox:
        out.print(f"[bold green]Sandbox:[/] SendGrid checked {result.report.sent} messages in "
                  f"{result.report.requests} requests and delivered none.")
    elif len(result.sent_by_build) > 1:
        # Never "everyone has it": they have different versions, and the office must know who has which.
        out.print(f"[bold green]Done:[/] sent to {result.report.sent} people. {_plain(versions_summary(result))}.")
    else:
        out.print(f"[bold green]Done:[/] sent to {result.report.sent} people; everyone on {', '.join(plan.lists)} "
                  "who should get this newsletter now has it.")


def versions_summary(result: SendResult) -> str:
    """"800 people got the version composed at 09:12; 2,180 got the version composed at 09:40"."""
    from mailroom.workflows.send import composed_labels

    builds = result.sent_by_build
    labels = composed_labels([b.composed_at for b in builds])
    parts = [f"{b.people:,} {'person' if b.people == 1 else 'people'} got the version composed at {label}"
             for b, label in zip(builds, labels, strict=True)]
    return "; ".join(parts)


def _show_left_out_during_send(result: SendResult) -> None:
    """People the plan had, left out because an unsubscribe or bounce arrived while the send ran."""
    left = result.left_out_during_send
    if not left:
        return
    total = sum(left.values())
    out.print(f"Left out during the send: {total} {'person' if total == 1 else 'people'} unsubscribed, bounced or "
              "were suppressed after the plan was made (see: python -m mailroom suppressions):")
    for reason, count in sorted(left.items(), key=lambda item: -item[1])[:5]:
        out.print(f"  {count}: {_plain(reason)}")


def _show_plan(plan: LivePlan) -> None:
    """The plan before anything goes out: the lists (as ``mailroom audiences`` shows them), then this send."""
    from mailroom.audience.report import format_audience_summary, format_left_out, format_problems

    audience: AudiencePlan = plan.audience
    counts = plan.counts
    full_list = Path(_shown(plan.left_out_file)) if plan.left_out_file else None
    out.print(f"[bold]Sending[/] \u201c{_plain(plan.subject)}\u201d")
    # Counts and a few examples only, so a plan for 10,000 people fits on a screen; the CSV has everyone.
    for section in (format_audience_summary(audience, versions=False), format_left_out(audience, full_list),
                    format_problems(audience, full_list)):
        for line in section:
            out.print(line, markup=False)
    _show_changes(plan)
    # Per version: each list's own, and a combination's (people on several lists) when anyone gets it.
    shown = [name for name in counts.audiences if counts.to_send.get(name) or not any(c in name for c in "+.")]
    out.print("To send now, per version: " + ", ".join(f"{name} {counts.to_send.get(name, 0):,}" for name in shown))
    from mailroom.translate.report import plan_language_lines

    for line in plan_language_lines(counts.languages, counts.english_instead, plan.school_language):
        out.print(_plain(line))
    if counts.already_sent:
        out.print(f"Already sent earlier (skipped): {counts.already_sent}")
    if counts.retrying:
        out.print(f"Not accepted last time (trying again): {counts.retrying}")
    if counts.resending_uncertain:
        out.print(f"Uncertain last time (sending again, as you asked): {counts.resending_uncertain}")
    out.print(f"Transport: {_plain(plan.transport)}" + (" - sandbox mode, nothing is delivered" if plan.sandbox
                                                         else ""))
    for note in plan.transport_notes:
        out.print(_plain(note))
    if plan.test_sends:
        last = plan.test_sends[-1]
        out.print(f"Test: this exact build was test-sent to {_plain(last.address)} at {last.sent_at}.")
    else:
        out.print("Test: this build has [bold]not[/] been test-sent.")
    out.print(f"[bold]{plan.total:,}[/] people will get it now.")
    if plan.new_build_needs_consent:
        from mailroom.workflows.send import new_build_summary

        text = new_build_summary(plan)
        out.print(f"[bold yellow]New version:[/] {_plain(text[0].upper() + text[1:])}.")


_SHOW_CHANGED = 10  # people named under "now left out" before "and N more"


def _show_changes(plan: LivePlan) -> None:
    """What changed in the lists since the last run of this newsletter: new people, people now left out."""
    counts = plan.counts
    if not counts.planned_before or plan.sandbox:
        return
    if not counts.new_people and not counts.now_left_out:
        out.print("Since the last run: nobody new on the lists, and nobody left out who was planned.")
        return
    new = f"{counts.new_people} new {'person' if counts.new_people == 1 else 'people'} on the lists"
    if not counts.now_left_out:
        out.print(f"Since the last run: {new}.")
        return
    gone = counts.now_left_out
    out.print(f"Since the last run: {new}; {gone} {'person' if gone == 1 else 'people'} planned last time and not "
              "yet sent now left out (no longer on the lists, unsubscribed or suppressed):")
    for key in counts.now_left_out_keys[:_SHOW_CHANGED]:
        out.print(f"  now left out: {_plain(key)}")
    if counts.now_left_out > _SHOW_CHANGED:
        out.print(f"  ... and {counts.now_left_out - _SHOW_CHANGED} more")


def _show_uncertain(batches: Sequence[UncertainBatch], full_list: Path | None) -> None:
    """Name the people whose send may or may not have arrived (all of them are in ``full_list``)."""
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
    if full_list is not None:
        err.print(f"  Everyone in these batches is listed in {_plain(_shown(full_list))}")


def _show_result(result: SendResult) -> None:
    """Say how the run ended; anything short of complete raises the error that sets the exit status."""
    report = result.report
    if report.failed or report.uncertain or report.stopped:
        out.print(f"Sent: {report.sent}. Not sent: {report.failed}. Uncertain: {report.uncertain}.")
    for reason, count in report.errors.most_common(5):
        err.print(f"  {count} not sent: {_plain(reason)}")
    if result.not_sent:
        err.print(f"Not sent ({len(result.not_sent)}):")
        for person in result.not_sent[:_SHOW_NOT_SENT]:
            who = f"{person.name} <{person.email}>" if person.name else person.email
            err.print(f"  {who}: {person.reason}", markup=False)
        if len(result.not_sent) > _SHOW_NOT_SENT:
            err.print(f"  ... and {len(result.not_sent) - _SHOW_NOT_SENT} more")
        if result.not_sent_file is not None:
            err.print(f"  Everyone not sent to is listed in {_shown(result.not_sent_file)}", markup=False)
    if result.uncertain:
        _show_uncertain(result.uncertain, result.uncertain_file)
    if result.error is not None:
        raise result.error


@contextmanager
def _ctrl_c_stops(session: SendSession) -> Iterator[None]:
    """First Ctrl-C: finish and record the batch in flight, then stop. A second one stops at once."""
    def on_interrupt(signum: int, frame: FrameType | None) -> None:
        # A second Ctrl-C gets Python's own handler (stop now); the boundary says "Stopped."
        signal.signal(signal.SIGINT, signal.default_int_handler)
        session.stop.set()
        err.print("Stopping after the batch in flight (press Ctrl-C again to stop at once)...")

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


_PLAIN_PROGRESS_EVERY = 2.0  # seconds between progress lines written to a file or a pipe


@contextmanager
def _progress_display(total: int) -> Iterator[Callable[[Progress], None]]:
    """A progress bar on a terminal, moving per message with the time left; plain lines (one per batch)
    when output goes to a file or a pipe."""
    if out.is_terminal:
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as ProgressBar

        with ProgressBar(TextColumn("Sending"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      TextColumn("{task.description}"), console=out) as bar:
            task = bar.add_task("", total=total)

            def show(progress: Progress) -> None:
                bar.update(task, completed=progress.done, description=_plain(progress.note or ""))

            yield show
        return

    last_line = [-_PLAIN_PROGRESS_EVERY]  # when the last "done" line was written (monotonic seconds)

    def show_plain(progress: Progress) -> None:
        if progress.partial:  # a log gets a line per batch at most, never one per person
            return
        if progress.note:
            out.print(f"  {_plain(progress.note)}")
            return
        # The first batch, then one line every few seconds, and the last: a log that says the send is moving
        # without a line per 1,000 people (each line cost the send as much CPU as 300 people).
        now = time.monotonic()
        if progress.done >= total or now - last_line[0] >= _PLAIN_PROGRESS_EVERY:
            last_line[0] = now
            out.print(f"  {progress.done} of {total} done ({progress.sent} sent)")

    yield show_plain


def _add_traceback_option(command: click.Command) -> None:
    """--traceback on the group and on every command, so send.py and compose.py take it too."""
    command.params.append(_traceback_option())
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _add_traceback_option(sub)


_add_traceback_option(main)
