"""The errors mailroom raises.

The library raises these; only ``mailroom.cli`` turns them into a message and an exit status,
so every message a user sees is decided in one place. Each error carries what the user needs:
the file and line at fault, or the provider's own answer.
"""

from __future__ import annotations

from pathlib import Path

from mailroom.secrets import mask

# Exit statuses (docs/architecture.md, "Exit statuses").
EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_REFUSED = 3
EXIT_INTERRUPTED = 130


class MailroomError(Exception):
    """Root of every error meant for the person at the keyboard."""

    exit_status = EXIT_BAD_INPUT

    def __init__(self, message: str) -> None:
        message = mask(message)  # a message may quote a value that turns out to be a secret
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InputError(MailroomError):
    """Something in a file the user wrote is wrong; points at the file and line."""

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


class ConfigError(InputError):
    """school.toml, .env or the environment is wrong. Kept apart so nothing swallows it."""


class RefusedForSafety(MailroomError):
    """The tool will not go on without a decision from the user (exit 3)."""

    exit_status = EXIT_REFUSED


class TransportError(MailroomError):
    """A transport could not hand a message over. ``retryable`` says whether trying again may help."""

    exit_status = EXIT_SOME_FAILED

    def __init__(self, message: str, *, retryable: bool, status: int | None = None,
                 retry_after: float | None = None, uncertain: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after
        # The request may have been accepted even though we saw no answer (timeout, dropped connection).
        self.uncertain = uncertain
