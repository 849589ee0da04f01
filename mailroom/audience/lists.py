"""The lists files -> who gets which version: checked, de-duplicated, consent, unsubscribes and suppressions honoured.

The rows come from ``sources.py`` (CSV or .xlsx, the same to this module): the main lists file
(audiences.csv, or --audiences), whose lists column says who is on which list, and each list that has a
file of its own in school.toml (``[lists.staff] file = "exports/staff.xlsx"``), where everyone is on that
list. A row may hold several contacts (``contacts = [...]`` in school.toml): each with an address is a
person. The same address on several rows (siblings' rows, a teacher who is also a parent) is one person,
who gets one email: the version holding every section meant for any of their lists (``mailroom.versions``).

A bad row never stops the others: it is left out with where it is and what is wrong with it. A problem
with a file as a whole (missing, unreadable, a column missing or twice) is an ``InputError``.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple, cast, overload

from mailroom.addresses import address_key, normalise_address
from mailroom.audience.domains import is_plain_domain
from mailroom.audience.sources import RawRow, Table, open_table
from mailroom.errors import InputError
from mailroom.settings import ColumnMapping, Settings, consent_key
from mailroom.translate.languages import reader_language
from mailroom.versions import version_for

REASONS = ("unsubscribed", "suppressed", "duplicate", "invalid", "cannot be sent this way")
DEFAULT_FILE = "audiences.csv"
# Optional row-level columns beyond the people's own: each a ``ColumnMapping`` attribute naming the heading.
# Adding one (e.g. "language") here, to ColumnMapping and to Recipient is all a new column needs: its
# trimmed value arrives in ``_Entry.extras`` in this order ("" when the file has no such column).
EXTRA_COLUMNS: tuple[str, ...] = ("language",)
# A name, an address, a list or a consent answer this long is not one: the wrong column, or pasted text.
MAX_CELL = 10_000

_LIST_SPLIT = re.compile(r"[;,]")
# How many rows ``_Planner._usual_rows_taker`` looks at together.
_CHUNK_ROWS = 512
# An ASCII dot-atom local part: for these, email-validator's verdict depends only on the domain (cached
# below) and the length, so the common case skips the full (slower) validation. Anything else takes the
# full path, so the verdict is always email-validator's.
_SIMPLE_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
                             r"@([A-Za-z0-9.-]+)")
# Lines (joined by "\n") each such an address. Possessive (``++``, ``*+``): no part can give characters back to
# the next (each ends where a character it cannot hold begins), so this is the same test without the regex
# engine keeping a way back for every part of every line (a third less time over a chunk).
_ONE_SIMPLE = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]++(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]++)*+@[A-Za-z0-9.-]++"
# Addresses no longer than this have a local part of at most 64 characters (``_email_problem``'s limit).
_SHORT_ADDRESS = 66
_SIMPLE_ADDRESSES = re.compile(f"(?:{_ONE_SIMPLE}\n)*+{_ONE_SIMPLE}")
_DOMAIN_OF_LINE = re.compile(r"@([^\n]*)")


@dataclass(frozen=True, slots=True)
class Recipient:
    """One person who gets one email: the version for all of their ``lists``, greeted as ``audience``."""

    email: str  # the one sendable spelling (mailroom.addresses.normalise_address: NFC, punycode domain)
    key: str  # the form de-duplication compares (mailroom.addresses.address_key)
    first_name: str
    last_name: str
    audience: str  # the list they are greeted as: the first of their lists in --to order
    line: int  # the row (CSV line, sheet row) where the person was first found
    lists: tuple[str, ...] = ()  # every chosen list they are on, in --to order
    version: str = ""  # the slug of their lists' version in the school's language (mailroom.versions.version_for)
    language: str = ""  # as given (a tag like "pl" once tidied, or a name like "Polish"); "": the school's


@dataclass(frozen=True)
class LeftOut:
    """One entry (a person's place on a list) that gets no email, and why."""

    email: str
    line: int
    list_name: str | None  # None: the row could not be placed on any list (e.g. only unknown list names)
    reason: str  # one of REASONS
    detail: str
    place: str = ""  # "line 4", "sheet 'Contacts', row 4, contact 2", "staff.xlsx, row 3"

    @property
    def where(self) -> str:
        return self.place or f"line {self.line}"


@dataclass(frozen=True)
class ListSummary:
    """The figures for one list; ``on_list == receiving + sum(left_out.values())``.

    ``receiving`` counts people who get this list's sections (someone on two lists counts on both), so the
    lists' figures add up to more than the people emailed when people are on several lists."""

    name: str
    on_list: int
    receiving: int
    left_out: dict[str, int]  # reason -> count


@dataclass(frozen=True)
class AudiencePlan:
    path: Path  # the main lists file (or the first list's own file, when no list needs the main one)
    lists: tuple[str, ...]
    recipients: PackedRecipients  # in the order first found
    left_out: tuple[LeftOut, ...]
    summaries: dict[str, ListSummary]
    rows: int = 0  # rows read from all files (blank lines and headings not counted)
    encoding: str = "utf-8"
    delimiter: str = ","
    files: tuple[tuple[Path, str | None], ...] = ()  # every file read, and its sheet (None: a CSV file)

    def problems(self) -> list[LeftOut]:
        """The invalid entries, once each (a bad row on two lists is one problem), in the order read."""
        seen: set[tuple[str, str]] = set()
        found = []
        for item in self.left_out:
            if item.reason == "invalid" and (item.where, item.email) not in seen:
                seen.add((item.where, item.email))
                found.append(item)
        return found

    def versions(self) -> Counter[str]:
        """People per version slug."""
        if isinstance(self.recipients, PackedRecipients):  # from its groups' counts: no person made
            counted: Counter[str] = Counter()
            for (_, _, version, _), people in self.recipients.groups():
                counted[version] += people
            return counted
        return Counter(person.version for person in self.recipients)


class _Entry(NamedTuple):
    """One person as one row gives them. A tuple, not a dataclass: 100,000 of these must be cheap to make."""

    order: int  # position in reading order, across files: sorts left-out entries as the office reads them
    line: int
    source: int  # which table (the planner's ``formats``): where it is is spelt out only when shown
    contact: int  # 1, 2...: which contact of a row holding several; 0: the row holds one
    email: str
    key: str
    first_name: str
    last_name: str
    lists: tuple[str, ...]  # known list names, in the row's order
    unsubscribed: bool
    problems: tuple[str, ...]  # empty: the entry is fine
    extras: tuple[str, ...] = ()  # the EXTRA_COLUMNS' values, in that order


# Everyone is held while the lists are read (duplicates can be anywhere in any file) and after (the plan's
# people): as one string each, fields joined by NUL, not as objects with a dozen fields and strings of their
# own, so 100,000 people cost a few MB rather than tens. A value holding NUL (which no valid address or
# printable name has) is simply kept unpacked.
_SEP = "\0"
_LIST_SEP = "\x01"
_ROW_SEP = "\x02"  # between the packed entries of a chunk held whole (``_HeldChunk``)


def _pack_entry(entry: _Entry) -> str | _Entry:
    """A valid entry as one string (``_unpack_entry`` gives it back), or the entry itself when it cannot be."""
    order, line, source, contact, email, key, first_name, last_name, lists, unsubscribed, problems, extras = entry
    lists_text = _LIST_SEP.join(lists)
    same = key == email  # the usual case: the address is its own key, which the planner holds it under
    packed = _SEP.join((str(order), str(line), str(source), str(contact), "" if same else email,
                        "" if same else key, first_name, last_name, lists_text, "1" if unsubscribed else "", *extras))
    if (problems or len(extras) != len(EXTRA_COLUMNS) or packed.count(_SEP) != 9 + len(extras)
            or lists_text.count(_LIST_SEP) != len(lists) - 1):
        return entry
    return packed


class _HeldChunk:
    """The packed entries (``_pack_entry``) of a chunk of usual rows, held a field at a time, and the keys they are
    held under. The planner points each of those keys at this one object, not at a string of its own; and a field
    alike on every row (the list, the source, an empty language) is held once, the reading orders and (when the
    rows follow each other) the line numbers as a range. At 100,000 people the planner's peak of memory is ~7 MB
    lower: a string object costs ~50 bytes besides its text."""

    __slots__ = ("_by_key", "fields", "keys")

    def __init__(self, keys: list[str], fields: Sequence[Sequence[str] | range]) -> None:
        """``fields``: each field of ``_pack_entry``'s layout, a value per key; a field alike on every row may come
        as several joined by ``_SEP`` (held as each of them, so that ``layout`` has a column per field)."""
        self.keys = keys
        held: list[range | tuple[str] | str] = []
        for values in map(_held_field, fields):
            if isinstance(values, tuple):
                held.extend((part,) for part in values[0].split(_SEP))
            else:
                held.append(values)
        self.fields = tuple(held)
        self._by_key: dict[str, str] | None = None

    def entries(self) -> list[str]:
        """Each key's packed entry, in the keys' order."""
        count = len(self.keys)
        return list(map(_SEP.join, zip(*(_field_values(field, count) for field in self.fields), strict=True)))

    def layout(self) -> list[Sequence[str]]:
        """The entries' fields a column each (what ``_SEP.join(entries).split(_SEP)[i::width]`` gives), the
        last key's first: the order the planner takes them in."""
        count = len(self.keys)
        return [[field[0]] * count if isinstance(field, tuple)
                else list(map(str, field[::-1])) if isinstance(field, range)
                else field.split(_ROW_SEP)[::-1] for field in self.fields]

    def entry(self, key: str) -> str:
        """The packed entry held under ``key`` (the chunk is put together once, when first asked)."""
        if self._by_key is None:
            self._by_key = dict(zip(self.keys, self.entries(), strict=True))
        return self._by_key[key]


def _held_field(values: Sequence[str] | range) -> range | tuple[str] | str:
    """A field's values as ``_HeldChunk`` holds them: a range as is, one value alike on every row once, else all
    of them joined by ``_ROW_SEP`` (which a usual row's fields never hold)."""
    if isinstance(values, range):
        return values
    first = values[0]
    return (first,) if values.count(first) == len(values) else _ROW_SEP.join(values)


def _field_values(held: range | tuple[str] | str, count: int) -> Iterable[str]:
    if isinstance(held, range):
        return map(str, held)
    if isinstance(held, tuple):
        return itertools.repeat(held[0], count)
    return held.split(_ROW_SEP)


def _entries_layout(found: list[str | _Entry | list[_Entry]]) -> list[Sequence[str]] | None:
    """Packed entries' fields a column each (as ``_HeldChunk.layout``), or None when one is not a packed entry."""
    if set(map(type, found)) != {str}:
        return None
    width = 10 + len(EXTRA_COLUMNS)  # fields of a packed entry (``_pack_entry``)
    fields = _SEP.join(cast("list[str]", found)).split(_SEP)
    if len(fields) != width * len(found):
        return None
    return [fields[at::width] for at in range(width)]


def _unpack_entry(packed: str, held_as: str) -> _Entry:
    """The entry ``_pack_entry`` packed, held under the key ``held_as`` (the address when it is its own key)."""
    order, line, source, contact, email, key, first_name, last_name, lists, unsubscribed, *extras = \
        packed.split(_SEP)
    email = email or held_as
    return _Entry(int(order), int(line), int(source), int(contact), email, key or email, first_name, last_name,
                  tuple(lists.split(_LIST_SEP)), bool(unsubscribed), (), tuple(extras))


class PackedRecipients(Sequence[Recipient]):
    """The plan's people, in order, each held as one string (email, key, names, line) plus a shared
    (audience, lists, version, language) group: 100,000 of them take ~10 MB instead of ~35. A ``Recipient``
    is made each time one is read."""

    def __init__(self) -> None:
        self._rows: list[str] = []
        self._groups: list[tuple[str, tuple[str, ...], str, str]] = []
        self._group_index: dict[tuple[str, tuple[str, ...], str, str], int] = {}
        self._unpackable: dict[int, Recipient] = {}  # position -> a person whose values hold NUL (never, really)
        self._group_sizes: list[int] = []  # people per group, by its index

    def groups(self) -> list[tuple[tuple[str, tuple[str, ...], str, str], int]]:
        """Each (audience, lists, version, language) the people have, and how many have it."""
        return [(group, self._group_sizes[index]) for index, group in enumerate(self._groups)]

    def append(self, person: Recipient) -> None:
        self.add(person.email, person.key, person.first_name, person.last_name, str(person.line),
                 (person.audience, person.lists, person.version, person.language), person)

    def add(self, email: str, key: str, first_name: str, last_name: str, line: str,
            group: tuple[str, tuple[str, ...], str, str], person: Recipient | None = None) -> None:
        """One person from their fields (``line`` as text), without making a ``Recipient``: the planner's
        usual case. ``person``: the same person, if one was made (kept whole should its values hold NUL)."""
        index = self._group_index.get(group)
        if index is None:
            index = self._group_index[group] = len(self._groups)
            self._groups.append(group)
            self._group_sizes.append(0)
        packed = _SEP.join((email, "" if key == email else key, first_name, last_name, line, str(index)))
        self._group_sizes[index] += 1
        if packed.count(_SEP) != 5:
            if person is None:
                audience, lists, version, language = group
                person = Recipient(email, key, first_name, last_name, audience, int(line), lists, version, language)
            self._unpackable[len(self._rows)] = person
        self._rows.append(packed)

    def add_columns(self, emails: Sequence[str], keys: Sequence[str], first_names: Sequence[str],
                    last_names: Sequence[str], lines: Sequence[str], groups: Sequence[Hashable],
                    group_of: Mapping[Hashable, tuple[str, tuple[str, ...], str, str]]) -> None:
        """``add`` for many people at once, a column per field: each person's string is made by one join in C,
        with no Python step per person (the planner's usual chunk). ``groups``: each person's group, as a key
        of ``group_of``."""
        counted = Counter(groups) if len(group_of) > 1 else {name: len(groups) for name in group_of}
        index_of = {}
        for name, group in group_of.items():
            index = self._group_index.get(group)
            if index is None:
                index = self._group_index[group] = len(self._groups)
                self._groups.append(group)
                self._group_sizes.append(0)
            index_of[name] = str(index)
        indices = [index_of[groups[0]]] * len(groups) if len(counted) == 1 else list(map(index_of.__getitem__, groups))
        own = ["" if key == email else key for email, key in zip(emails, keys, strict=True)] \
            if emails != keys else [""] * len(keys)
        rows = list(map(_SEP.join, zip(emails, own, first_names, last_names, lines, indices, strict=True)))
        if _SEP.join(rows).count(_SEP) != 6 * len(rows) - 1:  # a value holding NUL: each person the long way
            for email, key, first_name, last_name, line, name in zip(emails, keys, first_names, last_names, lines,
                                                                     groups, strict=True):
                self.add(email, key, first_name, last_name, line, group_of[name])
            return
        for name, people in counted.items():
            self._group_sizes[int(index_of[name])] += people
        self._rows.extend(rows)

    def planned(self, version_of: Callable[[str, str], str]) -> Iterator[tuple[Sequence[str], ...]]:
        """The people in order, a chunk at a time as columns (key, email, first name, last name, greeting list,
        version, language), the version being ``version_of(their lists' version, their language)``, worked out
        once per group: what the send's plan is drafted from, with no object or tuple made per person (a
        Python step per person cost 0.4 µs)."""
        chosen: dict[str, tuple[str, str, str]] = {}  # group index (as packed) -> (greeting list, version, language)

        def group(index_text: str) -> tuple[str, str, str]:
            found = chosen.get(index_text)
            if found is None:
                audience, _lists, version, language = self._groups[int(index_text)]
                found = chosen[index_text] = (audience, version_of(version, language), language)
            return found

        rows, unpackable = self._rows, self._unpackable
        for start in range(0, len(rows), _CHUNK_ROWS):
            chunk = rows[start:start + _CHUNK_ROWS]
            if unpackable and any(start <= at < start + len(chunk) for at in unpackable):
                people = []
                for at, packed in enumerate(chunk, start):
                    if at in unpackable:
                        p = unpackable[at]
                        people.append((p.key, p.email, p.first_name, p.last_name, p.audience,
                                       version_of(p.version, p.language), p.language))
                    else:
                        email, key, first_name, last_name, _line, index_text = packed.split(_SEP)
                        people.append((key or email, email, first_name, last_name, *group(index_text)))
                yield tuple(zip(*people, strict=True))
                continue
            fields = _SEP.join(chunk).split(_SEP)  # six a person (``add``)
            emails, own_keys, index_texts = fields[0::6], fields[1::6], fields[5::6]
            keys = [key or email for email, key in zip(emails, own_keys, strict=True)] if any(own_keys) else emails
            groups = set(index_texts)
            if len(groups) == 1:
                audience, version, language = group(index_texts[0])
                count = len(index_texts)
                audiences: Sequence[str] = [audience] * count
                versions: Sequence[str] = [version] * count
                languages: Sequence[str] = [language] * count
            else:
                for index_text in sorted(groups, key=index_texts.index):  # versions worked out in order met
                    group(index_text)
                audiences, versions, languages = zip(*map(chosen.__getitem__, index_texts), strict=True)
            yield keys, emails, fields[2::6], fields[3::6], audiences, versions, languages

    def reverse(self) -> None:
        if self._unpackable:
            last = len(self._rows) - 1
            self._unpackable = {last - at: person for at, person in self._unpackable.items()}
        self._rows.reverse()

    def _person(self, at: int, packed: str) -> Recipient:
        if self._unpackable and at in self._unpackable:
            return self._unpackable[at]
        email, key, first_name, last_name, line, index = packed.split(_SEP)
        audience, lists, version, language = self._groups[int(index)]
        return Recipient(email, key or email, first_name, last_name, audience, int(line), lists, version, language)

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, at: int) -> Recipient: ...

    @overload
    def __getitem__(self, at: slice) -> list[Recipient]: ...

    def __getitem__(self, at: int | slice) -> Recipient | list[Recipient]:
        rows = self._rows
        if isinstance(at, slice):
            return [self._person(i, rows[i]) for i in range(*at.indices(len(rows)))]
        if at < 0:
            at += len(self._rows)
        if not 0 <= at < len(self._rows):
            raise IndexError(at)
        return self._person(at, self._rows[at])

    def __iter__(self) -> Iterator[Recipient]:
        person = self._person
        for at, packed in enumerate(self._rows):
            yield person(at, packed)


