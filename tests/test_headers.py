"""Header lines mailroom writes itself: data is literal text, never a header of its own.

The email package is used here only as an independent reader of what we wrote.
"""

from __future__ import annotations

import base64
import string
from email import message_from_bytes, message_from_string, policy
from email.header import decode_header, make_header
from email.message import EmailMessage

import pytest

from mailroom.send.transports import headers

# The attack from issue 12: a first name that is an encoded word decoding to a line break and a Bcc.
EVIL_NAME = "=?utf-8?b?" + base64.b64encode(b"Amelia\r\nBcc: attacker@example.net").decode() + "?="
EVIL_SUBJECT = "=?utf-8?q?Hi=0D=0AReply-To=3A_attacker=40evil.example?="


def rfc2047(line: bytes) -> str:
    """The header's value decoded strictly by RFC 2047 (whitespace between adjacent encoded words dropped)."""
    value = line.decode("utf-8").partition(":")[2].replace("\r\n", "").strip()
    return str(make_header(decode_header(value)))


def read(lines: bytes) -> EmailMessage:
    message = message_from_bytes(lines + b"\r\nbody\r\n", policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_the_encoded_word_name_stays_literal_in_the_to_header() -> None:
    line = headers.address_header("To", f"{EVIL_NAME} Example", "amelia@example.org")
    message = read(line)
    assert message["Bcc"] is None and list(message.keys()) == ["To"]
    assert rfc2047(line) == f"{EVIL_NAME} Example <amelia@example.org>"
    assert message["To"].addresses[0].addr_spec == "amelia@example.org"
    assert b"attacker" not in line  # it only exists inside our own base64


def test_the_encoded_word_subject_never_makes_a_reply_to() -> None:
    message = read(headers.unstructured("Subject", EVIL_SUBJECT))
    assert message["Reply-To"] is None and list(message.keys()) == ["Subject"]
    assert message["Subject"] == EVIL_SUBJECT


@pytest.mark.parametrize("value", [
    "Online safety: what every family should know",
    "Zoë’s class — trip on Friday 🎒",
    "Hi\r\nBcc: victim@example.com",
    "tab\there and a\x00nul and a line\u2028separator",
    "=?",
    "a" * 1200,
    "word " * 60,
    "日本語のニュースレター" * 12,
    "Text with =?utf-8?q?=41?= in the middle",
])
def test_unstructured_values_read_back_as_the_literal_text(value: str) -> None:
    line = headers.unstructured("Subject", value)
    message = read(line)
    expected = " ".join(headers.literal(value).split(" "))
    assert list(message.keys()) == ["Subject"]
    assert message["Subject"] == expected
    assert all(len(part) <= 78 for part in line.split(b"\r\n")), line
    assert line.isascii()


@pytest.mark.parametrize("name", [
    "Pat Example", "Example, Pat", 'Pat "the cat" Ex\\ample', "Seán Ó Conchúir", "Zoë", "<b>Amélie</b>",
    "Dr. O'Neil-Smith", "x" * 200, "=?utf-8?b?QQ==?=", "a\r\nb",
])
def test_display_names_read_back_literally(name: str) -> None:
    line = headers.address_header("To", name, "parent@example.org")
    message = read(line)
    (address,) = message["To"].addresses
    shown = " ".join(headers.literal(name).split())
    assert address.addr_spec == "parent@example.org"
    if b"=?" in line:
        assert rfc2047(line) == f"{shown} <parent@example.org>"
    else:
        assert address.display_name == shown
    assert all(len(part) <= 78 for part in line.split(b"\r\n"))
    assert not message["To"].defects


def test_an_idn_domain_is_written_in_punycode_never_as_an_encoded_word() -> None:
    line = headers.address_header("To", "Zoë", "zoe@bücher.example")
    assert b"zoe@xn--bcher-kva.example" in line and b"zoe@=?" not in line
    assert read(line)["To"].addresses[0].addr_spec == "zoe@xn--bcher-kva.example"


def test_a_mailbox_name_beyond_ascii_needs_an_smtputf8_message() -> None:
    with pytest.raises(headers.HeaderProblem):
        headers.address_header("To", "Noé", "noé@example.com")
    line = headers.address_header("To", "Noé", "noé@example.com", utf8=True)
    assert "<noé@example.com>".encode() in line  # RFC 6532: the address in UTF-8, as it is
    message = message_from_string(line.decode("utf-8") + "\r\nbody\r\n", policy=policy.SMTPUTF8)
    assert message["To"].addresses[0].username == "noé"


@pytest.mark.parametrize("address", ["no-at-sign", "a b@example.org", "x@exa mple.org", "x@-bad-.example", "@x.org",
                                     "x@", "a\u200bb@example.org"])
def test_an_address_that_is_not_one_is_refused(address: str) -> None:
    with pytest.raises(headers.HeaderProblem):
        headers.address_header("To", "", address, utf8=True)


def test_a_mailbox_name_may_hold_exactly_rfc_5322s_atext_and_in_smtputf8_any_visible_letter() -> None:
    atext = set(string.ascii_letters + string.digits + "!#$%&'*+/=?^_`{|}~-")
    for code in range(128):
        if chr(code) == ".":  # a dot joins atoms: "a.b" is one
            continue
        try:
            headers.address(f"a{chr(code)}b@example.org", utf8=True)
        except headers.HeaderProblem:
            assert chr(code) not in atext, repr(chr(code))
        else:
            assert chr(code) in atext, repr(chr(code))
    for letter in ("é", "ß", "ø", "中", "ğ", "ש", "\u00a1", "\uffe6", "\U00010400", "\U0001f600", "\U0010fffd"):
        assert headers.address(f"a{letter}b@example.org", utf8=True) == f"a{letter}b@example.org"


def test_encoded_words_never_split_a_character_and_stay_short() -> None:
    text = "é" * 100 + "🎒" * 40
    words = headers.encoded_words(text)
    assert all(len(word) <= 75 for word in words)
    decoded = "".join(base64.b64decode(word[10:-2]).decode("utf-8") for word in words)
    assert decoded == text
