"""School exports as they come, end to end through send.py to the outbox (issue 13).

Each shape: an information system's .xlsx with two contacts per pupil row, siblings and a Yes/No consent
column per contact; staff in a file of their own; a CSV with a "Subscribed?" column and one with an
opt-out column; a CSV with two columns of the same heading; an enormous cell. Workbooks are made here with
openpyxl (binary fixtures would hide what is in them). Each test asserts the plan the office sees and who
got which email.
"""

from __future__ import annotations

import csv
import email
import email.policy
from email.message import EmailMessage
from pathlib import Path

import openpyxl
import pytest

from tests.send_project import SAMPLE, environ, run_send, send_project, send_py

NEWSLETTER = f"newsletters/{SAMPLE}"
PARENTS_ONLY = "For parents and carers"
STAFF_ONLY = "For education and safeguarding professionals"

CONTACTS_HEADINGS = ["Pupil Forename", "Pupil Surname", "Year", "Contact 1 Forename", "Contact 1 Surname",
                     "Contact 1 Email", "Contact 1 Email Consent", "Contact 2 Forename", "Contact 2 Surname",
                     "Contact 2 Email", "Contact 2 Email Consent"]
# One row per pupil, as an MIS exports it: siblings repeat their parents; consent is per contact.
CONTACTS_ROWS: list[list[object]] = [
    ["Ava", "Morgan", 3, "Julia", "Morgan", "julia.morgan@example.org", "Yes",
     "Owen", "Morgan", "owen.morgan@example.com", "Y"],
    ["Leo", "Morgan", 5, "Julia", "Morgan", "Julia.Morgan@Example.org", "Yes",  # Ava's brother
     "Owen", "Morgan", "owen.morgan@example.com", "Yes"],
    ["Mia", "Dubois", 2, "Renée", "Dubois", "renee.dubois@example.org", "No", None, None, None, None],
    ["Sam", "Patel", 4, "Priya", "Patel", "priya.patel@example.com", "Maybe",
     "Raj", "Patel", "raj.patel@example.com", None],  # blank: school.toml says blank means no
    [None] * 11,  # an empty row in the middle of the sheet
    ["Noah", "Okafor", 1, "Grace", "Okafor", "grace.okafor@example.org", "Y", "Femi", "Okafor", None, None],
    ["Ella", "Brown", 6, "Kate", "Brown", None, None, None, None, None, None],  # nobody to email
    ["Zoë", "Hart", 2, "Chloë", "Hart", "chloe.hart@example.org", "yes", None, None, None, None],
]
STAFF_HEADINGS = ["Title", "Preferred Forename", "Legal Surname", "Work Email", "Role"]
STAFF_ROWS: list[list[object]] = [
    ["Mrs", "Julia", "Morgan", "julia.morgan@example.org", "Class teacher"],  # also a parent
    ["Mr", "Tom", "Fletcher", "t.fletcher@oakfield.example.org", "Headteacher"],
    ["Ms", "Kim", "Lee", "kim.lee@oakfield", "Teaching assistant"],
]

EXPORTS_TOML = {
    'greeting = "Dear Parent/Carer"': '''greeting = "Dear Parent/Carer"
file = "exports/contacts.xlsx"

[lists.parents.columns]
sheet = "Contacts"
subscribed_values = ["Yes", "Y"]
unsubscribed_values = ["No", "N", ""]

[[lists.parents.columns.contacts]]
email = "Contact 1 Email"
first_name = "Contact 1 Forename"
last_name = "Contact 1 Surname"
status = "Contact 1 Email Consent"

[[lists.parents.columns.contacts]]
email = "Contact 2 Email"
first_name = "Contact 2 Forename"
last_name = "Contact 2 Surname"
status = "Contact 2 Email Consent"
''',
    'greeting = "Dear Colleague"': '''greeting = "Dear Colleague"
file = "exports/staff.xlsx"

[lists.staff.columns]
email = "Work Email"
first_name = "Preferred Forename"
last_name = "Legal Surname"
''',
}


def workbook(path: Path, sheets: dict[str, list[list[object]]]) -> Path:
    """An .xlsx made as Excel would save it: the sheets in order, values typed (numbers stay numbers)."""
    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    book.save(path)
    return path


