"""An AudiencePlan in words for the office: the figures per list, who is left out and why, the problems.

``mailroom audiences`` prints these, and send's plan prints the same lines, so the two always agree.
Lines are plain text (no rich markup): print them with markup off or escaped.
"""

from __future__ import annotations

import csv
import unicodedata
from pathlib import Path

from mailroom.audience.lists import REASONS, AudiencePlan, LeftOut

# Excel (and LibreOffice) treat a cell starting with one of these as a formula.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _visible(text: str) -> str:
    """Text from the CSV with control characters shown as escapes, so it can't garble the terminal."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else
                   (repr(ch)[1:-1] if unicodedata.category(ch) == "Cc" else f"\\u{ord(ch):04x}") for ch in text)


def _people(count: int) -> str:
    return f"{count} {'person' if count == 1 else 'people'}"


def format_audience_summary(plan: AudiencePlan) -> list[str]:
    """Per list: how many are on it, how many will receive, how many are left out by reason; then the total."""
    lines = []
    for summary in plan.summaries.values():
        line = f"{summary.name}: {summary.on_list} on the list, {summary.receiving} will receive"
        if summary.left_out:
            reasons = ", ".join(f"{count} {reason}" for reason, count in summary.left_out.items())
            line += f", {sum(summary.left_out.values())} left out ({reasons})"
        lines.append(line)
    unplaced = sum(1 for item in plan.left_out if item.list_name is None)
    if unplaced:
        lines.append(f"not on any list because of a problem: {unplaced} {'row' if unplaced == 1 else 'rows'}")
    count = len(plan.recipients)
    lines.append(f"In all, {_people(count)} will receive {'one email' if count == 1 else 'one email each'}.")
    return lines


def format_left_out(plan: AudiencePlan) -> list[str]:
    """Who is left out of each list, grouped by reason, with the line of their row."""
    lines = []
    for name in plan.lists:
        on_list = [item for item in plan.left_out if item.list_name == name]
        if not on_list:
            continue
        lines.append(f"Left out of {name}:")
        for reason in REASONS:
            items = [item for item in on_list if item.reason == reason]
            if items:
                lines.append(f"  {reason} ({len(items)}):")
                lines.extend(f"    {_describe(item)}" for item in items)
    return lines


def _describe(item: LeftOut) -> str:
    email = _visible(item.email) or "(no email address)"
    detail = "see the problems below" if item.reason == "invalid" else _visible(item.detail)
    return f"line {item.line}: {email} ({detail})"


def format_problems(plan: AudiencePlan) -> list[str]:
    """Each invalid row once, with its line and what is wrong, under a heading naming the file."""
    problems = plan.problems()
    if not problems:
        return []
    lines = [f"Problems in {plan.path.name} (these rows are left out until they are fixed):"]
    for item in problems:
        email = f"{_visible(item.email)}: " if item.email else ""
        lines.append(f"  line {item.line}: {email}{_visible(item.detail)}")
    return lines


def excel_safe(cell: str) -> str:
    """A cell Excel will show as text, never run as a formula: a leading = + - @ tab or CR gets a quote."""
    return "'" + cell if cell.startswith(_FORMULA_STARTS) else cell


def write_problems_csv(plan: AudiencePlan, path: Path) -> int:
    """Write the problems (line, email, problem) as a CSV safe to open in Excel; returns how many."""
    problems = plan.problems()
    # utf-8-sig: Excel only reads a CSV as UTF-8 when it starts with a byte-order mark.
    with Path(path).open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["line", "email", "problem"])
        for item in problems:
            writer.writerow([item.line, excel_safe(item.email), excel_safe(item.detail)])
    return len(problems)
