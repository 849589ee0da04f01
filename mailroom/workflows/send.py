"""send: a composed build -> the people on the chosen lists, with every safety rule in one place.

The rules a send follows, whoever starts it (send.py, a test, a benchmark):
- the build is frozen when the session starts: every version and image is read into memory and checked
  against the manifest's digests (``freeze_build``); a build changed since compose, by hand or by a
  compose, or one the preflight checks (run on those same bytes) find errors in, is refused, and
  nothing reads ``build/`` again;
- only one send runs per ledger at a time (``send_lock``), and the ledger is open for the whole session;
- people left *in flight* by a run that died become *uncertain*, and nothing is sent while anyone is
  uncertain until the office decides (send again, or count them as sent);
- a live send of a build nobody test-sent is refused unless the office says so (``untested``);
- the plan is frozen too: the lists are read once, drafted into the ledger and compared with it (new
  people, people now left out); when the office confirms, the draft becomes the plan in the ledger
  before the first request, and the batches are read from there, never from the lists file again;
- a suppression (unsubscribe, bounce) stored during the send leaves that person out before each batch;
- resuming with a recomposed build needs its own confirmation (``accept_new_build``): the plan says how
  many already have the earlier version, and the result says who got which;
- a newsletter whose sent.json says it was sent, with a ledger that knows nothing of it (deleted,
  replaced), is refused unless the office says to start again (``start_again``);
- how a run ended (a ``DispatchReport``) becomes the error that sets the exit status.

Nothing here prints or asks. ``SendSession`` returns plain dataclasses (``LivePlan``, ``TestPlan``,
``SendResult``) and raises ``MailroomError``s; ``mailroom.cli`` shows them and asks the questions.

    with SendSession(settings, newsletter_dir, ["parents"]) as session:
        plan = session.plan_live()
        result = session.send_live(plan, untested=True)
        if result.error:
            raise result.error
"""

from __future__ import annotations

import csv
import random
import threading
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mailroom.addresses import address_key
from mailroom.audience.lists import AudiencePlan, load_audience
from mailroom.audience.report import excel_safe, write_left_out_csv
from mailroom.checks.rules import check_versions, newsletter_for_build
from mailroom.compose.build import IMAGE_PREFIX, FrozenBuild, freeze_build, load_build
from mailroom.errors import InputError, Interrupted, MailroomError, RefusedForSafety, TransportError
from mailroom.events.suppressions import suppressed_addresses, suppressed_among
from mailroom.send.dispatch import (
    Dispatcher,
    DispatchReport,
    PlannedBatches,
    Progress,
    RetryPolicy,
    SendPlan,
    StopReason,
    make_version,
    plan_send,
    test_batches,
    test_versions,
    versions_to_send,
)
from mailroom.send.ledger import BatchKind, BuildCount, Ledger, TestSend, UncertainBatch, send_lock
from mailroom.send.sent_record import SentRecord, read_sent_record, write_sent_record
from mailroom.send.transports import make_transport
from mailroom.send.transports.base import Transport
from mailroom.settings import Settings


@dataclass(frozen=True)
class LivePlan:
    """Who gets what in a live send, worked out before anything goes out; ``send_live`` carries it out."""

    subject: str
    lists: tuple[str, ...]
    audience: AudiencePlan  # the lists as read (who is on them, who is left out and why)
    counts: SendPlan  # against the ledger: to send now, already sent, retrying, uncertain
    transport: str  # how the transport names itself to the office
    transport_notes: tuple[str, ...]  # e.g. time at the SMTP rate cap, daily limits
    sandbox: bool
    resend_uncertain: bool
    marked_as_sent: int  # uncertain people counted as sent at the office's request, this run
    uncertain_file: Path | None  # a CSV naming every uncertain person, when there are any
    left_out_file: Path | None = None  # a CSV naming everyone on the lists who gets no email, and why
    # sent.json says this newsletter was sent, but the ledger knows nothing of it (deleted or replaced)
    lost_ledger: SentRecord | None = None
    ledger_path: Path | None = None
    ledger_was_missing: bool = False  # the ledger file did not exist when the session began
    school_language: str = "en"  # the language of the lists' own versions, for counting people per language

    @property
    def total(self) -> int:
        return self.counts.total

    @property
    def uncertain(self) -> list[UncertainBatch]:
        return self.counts.uncertain

    @property
    def test_sends(self) -> list[TestSend]:
        return self.counts.test_sends

    @property
    def untested(self) -> bool:
        """A live send of a build nobody has test-sent (a sandbox run delivers nothing, so it is exempt)."""
        return not self.counts.test_sends and not self.sandbox

    @property
    def earlier_builds(self) -> tuple[BuildCount, ...]:
        """People who already have a version of this newsletter made by another (earlier) build."""
        return () if self.sandbox else self.counts.earlier_builds

    @property
    def new_build_needs_consent(self) -> bool:
        """Resuming with a recomposed build: some have the earlier version and some would get this one."""
        return bool(self.earlier_builds) and self.total > 0


