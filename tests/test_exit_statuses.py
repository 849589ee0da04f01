"""The one error boundary, end to end: python send.py as the office runs it, each failure one plain message
naming the file and what to do, the right exit status, never a traceback, and nothing sent."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import filelock
import pytest

from mailroom.errors import ExitStatus, LedgerError
from mailroom.send.ledger import Ledger
from tests.send_project import SAMPLE, environ, send_project, send_py, write_audiences

NEWSLETTER = f"newsletters/{SAMPLE}"
LIVE = (NEWSLETTER, "--to", "parents", "--yes", "--untested")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = send_project(tmp_path / "school")
    write_audiences(folder / "audiences.csv", [("amelia.hughes@example.org", "Amelia", "Hughes", "parents")])
    return folder


def nothing_sent(folder: Path) -> bool:
    return not (folder / "outbox").exists()


def assert_one_message(result: object, message: str, status: ExitStatus) -> None:
    assert result.returncode == status, result.stderr  # type: ignore[attr-defined]
    assert result.stderr == message + "\n"  # type: ignore[attr-defined]
    assert "Traceback" not in result.stdout + result.stderr  # type: ignore[attr-defined]


def test_a_damaged_ledger_names_the_file_and_sends_nothing(project: Path) -> None:
    ledger = project / "mailroom.sqlite3"
    ledger.write_bytes(b"this is not a database, it was overwritten by something else" * 100)
    result = send_py(project, *LIVE, env=environ(project))
    assert_one_message(result, f"Error: {ledger}: this file is damaged or is not mailroom's send ledger, so "
                       "mailroom cannot tell who already has which newsletter. Nothing was sent. Restore it from "
                       "a backup, or move it aside to start a new ledger (then nobody counts as sent yet)",
                       ExitStatus.BAD_INPUT)
    assert nothing_sent(project)


def test_a_ledger_that_cannot_be_opened_names_the_file(project: Path) -> None:
    folder = project / "ledger-is-a-folder"
    folder.mkdir()
    result = send_py(project, *LIVE, env={**environ(project), "MAILROOM_DB": str(folder)})
    assert_one_message(result, f"Error: {folder}: mailroom cannot read and write the send ledger here (unable to "
                       "open database file). Nothing was sent. Check that the folder exists and that you may "
                       "write to it, or set MAILROOM_DB to another place", ExitStatus.BAD_INPUT)
    assert nothing_sent(project)


def test_a_ledger_location_that_cannot_be_written_names_the_file(project: Path) -> None:
    # A path under a file, not a folder: no one (not even an administrator) can create the ledger there.
    db = project / "audiences.csv" / "mailroom.sqlite3"
    result = send_py(project, *LIVE, env={**environ(project), "MAILROOM_DB": str(db)})
    assert_one_message(result, f"Error: {db}: mailroom cannot read and write the send ledger here (part of this "
                       "path is a file, not a folder). Nothing was sent. Check that the folder exists and that "
                       "you may write to it, or set MAILROOM_DB to another place", ExitStatus.BAD_INPUT)
    assert nothing_sent(project)


def test_a_ledger_in_use_by_another_send_is_refused(project: Path) -> None:
    with filelock.FileLock(str(project / "mailroom.sqlite3") + ".send-lock", timeout=0):
        result = send_py(project, *LIVE, env=environ(project))
    assert_one_message(result, "Error: another send is running right now; wait for it to finish, then try again",
                       ExitStatus.REFUSED_FOR_SAFETY)
    assert nothing_sent(project)


def test_a_ledger_locked_by_another_program_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    db = tmp_path / "mailroom.sqlite3"
    Ledger(db).close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")  # e.g. a database viewer in the middle of an edit
    try:
        with pytest.raises(LedgerError) as caught:
            Ledger(db, busy_timeout=0.05)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert str(caught.value) == (
        f"{db}: another program is using the send ledger right now (is it open in a database viewer, or is "
        "another mailroom command still running?). Close it and try again; nothing was sent")
    assert caught.value.exit_status == ExitStatus.BAD_INPUT


def test_a_folder_name_is_printed_as_typed_even_when_it_looks_like_an_emoji_code(project: Path) -> None:
    result = send_py(project, "newsletters/week:school:", "--to", "parents", env=environ(project))
    assert result.returncode == ExitStatus.BAD_INPUT
    assert "newsletters/week:school:/build/manifest.json: this newsletter has not been composed" in result.stderr


def test_audiences_given_as_a_folder(project: Path) -> None:
    folder = project / "lists"
    folder.mkdir()
    result = send_py(project, *LIVE, "--audiences", "lists", env=environ(project))
    assert_one_message(result, "Error: lists: this is a folder, not a mailing lists file; give the file itself "
                       "(e.g. --audiences audiences.csv)", ExitStatus.BAD_INPUT)
    assert nothing_sent(project)


def test_audiences_given_as_a_named_pipe_does_not_hang(project: Path) -> None:
    os.mkfifo(project / "pipe.csv")
    result = send_py(project, *LIVE, "--audiences", "pipe.csv", env=environ(project), timeout=30)
    assert_one_message(result, "Error: pipe.csv: this is not an ordinary file (it may be a pipe or a device); save "
                       "the mailing lists as a CSV or .xlsx file and give that file with --audiences",
                       ExitStatus.BAD_INPUT)
    assert nothing_sent(project)


def test_audiences_that_cannot_be_read(project: Path) -> None:
    # /proc/self/mem opens but every read fails (EIO), as a file on a failing disk or a dropped network drive does
    result = send_py(project, *LIVE, "--audiences", "/proc/self/mem", env=environ(project))
    assert_one_message(result, "Error: /proc/self/mem: mailroom could not read this file (Input/output error); "
                       "check that it opens, or save a copy somewhere else and give that one with --audiences",
                       ExitStatus.BAD_INPUT)
    assert nothing_sent(project)


def test_an_unexpected_problem_is_one_sentence_with_status_70_and_traceback_on_request(project: Path) -> None:
    # A fault inside mailroom (here: the transport module fails to import) must not show a traceback by default.
    (project / "sitecustomize.py").write_text(
        "import sys\nsys.modules['mailroom.send.transports.outbox'] = None  # any import of it fails\n")
    env = {**environ(project), "PYTHONPATH": str(project)}
    result = send_py(project, *LIVE, env=env)
    assert_one_message(result, "mailroom hit an unexpected problem: ModuleNotFoundError: import of "
                       "mailroom.send.transports.outbox halted; None in sys.modules; nothing more was sent; run "
                       "again with --traceback and report it", ExitStatus.INTERNAL_ERROR)
    shown = send_py(project, *LIVE, "--traceback", env=env)
    assert shown.returncode == ExitStatus.INTERNAL_ERROR
    assert shown.stderr.startswith("Traceback (most recent call last):")
    assert shown.stderr.endswith("mailroom hit an unexpected problem: ModuleNotFoundError: import of "
                                 "mailroom.send.transports.outbox halted; None in sys.modules; nothing more was "
                                 "sent; run again with --traceback and report it\n")
    assert nothing_sent(project)


def test_exit_statuses_keep_their_documented_numbers() -> None:
    assert {status.name: int(status) for status in ExitStatus} == {
        "DONE": 0, "SOME_NOT_SENT": 1, "BAD_INPUT": 2, "REFUSED_FOR_SAFETY": 3, "INTERNAL_ERROR": 70,
        "INTERRUPTED": 130}