def outbox(project: Path) -> dict[str, EmailMessage]:
    """Address -> the one email sent to it (tests copies left out); fails if anyone got two."""
    sent: dict[str, EmailMessage] = {}
    for path in (project / "outbox" / SAMPLE).glob("*.eml"):
        if path.name.startswith("test-"):
            continue
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        address = message["To"].addresses[0].addr_spec
        assert address not in sent, f"{address} got two emails"
        sent[address] = message
    return sent


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return part.get_content()


def sections(message: EmailMessage) -> set[str]:
    body = text_of(message)
    return {name for name, heading in (("parents", PARENTS_ONLY), ("staff", STAFF_ONLY)) if heading in body}


@pytest.fixture
def exports_project(tmp_path: Path) -> Path:
    project = send_project(tmp_path / "school", school_toml=EXPORTS_TOML)
    assert not (project / "audiences.csv").exists()  # every list has a file of its own: no main file needed
    workbook(project / "exports" / "contacts.xlsx",
             {"Read me": [["Exported from the MIS"]], "Contacts": [CONTACTS_HEADINGS, *CONTACTS_ROWS]})
    workbook(project / "exports" / "staff.xlsx", {"Staff": [STAFF_HEADINGS, *STAFF_ROWS]})
    return project


def test_mis_contacts_and_a_staff_file_end_to_end(exports_project: Path) -> None:
    project = exports_project
    env = environ(project)
    plan = send_py(project, NEWSLETTER, "--to", "parents,staff", "--dry-run", env=env)
    assert plan.returncode == 0, plan.stderr
    assert plan.stdout.splitlines() == [
        "Sending “Online safety: sextortion and the rise of AI”",
        "parents: 10 on the list, 4 will receive, 6 left out (2 unsubscribed, 2 duplicate, 2 invalid)",
        "staff: 3 on the list, 2 will receive, 1 left out (1 invalid)",
        "In all, 5 people will receive one email each.",
        f"Left out: 7 entries on the lists get no email (every one is listed in left-out-{SAMPLE}.csv):",
        "  unsubscribed: 2 (parents 2) - asked not to get the newsletter",
        "    contacts.xlsx, sheet 'Contacts', row 4, contact 1: renee.dubois@example.org (parents, marked "
        "unsubscribed)",
        "    contacts.xlsx, sheet 'Contacts', row 5, contact 2: raj.patel@example.com (parents, marked unsubscribed)",
        "  duplicate: 2 (parents 2) - the same address again on a list: they get one email",
        "    contacts.xlsx, sheet 'Contacts', row 3, contact 1: Julia.Morgan@Example.org (parents, already on the "
        "parents list on row 2, contact 1)",
        "    contacts.xlsx, sheet 'Contacts', row 3, contact 2: owen.morgan@example.com (parents, already on the "
        "parents list on row 2, contact 2)",
        "  invalid: 3 (parents 2, staff 1) - a problem on the row: see the problems below",
        "Problems in contacts.xlsx and staff.xlsx (3; these are left out until they are fixed):",
        "  contacts.xlsx, sheet 'Contacts', row 5, contact 1: priya.patel@example.com: the 'Contact 1 Email "
        "Consent' cell says 'Maybe', which school.toml lists neither as subscribed ('yes', 'y') nor as "
        "unsubscribed ('no', 'n', blank)",
        "  contacts.xlsx, sheet 'Contacts', row 8: no contact on this row has an email address (in 'Contact 1 "
        "Email', 'Contact 2 Email')",
        "  staff.xlsx, sheet 'Staff', row 4: kim.lee@oakfield: not a valid email address: The part after the "
        "@-sign is not valid. It should have a period.",
        "To send now, per version: parents 3, staff 1, parents+staff 1",
        f"Transport: the outbox folder {project / 'outbox'} (nothing is emailed)",
        "Test: this build has not been test-sent.",
        "5 people will get it now.",
        "Dry run: nothing was sent.",
    ]
    with (project / f"left-out-{SAMPLE}.csv").open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["where", "email", "list", "reason", "detail"] and len(rows) == 8

    result = send_py(project, NEWSLETTER, "--to", "parents,staff", "--yes", "--untested", env=env)
    assert result.returncode == 0, result.stderr
    sent = outbox(project)
    assert {address: sections(message) for address, message in sent.items()} == {
        "julia.morgan@example.org": {"parents", "staff"},  # a teacher who is also a parent: one email, both
        "owen.morgan@example.com": {"parents"},  # two children: one email
        "grace.okafor@example.org": {"parents"},
        "chloe.hart@example.org": {"parents"},
        "t.fletcher@oakfield.example.org": {"staff"},
    }
    julia = text_of(sent["julia.morgan@example.org"])
    assert "Dear Julia," in julia and julia.count("Unsubscribe: ") == 1
    assert "Dear Chloë," in text_of(sent["chloe.hart@example.org"])