@dataclass(frozen=True)
class TestPlan:
    """One [TEST] copy of each chosen list's version, to one address."""

    address: str  # as typed, trimmed
    lists: tuple[str, ...]
    transport: str
    sandbox: bool
    versions: tuple[str, ...] = ()  # every language's version of the lists (parents, parents.pl), or the chosen
    languages: tuple[str, ...] = ()  # --language: only these languages' versions ("" none chosen: all)


@dataclass(frozen=True)
class NotSent:
    """Someone this run could not send to, and what the service said."""

    email: str
    name: str
    version: str
    reason: str


@dataclass(frozen=True)
class SendResult:
    """How a send ended. ``error`` is set unless everyone was sent to; it carries the exit status."""

    report: DispatchReport
    error: MailroomError | None
    uncertain: tuple[UncertainBatch, ...] = ()  # batches whose outcome is unknown after this run
    uncertain_file: Path | None = None
    not_sent: tuple[NotSent, ...] = ()  # everyone known not to have been accepted, in plan order
    not_sent_file: Path | None = None  # ... all of them in a CSV
    left_out_during_send: dict[str, int] = field(default_factory=dict)  # reason -> people (e.g. unsubscribed)
    sent_by_build: tuple[BuildCount, ...] = ()  # after the run: who has this newsletter, per build

    @property
    def complete(self) -> bool:
        return self.error is None


