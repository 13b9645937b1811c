"""The test fleet: mailboxes in known states, and configuration files that point at them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from monitor.config import Config, load_config
from tests.servers.dovecot import DEFAULT_CAPABILITY, DovecotServer, MailUser

DOMAIN = "adm.cfwb.be"
MB = 1_000_000
TEN_MIB = 10 * 1024 * 1024

# Exchange advertises neither QUOTA nor STATUS=SIZE.
EXCHANGE_CAPABILITY = DEFAULT_CAPABILITY.replace(" STATUS=SIZE", "")


def address(local: str) -> str:
    """The full BMA address of a local part."""
    return f"{local}@{DOMAIN}"


def password(local: str) -> str:
    """A recognisable password, so tests can prove it never leaks."""
    return f"Sekret-{local}-7Qz!"


EMPTY = "ec000001"
NEARLY_FULL = "ec000002"  # 9 MB of a 10 MiB quota: above the 0.85 warning ratio
FULL = "ec000003"  # 11 MB of a 10 MiB quota
UNLIMITED = "ec000004"
EXPIRED = "ec000006"
DISABLED = "ec000007"
FOLDERS = "po000001"  # messages in INBOX, "Sent Items" and "Archive/2024"
SPARES = tuple(f"ec0001{i:02d}" for i in range(48))  # one per test that refuses passwords

CONTENT: dict[str, list[tuple[str, int, int]]] = {
    NEARLY_FULL: [("INBOX", 9, MB)],
    FULL: [("INBOX", 11, MB)],
    UNLIMITED: [("INBOX", 3, 2048)],
    FOLDERS: [("INBOX", 5, 3000), ("Sent Items", 4, 2500), ("Archive/2024", 2, 10_000)],
}


def expected_usage(local: str) -> int:
    """Bytes of mail the fleet puts in a mailbox."""
    return sum(count * size for _, count, size in CONTENT.get(local, []))


def users() -> list[MailUser]:
    """Every mailbox of the fleet, as Dovecot users."""
    plain = [EMPTY, NEARLY_FULL, FULL, FOLDERS, *SPARES]
    out = [MailUser(address(local), password(local), quota_rule="10M") for local in plain]
    out.append(MailUser(address(UNLIMITED), password(UNLIMITED), quota_rule="unlimited"))
    out.append(MailUser(address(EXPIRED), password(EXPIRED), expired=True))
    out.append(MailUser(address(DISABLED), password(DISABLED), disabled=True))
    return out


def fill(server: DovecotServer) -> None:
    """Put the fleet's messages in place."""
    for local, batches in CONTENT.items():
        for folder, count, size in batches:
            server.add_messages(address(local), count, size, folder=folder)


def write_config(
    directory: Path,
    server: DovecotServer | None,
    tls: str = "none",
    mailboxes: list[str] | None = None,
    *,
    passwords: dict[str, str] | None = None,
    port: int | None = None,
    probing: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write credential files and a config for `mailboxes` (local parts) on `server`."""
    directory.mkdir(parents=True, exist_ok=True)
    credentials = directory / "credentials"
    credentials.mkdir(mode=0o700, exist_ok=True)
    locals_ = mailboxes if mailboxes is not None else [EMPTY]
    passwords = passwords or {}
    for local in locals_:
        secret = passwords.get(local, password(local))
        path = credentials / f"{address(local)}.imap"
        path.write_text(secret + "\n")
        path.chmod(0o600)
    if port is None:
        assert server is not None
        port = server.imaps_port if tls == "implicit" else server.imap_port
    endpoint: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "tls": tls,
        "connect_timeout": "3s",
        "command_timeout": "5s",
    }
    if tls != "none" and server is not None:
        endpoint |= {"ca_file": str(server.ca_file), "tls_server_name": "localhost"}
    document: dict[str, Any] = {
        "servers": {"dovecot": endpoint},
        "probing": {"interval": "1m", "timeout": "10s", "rate_limit": 0, **(probing or {})},
        "credentials": {"directory": "credentials"},
        "state": {"path": "state.db"},
        "http": {"listen": "127.0.0.1:0"},
        "mailboxes": [{"address": address(local)} for local in locals_],
        **(extra or {}),
    }
    path = directory / "bma.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def config_for(
    directory: Path,
    server: DovecotServer | None,
    tls: str = "none",
    mailboxes: list[str] | None = None,
    **kwargs: Any,
) -> Config:
    """Write a config (see write_config) and load it through the real loader."""
    return load_config(write_config(directory, server, tls, mailboxes, **kwargs))
