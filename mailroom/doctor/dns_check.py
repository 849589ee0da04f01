"""The sender domain's SPF, DKIM and DMARC, read from DNS (dnspython), against the way mail leaves.

Since 2024 Gmail, Yahoo and Outlook.com refuse or junk mail whose sender domain does not vouch for the
service that sent it. Three DNS records do the vouching:
- SPF (a TXT record on the domain): which servers may send as the domain. It must include the relay
  (spf.protection.outlook.com for Microsoft 365, _spf.google.com for Google, sendgrid.net for SendGrid).
- DKIM (CNAME or TXT records under ``_domainkey``): the public key the service signs messages with.
  Microsoft 365 uses selector1/selector2 CNAMEs, SendGrid's domain authentication s1/s2 CNAMEs, Google a
  TXT record at google._domainkey.
- DMARC (a TXT record at ``_dmarc``): what receivers should do with mail that fails both; required by
  Gmail and Yahoo for anyone sending 5,000 or more messages a day.

Severity follows what receivers do: with neither SPF nor DKIM vouching for the sender the newsletter is
refused (a PROBLEM); with one of them it gets through but should be fixed (a WARNING), except for bulk
senders, who need all three.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import dns.exception
import dns.resolver

from mailroom.doctor.findings import Finding, Level
from mailroom.settings import Settings

BULK = 5000  # messages a day at which Gmail's and Yahoo's bulk-sender rules (DMARC required) apply
_SPF_LOOKUP_LIMIT = 10  # RFC 7208 4.6.4: more DNS-querying mechanisms than this and SPF fails (permerror)
_DNS_HOST = "whoever manages the school's domain name"


class DnsUnavailable(Exception):
    """No DNS server answered: nothing can be concluded about the records."""


def make_resolver(server: str = "", timeout: float = 5.0) -> dns.resolver.Resolver:
    """The computer's resolver, or ``server`` ("127.0.0.1:5353", "192.0.2.53") when MAILROOM_DNS_SERVER is set."""
    if not server:
        resolver = dns.resolver.Resolver()
    else:
        resolver = dns.resolver.Resolver(configure=False)
        host, _, port = server.rpartition(":") if server.count(":") == 1 else (server, "", "")
        resolver.nameservers = [host]
        if port:
            resolver.port = int(port)
    resolver.lifetime = timeout
    return resolver


