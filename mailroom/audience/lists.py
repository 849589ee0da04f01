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
import os
import re
import stat
import unicodedata
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter
from pathlib import Path
from typing import NamedTuple, TextIO

from email_validator import EmailNotValidError, validate_email

from mailroom.addresses import address_key, normalise_address
from mailroom.errors import InputError
from mailroom.settings import Settings
from mailroom.translate.languages import reader_language

REASONS = ("unsubscribed", "suppressed", "duplicate", "invalid", "cannot be sent this way")
FIELDS = ("email", "first_name", "last_name", "lists", "status", "language")
REQUIRED_FIELDS = ("email", "first_name", "last_name", "lists")  # status may be absent: everyone subscribed
STATUSES = ("subscribed", "unsubscribed")

# Bytes Windows-1252 leaves undefined: a file holding them is neither UTF-8 nor Windows-1252.
_CP1252_UNDEFINED = re.compile(rb"[\x81\x8d\x8f\x90\x9d]")
_LIST_SPLIT = re.compile(r"[;,]")
# An ASCII dot-atom local part: for these, email-validator's verdict depends only on the domain (cached
# below) and the length, so the common case skips the full (slower) validation. Anything else takes the
# full path, so the verdict is always email-validator's.
_SIMPLE_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
                             r"@([A-Za-z0-9.-]+)")


@dataclass(frozen=True, slots=True)
class Recipient:
    """One person who gets one email: the version of ``audience``."""

    email: str  # the one sendable spelling (mailroom.addresses.normalise_address: NFC, punycode domain)
    key: str  # the form de-duplication compares (mailroom.addresses.address_key)
    first_name: str
    last_name: str
    audience: str  # the list whose version this person gets (first list in --to order that they're on)
    line: int  # CSV line where the person was first found
    language: str = ""  # as given (a tag like "pl" once tidied, or a name like "Polish"); "": the school's


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
    recipients: Recipients  # sized, iterable again and again, in file order
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


class _Row(NamedTuple):
    """One person row as read. A tuple, not a dataclass: 100,000 of these must be cheap to make."""

    line: int
    email: str
    key: str
    first_name: str
    last_name: str
    lists: tuple[str, ...]  # known list names, in the row's order
    unsubscribed: bool
    problems: tuple[str, ...]  # empty: the row is fine
    language: str = ""


def load_audience(path: Path, settings: Settings, lists: Sequence[str],
                  suppressed: Mapping[str, str] | None = None,
                  address_problem: Callable[[str], str | None] | None = None) -> AudiencePlan:
    """Read ``path`` and work out who on ``lists`` gets which version, and who is left out and why.

    ``lists`` is the --to order: someone on several of them gets the version of the first.
    ``suppressed`` maps an address key (``mailroom.addresses.address_key``) to the reason it is suppressed.
    ``address_problem`` (the transport's): why an address cannot be sent to this way, or None; such a
    person is left out with that reason ("cannot be sent this way"), so the plan names them.
    """
    path = Path(path)
    if isinstance(lists, str):  # "staff,parents" as typed after --to
        lists = lists.split(",")
    chosen = _chosen_lists(lists, settings)
    suppressed = suppressed or {}
    _refuse_special_file(path)
    try:
        encoding = _detect_encoding(path)
        with path.open("r", encoding=encoding, newline="") as handle:
            stamp = _stamp(handle.fileno())
            delimiter = _sniff_delimiter(handle)
            handle.seek(0)
            source = _Source(path, encoding, delimiter, settings, stamp)
            # Rows stream from the file into the plan, which keeps a small index, not the people themselves.
            return _plan(source, chosen, _read_rows(handle, path, delimiter, settings), suppressed,
                         address_problem)
    except OSError as exc:  # e.g. a network drive gone, a file another program holds, a disk error
        raise InputError(f"mailroom could not read this file ({exc.strerror or exc}); check that it opens, "
                         "or save a copy somewhere else and give that one with --audiences", path) from None


