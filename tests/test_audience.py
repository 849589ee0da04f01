"""audiences.csv as it comes from real spreadsheets: read, checked, de-duplicated; what the office sees."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from click.testing import CliRunner
from email_validator import EmailNotValidError, validate_email

from mailroom.addresses import address_key
from mailroom.audience.lists import LeftOut, _email_problem, load_audience
from mailroom.audience.report import excel_safe, format_audience_summary, format_left_out, format_problems
from mailroom.cli import main
from mailroom.errors import InputError
from mailroom.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "audiences"


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(ROOT, environ={})


def project_with_columns(tmp_path: Path, columns: str | None = None) -> Settings:
    """A copy of the sample project, with another [audiences_csv] table if given."""
    shutil.copytree(ROOT / "assets", tmp_path / "assets")
    text = (ROOT / "school.toml").read_text(encoding="utf-8")
    if columns is not None:
        head, _, rest = text.partition("[audiences_csv]")
        text = head + "[audiences_csv]\n" + columns + "\n\n[web]" + rest.partition("[web]")[2]
    (tmp_path / "school.toml").write_text(text, encoding="utf-8")
    return load_settings(tmp_path, environ={})


def people(plan) -> list[tuple[int, str, str, str, str]]:
    return [(r.line, r.email, r.first_name, r.last_name, r.version) for r in plan.recipients]


def left(plan) -> list[tuple[int, str, str | None, str, str]]:
    return [(o.line, o.email, o.list_name, o.reason, o.detail) for o in plan.left_out]


def figures(plan) -> dict[str, tuple[int, int, dict[str, int]]]:
    return {name: (s.on_list, s.receiving, s.left_out) for name, s in plan.summaries.items()}


# --- the sample ----------------------------------------------------------------------------------

def test_sample_audiences_is_clean_and_has_both_lists(settings: Settings) -> None:
    plan = load_audience(ROOT / "audiences.csv", settings, ["parents", "staff"])
    assert plan.problems() == []
    assert 28 <= len(plan.recipients) <= 32
    assert all(r.email.endswith(("@example.org", "@example.com", ".example.org")) for r in plan.recipients)
    assert {o.reason for o in plan.left_out} == {"unsubscribed"}
    assert [o.email for o in plan.left_out if o.reason == "unsubscribed"] == ["daniel.evans@example.com"]
    # Staff who are also parents get one email: the version with both lists' sections.
    staff_parents = [r for r in plan.recipients if r.version == "parents+staff"]
    assert len(staff_parents) >= 2 and all(r.lists == ("parents", "staff") for r in staff_parents)


# --- reading real spreadsheets -------------------------------------------------------------------

def test_utf8_with_byte_order_mark(settings: Settings) -> None:
    plan = load_audience(FIXTURES / "utf8_bom.csv", settings, ["parents", "staff"])
    assert plan.encoding == "utf-8-sig"
    assert people(plan) == [(2, "zoe.richardson@example.org", "Zoë", "Richardson", "parents"),
                            (3, "sean.oconnor@example.com", "Seán", "Ó Conchúir", "staff")]


def test_utf8_without_byte_order_mark(settings: Settings) -> None:
    plan = load_audience(FIXTURES / "utf8_plain.csv", settings, ["parents"])
    assert plan.encoding == "utf-8"
    assert people(plan)[1] == (3, "maja.kowalska@example.com", "Maja", "Kowalska-Wiśniewska", "parents")


def test_windows_1252_from_excel(settings: Settings) -> None:
    plan = load_audience(FIXTURES / "windows1252.csv", settings, ["parents"])
    assert plan.encoding == "cp1252"
    assert people(plan) == [(2, "renee.dubois@example.org", "Renée", "Dubois", "parents"),
                            (3, "liam.obrien@example.com", "Liam", "O\u2019Brien", "parents")]


def test_semicolon_separated_with_lists_quoted_or_comma_separated(settings: Settings) -> None:
    plan = load_audience(FIXTURES / "semicolon.csv", settings, ["staff", "parents"])
    assert plan.delimiter == ";"
    assert people(plan) == [(2, "renee.dubois@example.org", "Renée", "Dubois", "parents"),
                            (3, "j.morgan@oakfield.example.org", "Julia", "Morgan", "staff+parents"),
                            (4, "r.lewis@oakfield.example.org", "Rebecca", "Lewis", "staff+parents")]
    assert figures(plan) == {"staff": (2, 2, {}), "parents": (3, 3, {})}


def test_quoted_fields_with_commas_and_line_breaks_keep_line_numbers(settings: Settings) -> None:
    plan = load_audience(FIXTURES / "quoted.csv", settings, ["parents", "staff"])
    assert people(plan) == [(2, "amelia.hughes@example.org", "Amelia", "Hughes", "parents"),
                            (3, "tom.fletcher@example.com", "Tom", "Fletcher, Jr", "parents"),
                            (6, "grace.okafor@example.org", "Grace", "Okafor", "parents+staff")]
    # Tom's notes span lines 3-5, so the bad address is on line 7 of the file, where the row starts.
    assert left(plan)[-1][:4] == (7, "not-an-email", "parents", "invalid")


def test_crlf_line_endings(settings: Settings) -> None:
    plan = load_audience(FIXTURES / "crlf.csv", settings, ["parents"])
    assert [r.line for r in plan.recipients] == [2, 4]
    assert [(o.line, o.email) for o in plan.left_out] == [(5, "kim.lee@example")]


def test_blank_lines_and_empty_rows_are_skipped_but_counted(settings: Settings) -> None:
    plan = load_audience(FIXTURES / "blank_lines.csv", settings, ["parents"])
    assert plan.rows == 3
    assert [r.line for r in plan.recipients] == [5, 9]
    assert [(o.line, o.email) for o in plan.left_out] == [(11, "kim.lee@example")]


def test_stray_spaces_everywhere(settings: Settings) -> None:
    plan = load_audience(FIXTURES / "stray_spaces.csv", settings, ["staff", "parents"])
    assert people(plan) == [(2, "amelia.hughes@example.org", "Amelia", "Hughes", "parents"),
                            (3, "j.morgan@oakfield.example.org", "Julia", "Morgan", "staff+parents")]
    assert left(plan) == [(4, "kim.lee@example", "parents", "invalid",
                           "not a valid email address: The part after the @-sign is not valid. It should have a "
                           "period.")]


def test_short_and_long_rows_without_a_status_column(settings: Settings) -> None:
    plan = load_audience(FIXTURES / "ragged_rows.csv", settings, ["parents", "staff"])
    # Cells past the headings are ignored (no status column: everyone is subscribed); missing cells are empty.
    assert people(plan) == [(2, "amelia.hughes@example.org", "Amelia", "Hughes", "parents"),
                            (4, "grace.okafor@example.org", "Grace", "Okafor", "staff")]
    assert [(o.line, o.detail) for o in plan.problems()] == [
        (3, "no list is named in the 'lists' column (use one or more of: parents, staff, separated by ';')")]


def test_header_and_values_in_any_case(settings: Settings) -> None:
    plan = load_audience(FIXTURES / "header_case.csv", settings, ["parents", "staff"])
    assert people(plan) == [(2, "amelia.hughes@example.org", "Amelia", "Hughes", "parents")]
    assert left(plan) == [(3, "tom.fletcher@example.com", "staff", "unsubscribed", "marked unsubscribed")]


def test_column_names_from_school_toml(tmp_path: Path) -> None:
    mapped = project_with_columns(tmp_path, 'email = "Contact Email"\nfirst_name = "Forename"\nlast_name = "Surname"\n'
                               'lists = "Group"')
    plan = load_audience(FIXTURES / "mapped_columns.csv", mapped, ["parents", "staff"])
    assert people(plan) == [(2, "amelia.hughes@example.org", "Amelia", "Hughes", "parents"),
                            (3, "j.morgan@oakfield.example.org", "Julia", "Morgan", "parents+staff")]


# --- problems ------------------------------------------------------------------------------------

def test_bad_email_addresses_are_left_out_with_their_lines(settings: Settings) -> None:
    plan = load_audience(FIXTURES / "bad_email.csv", settings, ["parents"])
    assert [r.line for r in plan.recipients] == [2, 8]
    assert [(o.line, o.detail) for o in plan.problems()] == [
        (3, "not a valid email address: An email address must have an @-sign."),
        (4, "not a valid email address: "
            "An email address cannot have two periods in a row."),
        (5, "not a valid email address: "
            "The part after the @-sign is not valid. It should have a period."),
        (6, "the email address is missing"),
        (7, "not a valid email address: "
            "The email address contains invalid characters before the @-sign: SPACE."),
    ]
    assert figures(plan) == {"parents": (7, 2, {"invalid": 5})}


def test_missing_column_names_the_file_the_column_and_the_headers_found(settings: Settings) -> None:
    with pytest.raises(InputError) as caught:
        load_audience(FIXTURES / "missing_column.csv", settings, ["parents"])
    assert str(caught.value) == (
        f"{FIXTURES / 'missing_column.csv'}, line 1: the column 'lists' is missing. "
        "The first line has: 'Email', 'First name', 'Last name', 'Group'. "
        "If your export uses other headings, set them in school.toml (see docs/audiences.md)")


def test_names_with_line_breaks_or_control_characters_are_refused(settings: Settings) -> None:
    plan = load_audience(FIXTURES / "control_chars.csv", settings, ["parents"])
    assert [r.line for r in plan.recipients] == [2, 6]
    assert [(o.line, o.detail) for o in plan.problems()] == [
        (3, "the first name has a line break or other control character (names go into the email's headers)"),
        (5, "the last name has a line break or other control character (names go into the email's headers)"),
    ]


def test_unknown_list_names_are_named_with_the_known_ones(settings: Settings) -> None:
    plan = load_audience(FIXTURES / "unknown_list.csv", settings, ["parents", "staff"])
    assert people(plan) == [(5, "wei.chen@example.com", "Wei", "Chen", "staff")]
    assert left(plan) == [
        (2, "amelia.hughes@example.org", None, "invalid",
         "there is no list called 'parnets'. The lists in school.toml are: parents, staff"),
        (3, "tom.fletcher@example.com", "parents", "invalid",
         "there is no list called 'governors'. The lists in school.toml are: parents, staff"),
        (4, "grace.okafor@example.org", None, "invalid",
         "no list is named in the 'lists' column (use one or more of: parents, staff, separated by ';')"),
    ]


def test_a_missing_closing_quote_is_pointed_out(settings: Settings) -> None:
    plan = load_audience(FIXTURES / "missing_quote.csv", settings, ["parents"])
    assert people(plan) == [(5, "wei.chen@example.com", "Wei", "Chen", "parents")]
    assert [(o.line, o.detail) for o in plan.problems()] == [
        (2, "the first name has a line break or other control character (names go into the email's headers); "
            'this row runs on from line 2 to line 4: is a closing quote (") missing?'),
    ]


def test_a_quote_never_closed_in_a_big_file_is_one_clear_error(settings: Settings, tmp_path: Path) -> None:
    big = tmp_path / "audiences.csv"
    rows = "".join(f"person.{i}@example.org,Pat,Doe,parents\n" for i in range(5000))
    big.write_text(f'email,first_name,last_name,lists\nsam.roe@example.org,"Sam,Roe,parents\n{rows}',
                   encoding="utf-8")
    with pytest.raises(InputError) as caught:
        load_audience(big, settings, ["parents"])
    assert str(caught.value) == (f"{big}, line 2: a cell starting on this line runs on for 5,001 lines: "
                                 'is a closing quote (") missing?')


def test_lists_may_be_given_as_typed_after_to(settings: Settings) -> None:
    plan = load_audience(FIXTURES / "semicolon.csv", settings, "staff, parents")
    assert plan.lists == ("staff", "parents")


def test_bad_status_values(settings: Settings) -> None:
    plan = load_audience(FIXTURES / "bad_status.csv", settings, ["parents"])
    assert left(plan) == [
        (2, "amelia.hughes@example.org", "parents", "invalid",
         "the 'status' cell says 'maybe', which school.toml lists neither as subscribed "
         "('subscribed', 'yes', 'y', 'true', '1', 'opted in', 'opt in', blank) nor as unsubscribed "
         "('unsubscribed', 'no', 'n', 'false', '0', 'opted out', 'opt out')"),
        (3, "tom.fletcher@example.com", "parents", "unsubscribed", "marked unsubscribed"),
    ]
    assert figures(plan) == {"parents": (3, 1, {"unsubscribed": 1, "invalid": 1})}


def test_empty_file(settings: Settings) -> None:
    with pytest.raises(InputError, match="the file is empty: it needs a first line of column headings"):
        load_audience(FIXTURES / "empty.csv", settings, ["parents"])


def test_missing_file(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        load_audience(tmp_path / "audiences.csv", settings, ["parents"])
    assert str(caught.value) == (f"{tmp_path / 'audiences.csv'}: not found: mailroom needs the mailing lists "
                                 "in this file (or give another file with --audiences)")


def test_unreadable_bytes_point_at_the_line(settings: Settings) -> None:
    with pytest.raises(InputError) as caught:
        load_audience(FIXTURES / "undecodable.csv", settings, ["parents"])
    assert caught.value.line == 3
    assert "In Excel, use Save As and choose 'CSV UTF-8 (Comma delimited)'" in str(caught.value)


def test_unknown_list_in_to(settings: Settings) -> None:
    with pytest.raises(InputError) as caught:
        load_audience(ROOT / "audiences.csv", settings, ["parents", "parnets"])
    assert str(caught.value) == "there is no list called 'parnets'. The lists in school.toml are: parents, staff"


# --- one email per person ------------------------------------------------------------------------

def test_one_email_per_address_in_to_order(settings: Settings) -> None:
    plan = load_audience(FIXTURES / "duplicates.csv", settings, ["staff", "parents"])
    # Julia is on both lists (lines 2 and 4): one email, with both lists' sections, greeted as staff
    assert people(plan) == [(2, "j.morgan@oakfield.example.org", "Julia", "Morgan", "staff+parents"),
                            (3, "amelia.hughes@example.org", "Amelia", "Hughes", "parents")]
    assert [r.audience for r in plan.recipients] == ["staff", "parents"]
    assert left(plan) == [
        (5, "AMELIA.HUGHES@example.org", "parents", "duplicate", "already on the parents list on line 3"),
        (6, "tom.fletcher@example.com", "staff", "unsubscribed", "marked unsubscribed on line 7"),
        (6, "tom.fletcher@example.com", "parents", "unsubscribed", "marked unsubscribed on line 7"),
        (7, "Tom.Fletcher@example.com", "staff", "unsubscribed", "marked unsubscribed"),
        # Grace's second row is invalid, but its "unsubscribed" is still honoured.
        (8, "grace.okafor@example.org", "staff", "unsubscribed", "marked unsubscribed on line 9"),
        (9, "grace.okafor@example.org", None, "invalid",
         "there is no list called 'parnets'. The lists in school.toml are: parents, staff"),
    ]
    assert figures(plan) == {"staff": (4, 1, {"unsubscribed": 3}),
                             "parents": (4, 2, {"unsubscribed": 1, "duplicate": 1})}


def test_to_order_decides_the_version(settings: Settings) -> None:
    plan = load_audience(FIXTURES / "duplicates.csv", settings, ["parents", "staff"])
    assert [(r.email, r.audience, r.version) for r in plan.recipients] == [
        ("j.morgan@oakfield.example.org", "parents", "parents+staff"),
        ("amelia.hughes@example.org", "parents", "parents")]
    # The version's name follows the newsletter's order, whatever the --to order; the greeting follows --to.
    plan = load_audience(FIXTURES / "duplicates.csv", settings, ["staff", "parents"],
                         version_order=("parents", "staff"))
    assert [(r.audience, r.version) for r in plan.recipients] == [("staff", "parents+staff"), ("parents", "parents")]


def test_suppressed_addresses_are_left_out_with_the_reason(settings: Settings) -> None:
    plan = load_audience(FIXTURES / "duplicates.csv", settings, ["staff", "parents"],
                         suppressed={"j.morgan@oakfield.example.org": "bounced: mailbox does not exist"})
    assert [r.email for r in plan.recipients] == ["amelia.hughes@example.org"]
    assert [o for o in plan.left_out if o.reason == "suppressed"] == [
        LeftOut("j.morgan@oakfield.example.org", 2, "parents", "suppressed", "bounced: mailbox does not exist",
                "line 2"),
        LeftOut("J.Morgan@Oakfield.example.org", 4, "staff", "suppressed", "bounced: mailbox does not exist",
                "line 4"),
    ]


def test_only_chosen_lists_count(settings: Settings) -> None:
    plan = load_audience(FIXTURES / "duplicates.csv", settings, ["parents"])
    assert set(plan.summaries) == {"parents"}
    assert all(o.list_name in ("parents", None) for o in plan.left_out)
    assert [(r.email, r.audience) for r in plan.recipients] == [
        ("j.morgan@oakfield.example.org", "parents"), ("amelia.hughes@example.org", "parents")]



# --- recipients are read again from the file, not held in memory -----------------------------------

SAMPLES = ["duplicates.csv", "quoted.csv", "semicolon.csv", "windows1252.csv", "utf8_bom.csv", "blank_lines.csv",
           "stray_spaces.csv", "bad_email.csv", "unknown_list.csv", "bad_status.csv"]


@pytest.mark.parametrize("name", SAMPLES)
def test_recipients_can_be_read_again_and_again(settings: Settings, name: str) -> None:
    plan = load_audience(FIXTURES / name, settings, ["parents", "staff"])
    first = list(plan.recipients)
    assert first and list(plan.recipients) == first  # same people, same order, each time
    assert len(plan.recipients) == len(first)
    assert sum(s.receiving for s in plan.summaries.values()) == sum(len(r.lists) for r in first)


# --- the fast path agrees with email-validator ---------------------------------------------------

@pytest.mark.parametrize("address", [
    "a@example.org", "A.B-c+tag@Example.ORG", "x@123.com", "o'brien@example.com", "a@x.test", "a@localhost.localdomain",
    "a@-example.org", "a@example-.org", "a@exa_mple.org", "a..b@example.org", ".a@example.org", "a.@example.org",
    "a@example..org", "a@.example.org", "a@example.org.", "a@example", "a@10.0.0.1", "a@example.invalid",
    "x" * 64 + "@example.org", "x" * 65 + "@example.org", "a@" + "b" * 63 + ".org", "a@" + "b" * 64 + ".org",
    "a@" + ".".join(["c" * 60] * 4) + ".org", "é@example.org", "a@münchen.example", "a@xn--mnchen-3ya.example",
    "a@example.c", "a@example.123", "a b@example.org", "a@@example.org",
])
def test_fast_path_gives_email_validators_verdict(address: str) -> None:
    try:
        validate_email(address, check_deliverability=False)
        expected = None
    except EmailNotValidError as exc:
        expected = str(exc)
    assert _email_problem(address) == expected


# --- what the office sees ------------------------------------------------------------------------

def test_summary_left_out_and_problems_lines(settings: Settings) -> None:
    plan = load_audience(FIXTURES / "duplicates.csv", settings, ["staff", "parents"])
    assert format_audience_summary(plan) == [
        "staff: 4 on the list, 1 will receive, 3 left out (3 unsubscribed)",
        "parents: 4 on the list, 2 will receive, 2 left out (1 unsubscribed, 1 duplicate)",
        "not on any list because of a problem: 1 row",
        "In all, 2 people will receive one email each.",
        "People on several lists get one email with all their lists' sections. Per version: parents 1, "
        "staff+parents 1.",
    ]
    assert format_left_out(plan) == [
        "Left out: 6 entries on the lists get no email:",
        "  unsubscribed: 4 (staff 3, parents 1) - asked not to get the newsletter",
        "    line 6: tom.fletcher@example.com (staff, marked unsubscribed on line 7)",
        "    line 6: tom.fletcher@example.com (parents, marked unsubscribed on line 7)",
        "    ... and 2 more",
        "  duplicate: 1 (parents 1) - the same address again on a list: they get one email",
        "    line 5: AMELIA.HUGHES@example.org (parents, already on the parents list on line 3)",
        "  invalid: 1 (no list 1) - a problem on the row: see the problems below",
    ]
    assert format_problems(plan) == [
        "Problems in duplicates.csv (1; these are left out until they are fixed):",
        "  line 9: grace.okafor@example.org: there is no list called 'parnets'. "
        "The lists in school.toml are: parents, staff",
    ]


def test_problem_lines_show_control_characters_as_escapes(settings: Settings) -> None:
    plan = load_audience(FIXTURES / "bad_email.csv", settings, ["parents"])
    assert format_problems(plan)[4:] == [
        "  line 6: the email address is missing",
        "  line 7: olivia nowak@example.org: not a valid email address: "
        "The email address contains invalid characters before the @-sign: SPACE.",
    ]
    plan = load_audience(FIXTURES / "control_chars.csv", settings, ["parents"])
    assert format_problems(plan)[1] == ("  line 3: tom.fletcher@example.com: the first name has a line break or other "
                                        "control character (names go into the email's headers)")


@pytest.mark.parametrize(("cell", "safe"), [
    ("=1+1", "'=1+1"), ("+44 7700 900123", "'+44 7700 900123"), ("-2", "'-2"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\tx", "'\tx"), ("\rx", "'\rx"), ("a=b@example.org", "a=b@example.org"), ("", ""),
])
def test_excel_safe(cell: str, safe: str) -> None:
    assert excel_safe(cell) == safe


def run(args: list[str]):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_command_on_the_sample(project: Path) -> None:
    result = run(["audiences", "--to", "staff, parents"])
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "audiences.csv: 30 rows read, lists in this order: staff, parents\n"
        "\n"
        "staff: 10 on the list, 10 will receive\n"
        "parents: 23 on the list, 22 will receive, 1 left out (1 unsubscribed)\n"
        "In all, 29 people will receive one email each.\n"
        "People on several lists get one email with all their lists' sections. Per version: staff 7, parents 19, "
        "parents+staff 3.\n"
        "\n"
        "Left out: 1 entry on the lists gets no email:\n"
        "  unsubscribed: 1 (parents 1) - asked not to get the newsletter\n"
        "    line 9: daniel.evans@example.com (parents, marked unsubscribed)\n")


def test_command_with_problems_exits_2_and_writes_an_excel_safe_report(project: Path) -> None:
    shutil.copy(FIXTURES / "formula_cells.csv", project / "export.csv")
    result = run(["audiences", "--to", "parents", "--audiences", "export.csv", "--problems-csv", "problems.csv"])
    assert result.exit_code == 2
    assert result.stdout.splitlines()[-7:] == [
        "Problems in export.csv (4; these are left out until they are fixed):",
        '  line 2: =HYPERLINK("https://evil.example.com"): not a valid email address: '
        "An email address must have an @-sign.",
        "  line 3: +44 7700 900123: not a valid email address: An email address must have an @-sign.",
        "  line 4: -2+3: not a valid email address: An email address must have an @-sign.",
        "  line 5: @SUM(A1:A9): not a valid email address: There must be something before the @-sign.",
        "",
        "Wrote 4 problems to problems.csv",
    ]
    report = project / "problems.csv"
    assert report.read_bytes().startswith(b"\xef\xbb\xbf")
    with report.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows == [
        ["line", "email", "problem"],
        ["2", "'=HYPERLINK(\"https://evil.example.com\")",
         "not a valid email address: An email address must have an @-sign."],
        ["3", "'+44 7700 900123", "not a valid email address: An email address must have an @-sign."],
        ["4", "'-2+3", "not a valid email address: An email address must have an @-sign."],
        ["5", "'@SUM(A1:A9)", "not a valid email address: There must be something before the @-sign."],
    ]


def test_command_missing_column_is_one_message_and_exit_2(project: Path) -> None:
    shutil.copy(FIXTURES / "missing_column.csv", project / "audiences.csv")
    result = run(["audiences"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        "Error: audiences.csv, line 1: the column 'lists' is missing. "
        "The first line has: 'Email', 'First name', 'Last name', 'Group'. "
        "If your export uses other headings, set them in school.toml (see docs/audiences.md)\n")


def test_command_missing_file(project: Path) -> None:
    result = run(["audiences", "--audiences", "lists.csv"])
    assert result.exit_code == 2
    assert result.stderr == ("Error: lists.csv: not found: mailroom needs the mailing lists in this file "
                             "(or give another file with --audiences)\n")


def test_command_unknown_list(project: Path) -> None:
    result = run(["audiences", "--to", "parents,governors"])
    assert result.exit_code == 2
    assert result.stderr == ("Error: there is no list called 'governors'. "
                             "The lists in school.toml are: parents, staff\n")


def test_command_uses_the_column_names_in_school_toml(project: Path) -> None:
    toml = project / "school.toml"
    toml.write_text(toml.read_text(encoding="utf-8").replace('email = "email"', 'email = "Contact Email"')
                    .replace('first_name = "first_name"', 'first_name = "Forename"')
                    .replace('last_name = "last_name"', 'last_name = "Surname"')
                    .replace('lists = "lists"', 'lists = "Group"'), encoding="utf-8")
    shutil.copy(FIXTURES / "mapped_columns.csv", project / "audiences.csv")
    result = run(["audiences"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[:5] == [
        "audiences.csv: 2 rows read, lists in this order: parents, staff",
        "",
        "parents: 2 on the list, 2 will receive",
        "staff: 1 on the list, 1 will receive",
        "In all, 2 people will receive one email each.",
    ]


def test_python_m_mailroom_audiences_in_a_real_process(project: Path) -> None:
    shutil.copy(FIXTURES / "bad_status.csv", project / "audiences.csv")
    result = subprocess.run([sys.executable, "-m", "mailroom", "audiences", "--to", "parents"],
                            cwd=project, capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2
    assert result.stdout.splitlines()[-2:] == [
        "Problems in audiences.csv (1; these are left out until they are fixed):",
        "  line 2: amelia.hughes@example.org: the 'status' cell says 'maybe', which school.toml lists neither as "
        "subscribed ('subscribed', 'yes', 'y', 'true', '1', 'opted in', 'opt in', blank) nor as unsubscribed "
        "('unsubscribed', 'no', 'n', 'false', '0', 'opted out', 'opt out')",
    ]


def test_one_address_spelt_with_nfd_accents_upper_case_or_punycode_is_one_person(
        settings: Settings, tmp_path: Path) -> None:
    nfd = unicodedata.normalize("NFD", "zoë@bücher.example")
    path = tmp_path / "audiences.csv"
    path.write_text("email,first_name,last_name,lists,status\n"
                    "zoë@bücher.example,Zoë,Brandt,parents,\n"
                    f"{nfd},Zoë,Brandt,parents,\n"
                    "ZOË@BÜCHER.example,Zoë,Brandt,parents,\n"
                    "zoë@xn--bcher-kva.example,Zoë,Brandt,parents,\n"
                    "zoe@xn--bcher-kva.example,Zoe,Other,parents,\n", encoding="utf-8")
    plan = load_audience(path, settings, ["parents"])
    assert [(r.line, r.first_name) for r in plan.recipients] == [(2, "Zoë"), (6, "Zoe")]
    assert [(o.line, o.reason) for o in plan.left_out] == [(3, "duplicate"), (4, "duplicate"), (5, "duplicate")]


def test_a_suppression_of_the_punycode_spelling_leaves_out_the_unicode_one(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "audiences.csv"
    path.write_text("email,first_name,last_name,lists,status\nzoe@bücher.example,Zoe,Brandt,parents,\n",
                    encoding="utf-8")
    plan = load_audience(path, settings, ["parents"], suppressed={address_key("zoe@xn--bcher-kva.example"): "bounced"})
    assert list(plan.recipients) == []
    assert [(o.line, o.reason) for o in plan.left_out] == [(2, "suppressed")]


# --- the short path for the usual row gives the same plan as the full checks --------------------------

def _messy_rows(seed: int, count: int) -> list[list[str]]:
    """Rows as a school's export has them: mostly ordinary, with every kind of trouble mixed in."""
    import random

    rng = random.Random(seed)
    seen: list[str] = []
    rows = []
    for at in range(count):
        email = f"person{at}@example.org"
        kind = rng.random()
        if seen and kind < 0.12:  # the same person again, spelt another way
            email = rng.choice(seen)
            email = rng.choice([email.upper(), f" {email} ", email.replace("@example.org", "@EXAMPLE.org"), email])
        elif kind < 0.17:
            email = rng.choice(["not-an-address", "", "a@b", "zoë@example.org", "idn@bücher.example",
                                "x@example..org", "o'brien@example.org", "Mixed.Case@Example.ORG"])
        seen.append(email.strip())
        first = rng.choice(["Pat", "", "Zoë", "Seán", "Line\nBreak", "Tab\tbed", "  Sam  ", "Ann-Marie", "O'Neil"])
        last = rng.choice(["Example", "", "Ångström", "Okafor"])
        lists = rng.choice(["parents"] * 8 + ["staff", "Parents", "parents;staff", "staff, parents", "governors",
                                                "teachers", ""])
        status = rng.choice(["subscribed"] * 8 + ["unsubscribed", "", "maybe", "Subscribed", "yes"])
        language = rng.choice([""] * 6 + ["pl", "Polish", "ar", "Klingon", "PT-br"])
        rows.append([email, first, last, lists, status, language])
    return rows


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("chosen", [["parents"], ["parents", "staff"], ["staff"]])
@pytest.mark.parametrize("chunk_rows", [512, 2, 3])
def test_the_short_path_and_the_full_checks_give_the_same_plan(tmp_path, monkeypatch, settings: Settings,
                                                             seed: int, chosen: list[str], chunk_rows: int) -> None:
    """The usual row is taken in one step (``_Planner._clean_row_taker``), a chunk of usual rows at once
    (``_Planner._usual_rows_taker``); any other goes through every check. With the short paths switched off,
    600 messy rows must give exactly the same plan. Small chunks let some chunks of messy rows be usual ones."""
    import mailroom.audience.lists as lists_module

    path = tmp_path / "audiences.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "first_name", "last_name", "lists", "status", "language"])
        writer.writerows(_messy_rows(seed, 600))
    monkeypatch.setattr(lists_module, "_CHUNK_ROWS", chunk_rows)
    chunks_taken = []
    taker = lists_module._Planner._usual_rows_taker

    def counted(self, reading):
        take = taker(self, reading)

        def take_counted(rows):
            taken = take(rows)
            chunks_taken.append(taken)
            return taken
        return take_counted
    monkeypatch.setattr(lists_module._Planner, "_usual_rows_taker", counted)
    read = []  # what each way holds once the rows are read: every entry, packed, with its reading order
    plan = lists_module._Planner.plan

    def kept(self, **kwargs):
        read.append((held_entries(self.people), list(self.left_out), self.next_order()))
        return plan(self, **kwargs)
    monkeypatch.setattr(lists_module._Planner, "plan", kept)
    fast = load_audience(path, settings, chosen, {"person7@example.org": "bounced"})
    if chunk_rows < 4:  # some small chunks are usual rows: taken whole
        assert 5 < chunks_taken.count(True) < len(chunks_taken)
    monkeypatch.setattr(lists_module._Planner, "_usual_rows_taker", lambda self, reading: lambda rows: False)
    row_by_row = load_audience(path, settings, chosen, {"person7@example.org": "bounced"})
    assert read[0] == read[1]  # chunk or row by row, the same entries in the same reading order
    monkeypatch.setattr(lists_module._Planner, "_clean_row_taker", lambda self, reading: lambda raw: False)
    full = load_audience(path, settings, chosen, {"person7@example.org": "bounced"})
    for short in (fast, row_by_row):
        assert list(short.recipients) == list(full.recipients)
        assert short.left_out == full.left_out
        assert figures(short) == figures(full)
        assert short.rows == full.rows == 600
    assert len(fast.recipients) > 20 and {o.reason for o in fast.left_out} >= {"invalid", "unsubscribed"}
    if "parents" in chosen:
        assert len(fast.recipients) > 200 and "duplicate" in {o.reason for o in fast.left_out}


