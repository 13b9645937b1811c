"""The canary message: small, labelled in French as an automatic test, and carrying its id
in a header so that the monitor can find (and remove) that message and no other."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from email.message import EmailMessage, Message
from email.utils import format_datetime
from typing import NewType

from monitor.notify.message import bare_address

CanaryId = NewType("CanaryId", str)

CANARY_HEADER = "X-BMA-Monitor-Canary"
SUBJECT = "[Test automatique] Message de contrôle à ignorer"
BODY = """\
Bonjour,

Ce message est un test automatique de la supervision de la messagerie :
il vérifie que votre boîte aux lettres reçoit encore du courrier
(et qu'elle n'est pas pleine).

Vous pouvez l'ignorer : il est supprimé automatiquement dans les
minutes qui suivent. Il n'est pas nécessaire d'y répondre.

Supervision de la messagerie BMA (message automatique)
"""
# 32 lower-case hex digits: safe inside an IMAP SEARCH HEADER string, unquoted.
_CANARY_ID = re.compile(r"[0-9a-f]{32}")


def new_canary_id() -> CanaryId:
    """A fresh, unique canary id."""
    return CanaryId(uuid.uuid4().hex)


def parse_canary_id(text: str) -> CanaryId | None:
    """The canary id in a header value, or None when it is not one of ours."""
    value = text.strip().lower()
    return CanaryId(value) if _CANARY_ID.fullmatch(value) else None


def canary_id_of(message: Message) -> CanaryId | None:
    """The canary id a message's headers carry, if any."""
    value = message.get(CANARY_HEADER)
    return parse_canary_id(str(value)) if value is not None else None


def build_canary(address: str, canary_id: CanaryId, sender: str, now: dt.datetime) -> EmailMessage:
    """The canary for `address`, From `sender`, dated `now` (an aware datetime)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    domain = bare_address(sender).rpartition("@")[2] or "localhost"
    message = EmailMessage()
    message["From"] = sender
    message["To"] = address
    message["Subject"] = SUBJECT
    message["Date"] = format_datetime(now)
    message["Message-ID"] = f"<{canary_id}.canary@{domain}>"
    message[CANARY_HEADER] = canary_id
    # RFC 3834: no vacation or auto-reply answers to a machine's message; Exchange reads
    # its own header for the same purpose.
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    # Quoted-printable keeps the message 7-bit: no relay needs 8BITMIME to carry it.
    message.set_content(BODY, charset="utf-8", cte="quoted-printable")
    return message
