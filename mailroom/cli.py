"""Every command, and the one place that turns errors into messages and exit statuses.

The library raises ``MailroomError`` subclasses; ``_report_errors`` prints them for office staff
(no traceback) and exits with the error's status. compose.py and send.py call ``compose_main`` and
``send_main``; everything else hangs off the ``mailroom`` group (``python -m mailroom``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.console import Console

from mailroom.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, MailroomError

if TYPE_CHECKING:
    from mailroom.checks import Finding
    from mailroom.compose import ComposeResult

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
    # Compose succeeds (exit 0) even when the checks find errors: the build is there to look at and
    # fix from; send.py is what refuses it. The message says so plainly.
    _print_findings(result.findings, list(build.versions), stopping=False)
    if open_browser:
        import webbrowser

        webbrowser.open(preview.resolve().as_uri())


# --- checks ------------------------------------------------------------------------------------

def _print_findings(findings: Sequence[Finding], audiences: Sequence[str], *, stopping: bool) -> None:
    """The findings for office staff: errors in red, warnings in yellow, each with its line if known."""
    from mailroom.checks import merge_audiences

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
    from mailroom.build import load_build
    from mailroom.checks import check_build, has_errors, newsletter_for_build

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
    from mailroom.preview_server import PreviewServer, Watcher

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
    send_command = main.commands.get("send")
    if send_command is None:
        err.print("Sending is not built yet: compose.py works, send.py comes next.")
        sys.exit(2)
    send_command.main(prog_name="send.py")


# --- audiences ---------------------------------------------------------------------------------

def split_lists(text: str | None, settings: Any) -> list[str]:
    """--to "staff, parents" as a list in the order given; every list in school.toml when not given."""
    if text is None:
        return settings.list_names()
    return [part.strip() for part in text.split(",") if part.strip()]


def suppressed_for(settings: Any) -> dict[str, str]:
    """The ledger's suppression list (address key -> reason); empty until the ledger has one."""
    try:
        from mailroom.suppressions import suppressed_addresses  # type: ignore[import-not-found]
    except ImportError:
        return {}
    if not settings.db_path.exists():
        return {}
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
    from mailroom.audience import load_audience
    from mailroom.audience_report import format_audience_summary, format_left_out, format_problems, write_problems_csv
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
