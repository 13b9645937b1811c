"""Delivery status notifications (RFC 3464) as an Exchange-like relay writes them, for tests.

A bounce is ``multipart/report; report-type=delivery-status`` with a human-readable part,
a ``message/delivery-status`` part (``Final-Recipient``, ``Action: failed``, ``Status``,
``Diagnostic-Code``) and the original message's headers as ``text/rfc822-headers``.
"""

from __future__ import annotations

import datetime
import email.utils
import uuid

REPORTING_MTA = "front.test"


def delivery_status_notification(
    original: bytes,
    sender: str,
    recipient: str,
    reply: str,
    now: datetime.datetime,
) -> bytes:
    """A bounce to `sender` saying `recipient` refused `original` with the SMTP `reply`."""
    code, _, text = reply.partition(" ")
    enhanced = text.split(" ", 1)[0] if text[:2] in ("4.", "5.") else f"{code[0]}.0.0"
    headers_end = original.find(b"\r\n\r\n")
    original_headers = original if headers_end < 0 else original[: headers_end + 2]
    boundary = f"dsn-{uuid.uuid4().hex}"
    date = email.utils.format_datetime(now)
    human = (
        f"Your message to {recipient} could not be delivered.\r\n"
        f"The recipient's server answered: {reply}\r\n"
    )
    return (
        (
            f"From: Mail Delivery System <MAILER-DAEMON@{REPORTING_MTA}>\r\n"
            f"To: <{sender}>\r\n"
            "Subject: Undeliverable: returned mail\r\n"
            f"Date: {date}\r\n"
            f"Message-ID: <{uuid.uuid4().hex}@{REPORTING_MTA}>\r\n"
            "Auto-Submitted: auto-replied\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: multipart/report; report-type=delivery-status;\r\n"
            f' boundary="{boundary}"\r\n'
            "\r\n"
            f"--{boundary}\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n"
            "\r\n"
            f"{human}"
            "\r\n"
            f"--{boundary}\r\n"
            "Content-Type: message/delivery-status\r\n"
            "\r\n"
            f"Reporting-MTA: dns; {REPORTING_MTA}\r\n"
            f"Arrival-Date: {date}\r\n"
            "\r\n"
            f"Final-Recipient: rfc822; {recipient}\r\n"
            "Action: failed\r\n"
            f"Status: {enhanced}\r\n"
            f"Diagnostic-Code: smtp; {reply}\r\n"
            f"Last-Attempt-Date: {date}\r\n"
            "\r\n"
            f"--{boundary}\r\n"
            "Content-Type: text/rfc822-headers\r\n"
            "\r\n"
        ).encode()
        + original_headers
        + f"\r\n--{boundary}--\r\n".encode()
    )
