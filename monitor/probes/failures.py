"""Transport failures, alike for every protocol: the one place they become reasons."""

from __future__ import annotations

import socket
import ssl

from monitor.probes.result import Reason


def transport_failure(exc: BaseException, phase: str | None) -> tuple[Reason, str] | None:
    """The reason and detail of a timeout, TLS or network error; None for anything else.

    A protocol checks its own errors first where they subclass ConnectionError.
    """
    where = f" during {phase}" if phase else ""
    if isinstance(exc, TimeoutError):
        return Reason.TIMEOUT, f"no answer{where}"
    # OpenSSL sets `verify_message` and `reason`; an SSLError raised elsewhere lacks them.
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = getattr(exc, "verify_message", None) or "verification failed"
        return Reason.TLS_ERROR, f"certificate not trusted: {why}"
    if isinstance(exc, ssl.SSLError):
        return (
            Reason.TLS_ERROR,
            f"TLS failed{where}: {getattr(exc, 'reason', None) or type(exc).__name__}",
        )
    if isinstance(exc, ConnectionRefusedError):
        return Reason.CONNECT_REFUSED, "connection refused"
    if isinstance(exc, socket.gaierror):
        return Reason.DNS_ERROR, f"name resolution failed: {exc.strerror}"
    if isinstance(exc, ConnectionError | EOFError):
        return Reason.CONNECTION_CLOSED, f"connection closed{where}"
    if isinstance(exc, OSError):
        return Reason.CONNECT_REFUSED, f"network error{where}: {exc.strerror or type(exc).__name__}"
    return None
