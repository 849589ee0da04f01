"""audiences.csv -> who gets which version: validated, de-duplicated, unsubscribes and suppressions honoured.

The file usually comes from a school information system export or a spreadsheet kept by hand, so it is read
as it comes: UTF-8 with or without a byte-order mark, else Windows-1252 (Excel's "CSV" on Windows), comma or
semicolon separated, quoted fields with commas or line breaks, CRLF, blank lines, stray spaces, any header case.
A bad row never stops the others: it is left out with its line number and what is wrong with it. A problem
with the file as a whole (missing, unreadable, a required column missing) is an ``InputError``.
"""

from __future__ import annotations

import codecs
import csv
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from email_validator import EmailNotValidError, validate_email

from mailroom.errors import InputError
from mailroom.settings import Settings

REASONS = ("unsubscribed", "suppressed", "duplicate", "invalid")
FIELDS = ("email", "first_name", "last_name", "lists", "status")
REQUIRED_FIELDS = ("email", "first_name", "last_name", "lists")  # status may be absent: everyone subscribed
STATUSES = ("subscribed", "unsubscribed")

# What each field is called in messages for office staff.
_FIELD_WORDS = {"email": "email address", "first_name": "first name", "last_name": "last name",
                "lists": "lists", "status": "status"}
# Bytes Windows-1252 leaves undefined: a file holding them is neither UTF-8 nor Windows-1252.
_CP1252_UNDEFINED = re.compile(rb"[\x81\x8d\x8f\x90\x9d]")
_LIST_SPLIT = re.compile(r"[;,]")
# An ASCII dot-atom local part: for these, email-validator's verdict depends only on the domain (cached
# below) and the length, so the common case skips the full (slower) validation. Anything else takes the
# full path, so the verdict is always email-validator's.
_SIMPLE_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_SIMPLE_DOMAIN = re.compile(r"[A-Za-z0-9.-]+")


@dataclass(frozen=True)
class Recipient:
    """One person who gets one email: the version of ``audience``."""

    email: str  # as written in the CSV, trimmed
    key: str  # normalised for de-duplication: trimmed, lower-cased
    first_name: str
    last_name: str
    audience: str  # the list whose version this person gets (first list in --to order that they're on)
    line: int  # CSV line where the person was first found


@dataclass(frozen=True)
class LeftOut:
    """One entry (a row's place on a list) that gets no email, and why."""

    email: str
    line: int
    list_name: str | None  # None: the row could not be placed on any list (e.g. only unknown list names)
    reason: str  # one of REASONS
    detail: str


@dataclass(frozen=True)
class ListSummary:
    """The figures for one list; ``on_list == receiving + sum(left_out.values())``."""

    name: str
    on_list: int
    receiving: int
    left_out: dict[str, int]  # reason -> count


@dataclass(frozen=True)
class AudiencePlan:
    path: Path
    lists: tuple[str, ...]
    recipients: tuple[Recipient, ...]
    left_out: tuple[LeftOut, ...]
    summaries: dict[str, ListSummary]
    rows: int = 0  # people rows read (blank lines and the header not counted)
    encoding: str = "utf-8"
    delimiter: str = ","

    def problems(self) -> list[LeftOut]:
        """The invalid rows, once each (a bad row on two lists is one problem), in line order."""
        seen: set[int] = set()
        found = []
        for item in self.left_out:
            if item.reason == "invalid" and item.line not in seen:
                seen.add(item.line)
                found.append(item)
        return found


@dataclass
class _Row:
    line: int
    email: str
    key: str
    first_name: str
    last_name: str
    lists: tuple[str, ...]
    unsubscribed: bool
    problems: list[str] = field(default_factory=list)


def load_audience(path: Path, settings: Settings, lists: Sequence[str],
                  suppressed: Mapping[str, str] | None = None) -> AudiencePlan:
    """Read ``path`` and work out who on ``lists`` gets which version, and who is left out and why.

    ``lists`` is the --to order: someone on several of them gets the version of the first.
    ``suppressed`` maps an address key (trimmed, lower-cased) to the reason it is suppressed.
    """
    path = Path(path)
    chosen = _chosen_lists(lists, settings)
    suppressed = suppressed or {}
    encoding = _detect_encoding(path)
    rows: list[_Row] = []
    with path.open("r", encoding=encoding, newline="") as handle:
        delimiter = _sniff_delimiter(handle)
        handle.seek(0)
        for row in _read_rows(handle, path, delimiter, settings):
            rows.append(row)
    return _plan(path, settings, chosen, rows, suppressed, encoding, delimiter)


def _chosen_lists(lists: Sequence[str], settings: Settings) -> tuple[str, ...]:
    chosen: list[str] = []
    for name in lists:
        name = name.strip().lower()
        if not name or name in chosen:
            continue
        if name not in settings.lists:
            raise InputError(f"there is no list called '{name}'. The lists in school.toml are: "
                             f"{', '.join(settings.lists)}")
        chosen.append(name)
    if not chosen:
        raise InputError(f"choose at least one list: {', '.join(settings.lists)}")
    return tuple(chosen)


