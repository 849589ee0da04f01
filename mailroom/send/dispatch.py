"""From a build and a list of people to batches handed to one transport, safely and resumably.

- The plan: who gets which version, who already has it (skipped), who is in an uncertain batch; drafted
  into the ledger from the lists, frozen there when confirmed, and sent from there (``PlannedBatches``).
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
import os
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import repeat
from typing import Protocol, cast

from mailroom.addresses import address_key, normalise_address
from mailroom.audience.lists import PackedRecipients
from mailroom.compose.build import Build, FrozenBuild, freeze_build
from mailroom.errors import InputError, TransportError
from mailroom.send.ledger import (
    SENDABLE,
    SENDABLE_RESENDING,
    BatchKind,
    BatchState,
    BuildCount,
    Ledger,
    Outcome,
    PlanColumns,
    PlanFigures,
    PlanGroup,
    PlannedBatch,
    PlannedPerson,
    SendState,
    TestSend,
    UncertainBatch,
    plan_columns,
)
from mailroom.send.personalize import DEAR
from mailroom.send.transports.base import Batch, BatchResult, Delivery, Message, Transport, Version
from mailroom.settings import Settings
from mailroom.versions import VersionKey


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
    def version(self) -> str: ...
    @property
    def language(self) -> str: ...  # as the audiences file gives it; "" for the school's language


# --- versions -----------------------------------------------------------------------------------------

def versions_to_send(build: Build | FrozenBuild, lists: Sequence[str]) -> list[str]:
    """The build's versions a send to ``lists`` can use: each list alone and their combinations, in each
    language made; the school's language first, fewer lists first. Refuses a list with no version."""
    chosen = set(lists)
    for name in lists:
        if name not in build.versions:
            raise InputError(
                f"this newsletter has no version for the list '{name}': add it to the audiences in the "
                f"newsletter's front matter and compose again", build.newsletter_dir / "newsletter.md")
    keys = {slug: VersionKey.from_slug(slug) for slug in build.versions}
    usable = [slug for slug, key in keys.items() if set(key.lists) <= chosen]
    return sorted(usable, key=lambda slug: (bool(keys[slug].language), len(keys[slug].lists)))


def person_version(build: Build | FrozenBuild, person: Person) -> str:
    """The version ``person`` gets (notes/VERSIONS.md): their lists' version in their language when the
    build has it; otherwise (the school's language, or one that could not be made) in the school's."""
    return version_in_language(build, person.version, person.language)


def version_in_language(build: Build | FrozenBuild, version: str, language: str) -> str:
    """``version`` (a slug in the school's language) in ``language`` if the build has it, else ``version``."""
    if language:
        slug = VersionKey(VersionKey.from_slug(version).lists, language).slug
        if slug in build.versions:
            return slug
    return version


def _no_version(build: Build | FrozenBuild, slug: str) -> InputError:
    return InputError(
        f"this build has no version for people on {' and '.join(VersionKey.from_slug(slug).lists)} "
        f"('{slug}'); compose the newsletter again so it makes one", build.newsletter_dir / "newsletter.md")


def make_version(build: FrozenBuild | Build, settings: Settings, audience: str, *, test: bool = False) -> Version:
    """The version named ``audience`` (a slug: ``parents``, ``parents+staff``, ``parents.pl``), as every
    transport receives it.

    From a ``FrozenBuild`` (what a send uses) nothing is read from disk; a plain ``Build`` is frozen
    (read and checked) for this one version first.
    """
    if audience not in build.versions:
        raise _no_version(build, audience)
    frozen = build if isinstance(build, FrozenBuild) else freeze_build(build, [audience])
    content = frozen.versions.get(audience)
    if content is None:
        raise _no_version(build, audience)
    domain = settings.sender.email.rpartition("@")[2]
    list_name = audience.partition(".")[0]
    return Version(
        newsletter=frozen.slug,
        audience=audience,
        subject=f"[TEST] {content.subject or frozen.subject}" if test else (content.subject or frozen.subject),
        html=content.html,
        text=content.text,
        images=content.images,
        from_name=settings.sender.name,
        from_email=settings.sender.email,
        reply_to=settings.sender.reply_to,
        list_id=f"{settings.school.name} {list_name} <{list_name}.{domain}>",
        unsubscribe_mailto=settings.unsubscribe.mailto,
        test=test,
    )


def make_message(person: Person, recipient_id: str, settings: Settings) -> Message:
    """One person's copy: their fields, their unsubscribe link, nobody else's."""
    return MessageMaker(settings)(person, recipient_id)