def test_the_first_sheet_is_read_when_none_is_named_and_a_missing_sheet_is_named(exports_project: Path) -> None:
    project = exports_project
    toml = project / "school.toml"
    toml.write_text(toml.read_text(encoding="utf-8").replace('sheet = "Contacts"', 'sheet = "Pupils"'),
                    encoding="utf-8")
    result = run_send(project, NEWSLETTER, "--to", "parents", "--dry-run", env=environ(project))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"Error: {project / 'exports' / 'contacts.xlsx'}: there is no sheet called 'Pupils' in this workbook; "
        "its sheets are: 'Read me', 'Contacts'. Set sheet = \"...\" in school.toml to one of them")


# --- CSV exports ---------------------------------------------------------------------------------------------

SUBSCRIBED_CSV = """Contact Email;Forename;Surname;Year Group;Group;Subscribed?
amelia.hughes@example.org;Amelia;Hughes;Year 3;parents;Yes
renee.dubois@example.org;Renée;Dubois;Year 2;parents;No
j.morgan@oakfield.example.org;Julia;Morgan;;staff;Y
tom.fletcher@example.com;Tom;Fletcher;Year 5;parents;
"""
MAPPED = {'email = "email"': 'email = "Contact Email"', 'first_name = "first_name"': 'first_name = "Forename"',
          'last_name = "last_name"': 'last_name = "Surname"', 'lists = "lists"': 'lists = "Group"'}


def test_a_yes_no_subscribed_column(tmp_path: Path) -> None:
    """The issue's own export: 'Subscribed?' mapped as the status column, Yes/No as exported."""
    project = send_project(tmp_path / "school", school_toml={**MAPPED, 'status = "status"': (
        'status = "Subscribed?"\nsubscribed_values = ["Yes", "Y"]\nunsubscribed_values = ["No", "N"]')})
    (project / "audiences.csv").write_text(SUBSCRIBED_CSV, encoding="utf-8")
    result = run_send(project, NEWSLETTER, "--to", "parents,staff", "--yes", "--untested", env=environ(project))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1:9] == [
        "parents: 3 on the list, 1 will receive, 2 left out (1 unsubscribed, 1 invalid)",
        "staff: 1 on the list, 1 will receive",
        "In all, 2 people will receive one email each.",
        f"Left out: 2 entries on the lists get no email (every one is listed in left-out-{SAMPLE}.csv):",
        "  unsubscribed: 1 (parents 1) - asked not to get the newsletter",
        "    line 3: renee.dubois@example.org (parents, marked unsubscribed)",
        "  invalid: 1 (parents 1) - a problem on the row: see the problems below",
        "Problems in audiences.csv (1; these are left out until they are fixed):",
    ]
    assert lines[9] == ("  line 5: tom.fletcher@example.com: the 'Subscribed?' cell is blank, and school.toml does "
                        'not say what a blank means (add "" to subscribed_values or to unsubscribed_values)')
    assert {address: sections(m) for address, m in outbox(project).items()} == {
        "amelia.hughes@example.org": {"parents"}, "j.morgan@oakfield.example.org": {"staff"}}


