"""The canary's IMAP side against a real Dovecot: found by its header, deleted alone."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.canary.bounce_reader import BounceReader
from monitor.canary.imap_side import CanaryMailbox, RemoveOutcome
from monitor.config.model import EndpointConfig, TlsMode
from monitor.credentials import Secret
from tests.servers.dovecot import DEFAULT_CAPABILITY, DovecotServer, MailUser

SCHOOL = "ec009001@adm.cfwb.be"
SENDER = "canary-sender@adm.cfwb.be"
PASSWORD = "Canary-Sekret-9Xq!"
FIELDS = "mailbox uid flags guid"


def _users() -> list[MailUser]:
    return [MailUser(SCHOOL, PASSWORD), MailUser(SENDER, PASSWORD)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotServer]:
    """A Dovecot of this module's own, with UIDPLUS (advertised after login)."""
    with DovecotServer(tmp_path_factory.mktemp("canary"), _users()) as started:
        yield started


@pytest.fixture(scope="module")
def no_uidplus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotServer]:
    """A Dovecot whose post-login capabilities lack UIDPLUS."""
    capability = DEFAULT_CAPABILITY.replace(" UIDPLUS", "")
    with DovecotServer(
        tmp_path_factory.mktemp("canary-no-uidplus"), _users(), capability_override=capability
    ) as started:
        yield started


def endpoint(server: DovecotServer) -> EndpointConfig:
    """STARTTLS on the plain port, as a school's server may offer it."""
    return EndpointConfig(
        host=server.host,
        port=server.imap_port,
        tls=TlsMode.STARTTLS,
        ca_file=Path(server.ca_file),
        tls_server_name="localhost",
        command_timeout=5.0,
    )


def mailbox(server: DovecotServer, address: str = SCHOOL) -> CanaryMailbox:
    """The canary's view of a mailbox of the server."""
    return CanaryMailbox(
        endpoint(server),
        address,
        Secret(PASSWORD),
        context=server.client_ssl_context(),
        deadline=10.0,
    )


def canary(canary_id: str) -> bytes:
    """A canary message as the sender writes it."""
    return (
        f"From: <{SENDER}>\r\nTo: <{SCHOOL}>\r\n"
        "Subject: Test automatique - a ignorer\r\n"
        f"X-BMA-Monitor-Canary: {canary_id}\r\n\r\nTest automatique.\r\n"
    ).encode()


def school_mail(server: DovecotServer) -> list[dict[str, str]]:
    """The school's own messages with a \\Seen, a \\Flagged and a user's own \\Deleted one."""
    server.add_messages(SCHOOL, 4, 400)
    uids = [row["uid"] for row in server.fetch(SCHOOL, FIELDS)][-4:]
    server.add_flags(SCHOOL, "\\Seen", "INBOX", uids[0])
    server.add_flags(SCHOOL, "\\Flagged", "INBOX", uids[1])
    server.add_flags(SCHOOL, "\\Deleted", "INBOX", uids[2])
    return messages(server)


def messages(server: DovecotServer, address: str = SCHOOL) -> list[dict[str, str]]:
    """Every message's UID, GUID and flags from doveadm, \\Recent left out: any read-write
    SELECT clears it (RFC 3501), the one change deleting a canary cannot avoid."""
    rows = server.fetch(address, FIELDS)
    for row in rows:
        row["flags"] = " ".join(flag for flag in row["flags"].split() if flag != "\\Recent")
    return rows


def new_id() -> str:
    return f"canary-{uuid.uuid4().hex}"


def remaining_canaries(server: DovecotServer) -> list[str]:
    """GUIDs of messages still carrying a canary header (doveadm's own search)."""
    rows = server.fetch(SCHOOL, "guid hdr.x-bma-monitor-canary")
    return [row["guid"] for row in rows if row.get("hdr.x-bma-monitor-canary")]


async def test_canary_found_by_its_header_and_removed_alone(server: DovecotServer) -> None:
    """Only the canary goes; every other message keeps its UID and flags, \\Deleted too."""
    before = school_mail(server)
    canary_id, other_id = new_id(), new_id()
    server.add_raw_message(SCHOOL, canary(canary_id))
    server.add_raw_message(SCHOOL, canary(other_id))
    async with mailbox(server) as box:
        found = await box.find(canary_id)
        assert len(found) == 1
        result = await box.remove(found)
        assert result.outcome is RemoveOutcome.REMOVED
        assert result.removed == tuple(found)
        assert await box.find(canary_id) == []
        leftover = await box.find(other_id)
        assert (await box.remove(leftover)).removed == tuple(leftover)
    assert messages(server) == before
    assert remaining_canaries(server) == []


async def test_leftover_canaries_of_a_crashed_run_are_found_without_their_id(
    server: DovecotServer,
) -> None:
    """A run killed after delivery leaves canaries; the next run finds them all by header."""
    before = messages(server)
    for _ in range(2):
        server.add_raw_message(SCHOOL, canary(new_id()))
    async with mailbox(server) as box:
        leftovers = await box.find(None)
        assert len(leftovers) == 2
        assert (await box.remove(leftovers)).removed == tuple(leftovers)
    assert messages(server) == before
    assert remaining_canaries(server) == []


