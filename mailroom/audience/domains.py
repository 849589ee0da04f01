"""The usual domain of an address (``gmail.com``, ``school.example.org``), known good without email-validator.

Importing email-validator costs a send more start-up work than anything else it imports (its syntax
rules compile large regular expressions), while nearly every address on a school's lists has one of a
few plain ASCII domains. For a domain of lower-case letters, digits and single hyphens in short
labels, under an alphabetic top-level domain that is not a special-use one, email-validator's verdict
(with no DNS look-up) is always "valid"; ``is_plain_domain`` says when a domain is such a one. Every
other domain (punycode or international, numeric, special-use, very long) still goes to
email-validator, so the verdict and its explanation are always email-validator's. The tests hold
this module to email-validator's own answers.
"""

from __future__ import annotations

import re

# Labels of letters and digits, with hyphens only inside, at most 63 characters (RFC 1035, RFC 952),
# then a top-level domain of letters only (email-validator wants one ending in a letter).
_PLAIN = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
# The special-use names email-validator refuses (and every name under them), by their top-level label.
SPECIAL_USE_TOP_LEVEL = frozenset({"arpa", "invalid", "local", "localhost", "onion", "test"})
# Longer domains are left to email-validator, whose length limits count the whole address.
_LONGEST = 200


def is_plain_domain(domain: str) -> bool:
    """Whether ``domain`` (lower-case) is one email-validator is known to accept (see the module docstring).

    False does not mean invalid, only "ask email-validator". "--" anywhere sends a domain there too: that
    covers punycode labels (``xn--``) and the labels RFC 5890 reserves (two characters, then "--").
    """
    return (len(domain) <= _LONGEST and "--" not in domain and _PLAIN.fullmatch(domain) is not None
            and domain.rpartition(".")[2] not in SPECIAL_USE_TOP_LEVEL)