def held_entries(people: dict) -> dict:
    """What the planner holds for each person, with the entries of a chunk of usual rows (held together, one
    ``_HeldChunk`` for the chunk) taken out as each person's own packed entry."""
    import mailroom.audience.lists as lists_module

    return {key: found.entry(key) if isinstance(found, lists_module._HeldChunk) else found
            for key, found in people.items()}


def test_a_chunk_of_usual_rows_is_taken_whole_as_the_rows_one_by_one_would_be(tmp_path, monkeypatch,
                                                                              settings: Settings) -> None:
    """Capitalised addresses (held with their key), rows on a list this send did not choose (skipped, with
    no reading order of their own), a language column: chunks of such rows are taken whole, and what the
    planner holds afterwards is exactly what row by row gives."""
    import mailroom.audience.lists as lists_module

    path = tmp_path / "audiences.csv"
    rows = [[f"{'Pat' if at % 3 else 'pat'}{at}@Example.org" if at % 2 else f"sam{at}@example.org",
             f"Sam {at}", "O'Neil" if at % 4 else "", "staff" if at % 5 == 0 else " Parents ", "subscribed",
             "pl" if at % 7 == 0 else ""] for at in range(40)]
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "first_name", "last_name", "lists", "status", "language"])
        writer.writerows(rows)
    monkeypatch.setattr(lists_module, "_CHUNK_ROWS", 4)
    taken = []
    taker = lists_module._Planner._usual_rows_taker
    monkeypatch.setattr(lists_module._Planner, "_usual_rows_taker",
                        lambda self, reading: lambda rows: taken.append(taker(self, reading)(rows)) or taken[-1])
    held = []
    plan = lists_module._Planner.plan

    def kept(self, **kwargs):
        held.append((held_entries(self.people), self.next_order()))
        return plan(self, **kwargs)
    monkeypatch.setattr(lists_module._Planner, "plan", kept)
    chunked = load_audience(path, settings, ["parents"])
    monkeypatch.setattr(lists_module._Planner, "_usual_rows_taker", lambda self, reading: lambda rows: False)
    row_by_row = load_audience(path, settings, ["parents"])
    assert held[0] == held[1]
    assert list(chunked.recipients) == list(row_by_row.recipients)
    assert len(chunked.recipients) == 32
    assert (chunked.recipients[0].email, chunked.recipients[0].key) == ("Pat1@example.org", "pat1@example.org")
    assert (chunked.recipients[2].email, chunked.recipients[2].key) == ("pat3@example.org", "pat3@example.org")
    assert taken == [False] + [True] * 9  # every chunk of four but the first, where "subscribed" is first met
    assert {p.language for p in chunked.recipients} == {"", "pl"}