def load_audience(path: Path | None, settings: Settings, lists: Sequence[str] | str,
                  suppressed: Mapping[str, str] | None = None, *,
                  version_order: Sequence[str] | None = None, default: Path | None = None,
                  address_problem: Callable[[str], str | None] | None = None) -> AudiencePlan:
    """Read the lists files and work out who on ``lists`` gets which version, and who is left out and why.

    ``path`` is the main lists file (None: audiences.csv in the project); it is read only when a chosen
    list has no file of its own, or when it was given. ``lists`` is the --to order: someone on several
    gets the version with all their lists' sections, greeted as the first. ``suppressed`` maps an address
    key (``mailroom.addresses.address_key``) to why it must not be mailed. ``version_order`` is the
    newsletter's audiences, which orders the lists in a version's name (default: the --to order).
    ``default``: the main file when ``path`` is None, as the office should see it named (e.g. relative).
    ``address_problem`` (the transport's): why an address cannot be sent to this way, or None; such a
    person is left out with that reason ("cannot be sent this way"), so the plan names them.
    """
    if isinstance(lists, str):  # "staff,parents" as typed after --to
        lists = lists.split(",")
    chosen = _chosen_lists(lists, settings)
    planner = _Planner(chosen, tuple(version_order or chosen), suppressed or {}, address_problem)
    main = Path(path) if path is not None else (default or settings.root / DEFAULT_FILE)
    needs_main = path is not None or any(settings.lists[name].file is None for name in chosen)
    read: list[Table] = []
    if needs_main:
        with open_table(main, settings.columns.sheet) as table:
            planner.read(table, settings.columns, settings, fixed_list=None, prefix="")
            read.append(table)
    for name in chosen:
        mailing_list = settings.lists[name]
        if mailing_list.file is None:
            continue
        with open_table(mailing_list.file, (mailing_list.columns or settings.columns).sheet) as table:
            planner.read(table, mailing_list.columns or settings.columns, settings, fixed_list=name,
                         prefix=f"{mailing_list.file.name}, ")
            read.append(table)
    first = read[0]
    return planner.plan(path=first.path, encoding=first.encoding or "", delimiter=first.delimiter or "",
                        files=tuple((table.path, table.sheet) for table in read))


