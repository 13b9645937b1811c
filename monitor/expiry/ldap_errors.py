"""What can go wrong reading the directory; no exception here ever carries the password."""

from __future__ import annotations

from enum import StrEnum

from monitor.credentials import Secret


class UnavailableReason(StrEnum):
    """Why the directory gave no dates this time (worth trying again next interval)."""

    CONNECT = "connect"  # refused, unreachable, or the connection dropped
    TIMEOUT = "timeout"  # no answer within the configured timeout
    TLS = "tls"  # handshake or certificate check failed
    BIND = "bind"  # the bind failed for another reason than a wrong password
    SEARCH = "search"  # a search was refused or failed
    POLICY = "policy"  # the ppolicy entry (policy_dn) cannot be read


class DirectoryError(Exception):
    """The directory gave no dates."""


class BindRefused(DirectoryError, PermissionError):
    """The directory refused the service bind's password (result 49, invalidCredentials).

    Retrying the same password could lock the service account out (ppolicy's pwdMaxFailure,
    AD's lockout threshold): DirectoryReader tries it once, then waits for a new one.
    `attempted` is False when this refusal is remembered, not freshly received.
    """

    def __init__(self, detail: str = "", *, attempted: bool = True) -> None:
        self.detail = detail
        self.attempted = attempted
        told = "refused" if attempted else "refused before; not retried until it changes"
        super().__init__(f"service bind password {told}" + (f" ({detail})" if detail else ""))


class DirectoryUnavailable(DirectoryError, ConnectionError):
    """The directory could not be reached, answered late, or refused a search."""

    def __init__(self, reason: UnavailableReason, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"directory unavailable ({reason}): {detail}")


def scrubbed(text: str, password: Secret) -> str:
    """`text` without the password, should a library have echoed it."""
    secret = password.reveal()
    return text.replace(secret, "********") if secret else text
