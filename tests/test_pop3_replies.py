"""POP3 reply parsing and refusal naming, without sockets; and the shared redaction."""

from __future__ import annotations

import pytest

from monitor.probes.pop3_errors import ProtocolFault
from monitor.probes.pop3_replies import (
    Reply,
    classify_refusal,
    parse_capabilities,
    parse_stat,
    parse_status,
    response_code,
)
from monitor.probes.readonly import ForbiddenCommand, check_pop3_command
from monitor.probes.redact import MASK, scrub, secret_forms
from monitor.probes.result import Reason


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (b"[AUTH] Authentication failed.", Reason.AUTH_FAILED),
        (b"", Reason.AUTH_FAILED),
        (b"Invalid login", Reason.AUTH_FAILED),
        (b"[UTF8] Something new", Reason.AUTH_FAILED),
        (b"[AUTH] Password expired", Reason.PASSWORD_EXPIRED),
        (b"Your password has EXPIRED, change it", Reason.PASSWORD_EXPIRED),
        (b"[AUTH] Login disabled for this user", Reason.ACCOUNT_DISABLED),
        (b"[AUTH] Account is disabled.", Reason.ACCOUNT_DISABLED),
        (b"[IN-USE] Mailbox is locked by another POP3 session.", Reason.IN_USE),
        (b"[in-use] locked", Reason.IN_USE),
        (b"[LOGIN-DELAY] Minimum time between logins is 900 seconds", Reason.LOGIN_DELAY),
        (b"[SYS/TEMP] Failed to create POP3 session lock.", Reason.SERVER_ERROR),
        (b"[SYS/PERM] Mailbox store is corrupt", Reason.SERVER_ERROR),
        (b"[SYS/TEMP] Password backend expired its cache", Reason.SERVER_ERROR),
    ],
)
def test_refusals_are_named_by_code_then_text(text: bytes, reason: Reason) -> None:
    """RFC 2449/3206 codes decide first; only [AUTH] or no code is read for "expired" or
    "disabled"; anything else is taken as a wrong password."""
    assert classify_refusal(text) is reason


def test_response_codes() -> None:
    """A code is the bracketed word at the start, levels kept, upper-cased."""
    assert response_code(b"[SYS/TEMP] later") == "SYS/TEMP"
    assert response_code(b"[login-delay] wait") == "LOGIN-DELAY"
    assert response_code(b"no code [AUTH]") is None
    assert response_code(b"[AUTH") is None


def test_status_lines() -> None:
    """+OK and -ERR carry their text; anything else is a protocol fault."""
    assert parse_status(b"+OK 2 300") == Reply(ok=True, text=b"2 300")
    assert parse_status(b"+OK") == Reply(ok=True, text=b"")
    assert parse_status(b"-ERR [AUTH] no") == Reply(ok=False, text=b"[AUTH] no")
    for line in (b"* OK IMAP", b"+OKAY", b"", b"220 smtp"):
        with pytest.raises(ProtocolFault):
            parse_status(line)


def test_stat_replies() -> None:
    """STAT gives count and octets; text after them is allowed, anything else is a fault."""
    assert parse_stat(b"9 9000000") == (9, 9000000)
    assert parse_stat(b"0 0 empty maildrop") == (0, 0)
    for text in (b"lots", b"9", b"-1 5", b"9 9000000x", b"1" * 21 + b" 5"):
        with pytest.raises(ProtocolFault):
            parse_stat(text)


def test_capabilities() -> None:
    """CAPA names are upper-cased; SASL's arguments are the mechanisms."""
    found = parse_capabilities([b"TOP", b"user", b"SASL plain LOGIN", b"", b"LOGIN-DELAY 900"])
    assert found.names == {"TOP", "USER", "SASL", "LOGIN-DELAY"}
    assert found.sasl == {"PLAIN", "LOGIN"}
    assert found.shown() == "LOGIN-DELAY SASL TOP USER"


@pytest.mark.parametrize("name", ["RETR", "DELE", "TOP", "LIST", "UIDL", "APOP", "dele"])
def test_pop3_gate_refuses_what_reads_or_changes_messages(name: str) -> None:
    """Commands that read or delete messages never pass the POP3 gate."""
    with pytest.raises(ForbiddenCommand):
        check_pop3_command(name)


def test_secret_forms_and_scrub() -> None:
    """A secret is masked raw, in each encoding it was sent in, and as printable() shows
    them, the longest first so no part of a longer form is left."""
    forms = secret_forms("a\tb", "YQli")
    assert forms == ("YQli", "a\tb", "a b")
    assert scrub("got a\tb, YQli, a b", forms) == f"got {MASK}, {MASK}, {MASK}"
    assert secret_forms("") == ()
