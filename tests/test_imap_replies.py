"""Parsers of server replies: exact on good input, a clear error or nothing on bad input."""

from __future__ import annotations

import pytest

from monitor.probes.imap_replies import (
    ReplyError,
    capabilities_after_login,
    capability_atoms,
    classify_login_refusal,
    parse_capability_reply,
    parse_exists,
    parse_fetch_sizes,
    parse_list,
    parse_quota_storage,
    parse_status_items,
    quote,
    response_code,
    secret_forms,
)
from monitor.probes.redact import printable
from monitor.probes.result import Reason


@pytest.mark.parametrize(
    ("result", "text", "reason"),
    [
        ("NO", b"[AUTHENTICATIONFAILED] Authentication failed.", Reason.AUTH_FAILED),
        ("NO", b"[EXPIRED] Authentication failed.", Reason.PASSWORD_EXPIRED),
        ("NO", b"[CONTACTADMIN] Login disabled for this user", Reason.ACCOUNT_DISABLED),
        ("NO", b"[UNAVAILABLE] Temporary authentication failure.", Reason.SERVER_ERROR),
        ("NO", b"[PRIVACYREQUIRED] Plaintext authentication disallowed", Reason.TLS_ERROR),
        ("NO", b"LOGIN failed.", Reason.AUTH_FAILED),
        ("NO", b"Your password has expired", Reason.PASSWORD_EXPIRED),
        ("BAD", b"Error in IMAP command", Reason.PROTOCOL_ERROR),
    ],
)
def test_login_refusals(result: str, text: bytes, reason: Reason) -> None:
    """RFC 5530 codes, Exchange's bare text and BAD map to their reasons."""
    assert classify_login_refusal(result, text) is reason


def test_response_code_is_read_only_at_the_start() -> None:
    """A code is recognised only where RFC 3501 puts it."""
    assert response_code(b"[EXPIRED] x") == b"EXPIRED"
    assert response_code(b"no [EXPIRED] here") is None


def test_quota_storage_in_kib() -> None:
    """STORAGE values are KiB; other resources are ignored."""
    lines = [b'"User quota" (MESSAGE 12 1000 STORAGE 10 102400)', b"Getquotaroot completed"]
    assert parse_quota_storage(lines) == (10 * 1024, 102400 * 1024)


def test_quota_picks_the_fullest_root() -> None:
    """With several roots, the one nearest its limit decides."""
    lines = [b'"a" (STORAGE 10 100)', b'"b" (STORAGE 90 100)']
    assert parse_quota_storage(lines) == (90 * 1024, 100 * 1024)


def test_quota_without_storage_is_unlimited() -> None:
    """No STORAGE resource, or a zero limit, means the server sets no limit."""
    assert parse_quota_storage([b"No quota"]) is None
    assert parse_quota_storage([b'"x" (MESSAGE 1 10)']) is None
    assert parse_quota_storage([b'"x" (STORAGE 5 0)']) is None


def test_capabilities_from_code_and_reply() -> None:
    """Capabilities are read from a [CAPABILITY] code and from a CAPABILITY reply."""
    assert capability_atoms([b"[CAPABILITY IMAP4rev1 QUOTA] Logged in"]) == {"IMAP4REV1", "QUOTA"}
    assert capability_atoms([b"Logged in"]) is None
    assert parse_capability_reply([b"IMAP4rev1 STARTTLS", b"done"]) == {"IMAP4REV1", "STARTTLS"}
    assert parse_capability_reply([b"CAPABILITY IMAP4rev1", b"done"]) == {"IMAP4REV1"}


def test_capabilities_after_login() -> None:
    """LOGIN may carry capabilities as a code or an untagged line; a status text is not one."""
    assert capabilities_after_login([b"[CAPABILITY IMAP4rev1 QUOTA] Logged in"]) == {
        "IMAP4REV1",
        "QUOTA",
    }
    untagged = [b"CAPABILITY IMAP4rev1 QUOTA", b"Logged in"]
    assert capabilities_after_login(untagged) == {"IMAP4REV1", "QUOTA"}
    assert capabilities_after_login([b"CAPABILITY completed"]) is None


def test_list_names() -> None:
    """Quoted, atom and literal names are read; non-selectable folders are skipped."""
    lines = [
        b'(\\HasNoChildren) "." INBOX',
        b'(\\HasNoChildren) "." "Sent Items"',
        b'(\\Noselect \\HasChildren) "." "Archive"',
        b'(\\HasNoChildren) "/" "Say \\"hi\\""',
        b"(\\HasNoChildren) NIL {7}",
        b"Drafts!",
        b"List completed",
    ]
    assert parse_list(lines) == ["INBOX", "Sent Items", 'Say "hi"', "Drafts!"]


def test_list_with_missing_literal() -> None:
    """A literal that never comes is a reply error."""
    with pytest.raises(ReplyError):
        parse_list([b'(\\HasNoChildren) "." {5}'])


def test_exists_fetch_and_status() -> None:
    """EXISTS, RFC822.SIZE and STATUS items are read as numbers."""
    assert parse_exists([b"FLAGS (\\Seen)", b"42 EXISTS", b"0 RECENT"]) == 42
    with pytest.raises(ReplyError):
        parse_exists([b"FLAGS ()"])
    assert parse_fetch_sizes([b"1 FETCH (RFC822.SIZE 120)", b"2 FETCH (RFC822.SIZE 5)", b"ok"]) == [
        120,
        5,
    ]
    assert parse_status_items([b'"Sent Items" (MESSAGES 3 SIZE 4096)']) == {
        "MESSAGES": 3,
        "SIZE": 4096,
    }
    with pytest.raises(ReplyError):
        parse_status_items([b"INBOX (MESSAGES x)"])


def test_quote_and_printable() -> None:
    """Quoting escapes; printable strips control characters and bounds length."""
    assert quote('a"b\\c') == '"a\\"b\\\\c"'
    assert printable(b"bad\r\nline\x00" + b"x" * 500, 20) == "bad  line xxxxxxxxxx"


def test_secret_forms() -> None:
    """A secret is looked for raw, as quote() sends it, and as printable() would show both,
    longest first so that no shorter form leaves part of a longer one behind."""
    assert secret_forms('a"b\\c\td') == (
        'a\\"b\\\\c\td',
        'a\\"b\\\\c d',
        'a"b\\c\td',
        'a"b\\c d',
    )
    assert secret_forms("") == ()
