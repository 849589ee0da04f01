"""Sign-in refusals in office words, each with the fix an IT helper can act on.

Microsoft's identity platform (Entra ID) answers with an AADSTS code; Exchange Online answers the SMTP
AUTH or MAIL command with an enhanced status code (5.7.139, 5.7.60...); Google's token endpoint answers
with an OAuth error name and description. Every explanation has two parts: what happened, plainly, and
"For IT:", the exact setting or command that fixes it. The code itself is quoted last, so a search for it
finds Microsoft's or Google's own page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Explanation:
    office: str  # what happened, for the person at the keyboard
    it: str  # what to change, precisely, for whoever manages the school's Microsoft 365 / Google account

    def text(self, code: str = "") -> str:
        said = f"{self.office} For IT: {self.it}"
        return f"{said} ({code})" if code else said


_REGISTRATION = "Microsoft Entra admin centre > App registrations > the mailroom app"

# AADSTS codes a school meets when setting up or running mailroom, most common first.
MICROSOFT_CODES: dict[int, Explanation] = {
    7000215: Explanation(
        "Microsoft did not accept the app's secret (SMTP_OAUTH_CLIENT_SECRET).",
        f"copy the secret's Value (not its Secret ID) from {_REGISTRATION} > Certificates & secrets into "
        "SMTP_OAUTH_CLIENT_SECRET in .env, or create a new client secret there."),
    7000222: Explanation(
        "The app's secret (SMTP_OAUTH_CLIENT_SECRET) has expired.",
        f"create a new client secret in {_REGISTRATION} > Certificates & secrets and put its Value in .env; "
        "note its expiry date in the school calendar."),
    700016: Explanation(
        "Microsoft cannot find the app mailroom signs in as.",
        "check SMTP_OAUTH_CLIENT_ID is the Application (client) ID and SMTP_OAUTH_TENANT_ID the Directory "
        "(tenant) ID shown on the app registration's Overview page, and that the app is registered in the "
        "school's own tenant."),
    90002: Explanation(
        "Microsoft does not know the school's tenant.",
        "check SMTP_OAUTH_TENANT_ID: the Directory (tenant) ID from the app registration's Overview page, "
        "or the school's domain."),
    900023: Explanation(
        "The school's tenant is not written correctly.",
        "SMTP_OAUTH_TENANT_ID should be the Directory (tenant) ID (a GUID) or the school's domain name."),
    65001: Explanation(
        "The app has not been given permission to send email yet.",
        f"in {_REGISTRATION} > API permissions, add Office 365 Exchange Online > Application permissions > "
        "SMTP.SendAsApp (to sign in as the app) or Microsoft Graph > Delegated permissions > SMTP.Send (to sign in "
        "as the mailbox's user), then press \"Grant admin consent\"."),
    50076: Explanation(
        "This account must confirm the sign-in with multi-factor authentication.",
        "run  python -m mailroom sign-in  and complete the sign-in, with its second step, in the browser; "
        "a conditional-access rule may also need to allow the device-code sign-in."),
    50079: Explanation(
        "This account must set up multi-factor authentication before it can sign in.",
        "sign in once at https://mysignins.microsoft.com as the mailbox's user to register a second step, "
        "then run  python -m mailroom sign-in  again."),
    50078: Explanation(
        "The sign-in has expired because the account's multi-factor settings changed.",
        "run  python -m mailroom sign-in  again."),
    53003: Explanation(
        "A conditional-access rule of the school blocked the sign-in.",
        "in Microsoft Entra admin centre > Protection > Conditional Access > Sign-in logs, find the rule "
        "that blocked it and exclude the mailroom app or this computer's location."),
    7000218: Explanation(
        "The app is not set up for signing in from a device.",
        f"in {_REGISTRATION} > Authentication, set \"Allow public client flows\" to Yes, or give mailroom "
        "a client secret (SMTP_OAUTH_CLIENT_SECRET) to sign in as the app."),
    700082: Explanation(
        "The saved sign-in was not used for too long and has expired.",
        "run  python -m mailroom sign-in  again."),
    70008: Explanation(
        "The saved sign-in has expired or was revoked.",
        "run  python -m mailroom sign-in  again."),
    50173: Explanation(
        "The saved sign-in is no longer valid (the account's password was changed).",
        "run  python -m mailroom sign-in  again."),
    50057: Explanation(
        "The mailbox's user account is disabled.",
        "enable the account in Microsoft 365 admin centre > Users, or sign in as another mailbox."),
    50034: Explanation(
        "The account does not exist in the school's tenant.",
        "check SMTP_USERNAME and sign in with that mailbox's account."),
    700027: Explanation(
        "Microsoft did not accept the app's certificate.",
        f"upload the certificate in SMTP_OAUTH_CLIENT_CERTIFICATE (its public part, a .cer or .pem) to "
        f"{_REGISTRATION} > Certificates & secrets > Certificates."),
    700024: Explanation(
        "This computer's clock is wrong, so Microsoft refused the sign-in.",
        "set the computer's date, time and time zone to update automatically."),
    70011: Explanation(
        "mailroom asked for a permission Microsoft does not recognise.",
        "leave SMTP_OAUTH_SCOPE empty (the usual Exchange Online scope), or set the national cloud's "
        "Exchange scope, e.g. https://outlook.office365.us/.default."),
    500011: Explanation(
        "Exchange Online is not set up in the school's tenant for this app.",
        "check the tenant has Exchange Online and SMTP_OAUTH_SCOPE (if set) names it."),
}

_DEVICE_FLOW_ERRORS: dict[str, Explanation] = {
    "authorization_declined": Explanation(
        "The sign-in was declined in the browser.",
        "run  python -m mailroom sign-in  again and accept."),
    "expired_token": Explanation(
        "The sign-in code expired before it was used (it lasts about 15 minutes).",
        "run  python -m mailroom sign-in  again and enter the new code straight away."),
    "bad_verification_code": Explanation(
        "The sign-in code was not recognised.",
        "run  python -m mailroom sign-in  again."),
}


def explain_microsoft(error: dict[str, object]) -> str:
    """An msal error result ({"error", "error_description", "error_codes"}) as office words with the fix."""
    listed = error.get("error_codes")
    codes = [int(c) for c in (listed if isinstance(listed, list) else []) if str(c).isdigit()]
    description = str(error.get("error_description", "") or "")
    found = re.search(r"AADSTS(\d+)", description)
    if found:
        codes.append(int(found.group(1)))
    for code in codes:
        if code in MICROSOFT_CODES:
            return MICROSOFT_CODES[code].text(f"Microsoft's code AADSTS{code}")
    name = str(error.get("error", "") or "")
    if name in _DEVICE_FLOW_ERRORS:
        return _DEVICE_FLOW_ERRORS[name].text()
    first_line = description.splitlines()[0] if description else name or "no reason given"
    return ("Microsoft refused the sign-in. For IT: check SMTP_OAUTH_TENANT_ID, SMTP_OAUTH_CLIENT_ID and the "
            f"app's secret or certificate; Microsoft said: {first_line}")


# What Exchange Online (and Google) answer at AUTH or MAIL, keyed by the enhanced status code.
_SMTP_CODES: dict[str, Explanation] = {
    "5.7.139": Explanation(
        "Microsoft 365 has SMTP sign-in (SMTP AUTH) switched off for this mailbox or for the whole school.",
        "in Exchange Online PowerShell run  Set-CASMailbox -Identity <mailbox> "
        "-SmtpClientAuthenticationDisabled $false  (and check  Get-TransportConfig | fl "
        "SmtpClientAuthenticationDisabled  for the tenant)."),
    "5.7.60": Explanation(
        "The mailbox mailroom signs in as may not send as the newsletter's sender address.",
        "make sender.email in school.toml the mailbox's own address, or in Exchange Online PowerShell run  "
        "Add-RecipientPermission -Identity <sender address> -Trustee <mailbox or app's service principal> "
        "-AccessRights SendAs."),
    "5.7.57": Explanation(
        "The mail server says mailroom is not signed in.",
        "check SMTP_AUTH and that the server asks for sign-in on this port (587 with starttls)."),
}

_MICROSOFT_AUTH_REFUSED = Explanation(
    "Microsoft 365 issued mailroom a sign-in, but the mailbox refused it.",
    "the app's service principal must be registered in Exchange and given the mailbox: in Exchange Online "
    "PowerShell run  New-ServicePrincipal -AppId <SMTP_OAUTH_CLIENT_ID> -ObjectId <the Enterprise "
    "application's Object ID>  then  Add-MailboxPermission -Identity <mailbox> -User <that ObjectId> "
    "-AccessRights FullAccess ; the app needs the SMTP.SendAsApp permission with admin consent, and "
    "SMTP_USERNAME must be the mailbox's address. Changes can take up to an hour to apply.")
_MICROSOFT_USER_AUTH_REFUSED = Explanation(
    "Microsoft 365 issued mailroom a sign-in, but the mailbox refused it.",
    "SMTP_USERNAME must be the address of the account that signed in (python -m mailroom sign-in), the app "
    "needs the SMTP.Send delegated permission, and SMTP AUTH must be on for the mailbox (Set-CASMailbox "
    "-Identity <mailbox> -SmtpClientAuthenticationDisabled $false).")
_GOOGLE_AUTH_REFUSED = Explanation(
    "Google issued mailroom a sign-in, but Gmail refused it for this mailbox.",
    "SMTP_USERNAME must be a user in the school's Google Workspace, and domain-wide delegation for the "
    "service account's client ID must include the scope https://mail.google.com/ (Admin console > "
    "Security > Access and data control > API controls > Manage domain-wide delegation).")


def explain_smtp_refusal(code: int, text: str, *, provider: str = "") -> str | None:
    """Office words for an SMTP refusal at AUTH or MAIL, or None when there is nothing better than the
    server's own words. ``provider`` is "microsoft-app", "microsoft-user" or "google" for a 535 at AUTH."""
    words = " ".join(text.split())
    for enhanced, explanation in _SMTP_CODES.items():
        if enhanced in words:
            return explanation.text(f"the server said: {code} {words}")
    if code == 535 and provider:
        refused = {"microsoft-app": _MICROSOFT_AUTH_REFUSED, "microsoft-user": _MICROSOFT_USER_AUTH_REFUSED,
                   "google": _GOOGLE_AUTH_REFUSED}.get(provider)
        if refused:
            return refused.text(f"the server said: {code} {words}")
    return None


