"""Pure parsers for the IMAP replies a probe reads; no sockets, every input is untrusted."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence

from monitor.probes import redact
from monitor.probes.result import Reason

_CODE = re.compile(rb"^\s*\[([A-Z0-9-]+)(?:[ \]])")
_QUOTA_STORAGE = re.compile(rb"\(\s*(?:[A-Z-]+\s+\d+\s+\d+\s+)*?STORAGE\s+(\d+)\s+(\d+)", re.I)
_FETCH_SIZE = re.compile(rb"^\d+ FETCH \(.*?RFC822\.SIZE (\d+)", re.I)
_STATUS_ITEMS = re.compile(rb"\(([^()]*)\)\s*$")
_EXISTS = re.compile(rb"^(\d+) EXISTS$", re.I)
# aioimaplib strips "* LIST " from the untagged lines it hands over; accept both forms.
_LIST = re.compile(rb'^(?:LIST )?\((?P<flags>[^)]*)\) (?:"(?:[^"\\]|\\.)"|NIL) (?P<name>.*)$', re.I)
_LITERAL = re.compile(rb"^\{(\d+)\}$")
_SEARCH_RESULT = re.compile(rb"\d+(?: \d+)*")
_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]", re.I)
_FETCH_UID_LITERAL = re.compile(rb"^\d+ FETCH \(.*?\bUID (\d+)\b.*\{\d+\}$", re.I)

# RFC 5530 response codes that mean the same credential will fail again.
_CODE_REASONS = {
    b"AUTHENTICATIONFAILED": Reason.AUTH_FAILED,
    b"AUTHORIZATIONFAILED": Reason.AUTH_FAILED,
    b"EXPIRED": Reason.PASSWORD_EXPIRED,
    b"CONTACTADMIN": Reason.ACCOUNT_DISABLED,
    # These say the server, not the credential, is the problem: try again later.
    b"UNAVAILABLE": Reason.SERVER_ERROR,
    b"SERVERBUG": Reason.SERVER_ERROR,
    b"LIMIT": Reason.SERVER_ERROR,
    b"INUSE": Reason.SERVER_ERROR,
    b"PRIVACYREQUIRED": Reason.TLS_ERROR,
}

STORAGE_UNIT = 1024  # RFC 2087: STORAGE is counted in units of 1024 octets


class ReplyError(ValueError):
    """A server reply that does not follow the protocol."""


def response_code(text: bytes) -> bytes | None:
    """The RFC 5530 code at the start of a status text, e.g. b'EXPIRED'."""
    match = _CODE.match(text)
    return match.group(1).upper() if match else None


def classify_login_refusal(result: str, text: bytes) -> Reason:
    """Map a LOGIN that did not end in OK to the reason for it."""
    if result == "BAD":
        return Reason.PROTOCOL_ERROR
    code = response_code(text)
    if code in _CODE_REASONS:
        return _CODE_REASONS[code]
    if b"expired" in text.lower():
        return Reason.PASSWORD_EXPIRED
    # Exchange says only "LOGIN failed." Counting an unknown refusal as a wrong password
    # is the safe side: it stops further attempts instead of risking a lock-out.
    return Reason.AUTH_FAILED


def status_text(lines: Sequence[bytes | bytearray]) -> bytes:
    """The text of the tagged status line, which aioimaplib puts last."""
    return bytes(lines[-1]) if lines else b""


def capability_atoms(lines: Iterable[bytes | bytearray]) -> set[str] | None:
    """Capabilities from a `[CAPABILITY ...]` response code at the start of a text, if any."""
    for raw in lines:
        line = bytes(raw).strip()
        if line.upper().startswith(b"[CAPABILITY ") and b"]" in line:
            return _atoms(line[len(b"[CAPABILITY ") : line.index(b"]")])
    return None


def capabilities_after_login(lines: Sequence[bytes | bytearray]) -> set[str] | None:
    """Capabilities sent with a LOGIN answer, as a [CAPABILITY] code on the tagged line or
    as an untagged CAPABILITY line (Dovecot's choice once CAPABILITY was asked before)."""
    coded = capability_atoms(lines[-1:])
    if coded is not None:
        return coded
    for raw in lines[:-1]:
        line = bytes(raw).strip()
        if line.upper().startswith(b"CAPABILITY "):
            return _atoms(line[len(b"CAPABILITY ") :])
    return None


def parse_capability_reply(lines: Sequence[bytes | bytearray]) -> set[str]:
    """Capabilities from the untagged lines of a CAPABILITY command's reply."""
    atoms: set[str] = set()
    for raw in lines[:-1]:
        line = bytes(raw).strip()
        # aioimaplib strips "* CAPABILITY " from the line; a raw line keeps it.
        atoms |= _atoms(line.removeprefix(b"CAPABILITY "))
    return atoms


def _atoms(text: bytes) -> set[str]:
    return set(text.decode("ascii", "replace").upper().split())


def parse_quota_storage(lines: Iterable[bytes | bytearray]) -> tuple[int, int] | None:
    """(used, limit) in bytes from the QUOTA lines of GETQUOTAROOT; None when no storage limit."""
    best: tuple[int, int] | None = None
    for raw in lines:
        line = bytes(raw)
        match = _QUOTA_STORAGE.search(line)
        if not match:
            continue
        used, limit = int(match.group(1)) * STORAGE_UNIT, int(match.group(2)) * STORAGE_UNIT
        if limit <= 0:
            continue
        # Several roots may apply to INBOX; the one closest to full is the one that bites.
        if best is None or used * best[1] > best[0] * limit:
            best = (used, limit)
    return best


def parse_exists(lines: Iterable[bytes | bytearray]) -> int:
    """The message count from an EXAMINE reply."""
    for raw in lines:
        match = _EXISTS.match(bytes(raw).strip())
        if match:
            return int(match.group(1))
    raise ReplyError("EXAMINE reply has no EXISTS count")


def parse_search_uids(lines: Sequence[bytes | bytearray]) -> list[int]:
    """The UIDs of a UID SEARCH reply as aioimaplib gives it: payloads, then the tagged text."""
    # Other untagged lines (`3 EXISTS`) may be mixed in; only all-digit lines are results.
    return [
        int(uid)
        for raw in lines[:-1]
        if _SEARCH_RESULT.fullmatch(bytes(raw))
        for uid in bytes(raw).split()
    ]


def parse_uidvalidity(lines: Iterable[bytes | bytearray]) -> int:
    """The UIDVALIDITY of an EXAMINE or SELECT reply."""
    for raw in lines:
        match = _UIDVALIDITY.search(bytes(raw))
        if match:
            return int(match.group(1))
    raise ReplyError("reply has no UIDVALIDITY")


def parse_fetched_bodies(lines: Sequence[bytes | bytearray]) -> dict[int, bytes]:
    """UID to message text of a `UID FETCH (UID BODY.PEEK[]...)` reply; literals are
    bytearrays right after the line announcing them."""
    bodies: dict[int, bytes] = {}
    for line, following in itertools.pairwise(lines):
        if isinstance(line, bytes) and isinstance(following, bytearray):
            match = _FETCH_UID_LITERAL.match(line)
            if match:
                bodies[int(match.group(1))] = bytes(following)
    return bodies


def parse_fetch_sizes(lines: Iterable[bytes | bytearray]) -> list[int]:
    """RFC822.SIZE of every message in a FETCH reply."""
    return [int(m.group(1)) for raw in lines if (m := _FETCH_SIZE.match(bytes(raw)))]


def parse_status_items(lines: Iterable[bytes | bytearray]) -> dict[str, int]:
    """The numeric items of a STATUS reply, e.g. {'MESSAGES': 3, 'SIZE': 4096} (RFC 8438)."""
    for raw in lines:
        match = _STATUS_ITEMS.search(bytes(raw))
        if match:
            words = match.group(1).upper().split()
            if len(words) % 2 or not all(w.isdigit() for w in words[1::2]):
                raise ReplyError("STATUS reply items are not name-number pairs")
            return {
                name.decode("ascii", "replace"): int(n)
                for name, n in zip(words[::2], words[1::2], strict=True)
            }
    raise ReplyError("STATUS reply has no items")


def parse_list(lines: Sequence[bytes | bytearray]) -> list[str]:
    """Names of the selectable folders in a LIST reply, ready to quote in a command."""
    names: list[str] = []
    i = 0
    while i < len(lines):
        line = bytes(lines[i]).strip()
        i += 1
        match = _LIST.match(line)
        if not match:
            continue
        flags = match.group("flags").upper().split()
        raw_name = match.group("name")
        literal = _LITERAL.match(raw_name)
        if literal:
            # aioimaplib hands a literal's bytes over as the next line.
            if i >= len(lines):
                raise ReplyError("LIST reply announces a literal that never came")
            raw_name = bytes(lines[i])[: int(literal.group(1))]
            i += 1
            name = raw_name.decode("utf-8", "replace")
        elif raw_name.startswith(b'"'):
            name = _unquote(raw_name)
        else:
            name = raw_name.decode("utf-8", "replace")
        if b"\\NOSELECT" in flags or b"\\NONEXISTENT" in flags:
            continue
        names.append(name)
    return names


def _unquote(raw: bytes) -> str:
    if len(raw) < 2 or not raw.endswith(b'"'):
        raise ReplyError("LIST reply has a badly quoted folder name")
    out = bytearray()
    escaped = False
    for byte in raw[1:-1]:
        if escaped:
            out.append(byte)
            escaped = False
        elif byte == 0x5C:  # backslash
            escaped = True
        else:
            out.append(byte)
    return out.decode("utf-8", "replace")


def quote(text: str) -> str:
    """An IMAP quoted string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def secret_forms(secret: str) -> tuple[str, ...]:
    """Every form in which a secret the probe sent may come back in server text: raw and
    as sent (quote()'s escaped body, the only encoding a probe sends it in)."""
    return redact.secret_forms(secret, quote(secret)[1:-1])
