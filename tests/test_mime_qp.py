"""The outbox/SMTP body encoded once per version decodes to exactly each person's part, in lines RFC 2045 allows."""

from __future__ import annotations

import quopri

import pytest

from mailroom.send.personalize import html_values, personalize, recipient_values
from mailroom.send.transports.mime import _segments, _stamp

TEMPLATE = ("<p>%%greeting%%,</p>\n<p>" + "Long line of newsletter text " * 8 + "%%first_name%%%%last_name%%</p>\n"
            '<a href="%%unsubscribe_url%%">Unsubscribe</a> id %%recipient_id%% ends with a space \n'
            "Ünïcode — and = signs, tabs\there ")


@pytest.mark.parametrize("first", ["Amelia", "", "Zoë & <Seán>", "x" * 200, "Ann Marie "])
@pytest.mark.parametrize("is_html", [True, False])
def test_decodes_to_the_personalised_part_with_short_crlf_lines(first: str, is_html: bool) -> None:
    values = recipient_values(first_name=first, last_name="Ó Conchúir", default_greeting="Dear parent",
                              unsubscribe_url="https://oakfield.example.org/unsubscribe?id=ab12&x=1",
                              recipient_id="ab12cd34ef56ab78")
    encoded = _stamp(_segments(TEMPLATE), html_values(values) if is_html else values)
    expected = personalize(TEMPLATE, values, is_html=is_html).replace("\n", "\r\n")
    assert quopri.decodestring(encoded).decode("utf-8") == expected
    lines = encoded.split(b"\r\n")
    assert all(len(line) <= 76 for line in lines)
    assert b"\n" not in encoded.replace(b"\r\n", b"") and b"\r" not in encoded.replace(b"\r\n", b"")
    assert all(not line.endswith((b" ", b"\t")) for line in lines)


@pytest.mark.parametrize("length", range(60, 170))
def test_lines_stay_within_76_characters_whatever_the_value_length(length: int) -> None:
    url = "https://oakfield.example.org/u?r=" + "a=é"[length % 3] * (length - 33)
    template = "x" * (length % 80) + "%%unsubscribe_url%%" + "y" * (length % 77) + "\n%%recipient_id%%"
    values = recipient_values(first_name="Pat", last_name="Example", default_greeting="Hello",
                              unsubscribe_url=url, recipient_id="z" * length)
    encoded = _stamp(_segments(template), html_values(values))
    assert max(len(line) for line in encoded.split(b"\r\n")) <= 76
    assert quopri.decodestring(encoded).decode("utf-8") == personalize(template, values, is_html=True).replace(
        "\n", "\r\n")
