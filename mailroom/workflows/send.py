"""send: a composed build -> the people on the chosen lists, with every safety rule in one place.

The rules a send follows, whoever starts it (send.py, a test, a benchmark):
- a build that changed since compose, or that the preflight checks find errors in, is refused;
- only one send runs per ledger at a time (``send_lock``), and the ledger is open for the whole session;
- people left *in flight* by a run that died become *uncertain*, and nothing is sent while anyone is
  uncertain until the office decides (send again, or count them as sent);
- a live send of a build nobody test-sent is refused unless the office says so (``untested``);
- everyone to be sent is written to the ledger as pending before the first request;
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
from dataclasses import dataclass
from pathlib import Path

from email_validator import EmailNotValidError, validate_email

from mailroom.addresses import address_key
from mailroom.audience.lists import AudiencePlan, load_audience
from mailroom.audience.report import excel_safe
from mailroom.checks.rules import errors_for_build
from mailroom.compose.build import Build, load_build
from mailroom.errors import InputError, Interrupted, MailroomError, RefusedForSafety, TransportError
from mailroom.events.suppressions import suppressed_addresses
from mailroom.send.dispatch import (
    Dispatcher,
    DispatchReport,
    Progress,
    RetryPolicy,
    SendPlan,
    StopReason,
    live_batches,
    make_version,
    plan_send,
    test_batches,
    test_versions,
)
from mailroom.send.ledger import BatchKind, Ledger, TestSend, UncertainBatch, send_lock
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
class SendResult:
    """How a send ended. ``error`` is set unless everyone was sent to; it carries the exit status."""

    report: DispatchReport
    error: MailroomError | None
    uncertain: tuple[UncertainBatch, ...] = ()  # batches whose outcome is unknown after this run
    uncertain_file: Path | None = None

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
        refuse_preflight_errors(self.build)
        self.transport = transport or make_transport(settings, sandbox=sandbox)
        self._resources = ExitStack()
        self._ledger: Ledger | None = None

    def __enter__(self) -> SendSession:
        with ExitStack() as stack:
            stack.enter_context(send_lock(self.settings.db_path))
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
        build, ledger, settings = self.build, self.ledger, self.settings
        ledger.settle_abandoned(build.slug)
        path = audiences_file or settings.root / "audiences.csv"
        audience = load_audience(path, settings, self.lists, dict(suppressed_addresses(settings.db_path)),
                                 address_problem=self.transport.address_problem)
        marked = 0
        if mark_uncertain_sent and not dry_run:
            marked = ledger.resolve_uncertain(build.slug, as_sent=True)
        counts = plan_send(build, audience.recipients, audience.lists, ledger, resend_uncertain=resend_uncertain)
        for name in audience.lists:  # e.g. a message over the service's size limit: refused before anyone gets it
            self.transport.check_version(make_version(build, settings, name))
        uncertain_file = None
        if counts.uncertain:
            uncertain_file = write_uncertain_list(counts.uncertain, self.uncertain_file)
        return LivePlan(
            subject=build.subject, lists=audience.lists, audience=audience, counts=counts,
            transport=self.transport.describe(), transport_notes=tuple(self.transport.plan_notes(counts.total)),
            sandbox=self.sandbox, resend_uncertain=resend_uncertain, marked_as_sent=marked,
            uncertain_file=uncertain_file, school_language=self.settings.school.language)

    def check_live(self, plan: LivePlan, *, untested: bool) -> None:
        """Refuse a live send the rules do not allow yet: people are uncertain, or the build was never tested."""
        if plan.uncertain:
            raise RefusedForSafety(
                "nothing was sent: some people may or may not already have this newsletter (see above). "
                "Run again with --resend-uncertain (they may get it twice) or --mark-uncertain-sent "
                "(they may not get it at all)")
        if plan.untested and not untested:
            raise RefusedForSafety(
                "nothing was sent: this build was never test-sent. Send a test first "
                f"(python send.py {display_path(self.build.newsletter_dir)} --to {','.join(plan.lists)} "
                "--test YOUR_ADDRESS), or add --untested to send it anyway")

    def send_live(self, plan: LivePlan, *, untested: bool = False,
                  on_progress: Callable[[Progress], None] | None = None) -> SendResult:
        """Send to everyone the plan counts, recording each step; refused if ``check_live`` refuses."""
        self.check_live(plan, untested=untested)
        build, ledger = self.build, self.ledger
        people = plan.audience.recipients
        if not self.sandbox:
            ledger.plan_pending(build.slug, ((p.key, p.audience) for p in people))
        dispatcher = self._dispatcher(BatchKind.SANDBOX if self.sandbox else BatchKind.LIVE, on_progress)
        batches = live_batches(build, self.settings, people, plan.lists, ledger, self.transport.max_batch_size,
                               resend_uncertain=plan.resend_uncertain)
        with self.transport:
            report = dispatcher.run(batches)
        return self._result(report, report_error(report))

    # --- test sends ------------------------------------------------------------------------------------

    def plan_test(self, address: str, languages: Sequence[str] = ()) -> TestPlan:
        """Check the lists and the address for a test send, and choose the versions (``languages``: only those)."""
        unknown = [name for name in self.lists if name not in self.settings.lists]
        if unknown:
            raise InputError(f"there is no list called '{unknown[0]}'; the lists are: "
                             f"{', '.join(self.settings.lists)}", self.settings.source_file)
        try:
            validate_email(address.strip(), check_deliverability=False)
        except EmailNotValidError as exc:
            raise InputError(f"--test needs one email address, and '{address}' is not one ({exc})") from None
        versions = tuple(slug for name in self.lists
                         for slug in test_versions(self.build, self.settings, name, languages))
        if not versions:
            raise InputError(f"this build has no version in {', '.join(languages)} for {', '.join(self.lists)}: "
                             f"compose it with  python compose.py {self.build.newsletter_dir.name} --language "
                             f"{','.join(languages)}")
        return TestPlan(address=address.strip(), lists=self.lists, transport=self.transport.describe(),
                        sandbox=self.sandbox, versions=versions, languages=tuple(languages))

    def send_test(self, plan: TestPlan) -> SendResult:
        """Send the test copies; a confirmed one (not in the sandbox) counts as this build's test."""
        build, ledger = self.build, self.ledger
        key = address_key(plan.address)  # the same key as the audience stage's (mailroom.addresses)
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
        return self.settings.db_path.parent / f"uncertain-{self.build.slug}.csv"

    def _dispatcher(self, kind: BatchKind, on_progress: Callable[[Progress], None] | None) -> Dispatcher:
        return Dispatcher(self.transport, self.ledger, newsletter=self.build.slug, build_hash=self.build.build_hash,
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


def refuse_preflight_errors(build: Build) -> None:
    """Nothing goes out while the preflight checks find an error."""
    errors = [str(problem) for problem in errors_for_build(build)]
    if errors:
        listed = "\n".join(f"  - {problem}" for problem in errors)
        raise InputError(f"the newsletter has problems to fix before it can be sent:\n{listed}\n"
                         "Fix them in newsletter.md and compose again.", build.newsletter_dir / "newsletter.md")


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
