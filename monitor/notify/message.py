"""A warning as an e-mail message: both bodies, the headers RFC 3834 asks of a robot."""

from __future__ import annotations

import datetime as dt
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from monitor.notify.templates import Audience, Rendered


def bare_address(value: str) -> str:
    """The address of 'Name <address>', or the value itself."""
    if value.endswith(">") and "<" in value:
        return value[value.rindex("<") + 1 : -1]
    return value


def message_id(
    address: str, expiry_date: dt.date, threshold: int, audience: Audience, sender: str
) -> str:
    """The Message-ID of one warning: the same for every copy of it, so a copy re-sent after
    a crash is recognised as the same message (Exchange drops the second one)."""
    local = address.split("@", 1)[0]
    domain = bare_address(sender).rsplit("@", 1)[-1] or "localhost"
    return f"<expiry.{local}.{expiry_date:%Y%m%d}.{threshold}.{audience}@{domain}>"


def build_message(
    rendered: Rendered,
    *,
    sender: str,
    recipient: str,
    reply_to: str | None,
    message_id: str,
    date: dt.datetime,
) -> EmailMessage:
    """multipart/alternative (text then HTML, UTF-8) with From, To, Subject, Date,
    Reply-To, Message-ID and Auto-Submitted."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = Address(addr_spec=recipient)
    if reply_to:
        message["Reply-To"] = reply_to
    message["Subject"] = rendered.subject
    message["Date"] = format_datetime(date)
    message["Message-ID"] = message_id
    # RFC 3834: an automatic message; vacation responders and ticket systems stay silent.
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(rendered.text, subtype="plain", charset="utf-8")
    message.add_alternative(rendered.html, subtype="html", charset="utf-8")
    return message