def _refuse_special_file(path: Path) -> None:
    """A folder, a named pipe or a device as the lists file: say so, rather than hang reading it."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return  # missing or unreadable: _detect_encoding names the file and the reason
    if stat.S_ISDIR(mode):
        raise InputError("this is a folder, not a CSV file; give the mailing lists file itself "
                         "(e.g. --audiences audiences.csv)", path)
    if not stat.S_ISREG(mode):
        raise InputError("this is not an ordinary file (it may be a pipe or a device); save the mailing "
                         "lists as a CSV file and give that file with --audiences", path)


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
    except OSError as exc:
        raise InputError(f"cannot be opened ({exc.strerror})", path) from None
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
    missing: list[str] = []
    for name in FIELDS:
        wanted = getattr(settings.columns, name)
        position = positions.get(_header_key(wanted))
        if position is not None:
            columns[name] = position
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


def _cells(handle: Iterator[str], path: Path, delimiter: str, settings: Settings
           ) -> Iterator[tuple[int, int, list[str], str, str, str, str, str, str]]:
    """Each non-blank row after the header, as read: where it starts and ends, its cells, and the fields
    (untrimmed) email, first name, last name, lists, status and language. ``line`` is the physical line where
    the row starts; the row ends just before ``end``."""
    reader = csv.reader(handle, delimiter=delimiter, skipinitialspace=True)
    columns: dict[str, int] | None = None
    line = 1
    try:
        for cells in reader:
            start, line = line, reader.line_num + 1
            if not "".join(cells).strip():
                continue
            if columns is None:
                columns = _columns(cells, start, path, settings)
                pick = itemgetter(*(columns[name] for name in REQUIRED_FIELDS))
                status_at = columns.get("status")
                language_at = columns.get("language")
                width = max(columns.values()) + 1
                continue
            if len(cells) < width:  # a short row: what's missing reads as empty
                cells.extend([""] * (width - len(cells)))
            email, first_name, last_name, lists_cell = pick(cells)
            status_cell = "" if status_at is None else cells[status_at]
            language_cell = "" if language_at is None else cells[language_at]
            yield start, line, cells, email, first_name, last_name, lists_cell, status_cell, language_cell
    except csv.Error as exc:
        if "field larger than field limit" in str(exc):
            raise InputError("a cell starting on this line runs on for thousands of lines: is a closing "
                             'quote (") missing?', path, line) from None
        raise InputError(f"this line cannot be read as CSV ({exc})", path, line) from None
    if columns is None:
        raise InputError("the file is empty: it needs a first line of column headings, then one row per person",
                         path)


def _read_rows(handle: Iterator[str], path: Path, delimiter: str, settings: Settings) -> Iterator[_Row]:
    """Each non-blank row after the header, checked."""
    known = settings.lists
    for start, end, cells, email, first_name, last_name, lists_cell, status_cell, language_cell in _cells(
            handle, path, delimiter, settings):
        row = _check_row(start, email.strip(), first_name.strip(), last_name.strip(), lists_cell.strip(),
                         status_cell.strip(), known, settings, reader_language(language_cell))
        if row.problems and end - start > 1 and any(delimiter in c and "\n" in c for c in cells):
            # A quote opened and never closed swallows the lines after it, which then look like one
            # cell holding whole rows: say where to look.
            row = row._replace(problems=(*row.problems, f"this row runs on from line {start} to line "
                                         f"{end - 1}: is a closing quote (\") missing?"))
        yield row


def _check_row(line: int, email: str, first_name: str, last_name: str, lists_cell: str, status_cell: str,
               known: Mapping[str, object], settings: Settings, language: str = "") -> _Row:
    """One row's values, trimmed, with everything wrong with them (all of it, so one fix-up does)."""
    problems: list[str] = []
    if not email:
        problems.append("the email address is missing")
    else:
        why = _email_problem(email)
        if why:
            problems.append(f"not a valid email address: {why}")
    for word, name in (("first name", first_name), ("last name", last_name)):
        if not name.isprintable() and _has_control(name):
            problems.append(f"the {word} has a line break or other control character "
                            "(names go into the email's headers)")
    lists_cell = lists_cell.lower()
    if lists_cell in known:  # the usual case: one list
        lists: tuple[str, ...] = (lists_cell,)
    else:
        lists = _lists(lists_cell, known, settings, problems)
    status = status_cell.lower()
    if status and status not in STATUSES:
        problems.append(f"the status should be 'subscribed', 'unsubscribed' or blank, not '{status_cell}'")
    key = address_key(email)
    key = email if key == email else key  # share the string when already lower-case: less memory
    return _Row(line, email, key, first_name, last_name, lists, status == "unsubscribed", tuple(problems),
                language)