@pytest.mark.parametrize("chunk_rows", [512, 3])
def test_people_decided_a_chunk_at_once_are_decided_as_one_by_one(tmp_path, monkeypatch, chunk_rows: int) -> None:
    """``_Planner._plan_usual`` decides a chunk of usual people at once, asking SendGrid's address check of the
    whole chunk (``all_fine``): over messy rows (accented mailbox names SendGrid cannot take, IDN domains,
    capitals, unsubscribes, a suppression) the plan is the one made person by person, the check asked of each."""
    import mailroom.audience.lists as lists_module
    from mailroom.send.transports.sendgrid import SendGridTransport
    from tests.send_project import send_project, settings_for

    settings = settings_for(send_project(tmp_path / "school"), transport="sendgrid", host="http://127.0.0.1:9")
    check = SendGridTransport(settings).address_problem
    path = tmp_path / "audiences.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "first_name", "last_name", "lists", "status", "language"])
        writer.writerows(_messy_rows(5, 600))
        # usual rows, some of whom say on the staff list, further down, that they want nothing more
        writer.writerows([f"late{at}@example.org", "Pat", "Example", "parents", "subscribed", ""] for at in range(30))
        writer.writerows([f"late{at}@example.org", "Pat", "Example", "staff", "unsubscribed", ""]
                         for at in range(0, 30, 4))
    monkeypatch.setattr(lists_module, "_CHUNK_ROWS", chunk_rows)
    decided = []
    plan_usual = lists_module._Planner._plan_usual
    monkeypatch.setattr(lists_module._Planner, "_plan_usual",
                        lambda self, *args: decided.append(plan_usual(self, *args)) or decided[-1])
    suppressed = {f"person{at}@example.org": "bounced" for at in range(7, 600, 40)}
    at_once = load_audience(path, settings, ["parents"], suppressed, address_problem=check)
    if chunk_rows == 3:
        assert 10 < decided.count(True) < len(decided)
    each = load_audience(path, settings, ["parents"], suppressed, address_problem=lambda e: check(e))
    monkeypatch.setattr(lists_module._Planner, "_plan_usual", lambda self, *args: False)
    one_by_one = load_audience(path, settings, ["parents"], suppressed, address_problem=check)
    for plan in (at_once, each):
        assert list(plan.recipients) == list(one_by_one.recipients)
        assert plan.left_out == one_by_one.left_out
        assert figures(plan) == figures(one_by_one)
    assert {"cannot be sent this way", "suppressed", "unsubscribed"} <= {o.reason for o in one_by_one.left_out}
    assert "late4@example.org" not in {p.key for p in one_by_one.recipients}


