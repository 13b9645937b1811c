"""One audit row per mailbox and protocol: what was last seen, and what needs action."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from monitor.audit import actions as wording
from monitor.audit.actions import NO_CREDENTIAL, NOT_PROBED_YET, Action
from monitor.audit.snapshot import Snapshot
from monitor.canary.evidence import Evidence
from monitor.config.model import Config, Mailbox
from monitor.credentials import CredentialMissing, CredentialStore, SecretKind
from monitor.expiry.calendar import days_left, local_date
from monitor.fullness.states import QuotaLevel, bounds_for, next_state
from monitor.probes.registry import PROBERS
from monitor.probes.result import Protocol, Reason
from monitor.scheduling.runner import OPTIONAL_SECRETS
from monitor.state.logins import Lockout

# POP3 says the school's own client holds the mailbox, or asks to wait: the server
# answered and the password was not refused; nothing for ops to do.
NOT_ACTIONABLE = frozenset({Reason.IN_USE, Reason.LOGIN_DELAY})
URGENT_QUOTA = frozenset({QuotaLevel.CRITICAL, QuotaLevel.FULL})

Missing = Mapping[tuple[str, SecretKind], str]  # (address, secret) -> why it is missing


@dataclass(frozen=True, slots=True)
class MailboxFacts:
    """What holds for a mailbox whatever the protocol: usage, forecast, CERBERE expiry."""

    used_bytes: int | None
    limit_bytes: int | None  # the size at which mail bounces (Exchange's top tier)
    ratio: float | None
    quota_state: QuotaLevel | None
    full_evidence: tuple[Evidence, ...]
    forecast_full_at: float | None
    expiry_date: dt.date | None
    expiry_days_left: int | None
    expiry_source: str | None
    expired: bool


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One mailbox and protocol in the report."""

    mailbox: Mailbox
    protocol: Protocol
    login_ok: bool
    reason: str
    detail: str
    checked_at: float | None
    lockout: Lockout | None  # of the secret this protocol sends, refused before
    credential_missing: bool  # a required secret is missing (the mailbox password)
    no_optional_credential: bool  # CERBERE absent: SMTP is simply not probed
    facts: MailboxFacts
    actions: tuple[Action, ...]  # why this row needs action; empty when it does not

    @property
    def failed(self) -> bool:
        """A probe of this protocol ran and its login did not succeed."""
        return self.checked_at is not None and not self.login_ok

    @property
    def locked_out(self) -> bool:
        """The credential was refused for good: it is not sent again until it changes."""
        return self.lockout is not None

    @property
    def needs_action(self) -> bool:
        """Something here needs someone to act (see `actions`)."""
        return bool(self.actions)


def missing_credentials(config: Config) -> dict[tuple[str, SecretKind], str]:
    """Each (mailbox, secret) its protocols need that cannot be read now (blocking I/O)."""
    store = CredentialStore(config.credentials, salt=b"")  # no fingerprint is computed
    found: dict[tuple[str, SecretKind], str] = {}
    for mailbox in config.mailboxes:
        for kind in {PROBERS[p].secret for p in mailbox.protocols}:
            looked = store.lookup(mailbox.address, kind)
            if isinstance(looked, CredentialMissing):
                found[(mailbox.address, kind)] = looked.detail
    return found


def build_rows(
    config: Config, snapshot: Snapshot, missing: Missing, within_days: float
) -> list[AuditRow]:
    """Every configured mailbox and protocol, in configuration order."""
    zone = ZoneInfo(config.expiry.timezone)
    rows: list[AuditRow] = []
    for mailbox in config.mailboxes:
        facts = mailbox_facts(config, snapshot, mailbox, zone)
        shared = _mailbox_actions(config, facts, within_days, snapshot.read_at)
        for protocol in mailbox.protocols:
            rows.append(_row(snapshot, missing, mailbox, protocol, facts, shared))
    return rows


