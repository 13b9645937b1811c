"""One mailbox probe with its safety rules: credential, lock-out check, probe, lock-out update.

Shared by the daemon's scheduler and the `probe` command, so that both refuse to retry
a credential the server has already refused.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import structlog

from monitor.config.model import Config, Mailbox
from monitor.credentials import Credential, CredentialMissing, CredentialStore, SecretKind
from monitor.probes.imap import UsagePlan, probe_imap, tls_context
from monitor.probes.result import ProbeResult, Protocol, Reason
from monitor.state.store import Lockout, StateError, StateStore

log = structlog.get_logger("bma_monitor.runner")


@dataclass(frozen=True, slots=True)
class LockedOut:
    """The probe was not attempted: the credential was refused before and has not changed."""

    lockout: Lockout


class ProbeRunner:
    """Runs probes for mailboxes while never retrying a refused credential."""

    def __init__(
        self,
        config: Config,
        store: StateStore,
        credentials: CredentialStore,
        lockouts: dict[tuple[str, Protocol], Lockout],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._clock = clock
        self.lockouts = lockouts
        self._fingerprints: dict[str, tuple[tuple[object, ...], str]] = {}
        self.reconfigure(config, credentials)

    def reconfigure(self, config: Config, credentials: CredentialStore) -> None:
        """Use a new configuration from the next probe on."""
        self._config = config
        self._credentials = credentials
        self._contexts = {name: tls_context(server) for name, server in config.servers.items()}

    async def refresh_credentials(self, mailboxes: Iterable[Mailbox]) -> None:
        """Re-read every mailbox's secret in one batch, off the event loop."""
        addresses = [m.address for m in mailboxes]
        await asyncio.to_thread(self._credentials.refresh, addresses, SecretKind.IMAP)

    def context(self, server: str) -> ssl.SSLContext | None:
        """The TLS context for a configured server."""
        return self._contexts[server]

    async def run(
        self, mailbox: Mailbox, *, estimate_usage: bool, force: bool = False
    ) -> ProbeResult | LockedOut:
        """Probe one mailbox unless its credential is locked out."""
        address = mailbox.address
        key = (address, Protocol.IMAP)
        lookup = self._credentials.cached(address, SecretKind.IMAP)
        if lookup is None or key in self.lockouts:
            # Never read yet, or locked out: read it now, so a new secret unlocks at once.
            lookup = await asyncio.to_thread(
                self._credentials.lookup, address, SecretKind.IMAP, lookup
            )
        if isinstance(lookup, CredentialMissing):
            return ProbeResult(
                address=address,
                protocol=Protocol.IMAP,
                reason=Reason.CREDENTIAL_MISSING,
                started_at=self._clock(),
                detail=lookup.detail,
            )
        lockout = self.lockouts.get(key)
        if lockout is not None and not force:
            if await self._fingerprint(address, lookup) != lockout.fingerprint:
                log.info("credential_changed", mailbox=mailbox.local_part, origin=lookup.origin)
                await self._clear(key)
            elif not self._retry_due(lockout):
                return LockedOut(lockout)
            else:
                log.info("lockout_retry", mailbox=mailbox.local_part, since=lockout.since)
        probing = self._config.probing
        server = self._config.servers.get(mailbox.server)
        if server is None:  # a reload removed the server while this probe waited to start
            return ProbeResult(
                address,
                Protocol.IMAP,
                Reason.INTERNAL_ERROR,
                self._clock(),
                detail=f"server {mailbox.server!r} is no longer configured",
            )
        result = await probe_imap(
            address,
            server,
            lookup.secret,
            context=self._contexts[mailbox.server],
            deadline=probing.timeout,
            usage=UsagePlan(estimate=estimate_usage, fetch_chunk=probing.quota_fetch_chunk),
            clock=self._clock,
        )
        if result.reason.is_definitive_auth_failure:
            await self._lock(key, result, lookup)
        elif result.login_ok and key in self.lockouts:
            await self._clear(key)
        return result

    def _retry_due(self, lockout: Lockout) -> bool:
        retry_after = self._config.probing.auth_retry_after
        return retry_after is not None and self._clock() - lockout.since >= retry_after

    async def _lock(
        self, key: tuple[str, Protocol], result: ProbeResult, credential: Credential
    ) -> None:
        lockout = Lockout(
            address=key[0],
            protocol=key[1],
            reason=result.reason,
            since=self._clock(),
            fingerprint=await self._fingerprint(key[0], credential),
            detail=result.detail,
        )
        self.lockouts[key] = lockout
        try:
            await asyncio.to_thread(self._store.save_lockout, lockout)
        except StateError as exc:
            # Still locked in memory; only a restart before the file is writable could retry.
            log.error("lockout_not_saved", mailbox=key[0].split("@")[0], error=str(exc))

    async def _clear(self, key: tuple[str, Protocol]) -> None:
        self.lockouts.pop(key, None)
        try:
            await asyncio.to_thread(self._store.clear_lockout, *key)
        except StateError as exc:
            log.error("lockout_not_cleared", mailbox=key[0].split("@")[0], error=str(exc))

    async def _fingerprint(self, address: str, credential: Credential) -> str:
        """The credential's fingerprint; scrypt is slow, so it runs only when the secret changed."""
        # An in-memory identity of the secret, never stored: cheap to compare on every due time.
        identity = (credential.origin, credential.version, hash(credential.secret))
        cached = self._fingerprints.get(address)
        if cached is not None and cached[0] == identity:
            return cached[1]
        fingerprint = await asyncio.to_thread(self._credentials.fingerprint, address, credential)
        self._fingerprints[address] = (identity, fingerprint)
        return fingerprint
