"""`mailroom doctor` against stand-ins on 127.0.0.1: a DNS server (dnslib) serving good, missing and wrong
SPF/DKIM/DMARC records to dnspython, an SMTP relay (aiosmtpd) behind a private CA, and SendGrid's
GET /v3/scopes. Nothing is ever sent."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import trustme

from mailroom.doctor import run_doctor
from mailroom.doctor.dns_check import check_dns, make_resolver
from mailroom.doctor.findings import Finding, Level
from mailroom.settings import Settings, load_settings
from tests.dns_standin import DnsStandIn, Zone
from tests.projects import make_project
from tests.smtp_server import Authenticator, ScriptedHandler, free_port, start_server

ROOT = Path(__file__).resolve().parent.parent
DOMAIN = "oakfield.example.org"
MS_TARGET = "selector{n}-oakfield-example-org._domainkey.oakfieldprimary.onmicrosoft.com"
DNS_HOST = "whoever manages the school's domain name"


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsStandIn]:
    with DnsStandIn() as standin:
        yield standin


@pytest.fixture
def zone(dns: DnsStandIn) -> Zone:
    dns.zone.clear()
    dns.zone.txt("spf.protection.outlook.com", "v=spf1 ip4:40.92.0.0/15 ip4:52.100.0.0/14 -all")
    dns.zone.txt("_spf.google.com", "v=spf1 include:_netblocks.google.com ~all")
    dns.zone.txt("_netblocks.google.com", "v=spf1 ip4:35.190.247.0/24 ~all")
    dns.zone.txt("sendgrid.net", "v=spf1 ip4:167.89.0.0/17 ~all")
    return dns.zone


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("doctor") / "school"
    make_project(folder)
    (folder / "audiences.csv").write_text("email,first_name,last_name,lists,status\n"
                                          "amelia.hughes@example.org,Amelia,Hughes,parents,subscribed\n"
                                          "rahul.patel@example.com,Rahul,Patel,parents;staff,subscribed\n"
                                          "priya.shah@example.org,Priya,Shah,staff,subscribed\n")
    return folder


def settings(root: Path, dns: DnsStandIn, **env: str) -> Settings:
    return load_settings(root, environ={"MAILROOM_TRANSPORT": "smtp", "SMTP_HOST": "smtp.office365.com",
                                        "MAILROOM_DNS_SERVER": dns.server, "MAILROOM_DB": str(root / "d.sqlite3"),
                                        **env})


def microsoft_good(zone: Zone) -> None:
    zone.txt(DOMAIN, "v=spf1 include:spf.protection.outlook.com -all")
    zone.txt(DOMAIN, "google-site-verification=abc123")  # other TXT records are not SPF
    for n in (1, 2):
        zone.cname(f"selector{n}._domainkey.{DOMAIN}", MS_TARGET.format(n=n))
    zone.txt(f"_dmarc.{DOMAIN}", "v=DMARC1; p=quarantine; rua=mailto:dmarc@oakfield.example.org")


def by_area(findings: list[Finding]) -> dict[str, Finding]:
    return {f.area: f for f in findings}


# --- DNS: good, missing and wrong records -----------------------------------------------------------------

def test_microsoft_365_with_good_records_is_all_ok(root: Path, dns: DnsStandIn, zone: Zone) -> None:
    microsoft_good(zone)
    found = check_dns(settings(root, dns), 600)
    assert [(f.area, f.level, f.summary) for f in found] == [
        ("SPF", Level.OK, "oakfield.example.org's SPF record includes spf.protection.outlook.com: receivers accept "
                          "Microsoft 365 as a sender for the school."),
        ("DKIM", Level.OK, "Microsoft 365 can sign the school's email (selector1._domainkey.oakfield.example.org -> "
                           f"{MS_TARGET.format(n=1)}; selector2._domainkey.oakfield.example.org -> "
                           f"{MS_TARGET.format(n=2)})."),
        ("DMARC", Level.OK, "oakfield.example.org has a DMARC record (p=quarantine)."),
    ]


def test_no_records_at_all_is_a_problem_with_the_records_to_add(root: Path, dns: DnsStandIn, zone: Zone) -> None:
    spf, dkim, dmarc = check_dns(settings(root, dns), 600)
    assert spf == Finding(
        "SPF", Level.PROBLEM, "oakfield.example.org has no SPF record, so receiving mail servers cannot tell that "
        "Microsoft 365 may send the school's email.", todo=f"Ask {DNS_HOST} to add it.",
        it='add a TXT record on oakfield.example.org: "v=spf1 include:spf.protection.outlook.com -all"')
    assert (dkim.level, dkim.summary) == (
        Level.PROBLEM, "Microsoft 365 cannot sign the school's email: selector1._domainkey.oakfield.example.org and "
                       "selector2._domainkey.oakfield.example.org are missing.")
    assert dkim.it.startswith("In Microsoft Defender portal > Email & collaboration > Policies & rules > Threat "
                              "policies > Email authentication settings > DKIM, select oakfield.example.org")
    assert dmarc == Finding(
        "DMARC", Level.WARNING, "oakfield.example.org has no DMARC record. Gmail and Yahoo expect one, and it protects "
        "the school's name from being used by fraudsters.", todo=f"Ask {DNS_HOST} to add one.",
        it='add a TXT record at _dmarc.oakfield.example.org: "v=DMARC1; p=none; '
           'rua=mailto:dmarc-reports@oakfield.example.org" (start with p=none, move to p=quarantine once the '
           "reports show all the school's mail passes)")


def test_spf_for_another_provider_says_exactly_what_to_change(root: Path, dns: DnsStandIn, zone: Zone) -> None:
    microsoft_good(zone)
    zone.records[(DOMAIN, "TXT")] = []
    zone.txt(DOMAIN, "v=spf1 include:_spf.google.com ~all")  # set up for Google years ago
    spf = by_area(check_dns(settings(root, dns), 600))["SPF"]
    assert spf == Finding(
        "SPF", Level.WARNING, "oakfield.example.org's SPF record does not include spf.protection.outlook.com, so "
        "Microsoft 365 is not listed as allowed to send the school's email.", todo=f"Ask {DNS_HOST} to add it.",
        it='change it to "v=spf1 include:_spf.google.com include:spf.protection.outlook.com ~all"')


def test_sendgrid_needs_its_include_and_its_dkim_cnames(root: Path, dns: DnsStandIn, zone: Zone) -> None:
    zone.txt(DOMAIN, "v=spf1 include:spf.protection.outlook.com -all")
    zone.cname(f"s1._domainkey.{DOMAIN}", "s1.domainkey.u1234567.wl123.sendgrid.net")
    zone.cname(f"s2._domainkey.{DOMAIN}", "s2._domainkey.oldmailer.example.net")  # left from a previous service
    zone.txt(f"_dmarc.{DOMAIN}", "v=DMARC1; p=none")
    found = by_area(check_dns(settings(root, dns, MAILROOM_TRANSPORT="sendgrid", SENDGRID_API_KEY="SG.x"), 600))
    assert (found["SPF"].level, found["SPF"].summary, found["SPF"].it) == (
        Level.PROBLEM, "oakfield.example.org's SPF record does not include sendgrid.net, so SendGrid is not listed as "
                       "allowed to send the school's email.",
        'change it to "v=spf1 include:spf.protection.outlook.com include:sendgrid.net -all"')
    assert (found["DKIM"].level, found["DKIM"].summary) == (
        Level.PROBLEM, "The DKIM record s2._domainkey.oakfield.example.org points to "
                       "s2._domainkey.oldmailer.example.net, so SendGrid's signatures cannot be checked.")
    assert found["DKIM"].it.startswith("In SendGrid > Settings > Sender Authentication > Authenticate Your Domain")
    assert found["DMARC"].level is Level.OK


def test_google_with_a_revoked_dkim_key_and_two_spf_records(root: Path, dns: DnsStandIn, zone: Zone) -> None:
    zone.txt(DOMAIN, "v=spf1 include:_spf.google.com ~all")
    zone.txt(DOMAIN, "v=spf1 include:spf.protection.outlook.com -all")
    zone.txt(f"google._domainkey.{DOMAIN}", "v=DKIM1; k=rsa; p=")
    zone.txt(f"_dmarc.{DOMAIN}", "v=DMARC1; p=none")
    found = by_area(check_dns(settings(root, dns, SMTP_HOST="smtp.gmail.com"), 600))
    assert (found["SPF"].level, found["SPF"].summary) == (
        Level.PROBLEM, "oakfield.example.org has 2 SPF records; receivers treat that as an error and ignore them all.")
    assert (found["DKIM"].level, found["DKIM"].summary) == (
        Level.PROBLEM, "The DKIM record google._domainkey.oakfield.example.org has an empty key (p=), which means the "
                       "key was revoked, so Google Workspace's signatures cannot be checked.")

    zone.records[(f"google._domainkey.{DOMAIN}", "TXT")] = []
    key = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA" + "x" * 330  # longer than one 255-byte DNS string
    zone.txt(f"google._domainkey.{DOMAIN}", f"v=DKIM1; k=rsa; p={key}")
    assert by_area(check_dns(settings(root, dns, SMTP_HOST="smtp.gmail.com"), 600))["DKIM"] == Finding(
        "DKIM", Level.OK, "Google Workspace can sign the school's email (google._domainkey.oakfield.example.org holds "
        "a DKIM key).")


def test_dmarc_that_is_broken_or_enforces_against_this_newsletter(root: Path, dns: DnsStandIn, zone: Zone) -> None:
    zone.txt(f"_dmarc.{DOMAIN}", "v=DMARC1; rua=mailto:dmarc@oakfield.example.org")
    assert by_area(check_dns(settings(root, dns), 600))["DMARC"].summary == (
        "oakfield.example.org has a DMARC record without a valid policy (p=), so receivers ignore it. Gmail and Yahoo "
        "expect one, and it protects the school's name from being used by fraudsters.")
    zone.records[(f"_dmarc.{DOMAIN}", "TXT")] = []
    zone.txt(f"_dmarc.{DOMAIN}", "v=DMARC1; p=reject")
    dmarc = by_area(check_dns(settings(root, dns), 600))["DMARC"]
    assert (dmarc.level, dmarc.summary) == (
        Level.PROBLEM, "oakfield.example.org's DMARC policy (p=reject) tells receivers to refuse mail that neither "
                       "SPF nor DKIM vouches for, and this newsletter would be such mail.")


def test_bulk_senders_need_dmarc_and_dkim(root: Path, dns: DnsStandIn, zone: Zone) -> None:
    zone.txt(DOMAIN, "v=spf1 include:spf.protection.outlook.com -all")
    found = by_area(check_dns(settings(root, dns), 6000))
    assert found["SPF"].level is Level.OK
    assert (found["DKIM"].level, found["DMARC"].level) == (Level.PROBLEM, Level.PROBLEM)
    assert found["DMARC"].summary == ("oakfield.example.org has no DMARC record. Gmail and Yahoo refuse bulk mail "
                                      "(5,000 or more a day) without one.")


def test_a_relay_of_the_schools_own_is_checked_by_its_address(root: Path, dns: DnsStandIn, zone: Zone) -> None:
    zone.a("relay.oakfield.example.org", "192.0.2.25")
    zone.mx(DOMAIN, "relay.oakfield.example.org")
    zone.txt(DOMAIN, "v=spf1 mx -all")
    found = by_area(check_dns(settings(root, dns, SMTP_HOST="relay.oakfield.example.org"), 600))
    assert (found["SPF"].level, found["SPF"].summary) == (
        Level.OK, "oakfield.example.org's SPF record covers the relay's address: receivers accept the relay "
                  "relay.oakfield.example.org as a sender for the school.")
    assert found["DKIM"].level is Level.NOTE

    zone.records[(DOMAIN, "TXT")] = []
    zone.txt(DOMAIN, "v=spf1 ip4:198.51.100.0/24 -all")
    spf = by_area(check_dns(settings(root, dns, SMTP_HOST="relay.oakfield.example.org"), 600))["SPF"]
    assert spf.summary == ("oakfield.example.org's SPF record does not cover the relay relay.oakfield.example.org's "
                           "address (192.0.2.25), so the relay relay.oakfield.example.org is not listed as allowed to "
                           "send the school's email.")
    assert spf.it == "add ip4:192.0.2.25 before the all: v=spf1 ip4:198.51.100.0/24 -all"


def test_an_spf_record_needing_more_than_ten_lookups_fails(root: Path, dns: DnsStandIn, zone: Zone) -> None:
    includes = " ".join(f"include:svc{i}.example.net" for i in range(10))
    for i in range(10):
        zone.txt(f"svc{i}.example.net", "v=spf1 ip4:203.0.113.0/24 ~all")
    zone.txt(DOMAIN, f"v=spf1 {includes} include:spf.protection.outlook.com -all")
    spf = by_area(check_dns(settings(root, dns), 600))["SPF"]
    assert spf.summary == ("oakfield.example.org's SPF record needs 11 DNS lookups, more than the 10 receivers allow, "
                           "so it fails everywhere.")


def test_no_dns_server_answering_is_a_warning_not_a_verdict(root: Path) -> None:
    silent = make_resolver(f"127.0.0.1:{free_port()}", timeout=0.1)  # nobody answers: the wait is the test
    quiet_settings = load_settings(root, environ={"MAILROOM_TRANSPORT": "smtp", "SMTP_HOST": "smtp.office365.com"})
    (finding,) = check_dns(quiet_settings, 600, resolver=silent)
    assert finding.area == "DNS" and finding.level is Level.WARNING
    assert finding.summary.startswith("Could not look up oakfield.example.org's email records: no DNS server answered")


# --- the whole doctor, as the office runs it --------------------------------------------------------------

def _doctor(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("MAILROOM_", "SENDGRID_", "SMTP_"))}
    full.update(env, PYTHONPATH=str(ROOT), COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "mailroom", "doctor", *args], cwd=root, env=full,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def relay_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path]:
    ca = trustme.CA(organization_name="Oakfield Primary School IT")
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ca, path


def test_doctor_against_a_working_relay_reports_each_step_and_exits_0(
        root: Path, dns: DnsStandIn, zone: Zone, relay_ca: tuple[trustme.CA, Path]) -> None:
    ca, ca_file = relay_ca
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    handler = ScriptedHandler()
    controller = start_server(handler, authenticator=Authenticator("office@oakfield.example.org", "pw-Never-Shown"),
                              tls_context=context)
    zone.txt(DOMAIN, "v=spf1 ip4:127.0.0.1 -all")
    zone.txt(f"_dmarc.{DOMAIN}", "v=DMARC1; p=none")
    env = {"MAILROOM_TRANSPORT": "smtp", "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(controller.port),
           "SMTP_USERNAME": "office@oakfield.example.org", "SMTP_PASSWORD": "pw-Never-Shown",
           "SMTP_CA_FILE": str(ca_file), "MAILROOM_DNS_SERVER": dns.server, "MAILROOM_DB": str(root / "d.sqlite3")}
    try:
        run = _doctor(root, env)
        handler_mails = handler.mails
        bad = _doctor(root, {**env, "SMTP_PASSWORD": "wrong-pw-XYZ"})
    finally:
        controller.stop()
    assert run.returncode == 0, run.stdout + run.stderr
    lines = [line.rstrip() for line in run.stdout.splitlines()]
    assert lines[0] == "Checking Oakfield Primary School's set-up for sending newsletters (nothing is sent)."
    assert ("  OK       Sign-in      The mail server accepted the sign-in (username office@oakfield.example.org); "
            "nothing was sent.") in lines  # verdict, area and finding in their columns
    said = flat(run.stdout)
    assert "OK Settings Everything mailroom needs to send through 127.0.0.1:" in said
    assert f"OK Connection Reached the mail server 127.0.0.1:{controller.port}" in said
    assert ("OK Security The connection is encrypted: TLSv1.3, certificate verified (issued by Oakfield Primary "
            "School IT, valid until") in said
    assert "OK SPF oakfield.example.org's SPF record covers the relay's address" in said
    assert "OK Daily limit 3 people are on parents, staff, within the 10,000 a day the mail server allows." in said
    assert lines[-1] == "Everything checked is ready for sending."
    assert handler_mails == 0 and handler.received == []  # nothing was sent: no MAIL command at all
    assert "pw-Never-Shown" not in run.stdout + run.stderr

    assert bad.returncode == 2
    assert ("Problem Sign-in the SMTP username or password was not accepted by the mail server; check "
            "SMTP_USERNAME and SMTP_PASSWORD in .env") in flat(bad.stdout)
    assert "wrong-pw-XYZ" not in bad.stdout + bad.stderr
    assert flat(bad.stdout).endswith("1 problem, 0 warnings. The newsletter cannot go out (or big mailbox providers "
                                     "would refuse it) until the problems are fixed.")


def flat(text: str) -> str:
    """Output with runs of spaces and line breaks as one space (the grid wraps long findings in their column)."""
    return " ".join(text.split())


def test_doctor_exits_2_for_missing_records_and_0_once_they_are_there(
        root: Path, dns: DnsStandIn, zone: Zone) -> None:
    env = {"MAILROOM_TRANSPORT": "smtp", "SMTP_HOST": "smtp.office365.com", "MAILROOM_DNS_SERVER": dns.server,
           "MAILROOM_DB": str(root / "d.sqlite3")}
    missing = _doctor(root, env, "--no-connect")
    assert missing.returncode == 2
    assert ("Problem SPF oakfield.example.org has no SPF record, so receiving mail servers cannot tell that "
            "Microsoft 365 may send the school's email. What to do: Ask whoever manages the school's domain name to "
            'add it. For IT: add a TXT record on oakfield.example.org: "v=spf1 include:spf.protection.outlook.com '
            '-all"') in flat(missing.stdout)
    microsoft_good(zone)
    fixed = _doctor(root, env, "--no-connect")
    assert fixed.returncode == 0, fixed.stdout


def test_doctor_names_missing_oauth_settings_without_connecting(root: Path, dns: DnsStandIn, zone: Zone) -> None:
    env = {"MAILROOM_TRANSPORT": "smtp", "SMTP_HOST": "smtp.office365.com", "SMTP_AUTH": "oauth2-microsoft",
           "SMTP_USERNAME": "newsletter@oakfield.example.org", "MAILROOM_DNS_SERVER": dns.server,
           "MAILROOM_DB": str(root / "d.sqlite3")}
    run = _doctor(root, env)
    assert run.returncode == 2
    assert "Problem Settings SMTP_OAUTH_TENANT_ID is not set" in flat(run.stdout)
    assert "Problem Settings SMTP_OAUTH_CLIENT_ID is not set" in flat(run.stdout)
    assert "Connection" not in run.stdout  # nothing contacted while the settings are incomplete


# --- SendGrid: the key check that sends nothing -----------------------------------------------------------

class Scopes:
    """GET /v3/scopes as SendGrid answers it: the key's own permissions (401 for an unknown key)."""

    def __init__(self, key: str, scopes: list[str]) -> None:
        self.key, self.scopes, self.paths = key, scopes, []
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                standin.paths.append((self.command, self.path))
                ok = self.headers.get("Authorization") == f"Bearer {standin.key}"
                body = json.dumps({"scopes": standin.scopes} if ok else
                                  {"errors": [{"field": None, "message": "authorization required"}]}).encode()
                self.send_response(200 if ok else 401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        # a short poll: shutdown() waits for the next one (the default 0.5 s, for every test)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(("scopes", "key", "expected"), [
    (["mail.send", "alerts.read"], "SG.good", (Level.OK, "The SendGrid API key has the Mail Send permission.")),
    (["stats.read"], "SG.good",
     (Level.PROBLEM, "The SendGrid API key may not send email (it lacks the Mail Send permission).")),
    (["mail.send"], "SG.revoked", (Level.PROBLEM, "SendGrid did not accept the API key (SENDGRID_API_KEY).")),
])
def test_sendgrid_key_check_reads_the_scopes_and_sends_nothing(
        root: Path, dns: DnsStandIn, zone: Zone, scopes: list[str], key: str, expected: tuple[Level, str]) -> None:
    standin = Scopes("SG.good", scopes)
    try:
        found = run_doctor(settings(root, dns, MAILROOM_TRANSPORT="sendgrid", SENDGRID_API_KEY=key,
                                    SENDGRID_API_HOST=standin.url))
    finally:
        standin.stop()
    sign_in = [f for f in found if f.area == "Sign-in"]
    assert (sign_in[-1].level, sign_in[-1].summary) == expected
    assert standin.paths == [("GET", "/v3/scopes")]  # one read-only request; no mail/send


