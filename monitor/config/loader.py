"""Load a configuration file whole, or fail naming every broken rule."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator

from monitor.config.errors import ConfigError, Problem
from monitor.config.inventory import (
    SourcedEntry,
    check_no_duplicates,
    entries_from_data,
    entries_from_file,
    problems_from_validation,
    resolve,
)
from monitor.config.model import (
    DEFAULT_DOMAIN,
    Config,
    CredentialsConfig,
    FrozenModel,
    HttpConfig,
    LoggingConfig,
    Mailbox,
    ProbingConfig,
    QuotaConfig,
    ServerConfig,
    StateConfig,
)
from monitor.config.yamlsource import line_of, load_yaml


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
    inventory: list[Path] = Field(default_factory=list)
    # Checked entry by entry later, so that errors name the exact entry and line.
    mailboxes: list[Any] = Field(default_factory=list)

    @model_validator(mode="after")
    def _server_names(self) -> _Document:
        for name in self.servers:
            if not name or not all(c.isalnum() or c in "-_" for c in name):
                raise ValueError(f"server name {name!r} may hold only letters, digits, - and _")
        if self.default_server is not None and self.default_server not in self.servers:
            raise ValueError(f"default_server {self.default_server!r} is not one of servers")
        if self.default_server is None and len(self.servers) > 1:
            raise ValueError("default_server is required when several servers are defined")
        return self


def load_config(path: Path | str) -> Config:
    """Read, validate and resolve a configuration file and its inventories."""
    path = Path(path)
    data, lines = load_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([Problem(path, "", "the top level must be a mapping of settings", 1)])
    try:
        doc = _Document.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(problems_from_validation(exc, path, (), lines)) from None

    base = path.parent
    default_server = doc.default_server or next(iter(doc.servers))
    problems: list[Problem] = []

    entries, found = entries_from_data(doc.mailboxes, path, ("mailboxes",), lines)
    problems += found
    for i, inventory in enumerate(doc.inventory):
        inventory_path = _relative_to(base, inventory)
        if not inventory_path.is_file():
            problems.append(
                Problem(
                    path,
                    f"inventory[{i}]",
                    f"no such file: {inventory_path}",
                    line_of(lines, ("inventory", i)),
                )
            )
            continue
        try:
            more, found = entries_from_file(inventory_path)
        except ConfigError as exc:
            problems += exc.problems
            continue
        entries += more
        problems += found

    resolved: list[tuple[Mailbox, SourcedEntry]] = []
    for entry in entries:
        outcome = resolve(entry, doc.domain, default_server)
        if isinstance(outcome, Problem):
            problems.append(outcome)
        elif outcome.server not in doc.servers:
            problems.append(
                Problem(
                    entry.file,
                    f"{entry.path}.server".lstrip("."),
                    f"unknown server {outcome.server!r}; servers: {', '.join(doc.servers)}",
                    entry.line,
                )
            )
        else:
            resolved.append((outcome, entry))
    problems += check_no_duplicates(resolved)
    if problems:
        raise ConfigError(problems)

    servers = {
        name: server.model_copy(update={"ca_file": _relative_to(base, server.ca_file)})
        if server.ca_file is not None
        else server
        for name, server in doc.servers.items()
    }
    for name, server in servers.items():
        if server.ca_file is not None and not server.ca_file.is_file():
            problems.append(
                Problem(
                    path,
                    f"servers.{name}.ca_file",
                    f"no such file: {server.ca_file}",
                    line_of(lines, ("servers", name, "ca_file")),
                )
            )
    if problems:
        raise ConfigError(problems)

    credentials_dir = doc.credentials.directory
    if credentials_dir is None and os.environ.get("CREDENTIALS_DIRECTORY"):
        credentials_dir = Path(os.environ["CREDENTIALS_DIRECTORY"])
    credentials = doc.credentials.model_copy(
        update={"directory": _relative_to(base, credentials_dir) if credentials_dir else None}
    )
    return Config(
        source=path,
        domain=doc.domain,
        servers=servers,
        default_server=default_server,
        probing=doc.probing,
        quota=doc.quota,
        credentials=credentials,
        state=doc.state.model_copy(update={"path": _relative_to(base, doc.state.path)}),
        http=doc.http,
        logging=doc.logging,
        mailboxes=tuple(m for m, _ in resolved),
    )


def _relative_to(base: Path, path: Path) -> Path:
    """Paths in a config file are relative to that file, not to the working directory."""
    path = path.expanduser()
    return path if path.is_absolute() else base / path