_GOOGLE_ERRORS: list[tuple[str, Explanation]] = [
    ("unauthorized_client", Explanation(
        "Google has not allowed mailroom's service account to send as the school's mailboxes.",
        "in the Google Admin console > Security > Access and data control > API controls > Manage "
        "domain-wide delegation, add the service account's client ID (the client_id in the key file) with "
        "the scope https://mail.google.com/ ; it can take a few minutes to apply.")),
    ("Invalid email or User ID", Explanation(
        "Google does not know the mailbox in SMTP_USERNAME.",
        "SMTP_USERNAME must be the full address of a user in the school's Google Workspace (not a group "
        "or an alias).")),
    ("Invalid JWT Signature", Explanation(
        "Google did not accept the service account's key.",
        "the key in SMTP_OAUTH_SERVICE_ACCOUNT_FILE was deleted or replaced: create a new JSON key for the "
        "service account (Google Cloud console > IAM & Admin > Service accounts > Keys) and point "
        "SMTP_OAUTH_SERVICE_ACCOUNT_FILE at it.")),
    ("reasonable timeframe", Explanation(
        "This computer's clock is wrong, so Google refused the sign-in.",
        "set the computer's date, time and time zone to update automatically.")),
    ("invalid_client", Explanation(
        "Google does not know the service account in SMTP_OAUTH_SERVICE_ACCOUNT_FILE.",
        "the service account was deleted or disabled: check it in Google Cloud console > IAM & Admin > "
        "Service accounts, and create a new key if needed.")),
]


def explain_google(message: str, details: object = None) -> str:
    """A google-auth RefreshError's message and the token endpoint's JSON answer, as office words."""
    said = message
    if isinstance(details, dict):
        said = f"{details.get('error', '')}: {details.get('error_description', '')} {message}"
    for needle, explanation in _GOOGLE_ERRORS:
        if needle.lower() in said.lower():
            return explanation.text(f"Google said: {' '.join(message.split())}")
    return ("Google refused the sign-in. For IT: check SMTP_OAUTH_SERVICE_ACCOUNT_FILE, SMTP_USERNAME and the "
            f"domain-wide delegation; Google said: {' '.join(message.split())}")
