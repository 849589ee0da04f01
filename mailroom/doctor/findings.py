"""What the doctor reports: one finding per thing checked, in words for the office and for IT."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Level(enum.IntEnum):
    OK = 0
    NOTE = 1  # worth knowing; nothing to change
    WARNING = 2  # sending works, but something should be changed (mail may be junked, or spread over days)
    PROBLEM = 3  # sending would fail, or big mailbox providers would refuse the newsletter


@dataclass(frozen=True)
class Finding:
    area: str  # "Settings", "Connection", "SPF"...
    level: Level
    summary: str  # what was found, plainly
    todo: str = ""  # what the office should do (ask IT, change a setting)
    it: str = ""  # the precise change, for whoever manages the school's domain or mail


def blocking(findings: list[Finding]) -> bool:
    """True when something would stop the newsletter going out (the doctor then exits non-zero)."""
    return any(f.level is Level.PROBLEM for f in findings)
