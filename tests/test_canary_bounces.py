"""Reading bounces: which DSNs say "mailbox full", for whom, and for which canary.

Real DSNs from the delivery front are read in tests/test_canary_send.py; these cases cover
layouts that front does not write (Exchange's, a delay warning, several recipients).
"""

from __future__ import annotations

import datetime as dt

from monitor.canary.bounces import Bounce, full_bounces
from monitor.canary.message import CanaryId

CANARY = CanaryId("0123456789abcdef0123456789abcdef")


def _dsn(recipients: str, returned: str, returned_type: str = "text/rfc822-headers") -> bytes:
    """An Exchange Online style non-delivery report around the given parts."""
    return (
        "From: Microsoft Outlook <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@x.test>\r\n"
        "To: <monitor@canary.test>\r\n"
        "Subject: Undeliverable: [Test automatique] Message de contrôle à ignorer\r\n"
        "Date: Wed, 25 Nov 2026 09:31:00 +0000\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\r\n'
        "\r\n--b1\r\n"
        'Content-Type: multipart/alternative; boundary="b2"\r\n'
        "\r\n--b2\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        "Your message couldn't be delivered: the mailbox is full.\r\n"
        "--b2\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n<p>Mailbox full</p>\r\n"
        "--b2--\r\n"
        "\r\n--b1\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns;AM0PR01MB1234.eurprd01.prod.exchangelabs.com\r\n"
        "Arrival-Date: Wed, 25 Nov 2026 09:30:02 +0000\r\n"
        f"\r\n{recipients}"
        f"\r\n--b1\r\nContent-Type: {returned_type}\r\n\r\n{returned}\r\n--b1--\r\n"
    ).encode()


def _recipient(address: str, action: str, status: str, extra: str = "") -> str:
    return (
        f"Original-Recipient: rfc822;{address}\r\n"
        f"Final-Recipient: rfc822;{address}\r\n"
        f"Action: {action}\r\nStatus: {status}\r\n{extra}"
        "Diagnostic-Code: smtp;554 5.2.2 mailbox full;"
        " STOREDRV.Deliver.Exception:QuotaExceededException\r\n"
    )


RETURNED = (
    "From: Supervision BMA <monitor@canary.test>\r\nTo: full@canary.test\r\n"
    f"Message-ID: <{CANARY}.canary@canary.test>\r\nX-BMA-Monitor-Canary: {CANARY}\r\n"
)
GIVEN_UP = dt.datetime(2026, 11, 25, 9, 31, tzinfo=dt.UTC)


def test_exchange_report_is_read_with_its_canary() -> None:
    """Exchange's report (rfc822-headers returned) gives the recipient, 5.2.2 and the canary."""
    found = full_bounces([_dsn(_recipient("Full@Canary.test", "failed", "5.2.2"), RETURNED)])
    assert found == [Bounce("full@canary.test", "5.2.2", GIVEN_UP, CANARY)]


def test_whole_returned_message_gives_the_canary_too() -> None:
    """A report returning the whole message (message/rfc822) names the canary as well."""
    raw = _dsn(
        _recipient("full@canary.test", "failed", "5.2.2"), RETURNED + "\r\nbody", "message/rfc822"
    )
    assert [bounce.canary_id for bounce in full_bounces([raw])] == [CANARY]


def test_only_the_full_recipient_of_several_counts() -> None:
    """Of several recipients, only those failed with X.2.2 are full; a status comment is fine."""
    recipients = (
        _recipient("gone@canary.test", "failed", "5.1.1")
        + "\r\n"
        + _recipient(
            "full@canary.test",
            "failed",
            "5.2.2 (mailbox full)",
            "Last-Attempt-Date: Wed, 25 Nov 2026 10:00:00 +0100\r\n",
        )
    )
    (bounce,) = full_bounces([_dsn(recipients, RETURNED)])
    assert bounce.recipient == "full@canary.test"
    assert bounce.status == "5.2.2"
    assert bounce.arrived_at == dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)


def test_a_delay_warning_is_not_a_bounce() -> None:
    """Action: delayed with 4.2.2 says delivery is still being tried: no evidence yet."""
    assert full_bounces([_dsn(_recipient("full@canary.test", "delayed", "4.2.2"), RETURNED)]) == []


def test_a_bounce_of_some_other_mail_has_no_canary_id() -> None:
    """A full-mailbox bounce of a message that was no canary is read with canary_id None."""
    other = "From: someone@canary.test\r\nMessage-ID: <x@canary.test>\r\n"
    (bounce,) = full_bounces([_dsn(_recipient("full@canary.test", "failed", "5.2.2"), other)])
    assert bounce.canary_id is None


def test_ordinary_mail_and_garbage_are_skipped() -> None:
    """Messages that are no DSN, and bytes that are no message, give nothing and no error."""
    plain = b"From: a@canary.test\r\nSubject: Status: 5.2.2\r\n\r\nFinal-Recipient: rfc822;x@y\r\n"
    broken = (
        b'Content-Type: multipart/report; boundary="z"\r\n\r\n'
        b"--z\r\nContent-Type: message/delivery-status\r\n\r\n\xff\xfe"
    )
    assert full_bounces([plain, broken, b"", b"\x00\x01garbage"]) == []
