"""Load a configuration file whole, or fail naming every broken rule."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from monitor.config.errors import ConfigError, Problem, format_path, shown, shown_path
from monitor.config.expiry_model import ExpiryConfig, NotifyConfig
from monitor.config.fullness_model import CanaryConfig, QuotaConfig
from monitor.config.inventory import (
    Fleet,
    SourcedEntry,
    check_default_protocols,
    check_no_duplicates,
    entries_from_data,
    entries_from_file,
    problems_from_validation,
    resolve,
)
from monitor.config.model import (
    DEFAULT_DOMAIN,
    Config,
    ConfigPath,
    CredentialsConfig,
    EndpointConfig,
    FrozenModel,
    HttpConfig,
    LoggingConfig,
    Mailbox,
    ProbingConfig,
    ServerConfig,
    StateConfig,
)
from monitor.config.servers import expand_flat_servers
from monitor.config.shards import SHARD_ENV, Shard, parse_shard, sharded
from monitor.config.values import usable_path
from monitor.config.yamlsource import Location, line_of, load_yaml


class _Document(FrozenModel):
    """The top level of the YAML file, before inventories are merged in."""

    domain: str = Field(
        default=DEFAULT_DOMAIN,
        pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$",
    )
    servers: dict[str, ServerConfig] = Field(min_length=1)
    default_server: str | None = None
    probing: ProbingConfig = ProbingConfig()
    quota: QuotaConfig = QuotaConfig()
    credentials: CredentialsConfig = CredentialsConfig()
    state: StateConfig = StateConfig()
    http: HttpConfig = HttpConfig()
    logging: LoggingConfig = LoggingConfig()
    expiry: ExpiryConfig = ExpiryConfig()
    notify: NotifyConfig = NotifyConfig()
    canary: CanaryConfig = CanaryConfig()
    shard: str | None = None  # I/N; BMA_SHARD and --shard override it
    inventory: list[ConfigPath] = Field(default_factory=list)
    # Checked entry by entry later, so that errors name the exact entry and line.
    mailboxes: list[Any] = Field(default_factory=list)

    @field_validator("shard", mode="before")
    @classmethod
    def _shard_form(cls, value: object) -> object:
        if value is not None:
            parse_shard(value)
        return value

    @model_validator(mode="after")
    def _server_names(self) -> _Document:
        for name in self.servers:
            if not name or not all(c.isalnum() or c in "-_" for c in name):
                raise ValueError(
                    f"server name {shown(name)} may hold only letters, digits, - and _"
                )
        if self.default_server is not None and self.default_server not in self.servers:
            raise ValueError(f"default_server {shown(self.default_server)} is not one of servers")
        if self.default_server is None and len(self.servers) > 1:
            raise ValueError("default_server is required when several servers are defined")
        return self


def load_config(path: Path | str, *, shard: Shard | None = None) -> Config:
    """Read, validate and resolve a configuration file and its inventories, cut to this
    instance's shard: `shard` (from --shard) over $BMA_SHARD over the file's `shard` key."""
    path = Path(path)
    files = [path]
    try:
        return _load(path, files, shard)
    except ConfigError as exc:
        rank: dict[Path, int] = {}
        for file in files:
            rank.setdefault(file, len(rank))
        problems = sorted(exc.problems, key=lambda p: (rank.get(p.file, len(rank)), p.line or 0))
        raise ConfigError(problems) from None


def _load(path: Path, files: list[Path], shard: Shard | None) -> Config:
    """Load `path`; append each inventory file read to `files`, the order problems take."""
    data, lines = load_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([Problem(path, "", "the top level must be a mapping of settings", 1)])
    data, flat = expand_flat_servers(data)
    try:
        doc = _Document.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(problems_from_validation(exc, path, (), lines, flat.written)) from None

    base = path.parent
    default_server = doc.default_server or next(iter(doc.servers))
    problems: list[Problem] = []

    def located(at: Location) -> _Place:
        at = flat.written(at)
        return _Place(base, path, at, line_of(lines, at))

    timeout_rule = doc.probing.timeout_rule(p for s in doc.servers.values() for p in s.endpoints)
    if timeout_rule:
        problems.append(Problem(path, "probing", timeout_rule, line_of(lines, ("probing",))))

    entries, found = entries_from_data(doc.mailboxes, path, ("mailboxes",), lines)
    problems += found
    for i, inventory in enumerate(doc.inventory):
        inventory_path = located(("inventory", i)).existing_file(inventory)
        if isinstance(inventory_path, Problem):
            problems.append(inventory_path)
            continue
        files.append(inventory_path)
        try:
            more, found = entries_from_file(inventory_path)
        except ConfigError as exc:
            problems += exc.problems
            continue
        entries += more
        problems += found

    fleet = Fleet(doc.domain, default_server, doc.servers, doc.probing.protocols)
    resolved: list[tuple[Mailbox, SourcedEntry]] = []
    for entry in entries:
        outcome = resolve(entry, fleet)
        if isinstance(outcome, Problem):
            problems.append(outcome)
        else:
            resolved.append((outcome, entry))
    problems += check_no_duplicates(resolved)
    problems += check_default_protocols(
        resolved, fleet, path, line_of(lines, ("probing", "protocols"))
    )

    servers: dict[str, ServerConfig] = {}
    for name, server in doc.servers.items():
        checked = _with_ca_files(name, server, located)
        if isinstance(checked, list):
            problems += checked
        else:
            servers[name] = checked

    later = _with_expiry_paths(doc.expiry, doc.notify, located)
    if isinstance(later, list):
        problems += later
    configured_dir = doc.credentials.directory
    if configured_dir is None and os.environ.get("CREDENTIALS_DIRECTORY"):
        configured_dir = Path(os.environ["CREDENTIALS_DIRECTORY"])
    credentials_dir = (
        located(("credentials", "directory")).resolved(configured_dir) if configured_dir else None
    )
    state_path = located(("state", "path")).resolved(doc.state.path)
    if shard is None:
        shard = _configured_shard(doc, path, problems)
    if problems or isinstance(credentials_dir, Problem) or isinstance(state_path, Problem):
        unusable = [p for p in (credentials_dir, state_path) if isinstance(p, Problem)]
        raise ConfigError(problems + unusable)
    config = Config(
        source=path,
        domain=doc.domain,
        servers=servers,
        default_server=default_server,
        probing=doc.probing,
        quota=doc.quota,
        credentials=doc.credentials.model_copy(update={"directory": credentials_dir}),
        state=doc.state.model_copy(update={"path": state_path}),
        http=doc.http,
        logging=doc.logging,
        mailboxes=tuple(m for m, _ in resolved),
        expiry=later[0] if not isinstance(later, list) else doc.expiry,
        notify=later[1] if not isinstance(later, list) else doc.notify,
        canary=doc.canary,
    )
    return sharded(config, shard) if shard is not None else config


def _configured_shard(doc: _Document, path: Path, problems: list[Problem]) -> Shard | None:
    """The shard $BMA_SHARD names, else the file's `shard` key (already checked)."""
    from_environment = os.environ.get(SHARD_ENV, "").strip()
    if from_environment:
        try:
            return parse_shard(from_environment)
        except ValueError as exc:
            problems.append(Problem(path, "", f"environment variable {SHARD_ENV}: {exc}"))
            return None
    return parse_shard(doc.shard) if doc.shard is not None else None


