"""The probe contract every protocol module fulfils, as blackbox_exporter's probers do.

A protocol module exposes one `Prober`: an async probe of one mailbox with one secret, a
credential-free check of its server, and the facts the daemon needs to treat its results
without knowing the protocol (its phases, the phase that sends the secret, which secret).
Server faults come back as a `ProbeResult` with a reason; only a bug raises.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol as Interface

from monitor.config.model import EndpointConfig
from monitor.credentials import Secret, SecretKind
from monitor.probes.result import CONNECT, GREETING, TLS, ProbeResult, Protocol

Clock = Callable[[], float]
BeforeSecret = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ProbeOptions:
    """What the scheduler asks of a probe besides the login; a protocol reads what it knows."""

    estimate_usage: bool = False  # IMAP: sum folder sizes where the server has no QUOTA
    fetch_chunk: int = 250  # IMAP: messages per FETCH when summing sizes


class ProbeFunction(Interface):
    """Log in to one mailbox and measure what the protocol can; failures are reasons.

    `before_secret` is awaited just before the secret is sent; what it raises (the lock-out
    guard's refusal) ends the probe without sending it and must not be caught.
    """

    def __call__(
        self,
        endpoint: EndpointConfig,
        address: str,
        secret: Secret,
        *,
        context: ssl.SSLContext | None,
        deadline: float,
        clock: Clock,
        before_secret: BeforeSecret | None,
        options: ProbeOptions,
    ) -> Awaitable[ProbeResult]: ...


class CheckFunction(Interface):
    """Connect, secure and read the greeting with no credential: is the server there at all?"""

    def __call__(
        self,
        endpoint: EndpointConfig,
        *,
        context: ssl.SSLContext | None,
        deadline: float,
        clock: Clock,
    ) -> Awaitable[ProbeResult]: ...


@dataclass(frozen=True, slots=True)
class Prober:
    """One protocol, as the registry lists it."""

    protocol: Protocol
    secret: SecretKind  # which of the mailbox's passwords it sends
    probe: ProbeFunction
    check: CheckFunction
    phases: tuple[str, ...]  # every phase it may time, in order
    auth_phase: str  # the phase that sends the secret
    # Phases before any credential: a failure there is the server's, not the mailbox's.
    reach_phases: frozenset[str] = frozenset({CONNECT, TLS, GREETING})
