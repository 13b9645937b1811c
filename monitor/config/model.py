"""The configuration as typed, frozen values; every default lives here."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ByteSize,
    ConfigDict,
    Field,
    model_validator,
)

DEFAULT_DOMAIN = "adm.cfwb.be"
TWO_GIB = 2 * 1024**3

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> Any:
    """Read `90`, `90s`, `5m`, `6h` or `7d` as seconds; leave other values for the type check."""
    if isinstance(value, bool):
        raise ValueError("must be a duration like 30s, 5m or 6h, not a boolean")
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"must be a duration like 30s, 5m or 6h (got {value!r})")
        return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    return value


Seconds = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]


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

    host: str = Field(min_length=1)
    port: int = Field(default=993, ge=1, le=65535)
    tls: TlsMode = TlsMode.IMPLICIT
    ca_file: Path | None = None  # None: the system's trusted CAs
    tls_server_name: str | None = None  # certificate name when it differs from host
    connect_timeout: Seconds = 10.0
    command_timeout: Seconds = 30.0
    max_connections: int = Field(default=20, ge=1)  # Exchange caps connections per source IP


class OutageConfig(FrozenModel):
    """When a server counts as down, and how gently it is tried again."""

    window: Seconds = 120.0
    min_probes: int = Field(default=5, ge=1)
    failure_ratio: float = Field(default=0.8, gt=0, le=1)
    backoff_initial: Seconds = 15.0
    backoff_max: Seconds = 600.0

    @model_validator(mode="after")
    def _backoff_order(self) -> OutageConfig:
        if self.backoff_max < self.backoff_initial:
            raise ValueError("backoff_max must not be shorter than backoff_initial")
        return self


class ProbingConfig(FrozenModel):
    """How often and how hard mailboxes are probed."""

    interval: Seconds = 300.0
    jitter: float = Field(default=0.2, ge=0, le=1)  # share of a mailbox's slot
    timeout: Seconds = 60.0  # deadline for a whole probe
    concurrency: int = Field(default=50, ge=1)
    rate_limit: float = Field(default=20.0, ge=0)  # probes per second, 0 for none
    quota_estimate_interval: Seconds = 21600.0
    quota_fetch_chunk: int = Field(default=250, ge=1, le=500)
    auth_retry_after: Seconds | None = 7 * 86400.0  # None: only a new credential unlocks
    # After a login whose secret was sent but whose outcome is unknown (no answer, crash):
    # longer than a directory's lock-out observation window, so it cannot add up.
    unknown_outcome_hold: Seconds = 3600.0
    outage: OutageConfig = OutageConfig()

    @model_validator(mode="after")
    def _timeout_fits(self) -> ProbingConfig:
        if self.timeout >= self.interval:
            raise ValueError("timeout must be shorter than interval")
        return self


class QuotaConfig(FrozenModel):
    """The limit assumed where the server gives none, and the alerting thresholds."""

    default_limit: ByteSize = ByteSize(TWO_GIB)
    warning_ratio: float = Field(default=0.85, gt=0, le=1)
    critical_ratio: float = Field(default=0.95, gt=0, le=1)

    @model_validator(mode="after")
    def _ratios_order(self) -> QuotaConfig:
        if self.critical_ratio < self.warning_ratio:
            raise ValueError("critical_ratio must not be below warning_ratio")
        return self


class CredentialsConfig(FrozenModel):
    """Where secrets come from; never the configuration itself."""

    directory: Path | None = None  # None: $CREDENTIALS_DIRECTORY when systemd sets it
    env_prefix: str = Field(default="BMA_SECRET_", pattern=r"^[A-Z_][A-Z0-9_]*$")


class StateConfig(FrozenModel):
    """The embedded database that survives restarts."""

    path: Path = Path("/var/lib/bma-monitor/state.db")


class HttpConfig(FrozenModel):
    """The metrics and health endpoint."""

    listen: str = Field(default="127.0.0.1:9834", pattern=r"^(\[[0-9a-fA-F:]+\]|[^:\s]+):\d{1,5}$")

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
