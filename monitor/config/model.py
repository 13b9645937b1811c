"""The configuration as typed, frozen values; every default lives here."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from monitor.config.errors import shown
from monitor.config.values import (
    DAY,
    GIB,
    HOUR,
    MIB,
    MINUTE,
    MS,
    SECOND,
    TIB,
    duration,
    number,
    size,
    usable_path,
    whole,
)

DEFAULT_DOMAIN = "adm.cfwb.be"
TWO_GIB = 2 * GIB

# A path setting is refused at load when the system could not open it (too long, NUL).
ConfigPath = Annotated[Path, AfterValidator(usable_path)]

_LISTEN = re.compile(r"^(?P<host>\[[0-9a-fA-F:.]+\]|[^:\[\]\s]+):(?P<port>\d{1,5})$")

# Every number a setting takes has a range, written next to its default below. The ranges
# are wide enough for any fleet we can picture and narrow enough to catch a slip (a
# timeout in ms written as seconds, `.inf`, a rate of 1e-300 that would never probe, an
# interval longer than a day, which no longer watches a mailbox).


class FrozenModel(BaseModel):
    """Base of every config section: immutable, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class TlsMode(StrEnum):
    """How the connection to a server is protected."""

    IMPLICIT = "implicit"
    STARTTLS = "starttls"
    NONE = "none"


class Kind(StrEnum):
    """Establishment (`ec`) or organising body (`po`)."""

    EC = "ec"
    PO = "po"


class ServerConfig(FrozenModel):
    """One IMAP endpoint."""

    host: str = Field(min_length=1, max_length=253)  # 253: the longest DNS name
    port: Annotated[int, whole(1, 65535)] = 993
    tls: TlsMode = TlsMode.IMPLICIT
    ca_file: ConfigPath | None = None  # None: the system's trusted CAs
    # Certificate name when it differs from host.
    tls_server_name: str | None = Field(default=None, min_length=1, max_length=253)
    connect_timeout: Annotated[float, duration(100 * MS, 10 * MINUTE)] = 10.0
    command_timeout: Annotated[float, duration(100 * MS, HOUR)] = 30.0
    # Exchange caps connections per source IP.
    max_connections: Annotated[int, whole(1, 1000)] = 20


class OutageConfig(FrozenModel):
    """When a server counts as down, and how gently it is tried again."""

    window: Annotated[float, duration(SECOND, DAY)] = 120.0
    min_probes: Annotated[int, whole(1, 10_000)] = 5
    failure_ratio: Annotated[float, number(0.01, 1)] = 0.8
    backoff_initial: Annotated[float, duration(100 * MS, DAY)] = 15.0
    backoff_max: Annotated[float, duration(100 * MS, DAY)] = 600.0

    @model_validator(mode="after")
    def _backoff_order(self) -> OutageConfig:
        if self.backoff_max < self.backoff_initial:
            raise ValueError("backoff_max must not be shorter than backoff_initial")
        return self


class ProbingConfig(FrozenModel):
    """How often and how hard mailboxes are probed."""

    interval: Annotated[float, duration(SECOND, DAY)] = 300.0
    jitter: Annotated[float, number(0, 1)] = 0.2  # share of a mailbox's slot
    timeout: Annotated[float, duration(100 * MS, HOUR)] = 60.0  # deadline for a whole probe
    concurrency: Annotated[int, whole(1, 1000)] = 50
    # Probes started per second. Under 0.01/s (one every 100 s) it is surely a slip.
    rate_limit: Annotated[float, number(0.01, 10_000, zero_means="no limit")] = 20.0
    quota_estimate_interval: Annotated[float, duration(MINUTE, 30 * DAY)] = 6 * HOUR
    quota_fetch_chunk: Annotated[int, whole(1, 500)] = 250
    # None: only a new credential unlocks. Under an hour, a wrong password would be retried
    # often enough to lock the account, which is what this setting exists to prevent.
    auth_retry_after: Annotated[float | None, duration(HOUR, 365 * DAY, optional=True)] = 7 * DAY
    # After a login whose password was sent but whose outcome is unknown (no answer, a
    # crash): longer than a directory's lock-out observation window, so such attempts
    # cannot add up to a lock-out. Under 5 minutes it would not protect anything.
    unknown_outcome_hold: Annotated[float, duration(5 * MINUTE, 7 * DAY)] = HOUR
    outage: OutageConfig = OutageConfig()

    @model_validator(mode="after")
    def _timeout_fits(self) -> ProbingConfig:
        if self.timeout >= self.interval:
            raise ValueError("timeout must be shorter than interval")
        return self


class QuotaConfig(FrozenModel):
    """The limit assumed where the server gives none, and the alerting thresholds."""

    default_limit: Annotated[ByteSize, size(MIB, TIB)] = ByteSize(TWO_GIB)
    warning_ratio: Annotated[float, number(0.01, 1)] = 0.85
    critical_ratio: Annotated[float, number(0.01, 1)] = 0.95

    @model_validator(mode="after")
    def _ratios_order(self) -> QuotaConfig:
        if self.critical_ratio < self.warning_ratio:
            raise ValueError("critical_ratio must not be below warning_ratio")
        return self


class CredentialsConfig(FrozenModel):
    """Where secrets come from; never the configuration itself."""

    directory: ConfigPath | None = None  # None: $CREDENTIALS_DIRECTORY when systemd sets it
    env_prefix: str = Field(default="BMA_SECRET_", max_length=64, pattern=r"^[A-Z_][A-Z0-9_]*$")


class StateConfig(FrozenModel):
    """The embedded database that survives restarts."""

    path: ConfigPath = Path("/var/lib/bma-monitor/state.db")


class HttpConfig(FrozenModel):
    """The metrics and health endpoint."""

    listen: str = "127.0.0.1:9834"  # port 0: any free port

    @field_validator("listen")
    @classmethod
    def _host_and_port(cls, value: str) -> str:
        match = _LISTEN.match(value)
        if not match or int(match["port"]) > 65535:
            raise ValueError(
                "must be host:port with a port from 0 to 65535, "
                f"e.g. 127.0.0.1:9834 or [::1]:9834 (got {shown(value)})"
            )
        return value

    @property
    def host(self) -> str:
        """The address to bind."""
        return self.listen.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        """The port to bind."""
        return int(self.listen.rsplit(":", 1)[1])


class LoggingConfig(FrozenModel):
    """Log level and rendering."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


@dataclass(frozen=True, slots=True)
class Mailbox:
    """One BMA as the inventory lists it, already checked (a plain dataclass: there are
    thousands, and a validated model costs ten times the memory)."""

    address: str
    kind: Kind
    fase: str
    server: str
    name: str = ""
    contact: str = ""

    @property
    def local_part(self) -> str:
        """The address before `@`, e.g. `ec001234`; the metric label."""
        return self.address.split("@", 1)[0]


@dataclass(frozen=True)
class Config:
    """The whole validated configuration, assembled by the loader."""

    source: Path
    domain: str
    servers: dict[str, ServerConfig]
    default_server: str
    probing: ProbingConfig
    quota: QuotaConfig
    credentials: CredentialsConfig
    state: StateConfig
    http: HttpConfig
    logging: LoggingConfig
    mailboxes: tuple[Mailbox, ...]