def _lists(cell: str, known: Mapping[str, object], settings: Settings, problems: list[str]) -> tuple[str, ...]:
    """The known list names in a lists cell ("parents; staff"); unknown or no names become a problem."""
    lists: list[str] = []
    unknown: list[str] = []
    for part in _LIST_SPLIT.split(cell):
        name = part.strip()
        if name and name not in lists and name not in unknown:
            (lists if name in known else unknown).append(name)
    if unknown:
        shown = ", ".join(f"'{n}'" for n in unknown)
        problems.append(f"{'there is no list called' if len(unknown) == 1 else 'there are no lists called'} "
                        f"{shown}. The lists in school.toml are: {', '.join(known)}")
    elif not lists:
        problems.append(f"no list is named in the '{settings.columns.lists}' column "
                        f"(use one or more of: {', '.join(known)}, separated by ';')")
    return tuple(lists)


def _has_control(text: str) -> bool:
    """Control characters and line or paragraph separators: they could break an email header."""
    return any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in text)


def _email_problem(email: str) -> str | None:
    """None if email-validator accepts the address (no DNS look-ups), else its explanation."""
    simple = _SIMPLE_ADDRESS.fullmatch(email)
    if simple and len(email) <= 200 and simple.start(1) <= 65:  # local part at most 64 characters
        return _domain_problem(simple.group(1).lower())
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


class _Source(NamedTuple):
    """Where the rows come from and how to read them again, exactly as the first time."""

    path: Path
    encoding: str
    delimiter: str
    settings: Settings
    stamp: tuple[int, int, int]  # the file's size, modification time and inode when it was first read

    def open(self) -> TextIO:
        """The file again, refusing if it is not the file that was planned from."""
        handle = self.path.open("r", encoding=self.encoding, newline="")
        if _stamp(handle.fileno()) != self.stamp:
            handle.close()
            raise self.changed()
        return handle

    def changed(self) -> InputError:
        return InputError("this file changed while mailroom was reading it for this send, so who gets what may "
                          "be different now. Nothing more was sent: run the same command again (anyone who "
                          "already has this newsletter is skipped)", self.path)


def _stamp(fileno: int) -> tuple[int, int, int]:
    status = os.fstat(fileno)
    return status.st_size, status.st_mtime_ns, status.st_ino


class Recipients:
    """The people who get an email, in file order, read from the file again each time they are iterated.

    Holding 100,000 ``Recipient`` objects for a whole send costs ~50 MB; this keeps one byte per row
    (which list's version that row's person gets, or 0) plus the few people found on several rows.
    It is sized and can be iterated any number of times; the file must not change in between.
    """

    __slots__ = ("_chosen", "_count", "_lists", "_people", "_source")

    def __init__(self, source: _Source, lists: tuple[str, ...], chosen: array, people: Mapping[int, Recipient]):
        self._source = source
        self._lists = lists
        self._chosen = chosen  # row number -> 1 + the index in ``lists`` of the version, or 0: nobody new here
        self._people = people  # row number -> the person, for people found on several rows
        self._count = len(chosen) - chosen.count(0)

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def __repr__(self) -> str:
        return f"<{self._count} recipients from {self._source.path}>"

    def __iter__(self) -> Iterator[Recipient]:
        source, chosen, people, lists = self._source, self._chosen, self._people, self._lists
        rows = len(chosen)
        with source.open() as handle:
            number = -1
            for number, (start, _end, _row_cells, email, first_name, last_name, _lists, _status, language) in \
                    enumerate(_cells(handle, source.path, source.delimiter, source.settings)):
                if number >= rows:
                    raise source.changed()
                code = chosen[number]
                if not code:
                    continue
                person = people.get(number)
                if person is None:
                    key = address_key(email)
                    # An address already in its key's form (trimmed, lower-case ASCII: the usual case) is
                    # already the one sendable spelling; only the others need normalising.
                    email = key if key == email else normalise_address(email)
                    person = Recipient(email=email, key=key,
                                       first_name=first_name.strip(), last_name=last_name.strip(),
                                       audience=lists[code - 1], line=start, language=reader_language(language))
                yield person
            if number + 1 != rows:
                raise source.changed()