async def test_uids_without_the_header_are_not_removed(server: DovecotServer) -> None:
    """A UID the caller names is deleted only if the server says it carries a canary."""
    before = school_mail(server)
    own = [int(row["uid"]) for row in before]
    async with mailbox(server) as box:
        result = await box.remove(own)
    assert result.outcome is RemoveOutcome.REMOVED
    assert result.removed == ()
    assert messages(server) == before


async def test_without_uidplus_the_canary_is_left_and_said(no_uidplus: DovecotServer) -> None:
    """No UIDPLUS after login: nothing is marked or expunged, and the result says why."""
    canary_id = new_id()
    no_uidplus.add_raw_message(SCHOOL, canary(canary_id))
    before = no_uidplus.fetch(SCHOOL, FIELDS)
    async with mailbox(no_uidplus) as box:
        found = await box.find(canary_id)
        assert found
        result = await box.remove(found)
    assert result.outcome is RemoveOutcome.NO_UIDPLUS
    assert "UIDPLUS" in result.detail
    assert no_uidplus.fetch(SCHOOL, FIELDS) == before
    # What remains for the test suite to clear: the server's own doveadm does it here.
    no_uidplus._doveadm(
        "expunge", "-u", SCHOOL, "mailbox", "INBOX", "HEADER", "X-BMA-Monitor-Canary", canary_id
    )


async def test_wait_for_times_a_canary_that_arrives_during_the_wait(
    server: DovecotServer,
) -> None:
    """The latency is measured when a message delivered mid-wait is first seen."""
    canary_id = new_id()
    async with mailbox(server) as box:
        assert await box.find(canary_id) == []  # INBOX already open: NOOP must show it
        loop = asyncio.get_running_loop()
        loop.call_later(0.2, server.add_raw_message, SCHOOL, canary(canary_id))
        latency = await box.wait_for(canary_id, deadline=5.0, poll=0.05)
        assert latency is not None
        assert 0.2 <= latency < 5.0
        assert (await box.remove(await box.find(canary_id))).outcome is RemoveOutcome.REMOVED
    assert remaining_canaries(server) == []


async def test_wait_for_gives_none_after_the_deadline(server: DovecotServer) -> None:
    """A canary never delivered is not seen: None, once the deadline has passed."""
    async with mailbox(server) as box:
        started = asyncio.get_running_loop().time()
        assert await box.wait_for(new_id(), deadline=0.3, poll=0.1) is None
        assert asyncio.get_running_loop().time() - started >= 0.3


def dsn(serial: int) -> bytes:
    """A delivery status notification, as an MTA sends one to the canary's sender."""
    return (
        f"From: MAILER-DAEMON <postmaster@adm.cfwb.be>\r\nTo: <{SENDER}>\r\n"
        f"Subject: Undelivered Mail {serial}\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nMailbox full.\r\n"
        "--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        f"Final-Recipient: rfc822; {SCHOOL}\r\nAction: failed\r\nStatus: 5.2.2\r\n\r\n--b--\r\n"
    ).encode()


async def test_bounce_reader_returns_new_reports_and_changes_no_flag(
    server: DovecotServer,
) -> None:
    """Reports come back as raw bytes once each; \\Seen stays unset on every message."""
    server.add_messages(SENDER, 1, 500)  # a reply, not a report: not read
    server.add_raw_message(SENDER, dsn(1))
    server.add_raw_message(SENDER, dsn(2))
    before = server.fetch(SENDER, FIELDS)

    def reader() -> BounceReader:
        return BounceReader(
            endpoint(server),
            SENDER,
            Secret(PASSWORD),
            context=server.client_ssl_context(),
            deadline=10.0,
        )

    async with reader() as bounces:
        first = await bounces.read_new(None, limit=1)
        assert first.more
        rest = await bounces.read_new(first.mark)
        assert not rest.more
        assert await bounces.read_new(rest.mark) == type(rest)((), rest.mark, False)
    assert [m for m in first.messages + rest.messages] == [dsn(1), dsn(2)]
    server.add_raw_message(SENDER, dsn(3))
    async with reader() as bounces:
        later = await bounces.read_new(rest.mark)
    assert later.messages == (dsn(3),)
    assert later.mark.last_uid > rest.mark.last_uid
    after = server.fetch(SENDER, FIELDS)
    assert after[: len(before)] == before
    assert all("\\Seen" not in row["flags"] for row in after)


async def test_secret_absent_from_a_refused_login(server: DovecotServer) -> None:
    """A wrong password is an auth failure whose detail does not show the password."""
    from monitor.canary.imap_access import MailboxAccessError

    wrong = "Wrong-Sekret-4Zx!"
    box = CanaryMailbox(
        endpoint(server), SCHOOL, Secret(wrong), context=server.client_ssl_context(), deadline=10.0
    )
    with pytest.raises(MailboxAccessError) as caught:
        async with box:
            pass
    assert caught.value.reason == "auth_failed"
    assert wrong not in str(caught.value)
