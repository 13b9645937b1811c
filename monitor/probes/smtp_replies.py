"""Pure readers of the SMTP replies a probe gets; no sockets, every input is untrusted."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping

from monitor.probes.redact import MASK, printable, secret_forms
from monitor.probes.redact import scrub as scrub_whole_forms
from monitor.probes.result import Reason

AUTH_SUCCEEDED = 235
AUTH_CONTINUE = 334
# The SASL mechanisms a probe sends, preferred first: PLAIN takes one line, LOGIN three.
MECHANISMS = ("PLAIN", "LOGIN")

# RFC 4954 section 6 and the RFC 5248 registry; Exchange answers any refused password with
# `535 5.7.3 Authentication unsuccessful`, so the basic code decides before the enhanced one.
_AUTH_REPLIES = {
    432: Reason.PASSWORD_EXPIRED,  # 4.7.12 a password transition is needed
    504: Reason.AUTH_MECHANISM_REFUSED,  # 5.5.4 offered in EHLO, then not recognised
    525: Reason.ACCOUNT_DISABLED,  # 5.7.13 user account disabled
    534: Reason.AUTH_MECHANISM_REFUSED,  # 5.7.9 mechanism too weak
    535: Reason.AUTH_FAILED,  # 5.7.8 credentials invalid
    # The server did not understand what the probe sent: a mismatch, not an outage.
    500: Reason.PROTOCOL_ERROR,
    501: Reason.PROTOCOL_ERROR,
    502: Reason.PROTOCOL_ERROR,
    503: Reason.PROTOCOL_ERROR,
    538: Reason.PROTOCOL_ERROR,  # 5.7.11 encryption required: the endpoint's TLS setting
}
# For a 5xx with no basic code of its own, the enhanced code's subject.detail.
_ENHANCED_AUTH_REPLIES = {
    "7.8": Reason.AUTH_FAILED,
    "7.9": Reason.AUTH_MECHANISM_REFUSED,
    "7.12": Reason.PASSWORD_EXPIRED,
    "7.13": Reason.ACCOUNT_DISABLED,
}
_ENHANCED = re.compile(r"^\s*[245]\.(\d{1,3}\.\d{1,3})\b")
# A run of base64 letters long enough not to be a common word by chance.
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{8,}")
_KEYWORDS_SHOWN = 20


def classify_auth_reply(code: int, text: str) -> Reason:
    """The reason an AUTH exchange's final reply gives."""
    if code == AUTH_SUCCEEDED:
        return Reason.OK
    # Only a permanent refusal: a 4xx's "expired" may be the session's (`421 ... timeout
    # expired`), and calling that a password expiry would stop the mailbox's probes.
    if 500 <= code < 600 and "expired" in text.lower():
        return Reason.PASSWORD_EXPIRED
    if code in _AUTH_REPLIES:
        return _AUTH_REPLIES[code]
    if 400 <= code < 500:
        # RFC 5321 4.2.1: a 4xx is transient by definition; it says nothing of the password.
        return Reason.SERVER_ERROR
    if 500 <= code < 600:
        # Unlike IMAP's bare NO, an unknown 5xx names no credential fault: Exchange Online's
        # `550 5.7.30 Basic authentication is not supported` never looked at the password.
        return _ENHANCED_AUTH_REPLIES.get(enhanced_detail(text) or "", Reason.SERVER_ERROR)
    return Reason.PROTOCOL_ERROR  # a 2xx or 3xx that does not end an AUTH exchange


def enhanced_detail(text: str) -> str | None:
    """The subject.detail of an RFC 3463 enhanced code opening a reply text, e.g. '7.8'."""
    match = _ENHANCED.match(text)
    return match.group(1) if match else None


def choose_mechanism(offered: Iterable[str]) -> str | None:
    """The one mechanism a probe will use among those the server offers, if any."""
    upper = {mechanism.upper() for mechanism in offered}
    return next((mechanism for mechanism in MECHANISMS if mechanism in upper), None)


def without_auth(extensions: Mapping[str, str]) -> str:
    """Why the probe cannot authenticate after this EHLO, naming what the server offered."""
    shown = list(extensions.items())[:_KEYWORDS_SHOWN]
    keywords = ", ".join(f"{name.upper()} {value}".strip() for name, value in shown)
    if "auth" not in extensions:
        why = "server offers no AUTH"
        if "starttls" in extensions:
            why += " before STARTTLS (the endpoint's tls is none?)"
    else:
        offered = extensions["auth"] or "no mechanism"
        why = f"server offers AUTH {offered}; probes send only {' or '.join(MECHANISMS)}"
    return printable(f"{why}; EHLO keywords: {keywords or 'none'}")


def auth_secret_forms(user: str, secret: str) -> tuple[str, ...]:
    """Every form in which an AUTH exchange sends the secret, longest first: the IMAP forms,
    base64 of the secret alone (LOGIN) and of PLAIN's `\\0user\\0secret`."""
    if not secret:
        return ()
    raw = secret.encode("utf-8")
    plain = b"\0" + user.encode("utf-8") + b"\0" + raw
    encoded = {base64.b64encode(raw).decode("ascii"), base64.b64encode(plain).decode("ascii")}
    forms = set(secret_forms(secret)) | encoded
    return tuple(sorted(forms, key=lambda form: (-len(form), form)))


def scrub(text: str, forms: Iterable[str]) -> str:
    """Text with every secret form masked, and any long run of base64 letters taken from one.

    The second pass catches a server that echoes the payload cut short, which no whole form
    matches; a false match only hides a word of the server's text.
    """
    forms = tuple(forms)
    if not forms:
        return text
    text = scrub_whole_forms(text, forms)

    def mask_piece(match: re.Match[str]) -> str:
        piece = match.group()
        return MASK if any(piece in form for form in forms) else piece

    return _BASE64_RUN.sub(mask_piece, text)
