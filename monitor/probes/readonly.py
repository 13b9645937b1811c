"""The commands a probe may send: the single place that keeps probes read-only.

A school's only copy of its mail may be on the server, so nothing here may change a
mailbox, whatever the protocol:
- IMAP: folders are opened with EXAMINE (never SELECT), message data is read only as
  sizes, and there is no STORE, EXPUNGE, APPEND, COPY, MOVE, CREATE, DELETE or SUBSCRIBE;
- POP3: the session logs in and reads STAT; never RETR, DELE, TOP, LIST or UIDL (a
  school's client may be downloading, and the shorter the session, the shorter it waits);
- SMTP: the session authenticates and leaves; never MAIL, RCPT, DATA, BDAT, VRFY or EXPN.
Every command of every protocol goes through its `check_*_command` before the socket.

Two IMAP sessions that are not probes get their own gate (an `ImapGate`, one per session):
- `BounceReads`, for the mailbox the canary's bounces come back to: the probe list plus
  `UID SEARCH` and a capped peek at message text (`BODY.PEEK[]<0.N>`, which sets no flag);
- `CanaryWrites`, the single write exception: it deletes the delivery canary, and only
  it (see its docstring for how the scope is held in code).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from monitor.probes.imap_replies import parse_search_uids

IMAP_COMMANDS: frozenset[str] = frozenset(
    {
        "CAPABILITY",
        "STARTTLS",
        "LOGIN",
        "LOGOUT",
        "NOOP",
        "GETQUOTAROOT",
        "LIST",
        "STATUS",
        "EXAMINE",
        "FETCH",
    }
)

# FETCH may ask for sizes only: a body fetch without .PEEK sets \Seen on the message.
IMAP_FETCH_ITEMS: frozenset[str] = frozenset({"RFC822.SIZE"})

_ITEM = re.compile(r"[A-Z0-9.]+")


class ForbiddenCommand(RuntimeError):
    """A probe tried to send a command that could change a mailbox: a bug, never data."""


def check_imap_command(name: str, args: tuple[object, ...], prefix: str | None) -> None:
    """Raise ForbiddenCommand unless the command is on the read-only list."""
    upper = name.upper()
    if upper not in IMAP_COMMANDS:
        raise ForbiddenCommand(f"IMAP {upper} may change a mailbox; probes do not send it")
    if prefix:
        raise ForbiddenCommand(f"IMAP {prefix.strip()} {upper} is not needed by probes")
    if upper == "FETCH":
        items = " ".join(str(a) for a in args[1:]).upper().strip("() ")
        requested = set(_ITEM.findall(items))
        if not requested or not requested <= IMAP_FETCH_ITEMS:
            raise ForbiddenCommand(f"IMAP FETCH {items} asks for more than message sizes")


class ImapGate:
    """The commands one IMAP session may send; this base is the probes' read-only list."""

    def claim(self) -> None:
        """Bind the gate to the one session that will use it."""

    def check(self, name: str, args: tuple[object, ...], prefix: str | None) -> None:
        """Raise ForbiddenCommand unless the command may be sent now."""
        check_imap_command(name, args, prefix)

    def observe(
        self,
        name: str,
        args: tuple[object, ...],
        prefix: str | None,
        result: str,
        lines: Sequence[bytes | bytearray],
    ) -> None:
        """Learn from a completed command's reply; the probes' list needs nothing of it."""


PROBE_GATE = ImapGate()

# What one peek may read of a message, enforced as a partial fetch so the server itself
# stops there: a DSN's delivery-status part comes before the returned original, and an
# Exchange report with its HTML part is some 10 KB. Equal to the session's literal cap.
MAX_PEEK_BYTES = 64 * 1024
_UID_SET = re.compile(r"(?:\d+|\d+:\d+|\d+:\*)(?:,(?:\d+|\d+:\d+|\d+:\*))*")
_PEEK = re.compile(r"\((?:UID )?BODY\.PEEK\[\]<0\.(\d{1,9})>\)")


def _wire(args: tuple[object, ...]) -> str:
    """The arguments as aioimaplib puts them on the wire: joined by single spaces."""
    return " ".join(str(arg) for arg in args)


def _uid_command(prefix: str | None) -> bool:
    return prefix is not None and prefix.strip().upper() == "UID"


class BounceReads(ImapGate):
    """The bounce mailbox reader: the probe list, UID SEARCH, and capped peeks at messages.

    Reading needs no SELECT: EXAMINE opens the folder read-only, and BODY.PEEK leaves
    \\Seen as it was (a plain BODY[] or RFC822 fetch would set it).
    """

    def check(self, name: str, args: tuple[object, ...], prefix: str | None) -> None:
        """Raise ForbiddenCommand unless the command is a probe's, a search or a capped peek."""
        upper = name.upper()
        if not _uid_command(prefix):
            check_imap_command(name, args, prefix)
            return
        if upper == "SEARCH":
            return  # a search reads: whatever its criteria, it changes nothing
        if upper == "FETCH":
            uid_set, _, items = _wire(args).partition(" ")
            peek = _PEEK.fullmatch(items.upper())
            if not _UID_SET.fullmatch(uid_set) or peek is None:
                raise ForbiddenCommand(f"IMAP UID FETCH {items} is not a capped peek")
            if int(peek.group(1)) > MAX_PEEK_BYTES:
                raise ForbiddenCommand(f"IMAP UID FETCH peeks at most {MAX_PEEK_BYTES} bytes")
            return
        raise ForbiddenCommand(f"IMAP UID {upper} is not needed to read bounces")


