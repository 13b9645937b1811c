"""The directory job: reads each account's password dates on its own cadence.

A refused service bind is not tried again with the same password, across restarts too:
its scrypt fingerprint is kept in the state file, as mailbox lock-outs are, and only a
new password file lifts it. What a read gives is kept in the state file, so that a
directory down at start leaves no expiry unknown.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from monitor.config.expiry_model import LdapConfig
from monitor.config.model import Config
from monitor.credentials import CredentialMissing, CredentialStore
from monitor.expiry.directory_store import load_directory, save_directory
from monitor.expiry.ldap_errors import BindRefused, DirectoryUnavailable
from monitor.expiry.ldap_reader import DirectoryReader
from monitor.expiry.model import PasswordDate
from monitor.state.store import StateError, StateStore

log = structlog.get_logger("bma_monitor.directory")

REFUSED_KEY = "directory_bind_refused"  # the meta row of a refused service bind


@dataclass(frozen=True, slots=True)
class DirectoryHealth:
    """What the metrics show of the directory source."""

    last_success_at: float | None
    failures: dict[str, int]  # by reason: connect, timeout, tls, bind, search, policy...
    bind_refused: bool  # held back: the configured bind password was refused


class DirectoryJob:
    """Reads the directory every `interval`; the dates it gives are `dates`."""

    def __init__(
        self,
        config: Callable[[], Config],
        store: StateStore,
        credentials: Callable[[], CredentialStore],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._store = store
        self._credentials = credentials
        self._clock = clock
        self._reader = DirectoryReader()
        self._wake = asyncio.Event()
        self.dates: dict[str, PasswordDate] = load_directory(store)
        self._last_success_at: float | None = None
        self._failures: dict[str, int] = {}
        self._held = False

    def reconfigure(self) -> None:
        """Read again now: a reload may have changed the directory or its password."""
        self._wake.set()

    def health(self) -> DirectoryHealth:
        """A copy for the metrics."""
        return DirectoryHealth(self._last_success_at, dict(self._failures), self._held)

    async def run(self) -> None:
        """Read on the directory's cadence, forever (until cancelled)."""
        while True:
            ldap = self._config().expiry.sources.ldap
            if ldap is not None:
                try:
                    await self.read_once()
                except Exception:
                    # A bug here must not take the daemon down; the next read tries again.
                    log.exception("directory_read_crashed")
            wait = ldap.interval if ldap is not None else None
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def read_once(self) -> None:
        """One read, unless the configured password was refused before; never raises for
        the directory's faults (they are logged and counted)."""
        config = self._config()
        ldap = config.expiry.sources.ldap
        if ldap is None:
            return
        credentials = self._credentials()
        found = await asyncio.to_thread(credentials.lookup_named, ldap.bind_credential)
        if isinstance(found, CredentialMissing):
            self._failed("credential", found.detail)
            return
        fingerprint = await asyncio.to_thread(credentials.fingerprint, ldap.bind_credential, found)
        if self._refused_before(ldap, fingerprint):
            if not self._held:
                log.error(
                    "directory_bind_held",
                    bind_dn=ldap.bind_dn,
                    why="this password was refused before; change the credential file",
                )
            self._held = True
            return
        self._held = False
        addresses = [m.address for m in config.mailboxes]
        now = dt.datetime.fromtimestamp(self._clock(), dt.UTC)
        try:
            dates = await asyncio.to_thread(
                self._reader.read, ldap, found.secret, addresses, now=now
            )
        except BindRefused:
            self._held = True
            self._failed("bind", "the directory refused the service bind")
            await self._remember_refusal(ldap, fingerprint)
            return
        except DirectoryUnavailable as exc:
            self._failed(exc.reason, str(exc))
            return
        self.dates = dates
        self._last_success_at = self._clock()
        log.info("directory_read", accounts=len(dates), asked=len(addresses))
        try:
            await asyncio.to_thread(save_directory, self._store, dates, self._clock())
        except StateError as exc:
            log.error("state_write_failed", error=str(exc))

    def _failed(self, reason: str, detail: str) -> None:
        self._failures[reason] = self._failures.get(reason, 0) + 1
        log.error("directory_read_failed", reason=reason, detail=detail)

    def _refused_before(self, ldap: LdapConfig, fingerprint: str) -> bool:
        with self._store.reading() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (REFUSED_KEY,)).fetchone()
        if row is None:
            return False
        refused = json.loads(bytes(row[0]))
        return bool(refused == _refusal(ldap, fingerprint, refused.get("since", 0.0)))

    async def _remember_refusal(self, ldap: LdapConfig, fingerprint: str) -> None:
        value = json.dumps(_refusal(ldap, fingerprint, self._clock())).encode()
        try:
            await asyncio.to_thread(
                self._store.write_many,
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [(REFUSED_KEY, value)],
            )
        except StateError as exc:
            log.error("state_write_failed", error=str(exc))


def _refusal(ldap: LdapConfig, fingerprint: str, since: float) -> dict[str, object]:
    """What identifies a refused bind: where, as whom, and the password's fingerprint."""
    return {"url": ldap.url, "bind_dn": ldap.bind_dn, "fingerprint": fingerprint, "since": since}
