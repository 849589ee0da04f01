"""From a build and a list of people to batches handed to one transport, safely and resumably.

- The plan: who gets which version, who already has it (skipped), who is in an uncertain batch.
- The loop: batches per version, each written to the ledger as in flight before it goes out and
  settled only by what the transport confirms (so the resume point only moves on confirmed sends).
- Retries: only what is known not to have been accepted, with capped exponential backoff and jitter,
  honouring the service's own "wait until" (Retry-After / X-Ratelimit-Reset), a bounded number of times.
- Stopping: Ctrl-C (``stop``) ends the run after the batch in flight, which is recorded first.
- Waiting: the pause before a retry can be scaled down with MAILROOM_RETRY_SCALE (e.g. 0.001) so
  end-to-end tests do not sleep through real backoff; what the person is told is never scaled.
Nothing here prints; progress goes to a callback and the outcome comes back as a ``DispatchReport``.
"""

from __future__ import annotations

import enum
import itertools
import os
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from mailroom.addresses import address_key, normalise_address
from mailroom.compose.build import Build
from mailroom.errors import InputError, TransportError
from mailroom.send.ledger import (
    BatchKind,
    BatchState,
    Ledger,
    Outcome,
    SendState,
    TestSend,
    UncertainBatch,
)
from mailroom.send.personalize import recipient_values
from mailroom.send.transports.base import Batch, BatchResult, Delivery, Message, Transport, Version
from mailroom.settings import Settings

_LOOKUP_WINDOW = 1000  # people whose ledger state is read in one query while batching


