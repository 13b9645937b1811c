"""The observation source: a new CERBERE password accepted by SMTP AUTH dates its change.

When a mailbox's `.cerbere` file holds a password SMTP AUTH has not accepted before, and
the server accepts it, the password was changed: the time of that first acceptance is
kept as its change date. The first password ever seen dates nothing (it may be months
old). A file rewritten with the same password is no change: its scrypt fingerprint is
compared, and computed only when the file itself changed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from monitor.credentials import SecretKind
from monitor.expiry.model import ExpirySource, PasswordDate
from monitor.state.store import StateError, StateStore

log = structlog.get_logger("bma_monitor.expiry")


@dataclass(frozen=True, slots=True)
class Accepted:
    """The CERBERE password a mailbox last had accepted."""

    address: str
    credential: str  # the file's identity (see runner.identity), never the secret
    fingerprint: str
    first_accepted_at: float
    changed_at: float | None  # None: the first password seen, whose change date is unknown

    def password_date(self) -> PasswordDate | None:
        """This observation as a source's word, where it dates a change."""
        if self.changed_at is None:
            return None
        changed = dt.datetime.fromtimestamp(self.changed_at, dt.UTC)
        return PasswordDate(self.address, ExpirySource.OBSERVED, changed_at=changed)


def load_accepted(store: StateStore) -> dict[str, Accepted]:
    """Every mailbox's last accepted CERBERE password, by address."""
    with store.reading() as db:
        rows = db.execute(
            "SELECT address, credential, fingerprint, first_accepted_at, changed_at "
            "FROM cerbere_accepted"
        ).fetchall()
    return {row[0]: Accepted(*row) for row in rows}


def save_accepted(store: StateStore, accepted: Accepted) -> None:
    """Keep a mailbox's last accepted CERBERE password."""
    store.write_many(
        "INSERT OR REPLACE INTO cerbere_accepted "
        "(address, credential, fingerprint, first_accepted_at, changed_at) VALUES (?, ?, ?, ?, ?)",
        [
            (
                accepted.address,
                accepted.credential,
                accepted.fingerprint,
                accepted.first_accepted_at,
                accepted.changed_at,
            )
        ],
    )


class ObservedChanges:
    """Dates CERBERE password changes from what SMTP AUTH accepts."""

    def __init__(self, store: StateStore) -> None:
        self._store = store
        self.accepted = load_accepted(store)

    async def password_accepted(
        self,
        address: str,
        credential: str,
        fingerprint: Callable[[], Awaitable[str]],
        now: float,
    ) -> None:
        """SMTP AUTH accepted this mailbox's CERBERE password (its file identity given;
        `fingerprint` computes the slow fingerprint, called only when the file changed)."""
        known = self.accepted.get(address)
        if known is not None and known.credential == credential:
            return  # the very file accepted before
        print_ = await fingerprint()
        if known is None:
            updated = Accepted(address, credential, print_, now, None)
        elif known.fingerprint == print_:
            updated = Accepted(
                address, credential, print_, known.first_accepted_at, known.changed_at
            )
        else:
            updated = Accepted(address, credential, print_, now, now)
            log.info(
                "password_change_observed",
                mailbox=address.split("@", 1)[0],
                changed_at=dt.datetime.fromtimestamp(now, dt.UTC).isoformat(),
            )
        self.accepted[address] = updated
        try:
            await asyncio.to_thread(save_accepted, self._store, updated)
        except StateError as exc:
            log.error("state_write_failed", error=str(exc))

    def password_dates(self) -> dict[str, PasswordDate]:
        """Every dated change observed, by address."""
        found = {a: accepted.password_date() for a, accepted in self.accepted.items()}
        return {address: date for address, date in found.items() if date is not None}


def cerbere_listener(
    observed: ObservedChanges, clock: Callable[[], float]
) -> Callable[[tuple[str, SecretKind], str, Callable[[], Awaitable[str]]], Awaitable[None]]:
    """The runner's `on_accepted` hook: tells `observed` of each CERBERE password accepted."""

    async def accepted(
        key: tuple[str, SecretKind], credential: str, fingerprint: Callable[[], Awaitable[str]]
    ) -> None:
        if key[1] is SecretKind.CERBERE:
            await observed.password_accepted(key[0], credential, fingerprint, clock())

    return accepted