class MessageMaker:
    """``make_message`` for the many people of a send: what it needs of the settings looked up once."""

    def __init__(self, settings: Settings) -> None:
        self.greetings = {name: mailing_list.greeting for name, mailing_list in settings.lists.items()}
        self.unsubscribe_url_parts = settings.unsubscribe.url.split("{recipient_id}")

    def __call__(self, person: Person, recipient_id: str) -> Message:
        return self.many([(person, recipient_id)])[0]

    def many(self, people: Iterable[tuple[Person, str]]) -> list[Message]:
        """A message for each (person, their opaque id)."""
        pairs = list(people)
        if not pairs:
            return []
        persons, recipient_ids = zip(*pairs, strict=True)
        return self.columns([p.key for p in persons], [p.email for p in persons], [p.first_name for p in persons],
                            [p.last_name for p in persons], [p.audience for p in persons], recipient_ids)

    def batch(self, batch: PlannedBatch, recipient_ids: Sequence[str]) -> list[Message]:
        """The messages of a batch of the plan (``recipient_ids``: the batch's, each made by now)."""
        return self.columns(batch.keys, batch.emails, batch.first_names, batch.last_names, batch.greeting_list_of(),
                            recipient_ids)

    def columns(self, keys: Sequence[str], emails: Sequence[str], first_names: Sequence[str],
                last_names: Sequence[str], greeting_lists: Sequence[str],
                recipient_ids: Sequence[str]) -> list[Message]:
        """A message for each person, from their fields a column at a time: this runs for every person of a send.

        The values are recipient_values' (a test holds them equal). Each column is made by one map in C where
        everyone is alike (all have a first and a last name, the usual batch), so there is no Python step per
        person; the tuple of each message is made in C too.
        """
        firsts = list(map(str.strip, first_names))
        lasts = list(map(str.strip, last_names))
        if all(firsts):
            greetings = list(map(DEAR.__add__, firsts))
        else:
            own = self.greetings
            greetings = [DEAR + first if first else own.get(listed, "Hello")
                         for first, listed in zip(firsts, greeting_lists, strict=True)]
        if all(firsts) and all(lasts):
            names = list(map(" ".join, zip(firsts, lasts, strict=True)))
        else:
            names = [f"{first} {last}" if first and last else first or last
                     for first, last in zip(firsts, lasts, strict=True)]
        urls = map(str.join, recipient_ids, repeat(self.unsubscribe_url_parts))
        return list(map(_new_message, zip(keys, emails, names, recipient_ids, greetings, firsts, lasts, urls,
                                          strict=True)))


_new_message = partial(tuple.__new__, Message)  # a Message from a tuple of its fields, with no Python call


# --- the plan -------------------------------------------------------------------------------------------

@dataclass
class SendPlan:
    """Who gets what this run; the CLI shows it before anything goes out."""

    newsletter: str
    audiences: tuple[str, ...]  # the versions (slugs) this send can use, in sending order
    to_send: dict[str, int]  # version slug -> people to send it to now
    already_sent: int
    retrying: int  # known not to have been accepted last time: sent again now
    uncertain: list[UncertainBatch]  # outcome unknown and not resolved by a flag
    resending_uncertain: int
    test_sends: list[TestSend] = field(default_factory=list)
    planned_before: bool = False  # an earlier run planned this newsletter (so "changes" mean something)
    new_people: int = 0  # in this plan and not in the last run's
    now_left_out: int = 0  # in the last run's plan, not sent, and not in this one
    now_left_out_keys: tuple[str, ...] = ()  # the first few of them
    build_hash: str = ""
    composed_at: str = ""  # when this build was composed (ISO UTC)
    sent_by_build: tuple[BuildCount, ...] = ()  # who already has it, per build
    languages: dict[str, int] = field(default_factory=dict)  # version language ("" the school's) -> people
    english_instead: dict[str, int] = field(default_factory=dict)  # a reader language not made -> people

    @property
    def total(self) -> int:
        return sum(self.to_send.values())

    @property
    def earlier_builds(self) -> tuple[BuildCount, ...]:
        """People who already have a version made from another build than this one."""
        return tuple(b for b in self.sent_by_build if b.build_hash != self.build_hash)


def planned_people(build: FrozenBuild, people: Iterable[Person]) -> Iterator[PlanColumns]:
    """The people of an audience plan as the ledger's plan holds them, a chunk at a time as columns: the version
    each gets is decided here, once (their lists and language today; notes/VERSIONS.md), and stored as its
    slug. Someone whose combination of lists the build lacks stops the plan before anything is drafted or
    sent."""
    def version_of(version: str, language: str) -> str:
        chosen = version_in_language(build, version, language)
        if chosen not in build.versions:
            raise _no_version(build, chosen)
        return chosen

    if isinstance(people, PackedRecipients):  # the planner's people: decided per group, no object per person
        yield from people.planned(version_of)
        return
    yield from plan_columns(PlannedPerson(p.key, p.email, p.first_name, p.last_name, p.audience,
                                          version_of(p.version, p.language), p.language) for p in people)