def _detect_encoding(path: Path) -> str:
    """UTF-8 (with or without a byte-order mark) if the whole file decodes as UTF-8, else Windows-1252."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise InputError("not found: mailroom needs the mailing lists in this file "
                         "(or give another file with --audiences)", path) from None
    except IsADirectoryError:
        raise InputError("this is a folder, not a CSV file", path) from None
    with handle:
        head = handle.read(4)
        if head.startswith(codecs.BOM_UTF8):
            encoding = "utf-8-sig"
        elif head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            raise InputError("this file is saved as 'Unicode Text' (UTF-16). In Excel, use Save As and "
                             "choose 'CSV UTF-8 (Comma delimited)'", path)
        else:
            encoding = "utf-8"
        handle.seek(0)
        decoder = codecs.getincrementaldecoder("utf-8")()
        try:
            for chunk in iter(lambda: handle.read(1 << 16), b""):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
            return encoding
        except UnicodeDecodeError:
            pass
        # Not UTF-8: Windows-1252 reads any byte but five; find the first of those, if any, to point at it.
        handle.seek(0)
        line = 1
        for chunk in iter(lambda: handle.read(1 << 16), b""):
            bad = _CP1252_UNDEFINED.search(chunk)
            if bad:
                line += chunk.count(b"\n", 0, bad.start())
                raise InputError("this file has characters mailroom cannot read (it is neither UTF-8 nor "
                                 "Windows-1252). In Excel, use Save As and choose 'CSV UTF-8 (Comma delimited)'",
                                 path, line)
            line += chunk.count(b"\n")
    return "cp1252"


def _sniff_delimiter(handle: Iterator[str]) -> str:
    """Comma or semicolon, whichever the header line (the first non-blank line) has more of outside quotes."""
    for text in handle:
        if not text.strip():
            continue
        counts = {",": 0, ";": 0}
        quoted = False
        for ch in text:
            if ch == '"':
                quoted = not quoted
            elif not quoted and ch in counts:
                counts[ch] += 1
        return ";" if counts[";"] > counts[","] else ","
    return ","


def _header_key(text: str) -> str:
    """Headings match ignoring case, spaces, '_' and '-': "First Name" finds first_name."""
    return "".join(ch for ch in text.casefold() if ch.isalnum())


def _columns(header: list[str], header_line: int, path: Path, settings: Settings) -> dict[str, int]:
    """Field -> column index, from the header and school.toml's [audiences_csv] names."""
    positions: dict[str, int] = {}
    for index, name in enumerate(header):
        positions.setdefault(_header_key(name), index)
    columns: dict[str, int] = {}
    missing = []
    for name in FIELDS:
        wanted = getattr(settings.columns, name)
        index = positions.get(_header_key(wanted))
        if index is not None:
            columns[name] = index
        elif name in REQUIRED_FIELDS:
            missing.append(wanted)
    if missing:
        found = ", ".join(f"'{h.strip()}'" for h in header if h.strip()) or "nothing"
        plural = "columns" if len(missing) > 1 else "column"
        raise InputError(
            f"the {plural} {', '.join(repr(m) for m in missing)} {'are' if len(missing) > 1 else 'is'} missing. "
            f"The first line has: {found}. If your export uses other headings, set them under "
            f"[audiences_csv] in school.toml", path, header_line)
    return columns


def _read_rows(handle: Iterator[str], path: Path, delimiter: str, settings: Settings) -> Iterator[_Row]:
    """Each non-blank row after the header, checked; ``line`` is the physical line where the row starts."""
    reader = csv.reader(handle, delimiter=delimiter, skipinitialspace=True)
    known = settings.lists
    columns: dict[str, int] | None = None
    line = 1
    try:
        for cells in reader:
            start, line = line, reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue
            if columns is None:
                columns = _columns(cells, start, path, settings)
                getters = [(name, columns.get(name)) for name in FIELDS]
                continue
            values = {name: (cells[i].strip() if i is not None and i < len(cells) else "") for name, i in getters}
            yield _check_row(start, values, known, settings)
    except csv.Error as exc:
        raise InputError(f"this line cannot be read as CSV ({exc})", path, line) from None
    if columns is None:
        raise InputError("the file is empty: it needs a first line of column headings, then one row per person",
                         path)


