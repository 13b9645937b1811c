"""Reads bounces (RFC 3464 delivery status notifications) for "mailbox full" verdicts.

Exchange accepts mail for a full mailbox and bounces it later: the bounce, in the sender's
mailbox, is then the only evidence. A DSN is ``multipart/report;
report-type=delivery-status``; its ``message/delivery-status`` part holds one block per
recipient (``Final-Recipient``, ``Action``, ``Status``), and the returned headers
(``text/rfc822-headers``, or the whole message as ``message/rfc822``) carry the canary id.
Pure parsing: the caller fetches the messages.
"""

from __future__ import annotations

import datetime as dt
import email
import email.parser
import email.utils
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email.message import Message

from monitor.canary.message import CanaryId, canary_id_of

# RFC 3463 class.subject.detail, possibly followed by a comment: "5.2.2 (mailbox full)".
_STATUS = re.compile(r"\s*([245]\.\d{1,3}\.\d{1,3})(?![\d.])")
_FULL_SUBJECT_DETAIL = ".2.2"


@dataclass(frozen=True, slots=True)
class Bounce:
    """One recipient a DSN reports as failed because the mailbox is full."""

    recipient: str  # the Final-Recipient address, lower-cased
    status: str  # "5.2.2"
    arrived_at: dt.datetime | None  # when the reporting server gave up, if it says
    canary_id: CanaryId | None  # the canary's id, from the returned headers


def full_bounces(messages: Iterable[bytes]) -> list[Bounce]:
    """Every "mailbox full" (Action: failed, Status X.2.2) recipient in these messages."""
    found: list[Bounce] = []
    for raw in messages:
        found.extend(_full_bounces(email.message_from_bytes(raw)))
    return found


def _full_bounces(message: Message) -> Iterator[Bounce]:
    if message.get_content_type() != "multipart/report":
        return
    canary_id = _returned_canary_id(message)
    date = _date(message.get("Date"))
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = part.get_payload()
        if not isinstance(blocks, list):
            continue
        # The first block is about the message, the others one recipient each.
        for block in blocks[1:]:
            if isinstance(block, Message):
                bounce = _recipient_bounce(block, date, canary_id)
                if bounce is not None:
                    yield bounce


def _recipient_bounce(
    block: Message, date: dt.datetime | None, canary_id: CanaryId | None
) -> Bounce | None:
    """The block's Bounce if it says "failed, mailbox full"."""
    # "delayed" with 4.2.2 is a warning that delivery is still being retried, not a bounce.
    if str(block.get("Action", "")).strip().lower() != "failed":
        return None
    status = _STATUS.match(str(block.get("Status", "")))
    if status is None or not status.group(1).endswith(_FULL_SUBJECT_DETAIL):
        return None
    recipient = _address(block.get("Final-Recipient")) or _address(block.get("Original-Recipient"))
    if recipient is None:
        return None
    given_up = _date(block.get("Last-Attempt-Date")) or date
    return Bounce(recipient, status.group(1), given_up, canary_id)


def _returned_canary_id(message: Message) -> CanaryId | None:
    """The canary id of the returned message, from its headers or its whole copy."""
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "text/rfc822-headers":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                headers = email.parser.BytesHeaderParser().parsebytes(payload)
                found = canary_id_of(headers)
                if found is not None:
                    return found
        elif kind == "message/rfc822":
            returned = part.get_payload()
            if isinstance(returned, list) and returned and isinstance(returned[0], Message):
                found = canary_id_of(returned[0])
                if found is not None:
                    return found
    return None


def _address(value: object) -> str | None:
    """The address of an "address-type; address" field (RFC 3464 2.3.2)."""
    if value is None:
        return None
    kind, _, address = str(value).partition(";")
    if not address:  # no type given: the value is the address
        address = kind
    address = address.strip().strip("<>").strip()
    return address.lower() if "@" in address else None


def _date(value: object) -> dt.datetime | None:
    """An RFC 5322 date, or None when absent or unreadable."""
    if value is None:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(str(value))
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo is not None else None