class SendSession:
    """One send of one build: the build checked, the ledger locked and open, the transport chosen.

    Entering the session takes the send lock and opens the ledger; leaving it releases both. The
    transport is opened for each ``send_*`` call and always closed after it. ``stop`` is the Ctrl-C
    switch: set it and the run ends after the batch in flight, which is recorded first.
    ``transport``, ``policy``, ``sleep`` and ``rng`` are for tests and benchmarks.
    """

    def __init__(self, settings: Settings, newsletter_dir: Path, lists: Sequence[str], *, sandbox: bool = False,
                 transport: Transport | None = None, policy: RetryPolicy | None = None,
                 sleep: Callable[[float], None] | None = None, rng: random.Random | None = None) -> None:
        self.settings = settings
        self.lists = tuple(lists)
        self.sandbox = sandbox
        self.stop = threading.Event()
        self._policy, self._sleep, self._rng = policy, sleep, rng
        self.build = load_build(newsletter_dir, root=settings.root)
        changed = self.build.changed_sources()
        if changed:
            raise InputError(
                f"the newsletter has changed since it was composed ({', '.join(changed)}); run  python compose.py "
                f"{display_path(self.build.newsletter_dir)}  again, check the preview, then send")
        # From here on the send uses these bytes only: checked, test-sent and sent are the same email.
        self.frozen: FrozenBuild = freeze_build(self.build)
        refuse_preflight_errors(self.frozen)
        self.transport = transport or make_transport(settings, sandbox=sandbox)
        self._resources = ExitStack()
        self._ledger: Ledger | None = None
        self._ledger_was_missing = False

    def __enter__(self) -> SendSession:
        with ExitStack() as stack:
            stack.enter_context(send_lock(self.settings.db_path))
            self._ledger_was_missing = not self.settings.db_path.exists()
            self._ledger = stack.enter_context(Ledger(self.settings.db_path))
            self._resources = stack.pop_all()
        return self

    def __exit__(self, *exc: object) -> None:
        self._resources.close()
        self._ledger = None

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            raise RuntimeError("use the SendSession in a with block: the ledger is opened there")
        return self._ledger

    # --- live sends ------------------------------------------------------------------------------------

    def plan_live(self, *, audiences_file: Path | None = None, resend_uncertain: bool = False,
                  mark_uncertain_sent: bool = False, dry_run: bool = False) -> LivePlan:
        """Read the lists, compare them with the ledger, and say who gets what. Sends nothing.

        Only ``mark_uncertain_sent`` (the office's decision) writes to the ledger, and not on a dry run.
        """
        if resend_uncertain and mark_uncertain_sent:
            raise InputError("choose one of --resend-uncertain and --mark-uncertain-sent, not both")
        build, ledger, settings = self.frozen, self.ledger, self.settings
        lost = None
        record = read_sent_record(build.newsletter_dir)
        if record is not None and not ledger.has_rows(build.slug):
            lost = record
        ledger.settle_abandoned(build.slug)
        audience = load_audience(audiences_file, settings, self.lists, dict(suppressed_addresses(settings.db_path)),
                                 version_order=build.build.manifest.audiences,
                                 address_problem=self.transport.address_problem)
        marked = 0
        if mark_uncertain_sent and not dry_run:
            marked = ledger.resolve_uncertain(build.slug, as_sent=True)
        # The lists file is read here, once: the people go into the ledger's draft, and nothing after
        # this reads the file again.
        counts = plan_send(build, audience.recipients, audience.lists, ledger, resend_uncertain=resend_uncertain)
        for name in counts.audiences:  # every version: one over the size limit is refused before anyone gets it
            self.transport.check_version(make_version(build, settings, name))
        uncertain_file = None
        if counts.uncertain:
            uncertain_file = write_uncertain_list(counts.uncertain, self.uncertain_file)
        left_out_file = None
        if audience.left_out:
            left_out_file = self.report_file("left-out")
            write_left_out_csv(audience, left_out_file)
        return LivePlan(
            subject=build.subject, lists=audience.lists, audience=audience, counts=counts,
            transport=self.transport.describe(),
            transport_notes=tuple(self.transport.plan_notes(counts.total, ledger.sent_recently(
                self.transport.name, utc_text(timedelta(hours=24))))),
            sandbox=self.sandbox, resend_uncertain=resend_uncertain, marked_as_sent=marked,
            uncertain_file=uncertain_file, lost_ledger=lost, ledger_path=settings.db_path,
            ledger_was_missing=self._ledger_was_missing, school_language=self.settings.school.language,
            left_out_file=left_out_file)

    def check_live(self, plan: LivePlan, *, untested: bool, accept_new_build: bool = False,
                   start_again: bool = False) -> None:
        """Refuse a live send the rules do not allow yet: a lost ledger, uncertain people, a recomposed build
        not accepted, or a build never tested."""
        if plan.lost_ledger is not None and not start_again and not plan.sandbox:
            raise RefusedForSafety(lost_ledger_message(plan.lost_ledger, plan.ledger_path, plan.ledger_was_missing))
        if plan.uncertain:
            raise RefusedForSafety(
                "nothing was sent: some people may or may not already have this newsletter (see above). "
                "Run again with --resend-uncertain (they may get it twice) or --mark-uncertain-sent "
                "(they may not get it at all)")
        if plan.new_build_needs_consent and not accept_new_build:
            raise RefusedForSafety(
                f"nothing was sent: {new_build_summary(plan)}. Run again with --accept-new-build if the others "
                "should get the new version")
        if plan.untested and not untested:
            raise RefusedForSafety(
                "nothing was sent: this build was never test-sent. Send a test first "
                f"(python send.py {display_path(self.build.newsletter_dir)} --to {','.join(plan.lists)} "
                "--test YOUR_ADDRESS), or add --untested to send it anyway")

    def send_live(self, plan: LivePlan, *, untested: bool = False, accept_new_build: bool = False,
                  start_again: bool = False, on_progress: Callable[[Progress], None] | None = None) -> SendResult:
        """Freeze the plan in the ledger, then send to everyone it counts, recording each step.

        Refused if ``check_live`` refuses. From here on the lists file is not read: the batches come
        from the ledger, and a suppression stored meanwhile leaves its person out before each batch.
        """
        self.check_live(plan, untested=untested, accept_new_build=accept_new_build, start_again=start_again)
        build, ledger = self.frozen, self.ledger
        if not self.sandbox:
            ledger.freeze_plan(build.slug, build_hash=build.build_hash, composed_at=build.composed_at,
                               resend_uncertain=plan.resend_uncertain)
            # Before the first message, so a lost ledger is noticed even after a crash. Who has it already is
            # what the plan counted (nothing was sent since: the send lock is held), so no count again here.
            self._write_sent_record(sum(count.people for count in plan.counts.sent_by_build))
        dispatcher = self._dispatcher(BatchKind.SANDBOX if self.sandbox else BatchKind.LIVE, on_progress)
        versions = versions_to_send(build, plan.lists)  # parents, staff, parents+staff, parents.pl...
        batches = PlannedBatches(build, self.settings, ledger, versions, self.transport.max_batch_size,
                                 resend_uncertain=plan.resend_uncertain, from_draft=self.sandbox,
                                 screen=lambda keys: suppressed_among(ledger.conn, keys))
        sent_by_build: tuple[BuildCount, ...] = ()
        ended = False
        try:
            with self.transport:
                report = dispatcher.run(batches)
            ended = True
        finally:
            if not self.sandbox:
                sent_by_build = self._sent_by_build_after(plan, dispatcher.report.sent if ended else None)
                self._write_sent_record(sum(count.people for count in sent_by_build))
        result = self._result(report, report_error(report))
        result = replace(result, left_out_during_send=dict(batches.left_out), sent_by_build=sent_by_build)
        if report.failed and not self.sandbox:
            not_sent = self.not_sent()
            path = self.report_file("not-sent")
            write_not_sent_list(not_sent, path)
            result = replace(result, not_sent=tuple(not_sent), not_sent_file=path)
        return result

    def _sent_by_build_after(self, plan: LivePlan, sent_now: int | None) -> tuple[BuildCount, ...]:
        """Who has the newsletter after this run, per build. When nobody had it at the plan and the run
        ended normally (``sent_now``: the people it sent), that is everyone this run sent, all from this
        build (the send lock kept any other run out): no count over the whole newsletter's rows, which
        was 1 µs a person at 100,000. Otherwise (an earlier build, a run cut short) the ledger counts."""
        build = self.frozen
        if plan.counts.sent_by_build or sent_now is None:
            return tuple(self.ledger.sent_by_build(build.slug))
        return (BuildCount(build.build_hash, build.composed_at, sent_now),) if sent_now else ()

    def _write_sent_record(self, people_sent: int) -> None:
        write_sent_record(self.frozen.newsletter_dir, newsletter=self.frozen.slug, people_sent=people_sent,
                          sent_at=utc_text(), ledger=self.settings.db_path, root=self.settings.root)

    def not_sent(self) -> list[NotSent]:
        """The people of the frozen plan the ledger holds as not accepted, with the reason, in plan order."""
        return [NotSent(email, " ".join(part for part in (first, last) if part), version, reason or "not accepted")
                for email, first, last, version, reason in self.ledger.failed_people(self.build.slug)]

    # --- test sends ------------------------------------------------------------------------------------

    def plan_test(self, address: str, languages: Sequence[str] = ()) -> TestPlan:
        """Check the lists and the address for a test send, and choose the versions (``languages``: only those)."""
        unknown = [name for name in self.lists if name not in self.settings.lists]
        if unknown:
            raise InputError(f"there is no list called '{unknown[0]}'; the lists are: "
                             f"{', '.join(self.settings.lists)}", self.settings.source_file)
        from email_validator import EmailNotValidError, validate_email  # a test send's only: costly to import

        try:
            validate_email(address.strip(), check_deliverability=False)
        except EmailNotValidError as exc:
            raise InputError(f"--test needs one email address, and '{address}' is not one ({exc})") from None
        versions = tuple(test_versions(self.build, self.settings, self.lists, languages))
        if not versions:
            raise InputError(f"this build has no version in {', '.join(languages)} for {', '.join(self.lists)}: "
                             f"compose it with  python compose.py {self.build.newsletter_dir.name} --language "
                             f"{','.join(languages)}")
        return TestPlan(address=address.strip(), lists=self.lists, transport=self.transport.describe(),
                        sandbox=self.sandbox, versions=versions, languages=tuple(languages))

    def send_test(self, plan: TestPlan) -> SendResult:
        """Send the test copies; a confirmed one (not in the sandbox) counts as this build's test."""
        build, ledger = self.frozen, self.ledger
        key = address_key(plan.address)
        recipient_id = ledger.recipient_ids([key])[key]
        dispatcher = self._dispatcher(BatchKind.SANDBOX if self.sandbox else BatchKind.TEST, None)
        with self.transport:
            report = dispatcher.run(test_batches(build, self.settings, plan.lists, plan.address, recipient_id,
                                                 plan.languages))
        if report.confirmed_test_batches and not self.sandbox:
            ledger.record_test_send(newsletter=build.slug, build_hash=build.build_hash, address=key,
                                    audiences=plan.lists, transport=self.transport.name,
                                    batch_id=report.confirmed_test_batches[0])
        if report.uncertain:
            return SendResult(report, RefusedForSafety(
                f"the test copy may or may not have been sent ({report.stop_message}); check the inbox of "
                f"{plan.address}, or send the test again"))
        return self._result(report, report_error(report))

    # --- shared ------------------------------------------------------------------------------------------

    @property
    def uncertain_file(self) -> Path:
        """Where the full list of uncertain people is written (a CSV that opens right in Excel)."""
        return self.report_file("uncertain")

    def report_file(self, kind: str) -> Path:
        """Where a full list of some people of this send is written: beside the ledger, named by newsletter."""
        return self.settings.db_path.parent / f"{kind}-{self.build.slug}.csv"

    def _dispatcher(self, kind: BatchKind, on_progress: Callable[[Progress], None] | None) -> Dispatcher:
        return Dispatcher(self.transport, self.ledger, newsletter=self.frozen.slug, build_hash=self.frozen.build_hash,
                          kind=kind, policy=self._policy, sleep=self._sleep, rng=self._rng, stop=self.stop,
                          on_progress=on_progress)

    def _result(self, report: DispatchReport, error: MailroomError | None) -> SendResult:
        if not report.uncertain:
            return SendResult(report, error)
        batches = self.ledger.uncertain_batches(self.build.slug)
        return SendResult(report, error, tuple(batches), write_uncertain_list(batches, self.uncertain_file))


