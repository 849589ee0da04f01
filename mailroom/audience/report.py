"""An AudiencePlan in words for the office: the figures per list, who is left out and why, the problems.

``mailroom audiences`` prints these, and send's plan prints the same lines, so the two always agree.
Lines are plain text (no rich markup): print them with markup off or escaped.
"""

from __future__ import annotations

import csv
import unicodedata
from collections import Counter
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
    return f"{count:,} {'person' if count == 1 else 'people'}"


# How many of each kind of entry the screen shows; everything is in the CSV files.
EXAMPLES_PER_REASON = 2
PROBLEMS_SHOWN = 5
_REASON_MEANING = {
    "unsubscribed": "asked not to get the newsletter",
    "suppressed": "bounced, complained or unsubscribed through SendGrid",
    "duplicate": "the same address again on a list: they get one email",
    "invalid": "a problem on the row: see the problems below",
    "cannot be sent this way": "an address the way this school sends cannot deliver to",
}


def format_audience_summary(plan: AudiencePlan, *, versions: bool = True) -> list[str]:
    """Per list: how many are on it, how many will receive, how many are left out by reason; then the total,
    and the versions when someone is on several lists."""
    lines = []
    for summary in plan.summaries.values():
        line = f"{summary.name}: {summary.on_list:,} on the list, {summary.receiving:,} will receive"
        if summary.left_out:
            reasons = ", ".join(f"{count:,} {reason}" for reason, count in summary.left_out.items())
            line += f", {sum(summary.left_out.values()):,} left out ({reasons})"
        lines.append(line)
    unplaced = sum(1 for item in plan.left_out if item.list_name is None)
    if unplaced:
        lines.append(f"not on any list because of a problem: {unplaced:,} {'row' if unplaced == 1 else 'rows'}")
    count = len(plan.recipients)
    lines.append(f"In all, {_people(count)} will receive {'one email' if count == 1 else 'one email each'}.")
    counts = plan.versions()
    if versions and any("+" in name for name in counts):
        shown = ", ".join(f"{name} {number:,}" for name, number in sorted(
            counts.items(), key=lambda item: (item[0].count("+"), plan.lists.index(item[0].split("+")[0]))))
        lines.append(f"People on several lists get one email with all their lists' sections. Per version: {shown}.")
    return lines


def format_left_out(plan: AudiencePlan, full_list: Path | None = None) -> list[str]:
    """Who is left out, by reason: how many (per list), what it means, and a few examples; the rest are
    counted, and all of them are in ``full_list`` when one was written."""
    if not plan.left_out:
        return []
    one = len(plan.left_out) == 1
    lines = [f"Left out: {len(plan.left_out):,} {'entry' if one else 'entries'} on the lists "
             f"{'gets' if one else 'get'} no email"
             + (f" (every one is listed in {full_list})" if full_list is not None else "") + ":"]
    for reason in REASONS:
        items = [item for item in plan.left_out if item.reason == reason]
        if not items:
            continue
        per_list = Counter(item.list_name or "no list" for item in items)
        split = ", ".join(f"{name} {count:,}" for name, count in per_list.items())
        lines.append(f"  {reason}: {len(items):,} ({split}) - {_REASON_MEANING[reason]}")
        if reason == "invalid":
            continue  # the problems section names them
        lines.extend(f"    {_describe(item)}" for item in items[:EXAMPLES_PER_REASON])
        if len(items) > EXAMPLES_PER_REASON:
            lines.append(f"    ... and {len(items) - EXAMPLES_PER_REASON:,} more")
    return lines


def _describe(item: LeftOut) -> str:
    email = _visible(item.email) or "(no email address)"
    list_name = f"{item.list_name}, " if item.list_name else ""
    return f"{item.where}: {email} ({list_name}{_visible(item.detail)})"


def format_problems(plan: AudiencePlan, full_list: Path | None = None) -> list[str]:
    """The rows with problems, once each, with where and what is wrong; the first few, then how many more."""
    problems = plan.problems()
    if not problems:
        return []
    files = " and ".join(path.name for path, _sheet in plan.files) or plan.path.name
    lines = [f"Problems in {files} ({len(problems):,}; these are left out until they are fixed):"]
    for item in problems[:PROBLEMS_SHOWN]:
        email = f"{_visible(item.email)}: " if item.email else ""
        lines.append(f"  {item.where}: {email}{_visible(item.detail)}")
    if len(problems) > PROBLEMS_SHOWN:
        more = len(problems) - PROBLEMS_SHOWN
        lines.append(f"  ... and {more:,} more" + (f" (all of them are in {full_list})" if full_list else
                                                   " (write them all to a file with --problems-csv FILE)"))
    return lines


def excel_safe(cell: str) -> str:
    """A cell Excel will show as text, never run as a formula: a leading = + - @ tab or CR gets a quote."""
    return "'" + cell if cell.startswith(_FORMULA_STARTS) else cell


def write_problems_csv(plan: AudiencePlan, path: Path) -> int:
    """Write the problems (where, email, problem) as a CSV safe to open in Excel; returns how many."""
    problems = plan.problems()
    # utf-8-sig: Excel only reads a CSV as UTF-8 when it starts with a byte-order mark.
    with Path(path).open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["line", "email", "problem"])
        for item in problems:
            writer.writerow([excel_safe(item.where.removeprefix("line ")), excel_safe(item.email),
                             excel_safe(item.detail)])
    return len(problems)


def write_left_out_csv(plan: AudiencePlan, path: Path) -> int:
    """Everyone left out (where, email, list, reason, detail) as a CSV safe to open in Excel; returns how many."""
    with Path(path).open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["where", "email", "list", "reason", "detail"])
        for item in plan.left_out:
            writer.writerow([excel_safe(item.where), excel_safe(item.email), item.list_name or "", item.reason,
                             excel_safe(item.detail)])
    return len(plan.left_out)
