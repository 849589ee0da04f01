"""The doctor's findings as lines for the terminal (rich markup; every text from outside escaped)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from rich.markup import escape

from mailroom.doctor.findings import Finding, Level

_LABEL = {Level.OK: "[green]OK     [/]", Level.NOTE: "[cyan]Note   [/]", Level.WARNING: "[yellow]Warning[/]",
          Level.PROBLEM: "[bold red]Problem[/]"}
_AREA_WIDTH = 12


def format_findings(findings: Sequence[Finding]) -> Iterator[str]:
    indent = " " * (2 + 7 + 2 + _AREA_WIDTH)
    for finding in findings:
        yield f"  {_LABEL[finding.level]}  {finding.area:<{_AREA_WIDTH}}{escape(finding.summary)}"
        if finding.todo:
            yield f"{indent}What to do: {escape(finding.todo)}"
        if finding.it:
            yield f"{indent}For IT: {escape(finding.it)}"
    problems = sum(f.level is Level.PROBLEM for f in findings)
    warnings = sum(f.level is Level.WARNING for f in findings)
    counted = f"{problems} problem{'s' * (problems != 1)}, {warnings} warning{'s' * (warnings != 1)}"
    if problems:
        yield (f"[bold red]{counted}.[/] The newsletter cannot go out (or big mailbox providers would refuse it) "
               "until the problems are fixed.")
    elif warnings:
        yield f"[yellow]{counted}.[/] Sending works; fixing the warnings helps the newsletter reach inboxes."
    else:
        yield "[green]Everything checked is ready for sending.[/]"
