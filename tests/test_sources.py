"""The reader layer (mailroom/audience/sources.py) and the lists settings: a CSV and an .xlsx with the same
rows give the same plan; what Excel shows is what is read; files and settings mailroom cannot use are
named with what to do."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import openpyxl
import pytest

from mailroom.audience.lists import load_audience
from mailroom.audience.sources import cell_text, column_letter, open_table
from mailroom.errors import ConfigError, InputError
from mailroom.settings import Settings, load_settings
from tests.projects import REPO, make_project

FIXTURES = REPO / "tests" / "fixtures" / "audiences"


@pytest.fixture
def settings() -> Settings:
    return load_settings(REPO, environ={})


def as_workbook(csv_path: Path, dest: Path, sheet: str = "Sheet1") -> Path:
    """The same rows as a CSV fixture, as a workbook (every cell text, as a person would type them)."""
    with open_table(csv_path) as table:
        rows = [table.headings, *(row.cells for row in table.rows())]
    book = openpyxl.Workbook()
    book.active.title = sheet
    for row in rows:
        book.active.append(row)
    book.save(dest)
    return dest


@pytest.mark.parametrize("name", ["duplicates.csv", "stray_spaces.csv", "bad_email.csv", "unknown_list.csv",
                                  "semicolon.csv", "bad_status.csv"])
def test_a_workbook_with_the_same_rows_gives_the_same_plan(settings: Settings, tmp_path: Path, name: str) -> None:
    from_csv = load_audience(FIXTURES / name, settings, ["staff", "parents"])
    from_xlsx = load_audience(as_workbook(FIXTURES / name, tmp_path / "lists.xlsx"), settings, ["staff", "parents"])
    def people(plan: object) -> list[tuple[object, ...]]:
        return [(r.email, r.first_name, r.last_name, r.version, r.line)
                for r in plan.recipients]  # type: ignore[attr-defined]

    assert people(from_xlsx) == people(from_csv) and people(from_csv)
    assert [o.where for o in from_xlsx.left_out] == [o.where.replace("line", "sheet 'Sheet1', row")
                                                     for o in from_csv.left_out]
    assert [(o.email, o.line, o.list_name, o.reason) for o in from_xlsx.left_out] == [
        (o.email, o.line, o.list_name, o.reason) for o in from_csv.left_out]
    assert from_xlsx.summaries == from_csv.summaries


def test_cells_read_as_excel_shows_them() -> None:
    assert [cell_text(v) for v in (None, "Zoë", 3, 3.0, 2.5, True, False, dt.date(2025, 9, 1),
                                   dt.datetime(2025, 9, 1), dt.datetime(2025, 9, 1, 8, 30))] == [
        "", "Zoë", "3", "3", "2.5", "TRUE", "FALSE", "2025-09-01", "2025-09-01", "2025-09-01 08:30:00"]
    assert [column_letter(i) for i in (0, 25, 26, 701, 702)] == ["A", "Z", "AA", "ZZ", "AAA"]


def test_a_workbook_with_a_wrong_recorded_size_is_still_read_whole(settings: Settings, tmp_path: Path) -> None:
    """Some exporters write the sheet's size as A1; read-only openpyxl would then stop at the first cell."""
    path = as_workbook(FIXTURES / "duplicates.csv", tmp_path / "lists.xlsx")
    import zipfile

    damaged = tmp_path / "small-dimension.xlsx"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(damaged, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename.startswith("xl/worksheets/"):
                data = data.replace(b'<dimension ref="A1:E9"/>', b'<dimension ref="A1"/>')
                assert b'<dimension ref="A1"/>' in data
            target.writestr(item, data)
    plan = load_audience(damaged, settings, ["parents", "staff"])
    assert plan.rows == 8 and len(plan.recipients) == 2


def test_boolean_and_number_consent_cells_from_excel(tmp_path: Path) -> None:
    project = make_project(tmp_path / "school").parents[1]
    settings = load_settings(project, environ={})
    book = openpyxl.Workbook()
    for row in (["email", "first_name", "last_name", "lists", "status"],
                ["a@example.org", "A", "A", "parents", True], ["b@example.org", "B", "B", "parents", False],
                ["c@example.org", "C", "C", "parents", 1], ["d@example.org", "D", "D", "parents", 0]):
        book.active.append(row)
    book.save(project / "lists.xlsx")
    plan = load_audience(project / "lists.xlsx", settings, ["parents"])
    assert [r.email for r in plan.recipients] == ["a@example.org", "c@example.org"]
    assert [(o.email, o.reason) for o in plan.left_out] == [("b@example.org", "unsubscribed"),
                                                           ("d@example.org", "unsubscribed")]


def test_problems_in_a_workbook_name_the_sheet_row_and_column(settings: Settings, tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    book.active.title = "Contacts"
    book.active.append(["Email", "first_name", "last_name", "lists", "EMAIL"])
    book.save(tmp_path / "twice.xlsx")
    with pytest.raises(InputError) as caught:
        load_audience(tmp_path / "twice.xlsx", settings, ["parents"])
    assert str(caught.value) == (f"{tmp_path / 'twice.xlsx'}: sheet 'Contacts': two columns have the heading "
                                 "'email' (column A ('Email') and column E ('EMAIL')), so mailroom cannot tell "
                                 "which one to use. Rename or delete one of them")
    book = openpyxl.Workbook()
    book.active.title = "Contacts"
    book.active.append([])
    book.active.append(["Email", "Forename"])
    book.save(tmp_path / "missing.xlsx")
    with pytest.raises(InputError) as caught:
        load_audience(tmp_path / "missing.xlsx", settings, ["parents"])
    assert str(caught.value) == (
        f"{tmp_path / 'missing.xlsx'}: sheet 'Contacts', row 2: the columns 'first_name', 'last_name', 'lists' are "
        "missing. The row 2 has: 'Email', 'Forename'. If your export uses other headings, set them in school.toml "
        "(see docs/audiences.md)")


@pytest.mark.parametrize(("content", "name", "message"), [
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100, "lists.xls",
     "this is an old-style Excel file (.xls), or a password-protected one, which mailroom cannot read. In Excel, "
     "use Save As and choose 'Excel Workbook (.xlsx)' or 'CSV UTF-8 (Comma delimited)', without a password"),
    (b"PK\x03\x04 not really a zip", "lists.xlsx",
     "this cannot be read as an Excel workbook (File is not a zip file); it may be damaged. Open it in Excel and "
     "save it again. In Excel, use Save As and choose 'Excel Workbook (.xlsx)' or 'CSV UTF-8 (Comma delimited)'"),
    (b"<xml/>", "lists.ods",
     "mailroom reads .xlsx and .csv files, not .ods. In Excel, use Save As and choose 'Excel Workbook (.xlsx)' "
     "or 'CSV UTF-8 (Comma delimited)'"),
])
def test_files_mailroom_cannot_read_say_what_to_do(settings: Settings, tmp_path: Path, content: bytes, name: str,
                                                    message: str) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(InputError) as caught:
        load_audience(tmp_path / name, settings, ["parents"])
    assert str(caught.value) == f"{tmp_path / name}: {message}"


def test_an_empty_sheet(settings: Settings, tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    book.active.title = "Staff"
    book.save(tmp_path / "empty.xlsx")
    with pytest.raises(InputError, match="the sheet 'Staff' is empty: it needs a first row of column headings"):
        load_audience(tmp_path / "empty.xlsx", settings, ["parents"])


# --- settings ---------------------------------------------------------------------------------------------

def settings_with(tmp_path: Path, edits: dict[str, str]) -> Settings:
    return load_settings(make_project(tmp_path / "school", school_toml=edits).parents[1], environ={})


@pytest.mark.parametrize("name", ["web", "preview"])
def test_a_list_named_like_a_build_file_is_a_settings_error(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_with(tmp_path, {"[lists.staff]": f"[lists.{name}]"})
    assert f"a list cannot be called '{name}': that name is kept for the " in str(caught.value)
    assert f"Rename [lists.{name}], e.g. to [lists.{name}-list]" in str(caught.value)


@pytest.mark.parametrize(("edit", "message"), [
    ('status = "status"', "'audiences_csv.subscribed_values' should be given together with unsubscribed_values"),
    ('status = "status"\nsubscribed_values = "Yes"\nunsubscribed_values = ["No"]',
     "'audiences_csv.subscribed_values' should be a list of the values the column holds"),
    ('status = "status"\nsubscribed_values = ["Yes", "N"]\nunsubscribed_values = ["no", "n"]',
     "'audiences_csv.unsubscribed_values' should be different from subscribed_values (both have 'n')"),
    ('status = "status"\ncontacts = [{email = "Contact 1 Email", phone = "Contact 1 Mobile"}]',
     "'audiences_csv.contacts[1].phone' should be one of email, first_name, last_name, status"),
    ('status = "status"\ncontacts = []', "'audiences_csv.contacts' should be a list of contacts"),
])
def test_mapping_mistakes_are_named(tmp_path: Path, edit: str, message: str) -> None:
    edits = {'status = "status"': edit, 'email = "email"\n': "", 'first_name = "first_name"\n': "",
             'last_name = "last_name"\n': ""}
    if edit == 'status = "status"':
        edits['status = "status"'] = 'status = "status"\nsubscribed_values = ["Yes"]'
    with pytest.raises(ConfigError) as caught:
        settings_with(tmp_path, edits)
    assert message in str(caught.value)


def test_contacts_replace_the_single_email_columns(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'audiences_csv\.contacts' should be given instead of email"):
        settings_with(tmp_path, {'status = "status"': 'contacts = [{email = "Contact 1 Email"}]'})
    settings = settings_with(tmp_path / "2", {'email = "email"\n': "", 'first_name = "first_name"\n': "",
                                              'last_name = "last_name"\n': "", 'status = "status"': (
                                                  'contacts = [{email = "C1 Email"}, {email = "C2 Email", '
                                                  'first_name = "C2 Name", status = "C2 OK"}]')})
    assert [(c.email, c.first_name, c.status) for c in settings.columns.people_columns()] == [
        ("C1 Email", "", ""), ("C2 Email", "C2 Name", "C2 OK")]


def test_a_status_column_named_in_school_toml_must_be_there(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, {'status = "status"': 'status = "Subscribed?"'})
    with pytest.raises(InputError, match="the column 'Subscribed\\?' is missing"):
        load_audience(FIXTURES / "duplicates.csv", settings, ["parents"])


def test_a_lists_file_of_its_own_that_is_missing_is_named(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, {'greeting = "Dear Colleague"': 'greeting = "Dear Colleague"\n'
                                                                       'file = "exports/staff.xlsx"'})
    with pytest.raises(InputError) as caught:
        load_audience(None, settings, ["staff"])
    assert str(caught.value) == (f"{settings.root / 'exports' / 'staff.xlsx'}: not found: mailroom needs the "
                                 "mailing lists in this file (or give another file with --audiences)")


def _rows_one_by_one(path: Path) -> list[tuple[int, int, list[str]]]:
    """The plain way: one csv reader over the whole file, each row's lines from the reader's line count."""
    import csv

    with open_table(path) as table:
        delimiter = table.delimiter
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter, skipinitialspace=True)
        rows, line = [], 1
        for cells in reader:
            start, line = line, reader.line_num + 1
            if "".join(cells).strip():
                rows.append((start, line, cells))
    return rows[1:]  # after the headings


MESSY_CSV = [
    "email,first_name,last_name,lists\r\npat@example.org,Pat,Example,parents\r\n\r\n , ,\r\nsam@example.org,Sam,,staff",
    'email,first_name,last_name,lists\n"a@example.org","Line\nbreak\r\ntwice",X,parents\n\nb@example.org,B,"Comma, Jr",'
    'staff\n"c@example.org",C,"quote ""q""",parents\n',
    "email,first_name,last_name,lists\nd@example.org,D,\"runs\n\n\non\",parents\r\ne@example.org,E,O'Neil,parents\n\n\n",
    "\ufeffemail,first_name\ra@example.org,lone CR\rb@example.org,B\r\n\r\nc@example.org,C",
]


@pytest.mark.parametrize("text", MESSY_CSV)
@pytest.mark.parametrize("size", [1, 2, 3, 5, 512])
def test_a_csv_read_in_chunks_gives_the_rows_and_lines_of_the_plain_reader(tmp_path: Path, text: str,
                                                                          size: int) -> None:
    """Chunks without a quote are parsed a chunk at once, with a row a line; the rest row by row. Whatever the
    chunks' edges (inside a cell's line breaks, among blank lines), each row and its lines are the plain way's."""
    for name, content in (("lists.csv", text), ("semi.csv", text.replace(",", ";"))):
        path = tmp_path / name
        path.write_bytes(content.encode("utf-8"))
        with open_table(path) as table:
            chunks = list(table.chunks(size))
        assert all(chunks)  # no empty chunk
        assert [(row.number, row.end, row.cells) for chunk in chunks for row in chunk] == _rows_one_by_one(path)


@pytest.mark.parametrize("size", [1, 4, 512])
def test_a_csv_error_in_a_chunk_names_its_own_line(tmp_path: Path, size: int) -> None:
    path = tmp_path / "audiences.csv"
    lines = ["email,first_name,last_name,lists"] + [f"p{at}@example.org,P,E,parents" for at in range(6)]
    lines.insert(5, 'bad@example.org,"' + "x" * 40 + '",E,parents')
    path.write_text("\n".join(lines) + "\n" + '"open,' + "\n".join(["q"] * 150), encoding="utf-8")
    with open_table(path) as table, pytest.raises(InputError) as raised:
        list(table.rows())
    assert raised.value.line == 9 and "runs on" in str(raised.value)


@pytest.mark.parametrize("seed", range(6))
def test_lines_split_at_once_are_what_the_csv_module_reads(tmp_path: Path, seed: int) -> None:
    """Random lines of the characters that matter to a CSV reader (no quote, or a few): read in chunks, split
    at the delimiter where the chunk allows it, they give the plain csv reader's rows and lines exactly."""
    import random

    rng = random.Random(seed)
    alphabet = ["a", "é", " ", " ", "\t", ",", ",", ";", "\x00", "\x0b", "\u2028", "\x85", "\r", "\n", "\r\n", "x@y.z"]
    if seed % 2:
        alphabet.append('"')
    body = "".join(rng.choice(alphabet) for _ in range(3000))
    for name in ("lists.csv", "semi.csv"):
        path = tmp_path / name
        heading = "email,first_name,last_name" if name == "lists.csv" else "email;first_name;last_name"
        path.write_bytes(f"{heading}\n{body}".encode())
        for size in (1, 7, 64, 512):
            with open_table(path) as table:
                read = [(row.number, row.end, row.cells) for chunk in table.chunks(size) for row in chunk]
            assert read == _rows_one_by_one(path)
