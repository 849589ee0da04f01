"""A lists file as rows of text cells, each row knowing where it is: the reader layer under the planner.

Two kinds of file come from a school office, and both arrive here as the same thing (``Table``):

- **CSV**, as Excel, Google Sheets or an information system saves it: UTF-8 with or without a byte-order
  mark, else Windows-1252 (Excel's "CSV" on Windows), comma or semicolon separated, quoted cells with
  commas or line breaks, CRLF, blank lines. A row's number is the line it starts on.
- **Excel .xlsx** (also .xlsm), read with openpyxl in read-only mode, so rows stream from the zip and a
  100,000-row export never sits in memory whole. The first sheet, or the one school.toml names. A row's
  number is the sheet's row number, as Excel shows it; numbers, dates and TRUE/FALSE become the text a
  person sees in the cell.

Every check of the values (addresses, names, lists, consent) is the planner's (``lists.py``), so a CSV
and an .xlsx with the same rows give the same plan. A problem with the file as a whole (missing, a
folder, unreadable, damaged, no such sheet, an old .xls) is an ``InputError`` naming the file.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import re
import stat
import zipfile
from collections.abc import Iterator
from itertools import chain, islice, repeat
from pathlib import Path
from typing import Any, NamedTuple, TextIO

from mailroom.errors import InputError

# Bytes Windows-1252 leaves undefined: a file holding them is neither UTF-8 nor Windows-1252.
_CP1252_UNDEFINED = re.compile(rb"[\x81\x8d\x8f\x90\x9d]")
_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # old .xls, and password-protected .xlsx
EXCEL_SUFFIXES = (".xlsx", ".xlsm")
# A row spanning more lines than this is a quote left open, swallowing the rows after it.
RUN_ON_LINES = 100
# The csv module's own limit is 128 KB per cell; a long cell is reported per row by the planner instead.
_CSV_CELL_LIMIT = 16 * 1024 * 1024
# Lines of a CSV file read (and parsed) at once.
_CHUNK_LINES = 512
SAVE_AS_CSV = "In Excel, use Save As and choose 'Excel Workbook (.xlsx)' or 'CSV UTF-8 (Comma delimited)'"


class RawRow(NamedTuple):
    """One non-blank row after the heading row: its number (CSV line or sheet row), where it ends, its cells.
    A tuple, not a dataclass: 100,000 of these are made per read."""

    number: int
    end: int  # CSV: the line after the row's last (a row with a line break in a cell spans several); xlsx: number+1
    cells: list[str]


class Table:
    """A lists file opened for reading: its headings, then its rows, read once, in order."""

    kind = ""  # "csv" or "xlsx"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.headings: list[str] = []
        self.heading_row = 0
        self.sheet: str | None = None
        self.encoding = ""
        self.delimiter = ""

    def rows(self) -> Iterator[RawRow]:
        raise NotImplementedError

    def chunks(self, size: int) -> Iterator[list[RawRow]]:
        """The rows, up to ``size`` at a time (the planner takes a chunk of usual rows at once)."""
        rows = self.rows()
        while chunk := list(islice(rows, size)):
            yield chunk

    def close(self) -> None:
        """Let go of the file."""

    def __enter__(self) -> Table:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def row_word(self) -> str:
        """How this kind of file names a row: CSV files have lines, sheets have rows."""
        return "line" if self.kind == "csv" else "row"

    def column_name(self, index: int) -> str:
        """A column as the office finds it: its heading, and in a sheet its letter too ("column C, 'Email'")."""
        heading = self.headings[index].strip() if index < len(self.headings) else ""
        if self.kind == "xlsx":
            return f"column {column_letter(index)} ('{heading}')" if heading else f"column {column_letter(index)}"
        return f"column {index + 1} ('{heading}')" if heading else f"column {index + 1}"

    def describe(self) -> str:
        """The file (and sheet) for a message: "staff.xlsx, sheet 'Staff'"."""
        return f"{self.path}, sheet '{self.sheet}'" if self.sheet else str(self.path)

    def place(self, number: int) -> str:
        """A row as the office finds it: "line 14" in a CSV file, "sheet 'Contacts', row 14" in a workbook."""
        return self.place_format().format(number)

    def place_format(self) -> str:
        """``place`` as a format string with one {} for the row number (made once, used for every row)."""
        if self.kind == "xlsx":
            sheet = (self.sheet or "").replace("{", "{{").replace("}", "}}")
            return f"sheet '{sheet}', row {{}}"
        return "line {}"

    def error(self, message: str, number: int | None = None) -> InputError:
        """An error about the file, or about one of its rows, saying where as the office would look."""
        if number is None:
            return InputError(f"sheet '{self.sheet}': {message}" if self.sheet else message, self.path)
        if self.kind == "xlsx":
            return InputError(f"{self.place(number)}: {message}", self.path)
        return InputError(message, self.path, number)


def column_letter(index: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA: the letters Excel shows above a column."""
    letters = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        letters = chr(65 + remainder) + letters
    return letters


