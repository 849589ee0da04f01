"""An authoritative DNS server on 127.0.0.1 (dnslib, UDP and TCP on one port) serving a zone a test writes,
so dnspython in ``mailroom doctor`` reads real DNS answers: TXT (split into 255-byte strings as DNS
requires), CNAME (followed for other types, as a resolver does), A and MX; NXDOMAIN for unknown names."""

from __future__ import annotations

import threading
from collections import defaultdict

from dnslib import CNAME, MX, QTYPE, RCODE, RR, TXT, A
from dnslib.server import BaseResolver, DNSLogger, DNSServer

from tests.smtp_server import free_port


class Zone(BaseResolver):
    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[object]] = defaultdict(list)
        self.queries: list[tuple[str, str]] = []

    def txt(self, name: str, text: str) -> Zone:
        data = text.encode()
        self.records[(name.lower(), "TXT")].append(TXT([data[i:i + 255] for i in range(0, len(data), 255)] or [b""]))
        return self

    def cname(self, name: str, target: str) -> Zone:
        self.records[(name.lower(), "CNAME")].append(CNAME(target))
        return self

    def a(self, name: str, address: str) -> Zone:
        self.records[(name.lower(), "A")].append(A(address))
        return self

    def mx(self, name: str, host: str, preference: int = 10) -> Zone:
        self.records[(name.lower(), "MX")].append(MX(host, preference))
        return self

    def clear(self) -> None:
        self.records.clear()

    def resolve(self, request, handler):  # type: ignore[no-untyped-def] - dnslib's interface
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        kind = QTYPE[request.q.qtype]
        self.queries.append((name, kind))
        for _hop in range(8):
            answers = self.records.get((name, kind), [])
            if answers:
                reply.add_answer(*[RR(name, request.q.qtype, rdata=r, ttl=60) for r in answers])
                return reply
            aliases = self.records.get((name, "CNAME"), []) if kind != "CNAME" else []
            if not aliases:
                break
            reply.add_answer(RR(name, QTYPE.CNAME, rdata=aliases[0], ttl=60))
            name = str(aliases[0].label).rstrip(".").lower()  # type: ignore[attr-defined]
        if not any(key[0] == name for key in self.records) and not reply.rr:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


class DnsStandIn:
    """``with DnsStandIn() as dns: dns.zone.txt(...)``; ``dns.server`` is "127.0.0.1:PORT"."""

    def __init__(self) -> None:
        self.zone = Zone()
        self.port = free_port()
        quiet = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
        self._servers = [DNSServer(self.zone, address="127.0.0.1", port=self.port, tcp=tcp, logger=quiet)
                         for tcp in (False, True)]

    @property
    def server(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> DnsStandIn:
        for server in self._servers:
            # dnslib's start_thread() polls every 0.5 s, and stop() waits for the next poll: twice per stand-in
            server.thread = threading.Thread(target=server.server.serve_forever, kwargs={"poll_interval": 0.01},
                                             daemon=True)
            server.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for server in self._servers:
            server.stop()