def mailbox_facts(
    config: Config, snapshot: Snapshot, mailbox: Mailbox, zone: ZoneInfo
) -> MailboxFacts:
    """The mailbox-wide facts of one mailbox."""
    address = mailbox.address
    reading = snapshot.statuses[address].quota
    used = limit = ratio = state = None
    if reading is not None:
        bounds = bounds_for(reading, mailbox.tiers, config.quota)
        used, limit = reading.used_bytes, bounds.full
        ratio = used / limit if limit else None
        kept = snapshot.quota_states.get(address)
        # The daemon's state has hysteresis; a mailbox it has no state for (only POP3's
        # inbox size known) is judged on the reading alone.
        state = kept[0] if kept is not None else next_state(None, used, bounds, 0)
    evidence = tuple(
        e for e in (Evidence.REJECTION, Evidence.BOUNCE) if (address, e) in snapshot.evidence
    )
    expiry = snapshot.expiries.get(address)
    now = dt.datetime.fromtimestamp(snapshot.read_at, zone)
    left = days_left(expiry.expires_at, now, zone) if expiry is not None else None
    return MailboxFacts(
        used_bytes=used,
        limit_bytes=limit,
        ratio=ratio,
        quota_state=state,
        full_evidence=evidence,
        forecast_full_at=snapshot.forecasts.get(address),
        expiry_date=local_date(expiry.expires_at, zone) if expiry is not None else None,
        expiry_days_left=left,
        expiry_source=str(expiry.source) if expiry is not None else None,
        expired=expiry is not None and (expiry.expired_now or (left is not None and left <= 0)),
    )


def _mailbox_actions(
    config: Config, facts: MailboxFacts, within_days: float, now: float
) -> tuple[Action, ...]:
    """Why the mailbox as a whole needs action (usage, forecast, CERBERE expiry)."""
    actions: list[Action] = []
    if facts.quota_state in URGENT_QUOTA:
        actions.append(wording.quota(facts.quota_state))
    if facts.full_evidence:
        actions.append(wording.full_evidence(facts.full_evidence))
    if facts.forecast_full_at is not None and facts.quota_state not in URGENT_QUOTA:
        days = max(0.0, (facts.forecast_full_at - now) / 86400)
        actions.append(wording.forecast_full(days))
    first_warning = config.expiry.thresholds[0]
    if facts.expired:
        actions.append(wording.cerbere_expired())
    elif facts.expiry_days_left is not None and facts.expiry_days_left <= first_warning:
        actions.append(wording.cerbere_expiring(facts.expiry_days_left))
    return tuple(actions)


def _row(
    snapshot: Snapshot,
    missing: Missing,
    mailbox: Mailbox,
    protocol: Protocol,
    facts: MailboxFacts,
    shared: tuple[Action, ...],
) -> AuditRow:
    address = mailbox.address
    secret = PROBERS[protocol].secret
    result = snapshot.statuses[address].probe(protocol).result
    lockout = snapshot.lockouts.get((address, secret))
    why_missing = missing.get((address, secret))
    optional = secret in OPTIONAL_SECRETS
    actions: list[Action] = []
    if result is not None:
        reason, detail, checked = str(result.reason), result.detail, result.started_at
        still_missing = result.reason is Reason.CREDENTIAL_MISSING and why_missing is not None
        if not result.login_ok and result.reason not in NOT_ACTIONABLE and not still_missing:
            actions.append(wording.login_failed(str(protocol), str(result.reason)))
    elif lockout is not None:
        # Not probed since: the credential was refused (maybe over the other protocol).
        reason, checked = str(lockout.reason), None
        detail = f"not tried: refused over {lockout.protocol} ({lockout.detail})"
    elif why_missing is not None:
        reason = NO_CREDENTIAL if optional else str(Reason.CREDENTIAL_MISSING)
        detail, checked = why_missing, None
    else:
        reason, detail, checked = NOT_PROBED_YET, "", None
    if lockout is not None:
        actions.append(wording.locked_out(str(lockout.protocol), str(lockout.reason)))
    if why_missing is not None and not optional:
        actions.append(wording.credential_missing(secret))
    return AuditRow(
        mailbox=mailbox,
        protocol=protocol,
        login_ok=result is not None and result.login_ok,
        reason=reason,
        detail=detail,
        checked_at=checked,
        lockout=lockout,
        credential_missing=why_missing is not None and not optional,
        no_optional_credential=why_missing is not None and optional,
        facts=facts,
        actions=(*actions, *shared),
    )