def lists_people_are_on(settings: Settings, path: Path | None = None) -> set[tuple[str, ...]]:
    """Every combination of lists someone in the lists files is on (compose asks, for a newsletter with many
    lists: ``mailroom.versions.combinations_needed``). Files that cannot be read give nothing: send reports them."""
    try:
        plan = load_audience(path, settings, list(settings.lists))
    except InputError:
        return set()
    return {person.lists for person in plan.recipients}


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


# --- columns ----------------------------------------------------------------------------------------------

def _header_key(text: str) -> str:
    """Headings match ignoring case, spaces and punctuation: "First Name" finds first_name, "Subscribed?" subscribed."""
    return "".join(ch for ch in text.casefold() if ch.isalnum())


@dataclass
class _Columns:
    """Where each field is in a table's rows."""

    contacts: list[tuple[int, int | None, int | None, int | None]]  # (email, first, last, status) per contact
    lists: int | None
    status: int | None
    width: int
    checked: list[tuple[int, str]] = field(default_factory=list)  # columns whose cells must be short
    extras: list[int | None] = field(default_factory=list)  # per EXTRA_COLUMNS: its column, or None


def _find_columns(table: Table, mapping: ColumnMapping, need_lists: bool) -> _Columns:
    """Field -> column index, from the headings and school.toml's names; a heading needed but missing or
    found twice is an error for the whole file."""
    positions: dict[str, list[int]] = {}
    for index, heading in enumerate(table.headings):
        if heading.strip():
            positions.setdefault(_header_key(heading), []).append(index)
    missing: list[str] = []

    def find(heading: str, required: bool) -> int | None:
        if not heading:
            return None
        found = positions.get(_header_key(heading), [])
        if len(found) > 1:
            shown = " and ".join(table.column_name(i) for i in found)
            raise table.error(f"two columns have the heading '{heading}' ({shown}), so mailroom cannot tell "
                              "which one to use. Rename or delete one of them", None)
        if not found:
            if required and heading not in missing:
                missing.append(heading)
            return None
        return found[0]

    contacts = []
    for contact in mapping.people_columns():
        contacts.append((find(contact.email, True), find(contact.first_name, True), find(contact.last_name, True),
                         find(contact.status, True)))
    lists_at = find(mapping.lists, True) if need_lists else None
    # The status column may be left out under its default name (everyone subscribed); a column named in
    # school.toml must be there, or someone who said "No" would be mailed.
    status_at = find(mapping.status, mapping.status.casefold() != ColumnMapping.status)
    if missing:
        found = ", ".join(f"'{h.strip()}'" for h in table.headings if h.strip()) or "nothing"
        plural = "columns" if len(missing) > 1 else "column"
        where = "first line" if table.kind == "csv" else f"row {table.heading_row}"
        raise table.error(
            f"the {plural} {', '.join(repr(m) for m in missing)} {'are' if len(missing) > 1 else 'is'} missing. "
            f"The {where} has: {found}. If your export uses other headings, set them in school.toml "
            "(see docs/audiences.md)", table.heading_row)
    extras = [find(getattr(mapping, name), False) for name in EXTRA_COLUMNS]
    columns = [i for contact in contacts for i in contact if i is not None]
    columns += [i for i in (lists_at, status_at, *extras) if i is not None]
    return _Columns(contacts=[(c[0], c[1], c[2], c[3]) for c in contacts if c[0] is not None], lists=lists_at,
                    status=status_at, width=max(columns) + 1,
                    checked=[(i, table.headings[i].strip()) for i in sorted(set(columns))], extras=extras)