def test_an_opt_out_column_with_the_values_reversed(tmp_path: Path) -> None:
    project = send_project(tmp_path / "school", school_toml={'status = "status"': (
        'status = "Opted out of newsletter"\nsubscribed_values = ["N", ""]\nunsubscribed_values = ["Y"]')})
    (project / "audiences.csv").write_text(
        "email,first_name,last_name,lists,Opted out of newsletter\n"
        "amelia.hughes@example.org,Amelia,Hughes,parents,\n"
        "renee.dubois@example.org,Renée,Dubois,parents,Y\n"
        "grace.okafor@example.org,Grace,Okafor,parents;staff,N\n"
        "tom.fletcher@example.com,Tom,Fletcher,staff,yes\n", encoding="utf-8")
    result = run_send(project, NEWSLETTER, "--to", "parents,staff", "--yes", "--untested", env=environ(project))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1:3] == ["parents: 3 on the list, 2 will receive, 1 left out (1 unsubscribed)",
                          "staff: 2 on the list, 1 will receive, 1 left out (1 invalid)"]
    assert ("  line 5: tom.fletcher@example.com: the 'Opted out of newsletter' cell says 'yes', which school.toml "
            "lists neither as subscribed ('n', blank) nor as unsubscribed ('y')") in lines
    assert {address: sections(m) for address, m in outbox(project).items()} == {
        "amelia.hughes@example.org": {"parents"}, "grace.okafor@example.org": {"parents", "staff"}}


def test_two_columns_with_the_same_heading_stop_the_send_naming_both(tmp_path: Path) -> None:
    project = send_project(tmp_path / "school")
    (project / "audiences.csv").write_text(
        "email,first_name,last_name,lists,Email\n"
        "amelia.hughes@example.org,Amelia,Hughes,parents,amelia@example.com\n", encoding="utf-8")
    result = run_send(project, NEWSLETTER, "--to", "parents", "--yes", "--untested", env=environ(project))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"Error: {project / 'audiences.csv'}: two columns have the heading 'email' (column 1 ('email') and "
        "column 5 ('Email')), so mailroom cannot tell which one to use. Rename or delete one of them")
    assert not (project / "outbox").exists()


def test_an_enormous_cell_is_a_problem_on_its_line_and_the_others_are_sent(tmp_path: Path) -> None:
    project = send_project(tmp_path / "school")
    notes = "x" * 300_000  # pasted by mistake; one line, no quote left open
    (project / "audiences.csv").write_text(
        "email,first_name,last_name,lists\n"
        "amelia.hughes@example.org,Amelia,Hughes,parents\n"
        f'rahul.patel@example.com,"{notes}",Patel,parents\n'
        "grace.okafor@example.org,Grace,Okafor,parents\n", encoding="utf-8")
    result = run_send(project, NEWSLETTER, "--to", "parents", "--yes", "--untested", env=environ(project))
    assert result.returncode == 0, result.stderr
    assert ("  line 3: rahul.patel@example.com: the 'first_name' cell is 300,000 characters long, far too long for "
            "a name, an address or a list (is it the right column?)") in result.stdout.splitlines()
    assert "closing quote" not in result.stdout
    assert sorted(outbox(project)) == ["amelia.hughes@example.org", "grace.okafor@example.org"]


def test_a_10000_person_plan_fits_on_a_screen(tmp_path: Path) -> None:
    project = send_project(tmp_path / "school")
    rows = ["email,first_name,last_name,lists,status"]
    for i in range(10_000):
        lists = "parents;staff" if i % 7 == 0 else "parents"
        status = "unsubscribed" if i % 50 == 0 else ""
        rows.append(f"person{i:05d}@example.org,Pat,Example,{lists},{status}")
        if i % 4 == 0:  # brothers and sisters: the same parent again
            rows.append(f"PERSON{i:05d}@example.org,Pat,Example,parents,")
        if i % 100 == 0:
            rows.append(f"person{i:05d}.example.org,Pat,Example,parents,")
    (project / "audiences.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    result = run_send(project, NEWSLETTER, "--to", "parents,staff", "--dry-run", env=environ(project))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) <= 40, "\n".join(lines)
    assert "In all, 9,800 people will receive one email each." in lines
    # 200 unsubscribed people: 300 parents entries (100 of them have a second row) and 29 staff ones
    assert "  unsubscribed: 329 (parents 300, staff 29) - asked not to get the newsletter" in lines
    assert "  duplicate: 2,400 (parents 2,400) - the same address again on a list: they get one email" in lines
    assert "Problems in audiences.csv (100; these are left out until they are fixed):" in lines
    assert "To send now, per version: parents 8,400, staff 0, parents+staff 1,400" in lines
    with (project / f"left-out-{SAMPLE}.csv").open(encoding="utf-8-sig", newline="") as handle:
        assert sum(1 for _ in handle) == 1 + 329 + 2_400 + 100  # heading, unsubscribed, duplicates, invalid
