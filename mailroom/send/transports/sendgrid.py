"""SendGrid's v3 Mail Send: up to 1000 people per request, one personalization (one ``to``) each.

The version's HTML and text go once per request; each person's fields travel as ``substitutions``,
with separate tags for the HTML part (values HTML-escaped here, since SendGrid does not) and for the
text part (raw). SendGrid's answer is turned into what dispatch needs to know:
- 2xx: everyone in the request accepted, under one ``X-Message-Id``;
- 429 and 5xx, or no connection at all: known not accepted, worth retrying (429 says how long to wait);
- 400 whose errors point at one person (``personalizations.N...``): that person refused, with SendGrid's
  message, field and help, and the rest sent again without them;
- 400 about the whole request, 401/403/413 and other 4xx: refused for good, with SendGrid's own words;
- a timeout or a connection dropped after the request went out: nobody knows (uncertain).
Every request is valid by SendGrid's published description (docs/sendgrid.md): 1000 personalizations and
addresses at most, each address once and in ASCII (IDN domains as punycode; a person whose mailbox name
is not ASCII is left out with a reason, never failing the request), substitutions and custom_args under
10,000 bytes of UTF-8, at most 10 categories of at most 255 characters with the newsletter's own always
among them, and the body under 30 MB: its exact size is known before it goes (the transport serialises
it itself) and a batch that would pass the limit goes as several requests.
"""

from __future__ import annotations

import base64
import html
import http.client
import json
import json.encoder
import re
import socket
import time
import urllib.error
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.message import Message as HeaderBlock
from email.utils import parsedate_to_datetime
from itertools import chain, repeat
from operator import attrgetter
from typing import Any, NamedTuple, cast

from python_http_client.exceptions import HTTPError

from mailroom.addresses import normalise_address
from mailroom.errors import InputError, TransportError
from mailroom.secrets import mask
from mailroom.send.personalize import html_values
from mailroom.send.transports.base import Batch, BatchResult, Delivery, Message, Transport, Version
from mailroom.send.transports.mime import embed_images, list_unsubscribe
from mailroom.send.transports.sendgrid_http import SendGridConnection
from mailroom.settings import Settings
from mailroom.tokens import RECIPIENT_FIELDS, token

MAX_PERSONALIZATIONS = 1000
MAX_SUBSTITUTION_BYTES = 10_000
MAX_CATEGORIES = 10
MAX_CATEGORY_LENGTH = 255
# SendGrid: "the total size of your email, including attachments, must be less than 30MB". Counted on
# the request body as sent (JSON, UTF-8), which is never smaller than the email it describes.
MAX_REQUEST_BYTES = 30 * 1000 * 1000
_NAME_FORBIDDEN = re.compile(r"[;,\r\n]+")
_MAILBOX = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+"
_SENDABLE = re.compile(_MAILBOX + r"@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?\.[A-Za-z0-9-]{2,}")
# A batch's addresses joined by newlines, each one sendable exactly as written: what _SENDABLE takes, with the
# domain in lower case and its last label (after the last dot) 2 to 24 characters long. Matched without
# backtracking (a regex that backtracked over each domain cost 0.17 µs an address, asked twice a person): each
# part taken whole (possessive), then a look back from the line's end finds the last label and the letter or
# digit before its dot. A longer last label makes the batch take the person-by-person way, which says the same.
_LAST_LABEL = "|".join(f"(?<=[a-z0-9]\\.[a-z0-9-]{{{length}}})" for length in (3, 2, *range(4, 25)))
_ONE_SENDABLE_AS_WRITTEN = f"{_MAILBOX}+@[a-z0-9][a-z0-9.-]*+(?:{_LAST_LABEL})"
_ALL_SENDABLE_AS_WRITTEN = re.compile(f"(?:{_ONE_SENDABLE_AS_WRITTEN}\n)*+{_ONE_SENDABLE_AS_WRITTEN}")
_PERSON_FIELD = re.compile(r"^personalizations\.(\d+)(?:\.|$)")
_CONTENT_TYPE = "application/json; charset=utf-8"
_USER_AGENT = "mailroom (python-http-client)"

# A response's headers as http.client or python_http_client give them (an email.message.Message), or a mapping.
Headers = HeaderBlock | Mapping[str, str] | None


def html_tag(name: str) -> str:
    return token(f"h:{name}")


def text_tag(name: str) -> str:
    return token(f"t:{name}")


def sendable_address(email: str) -> str | None:
    """The address as SendGrid accepts it (ASCII, the domain as punycode), or None if it cannot be sent.

    SendGrid's ``format: email`` refuses any non-ASCII character. An international domain has an ASCII
    spelling (IDNA), so ``idn@exämple.org`` goes as ``idn@xn--exmple-cua.org``; a mailbox name (before
    the @) has none, so ``zoë@example.org`` cannot go through SendGrid at all.
    """
    if _SENDABLE.fullmatch(email):  # the usual case: ASCII with no spaces, so normalising only lower-cases the domain
        domain = email[email.rindex("@") + 1:]
        if domain == domain.lower():
            return email
    address = normalise_address(email)
    # The audience file is checked when read; this only keeps a request from carrying a shape that
    # SendGrid's format check refuses (which would cost the whole request).
    return address if _SENDABLE.fullmatch(address) else None


