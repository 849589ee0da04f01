"""The errors mailroom raises, and the exit status each one ends a command with.

The library raises these; only ``mailroom.cli`` turns them into a message and an exit status,
so every message a user sees is decided in one place. Each error carries what the user needs:
the file and line at fault, or the provider's own answer.
"""

from __future__ import annotations

import enum
from pathlib import Path

from mailroom.secrets import mask


class ExitStatus(enum.IntEnum):
    """How a command ended, for scripts and scheduled tasks (docs/architecture.md, "Exit statuses")."""

    DONE = 0
    SOME_NOT_SENT = 1  # the send ran, but some people could not be sent to; a rerun retries them
    BAD_INPUT = 2  # a file, an option or a setting is wrong; nothing was sent
    REFUSED_FOR_SAFETY = 3  # mailroom needs a decision from a person before it goes on
    INTERNAL_ERROR = 70  # a fault in mailroom itself (EX_SOFTWARE in sysexits.h)
    INTERRUPTED = 130  # stopped with Ctrl-C (128 + SIGINT, as shells report it)


class MailroomError(Exception):
    """Root of every error meant for the person at the keyboard."""

    exit_status = ExitStatus.BAD_INPUT

    def __init__(self, message: str) -> None:
        message = mask(message)  # a message may quote a value that turns out to be a secret
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class FileProblem(MailroomError):
    """An error about one file (and perhaps one line of it): the message starts with where."""

    def __init__(self, message: str, path: Path | str | None = None, line: int | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.line = line
        super().__init__(message)

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = str(self.path)
            if self.line is not None:
                where += f", line {self.line}"
            where += ": "
        return where + self.message


class InputError(FileProblem):
    """Something in a file the user wrote is wrong; points at the file and line."""


class ConfigError(FileProblem):
    """school.toml, .env or the environment is wrong. Kept apart so nothing swallows it.

    A sibling of ``InputError``, not a kind of it: code that tolerates bad content (``except InputError``,
    e.g. a report working without a build) must never hide broken settings.
    """


class LedgerError(FileProblem):
    """The ledger file (mailroom.sqlite3) cannot be used: damaged, locked by another program, or unreadable.

    Nothing is sent while the ledger cannot record it, so this always stops a send before it starts.
    """


class RefusedForSafety(MailroomError):
    """The tool will not go on without a decision from the user (exit 3)."""

    exit_status = ExitStatus.REFUSED_FOR_SAFETY


class BuildChanged(FileProblem):
    """A file of the build is not what compose wrote (edited, replaced or half-written); exit 3.

    The path is the file at fault; the remedy is always to compose again.
    """

    exit_status = ExitStatus.REFUSED_FOR_SAFETY


class Interrupted(MailroomError):
    """The person pressed Ctrl-C; what was sent before is recorded (exit 130)."""

    exit_status = ExitStatus.INTERRUPTED


class TransportError(MailroomError):
    """A transport could not hand a message over. ``retryable`` says whether trying again may help."""

    exit_status = ExitStatus.SOME_NOT_SENT

    def __init__(self, message: str, *, retryable: bool, status: int | None = None,
                 retry_after: float | None = None, uncertain: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after
        # The request may have been accepted even though we saw no answer (timeout, dropped connection).
        self.uncertain = uncertain
