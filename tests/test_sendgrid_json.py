"""A personalization written from pieces (the fast path) is exactly the JSON of its dict, for any values."""

from __future__ import annotations

import json

import pytest

from mailroom.send.personalize import html_values
from mailroom.send.transports.base import Message, Version
from mailroom.send.transports.mime import list_unsubscribe
from mailroom.send.transports.sendgrid import (
    _dumps,
    _personalization_json,
    _personalizations,
    _Prepared,
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
    version = Version(newsletter="2024-11-08-é", audience="parents", subject="News for %%first_name%%",
                      html="<p>%%greeting%% %%first_name%%</p><a href=\"%%unsubscribe_url%%\">x</a>",
                      text="%%greeting%%\n%%last_name%% %%unsubscribe_url%%", images=(), from_name="Oakfield",
                      from_email="office@oakfield.example.org", reply_to="office@oakfield.example.org",
                      list_id="Oakfield parents <parents.oakfield.example.org>", unsubscribe_mailto="o@example.org")
    return _Prepared(version, settings, sandbox=False)


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
    return Message(f"p{at}@example.org", f"p{at}@example.org", f"{first} {last}".strip(), f"{at:04x}", values)


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
    assert _personalizations(prepared, people) == expected
