"""The one token vocabulary: compose, the checks, the preview and every transport agree on it."""

from __future__ import annotations

import quopri

import pytest

from mailroom.checks.rules import check_version
from mailroom.send.personalize import personalize, recipient_values
from mailroom.send.transports.mime import _segments, _stamp
from mailroom.send.transports.sendgrid import _to_tags, html_tag
from mailroom.tokens import ANY_TOKEN, FIELD_TOKEN, RECIPIENT_FIELDS, fields_used, token

VALUES = recipient_values(first_name="Zoë", last_name="Ó Conchúir", default_greeting="Dear Parent/Carer",
                          unsubscribe_url="https://oakfield.example.org/u?id=ab12", recipient_id="ab12")


def test_every_field_has_a_token_the_field_pattern_finds_and_nothing_else() -> None:
    text = " ".join(token(name) for name in RECIPIENT_FIELDS) + " %%class_code%% %%%% %%Greeting%%"
    assert [m.group(1) for m in FIELD_TOKEN.finditer(text)] == list(RECIPIENT_FIELDS)
    assert [m.group(1) for m in ANY_TOKEN.finditer(text)] == [*RECIPIENT_FIELDS, "class_code", "", "Greeting"]


def test_recipient_values_fill_exactly_the_closed_set_of_fields() -> None:
    assert set(VALUES) == set(RECIPIENT_FIELDS)


def test_fields_used_finds_adjacent_tokens_and_ignores_unknown_ones() -> None:
    assert fields_used("%%first_name%%%%last_name%%", "%%class_code%% %%greeting%%") == (
        "first_name", "greeting", "last_name")
    assert fields_used("no tokens here", "%%%%") == ()


def test_the_preview_and_the_mime_builder_fill_the_same_tokens_the_same_way() -> None:
    template = "".join(f"{token(name)}|" for name in RECIPIENT_FIELDS) + "%%class_code%%"
    filled = personalize(template, VALUES, is_html=False)
    assert filled == "Dear Zoë|Zoë|Ó Conchúir|https://oakfield.example.org/u?id=ab12|ab12|%%class_code%%"
    stamped = _stamp(_segments(template), VALUES)
    assert quopri.decodestring(stamped).decode("utf-8") == filled


def test_sendgrid_swaps_every_field_for_its_own_tag_and_says_which_it_used() -> None:
    swapped, used = _to_tags(f"<p>{token('greeting')}</p><a href=\"{token('unsubscribe_url')}\">x</a>", html_tag)
    assert used == ("greeting", "unsubscribe_url")
    assert FIELD_TOKEN.search(swapped) is None and html_tag("greeting") in swapped


@pytest.mark.parametrize("unknown", ["%%class_code%%", "%%%%", "%%Greeting%%"])
def test_the_checks_call_a_token_outside_the_vocabulary_a_leftover(unknown: str) -> None:
    body = f"<p>Hello there {unknown}, here is the week's news for every family.</p>"
    html = (f"<!doctype html><html lang=\"en\"><head><title>t</title></head><body>{body}"
            f"<p><a href=\"{token('unsubscribe_url')}\">Unsubscribe</a></p></body></html>")
    unsubscribe = token("unsubscribe_url")
    text = f"Hello there {unknown}, here is the week's news for every family.\n\nUnsubscribe: {unsubscribe}\n"
    codes = [finding.code for finding in check_version(html, text, audience="parents")]
    assert "leftover" in codes
    fine = [f.code for f in check_version(html.replace(unknown, token("first_name")),
                                          text.replace(unknown, token("first_name")), audience="parents")]
    assert "leftover" not in fine


@pytest.mark.parametrize(("first", "last", "greeting_list"), [
    ("Zoë", "Ó Conchúir", "parents"), ("  Amelia ", " Hughes  ", "staff"), ("", "Patel", "parents"),
    ("Rahul", "", "no-such-list"), ("", "", "staff"), ("=?utf-8?b?QW1lbGlh?=", "%s {recipient_id}", "parents"),
    ("O'Brien & <Sons>", "\u0000\t", "parents")])