def _check_row(line: int, values: dict[str, str], known: Mapping[str, object], settings: Settings) -> _Row:
    problems: list[str] = []
    email = values["email"]
    key = email.lower()
    if not email:
        problems.append("the email address is missing")
    else:
        why = _email_problem(email)
        if why:
            problems.append(f"'{email}' is not a valid email address: {why}")
    for name in ("first_name", "last_name"):
        if _has_control(values[name]):
            problems.append(f"the {_FIELD_WORDS[name]} has a line break or other control character "
                            "(names go into the email's headers)")
    lists: list[str] = []
    unknown: list[str] = []
    for part in _LIST_SPLIT.split(values["lists"]):
        name = part.strip().lower()
        if not name or name in lists:
            continue
        (lists if name in known else unknown).append(name)
    if unknown:
        shown = ", ".join(f"'{n}'" for n in unknown)
        problems.append(f"{'there is no list called' if len(unknown) == 1 else 'there are no lists called'} "
                        f"{shown}. The lists in school.toml are: {', '.join(known)}")
    elif not lists:
        problems.append(f"no list is named in the '{settings.columns.lists}' column "
                        f"(use one or more of: {', '.join(known)}, separated by ';')")
    status = values["status"].lower()
    if status not in ("", *STATUSES):
        problems.append(f"the status should be 'subscribed', 'unsubscribed' or blank, not '{values['status']}'")
    return _Row(line=line, email=email, key=key, first_name=values["first_name"], last_name=values["last_name"],
                lists=tuple(lists), unsubscribed=status == "unsubscribed", problems=problems)


def _has_control(text: str) -> bool:
    return not text.isprintable() and any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in text)


def _email_problem(email: str) -> str | None:
    """None if email-validator accepts the address (no DNS look-ups), else its explanation."""
    local, at, domain = email.rpartition("@")
    if (at and len(email) <= 200 and len(local) <= 64 and _SIMPLE_LOCAL.fullmatch(local)
            and _SIMPLE_DOMAIN.fullmatch(domain)):
        return _domain_problem(domain.lower())
    return _validator_verdict(email)


@lru_cache(maxsize=4096)
def _domain_problem(domain: str) -> str | None:
    return _validator_verdict(f"a@{domain}")


def _validator_verdict(email: str) -> str | None:
    try:
        validate_email(email, check_deliverability=False)
    except EmailNotValidError as exc:
        return str(exc)
    return None


def _plan(path: Path, settings: Settings, chosen: tuple[str, ...], rows: list[_Row],
          suppressed: Mapping[str, str], encoding: str, delimiter: str) -> AudiencePlan:
    """De-duplicate by address key, choose each person's version, and count every list's entries."""
    order = {name: i for i, name in enumerate(chosen)}
    left_out: list[LeftOut] = []
    by_key: dict[str, list[_Row]] = {}
    unsubscribed: dict[str, int] = {}  # key -> first line saying so
    for row in rows:
        # An "unsubscribed" is honoured even on a row with other problems, as long as the address is readable.
        if row.unsubscribed and row.email:
            unsubscribed.setdefault(row.key, row.line)
        if row.problems:
            detail = "; ".join(row.problems)
            places = [name for name in row.lists if name in order]
            if places:
                left_out.extend(LeftOut(row.email, row.line, name, "invalid", detail) for name in places)
            elif not row.lists:
                left_out.append(LeftOut(row.email, row.line, None, "invalid", detail))
            continue
        if any(name in order for name in row.lists):
            by_key.setdefault(row.key, []).append(row)

    recipients: list[Recipient] = []
    for key, person_rows in by_key.items():
        entries = sorted(((order[name], row.line, name, row) for row in person_rows for name in row.lists
                          if name in order), key=lambda e: (e[0], e[1]))
        first = person_rows[0]
        if key in unsubscribed:
            left_out.extend(LeftOut(row.email, row.line, name, "unsubscribed",
                                    "marked unsubscribed" if row.unsubscribed else
                                    f"marked unsubscribed on line {unsubscribed[key]}")
                            for _, _, name, row in entries)
            continue
        if key in suppressed:
            reason = suppressed[key]
            left_out.extend(LeftOut(row.email, row.line, name, "suppressed", reason) for _, _, name, row in entries)
            continue
        _, _, audience, primary = entries[0]
        named = next((r for r in person_rows if r.first_name or r.last_name), first)
        recipients.append(Recipient(email=first.email, key=key, first_name=named.first_name,
                                    last_name=named.last_name, audience=audience, line=first.line))
        for _, _, name, row in entries[1:]:
            if name == audience:
                detail = f"already on the {name} list on line {primary.line}"
            elif row is primary:
                detail = f"gets the {audience} version instead"
            else:
                detail = f"gets the {audience} version instead (line {primary.line})"
            left_out.append(LeftOut(row.email, row.line, name, "duplicate", detail))

    left_out.sort(key=lambda item: (item.line, order.get(item.list_name or "", len(order))))
    recipients.sort(key=lambda r: r.line)
    summaries = {}
    for name in chosen:
        counts = Counter(item.reason for item in left_out if item.list_name == name)
        receiving = sum(1 for r in recipients if r.audience == name)
        summaries[name] = ListSummary(name=name, on_list=receiving + sum(counts.values()), receiving=receiving,
                                      left_out={reason: counts[reason] for reason in REASONS if counts[reason]})
    return AudiencePlan(path=path, lists=chosen, recipients=tuple(recipients), left_out=tuple(left_out),
                        summaries=summaries, rows=len(rows), encoding=encoding, delimiter=delimiter)