def plan_send(build: FrozenBuild, people: Iterable[Person], audiences: Sequence[str], ledger: Ledger, *,
              resend_uncertain: bool = False) -> SendPlan:
    """Draft ``people`` into the ledger (read once, streamed) and compare them with what it holds.

    Nothing is decided: ``Ledger.freeze_plan`` makes the draft the plan when the office confirms.
    """
    versions = versions_to_send(build, audiences)  # refuses a list with no version
    # A newsletter's first send, from the planner's people: each address once, nothing in the ledger to compare.
    first = isinstance(people, PackedRecipients) and not ledger.has_rows(build.slug)
    ledger.draft_columns(planned_people(build, people), keys_unique=first)
    figures = (_first_send_figures(build, people) if isinstance(people, PackedRecipients) and first
               else ledger.plan_figures(build.slug, resend_uncertain=resend_uncertain))
    to_send: Counter[str] = Counter({v: 0 for v in versions})  # people per version
    languages: Counter[str] = Counter()
    english_instead: Counter[str] = Counter()
    already = retrying = resending = new = 0
    for group in figures.groups:
        people_in = group.people
        if group.state == SendState.SENT:
            already += people_in
            continue
        if group.state in (SendState.UNCERTAIN, SendState.IN_FLIGHT):
            if not resend_uncertain:
                continue
            resending += people_in
        elif group.state == SendState.FAILED:
            retrying += people_in
        elif group.state in (None, SendState.LEFT_OUT):
            new += people_in
        to_send[group.version] += people_in
        language = group.version.partition(".")[2]
        languages[language] += people_in
        if group.language and not language and not _school_language(build, group.greeting_list, group.language):
            english_instead[group.language] += people_in
    uncertain = [] if resend_uncertain else ledger.uncertain_batches(build.slug)
    return SendPlan(newsletter=build.slug, audiences=tuple(versions), to_send=dict(to_send),
                    already_sent=already, retrying=retrying, uncertain=uncertain, resending_uncertain=resending,
                    test_sends=ledger.test_sends(build.slug, build.build_hash),
                    languages=dict(languages), english_instead=dict(english_instead),
                    planned_before=figures.planned_before, new_people=new if figures.planned_before else 0,
                    now_left_out=figures.now_left_out, now_left_out_keys=figures.now_left_out_keys,
                    build_hash=build.build_hash, composed_at=build.composed_at, sent_by_build=figures.sent_by_build)


def _first_send_figures(build: FrozenBuild, people: PackedRecipients) -> PlanFigures:
    """What ``Ledger.plan_figures`` says of a newsletter the ledger has no row of, from the planner's own
    counts: everyone new, nobody left out since, nobody sent yet (a test holds the two equal)."""
    groups = tuple(PlanGroup(audience, version_in_language(build, version, language), language, None, count)
                   for (audience, _lists, version, language), count in people.groups() if count)
    return PlanFigures(groups=groups, planned_before=False, now_left_out=0, now_left_out_keys=(), sent_by_build=())


def _school_language(build: FrozenBuild, audience: str, language: str) -> bool:
    """Whether ``language`` is the language of ``audience``'s own version (``en`` for an ``en-GB`` school)."""
    own = build.versions[audience].language if audience in build.versions else ""
    return bool(own) and own.split("-")[0].lower() == language.split("-")[0].lower()


