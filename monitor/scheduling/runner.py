"""One mailbox probe with its safety rules: credential, lock-out guard, probe, outcome.

Shared by the daemon's scheduler and the `probe` command, so that both refuse to retry
a credential the server has already refused, or one whose last attempt has no known
outcome yet.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace

import structlog

from monitor.config.model import Config, Mailbox
from monitor.credentials import Credential, CredentialMissing, CredentialStore, SecretKind
from monitor.probes.imap import UsagePlan, probe_imap, tls_context
from monitor.probes.result import ProbeResult, Protocol, Reason
from monitor.scheduling.login_guard import LoginGuard
from monitor.scheduling.login_policy import Outcome, Request, Rules, Verdict, outcome
from monitor.state.logins import Attempt, Key, Lockout
from monitor.state.store import StateStore

log = structlog.get_logger("bma_monitor.runner")


@dataclass(frozen=True, slots=True)
class LockedOut:
    """The probe was not attempted: the credential was refused before and has not changed."""

    lockout: Lockout


@dataclass(frozen=True, slots=True)
class Held:
    """The probe was not attempted: the last attempt with this credential has no known
    outcome (no answer after the secret was sent, or a crash), and the hold time runs."""

    attempt: Attempt
    until: float


Outcomes = ProbeResult | LockedOut | Held


class _NotSent(Exception):
    """Raised inside a probe, just before its secret would go out, when the guard says no."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(str(verdict))
        self.verdict = verdict


def guard_rules(config: Config) -> Rules:
    """The lock-out guard's waits, from the configuration."""
    probing = config.probing
    return Rules(hold=probing.unknown_outcome_hold, retry_after=probing.auth_retry_after)


