"""Probes are read-only: the one gate refuses every command that could change a mailbox."""

from __future__ import annotations

import pytest

from monitor.probes.imap_session import ImapSession
from monitor.probes.readonly import ForbiddenCommand, check_imap_command
from tests import fleet
from tests.servers.dovecot import DovecotServer


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("SELECT", ("INBOX",)),
        ("STORE", ("1", "+FLAGS", "(\\Seen)")),
        ("EXPUNGE", ()),
        ("APPEND", ("INBOX", "{10}")),
        ("COPY", ("1", "Trash")),
        ("MOVE", ("1", "Trash")),
        ("CREATE", ("New",)),
        ("DELETE", ("INBOX",)),
        ("RENAME", ("INBOX", "Old")),
        ("SUBSCRIBE", ("INBOX",)),
        ("SETQUOTA", ("", "(STORAGE 1)")),
        ("FETCH", ("1:*", "(BODY[])")),
        ("FETCH", ("1:*", "(RFC822)")),
        ("FETCH", ("1:*", "(RFC822.SIZE BODY[HEADER])")),
        ("FETCH", ("1:*", "(BODY.PEEK[])")),
    ],
)
def test_writing_commands_are_refused(name: str, args: tuple[str, ...]) -> None:
    """Anything that can change a mailbox, or read a body, is refused before sending."""
    with pytest.raises(ForbiddenCommand):
        check_imap_command(name, args, None)


def test_uid_prefixed_commands_are_refused() -> None:
    """UID variants are refused too: probes never need them."""
    with pytest.raises(ForbiddenCommand):
        check_imap_command("FETCH", ("1:*", "(RFC822.SIZE)"), "UID ")


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("CAPABILITY", ()),
        ("LOGIN", ("user", '"pw"')),
        ("EXAMINE", ('"Sent Items"',)),
        ("FETCH", ("1:250", "(RFC822.SIZE)")),
        ("STATUS", ('"INBOX"', "(MESSAGES SIZE)")),
        ("GETQUOTAROOT", ("INBOX",)),
        ("LIST", ('""', '"*"')),
        ("LOGOUT", ()),
    ],
)
def test_probe_commands_pass(name: str, args: tuple[str, ...]) -> None:
    """The commands the probe needs pass the gate."""
    check_imap_command(name, args, None)


async def test_gate_stops_a_select_before_it_reaches_the_server(dovecot: DovecotServer) -> None:
    """Even a logged-in session cannot send SELECT; the maildir stays as it was."""
    local = fleet.FOLDERS
    before = dovecot.maildir_snapshot(fleet.address(local))
    session = ImapSession(dovecot.host, dovecot.imap_port, "localhost")
    try:
        await session.connect()
        await session.read_greeting()
        response = await session.login(fleet.address(local), fleet.password(local))
        assert response.result == "OK"
        with pytest.raises(ForbiddenCommand):
            await session.command("SELECT", "INBOX")
        with pytest.raises(ForbiddenCommand):
            await session.command("STORE", "1:*", "+FLAGS", "(\\Deleted)")
        assert (await session.examine("INBOX")).result == "OK"
        assert (await session.fetch_sizes(1, 5)).result == "OK"
    finally:
        session.close()
    assert dovecot.maildir_snapshot(fleet.address(local)) == before