def open_table(path: Path, sheet: str = "") -> Table:
    """The lists file at ``path``, as CSV or .xlsx by its content (a .csv that is really a workbook still
    reads), positioned after its heading row. ``sheet``: the worksheet's name in a workbook ("" the first)."""
    path = Path(path)
    _refuse_special_file(path)
    try:
        with path.open("rb") as handle:
            magic = handle.read(8)
    except FileNotFoundError:
        raise InputError("not found: mailroom needs the mailing lists in this file "
                         "(or give another file with --audiences)", path) from None
    except IsADirectoryError:
        raise InputError("this is a folder, not a mailing lists file", path) from None
    except OSError as exc:
        raise _unreadable(path, exc) from None
    if magic.startswith(_OLE_MAGIC):
        raise InputError("this is an old-style Excel file (.xls), or a password-protected one, which mailroom "
                         f"cannot read. {SAVE_AS_CSV}, without a password", path)
    if magic.startswith(_ZIP_MAGIC) or path.suffix.lower() in EXCEL_SUFFIXES:
        return _XlsxTable(path, sheet)
    if path.suffix.lower() in (".xls", ".ods", ".numbers"):
        raise InputError(f"mailroom reads .xlsx and .csv files, not {path.suffix}. {SAVE_AS_CSV}", path)
    return _CsvTable(path)