# The header that marks the delivery canary; its value is the canary's own id.
CANARY_HEADER = "X-BMA-Monitor-Canary"
# A canary id is a plain token of at least 8 characters: a HEADER search matches
# substrings, and a short id could be found inside another canary's.
CANARY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+=-]{7,127}")
_CANARY_SEARCH = re.compile(
    rf'(?:UID ({_UID_SET.pattern}) )?HEADER {CANARY_HEADER} "((?:{CANARY_ID.pattern})?)"',
    re.IGNORECASE,
)
_UIDS = re.compile(r"\d+(?:,\d+)*")
_INBOX = re.compile(r'"?INBOX"?', re.IGNORECASE)


class CanaryWrites(ImapGate):
    """The single write exception: deleting delivery canaries, and nothing else.

    Held in code, per session (a gate serves one session only):
    - SELECT opens INBOX only; EXAMINE stays allowed for looking;
    - UID SEARCH only as `[UID <set>] HEADER X-BMA-Monitor-Canary "<id>"` (an empty id
      finds every canary: the leftovers of a crashed run);
    - UID STORE only as `+FLAGS.SILENT (\\Deleted)`, and UID EXPUNGE (UIDPLUS) only, each
      on a list of single UIDs equal to what the last canary search found since INBOX was
      SELECTed in this session: nothing the server has not just said carries the header;
    - plain EXPUNGE and CLOSE are refused: both also remove the school's own \\Deleted
      messages; so are sequence-number STORE, other flags, APPEND, COPY and MOVE.
    """

    def __init__(self) -> None:
        self._claimed = False
        self._writable = False
        self._found: frozenset[int] = frozenset()

    def claim(self) -> None:
        """Bind the gate to one session: UIDs found in one mailbox mean nothing in another."""
        if self._claimed:
            raise ForbiddenCommand("a canary gate serves a single session")
        self._claimed = True

    def check(self, name: str, args: tuple[object, ...], prefix: str | None) -> None:
        """Raise ForbiddenCommand unless the command is a probe's or a canary deletion step."""
        upper, wire = name.upper(), _wire(args)
        if not _uid_command(prefix):
            if upper == "SELECT" and not prefix:
                if not _INBOX.fullmatch(wire):
                    raise ForbiddenCommand("IMAP SELECT opens INBOX only, to delete a canary")
                return
            check_imap_command(name, args, prefix)
            return
        if upper == "SEARCH":
            if not _CANARY_SEARCH.fullmatch(wire):
                raise ForbiddenCommand(f"IMAP UID SEARCH {wire} does not look for a canary")
            return
        if upper == "STORE":
            uid_set, _, change = wire.partition(" ")
            if change.upper() != "+FLAGS.SILENT (\\DELETED)":
                raise ForbiddenCommand(f"IMAP UID STORE {change} is not marking for deletion")
            self._check_found(upper, uid_set)
            return
        if upper == "EXPUNGE":
            self._check_found(upper, wire)
            return
        raise ForbiddenCommand(f"IMAP UID {upper} is not needed to delete a canary")

    def _check_found(self, upper: str, uid_set: str) -> None:
        """Refuse a UID set other than exactly the last canary search's, in a SELECTed INBOX."""
        if not self._writable:
            raise ForbiddenCommand(f"IMAP UID {upper} needs INBOX selected by this session")
        if not _UIDS.fullmatch(uid_set):
            raise ForbiddenCommand(f"IMAP UID {upper} takes single UIDs, not {uid_set!r}")
        if frozenset(int(uid) for uid in uid_set.split(",")) != self._found:
            raise ForbiddenCommand(f"IMAP UID {upper} of UIDs the canary search did not find")

    def observe(
        self,
        name: str,
        args: tuple[object, ...],
        prefix: str | None,
        result: str,
        lines: Sequence[bytes | bytearray],
    ) -> None:
        """Track what is selected and which UIDs the last canary search found."""
        upper = name.upper()
        if upper in {"SELECT", "EXAMINE"} and not prefix:
            # Whatever the answer, the earlier mailbox is closed (RFC 3501 6.3.1).
            self._writable = upper == "SELECT" and result == "OK"
            self._found = frozenset()
        elif _uid_command(prefix) and upper == "SEARCH":
            self._found = frozenset(parse_search_uids(lines)) if result == "OK" else frozenset()
        elif _uid_command(prefix) and upper == "EXPUNGE" and result == "OK":
            self._found = frozenset()


# RSET only undoes this session's own marks (it has none): harmless, allowed for a clean exit.
POP3_COMMANDS: frozenset[str] = frozenset(
    {"CAPA", "STLS", "USER", "PASS", "AUTH", "STAT", "NOOP", "RSET", "QUIT"}
)
SMTP_COMMANDS: frozenset[str] = frozenset(
    {"EHLO", "HELO", "STARTTLS", "AUTH", "NOOP", "RSET", "QUIT"}
)


def check_pop3_command(name: str) -> None:
    """Raise ForbiddenCommand unless the POP3 command is on the read-only list."""
    upper = name.upper()
    if upper not in POP3_COMMANDS:
        raise ForbiddenCommand(f"POP3 {upper} reads or changes messages; probes do not send it")


def check_smtp_command(name: str) -> None:
    """Raise ForbiddenCommand unless the SMTP command is on the session-only list."""
    upper = name.upper()
    if upper not in SMTP_COMMANDS:
        raise ForbiddenCommand(f"SMTP {upper} would send or reveal mail; probes do not send it")
