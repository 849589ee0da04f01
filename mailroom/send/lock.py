"""An operating-system lock on a file, taken at once or refused: what keeps to one send per ledger.

The lock is the one ``filelock`` takes, so the two see each other's: ``flock`` on Linux and macOS, one
locked byte (``msvcrt.locking``) on Windows. The operating system lets it go when the holder's process
ends however it ends (killed, crashed), so a dead send never blocks the next one; the lock file itself
is left where it is, empty and harmless. It is written out here rather than imported from ``filelock``
because importing that package cost every send more start-up work than everything else the lock does.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from types import TracebackType

# What taking a lock someone else holds fails with: EWOULDBLOCK from flock, EACCES from msvcrt.locking.
_HELD_ERRORS = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES})


class LockHeld(Exception):
    """Another holder (another process, or another lock in this one) has the lock on the file."""


class FileLock:
    """The lock on ``path`` (the file is made if missing), held from construction until ``release``.

    ``LockHeld`` at once if it is held elsewhere; any other ``OSError`` (the folder cannot be written) as it is.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._descriptor: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock(self._descriptor)
        except OSError as exc:
            os.close(self._descriptor)
            self._descriptor = None
            if exc.errno in _HELD_ERRORS:
                raise LockHeld(str(path)) from None
            raise

    def release(self) -> None:
        """Let the lock go (a second call does nothing)."""
        if self._descriptor is not None:
            descriptor, self._descriptor = self._descriptor, None
            try:
                _unlock(descriptor)
            finally:
                os.close(descriptor)

    def __enter__(self) -> FileLock:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.release()


# The platform's module is imported where it is used, so this module imports anywhere (tests/test_portability.py).
def _lock(descriptor: int) -> None:
    if sys.platform == "win32":  # pragma: no cover - the suite runs on Linux
        import msvcrt

        msvcrt.locking(descriptor, msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _unlock(descriptor: int) -> None:
    if sys.platform == "win32":  # pragma: no cover
        import msvcrt

        msvcrt.locking(descriptor, msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(descriptor, fcntl.LOCK_UN)
