"""Pure parsers for the POP3 replies a probe reads; no sockets, every input is untrusted."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from monitor.probes.pop3_errors import ProtocolFault
from monitor.probes.redact import printable
from monitor.probes.result import Reason

# RFC 2449 section 8: a response code is the first thing after -ERR, levels split by "/".
_CODE = re.compile(rb"^\[([A-Za-z0-9-]+(?:/[A-Za-z0-9-]+)*)\]")
# RFC 1939 5: "+OK nn mm"; more than 20 digits is no count a server could hold.
_STAT = re.compile(rb"^(\d{1,20}) (\d{1,20})(?:\s|$)")
_EXPIRED = re.compile(rb"\bexpired\b", re.I)
# Dovecot: "Login disabled for this user", "Account is disabled."
_DISABLED = re.compile(rb"\b(?:account|login|user)\b.*\bdisabled\b", re.I)

# RFC 2449 8.1 and RFC 3206: the response codes a login refusal may carry.
_CODE_REASONS = {
    "IN-USE": Reason.IN_USE,  # the mailbox is locked by another session (the school's client)
    "LOGIN-DELAY": Reason.LOGIN_DELAY,  # logged in too soon after the last login
    "SYS": Reason.SERVER_ERROR,  # SYS/TEMP and SYS/PERM: the server's fault, not the password's
}


@dataclass(frozen=True, slots=True)
class Reply:
    """A POP3 status line: +OK or -ERR, and the text after it."""

    ok: bool
    text: bytes


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a CAPA reply lists (RFC 2449): capability names, and the SASL mechanisms."""

    names: frozenset[str]
    sasl: frozenset[str]

    def shown(self) -> str:
        """The names, for a message that says what the server offers."""
        return " ".join(sorted(self.names)) or "nothing"


def parse_status(line: bytes) -> Reply:
    """The status of a reply line (without its line end); anything else is a fault."""
    head, _, text = line.partition(b" ")
    if head.upper() == b"+OK":
        return Reply(ok=True, text=text)
    if head.upper() == b"-ERR":
        return Reply(ok=False, text=text)
    # Not cut here: the text may echo the password, and is cut once scrubbed of it.
    raise ProtocolFault(f"unexpected reply: {printable(line, None)}")


def response_code(text: bytes) -> str | None:
    """The RFC 2449 response code at the start of a reply text, e.g. 'SYS/TEMP'."""
    match = _CODE.match(text)
    return match.group(1).decode("ascii").upper() if match else None


def classify_refusal(text: bytes) -> Reason:
    """Map the text of a -ERR to USER, PASS or AUTH to the reason for it."""
    code = response_code(text)
    if code is not None and code.split("/")[0] in _CODE_REASONS:
        return _CODE_REASONS[code.split("/")[0]]
    # Dovecot says [AUTH] for a wrong password, an expired one and a disabled account
    # alike; only the text tells the last two apart, where the server words it so.
    if _EXPIRED.search(text):
        return Reason.PASSWORD_EXPIRED
    if _DISABLED.search(text):
        return Reason.ACCOUNT_DISABLED
    # A bare -ERR is what many servers give a wrong password. Counting an unknown refusal
    # as one is the safe side: it stops further attempts instead of risking a lock-out.
    return Reason.AUTH_FAILED


def parse_stat(text: bytes) -> tuple[int, int]:
    """(messages, octets) from the text of STAT's +OK."""
    match = _STAT.match(text)
    if match is None:
        raise ProtocolFault(f"STAT reply is not 'count size': {printable(text, None)}")
    return int(match.group(1)), int(match.group(2))


def parse_capabilities(lines: Iterable[bytes]) -> Capabilities:
    """Capabilities from the lines of a CAPA reply, between +OK and the final dot."""
    names: set[str] = set()
    sasl: set[str] = set()
    for line in lines:
        words = line.decode("ascii", "replace").upper().split()
        if not words:
            continue
        names.add(words[0])
        if words[0] == "SASL":
            sasl.update(words[1:])
    return Capabilities(frozenset(names), frozenset(sasl))
