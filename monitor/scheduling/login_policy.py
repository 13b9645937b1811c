"""When a credential may be sent: the rules that keep a monitor from locking an account.

Pure functions of the stored rows and the time; the guard applies them inside the state
file's write transaction, so every process sharing the file obeys the same verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from monitor.probes.result import ProbeResult, Reason
from monitor.state.logins import Attempt, Lockout


class Verdict(StrEnum):
    """Whether a login attempt may go ahead."""

    GO = "go"
    LOCKED = "locked"  # this credential was refused for good
    HELD = "held"  # an attempt with this credential has no known outcome yet
    NEEDS_FINGERPRINT = "needs_fingerprint"  # a lock-out exists: compare the credential


class Outcome(StrEnum):
    """What became of an attempt whose secret was sent."""

    ACCEPTED = "accepted"
    REFUSED = "refused"  # for good: lock out
    ANSWERED = "answered"  # the server answered, neither yes nor no (busy, protocol error)
    UNKNOWN = "unknown"  # no answer: the server may have counted a failure


@dataclass(frozen=True, slots=True)
class Rules:
    """The configured waits."""

    hold: float  # after an attempt of unknown outcome, before the same credential again
    retry_after: float | None  # after a refusal, before the same credential again


@dataclass(frozen=True, slots=True)
class Request:
    """One intended attempt."""

    attempt: Attempt
    fingerprint: str | None = None  # of the credential to send, when a lock-out needs it
    force: bool = False  # an operator's explicit retry


# No answer to LOGIN says nothing about the password: a directory may have counted it.
_UNKNOWN = frozenset({Reason.TIMEOUT, Reason.CONNECTION_CLOSED, Reason.INTERNAL_ERROR})


def decide(
    request: Request, lockout: Lockout | None, pending: Attempt | None, rules: Rules
) -> Verdict:
    """Whether `request` may send its credential, given the stored rows of its mailbox."""
    if request.force:
        return Verdict.GO
    now = request.attempt.started_at
    if lockout is not None:
        if request.fingerprint is None:
            return Verdict.NEEDS_FINGERPRINT
        if request.fingerprint == lockout.fingerprint and not retry_due(lockout, now, rules):
            return Verdict.LOCKED
    if (
        pending is not None
        and pending.credential == request.attempt.credential
        # Both ways: a clock set back must not turn an old attempt into a hold of days.
        and abs(now - pending.started_at) < rules.hold
    ):
        return Verdict.HELD
    return Verdict.GO


def retry_due(lockout: Lockout, now: float, rules: Rules) -> bool:
    """Whether a lock-out has waited long enough for one more try of the same credential."""
    return rules.retry_after is not None and now - lockout.since >= rules.retry_after


def outcome(result: ProbeResult) -> Outcome:
    """What a probe that sent its secret says about that attempt."""
    if result.login_ok:
        return Outcome.ACCEPTED
    if result.reason.is_definitive_auth_failure:
        return Outcome.REFUSED
    if result.reason in _UNKNOWN:
        return Outcome.UNKNOWN
    return Outcome.ANSWERED