@pytest.mark.parametrize("chunk_rows", [1, 3, 512])
def test_the_plan_drafted_a_chunk_at_once_is_each_person_as_read(monkeypatch, chunk_rows: int) -> None:
    """``PackedRecipients.planned`` makes a chunk of people at once: the same tuples, in order, as each person
    read back one by one gives, over several groups, addresses kept beside their key, and a person whose values
    cannot be packed (a NUL); each group's version is worked out once."""
    import mailroom.audience.lists as lists_module
    from mailroom.audience.lists import PackedRecipients, Recipient

    monkeypatch.setattr(lists_module, "_CHUNK_ROWS", chunk_rows)
    people = PackedRecipients()
    groups = [("parents", ("parents",), "parents", ""), ("staff", ("staff",), "staff", "pl"),
              ("parents", ("parents", "staff"), "parents-staff", "")]
    for at in range(20):
        audience, lists, version, language = groups[at % 3 if at % 4 else 0]
        email = f"Pat{at}@example.org" if at % 5 == 0 else f"pat{at}@example.org"
        first = "Nul\0Name" if at == 7 else f"Pat {at}"
        people.append(Recipient(email, email.lower(), first, "" if at % 6 else "Example", audience, at + 2, lists,
                                version, language))
    asked = []

    def version_of(version: str, language: str) -> str:
        asked.append((version, language))
        return f"{version}-{language or 'en'}"

    expected = [(p.key, p.email, p.first_name, p.last_name, p.audience, f"{p.version}-{p.language or 'en'}",
                 p.language) for p in people]
    assert [row for columns in people.planned(version_of) for row in zip(*columns, strict=True)] == expected
    # once a group, and once more for the person kept whole (as before)
    assert sorted(asked) == [("parents", ""), ("parents-staff", ""), ("staff", "pl"), ("staff", "pl")]
    assert expected[7][2] == "Nul\0Name" and expected[5][:2] == ("pat5@example.org", "Pat5@example.org")