# --- rows -> entries ---------------------------------------------------------------------------------------

class _Planner:
    """Reads tables into entries, then decides who gets what."""

    def __init__(self, chosen: tuple[str, ...], version_order: tuple[str, ...], suppressed: Mapping[str, str],
                 address_problem: Callable[[str], str | None] | None = None):
        self.address_problem = address_problem
        self.chosen = chosen
        self.order = {name: i for i, name in enumerate(chosen)}
        self.version_order = version_order
        self.suppressed = suppressed
        # key -> their valid entry on a chosen list (packed into one string: ``_pack_entry``), or their entries
        # (first-found order) when several
        self.people: dict[str, str | _Entry | list[_Entry] | _HeldChunk] = {}
        self.unsubscribed: dict[str, _Entry] = {}  # key -> the entry that first says so
        self.left_out: list[tuple[int, LeftOut]] = []  # (reading order, entry)
        self.formats: list[str] = []  # per table read: its place_format, with the file's name when not the main one
        self.rows = 0
        self._orders = itertools.count(1)
        self.next_order = self._orders.__next__  # each entry's position in reading order
        self._versions: dict[tuple[str, ...], str] = {}

    def read(self, table: Table, mapping: ColumnMapping, settings: Settings, *, fixed_list: str | None,
             prefix: str) -> None:
        """Take in every row of ``table``: ``fixed_list`` set means everyone in it is on that list."""
        self.formats.append(prefix.replace("{", "{{").replace("}", "}}") + table.place_format())
        reading = _Reading.of(table, mapping, settings, fixed_list, len(self.formats) - 1)
        take_usual_rows = self._usual_rows_taker(reading)
        take_clean = self._clean_row_taker(reading)
        take = self._take
        for chunk in table.chunks(_CHUNK_ROWS):
            self.rows += len(chunk)
            if take_usual_rows(chunk):
                continue
            for raw in chunk:
                if not take_clean(raw):
                    for entry in _row_entries(raw, reading, self):
                        take(entry)

    def _take(self, entry: _Entry) -> None:
        """One entry as ``_row_entries`` gives it: a problem to report, a person on a chosen list, or neither."""
        # An "unsubscribed" is honoured even on an entry with other problems, if its address is readable.
        if entry.unsubscribed and entry.key:
            self.unsubscribed.setdefault(entry.key, entry)
        if entry.problems:
            detail = "; ".join(entry.problems)
            places = [name for name in entry.lists if name in self.order]
            if places:
                self.left_out.extend((entry.order, LeftOut(entry.email, entry.line, name, "invalid", detail,
                                                           self.place(entry))) for name in places)
            elif not entry.lists:
                self.left_out.append((entry.order, LeftOut(entry.email, entry.line, None, "invalid", detail,
                                                           self.place(entry))))
        elif any(name in self.order for name in entry.lists):
            people = self.people
            found = people.get(entry.key)
            if isinstance(found, _HeldChunk):  # found before, in a chunk of usual rows
                found = found.entry(entry.key)
            if found is None:
                people[entry.key] = _pack_entry(entry)
            elif isinstance(found, list):
                found.append(entry)
            else:
                people[entry.key] = [_unpack_entry(found, entry.key) if isinstance(found, str) else found, entry]

    def _clean_row_taker(self, reading: _Reading) -> Callable[[RawRow], bool]:
        """A function that takes in one row the usual way, in one step, when it is the usual row: one
        contact, a plain ASCII address email-validator accepts, printable names, one list, a consent answer
        already known to mean subscribed, an address not seen before. It returns False for any other row,
        which then goes through ``_row_entries`` and ``_take`` (the same decisions, spelt out in full):
        so the verdicts are the same either way, and 100,000 rows take a fraction of the time.
        """
        columns = reading.columns
        if len(columns.contacts) != 1:
            return lambda raw: False
        (email_at, first_at, last_at, contact_status_at), = columns.contacts
        status_at = contact_status_at if contact_status_at is not None else columns.status
        width, lists_at, fixed_list = columns.width, columns.lists, reading.fixed_list
        extras_at = tuple(columns.extras)
        separators = 9 + len(extras_at)  # in a packed entry (``_pack_entry``)
        known, order, answers, people = reading.known, self.order, reading.answers, self.people
        next_order, source = self.next_order, str(reading.source)
        simple, domain_problem, sep, max_cell = _SIMPLE_ADDRESS.fullmatch, _domain_problem, _SEP, MAX_CELL

        def take_clean(raw: RawRow) -> bool:
            cells = raw.cells
            if len(cells) < width or sum(map(len, cells)) > max_cell:
                return False
            if status_at is not None and answers.get(cells[status_at].strip()) is not False:
                return False  # unsubscribed, or an answer not worked out yet
            if fixed_list is None:
                lists = cells[lists_at].strip().lower() if lists_at is not None else ""
                if lists not in order:
                    # A subscribed person on a known list this send did not choose: nothing to take in
                    # (a row with problems there is not reported either). Anything else: the full way.
                    return lists in known
            else:
                lists = fixed_list
            email = cells[email_at].strip()
            found = simple(email)
            if found is None or len(email) > 200 or found.start(1) > 65 or domain_problem(found.group(1).lower()):
                return False
            first_name = cells[first_at].strip() if first_at is not None else ""
            last_name = cells[last_at].strip() if last_at is not None else ""
            key = email.lower()  # address_key of an ASCII address
            if not (first_name + last_name).isprintable() or key in people:
                return False
            same = key == email  # held under its key, the address is not packed again (2.5 MB at 100,000)
            packed = sep.join((str(next_order()), str(raw.number), source, "0", "" if same else email,
                               "" if same else key, first_name, last_name, lists, "",
                               *[cells[i].strip() if i is not None else "" for i in extras_at]))
            if packed.count(sep) != separators:
                return False
            people[key] = packed
            return True

        return take_clean

    def _usual_rows_taker(self, reading: _Reading) -> Callable[[list[RawRow]], bool]:
        """A function that takes in a whole chunk of rows at once when every one of them is a row
        ``_clean_row_taker`` would take (or skip, being on a list this send did not choose), with the same
        packed entries and reading order; it returns False, having changed nothing, for any other chunk,
        which then goes row by row. The checks are asked of a column at a time, with str methods and one
        regex over the chunk's addresses: a Python step per row cost as much as the rest of the send.
        """
        columns = reading.columns
        if len(columns.contacts) != 1 or (reading.fixed_list is None and columns.lists is None):
            return lambda rows: False
        (email_at, first_at, last_at, contact_status_at), = columns.contacts
        status_at = contact_status_at if contact_status_at is not None else columns.status
        width, lists_at, fixed_list = columns.width, columns.lists, reading.fixed_list
        extras_at = tuple(columns.extras)
        known, order, answers, people, orders = reading.known, self.order, reading.answers, self.people, self._orders
        # A packed entry (``_pack_entry``'s layout) is one join of (order, line, source, contact, email, key, first,
        # last, lists, unsubscribed, *extras) as text. The fields alike on every row of this table are joined
        # once: the source and contact (0: one contact a row), and with them the empty email and key of an
        # address held under itself (a join per row cost a fifth less than a % of the same fields).
        source_contact = _SEP.join((str(reading.source), "0"))
        source_contact_same_address = _SEP.join((source_contact, "", ""))

        def stripped(at: int | None, cells: Sequence[Sequence[str]], count: int) -> Sequence[str]:
            return list(map(str.strip, cells[at])) if at is not None else [""] * count

        def take_usual_rows(rows: list[RawRow]) -> bool:
            cells = [raw.cells for raw in rows]
            if len(set(map(len, cells))) != 1 or len(cells[0]) < width:
                return False
            by_column: list[Sequence[str]] = list(zip(*cells, strict=True))
            # Each row's cells together are at most the columns' longest cells together.
            if sum(max(map(len, column)) for column in by_column) > MAX_CELL:
                return False
            if status_at is not None and any(answers.get(v.strip()) is not False for v in set(by_column[status_at])):
                return False  # someone unsubscribed, or an answer not worked out yet
            numbers: Sequence[int] = [raw.number for raw in rows]
            if fixed_list is None:
                assert lists_at is not None
                named = {cell: cell.strip().lower() for cell in set(by_column[lists_at])}
                if not all(name in order or name in known for name in named.values()):
                    return False
                if not all(name in order for name in named.values()):  # on a list this send did not choose: skipped
                    chosen = [named[cell] in order for cell in by_column[lists_at]]
                    by_column = [list(itertools.compress(column, chosen)) for column in by_column]
                    numbers = list(itertools.compress(numbers, chosen))
                    if not numbers:
                        return True
                lists: Sequence[str] = list(map(named.__getitem__, by_column[lists_at]))
            else:
                lists = [fixed_list] * len(numbers)
            count = len(numbers)
            emails = stripped(email_at, by_column, count)
            joined = "\n".join(emails)
            if (joined.count("\n") != count - 1 or max(map(len, emails)) > _SHORT_ADDRESS
                    or not _SIMPLE_ADDRESSES.fullmatch(joined)):
                return False
            lowered = joined.lower()  # address_key of ASCII addresses
            if any(_domain_problem(domain) for domain in set(_DOMAIN_OF_LINE.findall(lowered))):
                return False
            keys = lowered.split("\n")
            if len(set(keys)) != count or not people.keys().isdisjoint(keys):
                return False  # someone twice, or already found: the row by row way says how
            first_names, last_names = stripped(first_at, by_column, count), stripped(last_at, by_column, count)
            extras = [stripped(at, by_column, count) for at in extras_at]
            if not ("".join(first_names) + "".join(last_names)).isprintable() or any(
                    _SEP in joined or _ROW_SEP in joined for joined in map("".join, (lists, *extras))):
                return False
            if keys == emails:  # the address is its own key: held under it, not packed again
                fixed: list[Sequence[str]] = [[source_contact_same_address] * count]
            else:
                fixed = [[source_contact] * count,
                         ["" if key == email else email for key, email in zip(keys, emails, strict=True)],
                         ["" if key == email else key for key, email in zip(keys, emails, strict=True)]]
            first = next(orders)
            if count > 1:
                next(itertools.islice(orders, count - 2, None))  # the orders first .. first + count - 1 are theirs
            # Rows that follow each other (no blank line or quoted line break between) have a range of lines.
            lines = (range(numbers[0], numbers[-1] + 1) if numbers[-1] - numbers[0] == count - 1
                     else list(map(str, numbers)))
            held = _HeldChunk(keys, [range(first, first + count), lines, *fixed, first_names, last_names, lists,
                                     [""] * count, *extras])
            people.update(zip(keys, itertools.repeat(held)))
            return True

        return take_usual_rows

    def place(self, entry: _Entry) -> str:
        """Where ``entry`` is, as the office would look: "line 4", "staff.xlsx, sheet 'Staff', row 3, contact 2"."""
        place = self.formats[entry.source].format(entry.line)
        return f"{place}, contact {entry.contact}" if entry.contact else place

    def plan(self, *, path: Path, encoding: str, delimiter: str,
             files: tuple[tuple[Path, str | None], ...]) -> AudiencePlan:
        recipients = PackedRecipients()
        left_out = list(self.left_out)
        people = self.people
        unsubscribed, suppressed, address_problem = self.unsubscribed, self.suppressed, self.address_problem
        languages: dict[str, str] = {"": ""}  # language cell -> reader_language, once each
        groups: dict[str, tuple[str, tuple[str, ...], str, str]] = {}  # list + language cell -> group
        def group_of(lists: str, language_cell: str) -> tuple[str, tuple[str, ...], str, str]:
            """The (audience, lists, version, language) of someone on the one list ``lists``, made once each."""
            group = groups.get(lists + _SEP + language_cell)
            if group is None:
                language = languages.get(language_cell)
                if language is None:
                    language = languages[language_cell] = reader_language(language_cell)
                only = (lists,)
                group = groups[lists + _SEP + language_cell] = (
                    lists, only, self._versions.get(only) or self._version(only), language)
            return group

        # The last found first, a chunk of usual rows at a time where one ends the dict, else up to _CHUNK_ROWS
        # people; each entry let go as its person is made, for a lower peak of memory.
        while people:
            keys, taken = self._last_found(people)
            if isinstance(taken, _HeldChunk):
                if self._plan_usual(keys, taken.layout(), recipients, group_of):
                    continue
                found_all: list[str | _Entry | list[_Entry]] = list(taken.entries()[::-1])
            else:
                found_all = taken
                if self._plan_usual(keys, _entries_layout(found_all), recipients, group_of):
                    continue
            for key, found in zip(keys, found_all, strict=True):
                if isinstance(found, str):
                    # The usual person, 100,000 times: one valid entry on one list, subscribed. The same
                    # decision as ``_decide``'s first case, without unpacking into an _Entry.
                    _order, line, _source, _contact, email, _key, first_name, last_name, lists, said_unsubscribed, \
                        language_cell, *_ = found.split(_SEP)
                    email = email or key
                    if (not said_unsubscribed and _LIST_SEP not in lists and key not in unsubscribed
                            and key not in suppressed):
                        if email != key:
                            email = normalise_address(email)
                        if address_problem is None or not address_problem(email):
                            recipients.add(email, key, first_name, last_name, line, group_of(lists, language_cell))
                            continue
                    entries = [_unpack_entry(found, key)]
                else:
                    entries = found if isinstance(found, list) else [found]
                person, left = self._decide(key, entries)
                if person is not None:
                    recipients.append(person)
                left_out.extend(left)
        recipients.reverse()  # in the order first found
        # In reading order (each entry's row, file by file), then the lists' --to order.
        left_out.sort(key=lambda pair: (pair[0], self.order.get(pair[1].list_name or "", len(self.order))))
        everything = [item for _, item in left_out]
        counts = Counter((item.list_name, item.reason) for item in everything)
        receiving: Counter[str] = Counter()
        for (_, lists_of_group, _, _), size in recipients.groups():
            for name in lists_of_group:
                receiving[name] += size
        summaries = {}
        for name in self.chosen:
            reasons = {reason: counts[name, reason] for reason in REASONS if counts[name, reason]}
            summaries[name] = ListSummary(name=name, on_list=receiving[name] + sum(reasons.values()),
                                          receiving=receiving[name], left_out=reasons)
        return AudiencePlan(path=path, lists=self.chosen, recipients=recipients, left_out=tuple(everything),
                            summaries=summaries, rows=self.rows, encoding=encoding, delimiter=delimiter,
                            files=files)

    @staticmethod
    def _last_found(people: dict[str, str | _Entry | list[_Entry] | _HeldChunk]) -> tuple[
            list[str], list[str | _Entry | list[_Entry]] | _HeldChunk]:
        """Take the people found last out of ``people``, last first, with what was found of each (a packed entry,
        or entries): a whole chunk of usual rows when its last key ends the dict (its keys were put in together,
        after everyone taken before), which comes as the chunk when nobody in it was found again; else up to
        _CHUNK_ROWS people, to the next such chunk."""
        key, found = people.popitem()
        if isinstance(found, _HeldChunk) and found.keys[-1] == key:
            keys = found.keys[::-1]
            popped = [found, *map(people.pop, keys[1:])]
            if popped.count(found) == len(popped):  # nobody of the chunk found again since: the chunk as held
                return keys, found
        else:
            keys, popped = [key], [found]
            while people and len(keys) < _CHUNK_ROWS:
                key = next(reversed(people))
                found = people[key]
                if isinstance(found, _HeldChunk) and found.keys[-1] == key:
                    break  # a chunk's turn next
                people.popitem()  # that same last one (popitem, unlike del, lets the dict forget the slot)
                keys.append(key)
                popped.append(found)
        return keys, [found.entry(key) if isinstance(found, _HeldChunk) else found  # (someone of a chunk)
                      for key, found in zip(keys, popped, strict=True)]

    def _plan_usual(self, keys: list[str], layout: list[Sequence[str]] | None, recipients: PackedRecipients,
                    group_of: Callable[[str, str], tuple[str, tuple[str, ...], str, str]]) -> bool:
        """Decide a chunk of people at once when every one is the usual person of ``plan`` (one valid entry,
        packed, on one list, subscribed, not unsubscribed elsewhere nor suppressed, an address the transport
        takes): added to ``recipients`` as ``plan`` would, a column at a time. False, having added nobody,
        for any other chunk, which ``plan`` then decides person by person. ``layout``: their packed entries a column
        per field (``_entries_layout``), None when someone's is not a packed entry."""
        count = len(keys)
        if layout is None or len(layout) != 10 + len(EXTRA_COLUMNS):  # fields of a packed entry (``_pack_entry``)
            return False
        lists, language_cells = layout[8], layout[10]
        if (any(layout[9]) or _LIST_SEP in "".join(lists) or not self.unsubscribed.keys().isdisjoint(keys)
                or not self.suppressed.keys().isdisjoint(keys)):
            return False
        emails = layout[4]
        # Held under its key, an address that is its own key was not packed again; any other is normalised.
        sent = [normalise_address(email) if email else key for email, key in zip(emails, keys, strict=True)] \
            if any(emails) else keys
        check = self.address_problem
        if check is not None:
            # A transport's check may also answer for many addresses at once (``all_fine``: True only when it
            # finds no problem with any); else each address is asked.
            all_fine = getattr(check, "all_fine", None)
            if not (all_fine is not None and all_fine(sent)) and any(map(check, sent)):
                return False
        if len(set(lists)) == 1 == len(set(language_cells)):  # the usual chunk: everyone in one group
            pairs: Sequence[tuple[str, str]] = [(lists[0], language_cells[0])] * count
        else:
            pairs = list(zip(lists, language_cells, strict=True))
        recipients.add_columns(sent, keys, layout[6], layout[7], layout[1], pairs,
                               {pair: group_of(*pair) for pair in set(pairs)})
        return True

    def _version(self, lists: tuple[str, ...]) -> str:
        """The slug of the version for ``lists`` (``mailroom.versions.version_for``), worked out once each."""
        in_newsletter = self.version_order if any(n in self.version_order for n in lists) else self.chosen
        version = self._versions[lists] = version_for(lists, in_newsletter).slug
        return version

    def _decide(self, key: str, entries: list[_Entry]) -> tuple[Recipient | None, list[tuple[int, LeftOut]]]:
        """One person (all their valid entries on a chosen list, in reading order): the one email they get,
        if any, and their entries that get none (unsubscribed, suppressed, or the same list again)."""
        order = self.order
        first = entries[0]
        # An address already in its key's form (trimmed, lower-case ASCII: the usual case) is already the one
        # sendable spelling (mailroom.addresses.normalise_address); only the others need normalising.
        email = key if key == first.email else normalise_address(first.email)
        if (len(entries) == 1 and len(first.lists) == 1 and key not in self.unsubscribed
                and key not in self.suppressed  # the usual case, 100,000 times: one row, one list, sendable
                and (self.address_problem is None or not self.address_problem(email))):
            only = first.lists
            version = self._versions.get(only) or self._version(only)
            return Recipient(email, key, first.first_name, first.last_name, only[0], first.line, only,
                             version, reader_language(first.extras[0]) if first.extras[0] else ""), []
        if len(entries) == 1 and len(first.lists) == 1:
            placed = [(first.lists[0], first)]
        else:
            placed = sorted(((name, entry) for entry in entries for name in entry.lists if name in order),
                            key=lambda item: (order[item[0]], item[1].order))
        if key in self.unsubscribed:
            saying = self.unsubscribed[key]
            where = self.place(saying)
            return None, [(entry.order, LeftOut(entry.email, entry.line, name, "unsubscribed",
                                                "marked unsubscribed" if entry.order == saying.order
                                                else f"marked unsubscribed on {where}", self.place(entry)))
                          for name, entry in placed]
        if key in self.suppressed:
            reason = self.suppressed[key]
            return None, [(entry.order, LeftOut(entry.email, entry.line, name, "suppressed", reason,
                                                self.place(entry))) for name, entry in placed]
        why = self.address_problem(email) if self.address_problem is not None else None
        if why:
            return None, [(entry.order, LeftOut(entry.email, entry.line, name, "cannot be sent this way", why,
                                                self.place(entry))) for name, entry in placed]
        primary: dict[str, _Entry] = {}
        left: list[tuple[int, LeftOut]] = []
        for name, entry in placed:
            if name in primary:
                here = self.place(entry)
                first_place = _same_file_place(self.place(primary[name]), here)
                left.append((entry.order, LeftOut(entry.email, entry.line, name, "duplicate",
                                                  f"already on the {name} list on {first_place}", here)))
            else:
                primary[name] = entry
        named = next((e for e in entries if e.first_name or e.last_name), first)
        lists = tuple(primary)
        version = self._versions.get(lists) or self._version(lists)
        person = Recipient(email=email, key=key, first_name=named.first_name, last_name=named.last_name,
                           audience=lists[0], line=first.line, lists=lists, version=version,
                           language=next((reader_language(e.extras[0]) for e in entries if e.extras[0]), ""))
        return person, left


