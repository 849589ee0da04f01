"""A personalization written from pieces (the fast path) is exactly the JSON of its dict, for any values."""

from __future__ import annotations

import json

import pytest

from mailroom.send.personalize import html_values
from mailroom.send.transports.base import Message, Version
from mailroom.send.transports.mime import list_unsubscribe
from mailroom.send.transports.sendgrid import (
    _Body,
    _dumps,
    _personalization_json,
    _personalizations,
    _Prepared,
    _serialise,
    html_tag,
    text_tag,
)
from tests.send_project import send_project, settings_for

NAMES = ["Pat", "", "Zoë & <Seán> \"Ó\" 'x'", "tab\tnew\nline\x00nul\u2028", "日本語 🎒", "back\\slash/",
         "=?utf-8?b?QQ==?=", "the text \\u0000 itself", "per%s%%cent %(x)s"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> _Prepared:
    settings = settings_for(send_project(tmp_path_factory.mktemp("sg") / "school"), transport="sendgrid",
                            host="http://127.0.0.1:9")
    return _Prepared(VERSION, settings, sandbox=False)


VERSION = Version(newsletter="2024-11-08-é", audience="parents", subject="News for %%first_name%%",
                  html="<p>%%greeting%% %%first_name%%</p><a href=\"%%unsubscribe_url%%\">x</a>",
                  text="%%greeting%%\n%%last_name%% %%unsubscribe_url%%", images=(), from_name="Oakfield",
                  from_email="office@oakfield.example.org", reply_to="office@oakfield.example.org",
                  list_id="Oakfield parents <parents.oakfield.example.org>", unsubscribe_mailto="o@example.org")


@pytest.mark.parametrize("first", NAMES)
@pytest.mark.parametrize("last", ["Example", "Ångström-O'Neil"])
def test_the_json_written_from_pieces_is_the_json_of_the_dict(prepared: _Prepared, first: str, last: str) -> None:
    values = {"greeting": f"Dear {first}" if first else "Dear Parent/Carer", "first_name": first,
              "last_name": last, "unsubscribe_url": "https://example.org/u?r=ab&x=1", "recipient_id": "ab12"}
    substitutions = {html_tag(f): v for f, v in html_values({f: values[f] for f in prepared.html_fields}).items()}
    substitutions.update({text_tag(f): values[f] for f in prepared.text_fields})
    unsubscribe = list_unsubscribe(values["unsubscribe_url"], prepared.mailto)
    name = f"{first} {last}".strip()
    to = {"email": "pat@example.org", **({"name": name} if name else {})}
    expected = {"to": [to], "custom_args": {**prepared.custom_args, "recipient_id": "ab12"},
                "headers": {"List-Unsubscribe": unsubscribe}, "substitutions": substitutions}
    written = _personalization_json(prepared, "pat@example.org", name, "ab12", unsubscribe, values)
    assert written == _dumps(expected)
    assert json.loads(written) == expected


def _message(first: str, last: str, at: int) -> Message:
    values = {"greeting": f"Dear {first}" if first else "Dear Parent/Carer", "first_name": first, "last_name": last,
              "unsubscribe_url": f"https://example.org/u?r={at:04x}&x=1", "recipient_id": f"{at:04x}"}
    return Message.with_values(f"p{at}@example.org", f"p{at}@example.org", f"{first} {last}".strip(), values)


@pytest.mark.parametrize("mix", ["plain", "to escape for HTML", "hostile"])
def test_a_whole_batch_written_at_once_is_each_persons_json(prepared: _Prepared, mix: str) -> None:
    """The batch way (one escape, one % for everyone) gives each person exactly their own JSON: with plain
    names only, with names HTML must escape among them, and with every hostile name (a NUL, the text
    "\\u0000") among them, which sends the batch the long way."""
    names = [("Pat", "Example"), ("", ""), ("Sam", ""), ("", "Okafor")] * 5
    if mix == "to escape for HTML":
        names += [("Zoë & <Seán>", "O'Neil"), ('"Ó"', "Smith & Sons"), ("日本語 🎒", "back\\slash/")]
    if mix == "hostile":
        names += [(first, "Ångström-O'Neil") for first in NAMES]
    people = [(_message(first, last, at), f"p{at}@example.org", f"{first} {last}".strip())
              for at, (first, last) in enumerate(names)]
    expected = [_personalization_json(prepared, address, name, message.recipient_id,
                                      list_unsubscribe(message.values["unsubscribe_url"], prepared.mailto),
                                      message.values) for message, address, name in people]
    messages, addresses, written_names = (list(column) for column in zip(*people, strict=True))
    assert _personalizations(prepared, messages, addresses, written_names) == expected


def test_a_plain_batch_is_written_without_the_person_by_person_way(prepared: _Prepared, monkeypatch) -> None:
    """The batch way must really be taken for usual people, named or not (else the send is 2× slower)."""
    import mailroom.send.transports.sendgrid as sendgrid

    def person_by_person(*args: object, **kwargs: object) -> str:
        raise AssertionError("the person-by-person way was taken")

    monkeypatch.setattr(sendgrid, "_personalization_json", person_by_person)
    people = [_message(first, last, at) for at, (first, last) in enumerate([("Pat", "Example"), ("", ""), ("Zoë", "")])]
    texts = _personalizations(prepared, people, [m.email for m in people], [m.name for m in people])
    assert [json.loads(text)["to"][0]["email"] for text in texts] == [m.email for m in people]


TRICKY_NAMES = ["Pat Example", " Pat", "Pat ", "Pat  Example", "Pat;Example", "Pat,Example", "Pat; Example",
                "Pat\tExample", "Pat\nExample", "Pat\r\nExample", "Pat\u00a0Example", "Pat\u2028Example",
                "Pat\x00Example", "Pat\x1fExample", "Zoë Ó Conchúir", "日本語", "Pat\u200dExample", "", " ", ";"]


@pytest.mark.parametrize("name", TRICKY_NAMES)
def test_a_batch_called_tidy_has_only_names_sendgrid_takes_as_they_are(name: str) -> None:
    from mailroom.send.transports.sendgrid import _all_tidy, _clean_name

    for batch in ([name], ["Amelia Hughes", name], [name, "Amelia Hughes"], ["Amelia Hughes", name, "Sam"]):
        if _all_tidy(batch):
            assert [_clean_name(n) for n in batch] == batch
    assert _all_tidy(["Amelia Hughes", "Zoë Ó Conchúir", "日本語", "O'Neil-Smith"])  # the usual batch is


ADDRESSES = ["pat@example.org", "Pat.Example+news@example.org", "pat@Example.ORG", "pat@bücher.example",
             "pat@xn--bcher-kva.example", "noé@example.org", "pat@example.org\n", "pat@example.org\nsam@example.org",
             " pat@example.org", "pat@example", "pat@example.org", "PAT@example.org", "a@b.co"]


@pytest.mark.parametrize("address", ADDRESSES)
@pytest.mark.parametrize("name", ["Pat Example", "Pat; Example", ""])
def test_the_whole_batch_checks_give_what_the_person_by_person_checks_give(tmp_path_factory, prepared: _Prepared,
                                                                           monkeypatch, address: str,
                                                                           name: str) -> None:
    """Every address and name shape, among usual people: the people, their JSON and who is refused (and why)
    are the same whether the batch is checked at once or person by person."""
    import mailroom.send.transports.sendgrid as sendgrid
    from mailroom.send.transports.base import Batch
    from mailroom.send.transports.sendgrid import SendGridTransport

    settings = settings_for(send_project(tmp_path_factory.mktemp("sg") / "school"), transport="sendgrid",
                            host="http://127.0.0.1:9")
    transport = SendGridTransport(settings)
    usual = [_message("Pat", "Example", at) for at in range(3)]
    odd = usual[0]._replace(key="odd", email=address, name=name)
    batch = Batch(1, VERSION, (usual[0], odd, *usual[1:]))

    def outcome() -> tuple[list[tuple[str, str, str, int]], dict[str, str]]:
        people, refused = transport.people(batch, prepared)
        return [(p.message.key, p.address, p.json, p.size) for p in people], dict(refused.errors)

    at_once = outcome()
    with monkeypatch.context() as patch:
        patch.setattr(sendgrid, "_ALL_SENDABLE_AS_WRITTEN", __import__("re").compile("(?!)"))
        patch.setattr(sendgrid, "_all_tidy", lambda names: False)
        assert outcome() == at_once


def test_text_said_to_need_no_json_escape_is_exactly_what_json_leaves_as_it_is() -> None:
    from mailroom.send.transports.sendgrid import _json_as_is, _json_string

    characters = [*map(chr, range(0x3000)), "\ud800", "\udfff", "\u2028", "\ufeff", "\U0001f392", "\U0010ffff"]
    assert [c for c in characters if _json_as_is(c) != (_json_string(c)[1:-1] == c)] == []
    assert _json_as_is("Zoë Ó Conchúir <https://example.org/u?r=ab12&x=1>")
    assert not _json_as_is('Pat "P" Example') and not _json_as_is("back\\slash") and not _json_as_is("tab\t")


@pytest.mark.parametrize("names", [
    [("Pat", "Example"), ("Sam", "Okafor")], [("Pat", "Example"), ("", ""), ("", "Okafor")],
    [('Zoë "Z"', "Ó Conchúir"), ("back\\slash", "O'Neil & Sons"), ("日本語 🎒", "Example")]])
def test_a_usual_batchs_one_request_carries_exactly_what_the_person_by_person_way_sends(
        tmp_path_factory, prepared: _Prepared, names: list[tuple[str, str]]) -> None:
    from mailroom.send.transports.base import Batch
    from mailroom.send.transports.sendgrid import SendGridTransport

    settings = settings_for(send_project(tmp_path_factory.mktemp("sg") / "school"), transport="sendgrid",
                            host="http://127.0.0.1:9")
    transport = SendGridTransport(settings)
    batch = Batch(1, VERSION, tuple(_message(first, last, at) for at, (first, last) in enumerate(names)))
    people, refused = transport.people(batch, prepared)
    assert not refused.deliveries
    assert transport._usual_request(batch, prepared) == _serialise(prepared, people)
    twice = Batch(2, VERSION, (*batch.messages, batch.messages[0]._replace(key="again")))
    upper = Batch(3, VERSION, (batch.messages[0]._replace(email="pat@Example.ORG"),))
    assert transport._usual_request(twice, prepared) is None and transport._usual_request(upper, prepared) is None


@pytest.mark.parametrize("address", ADDRESSES)
def test_addresses_said_all_fine_at_once_each_have_no_problem(tmp_path_factory, address: str) -> None:
    """The planner asks a chunk of addresses at once (``address_problem.all_fine``): it may say False of
    good ones, never True of a chunk holding one that ``address_problem`` would leave out."""
    from mailroom.send.transports.sendgrid import SendGridTransport

    settings = settings_for(send_project(tmp_path_factory.mktemp("sg") / "school"), transport="sendgrid",
                            host="http://127.0.0.1:9")
    check = SendGridTransport(settings).address_problem
    usual = ["pat@example.org", "sam.o'neil+news@example.org"]
    assert check.all_fine(usual)  # type: ignore[attr-defined]
    for chunk in ([address], [*usual, address], [address, *usual]):
        if check.all_fine(chunk):  # type: ignore[attr-defined]
            assert [check(email) for email in chunk] == [None] * len(chunk)
    if check(address) is not None:
        assert not check.all_fine([*usual, address])  # type: ignore[attr-defined]


@pytest.mark.parametrize("first", NAMES)
@pytest.mark.parametrize("last", ["Example", "Ångström-O'Neil", "%s"])
def test_a_named_batchs_request_written_a_column_at_a_time_is_the_person_by_person_json(
        tmp_path_factory, prepared: _Prepared, first: str, last: str) -> None:
    """Everyone named: the usual request is written a column at a time (``_named_columns``). With a hostile name
    among usual people (NUL, the text \\u0000, %s, an encoded word, HTML and JSON specials) it is exactly what the
    person-by-person way sends, or None (NUL and the text \\u0000 only) and that way is taken."""
    from mailroom.send.transports.base import Batch
    from mailroom.send.transports.sendgrid import SendGridTransport

    settings = settings_for(send_project(tmp_path_factory.mktemp("sg") / "school"), transport="sendgrid",
                            host="http://127.0.0.1:9")
    transport = SendGridTransport(settings)
    messages = [_message("Pat", "Example", 0), _message(first or "Sam", last, 1), _message("Sam", "Okafor", 2)]
    messages[2] = messages[2]._replace(unsubscribe_url="https://example.org/u?r=%s&x=100%")
    batch = Batch(1, VERSION, tuple(messages))
    people, refused = transport.people(batch, prepared)
    assert not refused.deliveries
    written = transport._usual_request(batch, prepared)
    if "\0" in first or "\\u0000" in first:
        assert written is None
    else:
        assert written == _serialise(prepared, people)
        assert [json.loads(person.json) for person in people] == json.loads(written.whole())["personalizations"]


def test_links_only_in_the_header_are_escaped_for_json_too(tmp_path_factory) -> None:
    """A version whose text never shows the link still carries it in List-Unsubscribe: a link holding a quote
    or a backslash is escaped there exactly as the person-by-person way does."""
    from mailroom.send.transports.base import Batch
    from mailroom.send.transports.sendgrid import SendGridTransport

    settings = settings_for(send_project(tmp_path_factory.mktemp("sg") / "school"), transport="sendgrid",
                            host="http://127.0.0.1:9")
    version = Version(**{**VERSION.__dict__, "html": "<p>%%first_name%%</p>", "text": "%%greeting%%"})
    prepared = _Prepared(version, settings, sandbox=False)
    assert "unsubscribe_url" not in prepared.fields
    transport = SendGridTransport(settings)
    messages = [_message("Pat", "Example", at)._replace(unsubscribe_url=f'https://example.org/u?r={at}"\\x')
                for at in range(3)]
    batch = Batch(1, version, tuple(messages))
    people, _ = transport.people(batch, prepared)
    written = transport._usual_request(batch, prepared)
    assert written == _serialise(prepared, people)
    assert json.loads(written.whole())["personalizations"][2]["headers"]["List-Unsubscribe"].startswith('<https://example.org/u?r=2"\\x>')


def _three_people_written_both_ways(tmp_path_factory: pytest.TempPathFactory,
                                    version: Version) -> tuple[_Body | None, _Body]:
    """Three usual people's request for ``version``: as the usual batch writes it, and as the person-by-person
    way does."""
    from mailroom.send.transports.base import Batch
    from mailroom.send.transports.sendgrid import SendGridTransport

    settings = settings_for(send_project(tmp_path_factory.mktemp("sg") / "school"), transport="sendgrid",
                            host="http://127.0.0.1:9")
    prepared = _Prepared(version, settings, sandbox=False)
    transport = SendGridTransport(settings)
    batch = Batch(1, version, tuple(_message("Pat", "Example", at) for at in range(3)))
    people, _ = transport.people(batch, prepared)
    return transport._usual_request(batch, prepared), _serialise(prepared, people)


@pytest.mark.parametrize("mailto", ["", 'o"x\\y@example.org'])
def test_the_unsubscribe_headers_fixed_text_is_written_the_same_a_column_at_a_time(tmp_path_factory,
                                                                                  mailto: str) -> None:
    """The List-Unsubscribe header's "<" and tail are the template's own text in the column way: with no mailto
    (the header is the link alone) and with one JSON must escape, the request is the person-by-person one."""
    written, expected = _three_people_written_both_ways(tmp_path_factory,
                                                        Version(**{**VERSION.__dict__, "unsubscribe_mailto": mailto}))
    assert written == expected
    header = json.loads(written.whole())["personalizations"][1]["headers"]["List-Unsubscribe"]
    assert header == list_unsubscribe("https://example.org/u?r=0001&x=1", mailto)


def test_a_newsletter_named_with_percent_signs_is_written_the_same_a_column_at_a_time(tmp_path_factory) -> None:
    """The template's own text (the newsletter's name in custom_args) may hold "%s" or "%%": the column way cuts
    the template only at its slots."""
    written, expected = _three_people_written_both_ways(
        tmp_path_factory, Version(**{**VERSION.__dict__, "newsletter": "2024-%s-100%%-%d"}))
    assert written == expected
    assert json.loads(written.whole())["personalizations"][0]["custom_args"]["newsletter"] == "2024-%s-100%%-%d"


def _random_addresses(seed: int, count: int) -> list[str]:
    """Address-like strings built from the characters that decide SendGrid's check: upper and lower case, digits,
    dots and hyphens where a domain may not have them, quotes, spaces, accents, line breaks, a second @."""
    import random

    chance = random.Random(seed)
    local = "aaaaZ09.-_+'\"\\ é@\n"
    domain = "aaaaaazzz000---.A9é \n"
    found = []
    for _ in range(count):
        mailbox = "".join(chance.choice(local) for _ in range(chance.randint(0, 4))) or "pat"
        labels = ["".join(chance.choice(domain) for _ in range(chance.randint(0, 5)))
                  for _ in range(chance.randint(1, 3))]
        found.append(f"{mailbox}@{'.'.join(labels)}" if chance.random() < 0.9 else mailbox + "." + labels[0])
    return found


def test_addresses_said_sendable_as_written_at_once_are_each_sendable_as_written() -> None:
    """The batch check (``_all_sendable_as_written``, a regex that never backtracks) says True only of addresses
    ``sendable_address`` gives back unchanged, and says it of the usual ones: a backtracking regex of what SendGrid
    takes (the check before this one) stands as the reference for every domain whose last label fits."""
    import re

    from mailroom.send.transports.sendgrid import _MAILBOX, _all_sendable_as_written, sendable_address

    reference = re.compile(_MAILBOX + r"@[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?\.[a-z0-9-]{2,}")
    usual = ["pat@example.org", "o'neil+news@mail.school-x.example.co.uk", "a@b.co", "x_y@gmail.com",
             "pat@xn--bcher-kva.example", "head@st-mary.sch.uk", "p@a-b.c-d.museum", "p@1.2.3.xn--vermgensberatung-pwb"]
    assert _all_sendable_as_written(usual) and all(sendable_address(a) == a for a in usual)
    candidates = [*_random_addresses(12, 20_000), *ADDRESSES, "p@a..b.cd", "p@a.-b.cd", "p@a-.cd", "p@-a.cd",
                  "p@a.b-", "p@a.x", "p@a.abcdefghijklmnopqrstuvwxyz", "p@.ab", "p@ab", "@a.bc", "p@a.b.c"]
    said = [address for address in candidates if _all_sendable_as_written([address])]
    assert len(said) > 300  # the random ones hold plenty of sendable addresses
    assert [address for address in said if sendable_address(address) != address] == []
    for address in candidates:
        last = address.rpartition(".")[2]
        if 2 <= len(last) <= 24 and last[-1:].isalnum():  # only a last label that ends in a hyphen or is long differs
            assert _all_sendable_as_written([address]) == bool(reference.fullmatch(address)), address
    # Many at once: True only when every one is (each position of a bad one tried)
    good = usual * 3
    for address in [a for a in candidates if not _all_sendable_as_written([a])][:300]:
        for at in (0, 5, len(good)):
            assert not _all_sendable_as_written([*good[:at], address, *good[at:]]), address