def report_error(report: DispatchReport) -> MailroomError | None:
    """The error a run that did not reach everyone ends with (None: everyone was sent to)."""
    if report.uncertain:
        return RefusedForSafety(
            "the send stopped because the outcome of a request is unknown. Run the same command again with "
            "--resend-uncertain (they may get it twice) or --mark-uncertain-sent (they may not get it at all)")
    if report.stopped == StopReason.INTERRUPTED:
        return Interrupted("Stopped after the batch in flight; what was sent is recorded. Run the same command "
                           "to carry on.")
    if report.stopped == StopReason.REFUSED:
        return TransportError(f"{report.stop_message} Nothing more was sent; run the same command again once this "
                              "is fixed, and it will carry on where it stopped.", retryable=False)
    if report.stopped == StopReason.GAVE_UP:
        return TransportError(f"gave up after several tries ({report.stop_message}). Run the same command again "
                              "later: it carries on where it stopped.", retryable=True)
    if report.failed:
        return TransportError(f"{report.failed} people could not be sent to. Run the same command again to retry "
                              "them.", retryable=True)
    return None


def refuse_preflight_errors(frozen: FrozenBuild) -> None:
    """Nothing goes out while the preflight checks find an error; they check the very bytes to be sent."""
    build = frozen.build
    versions = {name: (v.html, v.text) for name, v in frozen.versions.items()}
    image_dir = build.build_dir / IMAGE_PREFIX.rstrip("/")
    findings = check_versions(versions, subject=build.subject, preheader=build.preheader, image_dir=image_dir)
    if any(problem.is_error for problem in findings):
        # Without newsletter.md the checks find every error and maybe more (braces written as \{{ to be
        # shown look like template code): only then read it, to drop those and name each error's line.
        findings = check_versions(versions, subject=build.subject, preheader=build.preheader,
                                  newsletter=newsletter_for_build(build), image_dir=image_dir)
    errors = [str(problem) for problem in findings if problem.is_error]
    if errors:
        listed = "\n".join(f"  - {problem}" for problem in errors)
        raise InputError(f"the newsletter has problems to fix before it can be sent:\n{listed}\n"
                         "Fix them in newsletter.md and compose again.", build.newsletter_dir / "newsletter.md")