def test_long_addresses_get_the_same_verdict_in_a_chunk_as_alone(tmp_path, monkeypatch, settings: Settings) -> None:
    """Long addresses (a local part of 64 characters or more, 262 characters in all, a domain label of 120):
    a chunk holding one is read row by row, and every verdict is the full checks' one."""
    import mailroom.audience.lists as lists_module

    path = tmp_path / "audiences.csv"
    emails = ["pat@example.org", "sam@example.org", "a" * 64 + "@example.org", "b" * 250 + "@example.org",
              "c" * 53 + "@example.org", "d@" + "e" * 60 + ".org", "f" * 54 + "@example.org",
              "g" * 64 + "@" + "h" * 120 + ".org"]
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "first_name", "last_name", "lists", "status"])
        writer.writerows([email, "Pat", "Example", "parents", "subscribed"] for email in emails)
    monkeypatch.setattr(lists_module, "_CHUNK_ROWS", 2)
    fast = load_audience(path, settings, ["parents"])
    monkeypatch.setattr(lists_module._Planner, "_usual_rows_taker", lambda self, reading: lambda rows: False)
    monkeypatch.setattr(lists_module._Planner, "_clean_row_taker", lambda self, reading: lambda raw: False)
    full = load_audience(path, settings, ["parents"])
    assert list(fast.recipients) == list(full.recipients) and fast.left_out == full.left_out
    # too long as a whole, and a domain label of 120 characters
    assert {o.email for o in full.left_out if o.reason == "invalid"} == {emails[3], emails[7]}
    assert len(full.recipients) == 6


