"""A demo fleet on loopback: private Dovecot servers with BMAs in every state, and the daemon.

Two servers stand for the real world: `exchange` advertises neither QUOTA nor STATUS=SIZE
(usage is summed from message sizes, against the 2 GiB default), and `legacy` reports
QUOTA with small limits so that nearly full and full mailboxes are cheap to show.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import shutil
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import pydantic
import yaml

from monitor import cli
from monitor.config.model import HttpConfig, ProbingConfig
from tests.fleet import EXCHANGE_CAPABILITY
from tests.servers.dovecot import DovecotServer, MailUser

DOMAIN = "adm.cfwb.be"
HEADER = "# Demo fleet written by `python -m demo`.\n"  # also marks a folder safe to wipe
SPECIAL = {
    "ec000002": "nearly full (legacy server, 10 MiB quota)",
    "ec000003": "full (legacy server, 10 MiB quota)",
    "ec000004": "wrong password: tried once, then locked out",
    "ec000005": "CERBERE-style expiry: [EXPIRED]",
    "ec000006": "account disabled: [CONTACTADMIN]",
    "ec000007": "no credential file",
}
LEGACY = ("ec000002", "ec000003")
MIN_MAILBOXES = 9  # ec000001 (healthy), the special cases and two organising bodies
PO_SHARE = 11  # one organising body for about ten schools
PROBE_TIMEOUT = "5s"


def _address(local: str) -> str:
    return f"{local}@{DOMAIN}"


def _password(local: str) -> str:
    return f"demo-{local}-{os.urandom(4).hex()}"


def fleet_locals(total: int) -> list[str]:
    """The local parts of a fleet of `total` mailboxes, schools (ec) and bodies (po) together."""
    if total < MIN_MAILBOXES:
        raise ValueError(f"a demo fleet needs at least {MIN_MAILBOXES} mailboxes (got {total})")
    po = max(2, total // PO_SHARE)
    return [f"ec{i:06d}" for i in range(1, total - po + 1)] + [
        f"po{i:06d}" for i in range(1, po + 1)
    ]


def probing_settings(interval: str) -> dict[str, object]:
    """The configuration's `probing` section; ValueError names what is wrong with `interval`."""
    settings: dict[str, object] = {
        "interval": interval,
        "timeout": PROBE_TIMEOUT,
        "rate_limit": 20,
        "quota_estimate_interval": "10m",
    }
    try:
        ProbingConfig.model_validate(settings)
    except pydantic.ValidationError as exc:
        problem = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
        if "timeout" in problem:  # the demo sets the timeout: say what that asks of the interval
            problem = f"must be longer than the demo's probe timeout ({PROBE_TIMEOUT})"
        raise ValueError(problem) from None
    return settings


def listen_problem(listen: str) -> str | None:
    """Why the daemon could not serve on `listen` (found by binding it once), or None."""
    http = HttpConfig(listen=listen)
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            http.host, http.port, type=socket.SOCK_STREAM
        )[0]
        with socket.socket(family, kind, proto) as trial:
            trial.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the daemon binds
            trial.bind(address)
    except OSError as exc:
        return f"cannot listen on {http.host}:{http.port}: {exc.strerror or exc}"
    return None


def _wipeable(workdir: Path) -> bool:
    """Only an empty folder or an earlier demo's may be wiped: `--workdir ~` must not be."""
    if not workdir.exists():
        return True
    if workdir.is_dir() and not any(workdir.iterdir()):
        return True
    with contextlib.suppress(OSError, UnicodeDecodeError):
        return (workdir / "bma.yaml").read_text().startswith(HEADER)
    return False


def build(
    workdir: Path,
    count: int,
    listen: str,
    probing: dict[str, object],
    running: contextlib.ExitStack,
) -> Path:
    """Create the servers, their mail, the credentials and the config; return the config path.

    The folder is wiped first. Each server is stopped when `running` closes, so a failure
    half-way leaves no Dovecot behind.
    """
    if workdir.exists():
        shutil.rmtree(workdir)
    credentials = workdir / "credentials"
    credentials.mkdir(parents=True, mode=0o700)

    locals_ = fleet_locals(count)
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
        if local not in LEGACY
    ]
    exchange = running.enter_context(
        DovecotServer(
            workdir / "exchange",
            exchange_users,
            quota=False,
            capability_override=EXCHANGE_CAPABILITY,
        )
    )
    legacy = running.enter_context(DovecotServer(workdir / "legacy", legacy_users, quota=True))
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
            server = "legacy" if local in LEGACY else ""
            name = SPECIAL.get(
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
        "probing": probing,
        "credentials": {"directory": "credentials"},
        "state": {"path": "state.db"},
        "http": {"listen": listen},
        "logging": {"level": "info", "format": "auto"},
        "inventory": ["fleet.csv"],
    }
    path = workdir / "bma.yaml"
    path.write_text(HEADER + yaml.safe_dump(config, sort_keys=False))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Build the demo fleet and run the daemon until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    parser.add_argument(
        "--mailboxes",
        type=int,
        default=44,
        help=f"mailboxes in the fleet, ec and po together (at least {MIN_MAILBOXES})",
    )
    parser.add_argument("--listen", default="127.0.0.1:9834", help="address of /metrics")
    parser.add_argument("--interval", default="30s", help="probe interval")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(f"/tmp/bma-demo-{os.getuid()}"),
        help="working folder, wiped at start (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.mailboxes < MIN_MAILBOXES:
        parser.error(f"--mailboxes must be at least {MIN_MAILBOXES} (the special cases)")
    try:
        probing = probing_settings(args.interval)
    except ValueError as exc:
        parser.error(f"--interval: {exc}")
    try:
        problem = listen_problem(args.listen)
    except pydantic.ValidationError:
        parser.error(f"--listen must be HOST:PORT (got {args.listen!r})")
    # Checked before anything starts: the daemon would find these only after Dovecot is up.
    if problem is not None:
        print(f"http error: {problem}", file=sys.stderr)
        return cli.EXIT_USAGE
    if not _wipeable(args.workdir):
        print(
            f"demo error: {args.workdir} holds files that are not an earlier demo's; "
            "give an empty or new folder with --workdir",
            file=sys.stderr,
        )
        return cli.EXIT_USAGE
    try:
        with contextlib.ExitStack() as running:
            config = build(args.workdir, args.mailboxes, args.listen, probing, running)
            print(f"demo fleet ready in {args.workdir}; config {config}", file=sys.stderr)
            print(
                f"metrics: http://{args.listen}/metrics  health: http://{args.listen}/healthz",
                file=sys.stderr,
            )
            print("Ctrl-C stops the daemon and the demo servers.", file=sys.stderr)
            return cli.main(["run", "--config", str(config)])
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the servers are stopped by now; logs stay in the folder
        first_line = (str(exc) or type(exc).__name__).splitlines()[0]
        print(f"demo error: {first_line} (logs in {args.workdir})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
