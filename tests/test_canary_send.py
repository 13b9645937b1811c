"""The canary's sending side: the message, and what the relay's answer says of the mailbox.

Sent through monitor.notify.relay.RelaySender to the SMTP front of tests/servers/delivery.py,
which delivers into a private Dovecot by LMTP with quota enforced: the 552 5.2.2 is
Dovecot's own. Replies no local server gives (Exchange's 554 5.2.2) come from the recording
relay's script.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from monitor.canary.bounces import full_bounces
from monitor.canary.message import (
    CANARY_HEADER,
    CanaryId,
    build_canary,
    canary_id_of,
    new_canary_id,
)
from monitor.canary.send import SendVerdict, send_canary
from monitor.config.expiry_model import RelayConfig
from monitor.config.fullness_model import CanaryConfig
from monitor.config.model import CredentialsConfig, TlsMode
from monitor.notify.relay import RefusalPhase, RelaySender
from tests.delivery_support import FULL, ROOMY, SENDER, delivery_server, inbox_messages
from tests.servers.delivery import DeliveryFront
from tests.servers.dovecot import DovecotServer
from tests.servers.relay import RecordingRelay

NOW = dt.datetime(2026, 11, 25, 9, 30, tzinfo=dt.UTC)
FROM = f"Supervision BMA <{SENDER.address}>"
EXCHANGE_FULL = (
    "554 5.2.2 mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException."
    "MapiExceptionShutoffQuotaExceeded; Failed to process message due to a permanent exception"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotServer]:
    """Dovecot with LMTP; FULL is over its quota."""
    yield from delivery_server(tmp_path_factory.mktemp("canary-send"))


@pytest.fixture(scope="module")
def passing(server: DovecotServer) -> Iterator[DeliveryFront]:
    """The SMTP front passing Dovecot's LMTP replies back."""
    with DeliveryFront("127.0.0.1", server.lmtp_port) as front:
        yield front


@pytest.fixture(scope="module")
def bouncing(server: DovecotServer) -> Iterator[DeliveryFront]:
    """The SMTP front that accepts, then bounces, as Exchange does."""
    with DeliveryFront("127.0.0.1", server.lmtp_port, mode="bounce") as front:
        yield front


def _relay(port: int) -> RelaySender:
    config = RelayConfig(host="127.0.0.1", port=port, tls=TlsMode.NONE, command_timeout=10.0)
    return RelaySender(config, CredentialsConfig())


def _canary(address: str) -> tuple[CanaryId, EmailMessage]:
    canary_id = new_canary_id()
    return canary_id, build_canary(address, canary_id, FROM, NOW)


def _canary_ids(server: DovecotServer, address: str) -> list[str]:
    rows = server.fetch(address, f"hdr.{CANARY_HEADER.lower()}")
    return [row[f"hdr.{CANARY_HEADER.lower()}"].strip() for row in rows]


def test_the_canary_is_small_french_and_labelled() -> None:
    """The canary says in French it is an automatic test, and carries its id and no-reply marks."""
    canary_id, message = _canary(ROOMY.address)
    raw = bytes(message)
    assert len(raw) < CanaryConfig().max_size / 2
    assert message["Subject"] == "[Test automatique] Message de contrôle à ignorer"
    assert "supprimé automatiquement" in message.get_content()
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Message-ID"] == f"<{canary_id}.canary@canary.test>"
    reread = email.message_from_bytes(raw, policy=email.policy.default)
    assert canary_id_of(reread) == canary_id
    assert raw.isascii()  # no relay needs 8BITMIME to carry it


def test_two_canaries_have_different_ids() -> None:
    """Each canary id is new, so one run's canary is never mistaken for another's."""
    assert new_canary_id() != new_canary_id()


def test_a_naive_time_is_refused() -> None:
    """The Date header needs a time zone: a naive datetime is a bug of the caller."""
    with pytest.raises(ValueError, match="timezone-aware"):
        build_canary(ROOMY.address, new_canary_id(), FROM, NOW.replace(tzinfo=None))


async def test_a_canary_to_a_mailbox_with_room_is_accepted_and_lands(
    server: DovecotServer, passing: DeliveryFront
) -> None:
    """A canary to a mailbox with room is accepted (250) and is in its INBOX afterwards."""
    canary_id, message = _canary(ROOMY.address)
    result = await send_canary(_relay(passing.port), message, FROM, ROOMY.address)
    assert result.verdict is SendVerdict.ACCEPTED
    assert not result.full
    assert canary_id in _canary_ids(server, ROOMY.address)


async def test_a_full_mailbox_refuses_with_dovecots_own_552_at_data(
    server: DovecotServer, passing: DeliveryFront
) -> None:
    """Dovecot's own 552 5.2.2 after DATA is rejection evidence that the mailbox is full."""
    canary_id, message = _canary(FULL.address)
    result = await send_canary(_relay(passing.port), message, FROM, FULL.address)
    assert result.verdict is SendVerdict.REJECTED_FULL and result.full
    assert (result.code, result.enhanced_status, result.phase) == (552, "5.2.2", RefusalPhase.DATA)
    assert result.detail.startswith(f"552 5.2.2 <{FULL.address}> Quota exceeded")
    assert canary_id not in _canary_ids(server, FULL.address)