def _with_expiry_paths(
    expiry: ExpiryConfig, notify: NotifyConfig, located: Callable[[Location], _Place]
) -> tuple[ExpiryConfig, NotifyConfig] | list[Problem]:
    """The expiry and notify sections with their paths resolved, or what is wrong with them."""
    problems: list[Problem] = []
    ldap = expiry.sources.ldap
    if ldap is not None and ldap.ca_file is not None:
        found = located(("expiry", "sources", "ldap", "ca_file")).existing_file(ldap.ca_file)
        if isinstance(found, Problem):
            problems.append(found)
        else:
            ldap = ldap.model_copy(update={"ca_file": found})
            sources = expiry.sources.model_copy(update={"ldap": ldap})
            expiry = expiry.model_copy(update={"sources": sources})
    relay = notify.relay
    if relay.ca_file is not None:
        found = located(("notify", "relay", "ca_file")).existing_file(relay.ca_file)
        if isinstance(found, Problem):
            problems.append(found)
        else:
            relay = relay.model_copy(update={"ca_file": found})
            notify = notify.model_copy(update={"relay": relay})
    if notify.templates is not None:
        folder = located(("notify", "templates")).existing_dir(notify.templates)
        if isinstance(folder, Problem):
            problems.append(folder)
        else:
            notify = notify.model_copy(update={"templates": folder})
    return problems or (expiry, notify)


def _with_ca_files(
    name: str, server: ServerConfig, located: Callable[[Location], _Place]
) -> ServerConfig | list[Problem]:
    """The server with each endpoint's CA file resolved, or why one cannot be used."""
    updates: dict[str, EndpointConfig] = {}
    problems: list[Problem] = []
    for protocol, endpoint in server.endpoints.items():
        if endpoint.ca_file is None:
            continue
        place = located(("servers", name, str(protocol), "ca_file"))
        ca_file = place.existing_file(endpoint.ca_file)
        if isinstance(ca_file, Problem):
            problems.append(ca_file)
        else:
            updates[str(protocol)] = endpoint.model_copy(update={"ca_file": ca_file})
    return problems or (server.model_copy(update=updates) if updates else server)


@dataclass(frozen=True, slots=True)
class _Place:
    """Where a path setting is written, to resolve it or say why it cannot be used."""

    base: Path  # the config file's folder
    file: Path
    at: Location
    line: int | None

    def resolved(self, configured: Path) -> Path | Problem:
        """Paths in a config file are relative to that file, not to the working directory."""
        try:
            path = configured.expanduser()
        except RuntimeError:  # `~name` where no user has that name, or no home is known
            return self._problem(f"no home directory for {shown_path(configured)}")
        try:
            # Checked again once joined: the folder may make a short path too long.
            return usable_path(path if path.is_absolute() else self.base / path)
        except ValueError as exc:
            return self._problem(str(exc))

    def existing_file(self, configured: Path) -> Path | Problem:
        """The resolved path, if a file is there."""
        path = self.resolved(configured)
        if isinstance(path, Problem):
            return path
        try:
            if path.is_file():
                return path
        except OSError as exc:  # e.g. a folder on the way that cannot be searched
            return self._problem(f"cannot use {shown_path(path)}: {exc.strerror}")
        return self._problem(f"no such file: {shown_path(path)}")

    def existing_dir(self, configured: Path) -> Path | Problem:
        """The resolved path, if a folder is there."""
        path = self.resolved(configured)
        if isinstance(path, Problem):
            return path
        try:
            if path.is_dir():
                return path
        except OSError as exc:
            return self._problem(f"cannot use {shown_path(path)}: {exc.strerror}")
        return self._problem(f"no such folder: {shown_path(path)}")

    def _problem(self, rule: str) -> Problem:
        return Problem(self.file, format_path(self.at), rule, self.line)
