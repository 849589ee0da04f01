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
