import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailroom.addresses import address_key
from mailroom.cli import main
from mailroom.errors import InputError
from mailroom.events.intake import import_events_file, parse_events, read_events_file, suppression_reason
from mailroom.events.suppressions import add_suppression, list_suppressions, suppressed_addresses
from tests.sendgrid_events import event

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def project(tmp_path, monkeypatch):
    shutil.copy(ROOT / "school.toml", tmp_path / "school.toml")
    shutil.copytree(ROOT / "assets", tmp_path / "assets")
    monkeypatch.chdir(tmp_path)
    for name in ("MAILROOM_TRANSPORT", "MAILROOM_DB", "SENDGRID_WEBHOOK_PUBLIC_KEY"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def write_events(path, items):
    path.write_text(json.dumps(items, indent=2), encoding="utf-8")
    return path


def test_import_stores_and_a_second_import_changes_nothing(tmp_path):
    db = tmp_path / "mailroom.sqlite3"
    file = write_events(tmp_path / "events.json", [
        event("delivered", "ev-1"), event("spamreport", "ev-2", "dan@example.com", recipient_id="r-dan")])
    first = import_events_file(db, file)
    again = import_events_file(db, file)
    assert (first.stored, first.repeated, first.suppressed) == (2, 0, 1)
    assert (again.stored, again.repeated, again.suppressed) == (0, 2, 0)
    assert suppressed_addresses(db) == {"dan@example.com": "marked the email as spam on 2024-11-08"}


@pytest.mark.parametrize(("kind", "extra", "expected"), [
    ("bounce", {"type": "bounce"}, "bounced"),
    ("bounce", {"type": "blocked"}, None),
    ("dropped", {"reason": "Bounced Address"}, "bounced earlier, so SendGrid dropped the email"),
    ("dropped", {"reason": "Invalid"}, "address not valid, so SendGrid dropped the email"),
    ("dropped", {"reason": "Spam Reporting Address"}, "marked an email as spam, so SendGrid dropped the email"),
    ("dropped", {"reason": "Invalid SMTPAPI header"}, None),
    ("dropped", {"reason": "Unsubscribed Address"}, None),
    ("spamreport", {}, "marked the email as spam"),
    ("unsubscribe", {}, "unsubscribed"),
    ("group_unsubscribe", {"asm_group_id": 7}, "unsubscribed"),
    ("group_resubscribe", {"asm_group_id": 7}, None),
    ("deferred", {}, None),
    ("delivered", {}, None),
])
def test_which_events_suppress(kind, extra, expected):
    parsed = parse_events(json.dumps([event(kind, "ev-1", **extra)]))
    [one] = parsed.events
    assert suppression_reason(one) == expected


def test_a_later_group_resubscribe_lifts_a_group_unsubscribe_but_only_notes_a_spam_report(tmp_path):
    db = tmp_path / "mailroom.sqlite3"
    file = write_events(tmp_path / "events.json", [
        event("group_resubscribe", "ev-2", timestamp=1_731_070_000),
        event("group_unsubscribe", "ev-1", timestamp=1_731_060_000),
        event("spamreport", "ev-3", "bob@example.com", timestamp=1_731_060_000),
        event("group_resubscribe", "ev-4", "bob@example.com", timestamp=1_731_070_000),
    ])
    result = import_events_file(db, file)
    assert (result.suppressed, result.resubscribed, result.resubscribe_requests) == (1, 0, 1)
    assert suppressed_addresses(db) == {"bob@example.com": "marked the email as spam on 2024-11-08"}
    [row] = list_suppressions(db)
    assert row.resubscribed_at is not None  # shown to the office, who decide


def test_a_problem_anywhere_names_the_file_and_line_and_imports_nothing(tmp_path):
    db = tmp_path / "mailroom.sqlite3"
    items = [event("delivered", "ev-1"), event("open", "ev-2")]
    del items[1]["sg_event_id"]
    file = write_events(tmp_path / "events.json", items)
    with pytest.raises(InputError) as exc:
        import_events_file(db, file)
    line = file.read_text().splitlines().index("  {", 2) + 1  # where the second event starts
    assert str(exc.value) == (f"{file}, line {line}: event 2 (open) has no \"sg_event_id\", so repeats "
                              "could not be recognised; nothing was imported")
    assert not db.exists()


def test_bad_json_names_file_line_and_column(tmp_path):
    file = tmp_path / "events.json"
    file.write_text('[\n  {"event": "delivered",\n   "sg_event_id": "ev-1" "timestamp": 1}\n]\n')
    with pytest.raises(InputError) as exc:
        read_events_file(file)
    assert str(exc.value) == f"{file}, line 3: this is not valid JSON: Expecting ',' delimiter (column 26)"


def test_a_single_object_instead_of_a_list_is_explained(tmp_path):
    file = tmp_path / "events.json"
    file.write_text('{"event": "delivered"}')
    with pytest.raises(InputError) as exc:
        read_events_file(file)
    assert str(exc.value) == (f"{file}, line 1: expected a list of events in [ ... ], "
                              "but found a single { ... } object (column 1)")


def test_unknown_event_types_are_skipped_not_refused():
    parsed = parse_events(json.dumps([event("machine_opened", "ev-1"), event("open", "ev-2")]))
    assert [e.sg_event_id for e in parsed.events] == ["ev-2"]
    assert parsed.unknown_types == 1
    assert parsed.problems == []


def test_cli_import_reports_counts(project):
    write_events(project / "events.json", [event("bounce", "ev-1", type="bounce"), event("delivered", "ev-2")])
    result = CliRunner().invoke(main, ["events", "import", "events.json"])
    assert result.exit_code == 0, result.output
    assert "Imported 2 new event(s) from events.json; 0 were already stored." in result.output
    assert "1 address(es) added to the suppression list" in result.output


def test_cli_import_of_bad_json_exits_2_with_the_place(project):
    (project / "events.json").write_text("[\n  {\"event\": }\n]")
    result = CliRunner().invoke(main, ["events", "import", "events.json"])
    assert result.exit_code == 2
    assert "events.json, line 2: this is not valid JSON: Expecting value (column 13)" in result.output


def test_cli_lists_and_takes_back_suppressions(project):
    db = project / "mailroom.sqlite3"
    add_suppression(db, "ada.parent@example.org", "bounced", "webhook")
    add_suppression(db, "bob.carer@example.com", "unsubscribed", "import")
    runner = CliRunner()
    listed = runner.invoke(main, ["suppressions"])
    assert listed.exit_code == 0, listed.output
    assert "ada.parent@example.org" in listed.output and "bob.carer@example.com" in listed.output
    assert "2 address(es) suppressed." in listed.output

    removed = runner.invoke(main, ["suppressions", "remove", "ADA.parent@example.org",
                                   "--note", "New mailbox confirmed by phone"])
    assert removed.exit_code == 0, removed.output
    assert "ada.parent@example.org is no longer suppressed" in removed.output
    assert set(suppressed_addresses(db)) == {"bob.carer@example.com"}

    history = runner.invoke(main, ["suppressions", "--all"])
    assert ("Taken back: ada.parent@example.org (bounced on "
            in history.output)
    assert "by the office: New mailbox confirmed by phone" in history.output

    unknown = runner.invoke(main, ["suppressions", "remove", "eve@example.org", "--note", "x"])
    assert unknown.exit_code == 2
    assert "eve@example.org is not on the suppression list" in unknown.output


def test_cli_serve_without_a_key_says_what_to_do(project):
    result = CliRunner().invoke(main, ["events", "serve", "--port", "0"])
    assert result.exit_code == 2
    assert "SENDGRID_WEBHOOK_PUBLIC_KEY is not set" in result.output


@pytest.mark.parametrize(("change", "message"), [
    ({"email": "parent@"}, 'event 1 (bounce) has no "email" address'),
    ({"email": None}, 'event 1 (bounce) has no "email" address'),
    ({"timestamp": 10**20}, 'event 1 (bounce) has no "timestamp" (seconds since 1970)'),
    ({"timestamp": "yesterday"}, 'event 1 (bounce) has no "timestamp" (seconds since 1970)'),
    ({"audience": 3}, 'event 1 (bounce): "audience" should be text'),
    ({"event": None}, 'event 1 has no "event" type'),
])
def test_unusable_events_are_problems_not_crashes(change, message):
    item = event("bounce", "ev-1", type="bounce")
    item.update(change)
    parsed = parse_events(json.dumps([item]))
    assert parsed.events == []
    assert [p.message for p in parsed.problems] == [message]


def test_missing_file_or_a_folder_is_named(tmp_path):
    with pytest.raises(InputError) as missing:
        read_events_file(tmp_path / "events.json")
    assert str(missing.value) == f"{tmp_path / 'events.json'}: no such file"
    with pytest.raises(InputError) as folder:
        read_events_file(tmp_path)
    assert str(folder.value) == f"{tmp_path}: this is a folder; give the JSON file of events"


@pytest.mark.parametrize("text", [
    "[" * 100_000,
    '[{"event": "open", "deep": ' + "[" * 5_000 + "]" * 5_000 + "}]",
    '[\n  {"event": "open", "n": ' + "9" * 5_000 + "}\n]",
])
def test_cli_import_of_deeply_nested_or_huge_json_exits_2_without_a_traceback(project, text):
    (project / "events.json").write_text(text)
    result = CliRunner().invoke(main, ["events", "import", "events.json"])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "events.json, line " in result.output and "Traceback" not in result.output
    assert "nested more than 32 levels deep" in result.output or "a number in it is too long" in result.output


def test_events_for_every_spelling_of_an_idn_address_make_one_suppression(tmp_path):
    """SendGrid reports the punycode domain; the office's list has the accented one. They are one mailbox."""
    db = tmp_path / "mailroom.sqlite3"
    file = write_events(tmp_path / "events.json", [
        event("bounce", "ev-1", "zoe@xn--bcher-kva.example", type="bounce"),
        event("spamreport", "ev-2", "Zoe@BÜCHER.example"),
    ])
    result = import_events_file(db, file)
    assert (result.stored, result.suppressed) == (2, 1)
    assert suppressed_addresses(db) == {"zoe@xn--bcher-kva.example": "bounced on 2024-11-08"}
    assert address_key("zoe@bücher.example") in suppressed_addresses(db)
