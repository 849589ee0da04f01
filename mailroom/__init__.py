"""mailroom: compose and send a school newsletter."""

__version__ = "0.1.0"