def _all_sendable_as_written(emails: Sequence[str]) -> bool:
    """Whether ``sendable_address`` gives every one of ``emails`` back as it is (so none has a problem), asked
    of them all at once; False says nothing of any one of them."""
    joined = "\n".join(emails)
    return joined.count("\n") == len(emails) - 1 and _ALL_SENDABLE_AS_WRITTEN.fullmatch(joined) is not None


def _to_tags(template: str, tag: Callable[[str], str]) -> tuple[str, tuple[str, ...]]:
    """Swap the build's tokens for SendGrid tags; also say which fields the template uses."""
    used = []
    for name in RECIPIENT_FIELDS:
        if token(name) in template:
            template = template.replace(token(name), tag(name))
            used.append(name)
    return template, tuple(used)


def categories_for(configured: tuple[str, ...], newsletter: str) -> list[str]:
    """At most 10 unique categories of at most 255 characters; the newsletter's own is always one of them.

    Settings already refuse more than 9 configured names or one over 255 characters; this keeps the
    request valid whatever it is given, dropping configured names before ever dropping the newsletter's.
    """
    own = newsletter[:MAX_CATEGORY_LENGTH]
    others = [c[:MAX_CATEGORY_LENGTH] for c in configured]
    others = [c for c in dict.fromkeys(others) if c != own][:MAX_CATEGORIES - 1]
    return [*others, own]


class _Prepared:
    """The parts of a request that are the same for everyone getting a version (built once)."""

    def __init__(self, version: Version, settings: Settings, sandbox: bool) -> None:
        html, html_fields = _to_tags(embed_images(version.html, version), html_tag)
        text, text_fields = _to_tags(version.text, text_tag)
        subject, subject_fields = _to_tags(version.subject, text_tag)
        self.html_fields = html_fields
        self.text_fields = tuple(dict.fromkeys(text_fields + subject_fields))
        self.fields = frozenset(self.html_fields + self.text_fields)  # the recipient fields the email uses
        headers = {"List-Id": version.list_id}
        if _https(settings.unsubscribe.url):
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        shared: dict[str, Any] = {
            "from": {"email": version.from_email, "name": _clean_name(version.from_name)},
            "reply_to": {"email": version.reply_to},
            "subject": subject,
            "content": [{"type": "text/plain", "value": text}, {"type": "text/html", "value": html}],
            "categories": categories_for(settings.sendgrid.categories, version.newsletter),
            "headers": headers,
            "tracking_settings": {
                "click_tracking": {"enable": settings.tracking.click_tracking, "enable_text": False},
                "open_tracking": {"enable": settings.tracking.open_tracking},
                # SendGrid's own unsubscribe footer would duplicate ours (and leak a second link).
                "subscription_tracking": {"enable": False},
            },
        }
        if version.images:
            shared["attachments"] = [
                {"content": base64.b64encode(data).decode("ascii"), "type": image.content_type,
                 "filename": image.filename, "disposition": "inline", "content_id": image.filename}
                for image, data in version.images]
        if settings.sendgrid.asm_group_id:
            shared["asm"] = {"group_id": settings.sendgrid.asm_group_id}
        if sandbox:
            shared["mail_settings"] = {"sandbox_mode": {"enable": True}}
        self.shared = shared
        # The body is '{"personalizations":[' + people joined by ',' + '],' + the shared fields + '}'. The tail is
        # encoded once: the shared parts (the email itself) often hold a character beyond Latin-1 (a dash, an
        # emoji), which made each request's whole body a 2-byte-per-character string to copy and encode.
        self.head_text = '{"personalizations":['
        self.tail = ("]," + _dumps(shared)[1:]).encode()
        self.fixed_bytes = len(self.head_text) + len(self.tail)
        self.custom_args = {"newsletter": version.newsletter, "audience": version.audience}
        self.mailto = version.unsubscribe_mailto
        # Each person's JSON is written from these pieces (see SendGridTransport.people): the keys and the
        # shared custom_args are encoded once here, only the person's own strings per person.
        self.custom_args_json = '"custom_args":{' + _dumps(self.custom_args)[1:-1] + ',"recipient_id":'
        self.html_keys = tuple((name, _json_string(html_tag(name)) + ":") for name in html_fields)
        self.text_keys = tuple((name, _json_string(text_tag(name)) + ":") for name in self.text_fields)
        # The same JSON as a %-template with a "%s" for each person's string (already JSON-escaped), with
        # and without a name: one person's JSON is then one escape of all their strings and one %.
        self.templates = {with_name: self._template(with_name) for with_name in (True, False)}
        self.longest_template = max(len(template) for template in self.templates.values())
        self.slots = 4 + len(self.html_keys) + len(self.text_keys)  # strings a person's template takes, at most
        # What follows each person's link in their List-Unsubscribe header (for a whole batch at once).
        self.unsubscribe_tail = list_unsubscribe("", self.mailto)[1:]
        # The text around the slots of the template with a name, one more than the slots (``_named_columns``):
        # the template filled with NUL, which JSON text never holds, cut at each NUL. The List-Unsubscribe
        # header's slot (the fourth) takes the person's link alone: its "<" and the tail after the link are
        # the fragments' own text, so a batch needs no header string made per person.
        fragments = (self.templates[True] % (("\0",) * self.slots)).split("\0")
        self.header_extra = 1 + len(_json_string(self.unsubscribe_tail)) - 2  # "<" and the tail, as JSON text
        fragments[3] += "<"
        fragments[4] = _json_string(self.unsubscribe_tail)[1:-1] + fragments[4]
        self.fragments = tuple(fragments)
        # Before the first person of a request, the body's start; before each other, a comma.
        self.first_fragment = self.head_text + fragments[0]
        self.next_fragment = "," + fragments[0]

    def fits_any_person(self, longest: int) -> bool:
        """Whether any person whose strings are at most ``longest`` characters stays within SendGrid's limit: their
        JSON is their template and their strings, bounded in bytes (4 a character at most)."""
        return 4 * (self.longest_template + self.slots * longest) <= MAX_SUBSTITUTION_BYTES

    def _template(self, with_name: bool) -> str:
        def literal(text: str) -> str:
            return text.replace("%", "%%")
        slot = '"%s"'
        parts = ['{"to":[{"email":', slot]
        if with_name:
            parts += [',"name":', slot]
        parts += ["}],", literal(self.custom_args_json), slot, '},"headers":{"List-Unsubscribe":', slot, "}"]
        if self.html_keys or self.text_keys:
            pairs = [literal(key) + slot for _, key in (*self.html_keys, *self.text_keys)]
            parts += [',"substitutions":{', ",".join(pairs), "}"]
        parts.append("}")
        return "".join(parts)