def write_not_sent_list(people: Sequence[NotSent], path: Path) -> Path:
    """Everyone not sent to (email, name, version, reason), as a CSV safe to open in Excel."""
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "name", "version", "reason"])
        writer.writerows([excel_safe(p.email), excel_safe(p.name), p.version, excel_safe(p.reason)] for p in people)
    return path


def lost_ledger_message(record: SentRecord, ledger: Path | None, missing: bool) -> str:
    """Why a send refuses when sent.json says the newsletter was sent and the ledger has no record of it."""
    how_many = (f"{record.people_sent:,} people" if record.people_sent is not None else "people")
    when = f" (last on {moment_label(record.last_sent_at)})" if record.last_sent_at else ""
    where = f", recorded in the ledger {record.ledger}" if record.ledger else ""
    here = display_path(ledger) if ledger else "the ledger"
    state = "does not exist any more" if missing else "has no record of this newsletter"
    return (f"nothing was sent: {display_path(record.path)} says this newsletter was already sent to {how_many}"
            f"{when}{where}, but the ledger {here} {state}; it may have been deleted, replaced or moved. "
            "Sending now could give everyone a second copy. Put the ledger back (from a backup, or set "
            "MAILROOM_DB to where it is), or, if you are sure, run again with --start-again to send to "
            "everyone on the lists as if for the first time")


