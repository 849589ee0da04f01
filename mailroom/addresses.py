"""One way to compare email addresses, so "nobody twice" and "never mail a suppressed address" agree.

The same mailbox can be typed many ways: ``Zoe@Bücher.example``, ``zoe@xn--bcher-kva.example`` pasted
from a bounce report, or ``zoë`` with the accent as a separate combining mark (NFD, as some Mac and
Word exports write it). ``normalise_address`` gives one spelling that is still the address to send to:
Unicode NFC, no surrounding space, the domain lower-cased and in its ASCII (punycode) form. The local
part is kept as typed, since a mail server may in theory tell ``Sam`` from ``sam``. ``address_key`` is
the form addresses are compared in: the normalised address with the local part lower-cased too,
because in practice every school's mail server treats those as one mailbox and the promise is
"nobody twice".

Neither function validates: a malformed address is normalised as far as it goes and left for the
audience checks to report.
"""

from __future__ import annotations

import unicodedata

import idna


def normalise_address(text: str) -> str:
    """``text`` as one canonical, sendable spelling (see the module docstring)."""
    address = text.strip()
    if address.isascii():  # the usual case, and NFC and IDNA change nothing in it but the case
        local, at, domain = address.rpartition("@")
        return f"{local}@{domain.lower()}" if at else address
    address = unicodedata.normalize("NFC", address)
    local, at, domain = address.rpartition("@")
    if not at:
        return address
    return f"{local}@{ascii_domain(domain)}"


def ascii_domain(domain: str) -> str:
    """The domain in lower-case ASCII (punycode for an internationalised one); as typed if it is not valid IDNA."""
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        return domain.lower()


def address_key(text: str) -> str:
    """The form addresses are compared in: normalised, and the local part lower-cased as well."""
    address = text.strip()
    if address.isascii():
        return address.lower()
    local, at, domain = normalise_address(address).rpartition("@")
    return f"{local.lower()}@{domain}" if at else address.lower()


def local_part_is_ascii(text: str) -> bool:
    """Whether the part before the @ is plain ASCII; a non-ASCII one needs a server that speaks SMTPUTF8."""
    local, at, _domain = normalise_address(text).rpartition("@")
    return (local if at else text).isascii()