class _Person(NamedTuple):
    """One person's personalization, serialised once: its exact size decides which request it joins."""

    message: Message
    address: str  # as sent (ASCII)
    json: str
    size: int  # bytes of UTF-8


@dataclass(frozen=True)
class SendGridProblem:
    """One entry of a SendGrid error answer: ``{"message", "field", "help"}``."""

    message: str
    field: str | None = None
    help: str | None = None

    def person_index(self) -> int | None:
        """N when ``field`` is about one personalization (``personalizations.N.to.0.email``)."""
        found = _PERSON_FIELD.match(self.field or "")
        return int(found.group(1)) if found else None

    def describe(self) -> str:
        said = self.message.rstrip(".") + "." if self.message else "no reason given."
        extra = [f"field {self.field}"] if self.field else []
        if self.help:
            extra.append(f"help: {self.help}")
        return said + (f" ({'; '.join(extra)})" if extra else "")


class _PeopleRefused(Exception):
    """A 400 whose every error names one personalization: request index -> SendGrid's problems."""

    def __init__(self, problems: dict[int, list[SendGridProblem]]) -> None:
        super().__init__("people refused")
        self.problems = problems


class SendGridTransport(Transport):
    name = "sendgrid"

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time,
                 max_request_bytes: int = MAX_REQUEST_BYTES) -> None:
        self.settings = settings
        self.max_request_bytes = max_request_bytes  # SendGrid's 30 MB; smaller only in tests
        self.max_batch_size = min(settings.sendgrid.batch_size, MAX_PERSONALIZATIONS)
        self.clock = clock
        self._http: SendGridConnection | None = None
        self._prepared: dict[tuple[Version, bool], _Prepared] = {}

    def describe(self) -> str:
        return f"SendGrid ({self.settings.sendgrid.host})"

    def open(self) -> None:
        sg = self.settings.sendgrid
        # The headers the sendgrid library's SendGridAPIClient sets (the same base URL and API version are in
        # SendGridConnection), without importing the sendgrid package: its helpers (cryptography, for the event
        # webhook's signatures) cost every send some 80 million instructions of start-up. The library waits
        # forever by default; a stuck request must end (as "uncertain").
        self._http = SendGridConnection(sg.host, {
            "Authorization": f"Bearer {sg.api_key.reveal()}", "User-Agent": _USER_AGENT, "Accept": "application/json"},
            sg.timeout_seconds)

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
        self._http = None

    def address_problem(self, email: str) -> str | None:
        """Asked at the plan: an address SendGrid cannot take (an accented mailbox name has no ASCII form;
        an IDN domain has, punycode) leaves that person out, named, before anything is sent."""
        if sendable_address(email) is not None:
            return None
        if not email.rpartition("@")[0].isascii():
            return "SendGrid can only send to addresses written in plain letters before the @"
        return "this is not an address SendGrid accepts"

    # The planner asks a chunk of addresses at once, where it can (mailroom.audience.lists): one regex over them.
    setattr(address_problem, "all_fine", _all_sendable_as_written)  # noqa: B010

    def check_version(self, version: Version) -> None:
        """Refuse, before anyone is sent to, a version that can never fit in one SendGrid request."""
        prepared = self._prepare(version, sandbox=False)
        if prepared.fixed_bytes + _ONE_PERSON_BYTES > self.max_request_bytes:
            raise InputError(_too_large(prepared.fixed_bytes, version, self.max_request_bytes))

    def _prepare(self, version: Version, sandbox: bool) -> _Prepared:
        key = (version, sandbox)
        prepared = self._prepared.get(key)
        if prepared is None:
            prepared = self._prepared[key] = _Prepared(version, self.settings, sandbox)
        return prepared

    def people(self, batch: Batch, prepared: _Prepared) -> tuple[list[_Person], BatchResult]:
        """Each person's personalization, plus the people left out before sending and why.

        The usual batch (every address sendable as written, every name tidy, nobody twice, nobody's JSON
        near a limit) is checked and written a whole batch at a time; any other takes the checks person by
        person. Both give the same people and the same JSON (tests/test_sendgrid_json.py).
        """
        refused = self.new_result()  # progress hears of each request of a split batch as it is answered
        messages: Sequence[Message] = batch.messages
        addresses = [message.email for message in messages]
        if _all_sendable_as_written(addresses):
            names = [message.name for message in messages]
            if not _all_tidy(names):
                names = [_clean_name(name) for name in names]
        else:
            messages, addresses, names = self._sendable(messages, refused)
        texts = _personalizations(prepared, messages, addresses, names)
        if len(set("\n".join(addresses).lower().split("\n"))) == len(addresses):  # nobody twice
            whole = "".join(texts)
            sizes = list(map(len, texts)) if whole.isascii() else [len(text.encode()) for text in texts]
            if not sizes or max(sizes) <= MAX_SUBSTITUTION_BYTES:
                # tuple.__new__ over zip: a _Person per person without a Python call per person
                rows = zip(messages, addresses, texts, sizes, strict=True)
                return list(map(tuple.__new__, repeat(_Person), rows)), refused
        return self._checked(prepared, messages, addresses, texts, refused), refused

    @staticmethod
    def _sendable(messages: Sequence[Message], refused: BatchResult) -> tuple[list[Message], list[str], list[str]]:
        """The people SendGrid can take (address as sent, tidy name); the others are refused, with why."""
        kept: list[Message] = []
        addresses: list[str] = []
        names: list[str] = []
        for message in messages:
            address = sendable_address(message.email)
            if address is None:
                shown = message.email.strip()
                why = ("SendGrid can only send to addresses written in plain letters before the @"
                       if not shown.rpartition("@")[0].isascii() else "this is not an address SendGrid accepts")
                refused.add(message.key, Delivery.REJECTED, error=f"{shown}: {why} (not sent)")
                continue
            kept.append(message)
            addresses.append(address)
            names.append(_clean_name(message.name))
        return kept, addresses, names

    @staticmethod
    def _checked(prepared: _Prepared, messages: Sequence[Message], addresses: Sequence[str], texts: Sequence[str],
                 refused: BatchResult) -> list[_Person]:
        """Person by person: an address twice, or a JSON over SendGrid's limits, refuses that person only."""
        people: list[_Person] = []
        seen: set[str] = set()
        for message, address, text in zip(messages, addresses, texts, strict=True):
            lowered = address.lower()
            if lowered in seen:  # never one address twice in a request (SendGrid answers 400)
                refused.add(message.key, Delivery.REJECTED, error="the same address twice in one request")
                continue
            size = len(text) if text.isascii() else len(text.encode())
            # SendGrid counts the substitutions' bytes of UTF-8; they are part of this person's JSON, so
            # only a person whose whole JSON is over the limit needs them counted exactly.
            if size > MAX_SUBSTITUTION_BYTES and (size > _ONE_PERSON_BYTES or _utf8_size(
                    _substitutions(prepared, message.values)) > MAX_SUBSTITUTION_BYTES):
                # only a name of thousands of characters gets here
                refused.add(message.key, Delivery.REJECTED, error="this person's name is too long for SendGrid")
                continue
            seen.add(lowered)
            people.append(_Person(message, address, text, size))
        return people

    def body(self, batch: Batch) -> tuple[dict[str, Any], BatchResult]:
        """The request body for a batch as one dict (for tests), plus the people refused before sending."""
        prepared = self._prepare(batch.version, batch.sandbox)
        people, refused = self.people(batch, prepared)
        return json.loads(_serialise(prepared, people).whole()), refused

    def requests(self, people: list[_Person], prepared: _Prepared, version: Version) -> list[list[_Person]]:
        """People packed in order into requests whose bodies stay under 30 MB (usually just one)."""
        limit = self.max_request_bytes
        if prepared.fixed_bytes + _ONE_PERSON_BYTES > limit:
            raise TransportError(_too_large(prepared.fixed_bytes, version, limit), retryable=False)
        if (len(people) <= MAX_PERSONALIZATIONS
                and prepared.fixed_bytes + sum([person.size for person in people]) + len(people) - 1 <= limit):
            return [people] if people else []  # the usual batch: one request
        packed: list[list[_Person]] = []
        size = limit  # forces a first request
        for person in people:
            if size + 1 + person.size > limit or len(packed[-1]) >= MAX_PERSONALIZATIONS:
                packed.append([])
                size = prepared.fixed_bytes - 1  # no comma before the first person
            packed[-1].append(person)
            size += 1 + person.size
        return packed

    def send_batch(self, batch: Batch) -> BatchResult:
        """Send the batch in as few requests as SendGrid's limits allow; say per person what happened.

        A 400 naming people takes them out and sends the rest again (each time at least one person
        fewer, so this ends). While nobody has been accepted, any other failure is raised for the whole
        batch, as dispatch expects; once some people are accepted it never is (a retry of the whole
        batch would send them twice), and the rest are settled from the error instead.
        """
        prepared = self._prepare(batch.version, batch.sandbox)
        usual = self._usual_request(batch, prepared)
        refused_first: _PeopleRefused | None = None
        if usual is not None:
            try:
                message_id = self._post(usual, len(batch.messages))
            except _PeopleRefused as refused:
                refused_first = refused  # nobody accepted: settled below, person by person
            else:
                result = self.new_result()
                result.add_many([message.key for message in batch.messages], Delivery.SENT, message_id=message_id)
                return result
        people, result = self.people(batch, prepared)
        chunks = self.requests(people, prepared, batch.version)
        if refused_first is not None and [len(chunk) for chunk in chunks] != [len(batch.messages)]:
            refused_first = None  # (never, for a usual batch) its numbering would not fit: ask SendGrid again
        accepted = False
        for chunk in chunks:
            while chunk:
                try:
                    if refused_first is not None:  # the usual request's answer: the same people, in this order
                        answer, refused_first = refused_first, None
                        raise answer
                    message_id = self._post(_serialise(prepared, chunk), len(chunk))
                except _PeopleRefused as refused:
                    for index, problems in refused.problems.items():
                        person = chunk[index]
                        said = " ".join(problem.describe() for problem in problems)
                        result.add(person.message.key, Delivery.REJECTED,
                                   error=f"SendGrid refused {person.address}: {said}")
                    chunk = [p for i, p in enumerate(chunk) if i not in refused.problems]
                    continue
                except TransportError as exc:
                    if not accepted:
                        raise
                    _settle_rest(result, batch, chunk, exc)
                    return result
                accepted = True
                result.add_many([person.message.key for person in chunk], Delivery.SENT, message_id=message_id)
                chunk = []
        return result

    def _usual_request(self, batch: Batch, prepared: _Prepared) -> _Body | None:
        """The batch's one request body (UTF-8), when the batch is the usual one: every address sendable as
        written, nobody twice, tidy names (or names tidied), nobody's JSON near SendGrid's limits and the whole
        within one request. None: the person-by-person way (``people``, ``requests``). A test holds this equal
        to what that way sends.

        The body is made with as few copies as can be (a 1,000-person body is about 0.8 MB, copied five times
        before): the people's JSON is one join that starts with the body's start, encoded once, and goes with
        the shared tail as the body's two parts (``_Body``), never joined."""
        messages = batch.messages
        if not messages or len(messages) > MAX_PERSONALIZATIONS:
            return None
        addresses = [message.email for message in messages]
        if not _all_sendable_as_written(addresses) or len(set(map(str.lower, addresses))) != len(addresses):
            return None
        names = [message.name for message in messages]
        if not _all_tidy(names):
            names = [_clean_name(name) for name in names]
        if all(names):  # the usual batch: everyone's JSON from the one template, a column per slot
            columns = _named_columns(prepared, messages, addresses, names)
            if columns is None:
                return None
            longest = {id(column): max(map(len, column)) for column in {id(c): c for c in columns}.values()}
            # The List-Unsubscribe header's string is its link with "<" and the tail (``_Prepared.fragments``).
            if not prepared.fits_any_person(max(*longest.values(), longest[id(columns[3])] + prepared.header_extra)):
                return None
            # The template's fixed text between the columns' strings, person after person, joined once. The
            # pieces are laid out by slice assignments, a column at a time (no tuple made per person).
            count, fragments = len(messages), prepared.fragments
            width = 2 * len(columns) + 1
            pieces: list[str] = [prepared.next_fragment] * (width * count)
            pieces[0] = prepared.first_fragment
            for at, (column, fragment) in enumerate(zip(columns, fragments[1:], strict=True)):
                pieces[2 * at + 1::width] = column
                pieces[2 * at + 2::width] = [fragment] * count
            people = "".join(pieces).encode()
        else:
            found = _batch_pieces(prepared, messages, addresses, names)
            if found is None:
                return None
            templates, pieces = found
            if not prepared.fits_any_person(max(map(len, pieces), default=0)):
                return None
            people = (prepared.head_text + ",".join(templates) % tuple(pieces)).encode()
        if len(people) + len(prepared.tail) > self.max_request_bytes:
            return None
        return _Body(people, prepared.tail)

    def _post(self, payload: _Body, people: int) -> str | None:
        """One request of ``people`` people; the X-Message-Id on success, ``_PeopleRefused`` or ``TransportError``
        otherwise."""
        if self._http is None:
            self.open()
        assert self._http is not None
        try:
            response = self._http.post(payload, _CONTENT_TYPE, _RequestBody)
        except HTTPError as exc:
            raise self._http_error(exc, people) from None
        except urllib.error.URLError as exc:
            # urllib wraps failures while connecting or sending: SendGrid never got the whole request.
            raise TransportError(f"could not reach SendGrid ({_reason(exc.reason)})", retryable=True) from None
        except (TimeoutError, ConnectionError, http.client.HTTPException, OSError) as exc:
            # After the request went out: it may have been accepted. Never retried automatically.
            raise TransportError(
                f"no answer from SendGrid after the request was sent ({_reason(exc)}); it may or may not "
                "have been accepted", retryable=False, uncertain=True) from None
        return _header(response.headers, "x-message-id")

    def _http_error(self, exc: HTTPError, people: int) -> TransportError | _PeopleRefused:
        status = int(exc.status_code)
        problems = sendgrid_problems(exc.body)
        said = " ".join(problem.describe() for problem in problems)
        told = f" SendGrid said: {said}" if said else ""
        if status == 400 and problems:
            by_person: dict[int, list[SendGridProblem]] = {}
            for problem in problems:
                index = problem.person_index()
                if index is None or index >= people:
                    by_person = {}
                    break
                by_person.setdefault(index, []).append(problem)
            if by_person:
                return _PeopleRefused(by_person)
        if status == 429:
            return TransportError(f"SendGrid asked us to slow down (429).{told}", retryable=True, status=status,
                                  retry_after=self._retry_after(exc.headers))
        if status >= 500:
            return TransportError(f"SendGrid had a problem on its side ({status}).{told}", retryable=True,
                                  status=status, retry_after=self._retry_after(exc.headers))
        if status == 401:
            message = ("SendGrid did not accept the API key (401): it is wrong or has been revoked. "
                       f"Check SENDGRID_API_KEY in .env.{told}")
        elif status == 403:
            message = (f"SendGrid refused to send (403): often the sender address "
                       f"{self.settings.sender.email} is not verified in SendGrid, or the account is "
                       f"blocked.{told}")
        elif status == 413:
            message = f"the email is too large for SendGrid (413): use smaller images.{told}"
        elif status == 400:
            message = f"SendGrid rejected the request as invalid (400).{told}"
        else:
            message = f"SendGrid refused the request ({status}).{told}"
        return TransportError(message, retryable=False, status=status)

    def _retry_after(self, headers: Headers) -> float | None:
        """Seconds to wait, from Retry-After or X-RateLimit-Reset (any spelling, seconds or a time)."""
        for name in ("retry-after", "x-ratelimit-reset"):
            value = _header(headers, name)
            if not value:
                continue
            value = value.strip()
            try:
                number = float(value)
            except ValueError:
                try:
                    return max(0.0, parsedate_to_datetime(value).timestamp() - self.clock())
                except (TypeError, ValueError):
                    continue
            # A reset header holds a Unix time; Retry-After holds seconds.
            return max(0.0, number - self.clock()) if number > 1_000_000_000 else max(0.0, number)
        return None