class Person(Protocol):
    """What dispatch needs of a recipient (``mailroom.audience.lists.Recipient`` has it); read only."""

    @property
    def email(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def first_name(self) -> str: ...
    @property
    def last_name(self) -> str: ...
    @property
    def audience(self) -> str: ...
    @property
    def language(self) -> str: ...  # as the audiences file gives it; "" for the school's language


# --- versions -----------------------------------------------------------------------------------------

def version_for(build: Build, audience: str, language: str) -> str:
    """The version a reader on ``audience`` whose language is ``language`` gets (notes/VERSIONS.md).

    ``parents.pl`` when the build has it; otherwise (the school's language, or a language that could not
    be made) the school-language version ``parents``.
    """
    if language:
        slug = f"{audience}.{language}"
        if slug in build.versions:
            return slug
    return audience


def language_versions(build: Build, audience: str) -> list[str]:
    """``audience``'s versions in the build: the school's language first, then the others by tag."""
    return [audience, *sorted(name for name in build.versions if name.startswith(f"{audience}."))]


def make_version(build: Build, settings: Settings, audience: str, *, test: bool = False) -> Version:
    """The version named ``audience`` (``parents``, ``parents.pl``), as every transport receives it."""
    built = build.versions.get(audience)
    if built is None:
        raise InputError(
            f"this newsletter has no version for the list '{audience}': add it to the audiences in the "
            f"newsletter's front matter and compose again", build.newsletter_dir / "newsletter.md")
    domain = settings.sender.email.rpartition("@")[2]
    list_name = audience.partition(".")[0]
    return Version(
        newsletter=build.slug,
        audience=audience,
        subject=f"[TEST] {built.subject or build.subject}" if test else (built.subject or build.subject),
        html=built.html(),
        text=built.text(),
        images=tuple((image, build.image_path(image)) for image in built.images),
        from_name=settings.sender.name,
        from_email=settings.sender.email,
        reply_to=settings.sender.reply_to,
        list_id=f"{settings.school.name} {list_name} <{list_name}.{domain}>",
        unsubscribe_mailto=settings.unsubscribe.mailto,
        test=test,
    )


def make_message(person: Person, recipient_id: str, settings: Settings) -> Message:
    """One person's copy: their fields, their unsubscribe link, nobody else's."""
    greeting = settings.lists[person.audience].greeting if person.audience in settings.lists else "Hello"
    values = recipient_values(
        first_name=person.first_name, last_name=person.last_name, default_greeting=greeting,
        unsubscribe_url=settings.unsubscribe.url.replace("{recipient_id}", recipient_id),
        recipient_id=recipient_id)
    name = " ".join(part for part in (person.first_name.strip(), person.last_name.strip()) if part)
    return Message(key=person.key, email=person.email, name=name, recipient_id=recipient_id, values=values)


# --- the plan -------------------------------------------------------------------------------------------

@dataclass
class SendPlan:
    """Who gets what this run; the CLI shows it before anything goes out."""

    newsletter: str
    audiences: tuple[str, ...]
    to_send: dict[str, int]  # audience -> people to send to now
    already_sent: int
    retrying: int  # known not to have been accepted last time: sent again now
    uncertain: list[UncertainBatch]  # outcome unknown and not resolved by a flag
    resending_uncertain: int
    test_sends: list[TestSend] = field(default_factory=list)
    languages: dict[str, int] = field(default_factory=dict)  # version language ("" the school's) -> people
    english_instead: dict[str, int] = field(default_factory=dict)  # a reader language not made -> people

    @property
    def total(self) -> int:
        return sum(self.to_send.values())


def plan_send(build: Build, people: Iterable[Person], audiences: Sequence[str], ledger: Ledger, *,
              resend_uncertain: bool = False) -> SendPlan:
    """Compare the people on the lists with the ledger; nothing is written."""
    for audience in audiences:
        if audience not in build.versions:
            raise InputError(
                f"this newsletter has no version for the list '{audience}': add it to the audiences in the "
                f"newsletter's front matter and compose again", build.newsletter_dir / "newsletter.md")
    to_send: Counter[str] = Counter({a: 0 for a in audiences})
    languages: Counter[str] = Counter()
    english_instead: Counter[str] = Counter()
    already = retrying = resending = 0
    remaining = iter(people)  # read once, a window at a time: the people may be streamed from a file
    while window := list(itertools.islice(remaining, _LOOKUP_WINDOW)):
        rows = ledger.states(build.slug, [p.key for p in window])
        for person in window:
            row = rows.get(person.key)
            state = row.state if row else SendState.PENDING
            if state == SendState.SENT:
                already += 1
                continue
            if state in (SendState.UNCERTAIN, SendState.IN_FLIGHT):
                if not resend_uncertain:
                    continue
                resending += 1
            elif state == SendState.FAILED:
                retrying += 1
            to_send[person.audience] += 1
            language = version_for(build, person.audience, person.language).partition(".")[2]
            languages[language] += 1
            if person.language and not language and not _school_language(build, person.audience, person.language):
                english_instead[person.language] += 1
    uncertain = [] if resend_uncertain else ledger.uncertain_batches(build.slug)
    return SendPlan(newsletter=build.slug, audiences=tuple(audiences), to_send=dict(to_send),
                    already_sent=already, retrying=retrying, uncertain=uncertain,
                    resending_uncertain=resending, test_sends=ledger.test_sends(build.slug, build.build_hash),
                    languages=dict(languages), english_instead=dict(english_instead))


def _school_language(build: Build, audience: str, language: str) -> bool:
    """Whether ``language`` is the language of ``audience``'s own version (``en`` for an ``en-GB`` school)."""
    own = build.versions[audience].language if audience in build.versions else ""
    return bool(own) and own.split("-")[0].lower() == language.split("-")[0].lower()


def live_batches(build: Build, settings: Settings, people: Iterable[Person], audiences: Sequence[str],
                 ledger: Ledger, size: int, *, resend_uncertain: bool = False
                 ) -> Iterator[tuple[Version, list[Message]]]:
    """The run's batches, made lazily: one version per batch, people read from the ledger just in time.

    Only rendered messages for one batch exist at a time, so memory stays flat however long the list.
    ``people`` is read through once per audience, so it must be re-iterable (a list, or the
    ``Recipients`` of an audience plan, which reads the file again).
    """
    sendable = {SendState.PENDING, SendState.FAILED}
    if resend_uncertain:
        sendable |= {SendState.UNCERTAIN, SendState.IN_FLIGHT}
    for audience, slug in ((a, s) for a in audiences for s in language_versions(build, a)):
        version = make_version(build, settings, slug)
        waiting: dict[str, Person] = {}  # key -> person, in order; a key twice is queued once
        mine = (p for p in people if p.audience == audience and version_for(build, audience, p.language) == slug)
        while True:
            # Read the ledger only after earlier batches were settled (the consumer sends each batch
            # before asking for the next), so someone already sent is never queued again.
            window = [p for _, p in zip(range(_LOOKUP_WINDOW), mine, strict=False)]
            if window:
                rows = ledger.states(build.slug, [p.key for p in window])
                for person in window:
                    row = rows.get(person.key)
                    if row is None or row.state in sendable:
                        waiting.setdefault(person.key, person)
            while len(waiting) >= size or (waiting and not window):
                chunk = [waiting.pop(key) for key in list(itertools.islice(waiting, size))]
                ids = ledger.recipient_ids([p.key for p in chunk])
                yield version, [make_message(p, ids[p.key], settings) for p in chunk]
            if not window:
                break


# --- retries --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RetryPolicy:
    """How long and how often to try again; the defaults suit SendGrid and an SMTP relay."""

    max_attempts: int = 6  # tries per batch, the first included
    base_delay: float = 2.0  # seconds before the first retry (before jitter)
    max_delay: float = 60.0  # backoff cap
    max_wait: float = 900.0  # longest we wait for a service's own reset time

    def delay(self, retry_number: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry_number`` (1 = the first retry)."""
        backoff = min(self.max_delay, self.base_delay * 2 ** (retry_number - 1))
        jittered = backoff / 2 + rng.uniform(0, backoff / 2)
        if retry_after is not None and retry_after > 0:
            return min(self.max_wait, max(retry_after, jittered / 4))
        return jittered


# --- the loop ---------------------------------------------------------------------------------------------

class StopReason(enum.StrEnum):
    """Why a run ended before every batch was tried."""

    INTERRUPTED = "interrupted"  # Ctrl-C: the batch in flight was finished and recorded first
    REFUSED = "refused"  # the service refused for good (bad key, unverified sender): retrying cannot help
    GAVE_UP = "gave_up"  # retries used up
    UNKNOWN_OUTCOME = "uncertain"  # a request went out and no answer came back


RETRY_SCALE_VARIABLE = "MAILROOM_RETRY_SCALE"


def retry_time_scale(environ: Mapping[str, str] | None = None) -> float:
    """The factor applied to every pause before a retry (1 unless MAILROOM_RETRY_SCALE says otherwise)."""
    text = (os.environ if environ is None else environ).get(RETRY_SCALE_VARIABLE, "").strip()
    try:
        scale = float(text) if text else 1.0
    except ValueError:
        return 1.0
    return scale if 0 <= scale <= 1 else 1.0


@dataclass
class DispatchReport:
    sent: int = 0
    failed: int = 0  # refused for good or retries used up: known not accepted, a rerun tries again
    uncertain: int = 0
    requests: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    uncertain_batches: list[int] = field(default_factory=list)
    stopped: StopReason | None = None
    stop_message: str | None = None
    confirmed_test_batches: list[int] = field(default_factory=list)


@dataclass
class Progress:
    """What the progress display needs after each step."""

    done: int  # people settled this run (sent, failed or uncertain)
    sent: int
    note: str | None = None  # e.g. "SendGrid asked us to slow down; waiting 12 s"
    # one person settled inside a batch still going (an SMTP relay answers message by message); the
    # ledger is written when the batch ends, with a last Progress that is not partial
    partial: bool = False


class Dispatcher:
    """Hands batches to one transport, records every step in the ledger, retries what is safe to retry."""

    def __init__(self, transport: Transport, ledger: Ledger, *, newsletter: str, build_hash: str,
                 kind: BatchKind = BatchKind.LIVE, policy: RetryPolicy | None = None,
                 sleep: Callable[[float], None] | None = None, rng: random.Random | None = None,
                 stop: threading.Event | None = None,
                 on_progress: Callable[[Progress], None] | None = None) -> None:
        self.transport = transport
        self.ledger = ledger
        self.newsletter = newsletter
        self.build_hash = build_hash
        self.kind = kind
        self.policy = policy or RetryPolicy()
        self.stop = stop or threading.Event()
        self._sleep = sleep or self._interruptible_sleep
        self._time_scale = retry_time_scale()
        self.rng = rng or random.Random()
        self.on_progress = on_progress or (lambda progress: None)
        self.report = DispatchReport()
        self._heard_done = self._heard_sent = 0  # settled so far in the batch being sent (per-message progress)
        self._batch_id: int | None = None  # the batch being sent, for recording people as they are heard of
        transport.on_delivery = self._heard

    def _interruptible_sleep(self, seconds: float) -> None:
        self.stop.wait(seconds * self._time_scale)

    def run(self, batches: Iterable[tuple[Version, list[Message]]]) -> DispatchReport:
        for version, messages in batches:
            if self.stop.is_set():
                self.report.stopped = StopReason.INTERRUPTED
                break
            if not messages:
                continue
            self._one_batch(version, messages)
            if self.report.stopped:
                break
        return self.report

    def _one_batch(self, version: Version, messages: list[Message]) -> None:
        batch_id = self.ledger.begin_batch(
            newsletter=self.newsletter, audience=version.audience, kind=self.kind,
            transport=self.transport.name, build_hash=self.build_hash, keys=[m.key for m in messages])
        self._batch_id = batch_id
        sent_before, uncertain_before = self.report.sent, self.report.uncertain
        remaining = list(messages)
        message_id: str | None = None
        last_error: str | None = None
        attempt = 0
        while remaining:
            attempt += 1
            batch = Batch(batch_id=batch_id, version=version, messages=tuple(remaining),
                          sandbox=self.kind == BatchKind.SANDBOX)
            self.ledger.count_attempt(batch_id)
            self.report.requests += 1
            self._heard_done = self._heard_sent = 0
            try:
                result = self.transport.send_batch(batch)
            except TransportError as exc:
                self._heard_done = self._heard_sent = 0
                last_error = exc.message
                if exc.uncertain:
                    self._settle(batch_id, remaining, SendState.UNCERTAIN, error=exc.message)
                    self.report.uncertain_batches.append(batch_id)
                    self.report.stopped, self.report.stop_message = StopReason.UNKNOWN_OUTCOME, exc.message
                    break
                if not exc.retryable:
                    self._settle(batch_id, remaining, SendState.FAILED, error=exc.message)
                    self.report.stopped, self.report.stop_message = StopReason.REFUSED, exc.message
                    break
                if not self._wait_before_retry(attempt, exc.retry_after, exc.message):
                    self._settle(batch_id, remaining, SendState.FAILED, error=exc.message)
                    break
                continue
            self._heard_done = self._heard_sent = 0  # now counted in the report, by _record
            remaining, message_id, last_error = self._record(batch_id, remaining, result, message_id, last_error)
            if remaining and not self._wait_before_retry(attempt, result.retry_after, last_error):
                self._settle(batch_id, remaining, SendState.FAILED, error=last_error)
                break
        self._finish(batch_id, len(messages), sent_before, uncertain_before, message_id, last_error)

    def _record(self, batch_id: int, remaining: list[Message], result: BatchResult, message_id: str | None,
                last_error: str | None) -> tuple[list[Message], str | None, str | None]:
        """Write what the transport confirmed; return who is still to be tried."""
        outcomes: list[Outcome] = []
        still: list[Message] = []
        for message in remaining:
            delivery = result.deliveries.get(message.key, Delivery.NOT_SENT)
            error = result.errors.get(message.key)
            if delivery is Delivery.SENT:
                mid = result.message_ids.get(message.key)
                message_id = message_id or mid
                outcomes.append(Outcome(message.key, SendState.SENT, message_id=mid))
                self.report.sent += 1
            elif delivery is Delivery.REJECTED:
                outcomes.append(Outcome(message.key, SendState.FAILED, error=error))
                self.report.failed += 1
                self.report.errors[error or "refused"] += 1
            elif delivery is Delivery.UNCERTAIN:
                outcomes.append(Outcome(message.key, SendState.UNCERTAIN, error=error))
                self.report.uncertain += 1
                if batch_id not in self.report.uncertain_batches:
                    self.report.uncertain_batches.append(batch_id)
            else:
                still.append(message)
            last_error = error or last_error
        self.ledger.record_outcomes(batch_id, self.newsletter, self.kind, outcomes)
        self._progress()
        return still, message_id, last_error

    def _settle(self, batch_id: int, messages: list[Message], state: SendState, *, error: str | None) -> None:
        self.ledger.record_outcomes(batch_id, self.newsletter, self.kind,
                                    [Outcome(m.key, state, error=error) for m in messages])
        if state == SendState.UNCERTAIN:
            self.report.uncertain += len(messages)
        else:
            self.report.failed += len(messages)
            self.report.errors[error or "not accepted"] += len(messages)
        self._progress()

    def _wait_before_retry(self, attempt: int, retry_after: float | None, reason: str | None) -> bool:
        """Wait, unless attempts are used up or the user pressed Ctrl-C; False means give up on the batch."""
        if attempt >= self.policy.max_attempts:
            self.report.stopped, self.report.stop_message = StopReason.GAVE_UP, reason
            return False
        if self.stop.is_set():
            self.report.stopped = StopReason.INTERRUPTED
            return False
        delay = self.policy.delay(attempt, retry_after, self.rng)
        said = (reason or "Not accepted").rstrip().rstrip(".")
        self._progress(f"{said}. Trying again in {delay:.0f} s.")
        self._sleep(delay)
        if self.stop.is_set():
            self.report.stopped = StopReason.INTERRUPTED
            return False
        return True

    def _finish(self, batch_id: int, size: int, sent_before: int, uncertain_before: int,
                message_id: str | None, error: str | None) -> None:
        sent = self.report.sent - sent_before
        uncertain = self.report.uncertain - uncertain_before
        if sent == size:
            state = BatchState.SENT
        elif uncertain:
            state = BatchState.UNCERTAIN
        elif sent:
            state = BatchState.PARTLY_SENT
        else:
            state = BatchState.FAILED
        self.ledger.finish_batch(batch_id, state, message_id=message_id,
                                 error=None if state == BatchState.SENT else error)
        if state == BatchState.SENT and self.kind == BatchKind.TEST:
            self.report.confirmed_test_batches.append(batch_id)

    def _progress(self, note: str | None = None) -> None:
        r = self.report
        self.on_progress(Progress(done=r.sent + r.failed + r.uncertain, sent=r.sent, note=note))

    def _heard(self, key: str, delivery: Delivery) -> None:
        """The transport settled one person mid-batch: move the progress on now, not when the batch ends
        (at 30 messages a minute a batch of ten takes 20 seconds). NOT_SENT is not settled: it is retried.

        From a transport that sends one message at a time, a person the service accepted is written to
        the ledger as sent at once (the batch's end adds the message id), so a run that dies mid-batch
        leaves only the people after them uncertain, and ``--resend-uncertain`` never repeats a message
        already accepted.
        """
        if delivery is Delivery.NOT_SENT:
            return
        if delivery is Delivery.SENT and self._batch_id is not None and self.transport.one_message_at_a_time:
            self.ledger.record_outcomes(self._batch_id, self.newsletter, self.kind, [Outcome(key, SendState.SENT)])
        self._heard_done += 1
        self._heard_sent += delivery is Delivery.SENT
        r = self.report
        self.on_progress(Progress(done=r.sent + r.failed + r.uncertain + self._heard_done,
                                  sent=r.sent + self._heard_sent, partial=True))


def test_batches(build: Build, settings: Settings, audiences: Sequence[str], address: str,
                 recipient_id: str, languages: Sequence[str] | None = None) -> Iterator[tuple[Version, list[Message]]]:
    """One copy of each chosen version, subject marked [TEST], to one address.

    Every language's version of each list, or only those of ``languages`` (the school's language among
    them by its own tag, e.g. ``en-GB``, or ``en``).
    """
    key = address_key(address)  # one key and one spelling for an address, as the audience stage has them
    for audience in audiences:
        for slug in test_versions(build, settings, audience, languages):
            version = make_version(build, settings, slug, test=True)
            person = _TestPerson(email=normalise_address(address), key=key, first_name="", last_name="",
                                 audience=audience)
            yield version, [make_message(person, recipient_id, settings)]


def test_versions(build: Build, settings: Settings, audience: str, languages: Sequence[str] | None) -> list[str]:
    """The versions of ``audience`` a test sends: all of them, or those in ``languages``."""
    everything = language_versions(build, audience)
    if not languages:
        return everything
    school = settings.school.language.split("-")[0].lower()
    chosen = []
    for slug in everything:
        tag = slug.partition(".")[2]
        if (tag in languages) or (not tag and any(lang.split("-")[0].lower() == school for lang in languages)):
            chosen.append(slug)
    return chosen


@dataclass(frozen=True)
class _TestPerson:
    email: str
    key: str
    first_name: str
    last_name: str
    audience: str
    language: str = ""