async def test_an_unknown_mailbox_is_refused_but_not_full(passing: DeliveryFront) -> None:
    """Dovecot's 550 5.1.1 at RCPT is a permanent refusal that says nothing of fullness."""
    _, message = _canary("nobody@canary.test")
    result = await send_canary(_relay(passing.port), message, FROM, "nobody@canary.test")
    assert result.verdict is SendVerdict.REJECTED and not result.full
    assert (result.code, result.enhanced_status, result.phase) == (550, "5.1.1", RefusalPhase.RCPT)


async def test_a_full_mailbox_refused_at_rcpt(tmp_path: Path) -> None:
    """With lmtp_rcpt_check_quota Dovecot refuses at RCPT: rejection evidence all the same."""
    for server in delivery_server(tmp_path / "rcpt", lmtp_rcpt_check_quota=True):
        with DeliveryFront("127.0.0.1", server.lmtp_port) as front:
            _, message = _canary(FULL.address)
            result = await send_canary(_relay(front.port), message, FROM, FULL.address)
        assert result.verdict is SendVerdict.REJECTED_FULL
        assert (result.code, result.enhanced_status, result.phase) == (
            552,
            "5.2.2",
            RefusalPhase.RCPT,
        )


@pytest.mark.parametrize(
    ("rcpt", "data", "verdict", "status"),
    [
        (None, EXCHANGE_FULL, SendVerdict.REJECTED_FULL, "5.2.2"),
        # A relay without ENHANCEDSTATUSCODES rewrites the status; Exchange's text remains.
        (
            None,
            "550 5.0.0 QuotaExceededException; mailbox full",
            SendVerdict.REJECTED_FULL,
            "5.0.0",
        ),
        ("452 4.2.2 Mailbox full, try again later", None, SendVerdict.REJECTED_FULL, "4.2.2"),
        ("550 5.7.1 Delivery not authorized", None, SendVerdict.REJECTED, "5.7.1"),
        ("451 4.3.0 Temporary failure", None, SendVerdict.DEFERRED, "4.3.0"),
        (None, "554 Transaction failed", SendVerdict.REJECTED, None),
    ],
)
async def test_relay_replies_are_classified(
    tmp_path: Path, rcpt: str | None, data: str | None, verdict: SendVerdict, status: str | None
) -> None:
    """Each relay reply gets its verdict: only an X.2.2 (or Exchange's quota text) is full."""
    with RecordingRelay(tmp_path / "certs") as relay:
        if rcpt is not None:
            relay.script.rcpt[ROOMY.address] = rcpt
        if data is not None:
            relay.script.data[ROOMY.address] = data
        _, message = _canary(ROOMY.address)
        result = await send_canary(_relay(relay.port), message, FROM, ROOMY.address)
    assert (result.verdict, result.enhanced_status) == (verdict, status)
    assert result.phase is (RefusalPhase.RCPT if rcpt else RefusalPhase.DATA)


async def test_a_relay_that_is_down_says_nothing_of_the_mailbox(tmp_path: Path) -> None:
    """No relay to talk to is the relay's failure, not a verdict on the mailbox."""
    relay = RecordingRelay(tmp_path / "certs")
    relay.start()
    port = relay.port
    relay.stop()
    _, message = _canary(ROOMY.address)
    result = await send_canary(_relay(port), message, FROM, ROOMY.address)
    assert result.verdict is SendVerdict.RELAY_FAILED
    assert (result.code, result.phase) == (None, None)


async def test_bounce_mode_accepts_then_a_dsn_names_the_canary(
    server: DovecotServer, bouncing: DeliveryFront
) -> None:
    """Exchange-like: accepted with 250, then a real DSN in the sender's INBOX reads as full."""
    before = len(inbox_messages(server, SENDER.address))
    canary_id, message = _canary(FULL.address)
    result = await send_canary(_relay(bouncing.port), message, FROM, SENDER.address)
    # A canary delivered to the sender's own mailbox: a message there that is no bounce.
    assert result.verdict is SendVerdict.ACCEPTED
    result = await send_canary(_relay(bouncing.port), message, FROM, FULL.address)
    assert result.verdict is SendVerdict.ACCEPTED
    arrived = inbox_messages(server, SENDER.address)[before:]
    assert len(arrived) == 2  # the control canary and the bounce
    (bounce,) = full_bounces(arrived)
    assert (bounce.recipient, bounce.status, bounce.canary_id) == (
        FULL.address,
        "5.2.2",
        canary_id,
    )
    assert bounce.arrived_at is not None
    assert abs(bounce.arrived_at - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)