def _same_file_place(place: str, beside: str) -> str:
    """``place`` without the file and sheet it shares with ``beside``: "row 2, contact 1", not the whole path."""
    for mark in ("line ", "row "):
        head, found, rest = place.rpartition(mark)
        if found and beside.startswith(head):
            return mark + rest
    return place


@dataclass
class _Reading:
    """One table being read: where its fields are, and what each row's checks need, worked out once."""

    table: Table
    mapping: ColumnMapping
    columns: _Columns
    known: Mapping[str, object]  # every list in school.toml
    fixed_list: str | None  # everyone in the table is on this list (a list's own file)
    source: int  # the planner's index of this table
    status_heading: str
    answers: dict[str, bool] = field(default_factory=dict)  # consent cell -> unsubscribed, once each

    @classmethod
    def of(cls, table: Table, mapping: ColumnMapping, settings: Settings, fixed_list: str | None,
           source: int) -> _Reading:
        columns = _find_columns(table, mapping, need_lists=fixed_list is None)
        status_heading = table.headings[columns.status].strip() if columns.status is not None else mapping.status
        return cls(table, mapping, columns, settings.lists, fixed_list, source, status_heading)


def _row_entries(raw: RawRow, reading: _Reading, planner: _Planner) -> Iterator[_Entry]:
    """Each person on one row, with everything wrong with them (all of it, so one fix-up does)."""
    table, mapping, columns, fixed_list = reading.table, reading.mapping, reading.columns, reading.fixed_list
    subscribed, unsubscribed = mapping.subscribed_values, mapping.unsubscribed_values
    several = len(columns.contacts) > 1
    answers = reading.answers
    source = reading.source
    cells = raw.cells
    if len(cells) < columns.width:  # a short row: what's missing reads as empty
        cells.extend([""] * (columns.width - len(cells)))
    row_problems: list[str] = []
    if sum(map(len, cells)) > MAX_CELL:  # only then look at each cell that matters
        for index, heading in columns.checked:
            if len(cells[index]) > MAX_CELL:
                row_problems.append(f"the '{heading}' cell is {len(cells[index]):,} characters long, far too "
                                    "long for a name, an address or a list (is it the right column?)")
                cells[index] = cells[index][:MAX_CELL]
    if fixed_list is not None:
        lists: tuple[str, ...] = (fixed_list,)
    else:
        lists = _lists(cells[columns.lists].strip().lower() if columns.lists is not None else "", reading.known,
                       mapping.lists, row_problems)
    row_status = cells[columns.status].strip() if columns.status is not None else None
    extras = tuple(cells[i].strip() if i is not None else "" for i in columns.extras) if columns.extras else ()
    if table.kind == "csv" and raw.end - raw.number > 1 and any(table.delimiter in c and "\n" in c for c in cells):
        # A quote opened and never closed swallows the lines after it, which then look like one cell
        # holding whole rows: say where to look (only when something on the row is wrong).
        run_on = f"this row runs on from line {raw.number} to line {raw.end - 1}: is a closing quote (\") missing?"
    else:
        run_on = ""
    found = False
    for number, (email_at, first_at, last_at, status_at) in enumerate(columns.contacts, start=1):
        email = cells[email_at].strip()
        first_name = cells[first_at].strip() if first_at is not None else ""
        last_name = cells[last_at].strip() if last_at is not None else ""
        if several and not email:
            continue  # this pupil has no such contact, or one without an address: nobody to mail
        found = True
        problems = list(row_problems)
        if not email:
            problems.append("the email address is missing")
        else:
            why = _email_problem(email)
            if why:
                problems.append(f"not a valid email address: {why}")
        if not (first_name + last_name).isprintable():
            for word, name in (("first name", first_name), ("last name", last_name)):
                if not name.isprintable() and _has_control(name):
                    problems.append(f"the {word} has a line break or other control character "
                                    "(names go into the email's headers)")
        status = cells[status_at].strip() if status_at is not None else row_status
        heading = table.headings[status_at].strip() if status_at is not None else reading.status_heading
        said_unsubscribed = False
        if status is not None:
            answer = answers.get(status)  # the same few values on every row: each worked out once
            if answer is None:
                answer = _consent(status, heading, subscribed, unsubscribed, problems)
                if answer is not None:
                    answers[status] = answer
            said_unsubscribed = bool(answer)
        if problems and run_on:
            problems.append(run_on)
        key = address_key(email) if email else ""
        yield _Entry(planner.next_order(), raw.number, source, number if several else 0,
                     email, email if key == email else key, first_name, last_name, lists, said_unsubscribed,
                     tuple(problems), extras)
    if not found:
        shown = ", ".join(f"'{table.headings[c[0]].strip()}'" for c in columns.contacts)
        problems = [*row_problems, f"no contact on this row has an email address (in {shown})"]
        yield _Entry(planner.next_order(), raw.number, source, 0, "", "", "", "", lists, False, tuple(problems),
                     extras)