class Dns:
    """TXT and CNAME lookups where "no such record" is an empty answer and an unreachable server an error."""

    def __init__(self, resolver: dns.resolver.Resolver) -> None:
        self.resolver = resolver

    def _query(self, name: str, kind: str) -> list[object]:
        try:
            return list(self.resolver.resolve(name, kind, search=False))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.resolver.NoNameservers, dns.exception.Timeout, dns.resolver.NoResolverConfiguration) as exc:
            raise DnsUnavailable(exc.__class__.__name__) from None

    def txt(self, name: str) -> list[str]:
        return [b"".join(r.strings).decode("utf-8", "replace") for r in self._query(name, "TXT")]  # type: ignore[attr-defined]

    def cname(self, name: str) -> str | None:
        answers = self._query(name, "CNAME")
        return str(answers[0].target).rstrip(".").lower() if answers else None  # type: ignore[attr-defined]

    def addresses(self, name: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
        for kind in ("A", "AAAA"):
            found += [ipaddress.ip_address(str(r)) for r in self._query(name, kind)]
        return found

    def mx_hosts(self, name: str) -> list[str]:
        return [str(r.exchange).rstrip(".") for r in self._query(name, "MX")]  # type: ignore[attr-defined]


# --- who sends: the provider the records must vouch for ----------------------------------------------------

@dataclass(frozen=True)
class Provider:
    name: str  # as the office knows it
    spf_include: str  # "" when it is a relay of the school's own (checked by its addresses instead)
    dkim: str  # "microsoft", "google", "sendgrid" or "" (unknown selector)


def provider_for(settings: Settings) -> Provider:
    if settings.transport == "sendgrid":
        return Provider("SendGrid", "sendgrid.net", "sendgrid")
    host = settings.smtp.host.lower()
    if host.endswith(("office365.com", "outlook.com")):
        return Provider("Microsoft 365", "spf.protection.outlook.com", "microsoft")
    if host.endswith(("gmail.com", "googlemail.com", "google.com")):
        return Provider("Google Workspace", "_spf.google.com", "google")
    return Provider(f"the relay {settings.smtp.host}", "", "")


# --- SPF ------------------------------------------------------------------------------------------------

@dataclass
class Spf:
    records: list[str]
    includes: set[str] = field(default_factory=set)  # every domain reached through include: or redirect=
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(default_factory=list)
    lookups: int = 0
    all_qualifier: str | None = None  # "-", "~", "?", "+" on the domain's own record


def read_spf(dns_: Dns, domain: str) -> Spf:
    records = [r for r in dns_.txt(domain) if r.lower().split(" ", 1)[0] == "v=spf1"]
    spf = Spf(records)
    if len(records) == 1:
        _walk_spf(dns_, domain, records[0], spf, depth=0, top=True)
    return spf


def _walk_spf(dns_: Dns, domain: str, record: str, spf: Spf, *, depth: int, top: bool) -> None:
    for term in record.split()[1:]:
        qualifier = term[0] if term[0] in "+-~?" else "+"
        mechanism = term.lstrip("+-~?")
        name, _, value = mechanism.partition(":")
        if "=" in name:
            name, _, value = mechanism.partition("=")
        name = name.lower()
        if name == "all" and top:
            spf.all_qualifier = qualifier
        elif name in ("ip4", "ip6") and value:
            try:
                spf.networks.append(ipaddress.ip_network(value, strict=False))
            except ValueError:
                continue
        elif name in ("a", "mx", "ptr", "exists"):
            spf.lookups += 1
            target = (value or domain).split("/")[0]
            if name == "a":
                spf.networks += [ipaddress.ip_network(a) for a in dns_.addresses(target)]
            elif name == "mx":
                for host in dns_.mx_hosts(target):
                    spf.networks += [ipaddress.ip_network(a) for a in dns_.addresses(host)]
        elif name in ("include", "redirect") and value:
            spf.lookups += 1
            spf.includes.add(value.lower().rstrip("."))
            if depth < _SPF_LOOKUP_LIMIT:
                nested = [r for r in dns_.txt(value) if r.lower().split(" ", 1)[0] == "v=spf1"]
                if len(nested) == 1:
                    _walk_spf(dns_, value, nested[0], spf, depth=depth + 1, top=False)


def _with_include(record: str, include: str) -> str:
    """The record with ``include:`` added before its ``all`` (or at the end)."""
    terms = record.split()
    for index, term in enumerate(terms):
        if term.lstrip("+-~?").lower() == "all":
            return " ".join([*terms[:index], f"include:{include}", *terms[index:]])
    return " ".join([*terms, f"include:{include}", "~all"])


def _covers(spf: Spf, provider: Provider, relay_addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address]) -> bool:
    if provider.spf_include:
        return provider.spf_include in spf.includes
    return bool(relay_addresses) and all(any(a in net for net in spf.networks) for a in relay_addresses)


# --- DKIM -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Dkim:
    ok: bool
    found: str  # what is there now, for the message
    missing: tuple[str, ...] = ()  # names with no record
    wrong: tuple[tuple[str, str], ...] = ()  # (name, what is wrong with it: "points to ...")


def read_dkim(dns_: Dns, domain: str, provider: Provider) -> Dkim | None:
    if provider.dkim in ("microsoft", "sendgrid"):
        selectors = ("selector1", "selector2") if provider.dkim == "microsoft" else ("s1", "s2")
        expected = (".onmicrosoft.com", ".dkim.mail.microsoft") if provider.dkim == "microsoft" else (".sendgrid.net",)
        missing, wrong, good = [], [], []
        for selector in selectors:
            name = f"{selector}._domainkey.{domain}"
            target = dns_.cname(name)
            if target is None:
                if _has_key(dns_.txt(name)):  # a key published directly (not the provider's CNAME)
                    wrong.append((name, f"holds a key of its own instead of the CNAME to {provider.name}"))
                else:
                    missing.append(name)
            elif not target.endswith(expected):
                wrong.append((name, f"points to {target}"))
            else:
                good.append(f"{name} -> {target}")
        return Dkim(not missing and not wrong, "; ".join(good), tuple(missing), tuple(wrong))
    if provider.dkim == "google":
        name = f"google._domainkey.{domain}"
        records = [r for r in dns_.txt(name) if "v=dkim1" in r.lower().replace(" ", "") or "p=" in r]
        if not records:
            return Dkim(False, "", (name,))
        if not _has_key(records):
            return Dkim(False, "", (), ((name, "has an empty key (p=), which means the key was revoked"),))
        return Dkim(True, f"{name} holds a DKIM key")
    return None


def _has_key(records: list[str]) -> bool:
    for record in records:
        tags = dict(part.strip().split("=", 1) for part in record.split(";") if "=" in part)
        if tags.get("p", "").strip():
            return True
    return False


# --- DMARC ----------------------------------------------------------------------------------------------

def read_dmarc(dns_: Dns, domain: str) -> tuple[list[str], dict[str, str]]:
    records = [r for r in dns_.txt(f"_dmarc.{domain}") if r.replace(" ", "").lower().startswith("v=dmarc1")]
    tags: dict[str, str] = {}
    if len(records) == 1:
        tags = {k.strip().lower(): v.strip() for k, _, v in (part.partition("=") for part in records[0].split(";"))
                if k.strip()}
    return records, tags