class _RequestBody(str):
    """The JSON body, already UTF-8, as the ``sendgrid`` library takes it: a str it encodes before sending (the
    way through a proxy, ``sendgrid_http``; the kept connection sends the bytes themselves).

    The text of this str is only a note of the size; ``encode`` gives the body's bytes, as a memoryview of the
    bytes given (the two parts of a ``_Body``, joined for the library). python_http_client (under the library)
    formats every request's payload into a debug log line before it asks whether debug logging is on: for a
    1,000-person body (about 1 MB) as bytes that took 4.4 ms of CPU a request, and would write every address and
    name into a log if debug logging were on. A memoryview formats as ``<memory at 0x...>`` and is sent as it is
    (urllib and http.client take any buffer): nothing personal in a log, and no copy of the body to make it so (a
    bytes subclass that formatted itself cost a copy and a clearing of each body).
    """

    payload: memoryview

    def __new__(cls, payload: bytes) -> _RequestBody:
        body = super().__new__(cls, f"<{len(payload):,} bytes: the people of one request, not logged>")
        body.payload = memoryview(payload)
        return body

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> memoryview:  # type: ignore[override]
        """The body's bytes (UTF-8, the only encoding the library asks for and SendGrid takes)."""
        return self.payload


def _header(headers: Headers, name: str) -> str | None:
    """A header's value whatever its capitalisation (SendGrid spells rate-limit headers several ways)."""
    if headers is None:
        return None
    for key, value in headers.items():
        if str(key).lower() == name:
            return str(value)
    return None


