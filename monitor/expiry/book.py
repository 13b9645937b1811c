"""Each mailbox's CERBERE expiry, from every enabled source: the inventory, observed
changes, the directory, and SMTP AUTH saying the password expired."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from zoneinfo import ZoneInfo

from monitor.config.expiry_model import ExpiryConfig
from monitor.config.model import Mailbox
from monitor.expiry.calendar import merge
from monitor.expiry.model import Expiry, ExpirySource, PasswordDate
from monitor.expiry.observed import ObservedChanges
from monitor.probes.result import Protocol, Reason
from monitor.scheduling.view import MailboxStatus


def inventory_dates(mailbox: Mailbox, zone: ZoneInfo) -> list[PasswordDate]:
    """What the inventory says: a date is taken as the start of that day in the zone."""
    found: list[PasswordDate] = []
    if mailbox.password_changed is not None:
        changed = dt.datetime.combine(mailbox.password_changed, dt.time(), zone)
        found.append(PasswordDate(mailbox.address, ExpirySource.INVENTORY, changed_at=changed))
    if mailbox.password_expires is not None:
        expires = dt.datetime.combine(mailbox.password_expires, dt.time(), zone)
        found.append(PasswordDate(mailbox.address, ExpirySource.INVENTORY, expires_at=expires))
    return found


def smtp_expired(status: MailboxStatus) -> PasswordDate | None:
    """SMTP AUTH's last word, where it said the password expired."""
    result = status.probe(Protocol.SMTP).result
    if result is None or result.reason is not Reason.PASSWORD_EXPIRED:
        return None
    seen = dt.datetime.fromtimestamp(result.started_at, dt.UTC)
    return PasswordDate(status.mailbox.address, ExpirySource.SMTP, expires_at=seen)


class ExpiryBook:
    """Merges the sources each time it is asked: they are cheap, and change under it."""

    def __init__(
        self,
        config: Callable[[], ExpiryConfig],
        observed: ObservedChanges,
        directory: Callable[[], Mapping[str, PasswordDate]],
        statuses: Callable[[], Mapping[str, MailboxStatus]],
    ) -> None:
        self._config = config
        self._observed = observed
        self._directory = directory
        self._statuses = statuses

    def expiries(self, mailboxes: Iterable[Mailbox]) -> dict[str, Expiry]:
        """The expiry of each mailbox for which a source knows one."""
        config = self._config()
        zone = ZoneInfo(config.timezone)
        sources = config.sources
        observed = self._observed.password_dates() if sources.observed else {}
        directory = self._directory() if sources.ldap is not None else {}
        statuses = self._statuses()
        found: dict[str, Expiry] = {}
        for mailbox in mailboxes:
            address = mailbox.address
            dates = inventory_dates(mailbox, zone) if sources.inventory else []
            for extra in (observed.get(address), directory.get(address)):
                if extra is not None:
                    dates.append(extra)
            status = statuses.get(address)
            said = smtp_expired(status) if status is not None else None
            if said is not None:
                dates.append(said)
            expiry = merge(dates, config.policy_months, zone)
            if expiry is not None:
                found[address] = expiry
        return found
