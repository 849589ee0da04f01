"""The one small interface every transport (outbox, SendGrid, SMTP) sits behind.

A transport only turns a batch into whatever its service wants, hands it over and says what became of
each person. The loop, retries, waiting, the ledger and Ctrl-C belong to ``mailroom.send.dispatch``, so
every transport gets the same safety rules for free.

How a transport reports:
- per person, a ``Delivery``: SENT (with the service's message id), REJECTED (this person's message was
  refused for good, e.g. an SMTP 550), NOT_SENT (known not accepted, worth retrying: e.g. the SMTP
  connection failed before this message was handed over) or UNCERTAIN (it may or may not have arrived:
  the connection dropped after the message was handed over).
- for the whole batch at once, by raising ``TransportError``: ``retryable`` (known not accepted, try
  again later), ``uncertain`` (the request went out and no answer came back) or neither (refused for good).
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from mailroom.compose.build import BuiltImage


class Delivery(enum.Enum):
    SENT = "sent"
    REJECTED = "rejected"
    NOT_SENT = "not_sent"
    UNCERTAIN = "uncertain"


@dataclass(frozen=True)
class Version:
    """One audience's email, shared by every message of a batch; transports may cache work per Version."""

    newsletter: str
    audience: str
    subject: str  # already "[TEST] ..." for a test send
    html: str  # tokens (``%%first_name%%``...) still in place; local images as src="images/<file>"
    text: str
    images: tuple[tuple[BuiltImage, bytes], ...]  # (image, its bytes, read and checked when the send began)
    from_name: str
    from_email: str
    reply_to: str
    list_id: str  # the List-Id header's value
    unsubscribe_mailto: str  # mailto: address for List-Unsubscribe ("" for none)
    test: bool = False


class Message(NamedTuple):
    """One person's copy: exactly one recipient, never more. A tuple of plain strings: one is made per person of
    a send, and SendGrid takes a batch's fields a column at a time (a dict per person cost more than the rest
    of making it). ``values`` gives the fields by token name, as the MIME builder fills them in."""

    key: str  # address key (ledger)
    email: str
    name: str  # display name for the To header ("" when unknown)
    recipient_id: str  # opaque id (never the address)
    # the raw per-recipient fields (mailroom.send.personalize.recipient_values), but recipient_id above
    greeting: str
    first_name: str
    last_name: str
    unsubscribe_url: str

    @classmethod
    def with_values(cls, key: str, email: str, name: str, values: Mapping[str, str]) -> Message:
        """A message from recipient_values' fields (``values`` holds every one of RECIPIENT_FIELDS)."""
        return cls(key, email, name, values["recipient_id"], values["greeting"], values["first_name"],
                   values["last_name"], values["unsubscribe_url"])

    @property
    def values(self) -> dict[str, str]:
        """The raw per-recipient fields by name (mailroom.tokens.RECIPIENT_FIELDS), as recipient_values gives them."""
        return {"greeting": self.greeting, "first_name": self.first_name, "last_name": self.last_name,
                "unsubscribe_url": self.unsubscribe_url, "recipient_id": self.recipient_id}


@dataclass(frozen=True)
class Batch:
    """People who get the same version, handed to the transport in one go."""

    batch_id: int
    version: Version
    messages: tuple[Message, ...]
    sandbox: bool = False


@dataclass
class BatchResult:
    """Per person what happened; people missing from ``deliveries`` count as NOT_SENT."""

    deliveries: dict[str, Delivery] = field(default_factory=dict)
    message_ids: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    retry_after: float | None = None  # the service asked us to wait this long before retrying the rest
    # told about each person as they are added (``Transport.on_delivery``): per-message progress
    listener: Callable[[str, Delivery, int], None] | None = field(default=None, repr=False, compare=False)

    def add(self, key: str, delivery: Delivery, *, message_id: str | None = None, error: str | None = None) -> None:
        self.deliveries[key] = delivery
        if message_id:
            self.message_ids[key] = message_id
        if error:
            self.errors[key] = error
        if self.listener is not None:
            self.listener(key, delivery, 1)

    def add_many(self, keys: Sequence[str], delivery: Delivery, *, message_id: str | None = None) -> None:
        """Everyone in ``keys`` alike (a request SendGrid accepted): one step, and one word to the listener."""
        if not keys:
            return
        self.deliveries.update(dict.fromkeys(keys, delivery))
        if message_id:
            self.message_ids.update(dict.fromkeys(keys, message_id))
        if self.listener is not None:
            self.listener(keys[-1], delivery, len(keys))


class Transport(ABC):
    """Name, open, send_batch, close: the whole contract."""

    name: str = "transport"
    #: the most people one ``send_batch`` call may carry (dispatch never exceeds it)
    max_batch_size: int = 100
    #: called with (address key, Delivery, people) as soon as the service has answered for one person (or,
    #: from ``BatchResult.add_many``, for ``people`` alike ending with that key), while the
    #: batch is still going: a transport that sends one message at a time (SMTP, at 30 a minute) lets the
    #: progress bar move per message instead of per batch. Set by dispatch; the ledger still waits for
    #: the batch's result.
    on_delivery: Callable[[str, Delivery, int], None] | None = None
    #: True when each person is a message of its own, handed over and answered one after another (SMTP,
    #: the outbox): dispatch then writes each accepted person to the ledger as it hears of them, so a run
    #: that dies mid-batch never leaves an accepted message "uncertain". A transport that settles a whole
    #: request at once (SendGrid) leaves it False: its people are written together when the batch ends.
    one_message_at_a_time: bool = False

    def new_result(self) -> BatchResult:
        """An empty result that reports each person to ``on_delivery`` as they are added."""
        return BatchResult(listener=self.on_delivery)

    def open(self) -> None:  # noqa: B027 - optional hook, most transports need nothing
        """Connect or prepare; called once before the first batch."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; called once at the end, also after an error or Ctrl-C."""

    @abstractmethod
    def send_batch(self, batch: Batch) -> BatchResult:
        """Hand the batch over and say, per person, what happened; raise TransportError for the whole batch."""

    def check_version(self, version: Version) -> None:  # noqa: B027 - optional hook
        """Raise a ``MailroomError`` if ``version`` can never be sent this way (e.g. over a size limit).

        Called for every version while the send is planned, so nobody is sent to before it is found.
        """

    def address_problem(self, email: str) -> str | None:
        """Why this transport cannot carry a message to ``email`` (None: it can), in words for the office.

        Asked while the audience is planned, so such a person is named in the plan and left out before
        anything is sent (e.g. a mailbox name with accents where the service takes ASCII addresses only).
        """
        return None

    def describe(self) -> str:
        """How the plan names this transport to the office."""
        return self.name

    def plan_notes(self, count: int, sent_recently: int = 0) -> list[str]:
        """Anything the plan should add about sending ``count`` messages this way (time, daily limits);
        ``sent_recently``: messages this transport accepted from mailroom in the last 24 hours."""
        return []

    def __enter__(self) -> Transport:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