# --- the findings ---------------------------------------------------------------------------------------

def check_dns(settings: Settings, list_size: int, *, resolver: dns.resolver.Resolver | None = None) -> list[Finding]:
    """SPF, DKIM and DMARC findings for the sender's domain (nothing to check for the outbox)."""
    if settings.transport == "outbox":
        return []
    domain = settings.sender.email.rsplit("@", 1)[-1].lower()
    provider = provider_for(settings)
    lookups = Dns(resolver or make_resolver(settings.dns_server))
    try:
        return _findings(lookups, domain, provider, settings, list_size)
    except DnsUnavailable as exc:
        return [Finding("DNS", Level.WARNING, f"Could not look up {domain}'s email records: no DNS server answered "
                        f"({exc}).", todo="Check the internet connection and run the doctor again.",
                        it="If MAILROOM_DNS_SERVER is set, check it points at a working DNS server.")]


def _findings(dns_: Dns, domain: str, provider: Provider, settings: Settings, list_size: int) -> list[Finding]:
    bulk = list_size >= BULK
    spf = read_spf(dns_, domain)
    relay: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    if not provider.spf_include:
        try:
            relay = [ipaddress.ip_address(settings.smtp.host)]
        except ValueError:
            relay = dns_.addresses(settings.smtp.host)
    spf_ok = len(spf.records) == 1 and _covers(spf, provider, relay) and spf.lookups <= _SPF_LOOKUP_LIMIT
    dkim = read_dkim(dns_, domain, provider)
    dkim_ok = dkim is not None and dkim.ok
    vouched = spf_ok or dkim_ok or dkim is None  # an unknown relay's DKIM cannot be judged here
    findings = [_spf_finding(spf, domain, provider, relay, spf_ok, dkim_ok),
                _dkim_finding(dkim, domain, provider, spf_ok, bulk)]
    findings.append(_dmarc_finding(*read_dmarc(dns_, domain), domain=domain, bulk=bulk, vouched=vouched))
    return findings


def _spf_finding(spf: Spf, domain: str, provider: Provider, relay: list[ipaddress.IPv4Address | ipaddress.IPv6Address],
                 spf_ok: bool, dkim_ok: bool) -> Finding:
    level = Level.WARNING if dkim_ok else Level.PROBLEM
    include = provider.spf_include
    suggested = f'"v=spf1 include:{include} -all"' if include else \
        f'"v=spf1 {" ".join(_ip_mechanism(a) for a in relay) or "ip4:<the relay address>"} -all"'
    if not spf.records:
        return Finding("SPF", level, f"{domain} has no SPF record, so receiving mail servers cannot tell that "
                       f"{provider.name} may send the school's email.", todo=f"Ask {_DNS_HOST} to add it.",
                       it=f"add a TXT record on {domain}: {suggested}")
    if len(spf.records) > 1:
        return Finding("SPF", level, f"{domain} has {len(spf.records)} SPF records; receivers treat that as an error "
                       "and ignore them all.", todo=f"Ask {_DNS_HOST} to merge them into one.",
                       it="keep one TXT record starting v=spf1 with every include: from the others, e.g. "
                          + " | ".join(spf.records))
    record = spf.records[0]
    if spf.lookups > _SPF_LOOKUP_LIMIT:
        return Finding("SPF", level, f"{domain}'s SPF record needs {spf.lookups} DNS lookups, more than the 10 "
                       "receivers allow, so it fails everywhere.", todo=f"Ask {_DNS_HOST} to shorten it.",
                       it=f"remove include: entries for services the school no longer uses from: {record}")
    if not spf_ok:
        if include:
            fix = f'change it to "{_with_include(record, include)}"'
            what = f"does not include {include}"
        else:
            fix = f"add {' '.join(_ip_mechanism(a) for a in relay) or 'the relay address'} before the all: {record}"
            what = f"does not cover {provider.name}'s address ({', '.join(map(str, relay)) or 'unknown'})"
        return Finding("SPF", level, f"{domain}'s SPF record {what}, so {provider.name} is not listed as allowed to "
                       "send the school's email.", todo=f"Ask {_DNS_HOST} to add it.", it=fix)
    if spf.all_qualifier == "+":
        return Finding("SPF", Level.WARNING, f"{domain}'s SPF record ends in +all, which lets any server in the "
                       "world send as the school.", todo=f"Ask {_DNS_HOST} to change it.",
                       it=f"replace +all with -all (or ~all) in: {record}")
    covered = f"includes {include}" if include else "covers the relay's address"
    return Finding("SPF", Level.OK, f"{domain}'s SPF record {covered}: receivers accept {provider.name} as a sender "
                   "for the school.")


