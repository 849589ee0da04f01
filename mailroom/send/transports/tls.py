"""TLS towards the relay: which certificate authorities to trust, and what exactly is wrong when a
certificate is refused.

A school relay behind its own (private) certificate authority is trusted by naming that authority's
certificate in SMTP_CA_FILE, on top of the computer's usual ones. When verification fails, the message
says which of the three usual problems it is: an issuer this computer does not trust (suggest
SMTP_CA_FILE), a certificate for another name (check SMTP_HOST), or an expired certificate (the relay's
administrator must renew it). To name the issuer and the dates, mailroom looks at the certificate once
more without trusting it, only to describe it; nothing is sent over that connection.
"""

from __future__ import annotations

import contextlib
import smtplib
import ssl
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from mailroom.errors import ConfigError

# OpenSSL's verification results (X509_V_ERR_*) grouped by what the school should do.
_UNTRUSTED = {2, 18, 19, 20, 21, 27}
_EXPIRED = {10}
_NOT_YET_VALID = {9}
_NAME_MISMATCH = {62, 64}


def client_context(ca_file: Path | None) -> ssl.SSLContext:
    """The computer's trusted authorities, plus SMTP_CA_FILE's when set (a clear ConfigError if unusable)."""
    context = ssl.create_default_context()
    if ca_file is not None:
        if not ca_file.is_file():
            raise ConfigError("SMTP_CA_FILE names a file that does not exist", ca_file)
        try:
            context.load_verify_locations(cafile=str(ca_file))
        except (ssl.SSLError, OSError, UnicodeDecodeError):
            raise ConfigError("SMTP_CA_FILE should be a certificate authority's certificate in PEM form (text "
                              "starting -----BEGIN CERTIFICATE-----)", ca_file) from None
    return context


@dataclass(frozen=True)
class CertificateFacts:
    """What the relay's certificate says about itself (read without trusting it)."""

    subject: str
    issuer: str  # its common name, or the whole distinguished name when it has none
    issuer_organisation: str  # the organisation (or the common name): how a person knows the issuer
    names: tuple[str, ...]
    not_before: datetime
    not_after: datetime


def peer_certificate(host: str, port: int, security: str, timeout: float) -> CertificateFacts | None:
    """The relay's certificate, fetched over a connection that checks nothing; None if that fails too."""
    unchecked = ssl.create_default_context()
    unchecked.check_hostname = False
    unchecked.verify_mode = ssl.CERT_NONE
    conn: smtplib.SMTP | None = None
    try:
        if security == "ssl":
            conn = smtplib.SMTP_SSL(host, port, timeout=timeout, context=unchecked)
        else:
            conn = smtplib.SMTP(host, port, timeout=timeout)
            conn.ehlo()
            conn.starttls(context=unchecked)
        sock = conn.sock
        der = sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) else None
    except (OSError, smtplib.SMTPException, ValueError):
        return None
    finally:
        if conn is not None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                conn.close()
    return describe_der(der) if der else None


def describe_der(der: bytes) -> CertificateFacts | None:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return None

    def common_name(name: x509.Name) -> str:
        found = name.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(found[0].value) if found else name.rfc4514_string()

    names: list[str] = []
    with contextlib.suppress(x509.ExtensionNotFound):
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n) for n in san.get_values_for_type(x509.DNSName)]
        names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    organisation = cert.issuer.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    issuer = common_name(cert.issuer)
    return CertificateFacts(subject=common_name(cert.subject), issuer=issuer,
                            issuer_organisation=str(organisation[0].value) if organisation else issuer,
                            names=tuple(names),
                            not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc)


def explain_certificate_error(error: ssl.SSLCertVerificationError, host: str, port: int, security: str,
                              timeout: float, ca_file: Path | None) -> str:
    """One message naming the problem (untrusted issuer, wrong name, expired) and what to do about it."""
    where = f"the SMTP server {host}:{port}"
    code = error.verify_code
    facts = peer_certificate(host, port, security, timeout)
    if code in _UNTRUSTED:
        issuer = f'"{facts.issuer}"' if facts else "an issuer"
        if ca_file is not None:
            fix = (f"SMTP_CA_FILE ({ca_file.name}) is set but is not the authority that issued this certificate; "
                   "ask the relay's administrator for the right certificate authority file")
        else:
            fix = ("if the school's IT runs its own certificate authority, save that authority's certificate "
                   "(a .pem or .crt file) in the project folder and set SMTP_CA_FILE to it in .env")
        return (f"{where} did not prove who it is: its certificate was issued by {issuer}, a certificate "
                f"authority this computer does not trust. For IT: {fix}")
    if code in _EXPIRED:
        when = f" on {facts.not_after:%Y-%m-%d}" if facts else ""
        return (f"{where} did not prove who it is: its certificate expired{when}. For IT: the relay's "
                "administrator must renew the certificate (check also that this computer's date is right)")
    if code in _NOT_YET_VALID:
        when = f" until {facts.not_before:%Y-%m-%d}" if facts else ""
        return (f"{where} did not prove who it is: its certificate is not valid yet{when}. For IT: check this "
                "computer's date and time")
    if code in _NAME_MISMATCH:
        names = ", ".join(facts.names or (facts.subject,)) if facts else "another name"
        return (f"{where} did not prove who it is: its certificate is for {names}, not {host}. For IT: set "
                "SMTP_HOST to the name on the certificate (for example smtp.office365.com rather than an "
                "address or an alias)")
    return f"{where} did not prove who it is ({error.verify_message}); check SMTP_HOST and SMTP_CA_FILE"
