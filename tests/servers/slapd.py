"""A private OpenLDAP 2.5 slapd with the ppolicy overlay on 127.0.0.1, for tests.

SlapdServer writes slapd.conf, loads the entries with slapadd before the start (the only
way, besides `ldapmodify -e relax`, to give an entry a back-dated pwdChangedTime), and runs
``slapd -d stats`` in the foreground as a child, its stats log going to one file. Each
operation logs a line there, e.g. ``conn=1001 op=0 BIND dn="cn=reader,ou=services,..."
method=128`` and ``conn=1001 op=0 RESULT tag=97 err=49 qtime=... text=``; binds() counts
the BIND lines of one DN, after a marker search proves the log has caught up.

The directory: the policy entry cn=default,ou=policies (pwdMaxAge, the default policy),
the service account cn=reader,ou=services (limits size.prtotal=unlimited, so a paged
search may pass the default size limit of 500), and one inetOrgPerson per Account under
ou=people, with `mail` and, where given, `pwdChangedTime`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.servers.dovecot import free_port
from tests.servers.lifecycle import StartStop

SUFFIX = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{SUFFIX}"
SERVICE_DN = f"cn=reader,ou=services,{SUFFIX}"
PEOPLE_DN = f"ou=people,{SUFFIX}"
POLICY_DN = f"cn=default,ou=policies,{SUFFIX}"
START_TIMEOUT_SECONDS = 10.0
LOG_SYNC_TIMEOUT_SECONDS = 5.0

_marker_counter = itertools.count(1)


class SlapdError(RuntimeError):
    """The private slapd could not be started or driven."""


@dataclass(frozen=True)
class Account:
    """A person in ou=people; `changed` becomes its pwdChangedTime (None: never set)."""

    uid: str
    mail: str
    changed: dt.datetime | None = None


def generalized_time(moment: dt.datetime) -> str:
    """LDAP GeneralizedTime in UTC, as slapd writes pwdChangedTime."""
    return moment.astimezone(dt.UTC).strftime("%Y%m%d%H%M%SZ")


class SlapdServer(StartStop):
    """A private slapd whose config, data and log all live under `workdir`."""

    host = "127.0.0.1"

    def __init__(
        self,
        workdir: Path,
        accounts: Iterable[Account],
        *,
        service_password: str,
        max_age_seconds: int = 180 * 86400,
    ) -> None:
        """Describe the server; nothing is written or started before start()."""
        self.workdir = Path(workdir).absolute()
        self.accounts = list(accounts)
        self.service_password = service_password
        self.root_password = "root-" + service_password[::-1]
        self.max_age_seconds = max_age_seconds
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The ldap:// URL clients use."""
        return f"ldap://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        """slapd's stats log."""
        return self.workdir / "slapd.log"

    @property
    def pid(self) -> int:
        """The slapd process id."""
        if self._process is None:
            raise SlapdError("server not started")
        return self._process.pid

    def start(self) -> None:
        """Write config and entries, load them with slapadd, start slapd, wait for its port."""
        if self._process is not None:
            raise SlapdError("server already started")
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        config = self.workdir / "slapd.conf"
        config.write_text(self._config_text(), encoding="utf-8")
        ldif = self.workdir / "entries.ldif"
        ldif.write_text(self._ldif_text(), encoding="utf-8")
        _run(["slapadd", "-q", "-f", str(config), "-l", str(ldif)])
        for attempt in itertools.count(1):
            self.port = free_port()
            log = self.log_path.open("ab")
            with log:
                self._process = subprocess.Popen(
                    ["slapd", "-d", "stats", "-h", self.url, "-f", str(config)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            if self._wait_until_ready():
                return
            self.stop()
            if attempt == 3:  # another process may take the port between probe and bind
                raise SlapdError(f"slapd did not start; see {self.log_path}")

    def stop(self) -> None:
        """Stop slapd and wait for it; idempotent."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)  # a paused server would never exit
            process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """slapd stopped with SIGSTOP: the kernel still accepts connections, nobody answers."""
        self._process_or_fail().send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self._process_or_fail().send_signal(signal.SIGCONT)

    def binds(self, dn: str = SERVICE_DN) -> int:
        """How many simple binds as `dn` slapd has seen."""
        return self.log_count(f'BIND dn="{dn}" method=128')

    def log_count(self, text: str) -> int:
        """How many times `text` is in slapd's log, once the log has caught up."""
        marker = f"harness-sync-{next(_marker_counter)}"
        # An anonymous search whose filter carries the marker: once slapd logged it, every
        # earlier operation is in the log too (one connection at a time in these tests).
        _run(
            ["ldapsearch", "-x", "-LLL", "-H", self.url, "-b", SUFFIX, "-s", "base",
             f"(description={marker})", "1.1"]
        )  # fmt: skip
        deadline = time.monotonic() + LOG_SYNC_TIMEOUT_SECONDS
        while marker not in (log := self.log_path.read_text(encoding="utf-8", errors="replace")):
            if time.monotonic() > deadline:
                raise SlapdError("slapd's log did not show the marker search")
            time.sleep(0.01)
        return log.count(text)

    def _process_or_fail(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise SlapdError("server not started")
        return self._process

    def _wait_until_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                return False
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), 1):
                return True
            time.sleep(0.01)
        return False

    def _config_text(self) -> str:
        data = self.workdir / "data"
        return f"""\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload ppolicy
pidfile {self.workdir}/slapd.pid
argsfile {self.workdir}/slapd.args

database mdb
suffix "{SUFFIX}"
rootdn "{ROOT_DN}"
rootpw {self.root_password}
directory {data}
maxsize 104857600
index objectClass eq
index mail eq
limits dn.exact="{SERVICE_DN}" size.prtotal=unlimited
access to attrs=userPassword by self write by anonymous auth by * none
access to * by * read
overlay ppolicy
ppolicy_default "{POLICY_DN}"
"""

    def _ldif_text(self) -> str:
        blocks = [
            f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\n"
            "dc: example\n",
            f"dn: ou=policies,{SUFFIX}\nobjectClass: organizationalUnit\nou: policies\n",
            f"dn: {POLICY_DN}\nobjectClass: organizationalRole\nobjectClass: pwdPolicy\n"
            f"cn: default\npwdAttribute: userPassword\npwdMaxAge: {self.max_age_seconds}\n",
            f"dn: ou=services,{SUFFIX}\nobjectClass: organizationalUnit\nou: services\n",
            f"dn: {SERVICE_DN}\nobjectClass: organizationalRole\n"
            "objectClass: simpleSecurityObject\ncn: reader\n"
            f"userPassword: {self.service_password}\n",
            f"dn: {PEOPLE_DN}\nobjectClass: organizationalUnit\nou: people\n",
        ]
        for account in self.accounts:
            block = (
                f"dn: uid={account.uid},{PEOPLE_DN}\nobjectClass: inetOrgPerson\n"
                f"uid: {account.uid}\ncn: {account.uid}\nsn: {account.uid}\nmail: {account.mail}\n"
            )
            if account.changed is not None:
                block += f"pwdChangedTime: {generalized_time(account.changed)}\n"
            blocks.append(block)
        return "\n".join(blocks)


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise SlapdError(f"{command[0]} failed ({result.returncode}): {result.stderr.strip()}")
