"""The latest status of every mailbox and protocol, restored from and saved to the state file."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import replace

import structlog

from monitor.config.model import Config, Mailbox
from monitor.probes.registry import PROBERS
from monitor.probes.result import ProbeResult, Protocol
from monitor.quota import better_reading
from monitor.scheduling.view import MailboxStatus, ProbeStatus
from monitor.state.logins import Key, Lockout
from monitor.state.store import MailboxRecord, ProbeRecord, StateError, StateStore

log = structlog.get_logger("bma_monitor.scheduler")

Lockouts = Mapping[Key, Lockout]


class StatusBook:
    """Mailbox statuses by address; each one replaced whole on every change."""

    def __init__(self, store: StateStore) -> None:
        self._store = store
        self.statuses: dict[str, MailboxStatus] = {}
        self._dirty: set[str] = set()

    def restore(self, config: Config, lockouts: Lockouts) -> None:
        """Build the statuses of a first configuration from what the state file kept."""
        records = self._store.load_mailboxes()
        log.info("state_loaded", mailboxes=len(records), lockouts=len(lockouts))
        self._build(config, lockouts, records)

    def apply(self, config: Config, lockouts: Lockouts) -> None:
        """Adopt a new configuration: mailboxes and protocols added keep nothing, others all."""
        self._build(config, lockouts, None)

    def record(
        self,
        mailbox: Mailbox,
        result: ProbeResult,
        *,
        now: float,
        estimated: bool,
        lockouts: Lockouts,
    ) -> bool:
        """Keep a probe's result; False when a reload changed the mailbox meanwhile."""
        status = self.statuses.get(mailbox.address)
        if status is None or status.mailbox != mailbox or result.protocol not in status.probes:
            return False  # removed or changed while the probe ran: not its result now
        previous = status.probe(result.protocol)
        probe = replace(
            previous,
            result=result,
            last_success_at=now if result.login_ok else previous.last_success_at,
            estimated_at=now if estimated and result.login_ok else previous.estimated_at,
        )
        self._replace(status, {result.protocol: probe}, lockouts, result)
        return True

    def record_lockout(self, mailbox: Mailbox, lockouts: Lockouts) -> None:
        """Show a lock-out found without probing (another process refused the credential)."""
        status = self.statuses.get(mailbox.address)
        if status is not None and status.mailbox == mailbox:
            self._replace(status, {}, lockouts, None)

    async def flush(self) -> None:
        """Write the changed records to the state file; on failure, keep them for the next."""
        if not self._dirty:
            return
        addresses, self._dirty = self._dirty, set()
        records = [
            MailboxRecord(
                address,
                status.quota,
                {
                    protocol: ProbeRecord(address, protocol, p.result, p.last_success_at)
                    for protocol, p in status.probes.items()
                    if p.result is not None
                },
            )
            for address in addresses
            if (status := self.statuses.get(address)) is not None
        ]
        try:
            await asyncio.to_thread(self._store.save_mailboxes, records)
        except StateError as exc:
            self._dirty |= addresses  # try again at the next flush
            log.error("state_write_failed", error=str(exc))

    def _replace(
        self,
        status: MailboxStatus,
        changed: dict[Protocol, ProbeStatus],
        lockouts: Lockouts,
        result: ProbeResult | None,
    ) -> None:
        """Replace a status with new probe entries, every protocol's lock-out brought up to
        date (a refusal over IMAP locks POP3 too), and the better usage reading."""
        address = status.mailbox.address
        probes = {
            protocol: replace(probe, lockout=lockouts.get((address, PROBERS[protocol].secret)))
            for protocol, probe in (status.probes | changed).items()
        }
        quota = better_reading(status.quota, result.quota if result is not None else None)
        if probes == status.probes and quota is status.quota:
            return
        self.statuses[address] = replace(status, probes=probes, quota=quota)
        self._dirty.add(address)

    def _build(
        self, config: Config, lockouts: Lockouts, records: dict[str, MailboxRecord] | None
    ) -> None:
        statuses: dict[str, MailboxStatus] = {}
        for mailbox in config.mailboxes:
            address = mailbox.address
            previous = self.statuses.get(address)
            record = records.get(address) if records is not None else None
            if previous is None:
                statuses[address] = restored_status(mailbox, record, lockouts)
                continue
            probes: dict[Protocol, ProbeStatus] = {}
            for protocol in mailbox.protocols:
                lockout = lockouts.get((address, PROBERS[protocol].secret))
                if protocol in previous.probes:
                    probes[protocol] = replace(previous.probes[protocol], lockout=lockout)
                else:
                    probes[protocol] = restored_status(mailbox, record, lockouts).probe(protocol)
            statuses[address] = MailboxStatus(mailbox, probes, previous.quota)
        self.statuses = statuses


def restored_status(
    mailbox: Mailbox, record: MailboxRecord | None, lockouts: Lockouts
) -> MailboxStatus:
    """A mailbox's status as the state file kept it: each configured protocol's last result
    (empty where it never ran) with its lock-out, and the best usage reading."""
    address = mailbox.address
    probes: dict[Protocol, ProbeStatus] = {}
    for protocol in mailbox.protocols:
        lockout = lockouts.get((address, PROBERS[protocol].secret))
        kept = record.probes.get(protocol) if record is not None else None
        if kept is not None:
            probes[protocol] = ProbeStatus(protocol, kept.result, kept.last_success_at, lockout)
        else:
            probes[protocol] = ProbeStatus(protocol, lockout=lockout)
    return MailboxStatus(mailbox, probes, record.quota if record is not None else None)


def restored_statuses(
    mailboxes: Iterable[Mailbox], records: Mapping[str, MailboxRecord], lockouts: Lockouts
) -> dict[str, MailboxStatus]:
    """Every configured mailbox's status as the state file kept it (see restored_status)."""
    return {m.address: restored_status(m, records.get(m.address), lockouts) for m in mailboxes}