def _ip_mechanism(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    return f"ip{address.version}:{address}"


_DKIM_SETUP = {
    "microsoft": ("In Microsoft Defender portal > Email & collaboration > Policies & rules > Threat policies > Email "
                  "authentication settings > DKIM, select {domain}: it shows the two CNAME records to add, "
                  "selector1._domainkey and selector2._domainkey pointing to selector1-/selector2-...onmicrosoft.com. "
                  "Add them at the DNS host, then switch on \"Sign messages for this domain with DKIM signatures\"."),
    "sendgrid": ("In SendGrid > Settings > Sender Authentication > Authenticate Your Domain, SendGrid lists three "
                 "CNAME records: em1234.{domain}, s1._domainkey.{domain} and s2._domainkey.{domain} (pointing to "
                 "...sendgrid.net). Add them at the DNS host, then press Verify."),
    "google": ("In the Google Admin console > Apps > Google Workspace > Gmail > Authenticate email, generate a "
               "record for {domain}, add it as a TXT record at google._domainkey.{domain}, then press Start "
               "authentication."),
}


def _dkim_finding(dkim: Dkim | None, domain: str, provider: Provider, spf_ok: bool, bulk: bool) -> Finding:
    if dkim is None:
        return Finding("DKIM", Level.NOTE, f"mailroom cannot tell which DKIM key {provider.name} signs with.",
                       todo="Ask the relay's administrator whether it signs the school's mail with DKIM.",
                       it=f"the relay should sign with d={domain}; publish its selector's key under "
                          f"<selector>._domainkey.{domain}")
    if dkim.ok:
        return Finding("DKIM", Level.OK, f"{provider.name} can sign the school's email ({dkim.found}).")
    level = Level.PROBLEM if not spf_ok or bulk else Level.WARNING
    setup = _DKIM_SETUP[provider.dkim].format(domain=domain)
    if dkim.wrong:
        name, what = dkim.wrong[0]
        summary = f"The DKIM record {name} {what}, so {provider.name}'s signatures cannot be checked."
        return Finding("DKIM", level, summary, todo=f"Ask {_DNS_HOST} to correct it.", it=setup)
    names = " and ".join(dkim.missing)
    return Finding("DKIM", level, f"{provider.name} cannot sign the school's email: {names} "
                   f"{'is' if len(dkim.missing) == 1 else 'are'} missing.",
                   todo=f"Ask whoever manages {provider.name} and the school's domain name to set up DKIM.",
                   it=setup)


def _dmarc_finding(records: list[str], tags: dict[str, str], *, domain: str, bulk: bool, vouched: bool) -> Finding:
    start = f'"v=DMARC1; p=none; rua=mailto:dmarc-reports@{domain}"'
    level = Level.PROBLEM if bulk else Level.WARNING
    why = ("Gmail and Yahoo refuse bulk mail (5,000 or more a day) without one" if bulk else
           "Gmail and Yahoo expect one, and it protects the school's name from being used by fraudsters")
    if not records:
        return Finding("DMARC", level, f"{domain} has no DMARC record. {why}.", todo=f"Ask {_DNS_HOST} to add one.",
                       it=f"add a TXT record at _dmarc.{domain}: {start} (start with p=none, move to p=quarantine "
                          "once the reports show all the school's mail passes)")
    if len(records) > 1 or tags.get("p", "").lower() not in ("none", "quarantine", "reject"):
        problem = f"{len(records)} DMARC records" if len(records) > 1 else "a DMARC record without a valid policy (p=)"
        return Finding("DMARC", level, f"{domain} has {problem}, so receivers ignore it. {why}.",
                       todo=f"Ask {_DNS_HOST} to correct it.",
                       it=f"keep one TXT record at _dmarc.{domain} such as {start}; now: {' | '.join(records)}")
    policy = tags["p"].lower()
    if policy in ("quarantine", "reject") and not vouched:
        return Finding("DMARC", Level.PROBLEM, f"{domain}'s DMARC policy (p={policy}) tells receivers to "
                       f"{'junk' if policy == 'quarantine' else 'refuse'} mail that neither SPF nor DKIM vouches for, "
                       "and this newsletter would be such mail.", todo="Fix SPF or DKIM above first.",
                       it="see the SPF and DKIM findings; do not weaken the DMARC policy")
    if policy == "none":
        return Finding("DMARC", Level.OK, f"{domain} has a DMARC record (p=none: receivers report but do not act).",
                       it="once the reports show every service passes, consider p=quarantine")
    return Finding("DMARC", Level.OK, f"{domain} has a DMARC record (p={policy}).")