# --- the daily limit counts what the relay already took today ------------------------------------------

def test_the_daily_limit_counts_what_mailroom_sent_through_the_relay_in_the_last_24_hours(
        tmp_path: Path, dns: DnsStandIn, zone: Zone) -> None:
    """Three people on the lists fit a limit of 4, until the ledger shows 2 messages through this relay today
    (another newsletter); messages through another transport, or from yesterday, do not count."""
    from mailroom.send.ledger import BatchKind, Ledger, SendState

    root = tmp_path / "school"
    make_project(root)
    (root / "audiences.csv").write_text("email,first_name,last_name,lists,status\n"
                                        "amelia.hughes@example.org,Amelia,Hughes,parents,subscribed\n"
                                        "rahul.patel@example.com,Rahul,Patel,parents,subscribed\n"
                                        "priya.shah@example.org,Priya,Shah,staff,subscribed\n")
    text = (root / "school.toml").read_text(encoding="utf-8")
    (root / "school.toml").write_text(text.replace("daily_limit = 10000", "daily_limit = 4"), encoding="utf-8")
    microsoft_good(zone)

    def limit_finding() -> Finding:
        found = run_doctor(settings(root, dns), connect=False)
        return next(f for f in found if f.area == "Daily limit")

    assert limit_finding().level is Level.OK  # no ledger yet: nothing counted, nothing created
    assert not (root / "d.sqlite3").exists()
    with Ledger(root / "d.sqlite3") as ledger:
        for transport, people in (("smtp", ["a@example.org", "b@example.org"]), ("sendgrid", ["c@example.org"])):
            batch = ledger.begin_batch(newsletter="older", audience="parents", kind=BatchKind.LIVE,
                                       transport=transport, build_hash="h", keys=people)
            ledger.record_batch(batch, "older", BatchKind.LIVE, SendState.SENT, message_id="m")
        yesterday = ledger.begin_batch(newsletter="older", audience="staff", kind=BatchKind.LIVE, transport="smtp",
                                       build_hash="h", keys=["d@example.org"])
        ledger.record_batch(yesterday, "older", BatchKind.LIVE, SendState.SENT)
        ledger.conn.execute("UPDATE send_batches SET started_at = '2020-01-01T00:00:00Z' WHERE batch_id = ?",
                            (yesterday,))
    finding = limit_finding()
    assert finding.level is Level.WARNING
    assert finding.summary == ("3 people are on parents, staff, and the mail server already took 2 messages from "
                               "mailroom in the last 24 hours: sending now would pass the 4 a day it allows.")