def test_a_send_makes_each_message_with_exactly_the_values_recipient_values_gives(first, last, greeting_list) -> None:
    """The send makes its messages inline (it runs per person); they must hold what recipient_values says."""
    from types import SimpleNamespace

    from mailroom.send.dispatch import MessageMaker

    url = "https://oakfield.example.org/u?id={recipient_id}&again={recipient_id}"
    lists = {"parents": SimpleNamespace(greeting="Dear Parent/Carer"), "staff": SimpleNamespace(greeting="Hi all")}
    settings = SimpleNamespace(lists=lists, unsubscribe=SimpleNamespace(url=url))
    person = SimpleNamespace(key="k@example.org", email="k@example.org", first_name=first, last_name=last,
                             audience=greeting_list)
    message = MessageMaker(settings)(person, "ab12")  # type: ignore[arg-type]
    default = lists[greeting_list].greeting if greeting_list in lists else "Hello"
    assert message.values == recipient_values(first_name=first, last_name=last, default_greeting=default,
                                              unsubscribe_url=url.replace("{recipient_id}", "ab12"),
                                              recipient_id="ab12")
    assert message.name == " ".join(part for part in (first.strip(), last.strip()) if part)


@pytest.mark.parametrize("odd_one", [None, ("", "Patel"), ("Rahul", ""), ("", ""), ("  ", " x ")])
def test_a_batchs_messages_made_at_once_are_each_persons_own(odd_one: tuple[str, str] | None) -> None:
    """``many`` makes a batch's messages in one loop: everyone named in full (the usual batch), or with one person
    missing a name among them, each message is exactly the one made for that person alone, with recipient_values'
    fields."""
    from types import SimpleNamespace

    from mailroom.send.dispatch import MessageMaker

    url = "https://oakfield.example.org/u?id={recipient_id}&again={recipient_id}"
    lists = {"parents": SimpleNamespace(greeting="Dear Parent/Carer"), "staff": SimpleNamespace(greeting="Hi all")}
    maker = MessageMaker(SimpleNamespace(lists=lists, unsubscribe=SimpleNamespace(url=url)))  # type: ignore[arg-type]
    names = [("Zoë", "Ó Conchúir"), ("  Amelia ", " Hughes  "), ("=?utf-8?b?QW1lbGlh?=", "%s {recipient_id}")]
    if odd_one is not None:
        names.insert(1, odd_one)
    people = [(SimpleNamespace(key=f"k{at}@example.org", email=f"K{at}@example.org", first_name=first,
                               last_name=last, audience=("parents", "staff", "other")[at % 3]), f"id{at}")
              for at, (first, last) in enumerate(names)]
    made = maker.many(people)  # type: ignore[arg-type]
    alone = [maker.many([pair])[0] for pair in people]  # type: ignore[list-item]
    assert made == alone and maker.many([]) == []
    for message, (person, rid) in zip(made, people, strict=True):
        default = lists[person.audience].greeting if person.audience in lists else "Hello"
        assert message.values == recipient_values(first_name=person.first_name, last_name=person.last_name,
                                                  default_greeting=default,
                                                  unsubscribe_url=url.replace("{recipient_id}", rid), recipient_id=rid)
        assert (message.key, message.email) == (person.key, person.email)
        assert message.name == " ".join(part for part in (person.first_name.strip(), person.last_name.strip()) if part)


def test_a_message_holds_each_field_recipient_values_gives_under_its_own_name() -> None:
    """A message is a tuple of the fields (no dict per person); ``values`` gives them back by token name."""
    from mailroom.send.transports.base import Message

    message = Message.with_values("k@example.org", "K@example.org", "Zoë Ó", VALUES)
    assert message.values == VALUES and list(message.values) == list(RECIPIENT_FIELDS)
    assert [getattr(message, field) for field in RECIPIENT_FIELDS] == [VALUES[f] for f in RECIPIENT_FIELDS]
    assert (message.key, message.email, message.name) == ("k@example.org", "K@example.org", "Zoë Ó")
