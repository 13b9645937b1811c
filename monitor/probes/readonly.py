"""The commands a probe may send: the single place that keeps probes read-only.

A school's only copy of its mail may be on the server, so nothing here may change a
mailbox, whatever the protocol:
- IMAP: folders are opened with EXAMINE (never SELECT), message data is read only as
  sizes, and there is no STORE, EXPUNGE, APPEND, COPY, MOVE, CREATE, DELETE or SUBSCRIBE;
- POP3: the session logs in and reads STAT; never RETR, DELE, TOP, LIST or UIDL (a
  school's client may be downloading, and the shorter the session, the shorter it waits);
- SMTP: the session authenticates and leaves; never MAIL, RCPT, DATA, BDAT, VRFY or EXPN.
Every command of every protocol goes through its `check_*_command` before the socket.
"""

from __future__ import annotations

import re

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
