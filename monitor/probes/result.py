"""What a probe found: closed vocabularies and the immutable result of one probe."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Protocol(StrEnum):
    """Protocols a probe speaks; each has its module and an entry in the registry."""

    IMAP = "imap"
    POP3 = "pop3"
    SMTP = "smtp"  # SMTP AUTH on the submission server, with the CERBERE password


# Phases are each protocol's own (its module lists them in its Prober); these names are
# shared so that outage detection and dashboards read "connect" the same everywhere.
CONNECT = "connect"
TLS = "tls"
GREETING = "greeting"


class Reason(StrEnum):
    """Why a probe ended as it did; `ok` for success, one cause otherwise."""

    OK = "ok"
    DNS_ERROR = "dns_error"
    CONNECT_REFUSED = "connect_refused"
    CONNECTION_CLOSED = "connection_closed"
    TIMEOUT = "timeout"
    TLS_ERROR = "tls_error"
    AUTH_FAILED = "auth_failed"
    PASSWORD_EXPIRED = "password_expired"
    ACCOUNT_DISABLED = "account_disabled"
    SERVER_ERROR = "server_error"
    PROTOCOL_ERROR = "protocol_error"
    # POP3 (RFC 3206): the mailbox is locked by the school's own client downloading, or
    # logins are rate-limited. The server answered: not an outage, not a refused password.
    IN_USE = "in_use"
    LOGIN_DELAY = "login_delay"
    # SMTP 534: the server wants another mechanism; says nothing about the password.
    AUTH_MECHANISM_REFUSED = "auth_mechanism_refused"
    CREDENTIAL_MISSING = "credential_missing"
    INTERNAL_ERROR = "internal_error"  # a bug in the monitor, logged with its traceback

    @property
    def is_definitive_auth_failure(self) -> bool:
        """True when retrying with the same credential can only count against the account."""
        return self in _DEFINITIVE_AUTH_FAILURES

    @property
    def is_transport_failure(self) -> bool:
        """True when the server could not be reached or spoken to at all."""
        return self in _TRANSPORT_FAILURES


_DEFINITIVE_AUTH_FAILURES = frozenset(
    {Reason.AUTH_FAILED, Reason.PASSWORD_EXPIRED, Reason.ACCOUNT_DISABLED}
)
_TRANSPORT_FAILURES = frozenset(
    {
        Reason.DNS_ERROR,
        Reason.CONNECT_REFUSED,
        Reason.CONNECTION_CLOSED,
        Reason.TIMEOUT,
        Reason.TLS_ERROR,
    }
)


class QuotaSource(StrEnum):
    """Where a quota reading came from."""

    IMAP_QUOTA = "imap_quota"  # RFC 2087 GETQUOTAROOT
    STATUS_SIZE = "status_size"  # RFC 8438 STATUS (SIZE) summed over folders
    MESSAGE_SIZES = "message_sizes"  # RFC822.SIZE summed over every message
    POP3_STAT = "pop3_stat"  # POP3 STAT octets: the inbox only, other folders not counted

    @property
    def rank(self) -> int:
        """How much of the mailbox the reading covers; a lower rank never replaces a higher."""
        return _SOURCE_RANK[self]


# The server's own QUOTA figure beats a whole-mailbox sum, which beats the inbox alone.
_SOURCE_RANK = {
    QuotaSource.IMAP_QUOTA: 2,
    QuotaSource.STATUS_SIZE: 1,
    QuotaSource.MESSAGE_SIZES: 1,
    QuotaSource.POP3_STAT: 0,
}


@dataclass(frozen=True, slots=True)
class TlsFacts:
    """What a probe's TLS handshake showed of the endpoint."""

    version: str  # e.g. "TLSv1.3"
    cert_not_after: float | None  # Unix time the first certificate of the chain expires


@dataclass(frozen=True, slots=True)
class QuotaReading:
    """Mailbox usage and the limit it is measured against."""

    used_bytes: int
    limit_bytes: int | None  # None: the server sets no storage limit
    source: QuotaSource
    measured_at: float  # Unix time
    messages: int | None = None


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The outcome of one probe of one mailbox; failures are data, not exceptions."""

    address: str
    protocol: Protocol
    reason: Reason
    started_at: float  # Unix time
    durations: dict[str, float] = field(default_factory=dict)  # by phase, in order reached
    failed_phase: str | None = None  # where a failure happened
    detail: str = ""  # server text or error class, never a secret
    quota: QuotaReading | None = None
    quota_error: str = ""  # login succeeded but the quota could not be read
    tls: TlsFacts | None = None  # None: no TLS, or the handshake did not complete

    @property
    def login_ok(self) -> bool:
        """Whether the mailbox accepted its credential."""
        return self.reason is Reason.OK

    @property
    def total_seconds(self) -> float:
        """Time spent over all phases."""
        return sum(self.durations.values())
