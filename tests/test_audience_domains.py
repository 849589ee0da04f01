"""The plain-domain shortcut (mailroom/audience/domains.py) held to email-validator's own verdicts: whatever it
calls plain, email-validator accepts, so skipping email-validator for those domains changes no decision."""

from __future__ import annotations

import random

import email_validator
import pytest
from email_validator import EmailNotValidError, validate_email

from mailroom.audience.domains import SPECIAL_USE_TOP_LEVEL, is_plain_domain

USUAL = ["gmail.com", "hotmail.co.uk", "outlook.com", "icloud.com", "btinternet.com", "yahoo.fr", "example.org",
         "st-marys-primary.example.org", "mail.school123.example.com", "a.bc", "x1.museum"]
ASKED = [  # plain-looking, but only email-validator can say (or it refuses them)
    "localhost", "org", "printer.local", "school.test", "a.b.invalid", "x.onion", "1.2.3.4", "example.123",
    "xn--bcher-kva.example", "ab--cd.example.org", "-start.example.org", "end-.example.org", "a..b.org", ".a.org",
    "a.org.", "under_score.org", "a.b", "a.b1", f"{'a' * 64}.org", "Upper.ORG", "bücher.example",
    ".".join(["abcdefghi"] * 25) + ".org"]


def accepted(domain: str) -> bool:
    try:
        validate_email(f"a@{domain}", check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


@pytest.mark.parametrize("domain", USUAL)
def test_the_usual_domains_are_plain_and_email_validator_agrees(domain: str) -> None:
    assert is_plain_domain(domain)
    assert accepted(domain)


@pytest.mark.parametrize("domain", ASKED)
def test_anything_unusual_is_left_to_email_validator(domain: str) -> None:
    assert not is_plain_domain(domain)


def test_the_longest_plain_labels_are_accepted_and_one_more_is_not_plain() -> None:
    longest = f"{'a' * 63}.{'b' * 63}.org"
    assert is_plain_domain(longest) and accepted(longest)
    assert not is_plain_domain(f"{'a' * 64}.org") and not accepted(f"{'a' * 64}.org")


def test_every_special_use_name_email_validator_refuses_is_left_to_it() -> None:
    # A newer email-validator that refuses another name fails here until that name is added.
    assert {name.rpartition(".")[2] for name in email_validator.SPECIAL_USE_DOMAIN_NAMES} <= SPECIAL_USE_TOP_LEVEL


def test_random_domains_called_plain_are_all_accepted_by_email_validator() -> None:
    chooser = random.Random(12)
    alphabet = "ab0-.x"
    tried = plain = 0
    while plain < 400:
        domain = "".join(chooser.choice(alphabet) for _ in range(chooser.randint(1, 14)))
        domain += chooser.choice(["", ".org", ".com", ".a", ".x1", ".test", "-", "."])
        tried += 1
        if is_plain_domain(domain):
            plain += 1
            assert accepted(domain), domain
    assert tried > plain