class ProbeRunner:
    """Runs probes for mailboxes while never retrying a refused credential."""

    def __init__(
        self,
        config: Config,
        store: StateStore,
        credentials: CredentialStore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self.guard = LoginGuard(store, guard_rules(config))
        self._fingerprints: dict[str, tuple[tuple[object, ...], str]] = {}
        self.reconfigure(config, credentials)

    @property
    def lockouts(self) -> dict[Key, Lockout]:
        """Lock-outs in force, as this process knows them."""
        return self.guard.lockouts

    def reconfigure(self, config: Config, credentials: CredentialStore) -> None:
        """Use a new configuration from the next probe on."""
        self._config = config
        self._credentials = credentials
        self._contexts = {name: tls_context(server) for name, server in config.servers.items()}
        self.guard.rules = guard_rules(config)

    async def refresh_credentials(self, mailboxes: Iterable[Mailbox]) -> None:
        """Re-read every mailbox's secret in one batch, off the event loop."""
        addresses = [m.address for m in mailboxes]
        await asyncio.to_thread(self._credentials.refresh, addresses, SecretKind.IMAP)

    def context(self, server: str) -> ssl.SSLContext | None:
        """The TLS context for a configured server."""
        return self._contexts[server]

    async def run_guarded(
        self, mailbox: Mailbox, *, estimate_usage: bool, force: bool = False
    ) -> Outcomes:
        """`run`, where a bug or a runaway probe becomes a result, never a dead daemon."""
        started = self._clock()
        # The probe keeps its own deadlines; this outer one only catches a bug that ignores them.
        server = self._config.servers.get(mailbox.server)
        limit = self._config.probing.timeout + (server.command_timeout if server else 0) + 5
        try:
            async with asyncio.timeout(limit):
                return await self.run(mailbox, estimate_usage=estimate_usage, force=force)
        except TimeoutError:
            log.error("probe_overran", mailbox=mailbox.local_part, limit=limit)
            return ProbeResult(
                mailbox.address,
                Protocol.IMAP,
                Reason.TIMEOUT,
                started,
                detail="probe overran its deadline",
            )
        except Exception as exc:
            log.exception("probe_crashed", mailbox=mailbox.local_part)
            return ProbeResult(
                mailbox.address,
                Protocol.IMAP,
                Reason.INTERNAL_ERROR,
                started,
                detail=type(exc).__name__,
            )

    async def run(self, mailbox: Mailbox, *, estimate_usage: bool, force: bool = False) -> Outcomes:
        """Probe one mailbox unless the guard holds its credential back."""
        address = mailbox.address
        key = (address, Protocol.IMAP)
        lookup = self._credentials.cached(address, SecretKind.IMAP)
        if lookup is None or key in self.guard.lockouts or key in self.guard.attempts:
            # Never read yet, or held back: read it now, so a new secret unlocks at once.
            lookup = await asyncio.to_thread(
                self._credentials.lookup, address, SecretKind.IMAP, lookup
            )
        if isinstance(lookup, CredentialMissing):
            return ProbeResult(
                address,
                Protocol.IMAP,
                Reason.CREDENTIAL_MISSING,
                self._clock(),
                detail=lookup.detail,
            )
        request = Request(
            Attempt(address, Protocol.IMAP, identity(lookup), self._clock()), None, force
        )
        request, verdict = await self._verdict(request, lookup, self._precheck)
        if verdict is not Verdict.GO:
            return self._not_sent(key, verdict)
        if key in self.guard.lockouts and not force:
            lockout = self.guard.lockouts[key]
            if request.fingerprint != lockout.fingerprint:
                log.info("credential_changed", mailbox=mailbox.local_part, origin=lookup.origin)
                await self.guard.clear_lockout(key)
            else:
                log.info("lockout_retry", mailbox=mailbox.local_part, since=lockout.since)
        server = self._config.servers.get(mailbox.server)
        if server is None:  # a reload removed the server while this probe waited to start
            return ProbeResult(
                address,
                Protocol.IMAP,
                Reason.INTERNAL_ERROR,
                self._clock(),
                detail=f"server {mailbox.server!r} is no longer configured",
            )
        sent = False

        async def before_secret() -> None:
            nonlocal request, sent
            request, verdict = await self._verdict(request, lookup, self.guard.reserve)
            if verdict is not Verdict.GO:
                raise _NotSent(verdict)
            sent = True

        probing = self._config.probing
        try:
            result = await probe_imap(
                address,
                server,
                lookup.secret,
                context=self._contexts[mailbox.server],
                deadline=probing.timeout,
                usage=UsagePlan(estimate=estimate_usage, fetch_chunk=probing.quota_fetch_chunk),
                clock=self._clock,
                before_secret=before_secret,
            )
        except _NotSent as refused:  # another process locked or holds it meanwhile
            return self._not_sent(key, refused.verdict)
        if sent:
            await self._settle(key, result, lookup, mailbox)
        return result

    async def _settle(
        self, key: Key, result: ProbeResult, credential: Credential, mailbox: Mailbox
    ) -> None:
        """Record what became of an attempt whose secret was sent."""
        became = outcome(result)
        if became is Outcome.REFUSED:
            lockout = Lockout(
                address=key[0],
                protocol=key[1],
                reason=result.reason,
                since=self._clock(),
                fingerprint=await self._fingerprint(key[0], credential),
                detail=result.detail,
            )
            await self.guard.refused(lockout)
            return
        if became is Outcome.UNKNOWN:
            log.warning(
                "login_outcome_unknown",
                mailbox=mailbox.local_part,
                reason=str(result.reason),
                hold_seconds=self.guard.rules.hold,
            )
            return
        self.guard.resolved(key)
        if became is Outcome.ACCEPTED and key in self.guard.lockouts:
            await self.guard.clear_lockout(key)

    async def _verdict(
        self,
        request: Request,
        credential: Credential,
        ask: Callable[[Request], Awaitable[Verdict]],
    ) -> tuple[Request, Verdict]:
        """Ask for a verdict; where a lock-out needs the fingerprint, compute it and ask again."""
        verdict = await ask(request)
        if verdict is Verdict.NEEDS_FINGERPRINT:
            fingerprint = await self._fingerprint(request.attempt.address, credential)
            request = replace(request, fingerprint=fingerprint)
            verdict = await ask(request)
        return request, verdict

    async def _precheck(self, request: Request) -> Verdict:
        return self.guard.precheck(request)

    def _not_sent(self, key: Key, verdict: Verdict) -> LockedOut | Held:
        if verdict is Verdict.LOCKED:
            return LockedOut(self.guard.lockouts[key])
        attempt = self.guard.attempts[key]
        return Held(attempt, attempt.started_at + self.guard.rules.hold)

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


def identity(credential: Credential) -> str:
    """Where a secret came from and which version of that file: tells a replaced secret from
    the one an attempt used, without storing anything derived from the secret."""
    return f"{credential.origin}|{'.'.join(map(str, credential.version))}"