def _plan(source: _Source, chosen: tuple[str, ...], rows: Iterable[_Row], suppressed: Mapping[str, str],
          address_problem: Callable[[str], str | None] | None = None) -> AudiencePlan:
    """De-duplicate by address key, choose each person's version, and count every list's entries.

    One pass decides everyone found on one row only, keeping a set of address hashes to spot the rest;
    people on several rows (and, were it ever to happen, addresses whose hashes collide) are decided in a
    second pass that reads only their rows in full, so nobody is dropped or merged by a hash alone.
    """
    order = {name: i for i, name in enumerate(chosen)}
    left_out: list[LeftOut] = []
    unsubscribed: dict[str, int] = {}  # key -> first line saying so
    codes = array("B" if len(chosen) < 255 else "H")  # row number -> 1 + version index, or 0
    seen: set[int] = set()  # hashes of the keys on rows that matter to de-duplication
    again: set[int] = set()  # ... of those found on more than one such row
    tentative: dict[int, list[LeftOut]] = {}  # hash -> left-out entries of a one-row person (undone if again)
    count = 0
    for row in rows:
        count += 1
        # An "unsubscribed" is honoured even on a row with other problems, as long as the address is readable.
        unsubscribes = row.unsubscribed and bool(row.email)
        if unsubscribes:
            unsubscribed.setdefault(row.key, row.line)
        candidate = False
        if row.problems:
            detail = "; ".join(row.problems)
            places = [name for name in row.lists if name in order]
            if places:
                left_out.extend(LeftOut(row.email, row.line, name, "invalid", detail) for name in places)
            elif not row.lists:
                left_out.append(LeftOut(row.email, row.line, None, "invalid", detail))
        else:
            candidate = any(name in order for name in row.lists)
        code = 0
        if candidate or unsubscribes:
            marker = hash(row.key)
            if marker in seen:
                again.add(marker)
            else:
                seen.add(marker)
                if candidate:
                    person, entries = _decide(row.key, [row], order, unsubscribed, suppressed, address_problem)
                    if person is not None:
                        code = order[person.audience] + 1
                    if entries:
                        tentative[marker] = entries
        codes.append(code)
    del seen

    people: dict[int, Recipient] = {}
    if again:
        for marker in again:
            tentative.pop(marker, None)
        people = _decide_again(source, chosen, order, again, codes, unsubscribed, suppressed, left_out,
                               address_problem)
    for entries in tentative.values():
        left_out.extend(entries)

    left_out.sort(key=lambda item: (item.line, order.get(item.list_name or "", len(order))))
    counts = Counter((item.list_name, item.reason) for item in left_out)
    summaries = {}
    for index, name in enumerate(chosen):
        reasons = {reason: counts[name, reason] for reason in REASONS if counts[name, reason]}
        receiving = codes.count(index + 1)
        summaries[name] = ListSummary(name=name, on_list=receiving + sum(reasons.values()),
                                      receiving=receiving, left_out=reasons)
    return AudiencePlan(path=source.path, lists=chosen, recipients=Recipients(source, chosen, codes, people),
                        left_out=tuple(left_out), summaries=summaries, rows=count, encoding=source.encoding,
                        delimiter=source.delimiter)


