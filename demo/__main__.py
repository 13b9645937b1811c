"""A demo fleet on loopback: private servers with BMAs in every state, and the daemon.

Two Dovecot servers, over IMAP and POP3, stand for the real world: `exchange` advertises
neither QUOTA nor STATUS=SIZE (usage is summed from message sizes, against the 2 GiB
default), and `legacy` reports QUOTA with small limits so that nearly full and full
mailboxes are cheap to show. One aiosmtpd submission server, the SMTP endpoint of both,
checks CERBERE passwords.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import logging
import os
import shutil
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pydantic
import yaml

from demo.pop3_hold import Pop3Login, pop3_session_held
from monitor import cli
from monitor.config.model import HttpConfig, ProbingConfig
from monitor.probes.result import Protocol
from tests.fleet import EXCHANGE_CAPABILITY
from tests.servers.dovecot import DovecotServer, MailUser
from tests.servers.smtp import DISABLED, EXPIRED, SmtpServer, SmtpUser

DOMAIN = "adm.cfwb.be"
HEADER = "# Demo fleet written by `python -m demo`.\n"  # also marks a folder safe to wipe
SPECIAL = {
    "ec000002": "nearly full (legacy server, 10 MiB quota)",
    "ec000003": "full (legacy server, 10 MiB quota)",
    "ec000004": "wrong mailbox password: tried once, then locked out",
    "ec000005": "mailbox password expired: [EXPIRED]",
    "ec000006": "account disabled: [CONTACTADMIN]",
    "ec000007": "no mailbox password file",
    "ec000008": "wrong CERBERE password (SMTP): tried once, then locked out",
    "ec000009": "CERBERE password expired (SMTP)",
    "ec000010": "CERBERE account disabled (SMTP 525)",
    "ec000011": "no CERBERE file: not probed over SMTP",
    "ec000012": "POP3 in use: the demo keeps a POP3 session open",
}
LEGACY = ("ec000002", "ec000003")
WRONG_MAILBOX_PASSWORD = "ec000004"
NO_MAILBOX_PASSWORD = "ec000007"
WRONG_CERBERE = "ec000008"
SMTP_REPLIES = {"ec000009": EXPIRED, "ec000010": DISABLED}  # whatever the password
NO_CERBERE = "ec000011"
POP3_IN_USE = "ec000012"
MIN_MAILBOXES = 14  # ec000001 (healthy), the special cases and two organising bodies
PO_SHARE = 11  # one organising body for about ten schools
PROBE_TIMEOUT = "15s"
# Dovecot answers a POP3 login to a locked mailbox only after its 10 s lock wait
# (`-ERR [IN-USE]`); with less than that for the command (and the whole probe), the probe
# of ec000012 would end in `timeout`, and its password would be held as a login of
# unknown outcome, instead of showing `in_use`.
POP3_COMMAND_TIMEOUT = "14s"


def _address(local: str) -> str:
    return f"{local}@{DOMAIN}"


def _password(local: str, kind: str = "demo") -> str:
    return f"{kind}-{local}-{os.urandom(4).hex()}"


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
        # SMTP's default hour spares CERBERE; the demo's own server needs no sparing, and
        # its SMTP states should show within the first interval.
        "intervals": {"smtp": interval},
        "timeout": PROBE_TIMEOUT,
        "rate_limit": 20,
        "quota_estimate_interval": "10m",
    }
    try:
        probing = ProbingConfig.model_validate(settings)
    except pydantic.ValidationError as exc:
        problem = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
    else:
        problem = probing.timeout_rule(Protocol) or ""
    if problem:
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


@dataclass(frozen=True)
class DemoFleet:
    """The built fleet: its configuration, and the servers a test may question."""

    config: Path
    exchange: DovecotServer
    legacy: DovecotServer
    smtp: SmtpServer


def _write_secret(credentials: Path, local: str, suffix: str, secret: str) -> None:
    path = credentials / f"{_address(local)}.{suffix}"
    path.write_text(secret + "\n")
    path.chmod(0o600)


def _smtp_user(local: str, cerbere: str) -> SmtpUser:
    if local in SMTP_REPLIES:
        return SmtpUser(_address(local), reply=SMTP_REPLIES[local])
    return SmtpUser(_address(local), cerbere)


def _endpoints(server: DovecotServer, smtp: SmtpServer) -> dict[str, object]:
    """The server's three endpoints, all over implicit TLS with the demo's own CAs."""
    tls = {"tls": "implicit", "tls_server_name": "localhost"}
    return {
        "imap": {
            "host": server.host,
            "port": server.imaps_port,
            **tls,
            "ca_file": str(server.ca_file),
        },
        "pop3": {
            "host": server.host,
            "port": server.pop3s_port,
            **tls,
            "ca_file": str(server.ca_file),
            "command_timeout": POP3_COMMAND_TIMEOUT,
        },
        "smtp": {"host": "127.0.0.1", "port": smtp.port, **tls, "ca_file": str(smtp.ca_file)},
    }


def build(
    workdir: Path,
    count: int,
    listen: str,
    probing: dict[str, object],
    running: contextlib.ExitStack,
) -> DemoFleet:
    """Create the servers, their mail, the credentials and the config; start the POP3 hold.

    The folder is wiped first. Each server (and the POP3 session) is stopped when `running`
    closes, so a failure half-way leaves no Dovecot behind.
    """
    if workdir.exists():
        shutil.rmtree(workdir)
    credentials = workdir / "credentials"
    credentials.mkdir(parents=True, mode=0o700)

    locals_ = fleet_locals(count)
    passwords = {local: _password(local) for local in locals_}
    # CERBERE is another system: its password is never the mailbox's.
    cerbere = {local: _password(local, "cerbere") for local in locals_ if local != NO_CERBERE}
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
            pop3_lock_session=True,  # for ec000012's session to lock the daemon's POP3 out
        )
    )
    legacy = running.enter_context(DovecotServer(workdir / "legacy", legacy_users, quota=True))
    (workdir / "smtp").mkdir()  # for its certificate
    # aiosmtpd logs each connection, and a deprecation warning of its own making at every
    # accepted AUTH: noise between the daemon's events. Its errors still show.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    smtp = running.enter_context(
        SmtpServer(workdir / "smtp", [_smtp_user(local, p) for local, p in cerbere.items()])
    )
    for i, user in enumerate(exchange_users):
        exchange.add_messages(user.address, 3 + i % 7, 4000 + 997 * (i % 11))
        if i % 5 == 0:
            exchange.add_messages(user.address, 2, 12_000, folder="Sent Items")
    legacy.add_messages(_address("ec000002"), 9, 1_000_000)
    legacy.add_messages(_address("ec000003"), 11, 1_000_000)
    held = Pop3Login(
        exchange.host,
        exchange.pop3s_port,
        exchange.client_ssl_context(),
        _address(POP3_IN_USE),
        passwords[POP3_IN_USE],
    )
    running.enter_context(pop3_session_held(held))

    for local in locals_:
        if local != NO_MAILBOX_PASSWORD:
            wrong = local == WRONG_MAILBOX_PASSWORD
            _write_secret(
                credentials, local, "imap", "not-the-password" if wrong else passwords[local]
            )
        if local in cerbere:
            wrong = local == WRONG_CERBERE
            _write_secret(
                credentials, local, "cerbere", "not-the-cerbere" if wrong else cerbere[local]
            )

    with (workdir / "fleet.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["fase", "kind", "name", "contact", "server"])
        for local in locals_:
            server = "legacy" if local in LEGACY else ""
            name = SPECIAL.get(
                local, f"Établissement {local[2:]}" if local.startswith("ec") else f"PO {local[2:]}"
            )
            writer.writerow([local[2:], local[:2], name, "", server])

    config = {
        "servers": {"exchange": _endpoints(exchange, smtp), "legacy": _endpoints(legacy, smtp)},
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
    return DemoFleet(path, exchange, legacy, smtp)


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
            config = build(args.workdir, args.mailboxes, args.listen, probing, running).config
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
