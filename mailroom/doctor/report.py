"""The doctor's findings for the terminal: one row per finding in a grid, so a long finding wraps inside
its own column, under its first line (rich; every text from outside is escaped, never read as markup)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import RenderableType
from rich.markup import escape
from rich.table import Table

from mailroom.doctor.findings import Finding, Level

_LABEL = {Level.OK: "[green]OK[/]", Level.NOTE: "[cyan]Note[/]", Level.WARNING: "[yellow]Warning[/]",
          Level.PROBLEM: "[bold red]Problem[/]"}


def format_findings(findings: Sequence[Finding]) -> list[RenderableType]:
    """The findings as a grid (verdict, area, what was found and what to do), then the one-line verdict."""
    grid = Table.grid()  # no padding: the widths below are the columns exactly
    grid.add_column(width=2)  # indent
    grid.add_column(width=9, no_wrap=True)  # "Problem" and two spaces
    grid.add_column(width=13, no_wrap=True)  # "Daily limit" and two spaces
    grid.add_column(ratio=1, overflow="fold")
    for finding in findings:
        text = escape(finding.summary)
        if finding.todo:
            text += f"\n[bold]What to do:[/] {escape(finding.todo)}"
        if finding.it:
            text += f"\n[bold]For IT:[/] {escape(finding.it)}"
        grid.add_row("", _LABEL[finding.level], finding.area, text)
    return [grid, verdict(findings)]


def verdict(findings: Sequence[Finding]) -> str:
    problems = sum(f.level is Level.PROBLEM for f in findings)
    warnings = sum(f.level is Level.WARNING for f in findings)
    counted = f"{problems} problem{'s' * (problems != 1)}, {warnings} warning{'s' * (warnings != 1)}"
    if problems:
        return (f"[bold red]{counted}.[/] The newsletter cannot go out (or big mailbox providers would refuse it) "
                "until the problems are fixed.")
    if warnings:
        return f"[yellow]{counted}.[/] Sending works; fixing the warnings helps the newsletter reach inboxes."
    return "[green]Everything checked is ready for sending.[/]"