def sendgrid_problems(body: bytes | str | None) -> list[SendGridProblem]:
    """SendGrid's ``errors`` (message, field, help), or [] when the body is not SendGrid's JSON."""
    if not body:
        return []
    try:
        data = json.loads(body)
        entries = data.get("errors", []) if isinstance(data, dict) else []
    except (ValueError, TypeError):
        return []
    problems = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        message, field, help_ = (entry.get(k) for k in ("message", "field", "help"))
        problems.append(SendGridProblem(
            message=mask(str(message or "").strip()), field=str(field) if field else None,
            help=str(help_) if help_ and not isinstance(help_, dict | list) else None))
    return problems


def _substitutions(prepared: _Prepared, values: Mapping[str, str]) -> dict[str, str]:
    """The person's substitutions: HTML tags with escaped values, text tags with raw ones."""
    substitutions = {html_tag(f): v for f, v in html_values({f: values[f] for f in prepared.html_fields}).items()}
    substitutions.update({text_tag(f): values[f] for f in prepared.text_fields})
    return substitutions


def _batch_pieces(prepared: _Prepared, messages: Sequence[Message], addresses: Sequence[str],
                  names: Sequence[str]) -> tuple[list[str], list[str]] | None:
    """Each person's template and, in order, every string that fills them, ready for one %: the personalizations
    as ``_personalization_json`` writes them, for a whole batch at once (None: take the person-by-person way).
    The batch's strings are gathered a column at a time (addresses, names, ids, headers, each field),
    and every person's JSON is made by one % of the version's templates (``_Prepared.templates``) joined by
    NUL, which JSON text never holds. Strings that JSON must escape (a quote, a backslash, a control
    character) are escaped by one call to json's C encoder for the whole batch; the usual batch has none,
    which one look over its text tells. Values holding the separator take the person-by-person way.
    """
    count = len(messages)
    if not count:
        return [], []
    tail = prepared.unsubscribe_tail
    named = all(names)
    fields, slots = _value_columns(prepared, messages)
    columns: list[Sequence[object]] = [
        addresses, names if named else [name or _NO_NAME for name in names], fields["recipient_id"],
        list(map(f"<%s{tail.replace('%', '%%')}".__mod__, fields["unsubscribe_url"])), *slots]
    flat = chain.from_iterable(zip(*columns, strict=True))  # person by person, in template order
    strings = cast("list[str]", list(flat) if named else [string for string in flat if string is not _NO_NAME])
    templates = [prepared.templates[True]] * count if named else [prepared.templates[bool(name)] for name in names]
    # Usually nothing for JSON to escape: the strings are their own JSON. Else one escape for the batch.
    pieces = strings if _json_as_is(" ".join(strings)) else _json_string("\0".join(strings))[1:-1].split("\\u0000")
    # (a value holding NUL, or the text "\u0000" itself, gives more pieces: the person-by-person way)
    return (templates, pieces) if len(pieces) == len(strings) else None


