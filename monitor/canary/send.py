"""Hands a canary to the relay and says what its answer means for the mailbox.

The relay's answer is evidence only when it names the mailbox's state: an X.2.2 enhanced
status (RFC 3463 "mailbox full") at RCPT or DATA. Dovecot says ``552 5.2.2 <u> Quota
exceeded (mailbox for user is full)`` after DATA; Exchange says ``554 5.2.2 mailbox full;
STOREDRV.Deliver.Exception:QuotaExceededException...``.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from enum import StrEnum

from monitor.notify.relay import RefusalPhase, RelaySender, SendOutcome, SendReason

# Exchange's own name for a full mailbox, for relays that rewrite the enhanced status
# (TESTBED.md: without ENHANCEDSTATUSCODES on the relay, 5.2.2 arrives rewritten).
_EXCHANGE_QUOTA_EXCEPTION = "QuotaExceededException"


class SendVerdict(StrEnum):
    """What the relay's answer to one canary says of the mailbox."""

    ACCEPTED = "accepted"  # taken: now it must arrive (or bounce)
    REJECTED_FULL = "rejected_full"  # refused with X.2.2: the mailbox is full, for certain
    REJECTED = "rejected"  # refused for good for another reason (unknown user, policy)
    DEFERRED = "deferred"  # 4xx for this mail: nothing certain, try next cycle
    RELAY_FAILED = "relay_failed"  # the relay could not be used: nothing said of the mailbox


@dataclass(frozen=True, slots=True)
class SendResult:
    """One canary's hand-over: the verdict and the relay's reply (never a secret)."""

    verdict: SendVerdict
    code: int | None = None
    enhanced_status: str | None = None
    phase: RefusalPhase | None = None
    detail: str = ""

    @property
    def full(self) -> bool:
        """Whether the reply is rejection evidence that the mailbox is full."""
        return self.verdict is SendVerdict.REJECTED_FULL


async def send_canary(
    relay: RelaySender, message: EmailMessage, sender: str, recipient: str
) -> SendResult:
    """Send the canary to `recipient` through `relay` and classify the answer."""
    return classify_outcome(await relay.send(message, sender, recipient))


def classify_outcome(outcome: SendOutcome) -> SendResult:
    """The verdict of one relay answer."""
    verdict = _verdict(outcome)
    return SendResult(verdict, outcome.code, outcome.enhanced_status, outcome.phase, outcome.detail)


def _verdict(outcome: SendOutcome) -> SendVerdict:
    if outcome.reason is SendReason.SENT:
        return SendVerdict.ACCEPTED
    if outcome.phase in (RefusalPhase.RCPT, RefusalPhase.DATA) and _says_full(outcome):
        # A 4.2.2 (Dovecot's quota_full_tempfail, a relay's "mailbox full, try later") is
        # the same fact as a 5.2.2: the mailbox is full now.
        return SendVerdict.REJECTED_FULL
    if outcome.reason is SendReason.REFUSED:
        return SendVerdict.REJECTED
    if outcome.reason is SendReason.DEFERRED and outcome.phase is not None:
        return SendVerdict.DEFERRED
    # MAIL FROM refused, AUTH, TLS, connection, timeout, a 4xx to EHLO: the relay's fault.
    return SendVerdict.RELAY_FAILED


def _says_full(outcome: SendOutcome) -> bool:
    status = outcome.enhanced_status
    if status is not None and status.split(".", 1)[1] == "2.2":
        return True
    return outcome.reason is SendReason.REFUSED and _EXCHANGE_QUOTA_EXCEPTION in outcome.detail
