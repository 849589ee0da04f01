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
