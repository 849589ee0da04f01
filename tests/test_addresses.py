"""One address spelling for comparing people: NFC, punycode domains, case."""

from __future__ import annotations

import unicodedata

import pytest

from mailroom.addresses import address_key, ascii_domain, local_part_is_ascii, normalise_address

NFC = unicodedata.normalize("NFC", "zoë@bücher.example")
NFD = unicodedata.normalize("NFD", "zoë@bücher.example")


def test_nfc_and_nfd_spellings_normalise_to_the_same_address() -> None:
    assert NFC != NFD
    assert normalise_address(NFD) == normalise_address(NFC) == "zoë@xn--bcher-kva.example"


@pytest.mark.parametrize("spelling", [
    "zoe@bücher.example", "zoe@BÜCHER.example", "zoe@xn--bcher-kva.example", "zoe@XN--BCHER-KVA.EXAMPLE",
    "  zoe@bücher.example\t", unicodedata.normalize("NFD", "zoe@bücher.example"),
])
def test_every_spelling_of_an_internationalised_domain_is_one_address(spelling: str) -> None:
    assert normalise_address(spelling) == "zoe@xn--bcher-kva.example"


def test_the_local_part_is_kept_as_typed_but_compared_without_case() -> None:
    assert normalise_address("Sam.Patel@Example.ORG") == "Sam.Patel@example.org"
    assert address_key("Sam.Patel@Example.ORG") == address_key(" sam.patel@example.org ") == "sam.patel@example.org"
    assert address_key("ZOË@BÜCHER.example") == address_key("zoë@xn--bcher-kva.example") == "zoë@xn--bcher-kva.example"


def test_an_at_sign_in_a_quoted_local_part_leaves_the_domain_after_the_last_one() -> None:
    assert normalise_address('"a@b"@Bücher.example') == '"a@b"@xn--bcher-kva.example'


@pytest.mark.parametrize("text", ["", "   ", "not an address", "zoë", "zoë@", "@bücher.example", "a@b_c.example"])
def test_malformed_text_is_normalised_as_far_as_it_goes_and_never_raises(text: str) -> None:
    result = normalise_address(text)
    assert result == unicodedata.normalize("NFC", result) and result == result.strip()
    assert address_key(text) == address_key(result)


def test_an_invalid_idna_domain_is_only_lower_cased() -> None:
    assert ascii_domain("Ünder_score.example") == "ünder_score.example"


def test_local_part_ascii() -> None:
    assert local_part_is_ascii("zoe@bücher.example")
    assert not local_part_is_ascii("zoë@example.org")
    assert not local_part_is_ascii(NFD)
    assert local_part_is_ascii("plain text")
    assert not local_part_is_ascii("zoë")