def test_a_chunks_addresses_are_matched_at_once_exactly_as_one_by_one() -> None:
    """The chunk's address regex (possessive: it never gives characters back) takes a chunk's addresses joined by
    line breaks exactly when the one-address regex takes each of them, over random strings of the characters
    that decide it (dots where a local part may not have them, @, spaces, quotes, accents, line breaks)."""
    import random

    from mailroom.audience.lists import _SIMPLE_ADDRESS, _SIMPLE_ADDRESSES

    chance = random.Random(5)
    alphabet = "aaaaaaaZ9.._+-'@ \"é\t"

    def part() -> str:
        return "".join(chance.choice(alphabet) for _ in range(chance.randint(0, 6)))

    lines = [part() + "@" + part() if chance.random() < 0.8 else part() for _ in range(30_000)]
    lines += ["pat@example.org", "pat.o'neil@mail.example.org", "p..q@example.org", ".p@example.org", "p.@example.org"]
    assert sum(1 for line in lines if _SIMPLE_ADDRESS.fullmatch(line)) > 1_000
    for line in lines:
        assert bool(_SIMPLE_ADDRESSES.fullmatch(line)) == bool(_SIMPLE_ADDRESS.fullmatch(line)), line
    for start in range(0, len(lines) - 3, 3):
        chunk = lines[start:start + 3]
        assert (bool(_SIMPLE_ADDRESSES.fullmatch("\n".join(chunk)))
                == all(_SIMPLE_ADDRESS.fullmatch(line) for line in chunk)), chunk