def _value_columns(prepared: _Prepared, messages: Sequence[Message]) -> tuple[dict[str, list[str]], list[list[str]]]:
    """A batch's values a column at a time: each field the email uses and the two every request carries (the
    recipient id and the unsubscribe link), by name; and the columns of the template's HTML slots (values
    escaped for HTML where someone's needs it) then its text slots. A field in both, escaped by nobody, is one
    column, the same list twice."""
    fields = {field: list(map(getter, messages)) for field, getter in _FIELD_OF_MESSAGE.items()
              if field in prepared.fields or field in ("recipient_id", "unsubscribe_url")}
    slots = []
    for field, _ in prepared.html_keys:
        column = fields[field]
        if _any_html_special("".join(column)):  # someone's value needs escaping for HTML: theirs only
            column = [html.escape(v) if _HTML_SPECIAL.search(v) else v for v in column]
        slots.append(column)
    slots += [fields[field] for field, _ in prepared.text_keys]
    return fields, slots


def _named_columns(prepared: _Prepared, messages: Sequence[Message], addresses: Sequence[str],
                   names: Sequence[str]) -> list[Sequence[str]] | None:
    """For a batch where everyone has a name: the strings of each of the template's slots (``_Prepared.fragments``)
    as JSON string content, a column each, in the template's order; None when a value cannot be (it holds NUL, or
    the text "\\u0000"): the person-by-person way. The same strings ``_batch_pieces`` gives, found a column at a
    time: a field used twice (in the HTML and the text) is one column, looked over once. The List-Unsubscribe
    header's column is each person's link (its "<" and tail are the fragments' text). ``addresses`` must each be
    sendable as written (``_all_sendable_as_written``): none holds a character JSON escapes, so they are not
    looked over again."""
    fields, slots = _value_columns(prepared, messages)
    columns: list[Sequence[str]] = [addresses, names, fields["recipient_id"], fields["unsubscribe_url"], *slots]
    distinct = {id(column): column for column in columns}
    # Usually nothing for JSON to escape: each string is its own JSON
    if _json_as_is(" ".join([" ".join(column) for column in distinct.values() if column is not addresses])):
        return columns
    escaped = {key: _json_string("\0".join(column))[1:-1].split("\\u0000") for key, column in distinct.items()}
    if any(len(column) != len(messages) for column in escaped.values()):
        return None
    return [escaped[id(column)] for column in columns]


