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
SPARES = tuple(f"ec0001{i:02d}" for i in range(64))  # one per test that refuses passwords

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


def cerbere_password(local: str) -> str:
    """A recognisable CERBERE password, apart from the mailbox one, so tests tell them apart."""
    return f"Cerbere-{local}-4Xw!"


def write_config(
    directory: Path,
    server: DovecotServer | None,
    tls: str = "none",
    mailboxes: list[str] | None = None,
    *,
    passwords: dict[str, str] | None = None,
    port: int | None = None,
    protocols: dict[str, dict[str, Any]] | None = None,
    cerbere: dict[str, str] | None = None,
    mailbox_protocols: dict[str, list[str]] | None = None,
    probing: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write credential files and a config for `mailboxes` (local parts) on `server`.

    `protocols` gives the server's endpoints, each as settings over the fleet's defaults
    (IMAP alone when None; `port` is IMAP's); an SMTP endpoint needs its `port`, since
    Dovecot here serves no submission. `cerbere` writes `<address>.cerbere` files, and
    `mailbox_protocols` gives entries their own protocol lists.
    """
    directory.mkdir(parents=True, exist_ok=True)
    credentials = directory / "credentials"
    credentials.mkdir(mode=0o700, exist_ok=True)
    locals_ = mailboxes if mailboxes is not None else [EMPTY]
    passwords = passwords or {}
    for local in locals_:
        _write_secret(credentials / f"{address(local)}.imap", passwords.get(local, password(local)))
    for local, secret in (cerbere or {}).items():
        _write_secret(credentials / f"{address(local)}.cerbere", secret)
    endpoints = {
        protocol: _endpoint(protocol, server, settings.get("tls", tls), port) | settings
        for protocol, settings in (protocols or {"imap": {}}).items()
    }
    entries: list[dict[str, Any]] = []
    for local in locals_:
        entry: dict[str, Any] = {"address": address(local)}
        if mailbox_protocols and local in mailbox_protocols:
            entry["protocols"] = mailbox_protocols[local]
        entries.append(entry)
    document: dict[str, Any] = {
        "servers": {"dovecot": endpoints},
        "probing": {"interval": "1m", "timeout": "10s", "rate_limit": 0, **(probing or {})},
        "credentials": {"directory": "credentials"},
        "state": {"path": "state.db"},
        "http": {"listen": "127.0.0.1:0"},
        "mailboxes": entries,
        **(extra or {}),
    }
    path = directory / "bma.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _write_secret(path: Path, secret: str) -> None:
    path.write_text(secret + "\n")
    path.chmod(0o600)


def _endpoint(
    protocol: str, server: DovecotServer | None, tls: str, imap_port: int | None
) -> dict[str, Any]:
    """The fleet's settings for one endpoint on loopback, before a test's own."""
    endpoint: dict[str, Any] = {
        "host": "127.0.0.1",
        "tls": tls,
        "connect_timeout": "3s",
        "command_timeout": "5s",
    }
    if protocol == "imap":
        if imap_port is None:
            assert server is not None
            imap_port = server.imaps_port if tls == "implicit" else server.imap_port
        endpoint["port"] = imap_port
    elif protocol == "pop3" and server is not None:
        endpoint["port"] = server.pop3s_port if tls == "implicit" else server.pop3_port
    if tls != "none" and server is not None:
        endpoint |= {"ca_file": str(server.ca_file), "tls_server_name": "localhost"}
    return endpoint


def config_for(
    directory: Path,
    server: DovecotServer | None,
    tls: str = "none",
    mailboxes: list[str] | None = None,
    **kwargs: Any,
) -> Config:
    """Write a config (see write_config) and load it through the real loader."""
    return load_config(write_config(directory, server, tls, mailboxes, **kwargs))
