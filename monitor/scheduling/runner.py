"""One probe of one mailbox over one protocol, with its safety rules: credential, lock-out
guard, probe, outcome.

Shared by the daemon's scheduler and the `probe` command, so that both refuse to retry
a credential the server has already refused, or one whose last attempt has no known
outcome yet. The guard keys on the credential, not the protocol: a mailbox password
refused over IMAP is not tried over POP3 either.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace

import structlog

from monitor.config.model import Config, Mailbox
from monitor.credentials import Credential, CredentialMissing, CredentialStore, SecretKind
from monitor.probes.contract import ProbeOptions
from monitor.probes.registry import PROBERS
from monitor.probes.result import ProbeResult, Protocol, Reason
from monitor.probes.tls import client_context
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


@dataclass(frozen=True, slots=True)
class NoCredential:
    """The probe was not attempted: its secret is optional (CERBERE) and this mailbox has
    none, so the mailbox is simply not probed over this protocol."""

    detail: str


Outcomes = ProbeResult | LockedOut | Held | NoCredential

# Told of each credential accepted: its key, its file identity, and how to compute its
# fingerprint (blocking, slow: the listener decides where and when, never on the probe).
Accepted = Callable[[Key, str, Callable[[], str]], None]

# Secrets a mailbox may lack without it being a fault: not every establishment's CERBERE
# password is known to the monitor, and without it SMTP is simply not probed.
OPTIONAL_SECRETS = frozenset({SecretKind.CERBERE})


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
        self._fingerprints: dict[Key, tuple[tuple[object, ...], str]] = {}
        self.on_accepted: Accepted | None = None
        # Dropped as soon as no probe holds or waits for it: thousands of mailboxes.
        self._in_use: weakref.WeakValueDictionary[Key, asyncio.Lock] = weakref.WeakValueDictionary()
        self.reconfigure(config, credentials)

    @property
    def lockouts(self) -> dict[Key, Lockout]:
        """Lock-outs in force, as this process knows them."""
        return self.guard.lockouts

    def reconfigure(self, config: Config, credentials: CredentialStore) -> None:
        """Use a new configuration from the next probe on."""
        self._config = config
        self._credentials = credentials
        self._contexts = {
            (name, protocol): client_context(endpoint)
            for name, server in config.servers.items()
            for protocol, endpoint in server.endpoints.items()
        }
        self.guard.rules = guard_rules(config)

    async def refresh_credentials(self, mailboxes: Iterable[Mailbox]) -> None:
        """Re-read every secret the mailboxes' protocols need, in one batch, off the event loop."""
        wanted: dict[SecretKind, list[str]] = {}
        for mailbox in mailboxes:
            for kind in {PROBERS[p].secret for p in mailbox.protocols}:
                wanted.setdefault(kind, []).append(mailbox.address)

        def refresh() -> None:
            for kind, addresses in wanted.items():
                self._credentials.refresh(addresses, kind)

        await asyncio.to_thread(refresh)

    def context(self, server: str, protocol: Protocol) -> ssl.SSLContext | None:
        """The TLS context for a configured endpoint."""
        return self._contexts.get((server, protocol))

    async def run_guarded(
        self,
        mailbox: Mailbox,
        protocol: Protocol,
        *,
        options: ProbeOptions,
        force: bool = False,
    ) -> Outcomes:
        """`run`, where a bug or a runaway probe becomes a result, never a dead daemon."""
        started = self._clock()
        # The probe keeps its own deadlines; this outer one only catches a bug that ignores them.
        server = self._config.servers.get(mailbox.server)
        endpoint = server.endpoint(protocol) if server else None
        limit = self._config.probing.timeout + (endpoint.command_timeout if endpoint else 0) + 5
        try:
            async with asyncio.timeout(limit):
                return await self.run(mailbox, protocol, options=options, force=force)
        except TimeoutError:
            log.error(
                "probe_overran", mailbox=mailbox.local_part, protocol=str(protocol), limit=limit
            )
            return ProbeResult(
                mailbox.address,
                protocol,
                Reason.TIMEOUT,
                started,
                detail="probe overran its deadline",
            )
        except Exception as exc:
            log.exception("probe_crashed", mailbox=mailbox.local_part, protocol=str(protocol))
            return ProbeResult(
                mailbox.address,
                protocol,
                Reason.INTERNAL_ERROR,
                started,
                detail=type(exc).__name__,
            )

    async def run(
        self,
        mailbox: Mailbox,
        protocol: Protocol,
        *,
        options: ProbeOptions,
        force: bool = False,
    ) -> Outcomes:
        """Probe one mailbox over one protocol unless the guard holds its credential back.

        One probe at a time per credential: IMAP and POP3 share the mailbox password, and
        the second must see what became of the first (accepted, refused, or no answer)
        rather than take the first's attempt in flight for one with no known outcome.
        """
        key = (mailbox.address, PROBERS[protocol].secret)
        lock = self._in_use.get(key)
        if lock is None:
            lock = self._in_use[key] = asyncio.Lock()
        async with lock:
            return await self._run_alone(mailbox, protocol, options=options, force=force)

    async def _run_alone(
        self,
        mailbox: Mailbox,
        protocol: Protocol,
        *,
        options: ProbeOptions,
        force: bool,
    ) -> Outcomes:
        address = mailbox.address
        prober = PROBERS[protocol]
        kind = prober.secret
        key = (address, kind)
        lookup = self._credentials.cached(address, kind)
        if lookup is None or key in self.guard.lockouts or key in self.guard.attempts:
            # Never read yet, or held back: read it now, so a new secret unlocks at once.
            lookup = await asyncio.to_thread(self._credentials.lookup, address, kind, lookup)
        if isinstance(lookup, CredentialMissing):
            if kind in OPTIONAL_SECRETS:
                return NoCredential(lookup.detail)
            return ProbeResult(
                address,
                protocol,
                Reason.CREDENTIAL_MISSING,
                self._clock(),
                detail=lookup.detail,
            )
        request = Request(
            Attempt(address, kind, protocol, identity(lookup), self._clock()), None, force
        )
        request, verdict = await self._verdict(request, lookup, self._precheck)
        if verdict is not Verdict.GO:
            return self._not_sent(key, verdict)
        if key in self.guard.lockouts and not force:
            lockout = self.guard.lockouts[key]
            if request.fingerprint != lockout.fingerprint:
                log.info(
                    "credential_changed",
                    mailbox=mailbox.local_part,
                    secret=str(kind),
                    origin=lookup.origin,
                )
                await self.guard.clear_lockout(key)
            else:
                log.info(
                    "lockout_retry",
                    mailbox=mailbox.local_part,
                    secret=str(kind),
                    since=lockout.since,
                )
        server = self._config.servers.get(mailbox.server)
        endpoint = server.endpoint(protocol) if server is not None else None
        if endpoint is None:  # a reload removed it while this probe waited to start
            return ProbeResult(
                address,
                protocol,
                Reason.INTERNAL_ERROR,
                self._clock(),
                detail=f"server {mailbox.server!r} has no {protocol} endpoint any more",
            )
        sent = False

        async def before_secret() -> None:
            nonlocal request, sent
            request, verdict = await self._verdict(request, lookup, self.guard.reserve)
            if verdict is not Verdict.GO:
                raise _NotSent(verdict)
            sent = True

        try:
            result = await prober.probe(
                endpoint,
                address,
                lookup.secret,
                context=self.context(mailbox.server, protocol),
                deadline=self._config.probing.timeout,
                clock=self._clock,
                before_secret=before_secret,
                options=options,
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
                secret=key[1],
                protocol=result.protocol,
                reason=result.reason,
                since=self._clock(),
                fingerprint=await self._fingerprint(key, credential),
                detail=result.detail,
            )
            await self.guard.refused(lockout)
            return
        if became is Outcome.UNKNOWN:
            log.warning(
                "login_outcome_unknown",
                mailbox=mailbox.local_part,
                protocol=str(result.protocol),
                reason=str(result.reason),
                hold_seconds=self.guard.rules.hold,
            )
            return
        self.guard.resolved(key)
        if became is Outcome.ACCEPTED and key in self.guard.lockouts:
            await self.guard.clear_lockout(key)
        if became is Outcome.ACCEPTED and self.on_accepted is not None:
            fingerprint = functools.partial(self._credentials.fingerprint, key[0], credential)
            self.on_accepted(key, identity(credential), fingerprint)

    async def _verdict(
        self,
        request: Request,
        credential: Credential,
        ask: Callable[[Request], Awaitable[Verdict]],
    ) -> tuple[Request, Verdict]:
        """Ask for a verdict; where a lock-out needs the fingerprint, compute it and ask again."""
        verdict = await ask(request)
        if verdict is Verdict.NEEDS_FINGERPRINT:
            fingerprint = await self._fingerprint(request.attempt.key, credential)
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

    async def _fingerprint(self, key: Key, credential: Credential) -> str:
        """The credential's fingerprint; scrypt is slow, so it runs only when the secret changed."""
        # An in-memory identity of the secret, never stored: cheap to compare on every due time.
        identity = (credential.origin, credential.version, hash(credential.secret))
        cached = self._fingerprints.get(key)
        if cached is not None and cached[0] == identity:
            return cached[1]
        fingerprint = await asyncio.to_thread(self._credentials.fingerprint, key[0], credential)
        self._fingerprints[key] = (identity, fingerprint)
        return fingerprint


def identity(credential: Credential) -> str:
    """Where a secret came from and which version of that file: tells a replaced secret from
    the one an attempt used, without storing anything derived from the secret."""
    return f"{credential.origin}|{'.'.join(map(str, credential.version))}"
