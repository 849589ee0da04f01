"""The outbox transport: real .eml files that Python's email package reads without complaint."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailroom.compose.build import BuiltImage, load_build
from mailroom.errors import TransportError
from mailroom.send.dispatch import make_message, make_version
from mailroom.send.transports.base import Batch, Delivery, Version
from mailroom.send.transports.mime import MimeTemplate
from mailroom.send.transports.outbox import OutboxTransport
from tests.send_project import SAMPLE, send_project, settings_for, write_build


class Person:
    def __init__(self, email: str, first: str, last: str, audience: str = "parents") -> None:
        self.email, self.key, self.first_name, self.last_name, self.audience = (
            email, email.lower(), first, last, audience)
        self.version = audience  # one list: its own version
        self.language = ""  # the school's


PEOPLE = [Person("Amelia.Hughes@example.org", "Amélie <b>", "Hughes-O'Neil"),
          Person("rahul.patel@example.com", "Rahul", "Patel"),
          Person("no.name@example.org", "", "")]


def parse(path: Path) -> EmailMessage:
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)  # type: ignore[return-value]


def all_defects(message: EmailMessage) -> list[object]:
    found: list[object] = []
    for part in message.walk():
        found.extend(part.defects)
        for _name, value in part.items():
            found.extend(getattr(value, "defects", ()))
    return found


@pytest.fixture(scope="module")
def sent(tmp_path_factory) -> tuple[Path, list[Path], Version]:
    folder = send_project(tmp_path_factory.mktemp("outbox") / "school")
    settings = settings_for(folder)
    build = load_build(folder / "newsletters" / SAMPLE, root=folder)
    version = make_version(build, settings, "parents")
    messages = tuple(make_message(p, f"rid{i:013d}", settings) for i, p in enumerate(PEOPLE))
    transport = OutboxTransport(settings.outbox_dir)
    result = transport.send_batch(Batch(batch_id=1, version=version, messages=messages))
    assert set(result.deliveries.values()) == {Delivery.SENT}
    files = [settings.outbox_dir / SAMPLE / f"rid{i:013d}.eml" for i in range(len(PEOPLE))]
    return settings.outbox_dir / SAMPLE, files, version


def test_every_file_parses_without_defects_and_has_the_headers(sent):
    folder, files, _version = sent
    assert sorted(p.name for p in folder.iterdir()) == sorted(f.name for f in files)  # no temp files left
    for path in files:
        message = parse(path)
        assert all_defects(message) == []
        for name in ("Date", "Message-ID", "From", "Reply-To", "To", "Subject", "List-Id", "List-Unsubscribe",
                     "List-Unsubscribe-Post"):
            assert message[name], name
        assert message["Subject"] == "Online safety: sextortion and the rise of AI"
        assert message["From"] == "Oakfield Primary School <office@oakfield.example.org>"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message.get_all("Cc") is None and message.get_all("Bcc") is None


def test_structure_is_alternative_text_then_related_html_with_inline_images(sent):
    _, files, _ = sent
    message = parse(files[0])
    assert message.get_content_type() == "multipart/alternative"
    text, related = message.get_payload()
    assert text.get_content_type() == "text/plain"
    assert related.get_content_type() == "multipart/related"
    html, *images = related.get_payload()
    assert html.get_content_type() == "text/html"
    cids = {img["Content-ID"].strip("<>") for img in images}
    assert cids == {"school-logo.png", "home-learning-hub.png"}
    body = html.get_content()
    for cid in cids:
        assert f'src="cid:{cid}"' in body
    assert 'src="images/' not in body
    assert images[0].get_content_disposition() == "inline" and len(images[0].get_content()) > 100


def test_each_file_shows_one_recipient_and_only_their_own_details(sent):
    _, files, _ = sent
    for index, path in enumerate(files):
        message = parse(path)
        to = message["To"]
        assert len(to.addresses) == 1 and to.addresses[0].addr_spec == PEOPLE[index].email
        raw = path.read_bytes().decode("ascii").lower()
        for other, person in enumerate(PEOPLE):
            if other != index:
                assert person.email.lower() not in raw
        assert f"rid{index:013d}" in message["List-Unsubscribe"]
        for other in range(len(PEOPLE)):
            if other != index:
                assert f"rid{other:013d}" not in raw


def test_fields_are_escaped_in_html_and_raw_in_text(sent):
    _, files, _ = sent
    first = parse(files[0])
    text, related = first.get_payload()
    html = related.get_payload()[0].get_content()
    assert "Dear Amélie &lt;b&gt;" in html and "<b>" not in html.split("Dear Amélie")[1][:20]
    assert "Dear Amélie <b>" in text.get_content()
    assert first["To"].addresses[0].display_name == "Amélie <b> Hughes-O'Neil"
    third_text = parse(files[2]).get_payload()[0].get_content()
    assert "Dear Parent/Carer" in third_text and "%%" not in third_text


def test_a_line_break_in_data_can_never_become_a_header(sent):
    """A line break in a name or subject is written as a space: the text stays in its own header."""
    _, _, version = sent
    template = MimeTemplate.build(Version(**{**version.__dict__, "subject": "Hi\nBcc: victim@example.com"}))
    evil = make_message(Person("x@example.org", "Eve\r\nBcc: victim@example.com", ""), "r1",
                        _settings_stub())
    _, data = template.render(evil)
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    head = data.split(b"\r\n\r\n")[0]
    assert parsed["Bcc"] is None and b"\nBcc:" not in head
    assert parsed["To"].addresses[0].display_name == "Eve  Bcc: victim@example.com".replace("  ", " ")
    assert parsed["Subject"] == "Hi Bcc: victim@example.com"
    with pytest.raises(TransportError):  # an address that is not one cannot make a message at all
        template.render(make_message(Person("x@exa mple.org", "Eve", ""), "r2", _settings_stub()))


def _settings_stub():
    from mailroom.settings import load_settings
    from tests.send_project import ROOT

    return load_settings(ROOT, environ={})


def test_no_one_click_header_for_a_plain_http_unsubscribe_link(tmp_path):
    newsletter = write_build(tmp_path / "newsletters" / "plain", root=tmp_path,
                             versions={"parents": ("<p>%%greeting%%</p>", "%%greeting%%\n")},
                             images={"dot.png": b"\x89PNG fake"})
    build = load_build(newsletter, root=tmp_path)
    settings = _settings_stub()
    version = make_version(build, settings, "parents")
    assert version.images[0][0] == BuiltImage("dot.png", "image/png", 9)
    message = make_message(PEOPLE[1], "abc", settings)
    message = message._replace(unsubscribe_url="http://example.org/u?r=abc")
    _, data = MimeTemplate.build(version).render(message)
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert parsed["List-Unsubscribe"].startswith("<http://example.org/u?r=abc>")
    assert parsed["List-Unsubscribe-Post"] is None
    assert all_defects(parsed) == []  # type: ignore[arg-type]


def test_decoded_parts_are_exactly_the_personalised_version(sent):
    """The parts are stamped from pre-encoded pieces; decoded, they must equal stage-2 personalisation."""
    from mailroom.send.personalize import personalize
    from mailroom.send.transports.mime import embed_images

    _, files, version = sent
    for index, path in enumerate(files):
        message = parse(path)
        text, related = message.get_payload()
        values = {"greeting": f"Dear {PEOPLE[index].first_name}" if PEOPLE[index].first_name else "Dear Parent/Carer",
                  "first_name": PEOPLE[index].first_name, "last_name": PEOPLE[index].last_name,
                  "unsubscribe_url": f"https://www.oakfield.example.org/newsletter/unsubscribe?r=rid{index:013d}",
                  "recipient_id": f"rid{index:013d}"}
        expected_html = personalize(embed_images(version.html, version), values, is_html=True)
        expected_text = personalize(version.text, values, is_html=False)
        assert related.get_payload()[0].get_content().replace("\r\n", "\n") == expected_html.replace("\r\n", "\n")
        assert text.get_content().replace("\r\n", "\n") == expected_text.replace("\r\n", "\n")
        for line in path.read_bytes().split(b"\r\n"):
            assert len(line) <= 998
