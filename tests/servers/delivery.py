"""An SMTP front (aiosmtpd) that delivers into a DovecotServer's LMTP, for the canary tests.

Dovecot's own submission service cannot relay into LMTP (TESTBED.md), so this front takes
SMTP and hands each recipient to LMTP in its own transaction (LMTP answers once per
accepted recipient after DATA; one recipient keeps that reply unambiguous). Two modes:

- ``pass``: the LMTP reply is the SMTP reply. A full mailbox gives Dovecot's own
  ``552 5.2.2 <user> Quota exceeded (mailbox for user is full)`` after DATA.
- ``bounce`` (Exchange-like): the front answers ``250`` to DATA whatever LMTP said; each
  refused recipient then gets a real DSN (tests/servers/dsn.py) delivered by LMTP, with
  ``MAIL FROM:<>``, to the envelope sender's mailbox.

In both modes RCPT is checked against LMTP first, so an unknown user gets Dovecot's
``550 5.1.1`` at RCPT, as a relay with recipient filtering answers.
"""

from __future__ import annotations

import asyncio
import datetime
import smtplib
import threading
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import SMTP

from tests.servers.dsn import delivery_status_notification
from tests.servers.threaded import ThreadedSmtp

LMTP_TIMEOUT_SECONDS = 10.0
MODES = ("pass", "bounce")


@dataclass(frozen=True)
class LmtpReply:
    """What Dovecot's LMTP answered to one recipient's transaction."""

    code: int
    text: str

    @property
    def line(self) -> str:
        """The reply as an SMTP server sends it: code, then text."""
        return f"{self.code} {self.text}"


@dataclass(frozen=True)
class Delivery:
    """One recipient's message handed to LMTP, and LMTP's reply."""

    sender: str
    recipient: str
    reply: LmtpReply
    bounced: bool = False  # a DSN went back to the sender (bounce mode)


def lmtp_transaction(
    host: str, port: int, sender: str, recipient: str, data: bytes | None
) -> LmtpReply:
    """One LMTP transaction for one recipient; with data=None it stops after RCPT."""
    with smtplib.LMTP(host, port, timeout=LMTP_TIMEOUT_SECONDS) as client:
        client.ehlo("front.test")  # smtplib's LMTP sends LHLO here
        code, answer = client.mail(sender)  # "" becomes MAIL FROM:<>
        if code != 250:
            return LmtpReply(code, answer.decode("utf-8", "replace"))
        code, answer = client.rcpt(recipient)
        if code != 250 or data is None:
            return LmtpReply(code, answer.decode("utf-8", "replace"))
        reply: bytes | str
        try:
            code, reply = client.data(data)
        except smtplib.SMTPDataError as exc:  # a refusal of DATA itself, before the body
            code, reply = exc.smtp_code, exc.smtp_error
        text = reply if isinstance(reply, str) else reply.decode("utf-8", "replace")
        return LmtpReply(code, text)


def _null_sender(address: str) -> str:
    """aiosmtpd gives MAIL FROM:<> as "<>"; LMTP and DSN code want the empty address."""
    return "" if address in ("<>", "") else address


class _Handler:
    def __init__(self, front: DeliveryFront) -> None:
        self.front = front

    async def handle_RCPT(
        self, server: SMTP, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        sender = _null_sender(envelope.mail_from)
        reply = await asyncio.to_thread(self.front.lmtp, sender, address, None)
        if reply.code != 250:
            return reply.line
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        sender = _null_sender(envelope.mail_from)
        raw = bytes(envelope.original_content or envelope.content)
        refusal: LmtpReply | None = None
        for recipient in envelope.rcpt_tos:
            reply = await asyncio.to_thread(self.front.lmtp, sender, recipient, raw)
            bounced = False
            if reply.code != 250 and self.front.mode == "bounce" and sender:
                await asyncio.to_thread(self.front.bounce, raw, sender, recipient, reply)
                bounced = True
            self.front.record(Delivery(sender, recipient, reply, bounced))
            if reply.code != 250 and refusal is None:
                refusal = reply
        if refusal is None or self.front.mode == "bounce":
            return "250 2.0.0 OK delivered"
        return refusal.line


class DeliveryFront(ThreadedSmtp):
    """SMTP on 127.0.0.1:`port` delivering into LMTP at `lmtp_host`:`lmtp_port`."""

    name = "delivery front"

    def __init__(self, lmtp_host: str, lmtp_port: int, *, mode: str = "pass") -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        super().__init__("none")
        self.lmtp_host = lmtp_host
        self.lmtp_port = lmtp_port
        self.mode = mode
        self._deliveries: list[Delivery] = []
        self._bounce_replies: list[LmtpReply] = []
        self._lock = threading.Lock()

    def session(self) -> SMTP:
        """A new aiosmtpd session for one connection."""
        return SMTP(_Handler(self), hostname="front.test", loop=self.loop)

    def deliveries(self) -> list[Delivery]:
        """Every recipient handed to LMTP so far, in order."""
        with self._lock:
            return list(self._deliveries)

    def bounce_replies(self) -> list[LmtpReply]:
        """LMTP's reply to each DSN the front delivered (bounce mode)."""
        with self._lock:
            return list(self._bounce_replies)

    def record(self, delivery: Delivery) -> None:
        """Remember one delivery."""
        with self._lock:
            self._deliveries.append(delivery)

    def lmtp(self, sender: str, recipient: str, data: bytes | None) -> LmtpReply:
        """One LMTP transaction against the Dovecot behind the front (blocking)."""
        return lmtp_transaction(self.lmtp_host, self.lmtp_port, sender, recipient, data)

    def bounce(self, original: bytes, sender: str, recipient: str, reply: LmtpReply) -> None:
        """Deliver a DSN for `recipient`'s refusal to `sender`, from the null sender (blocking)."""
        now = datetime.datetime.now(datetime.UTC)
        dsn = delivery_status_notification(original, sender, recipient, reply.line, now)
        # MAIL FROM:<> so that a bounce can never bounce back (RFC 5321 4.5.5).
        result = self.lmtp("", sender, dsn)
        with self._lock:
            self._bounce_replies.append(result)