def _consent(value: str, heading: str, subscribed: tuple[str, ...], unsubscribed: tuple[str, ...],
             problems: list[str]) -> bool | None:
    """Whether a consent cell says unsubscribed; None for a value school.toml gives no meaning to, which is a
    problem on its row (never taken as consent)."""
    key = consent_key(value)
    if key in unsubscribed:
        return True
    if key in subscribed:
        return False
    if not key:
        problems.append(f"the '{heading}' cell is blank, and school.toml does not say what a blank means "
                        '(add "" to subscribed_values or to unsubscribed_values)')
    else:
        def shown(values: tuple[str, ...]) -> str:
            return ", ".join(f"'{v}'" if v else "blank" for v in values)
        problems.append(f"the '{heading}' cell says '{value}', which school.toml lists neither as subscribed "
                        f"({shown(subscribed)}) nor as unsubscribed ({shown(unsubscribed)})")
    return None


def _lists(cell: str, known: Mapping[str, object], heading: str, problems: list[str]) -> tuple[str, ...]:
    """The known list names in a lists cell ("parents; staff"); unknown or no names become a problem."""
    if cell in known:  # the usual case: one list
        return (cell,)
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
        problems.append(f"no list is named in the '{heading}' column "
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
    return None if is_plain_domain(domain) else _validator_verdict(f"a@{domain}")


def _validator_verdict(email: str) -> str | None:
    from email_validator import EmailNotValidError, validate_email  # only here: see mailroom/audience/domains.py

    try:
        validate_email(email, check_deliverability=False)
    except EmailNotValidError as exc:
        return str(exc)
    return None