def _refuse_special_file(path: Path) -> None:
    """A folder, a named pipe or a device as the lists file: say so, rather than hang reading it."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return  # missing or unreadable: opening it names the file and the reason
    if stat.S_ISDIR(mode):
        raise InputError("this is a folder, not a mailing lists file; give the file itself "
                         "(e.g. --audiences audiences.csv)", path)
    if not stat.S_ISREG(mode):
        raise InputError("this is not an ordinary file (it may be a pipe or a device); save the mailing "
                         "lists as a CSV or .xlsx file and give that file with --audiences", path)


def _unreadable(path: Path, exc: OSError) -> InputError:
    return InputError(f"mailroom could not read this file ({exc.strerror or exc}); check that it opens, "
                      "or save a copy somewhere else and give that one with --audiences", path)


# --- CSV ---------------------------------------------------------------------------------------------------

class _CsvTable(Table):
    kind = "csv"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        try:
            self.encoding = _detect_encoding(path)
            self._handle: TextIO = path.open("r", encoding=self.encoding, newline="")
            self.delimiter = _sniff_delimiter(self._handle)
            self._handle.seek(0)
        except OSError as exc:
            raise _unreadable(path, exc) from None
        csv.field_size_limit(_CSV_CELL_LIMIT)
        self._reader = csv.reader(self._handle, delimiter=self.delimiter, skipinitialspace=True)
        self._line = 1
        for row in self._raw():
            self.headings, self.heading_row = row.cells, row.number
            break
        else:
            self.close()
            raise InputError("the file is empty: it needs a first line of column headings, then one row per "
                             "person", path)

    def _raw(self) -> Iterator[RawRow]:
        reader, path = self._reader, self.path
        before = self._line - 1 - reader.line_num  # lines read before this reader began (a chunk's reader)
        try:
            for cells in reader:
                start, self._line = self._line, before + reader.line_num + 1
                if not "".join(cells).strip():
                    continue
                if self._line - start > RUN_ON_LINES and any("\n" in cell for cell in cells):
                    raise InputError(f"a cell starting on this line runs on for {self._line - start:,} lines: "
                                     'is a closing quote (") missing?', path, start)
                yield tuple.__new__(RawRow, (start, self._line, cells))  # no Python call per row
        except csv.Error as exc:
            if "field larger than field limit" in str(exc):
                raise InputError(f"a cell starting on this line is longer than {_CSV_CELL_LIMIT // 2 ** 20} MB: "
                                 'is a closing quote (") missing, or is this not a mailing lists file?',
                                 path, self._line) from None
            raise InputError(f"this line cannot be read as CSV ({exc})", path, self._line) from None
        except OSError as exc:
            raise _unreadable(path, exc) from None

    def rows(self) -> Iterator[RawRow]:
        return chain.from_iterable(self.chunks(_CHUNK_LINES))

    def chunks(self, size: int) -> Iterator[list[RawRow]]:
        """The rows after the headings, ``size`` lines at a time. A chunk with no quote is a row a line, parsed at
        once (a Python step per row cost as much as the parsing; a test holds the cells equal to the csv
        module's); a chunk with a quote (a cell may hold a line break, running on to later lines) goes row by
        row as ``_raw`` reads them, line numbers and all."""
        handle, delimiter, path = self._handle, self.delimiter, self.path
        try:
            while lines := list(islice(handle, size)):
                start = self._line
                text = "".join(lines)
                if '"' in text:
                    yield from self._chunk_row_by_row(lines)
                    continue
                if (delimiter + " " in text or text.startswith(" ") or "\n " in text or "\r " in text
                        or max(map(len, lines)) > _CSV_CELL_LIMIT):
                    try:  # spaces the csv module skips at a cell's start, or a cell over its limit
                        cells = list(csv.reader(lines, delimiter=delimiter, skipinitialspace=True))
                    except csv.Error:  # said with the row's line by the row by row way
                        yield from self._chunk_row_by_row(lines)
                        continue
                else:  # what the csv module makes of a line with no quote and no space to skip: split at delimiters
                    cells = list(map(str.split, map(str.rstrip, lines, repeat("\r\n")), repeat(delimiter)))
                self._line = start + len(lines)
                rows = list(map(tuple.__new__, repeat(RawRow), zip(  # no Python call per row
                    range(start, self._line), range(start + 1, self._line + 1), cells, strict=True)))
                if not all(map(str.strip, map("".join, cells))):  # blank lines are not rows
                    rows = [row for row in rows if "".join(row.cells).strip()]
                if rows:
                    yield rows
        except OSError as exc:
            raise _unreadable(path, exc) from None

    def _chunk_row_by_row(self, lines: list[str]) -> Iterator[list[RawRow]]:
        """``lines`` read as ``_raw`` reads the file, with the later lines of a row that runs on beyond them."""
        handle = self._handle
        self._reader = csv.reader(chain(lines, handle), delimiter=self.delimiter, skipinitialspace=True)
        first = self._line
        rows = []
        for row in self._raw():
            rows.append(row)
            if self._line - first >= len(lines):  # the chunk's lines are read: the next chunk goes on from here
                break
        if rows:
            yield rows

    def close(self) -> None:
        self._handle.close()


def _detect_encoding(path: Path) -> str:
    """UTF-8 (with or without a byte-order mark) if the whole file decodes as UTF-8, else Windows-1252."""
    with path.open("rb") as handle:
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


def _sniff_delimiter(handle: TextIO) -> str:
    """Comma or semicolon, whichever the heading line (the first non-blank line) has more of outside quotes."""
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


# --- Excel .xlsx ------------------------------------------------------------------------------------------

class _XlsxTable(Table):
    kind = "xlsx"

    def __init__(self, path: Path, sheet: str) -> None:
        super().__init__(path)
        import openpyxl  # only when a workbook is read: it is not needed for CSV

        try:
            self._book = openpyxl.load_workbook(path, read_only=True, data_only=True)
        except (zipfile.BadZipFile, KeyError, ValueError, TypeError) as exc:
            raise InputError(f"this cannot be read as an Excel workbook ({exc}); it may be damaged. Open it in "
                             f"Excel and save it again. {SAVE_AS_CSV}", path) from None
        except OSError as exc:
            raise _unreadable(path, exc) from None
        names = self._book.sheetnames
        if sheet:
            found = next((n for n in names if n.strip().casefold() == sheet.strip().casefold()), None)
            if found is None:
                self.close()
                shown = ", ".join(f"'{n}'" for n in names)
                raise InputError(f"there is no sheet called '{sheet}' in this workbook; its sheets are: {shown}. "
                                 "Set sheet = \"...\" in school.toml to one of them", path)
            sheet = found
        else:
            sheet = next((ws.title for ws in self._book.worksheets), names[0] if names else "")
        self.sheet = sheet
        worksheet = self._book[sheet]
        # Exporters often write a wrong size into the sheet, and read-only mode trusts it: measure instead.
        reset = getattr(worksheet, "reset_dimensions", None)
        if reset is not None:
            reset()
        self._rows = worksheet.iter_rows(values_only=True)
        self._number = 0
        for row in self._raw():
            self.headings, self.heading_row = row.cells, row.number
            break
        else:
            self.close()
            raise InputError(f"the sheet '{sheet}' is empty: it needs a first row of column headings, then one "
                             "row per person", path)

    def _raw(self) -> Iterator[RawRow]:
        try:
            for values in self._rows:
                self._number += 1
                cells = [cell_text(value) for value in values]
                if not "".join(cells).strip():
                    continue
                yield RawRow(self._number, self._number + 1, cells)
        except (zipfile.BadZipFile, KeyError, ValueError, TypeError) as exc:
            raise InputError(f"sheet '{self.sheet}' cannot be read past row {self._number} ({exc}); the file may "
                             f"be damaged. {SAVE_AS_CSV}", self.path) from None
        except OSError as exc:
            raise _unreadable(self.path, exc) from None

    def rows(self) -> Iterator[RawRow]:
        return self._raw()

    def close(self) -> None:
        self._book.close()


def cell_text(value: Any) -> str:
    """A cell's value as the text a person sees in Excel: 1 not 1.0, TRUE/FALSE, a date as 2025-09-01."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value)
