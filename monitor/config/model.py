"""The configuration as typed, frozen values; every default lives here."""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from monitor.config.errors import shown
from monitor.config.shards import Shard, Sharding
from monitor.config.values import (
    DAY,
    GIB,
    HOUR,
    MINUTE,
    MS,
    SECOND,
    duration,
    format_duration,
    number,
    usable_path,
    whole,
)
from monitor.probes.result import Protocol

if TYPE_CHECKING:
    from monitor.config.expiry_model import ExpiryConfig, NotifyConfig
    from monitor.config.fullness_model import CanaryConfig, QuotaConfig, QuotaTiers

DEFAULT_DOMAIN = "adm.cfwb.be"
TWO_GIB = 2 * GIB

# A path setting is refused at load when the system could not open it (too long, NUL).
ConfigPath = Annotated[Path, AfterValidator(usable_path)]

_LISTEN = re.compile(r"^(?P<host>\[[0-9a-fA-F:.]+\]|[^:\[\]\s]+):(?P<port>\d{1,5})$")
# Between the protocols of a CSV cell: not `,`, which would need the cell quoted.
_PROTOCOL_SEPARATORS = re.compile(r"[\s;|]+")

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


# Where a port is not given: the protocol's registered port for its TLS mode.
DEFAULT_PORTS: dict[Protocol, dict[TlsMode, int]] = {
    Protocol.IMAP: {TlsMode.IMPLICIT: 993, TlsMode.STARTTLS: 143, TlsMode.NONE: 143},
    Protocol.POP3: {TlsMode.IMPLICIT: 995, TlsMode.STARTTLS: 110, TlsMode.NONE: 110},
    # 465: submission over implicit TLS (the set-up guide's); 587: STARTTLS (Exchange's).
    Protocol.SMTP: {TlsMode.IMPLICIT: 465, TlsMode.STARTTLS: 587, TlsMode.NONE: 587},
}


class EndpointConfig(FrozenModel):
    """Where and how one protocol of a server is reached."""

    host: str = Field(min_length=1, max_length=253)  # 253: the longest DNS name
    port: Annotated[int, whole(1, 65535)] = 0  # 0: the protocol's port for the TLS mode
    tls: TlsMode = TlsMode.IMPLICIT
    ca_file: ConfigPath | None = None  # None: the system's trusted CAs
    # Certificate name when it differs from host.
    tls_server_name: str | None = Field(default=None, min_length=1, max_length=253)
    connect_timeout: Annotated[float, duration(100 * MS, 10 * MINUTE)] = 10.0
    command_timeout: Annotated[float, duration(100 * MS, HOUR)] = 30.0
    # Exchange caps connections per source IP.
    max_connections: Annotated[int, whole(1, 1000)] = 20


_ENDPOINT_KEYS = frozenset(EndpointConfig.model_fields)


class ServerConfig(FrozenModel):
    """One mail service (the `server` label): an endpoint for each protocol it offers."""

    imap: EndpointConfig | None = None
    pop3: EndpointConfig | None = None
    smtp: EndpointConfig | None = None  # the submission server, which takes CERBERE passwords

    @model_validator(mode="before")
    @classmethod
    def _settings_under_protocol(cls, data: object) -> object:
        # A file may write an IMAP-only server flat (the loader moves it under `imap:`);
        # beside a protocol section, flat settings would be ambiguous.
        if not isinstance(data, dict) or not _ENDPOINT_KEYS & set(data):
            return data
        keys = ", ".join(sorted(_ENDPOINT_KEYS & set(data)))
        sections = [str(p) for p in Protocol if str(p) in data]
        if sections:
            raise ValueError(
                f"{keys} beside {', '.join(sections)}: once a server has a protocol section, "
                "endpoint settings go under their protocol (imap:, pop3:, smtp:)"
            )
        raise ValueError(
            f"{keys}: endpoint settings go under the protocol, e.g. imap: {{host: ...}}"
        )

    @field_validator("imap", "pop3", "smtp")
    @classmethod
    def _default_port(
        cls, endpoint: EndpointConfig | None, info: ValidationInfo
    ) -> EndpointConfig | None:
        if endpoint is None or endpoint.port != 0:
            return endpoint
        port = DEFAULT_PORTS[Protocol(str(info.field_name))][endpoint.tls]
        return endpoint.model_copy(update={"port": port})

    @model_validator(mode="after")
    def _some_endpoint(self) -> ServerConfig:
        if not self.endpoints:
            raise ValueError("needs at least one endpoint: imap, pop3 or smtp")
        return self

    @property
    def endpoints(self) -> dict[Protocol, EndpointConfig]:
        """The endpoints configured, by protocol."""
        found = {p: getattr(self, str(p)) for p in Protocol}
        return {p: e for p, e in found.items() if e is not None}

    def endpoint(self, protocol: Protocol) -> EndpointConfig | None:
        """The endpoint of one protocol, if the server offers it."""
        return getattr(self, str(protocol), None)


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


Interval = Annotated[float, duration(SECOND, DAY)]


