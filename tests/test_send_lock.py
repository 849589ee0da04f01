"""The send lock's file lock (mailroom/send/lock.py) on its own; the send's use of it, across processes and a
killed holder, is tested in test_send_ledger.py and test_exit_statuses.py (there against ``filelock``'s lock)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailroom.send.lock import FileLock, LockHeld


def test_a_second_holder_is_refused_until_the_first_lets_go(tmp_path: Path) -> None:
    path = tmp_path / "ledger.send-lock"
    first = FileLock(path)
    with pytest.raises(LockHeld):
        FileLock(path)
    first.release()
    first.release()  # a second release does nothing
    with FileLock(path), pytest.raises(LockHeld):
        FileLock(path)
    FileLock(path).release()
    assert path.exists()  # left in place: removing it could let two holders lock two different files


def test_a_place_where_no_file_can_be_made_is_an_os_error_not_a_held_lock(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    with pytest.raises(OSError) as caught:
        FileLock(tmp_path / "a-file" / "ledger.send-lock")
    assert not isinstance(caught.value, LockHeld)
