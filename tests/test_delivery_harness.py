"""The delivery path of the canary tests: SMTP front -> Dovecot LMTP with quota enforced."""

from __future__ import annotations

import email
import email.message
import email.policy
import smtplib
from collections.abc import Iterator
from email.message import EmailMessage

import pytest

from tests.delivery_support import FULL, ROOMY, SENDER, delivery_server, inbox_messages
from tests.servers.delivery import DeliveryFront, lmtp_transaction
from tests.servers.dovecot import DovecotServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotServer]:
    """Dovecot with LMTP; FULL is over its quota."""
    yield from delivery_server(tmp_path_factory.mktemp("delivery"))


def _message(recipient: str, subject: str) -> bytes:
    return (
        f"From: <{SENDER.address}>\r\nTo: <{recipient}>\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject}@canary.test>\r\n\r\nbody\r\n"
    ).encode()


def _subjects(server: DovecotServer, address: str) -> list[str]:
    return [row["hdr.subject"] for row in server.fetch(address, "hdr.subject")]


def _new_messages(before: list[bytes], after: list[bytes]) -> list[EmailMessage]:
    parsed = []
    for raw in after[len(before) :]:
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        parsed.append(message)
    return parsed


def test_lmtp_refuses_an_over_quota_mailbox_after_data(server: DovecotServer) -> None:
    """Dovecot's LMTP takes RCPT for a full mailbox, then answers 552 5.2.2 to DATA."""
    full = lmtp_transaction("127.0.0.1", server.lmtp_port, SENDER.address, FULL.address, None)
    assert full.code == 250
    reply = lmtp_transaction(
        "127.0.0.1", server.lmtp_port, SENDER.address, FULL.address, _message(FULL.address, "f")
    )
    assert (reply.code, reply.text.split()[0]) == (552, "5.2.2")
    assert "Quota exceeded" in reply.text
    assert "f" not in _subjects(server, FULL.address)


def test_lmtp_refuses_an_unknown_user_at_rcpt(server: DovecotServer) -> None:
    """An address Dovecot does not know is refused at RCPT with 550 5.1.1."""
    reply = lmtp_transaction("127.0.0.1", server.lmtp_port, SENDER.address, "nobody@x.test", None)
    assert (reply.code, reply.text.split()[0]) == (550, "5.1.1")


def test_pass_mode_delivers_to_a_mailbox_with_room(server: DovecotServer) -> None:
    """Through the front in pass mode, a message to a roomy mailbox lands in its INBOX."""
    with (
        DeliveryFront("127.0.0.1", server.lmtp_port) as front,
        smtplib.SMTP("127.0.0.1", front.port) as client,
    ):
        refused = client.sendmail(SENDER.address, [ROOMY.address], _message(ROOMY.address, "hi"))
    assert refused == {}
    assert "hi" in _subjects(server, ROOMY.address)
    assert [(d.recipient, d.reply.code) for d in front.deliveries()] == [(ROOMY.address, 250)]


def test_pass_mode_passes_dovecots_own_552(server: DovecotServer) -> None:
    """In pass mode a full mailbox gives Dovecot's own 552 5.2.2 reply to DATA."""
    with (
        DeliveryFront("127.0.0.1", server.lmtp_port) as front,
        smtplib.SMTP("127.0.0.1", front.port) as client,
        pytest.raises(smtplib.SMTPDataError) as refused,
    ):
        client.sendmail(SENDER.address, [FULL.address], _message(FULL.address, "full"))
    assert refused.value.smtp_code == 552
    text = refused.value.smtp_error
    assert isinstance(text, bytes)
    assert text.startswith(f"5.2.2 <{FULL.address}> Quota exceeded".encode())
    assert "full" not in _subjects(server, FULL.address)


def test_bounce_mode_accepts_then_returns_a_dsn_to_the_sender(server: DovecotServer) -> None:
    """In bounce mode the front says 250, then the sender's INBOX gets a 5.2.2 DSN from <>."""
    before = inbox_messages(server, SENDER.address)
    with (
        DeliveryFront("127.0.0.1", server.lmtp_port, mode="bounce") as front,
        smtplib.SMTP("127.0.0.1", front.port) as client,
    ):
        refused = client.sendmail(SENDER.address, [FULL.address], _message(FULL.address, "bb"))
    assert refused == {}
    assert [reply.code for reply in front.bounce_replies()] == [250]
    (dsn,) = _new_messages(before, inbox_messages(server, SENDER.address))
    assert dsn["Return-Path"] == "<>"
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    status = next(p for p in dsn.walk() if p.get_content_type() == "message/delivery-status")
    blocks = status.get_payload()
    assert isinstance(blocks, list)  # per-message fields, then one block per recipient
    recipient_fields = blocks[1]
    assert isinstance(recipient_fields, email.message.Message)
    assert recipient_fields["Final-Recipient"] == f"rfc822; {FULL.address}"
    assert (recipient_fields["Action"], recipient_fields["Status"]) == ("failed", "5.2.2")
    returned = next(p for p in dsn.walk() if p.get_content_type() == "text/rfc822-headers")
    assert "Message-ID: <bb@canary.test>" in returned.get_content()


def test_bounce_mode_never_bounces_a_null_sender(server: DovecotServer) -> None:
    """A refused message from the null sender (a bounce itself) makes no DSN."""
    with (
        DeliveryFront("127.0.0.1", server.lmtp_port, mode="bounce") as front,
        smtplib.SMTP("127.0.0.1", front.port) as client,
    ):
        client.sendmail("<>", [FULL.address], _message(FULL.address, "null"))
    assert [(d.sender, d.reply.code, d.bounced) for d in front.deliveries()] == [("", 552, False)]
    assert front.bounce_replies() == []