def _personalizations(prepared: _Prepared, messages: Sequence[Message], addresses: Sequence[str],
                      names: Sequence[str]) -> list[str]:
    """Each person's personalization as JSON text, as ``_personalization_json`` writes it (``_batch_pieces``
    for the whole batch at once, when it can)."""
    found = _batch_pieces(prepared, messages, addresses, names)
    if found is not None:
        templates, pieces = found
        texts = ("\0".join(templates) % tuple(pieces)).split("\0")
        if len(texts) == len(messages):
            return texts
    return [_personalization_json(prepared, address, name, message.recipient_id,
                                  list_unsubscribe(message.unsubscribe_url, prepared.mailto), message.values)
            for message, address, name in zip(messages, addresses, names, strict=True)]


_NO_NAME = object()  # a person without a name: their template has no slot for one
# Each of RECIPIENT_FIELDS as read from a Message.
_FIELD_OF_MESSAGE = {field: attrgetter(field) for field in RECIPIENT_FIELDS}

# What json's encoder escapes in a string (ensure_ascii=False): a quote, a backslash, control characters.
_JSON_ESCAPED = b'"\\' + bytes(range(32))


def _json_as_is(text: str) -> bool:
    """Whether ``text`` is its own JSON string content. Asked of a whole batch's text, on its UTF-8 bytes (which
    hold those characters' bytes only for those characters): a pass at C speed, where str.isprintable cost as
    much as escaping."""
    raw = text.encode("utf-8", "surrogatepass")  # (a lone surrogate is no JSON escape either)
    return len(raw.translate(None, _JSON_ESCAPED)) == len(raw)