def _decide_again(source: _Source, chosen: tuple[str, ...], order: Mapping[str, int], again: set[int],
                  codes: array, unsubscribed: Mapping[str, int], suppressed: Mapping[str, str],
                  left_out: list[LeftOut], address_problem: Callable[[str], str | None] | None = None
                  ) -> dict[int, Recipient]:
    """The second pass: people whose key's hash was on several rows, decided from all their rows.

    Returns row number -> person, for the row where each was first found (their place in file order).
    """
    groups: dict[str, list[tuple[int, _Row]]] = {}  # key -> (row number, row) of their rows on a chosen list
    known = source.settings.lists
    with source.open() as handle:
        number = -1
        for number, (start, _end, _row_cells, email, first_name, last_name, lists_cell, status_cell,
                     language_cell) in enumerate(_cells(handle, source.path, source.delimiter, source.settings)):
            if number >= len(codes):
                raise source.changed()
            email = email.strip()
            if hash(address_key(email)) not in again:
                continue
            codes[number] = 0
            row = _check_row(start, email, first_name.strip(), last_name.strip(), lists_cell.strip(),
                             status_cell.strip(), known, source.settings, reader_language(language_cell))
            if not row.problems and any(name in order for name in row.lists):
                groups.setdefault(row.key, []).append((number, row))
        if number + 1 != len(codes):
            raise source.changed()
    people: dict[int, Recipient] = {}
    for key, numbered in groups.items():
        person, entries = _decide(key, [row for _, row in numbered], order, unsubscribed, suppressed,
                                  address_problem)
        left_out.extend(entries)
        if person is not None:
            first = numbered[0][0]
            codes[first] = order[person.audience] + 1
            people[first] = person
    return people


def _decide(key: str, person_rows: list[_Row], order: Mapping[str, int], unsubscribed: Mapping[str, int],
            suppressed: Mapping[str, str], address_problem: Callable[[str], str | None] | None = None
            ) -> tuple[Recipient | None, list[LeftOut]]:
    """One person (all their valid rows on a chosen list, in file order): the email they get, if any,
    and their entries that get none (unsubscribed, suppressed, or a duplicate of the one they get)."""
    first = person_rows[0]
    if len(person_rows) == 1 and len(first.lists) == 1:
        entries = [(first.lists[0], first)]
        named = first
    else:
        entries = sorted(((name, row) for row in person_rows for name in row.lists if name in order),
                         key=lambda entry: (order[entry[0]], entry[1].line))
        named = next((r for r in person_rows if r.first_name or r.last_name), first)
    if key in unsubscribed:
        return None, [LeftOut(row.email, row.line, name, "unsubscribed",
                              "marked unsubscribed" if row.unsubscribed else
                              f"marked unsubscribed on line {unsubscribed[key]}")
                      for name, row in entries]
    if key in suppressed:
        reason = suppressed[key]
        return None, [LeftOut(row.email, row.line, name, "suppressed", reason) for name, row in entries]
    email = key if key == first.email else normalise_address(first.email)  # see Recipients.__iter__
    why = address_problem(email) if address_problem is not None else None
    if why:
        return None, [LeftOut(row.email, row.line, name, "cannot be sent this way", why) for name, row in entries]
    audience, primary = entries[0]
    language = next((r.language for r in person_rows if r.language), "")
    person = Recipient(email=email, key=key, first_name=named.first_name, last_name=named.last_name,
                       audience=audience, line=first.line, language=language)
    left: list[LeftOut] = []
    for name, row in entries[1:]:
        if name == audience:
            detail = f"already on the {name} list on line {primary.line}"
        elif row is primary:
            detail = f"gets the {audience} version instead"
        else:
            detail = f"gets the {audience} version instead (line {primary.line})"
        left.append(LeftOut(row.email, row.line, name, "duplicate", detail))
    return person, left
