"""A demo fleet on loopback: private Dovecot servers with BMAs in every state, and the daemon.

Two servers stand for the real world: `exchange` advertises neither QUOTA nor STATUS=SIZE
(usage is summed from message sizes, against the 2 GiB default), and `legacy` reports
QUOTA with small limits so that nearly full and full mailboxes are cheap to show.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import shutil
import sys
from pathlib import Path

import yaml

from monitor.daemon import run_daemon
from tests.fleet import EXCHANGE_CAPABILITY
from tests.servers.dovecot import DovecotServer, MailUser

DOMAIN = "adm.cfwb.be"


def _address(local: str) -> str:
    return f"{local}@{DOMAIN}"


def _password(local: str) -> str:
    return f"demo-{local}-{os.urandom(4).hex()}"


def build(
    workdir: Path, count: int, listen: str, interval: str
) -> tuple[Path, list[DovecotServer]]:
    """Create the servers, their mail, the credentials and the config; return the config path."""
    if workdir.exists():
        shutil.rmtree(workdir)
    credentials = workdir / "credentials"
    credentials.mkdir(parents=True, mode=0o700)

    locals_ = [f"ec{i:06d}" for i in range(1, count + 1)] + [
        f"po{i:06d}" for i in range(1, max(2, count // 10) + 1)
    ]
    special = {
        "ec000002": "nearly full (legacy server, 10 MiB quota)",
        "ec000003": "full (legacy server, 10 MiB quota)",
        "ec000004": "wrong password: tried once, then locked out",
        "ec000005": "CERBERE-style expiry: [EXPIRED]",
        "ec000006": "account disabled: [CONTACTADMIN]",
        "ec000007": "no credential file",
    }
    passwords = {local: _password(local) for local in locals_}
    legacy_users = [
        MailUser(_address("ec000002"), passwords["ec000002"], quota_rule="10M"),
        MailUser(_address("ec000003"), passwords["ec000003"], quota_rule="10M"),
    ]
    exchange_users = [
        MailUser(
            _address(local),
            passwords[local],
            expired=local == "ec000005",
            disabled=local == "ec000006",
        )
        for local in locals_
        if local not in ("ec000002", "ec000003")
    ]
    exchange = DovecotServer(
        workdir / "exchange", exchange_users, quota=False, capability_override=EXCHANGE_CAPABILITY
    )
    legacy = DovecotServer(workdir / "legacy", legacy_users, quota=True)
    for server in (exchange, legacy):
        server.start()
    for i, user in enumerate(exchange_users):
        exchange.add_messages(user.address, 3 + i % 7, 4000 + 997 * (i % 11))
        if i % 5 == 0:
            exchange.add_messages(user.address, 2, 12_000, folder="Sent Items")
    legacy.add_messages(_address("ec000002"), 9, 1_000_000)
    legacy.add_messages(_address("ec000003"), 11, 1_000_000)

    for local in locals_:
        if local == "ec000007":
            continue
        secret = "not-the-password" if local == "ec000004" else passwords[local]
        path = credentials / f"{_address(local)}.imap"
        path.write_text(secret + "\n")
        path.chmod(0o600)

    with (workdir / "fleet.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["fase", "kind", "name", "contact", "server"])
        for local in locals_:
            server = "legacy" if local in ("ec000002", "ec000003") else ""
            name = special.get(
                local, f"Établissement {local[2:]}" if local.startswith("ec") else f"PO {local[2:]}"
            )
            writer.writerow([local[2:], local[:2], name, "", server])

    def endpoint(server: DovecotServer) -> dict[str, object]:
        return {
            "host": "127.0.0.1",
            "port": server.imaps_port,
            "tls": "implicit",
            "ca_file": str(server.ca_file),
            "tls_server_name": "localhost",
        }

    config = {
        "servers": {"exchange": endpoint(exchange), "legacy": endpoint(legacy)},
        "default_server": "exchange",
        "probing": {
            "interval": interval,
            "timeout": "5s",
            "rate_limit": 20,
            "quota_estimate_interval": "10m",
        },
        "credentials": {"directory": "credentials"},
        "state": {"path": "state.db"},
        "http": {"listen": listen},
        "logging": {"level": "info", "format": "auto"},
        "inventory": ["fleet.csv"],
    }
    path = workdir / "bma.yaml"
    path.write_text(
        "# Demo fleet written by `python -m demo`.\n" + yaml.safe_dump(config, sort_keys=False)
    )
    return path, [exchange, legacy]


def main() -> int:
    """Build the demo fleet and run the daemon until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    parser.add_argument("--mailboxes", type=int, default=40, help="establishments in the fleet")
    parser.add_argument("--listen", default="127.0.0.1:9834", help="address of /metrics")
    parser.add_argument("--interval", default="30s", help="probe interval")
    parser.add_argument("--workdir", type=Path, default=Path(f"/tmp/bma-demo-{os.getuid()}"))
    args = parser.parse_args()
    if args.mailboxes < 7:
        parser.error("--mailboxes must be at least 7 (the special cases)")
    config, servers = build(args.workdir, args.mailboxes, args.listen, args.interval)
    print(f"demo fleet ready in {args.workdir}; config {config}", file=sys.stderr)
    print(
        f"metrics: http://{args.listen}/metrics  health: http://{args.listen}/healthz",
        file=sys.stderr,
    )
    print("Ctrl-C stops the daemon and the demo servers.", file=sys.stderr)
    try:
        asyncio.run(run_daemon(config))
    except KeyboardInterrupt:
        pass
    finally:
        for server in servers:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