def _every_subset() -> dict[frozenset[Protocol], tuple[Protocol, ...]]:
    members = tuple(Protocol)
    return {
        frozenset(subset): subset
        for count in range(1, len(members) + 1)
        for subset in itertools.combinations(members, count)
    }


# One tuple per set of protocols, in Protocol order: thousands of mailboxes share seven
# objects, and equal sets compare equal however they were written.
PROTOCOL_SETS = _every_subset()


def protocol_set(protocols: Iterable[Protocol]) -> tuple[Protocol, ...]:
    """The shared tuple, in Protocol order, of a non-empty set of protocols."""
    return PROTOCOL_SETS[frozenset(protocols)]


def _protocol_list(value: Any) -> Any:
    # A CSV cell (and a YAML string) names them separated by spaces, `;` or `|`.
    if isinstance(value, str):
        return [name for name in _PROTOCOL_SEPARATORS.split(value.strip()) if name]
    if not isinstance(value, list | tuple):
        raise ValueError(f"must be a list of protocols, e.g. [imap, pop3] (got {shown(value)})")
    return value


def _distinct_protocols(protocols: tuple[Protocol, ...]) -> tuple[Protocol, ...]:
    if not protocols:
        raise ValueError("must name at least one protocol: imap, pop3 or smtp")
    twice = [str(p) for p in Protocol if protocols.count(p) > 1]
    if twice:
        raise ValueError(f"lists {' and '.join(twice)} more than once")
    return protocol_set(protocols)


# The protocols a mailbox is probed with, as a YAML list or a CSV cell.
Protocols = Annotated[
    tuple[Protocol, ...], BeforeValidator(_protocol_list), AfterValidator(_distinct_protocols)
]

# Every SMTP AUTH is a login to the identity system (CERBERE), which a probe every 5
# minutes from thousands of mailboxes would weigh on; once an hour is soon enough to see
# that a password valid for six months has expired.
DEFAULT_INTERVALS: dict[Protocol, float] = {Protocol.SMTP: HOUR}


class ProbingConfig(FrozenModel):
    """How often and how hard mailboxes are probed."""

    # Protocols a mailbox is probed with unless its entry says otherwise. None: every
    # protocol its server has an endpoint for.
    protocols: Protocols | None = None
    interval: Interval = 300.0  # of each protocol, unless `intervals` sets it
    # Merged over DEFAULT_INTERVALS: setting one protocol keeps SMTP's hour.
    intervals: dict[Protocol, Interval] = Field(default_factory=lambda: dict(DEFAULT_INTERVALS))
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

    @field_validator("intervals")
    @classmethod
    def _over_defaults(cls, intervals: dict[Protocol, float]) -> dict[Protocol, float]:
        merged = DEFAULT_INTERVALS | intervals
        return {p: merged[p] for p in Protocol if p in merged}

    def interval_for(self, protocol: Protocol) -> float:
        """How often each mailbox is probed with `protocol`."""
        return self.intervals.get(protocol, self.interval)

    def timeout_rule(self, protocols: Iterable[Protocol]) -> str | None:
        """Why `timeout` is too long for the interval of one of `protocols`, if it is.

        Checked against the protocols the servers offer, not all: SMTP's hour must not
        refuse a one-hour timeout on an IMAP-only fleet.
        """
        offered = set(protocols)
        for protocol in Protocol:
            if protocol in offered and self.timeout >= self.interval_for(protocol):
                if protocol in self.intervals:
                    where = f"intervals.{protocol} ({format_duration(self.intervals[protocol])})"
                else:
                    where = "interval"
                return f"timeout must be shorter than {where}"
        return None


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
    # Resolved (the entry's, the fleet's or the server's), one shared tuple per set.
    protocols: tuple[Protocol, ...] = PROTOCOL_SETS[frozenset({Protocol.IMAP})]
    # The CERBERE password's last change, or its expiry, as the inventory gives them.
    password_changed: dt.date | None = None
    password_expires: dt.date | None = None
    tiers: QuotaTiers | None = None  # the mailbox's own Exchange quota tiers

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
    expiry: ExpiryConfig = field(default_factory=lambda: _later_defaults()[0])
    notify: NotifyConfig = field(default_factory=lambda: _later_defaults()[1])
    canary: CanaryConfig = field(default_factory=lambda: _later_defaults()[2])
    # Set when `mailboxes` holds one shard's share of the fleet (see config.shards).
    sharding: Sharding | None = None

    @property
    def shard(self) -> Shard | None:
        """This instance's shard; None when it watches the whole fleet."""
        return self.sharding.shard if self.sharding else None

    @property
    def fleet(self) -> tuple[Mailbox, ...]:
        """Every mailbox of the inventory, this shard's and the others'."""
        return self.sharding.fleet if self.sharding else self.mailboxes


def _later_defaults() -> tuple[ExpiryConfig, NotifyConfig, CanaryConfig]:
    """Defaults of the later sections, for a Config built in code (tests, the benchmark);
    imported here, as their modules build on this one."""
    from monitor.config.expiry_model import ExpiryConfig, NotifyConfig
    from monitor.config.fullness_model import CanaryConfig

    return ExpiryConfig(), NotifyConfig(), CanaryConfig()
