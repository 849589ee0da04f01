"""Dot-stuffing for SMTP DATA: a line that starts with "." gets another, wherever it is, and nothing else changes."""

from __future__ import annotations

import re

import pytest

from mailroom.send.transports.smtp import dot_stuff


@pytest.mark.parametrize(("data", "expected"), [
    (b".starts the message\r\n", b"..starts the message\r\n"),
    (b"a\r\n.\r\nb\r\n", b"a\r\n..\r\nb\r\n"),  # a lone dot would otherwise end the DATA
    (b"a\r\n..two\r\n", b"a\r\n...two\r\n"),
    (b"a\n.bare line feed\n", b"a\n..bare line feed\n"),
    (b"no dot at a line start. here.\r\n", b"no dot at a line start. here.\r\n"),
    (b"", b""),
])
def test_every_line_starting_with_a_dot_gets_one_more(data: bytes, expected: bytes) -> None:
    assert dot_stuff(data) == expected
    assert dot_stuff(data) == re.sub(rb"(?m)^\.", b"..", data)