class PlannedBatches:
    """The run's batches, read from the plan in the ledger (never the lists file) just in time.

    One version at a time, ``size`` people a batch, in plan order. Each batch is read only after the
    one before was settled (the dispatcher sends a batch before asking for the next), and just before
    it goes, ``screen`` names anyone who must not be mailed any more (an unsubscribe or bounce that
    arrived during the send): they are left out in the ledger, with the reason, and counted in
    ``left_out``. ``from_draft`` reads the draft instead (a sandbox run writes no plan).
    """

    def __init__(self, build: FrozenBuild, settings: Settings, ledger: Ledger, versions: Sequence[str], size: int,
                 *, resend_uncertain: bool = False, screen: Callable[[Sequence[str]], Mapping[str, str]] | None = None,
                 from_draft: bool = False) -> None:
        self.build, self.settings, self.ledger = build, settings, ledger
        self.versions, self.size = tuple(versions), size
        self.states = SENDABLE_RESENDING if resend_uncertain else SENDABLE
        self.screen = screen or (lambda keys: {})
        self.from_draft = from_draft
        self.left_out: Counter[str] = Counter()  # reason -> people left out during the send

    def __iter__(self) -> Iterator[tuple[Version, list[Message]]]:
        read = self.ledger.drafted_batch if self.from_draft else self.ledger.planned_batch
        make = MessageMaker(self.settings)
        for slug in self.versions:
            version = make_version(self.build, self.settings, slug)
            after = 0
            while batch := read(self.build.slug, slug, after=after, size=self.size, states=self.states):
                after = batch.rows[-1]
                barred = self.screen(batch.keys)
                if barred:
                    if not self.from_draft:
                        self.ledger.leave_out(self.build.slug, barred)
                    self.left_out.update(barred.values())
                    batch = batch.only([key not in barred for key in batch.keys])
                    if not batch.keys:
                        continue
                recipient_ids = batch.recipient_ids
                if None in recipient_ids:  # people with no opaque id yet (a sandbox run, a rare clash): made now
                    ids = self.ledger.recipient_ids([key for key, rid in zip(batch.keys, recipient_ids, strict=True)
                                                     if not rid])
                    recipient_ids = [rid or ids[key] for key, rid in zip(batch.keys, recipient_ids, strict=True)]
                yield version, make.batch(batch, cast("Sequence[str]", recipient_ids))


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
            if attempt > 1:  # begin_batch counted the first
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
            if attempt == 1 and self._all_sent_alike(result, len(remaining)):
                # The usual answer: everyone in the batch accepted under one message id. One transaction.
                message_id = next(iter(result.message_ids.values()), None)
                self.ledger.batch_sent(batch_id, self.newsletter, self.kind, message_id=message_id)
                self.report.sent += len(remaining)
                self._progress()
                if self.kind == BatchKind.TEST:
                    self.report.confirmed_test_batches.append(batch_id)
                return
            remaining, message_id, last_error = self._record(batch_id, remaining, result, message_id, last_error)
            if remaining and not self._wait_before_retry(attempt, result.retry_after, last_error):
                self._settle(batch_id, remaining, SendState.FAILED, error=last_error)
                break
        self._finish(batch_id, len(messages), sent_before, uncertain_before, message_id, last_error)

    @staticmethod
    def _all_sent_alike(result: BatchResult, people: int) -> bool:
        """Whether ``result`` says all ``people`` were sent, under one message id (or none), with no error."""
        deliveries = result.deliveries
        if len(deliveries) != people or result.errors or len(result.message_ids) not in (0, people):
            return False
        if len(set(result.message_ids.values())) > 1:
            return False
        return list(deliveries.values()).count(Delivery.SENT) == people  # in C: one per person

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

    def _heard(self, key: str, delivery: Delivery, people: int = 1) -> None:
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
            if people != 1:  # each accepted person must reach the ledger by name
                raise ValueError("a transport that sends one message at a time reports each person with add()")
            self.ledger.record_outcomes(self._batch_id, self.newsletter, self.kind, [Outcome(key, SendState.SENT)])
        self._heard_done += people
        self._heard_sent += people if delivery is Delivery.SENT else 0
        r = self.report
        self.on_progress(Progress(done=r.sent + r.failed + r.uncertain + self._heard_done,
                                  sent=r.sent + self._heard_sent, partial=True))


def test_batches(build: FrozenBuild, settings: Settings, audiences: Sequence[str], address: str,
                 recipient_id: str, languages: Sequence[str] | None = None) -> Iterator[tuple[Version, list[Message]]]:
    """One copy of each version the chosen lists can get (their combinations too), marked [TEST], to one
    address: in every language, or only those of ``languages`` (the school's by its own tag, or ``en``)."""
    key = address_key(address)
    for slug in test_versions(build, settings, audiences, languages):
        version = make_version(build, settings, slug, test=True)
        greeting_list = VersionKey.from_slug(slug).greeting_list
        person = _TestPerson(email=normalise_address(address), key=key, first_name="", last_name="",
                             audience=greeting_list, version=slug)
        yield version, [make_message(person, recipient_id, settings)]


def test_versions(build: Build | FrozenBuild, settings: Settings, lists: Sequence[str], languages: Sequence[str] | None
                  ) -> list[str]:
    """The versions a test of ``lists`` sends: all of them (combinations too), or those in ``languages``."""
    everything = versions_to_send(build, lists)
    if not languages:
        return everything
    school = settings.school.language.split("-")[0].lower()
    chosen = []
    for slug in everything:
        tag = VersionKey.from_slug(slug).language
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
    version: str
    language: str = ""