def new_build_summary(plan: LivePlan) -> str:
    """"800 people already have the version composed at 09:12; 2,180 will get this one, composed at 09:40"."""
    earlier = plan.earlier_builds
    labels = composed_labels([b.composed_at for b in earlier] + [plan.counts.composed_at])
    had = "; ".join(f"{b.people:,} {'person' if b.people == 1 else 'people'} already have the version "
                    f"composed at {labels[i]}" for i, b in enumerate(earlier))
    return (f"the newsletter was composed again since the send began: {had}; {plan.total:,} "
            f"{'person' if plan.total == 1 else 'people'} would get this version, composed at {labels[-1]}")


def composed_labels(moments: Sequence[str]) -> list[str]:
    """Composition times as the office reads them (local time), precise enough to tell them apart.

    "09:12"; with seconds when two would read the same; with the day when it is not today.
    """
    parsed: list[datetime | None] = []
    for text in moments:
        try:
            parsed.append(datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone())
        except ValueError:
            parsed.append(None)
    today = datetime.now().astimezone().date()
    minutes = [f"{m:%H:%M}" if m else "" for m in parsed]
    clash = len(set(filter(None, minutes))) < len([m for m in minutes if m])
    labels = []
    for moment in parsed:
        if moment is None:
            labels.append("an unknown time")
            continue
        label = f"{moment:%H:%M:%S}" if clash else f"{moment:%H:%M}"
        if moment.date() != today:
            label += f" on {moment.day} {moment:%B %Y}"
        labels.append(label)
    return labels


def moment_label(text: str) -> str:
    """An ISO UTC timestamp as the office reads it, in local time: "4 December 2026 at 09:12"."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone()
    except ValueError:
        return text
    return f"{moment.day} {moment:%B %Y} at {moment:%H:%M}"


def utc_text(ago: timedelta = timedelta(0)) -> str:
    """Now (or ``ago`` before now) in UTC, as the ledger and sent.json store times."""
    return (datetime.now(UTC) - ago).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_uncertain_list(batches: Sequence[UncertainBatch], path: Path) -> Path:
    """Everyone in ``batches`` as a CSV (batch, list, email), so the office can check their inboxes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8-sig", newline="") as handle:  # utf-8-sig: Excel reads it right
        writer = csv.writer(handle)
        writer.writerow(["batch", "list", "email"])
        for batch in batches:
            writer.writerows([batch.batch_id, batch.audience, excel_safe(key)] for key in batch.keys)
    return path


def display_path(path: Path) -> str:
    """``path`` as the office would type it: relative to the working folder when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