def _personalization_json(prepared: _Prepared, address: str, name: str, recipient_id: str, unsubscribe: str,
                          values: Mapping[str, str]) -> str:
    """One personalization as JSON text, the same as ``_dumps`` of its dict, written from pieces.

    Building a dict per person and serialising it was the largest share of the sender's own CPU time
    at 100,000 people (cProfile): here only the person's own strings are encoded, in one call to json's C
    encoder, and dropped into the version's template (``_Prepared.templates``).
    """
    html_values = [values[f] for f, _ in prepared.html_keys]
    if _HTML_SPECIAL.search("".join(html_values)):
        html_values = [html.escape(v) if _HTML_SPECIAL.search(v) else v for v in html_values]
    strings = [address, name, recipient_id, unsubscribe] if name else [address, recipient_id, unsubscribe]
    strings += html_values
    strings += [values[f] for f, _ in prepared.text_keys]
    # All of them escaped in one call, then cut apart again at the separators. A string holding a NUL or
    # the text "\u0000" itself gives one piece too many, and takes the long way below.
    pieces = _json_string("\0".join(strings))[1:-1].split("\\u0000")
    if len(pieces) == len(strings):
        return prepared.templates[bool(name)] % tuple(pieces)
    parts = ['{"to":[{"email":', _json_string(address)]
    if name:
        parts += [',"name":', _json_string(name)]
    parts += ["}],", prepared.custom_args_json, _json_string(recipient_id), '},"headers":{"List-Unsubscribe":',
              _json_string(unsubscribe), "}"]
    if prepared.html_keys or prepared.text_keys:
        pairs = [key + _json_string(html.escape(values[f]) if _HTML_SPECIAL.search(values[f]) else values[f])
                 for f, key in prepared.html_keys]
        pairs += [key + _json_string(values[f]) for f, key in prepared.text_keys]
        parts += [',"substitutions":{', ",".join(pairs), "}"]
    parts.append("}")
    return "".join(parts)


# json's own string encoder (C), as json.dumps(..., ensure_ascii=False) writes a string.
_json_string: Callable[[str], str] = json.encoder.encode_basestring
_HTML_SPECIAL = re.compile(r"[&<>\"']")  # what html.escape(quote=True) changes


def _any_html_special(text: str) -> bool:
    """``_HTML_SPECIAL.search(text)``, faster over a batch's text: five scans at C speed instead of a regex."""
    return "&" in text or "<" in text or ">" in text or '"' in text or "'" in text


class _Body(NamedTuple):
    """A request body as sent (UTF-8), in its two parts: the people's JSON (with the body's start), made per
    request, and the version's shared tail, made once. Sent one after the other, never joined: a join was
    a copy of the whole body, into a new block of memory, for every request."""

    people: bytes
    tail: bytes

    def whole(self) -> bytes:
        return b"".join(self)


def _serialise(prepared: _Prepared, people: list[_Person]) -> _Body:
    """The request body as sent: only the people's JSON is encoded per request."""
    return _Body((prepared.head_text + ",".join([person.json for person in people])).encode(), prepared.tail)


def _dumps(value: object) -> str:
    """JSON as sent: UTF-8 characters as they are (sizes are counted on this), no spaces."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _utf8_size(value: object) -> int:
    return len(_dumps(value).encode())


# Room for one person next to the shared parts: substitutions and custom_args are each capped at 10,000
# bytes, and the address, name and headers add well under 2,000.
_ONE_PERSON_BYTES = 2 * MAX_SUBSTITUTION_BYTES + 2_000


def _too_large(fixed_bytes: int, version: Version, limit: int) -> str:
    images = sum(len(data) for _image, data in version.images)
    return (f"the {version.audience} email is {fixed_bytes / 1_000_000:.1f} MB as SendGrid receives it "
            f"(its images are {images / 1_000_000:.1f} MB before encoding), over SendGrid's limit of "
            f"{limit / 1_000_000:g} MB per email: use fewer or smaller images and compose again")


def _settle_rest(result: BatchResult, batch: Batch, in_flight: list[_Person], exc: TransportError) -> None:
    """After some people were accepted: the request in flight settles from ``exc``; later ones never went."""
    if exc.uncertain:
        delivery = Delivery.UNCERTAIN
    elif exc.retryable:
        delivery = Delivery.NOT_SENT
    else:
        delivery = Delivery.REJECTED
    result.retry_after = exc.retry_after
    for person in in_flight:
        result.add(person.message.key, delivery, error=exc.message)
    for message in batch.messages:
        if message.key not in result.deliveries:
            result.add(message.key, Delivery.NOT_SENT, error=f"not sent yet: {exc.message}")


def _reason(exc: object) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "the connection was refused"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "it took too long to answer"
    if isinstance(exc, http.client.RemoteDisconnected | ConnectionResetError | http.client.IncompleteRead):
        return "the connection was dropped"
    return str(exc) or type(exc).__name__


def _clean_name(name: str) -> str:
    """SendGrid refuses ';' and ',' in a display name; a name is never worth a refused request."""
    if _NAME_UNTIDY.search(name) is None:  # the usual name: nothing to change
        return name
    return " ".join(_NAME_FORBIDDEN.sub(" ", name).split())


# What _clean_name changes: a forbidden character, whitespace other than one space between words.
_NAME_UNTIDY = re.compile(r"[;,\r\n]|\s\s|^\s|\s$|[^\S ]")


def _all_tidy(names: Sequence[str]) -> bool:
    """Whether ``_clean_name`` would leave every one of ``names`` as it is, asked of the whole batch at once
    with str methods (a regex over a batch's names cost 0.3 µs a person). Printable text has no whitespace but
    the plain space; joined by ";", any other ";" is in a name. May say False of a tidy batch, never True of
    an untidy one."""
    joined = ";".join(names)
    return (joined.isprintable() and joined.count(";") == len(names) - 1 and "," not in joined
            and "  " not in joined and "; " not in joined and " ;" not in joined
            and not joined.startswith(" ") and not joined.endswith(" "))


def _https(url: str) -> bool:
    return url.lower().startswith("https://")
