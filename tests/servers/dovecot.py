"""Private Dovecot 2.3 instances (IMAP(S), POP3(S), optionally LMTP) on 127.0.0.1 for tests.

A DovecotServer keeps config, TLS files, users, mail, log and state under its workdir
(base_dir moves to /tmp only if the path is too long for a unix socket) and runs
``dovecot -F`` as a child. start() gives others search permission (o+x) on the workdir's
ancestors: Dovecot's auth (user dovecot) and mail (uid 5000) processes must reach it.

Dovecot 2.3.19.1 as configured here replies (tests/test_dovecot_harness.py checks it):

- STATUS=SIZE is advertised after login only. LOGIN answers ``a1 OK [CAPABILITY IMAP4rev1
  ... STATUS=SIZE SAVEDATE LITERAL+ NOTIFY QUOTA] Logged in`` (QUOTA only if quota=True),
  but a client that sent CAPABILITY before LOGIN (imaplib and aioimaplib always do) gets
  ``* CAPABILITY IMAP4rev1 ... QUOTA`` then a bare ``a1 OK Logged in``.
- capability_override replaces the whole post-login list, QUOTA included (GETQUOTAROOT
  still works); the greeting shows it plus ``STARTTLS AUTH=PLAIN AUTH=LOGIN``.
- quota=False: ``a1 BAD Error in IMAP command GETQUOTAROOT: Unknown command (...)``.
- GETQUOTAROOT INBOX of a 100M user; STORAGE is KiB of virtual size, rounded up::

      * QUOTAROOT INBOX "User quota"
      * QUOTA "User quota" (STORAGE 13 102400)
      a1 OK Getquotaroot completed (0.001 + 0.000 secs).

  The 2G default shows ``(STORAGE 0 2097152)``; an "unlimited" user (``*:storage=0``)
  gets no untagged line at all, only ``a1 OK No quota (0.001 + 0.000 secs).``
- POP3 (pop3_lock_session=True locks a mailbox against a second POP3 session): a
  refused login is ``-ERR [AUTH] Authentication failed.`` for a wrong password and for
  an expired one alike (pop3-login sends [AUTH] for every refusal and has no "expired"
  text of its own), ``-ERR [AUTH] Login disabled for this user`` for a disabled account;
  with the lock, a second login waits the 10 s dotlock timeout and gets ``-ERR [IN-USE]
  Mailbox is locked by another POP3 session.``. STAT gives the INBOX's count and
  virtual size (CRLF line ends), doveadm's ``messages`` and ``vsize``
  (tests/test_pop3_probe.py checks these).
- Refused LOGIN, answered at once (nodelay, no auth penalty): wrong password or unknown
  user ``a1 NO [AUTHENTICATIONFAILED] Authentication failed.``; expired ``a1 NO [EXPIRED]
  Authentication failed.`` (passwd-file splits extra fields at spaces, so no reason
  text); disabled ``a1 NO [CONTACTADMIN] Login disabled for this user``.

- LMTP (lmtp=True, on 127.0.0.1:lmtp_port, quota enforced): ``250 2.0.0 <u> <id> Saved``
  after DATA; over quota, RCPT is taken and DATA answers ``552 5.2.2 <u> Quota exceeded
  (mailbox for user is full)``, or at RCPT already with lmtp_rcpt_check_quota=True; an
  unknown user gets ``550 5.1.1`` at RCPT
  (tests/test_delivery_harness.py checks these; tests/servers/delivery.py puts SMTP in front).

add_messages writes CRLF messages, so file size, RFC822.SIZE and the quota's virtual size
all equal ``size``. auth_attempts() counts the lines a stats event exporter logs once per
finished authentication, ``stats: Info: {"event":"auth_request_finished","fields":{...,
"user":"ec001234@adm.cfwb.be"}}``, with ``"success":"yes"`` unless it failed; the
auth_verbose lines (``auth: Info: passwd-file(USER,127.0.0.1,<...>): Password mismatch``)
come once per passdb tried, so they are not counted.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import datetime
import email.utils
import itertools
import json
import os
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import tempfile
import time
import uuid
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tests.servers.lifecycle import StartStop

DOVECOT = "dovecot"
DOVEADM = "doveadm"
OPENSSL = "openssl"
MAIL_UID = 5000
MAIL_GID = 5000
DEFAULT_QUOTA_RULE = "*:storage=2G"
UNLIMITED = "unlimited"
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
LOG_SYNC_TIMEOUT_SECONDS = 5.0
SYNC_SERVICE = "harness-sync"
SYNC_USER = "harness-sync@localhost"
# Dovecot 2.3.19's post-login CAPABILITY without QUOTA, a base for capability_override.
DEFAULT_CAPABILITY = (
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES"
    " THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN"
    " NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES"
    " WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW"
    " STATUS=SIZE SAVEDATE LITERAL+ NOTIFY"
)
# AF_UNIX socket paths hold at most 107 bytes; the longest name Dovecot creates under
# base_dir ("login/..." and "anvil-auth-penalty" and the like) stays under 30.
_MAX_BASE_DIR_LENGTH = 72
_AUTH_EVENT_MARK = 'stats: Info: {"event":"auth_request_finished"'

_instance_counter = itertools.count(1)
_message_counter = itertools.count(1)
_running: weakref.WeakSet[DovecotServer] = weakref.WeakSet()


class DovecotError(RuntimeError):
    """The private Dovecot could not be started or driven."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class MailUser:
    """A mailbox of the private server; `address` is the login name."""

    address: str
    password: str
    quota_rule: str | None = None
    expired: bool = False
    disabled: bool = False


class DovecotServer(StartStop):
    """A private Dovecot instance whose files all live under `workdir`."""

    host: str = "127.0.0.1"

    def __init__(
        self,
        workdir: Path,
        users: Iterable[MailUser],
        *,
        quota: bool = True,
        capability_override: str | None = None,
        throughput: bool = False,
        pop3_lock_session: bool = False,
        lmtp: bool = False,
        lmtp_rcpt_check_quota: bool = False,
    ) -> None:
        """Describe the server; nothing is written or started before start()."""
        self.workdir = Path(workdir).absolute()
        if any(ch.isspace() or ch in "\"'%<" for ch in str(self.workdir)):
            raise ValueError(f"Dovecot config cannot hold this workdir path: {self.workdir}")
        if capability_override is not None and any(ch in capability_override for ch in '\r\n"'):
            raise ValueError("capability_override must be one line without quotes")
        self.quota = quota
        self.capability_override = capability_override
        self.throughput = throughput
        self.pop3_lock_session = pop3_lock_session
        self.lmtp = lmtp
        self.lmtp_rcpt_check_quota = lmtp_rcpt_check_quota
        self.instance_name = f"harness{os.getpid()}n{next(_instance_counter)}"
        self._users: dict[str, MailUser] = {}
        for user in users:
            _check_user(user)
            key = user.address.lower()
            if key in self._users:
                raise ValueError(f"duplicate user {user.address}")
            self._users[key] = user
        self._sync_password = uuid.uuid4().hex
        self.imap_port = 0
        self.imaps_port = 0
        self.pop3_port = 0
        self.pop3s_port = 0
        self.lmtp_port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._base_dir = self.workdir / "run"
        self._temp_base_dir: Path | None = None

    # Paths -------------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        """The instance's dovecot.conf."""
        return self.workdir / "etc" / "dovecot.conf"

    @property
    def log_path(self) -> Path:
        """The single log file every Dovecot process of the instance writes to."""
        return self.workdir / "log" / "dovecot.log"

    @property
    def ca_file(self) -> Path:
        """PEM of the CA that signed the server certificate."""
        return self.workdir / "certs" / "ca.pem"

    @property
    def mail_root(self) -> Path:
        """Directory holding one home directory per user."""
        return self.workdir / "mail"

    @property
    def running(self) -> bool:
        """Whether the Dovecot master process is alive."""
        return self._process is not None and self._process.poll() is None

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client TLS context that trusts only this server's CA."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def maildir(self, address: str) -> Path:
        """The user's Maildir (its root is INBOX)."""
        return self.mail_root / self._user(address).address.lower() / "Maildir"

    # Lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Write config, certificate and users, start Dovecot and wait for its ports."""
        if self._process is not None:
            raise DovecotError("server already started")
        self._prepare_dirs()
        write_certificate(self.workdir / "certs")
        self._write_passwd_files()
        for attempt in itertools.count(1):
            self._prepare_base_dir()
            ports = _free_ports(5)
            self.imap_port, self.imaps_port, self.pop3_port, self.pop3s_port = ports[:4]
            self.lmtp_port = ports[4] if self.lmtp else 0
            self.config_path.write_text(self._config_text(), encoding="utf-8")
            log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            output = (self.workdir / "log" / "dovecot.out").open("ab")
            with output:
                self._process = subprocess.Popen(
                    [DOVECOT, "-F", "-c", str(self.config_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            _running.add(self)
            try:
                self._wait_until_ready()
                return
            except DovecotError:
                in_use = "Address already in use" in self._log_since(log_offset)
                self.stop()
                # Another process may grab a port between free_port() and Dovecot's bind.
                if not in_use or attempt == 3:
                    raise

    def stop(self) -> None:
        """Stop Dovecot and wait until all its processes are gone; idempotent."""
        process = self._process
        if process is None:
            return
        # Dovecot's own shutdown waits up to 6 s for login processes still greeting the
        # stats process; terminating every process at once takes milliseconds. Open
        # client connections are cut either way.
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        for pid in self._instance_pids():
            _signal(pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while pids := self._instance_pids():
            if time.monotonic() > deadline:
                for pid in pids:
                    _signal(pid, signal.SIGKILL)
            time.sleep(0.01)
        self._process = None
        _running.discard(self)
        if self._temp_base_dir is not None:
            shutil.rmtree(self._temp_base_dir, ignore_errors=True)
            self._temp_base_dir = None

    # Mailboxes ---------------------------------------------------------------------

    def add_messages(self, address: str, count: int, size: int, folder: str = "INBOX") -> None:
        """Store `count` messages of exactly `size` bytes (CRLF) in a folder of the user."""
        user = self._user(address)
        if count < 0:
            raise ValueError("count must not be negative")
        folder_dir = self._make_folder(user, folder)
        stamp = int(time.time())
        for _ in range(count):
            serial = next(_message_counter)
            data = _message_bytes(user.address, serial, size)
            # S= and W= (physical and virtual size) spare Dovecot reading every file.
            name = f"{stamp}.M{serial}P{os.getpid()}.harness,S={size},W={size}:2,"
            path = folder_dir / "cur" / name
            path.write_bytes(data)
            os.chown(path, MAIL_UID, MAIL_GID)
        if self.running:
            mailbox = "INBOX" if folder.upper() == "INBOX" else folder
            self._doveadm("force-resync", "-u", user.address.lower(), mailbox)
            self._doveadm("quota", "recalc", "-u", user.address.lower())

    def add_raw_message(self, address: str, data: bytes) -> None:
        """Deliver one message as given into the user's INBOX (Maildir `new/`), as LDA would."""
        user = self._user(address)
        folder_dir = self._make_folder(user, "INBOX")
        name = f"{time.time_ns()}.M{next(_message_counter)}P{os.getpid()}.harness"
        temporary = folder_dir / "tmp" / name
        temporary.write_bytes(data)
        os.chown(temporary, MAIL_UID, MAIL_GID)
        # Maildir delivery: written in tmp/, then renamed into new/ in one step.
        os.rename(temporary, folder_dir / "new" / name)
        if self.running:
            self._doveadm("force-resync", "-u", user.address.lower(), "INBOX")

    def add_folders(self, address: str, folders: Iterable[str]) -> None:
        """Create empty folders of the user straight as Maildir++ directories, which Dovecot
        lists without being told (thousands a second)."""
        user = self._user(address)
        for folder in folders:
            self._make_folder(user, folder)

    def maildir_snapshot(self, address: str) -> dict[str, tuple[str, ...]]:
        """Map each folder to its sorted message files ("cur/NAME:2,S", "new/NAME")."""
        root = self.maildir(address)
        snapshot: dict[str, tuple[str, ...]] = {}
        if not root.is_dir():
            return snapshot
        folders = [("INBOX", root)] + [
            (_folder_name(entry.name), entry)
            for entry in sorted(root.iterdir())
            if entry.is_dir() and entry.name.startswith(".")
        ]
        for name, directory in folders:
            snapshot[name] = tuple(
                sorted(
                    f"{sub}/{entry.name}"
                    for sub in ("cur", "new")
                    if (directory / sub).is_dir()
                    for entry in (directory / sub).iterdir()
                )
            )
        return snapshot

    def add_flags(self, address: str, flags: str, folder: str, uids: str) -> None:
        """Set flags (e.g. ``"\\Seen \\Flagged"``) on messages, as a mail client would."""
        user = self._user(address).address.lower()
        self._doveadm("flags", "add", "-u", user, flags, "mailbox", folder, "uid", uids)

    def canaries(self) -> list[str]:
        """Every user's messages carrying a canary header, as `user uid` lines."""
        found = self._doveadm("search", "-A", "header", "X-BMA-Monitor-Canary", "")
        return [line for line in found.splitlines() if line.strip()]

    def fetch(self, address: str, fields: str) -> list[dict[str, str]]:
        """Dovecot's own view of every message (`doveadm fetch FIELDS ALL`), one dict each."""
        user = self._user(address).address.lower()
        rows: list[dict[str, str]] = json.loads(
            self._doveadm("-f", "json", "fetch", "-u", user, fields, "ALL")
        )
        return rows

    def mailbox_status(self, address: str, folder: str = "INBOX") -> dict[str, int]:
        """Dovecot's own count and virtual size of a folder (`doveadm mailbox status`)."""
        output = self._doveadm(
            "-f",
            "tab",
            "mailbox",
            "status",
            "-u",
            self._user(address).address.lower(),
            "messages vsize",
            folder,
        )
        # A header line, then one line of values: mailbox, messages, vsize.
        header, values = output.splitlines()[:2]
        fields = dict(zip(header.split("\t"), values.split("\t"), strict=True))
        return {name: int(fields[name]) for name in ("messages", "vsize")}

    # Authentication ----------------------------------------------------------------

    def auth_attempts(self, address: str) -> int:
        """Count authentication requests Dovecot finished for the user, whatever the result."""
        return len(self._auth_events(address))

    def auth_failures(self, address: str) -> int:
        """Count authentication requests that failed (bad password, unknown user, expired)."""
        return sum(1 for fields in self._auth_events(address) if fields.get("success") != "yes")

    def set_password(self, address: str, password: str) -> None:
        """Change the user's password; Dovecot sees it from the next login on."""
        user = self._user(address)
        self._users[user.address.lower()] = replace(user, password=password)
        _check_user(self._users[user.address.lower()])
        written_at = time.time()
        self._write_passwd_files()
        # Dovecot's passwd-file stats its file at most once per second of its own clock
        # (ioloop_time), so a lookup earlier in this second would hide the new file.
        while int(time.time()) == int(written_at):
            time.sleep(0.02)

    # Internals ---------------------------------------------------------------------

    def _user(self, address: str) -> MailUser:
        """Return the configured user for an address, case-insensitively."""
        try:
            return self._users[address.lower()]
        except KeyError:
            raise KeyError(f"unknown user {address}") from None

    def _prepare_dirs(self) -> None:
        """Create the directory tree with the owners and modes Dovecot's processes need."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        _make_traversable(self.workdir)
        for name in ("etc", "log", "state", "certs"):
            (self.workdir / name).mkdir(exist_ok=True)
        for path in (self.workdir, self.workdir / "etc", self.workdir / "log"):
            path.chmod(0o755)
        (self.workdir / "state").chmod(0o755)
        (self.workdir / "certs").chmod(0o755)
        self._prepare_mail_root()

    def _prepare_base_dir(self) -> None:
        """Create base_dir, in /tmp if the workdir path is too long for Dovecot's sockets."""
        base_dir = self.workdir / "run"
        if len(str(base_dir)) > _MAX_BASE_DIR_LENGTH:
            self._temp_base_dir = Path(tempfile.mkdtemp(prefix="dovecot-"))
            base_dir = self._temp_base_dir
        base_dir.mkdir(exist_ok=True)
        # Login processes chroot into base_dir/login and run as dovenull.
        base_dir.chmod(0o755)
        self._base_dir = base_dir

    def _prepare_mail_root(self) -> None:
        """Create the directory of homes, writable by the mail uid so Dovecot can add homes."""
        self.mail_root.mkdir(parents=True, exist_ok=True)
        os.chown(self.mail_root, MAIL_UID, MAIL_GID)
        self.mail_root.chmod(0o755)

    def _write_passwd_files(self) -> None:
        """Write the passdb/userdb files: active and disabled users, then expired ones."""
        etc = self.workdir / "etc"
        active = [user for user in self._users.values() if not user.expired]
        expired = [user for user in self._users.values() if user.expired]
        sync_line = f"{SYNC_USER}:{{PLAIN}}{self._sync_password}::::::nologin\n"
        _write_passwd(etc / "passwd", sync_line + "".join(map(_passwd_line, active)))
        _write_passwd(etc / "passwd-expired", "".join(map(_passwd_line, expired)))

    def _config_text(self) -> str:
        """Render dovecot.conf for the current ports and options."""
        etc = self.workdir / "etc"
        certs = self.workdir / "certs"
        imap_plugins = "$mail_plugins imap_quota" if self.quota else "$mail_plugins"
        capability = (
            f"imap_capability = {self.capability_override}\n"
            if self.capability_override is not None
            else ""
        )
        return f"""\
# Written by tests/servers/dovecot.py; regenerated on every start.
instance_name = {self.instance_name}
base_dir = {self._base_dir}
state_dir = {self.workdir / "state"}
listen = {self.host}
protocols = imap pop3{" lmtp" if self.lmtp else ""}
shutdown_clients = yes
log_path = {self.log_path}
auth_verbose = yes
auth_username_format = %Lu
auth_mechanisms = plain login
disable_plaintext_auth = no
# Not enough for instant failures (a 0.5 s flush timer stays): the failing passdbs below
# also set nodelay.
auth_failure_delay = 0
ssl = yes
ssl_cert = <{certs / "cert.pem"}
ssl_key = <{certs / "key.pem"}
mail_location = maildir:~/Maildir
mail_plugins = $mail_plugins quota
{capability}
namespace inbox {{
  inbox = yes
  separator = /
}}

passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {etc / "passwd"}
}}
# Expired users: the right password still fails, with code=pass_expired -> [EXPIRED].
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {etc / "passwd-expired"}
  result_success = return-fail
  override_fields = code=pass_expired nodelay
}}
# Every other login fails here; nodelay skips the 0.5 s failure flush timer.
passdb {{
  driver = static
  args = nopassword=y
  result_success = return-fail
  override_fields = nodelay
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {etc / "passwd"}
  default_fields = uid={MAIL_UID} gid={MAIL_GID} home={self.mail_root}/%u
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {etc / "passwd-expired"}
  default_fields = uid={MAIL_UID} gid={MAIL_GID} home={self.mail_root}/%u
}}

protocol imap {{
  mail_plugins = {imap_plugins}
}}
protocol pop3 {{
  pop3_lock_session = {"yes" if self.pop3_lock_session else "no"}
}}
plugin {{
  quota = count:User quota
  quota_rule = {DEFAULT_QUOTA_RULE}
  quota_vsizes = yes
}}

# One JSON line per finished authentication, read back by auth_attempts().
event_exporter authlog {{
  format = json
  format_args = time-rfc3339
  transport = log
}}
metric auth_finished {{
  filter = event=auth_request_finished
  exporter = authlog
  exporter_include = name fields
}}

service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = {self.imaps_port}
    ssl = yes
  }}
{self._login_tuning(4000)}}}
service pop3-login {{
  inet_listener pop3 {{
    port = {self.pop3_port}
  }}
  inet_listener pop3s {{
    port = {self.pop3s_port}
    ssl = yes
  }}
{self._login_tuning(1000)}}}
{self._mail_tuning()}{self._lmtp_config()}"""

    def _lmtp_config(self) -> str:
        """LMTP on 127.0.0.1:lmtp_port, enforcing quota: without the plugin a full mailbox
        still accepts mail."""
        if not self.lmtp:
            return ""
        return f"""\
protocol lmtp {{
  mail_plugins = $mail_plugins quota
  lmtp_rcpt_check_quota = {"yes" if self.lmtp_rcpt_check_quota else "no"}
}}
service lmtp {{
  inet_listener lmtp {{
    address = {self.host}
    port = {self.lmtp_port}
  }}
}}
"""

    def _login_tuning(self, client_limit: int) -> str:
        """Service settings for login processes in throughput mode (see TESTBED.md)."""
        if not self.throughput:
            return ""
        processes = os.cpu_count() or 1
        return (
            "  service_count = 0\n"
            f"  client_limit = {client_limit}\n"
            f"  process_min_avail = {processes}\n"
            f"  process_limit = {processes}\n"
        )

    def _mail_tuning(self) -> str:
        """Service settings for imap/pop3 processes in throughput mode (see TESTBED.md)."""
        if not self.throughput:
            return ""
        # The auth process serves every login process and every imap/pop3 process.
        return "service auth {\n  client_limit = 4096\n}\n" + "".join(
            f"service {name} {{\n  service_count = 1000\n}}\n" for name in ("imap", "pop3")
        )

    def _instance_pids(self) -> list[int]:
        """Live processes of this instance, found by their title "dovecot-NAME/service"."""
        prefix = f"dovecot-{self.instance_name}/".encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                # A zombie's cmdline reads empty, so exited processes drop out here.
                with contextlib.suppress(OSError):
                    if (entry / "cmdline").read_bytes().startswith(prefix):
                        pids.append(int(entry.name))
        return pids

    def _wait_until_ready(self) -> None:
        """Wait until every port answers, or raise with the tail of the log."""
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        pending = {
            self.imap_port: b"* OK",
            self.pop3_port: b"+OK",
            self.imaps_port: b"",
            self.pop3s_port: b"",
        }
        if self.lmtp:
            pending[self.lmtp_port] = b"220 "
        while pending:
            process = self._process
            if process is None or process.poll() is not None:
                raise DovecotError(f"dovecot exited at start-up\n{self._diagnostics()}")
            if time.monotonic() > deadline:
                raise DovecotError(
                    f"ports {sorted(pending)} not ready after {START_TIMEOUT_SECONDS} s\n"
                    f"{self._diagnostics()}"
                )
            for port, greeting in list(pending.items()):
                if _answers(self.host, port, greeting):
                    del pending[port]
            if pending:
                time.sleep(0.02)

    def _diagnostics(self) -> str:
        """The tail of the log and of dovecot's own output, for error messages."""
        parts = []
        for path in (self.log_path, self.workdir / "log" / "dovecot.out"):
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-25:]
                parts.append(f"--- {path}\n" + "\n".join(tail))
        return "\n".join(parts)

    def _log_since(self, offset: int) -> str:
        """Log text written after byte `offset`."""
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def _doveadm(self, *args: str) -> str:
        """Run doveadm against this instance and return its output."""
        result = subprocess.run(
            [DOVEADM, "-c", str(self.config_path), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if result.returncode != 0:
            raise DovecotError(
                f"doveadm {' '.join(args)} failed ({result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}"
            )
        return result.stdout

    def _make_folder(self, user: MailUser, folder: str) -> Path:
        """Create a Maildir++ folder (and its parents) owned by the mail uid."""
        self._prepare_mail_root()
        root = self.maildir(user.address)
        home = root.parent
        directories = [home, root]
        if folder.upper() != "INBOX":
            parts = folder.split("/")
            if any(not part or "." in part or part.startswith("~") for part in parts):
                raise ValueError(f"folder name not storable in Maildir++: {folder!r}")
            directories += [
                root / ("." + ".".join(encode_mailbox_name(part) for part in parts[:depth]))
                for depth in range(1, len(parts) + 1)
            ]
        for directory in directories:
            _mkdir_mail(directory)
            if directory != home:
                for sub in ("cur", "new", "tmp"):
                    _mkdir_mail(directory / sub)
            if directory not in (home, root) and not (directory / "maildirfolder").exists():
                (directory / "maildirfolder").touch()
                os.chown(directory / "maildirfolder", MAIL_UID, MAIL_GID)
        return directories[-1]

    def _auth_events(self, address: str) -> list[dict[str, Any]]:
        """Fields of every auth_request_finished event logged for the user."""
        if self.running:
            self._sync_auth_log()
        if not self.log_path.exists():
            return []
        wanted = address.lower()
        events = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            mark = line.find(_AUTH_EVENT_MARK)
            if mark < 0:
                continue
            fields = json.loads(line[mark + len("stats: Info: ") :])["fields"]
            if fields.get("service") != SYNC_SERVICE and fields.get("user") == wanted:
                events.append(fields)
        return events

    def _sync_auth_log(self) -> None:
        """Make a marker authentication and wait for its event, so earlier ones are logged."""
        # The single auth process sends events to the single stats process in order, so
        # once the marker's line is in the log, so is every earlier attempt's.
        session = uuid.uuid4().hex
        offset = self.log_path.stat().st_size
        self._doveadm(
            "auth",
            "test",
            "-x",
            f"service={SYNC_SERVICE}",
            "-x",
            f"session={session}",
            SYNC_USER,
            self._sync_password,
        )
        needle = f'"session":"{session}"'
        deadline = time.monotonic() + LOG_SYNC_TIMEOUT_SECONDS
        while needle not in self._log_since(offset):
            if time.monotonic() > deadline:
                raise DovecotError(
                    f"auth event for the log marker never arrived\n{self._diagnostics()}"
                )
            time.sleep(0.01)


# Helpers -----------------------------------------------------------------------------


def _check_user(user: MailUser) -> None:
    """Reject values the passwd-file format cannot hold."""
    if not user.address or any(ch in user.address for ch in ":/ \t\r\n%") or user.address == ".":
        raise ValueError(f"address not usable as a login name and directory: {user.address!r}")
    if "\n" in user.password or "\r" in user.password or "\0" in user.password:
        raise ValueError("password must not contain line breaks or NUL")
    if user.quota_rule is not None and any(ch.isspace() for ch in user.quota_rule):
        raise ValueError(f"quota_rule must not contain spaces: {user.quota_rule!r}")
    if user.address.lower() == SYNC_USER:
        raise ValueError(f"{SYNC_USER} is reserved by the harness")


def _passwd_line(user: MailUser) -> str:
    """One passwd-file line: base64 password (any character allowed) and extra fields."""
    password = base64.b64encode(user.password.encode("utf-8")).decode("ascii")
    fields = []
    if user.quota_rule == UNLIMITED:
        fields.append("userdb_quota_rule=*:storage=0")
    elif user.quota_rule is not None:
        fields.append(f"userdb_quota_rule=*:storage={user.quota_rule}")
    if user.disabled:
        fields.append("nologin")
    return f"{user.address.lower()}:{{PLAIN.B64}}{password}::::::{' '.join(fields)}\n"


def _write_passwd(path: Path, text: str) -> None:
    """Replace a passwd-file atomically as root:dovecot 0640, with a new mtime."""
    old_mtime = int(path.stat().st_mtime) if path.exists() else 0
    temporary = path.with_name(path.name + ".new")
    temporary.write_text(text, encoding="utf-8")
    shutil.chown(temporary, user=0, group="dovecot")
    temporary.chmod(0o640)
    # Dovecot notices a changed passwd-file only by its mtime second or its size.
    mtime = max(int(time.time()), old_mtime + 1)
    os.utime(temporary, (mtime, mtime))
    os.replace(temporary, path)


def _make_traversable(path: Path) -> None:
    """Give others search permission on path's ancestors, as uid 5000 and dovecot need it."""
    for directory in path.parents:
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            if directory.stat().st_uid != os.getuid():
                raise DovecotError(f"{directory} is not searchable by Dovecot's users")
            directory.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _mkdir_mail(path: Path) -> None:
    """Create a directory owned by the mail uid if it is missing."""
    if not path.is_dir():
        path.mkdir(mode=0o700)
        os.chown(path, MAIL_UID, MAIL_GID)


def _message_bytes(address: str, serial: int, size: int) -> bytes:
    """An RFC 5322 message of exactly `size` bytes with CRLF line ends."""
    header = (
        "From: Test Harness <harness@localhost>\r\n"
        f"To: <{address}>\r\n"
        f"Subject: Test message {serial}\r\n"
        f"Date: {email.utils.formatdate(usegmt=True)}\r\n"
        f"Message-ID: <{serial}.{os.getpid()}@harness.invalid>\r\n"
        "\r\n"
    ).encode()
    if size < len(header):
        raise ValueError(f"size {size} is below the {len(header)}-byte minimum for {address}")
    line = b"x" * 76 + b"\r\n"
    lines, rest = divmod(size - len(header), len(line))
    return header + line * lines + b"x" * rest


def encode_mailbox_name(name: str) -> str:
    """Encode a folder name in IMAP modified UTF-7 (RFC 3501 5.1.3), as Maildir++ stores it."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.append(
                "&" + base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",") + "-"
            )
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


def _mutf7_decode(name: str) -> str:
    """Decode IMAP modified UTF-7."""
    out: list[str] = []
    index = 0
    while index < len(name):
        if name[index] != "&":
            out.append(name[index])
            index += 1
            continue
        end = name.index("-", index)
        if end == index + 1:
            out.append("&")
        else:
            chunk = name[index + 1 : end].replace(",", "/")
            out.append(base64.b64decode(chunk + "=" * (-len(chunk) % 4)).decode("utf-16-be"))
        index = end + 1
    return "".join(out)


def _folder_name(directory: str) -> str:
    """The IMAP name of a Maildir++ folder directory (".Archive.2024" -> "Archive/2024")."""
    return "/".join(_mutf7_decode(part) for part in directory[1:].split("."))


def _free_ports(count: int) -> tuple[int, ...]:
    """Return `count` distinct free ports."""
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return tuple(ports)


def _answers(host: str, port: int, greeting: bytes) -> bool:
    """Whether a TCP connection succeeds and, if given, the greeting arrives."""
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            return not greeting or sock.recv(64).startswith(greeting)
    except OSError:
        return False


def _signal(pid: int, signum: signal.Signals) -> None:
    """Send a signal to a process that may have exited already."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def write_certificate(directory: Path) -> None:
    """Create a CA and a server certificate for localhost and 127.0.0.1, unless present."""
    files = [directory / name for name in ("ca.pem", "cert.pem", "key.pem")]
    if all(path.exists() for path in files):
        return
    not_before = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    not_after = not_before + datetime.timedelta(days=3650)
    try:
        _certificate_with_cryptography(directory, not_before, not_after)
    except ImportError:
        _certificate_with_openssl(directory, not_before, not_after)
    (directory / "key.pem").chmod(0o600)


def _certificate_with_cryptography(
    directory: Path, not_before: datetime.datetime, not_after: datetime.datetime
) -> None:
    """Write ca.pem, cert.pem and key.pem with the cryptography package."""
    import ipaddress

    from cryptography import x509  # type: ignore[import-not-found, unused-ignore]
    from cryptography.hazmat.primitives import hashes, serialization  # type: ignore[import-not-found, unused-ignore]
    from cryptography.hazmat.primitives.asymmetric import ec  # type: ignore[import-not-found, unused-ignore]
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # type: ignore[import-not-found, unused-ignore]

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dovecot-harness CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca_cert.public_bytes(pem))
    (directory / "cert.pem").write_bytes(cert.public_bytes(pem))
    (directory / "key.pem").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


_OPENSSL_CA_CONFIG = """\
[ ca ]
default_ca = harness
[ harness ]
database = index.txt
serial = serial.txt
new_certs_dir = .
default_md = sha256
policy = anything
unique_subject = no
[ anything ]
commonName = supplied
[ ca_ext ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[ leaf_ext ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def _certificate_with_openssl(
    directory: Path, not_before: datetime.datetime, not_after: datetime.datetime
) -> None:
    """Write ca.pem, cert.pem and key.pem with the openssl CLI."""
    # `openssl req -x509` cannot back-date notBefore; `openssl ca -startdate` can.
    dates = [
        "-startdate",
        not_before.strftime("%Y%m%d%H%M%SZ"),
        "-enddate",
        not_after.strftime("%Y%m%d%H%M%SZ"),
    ]
    with tempfile.TemporaryDirectory(dir=directory) as scratch_name:
        scratch = Path(scratch_name)
        (scratch / "ca.cnf").write_text(_OPENSSL_CA_CONFIG)
        (scratch / "index.txt").touch()
        newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        ca_sign = ["ca", "-batch", "-config", "ca.cnf", "-rand_serial", "-notext", *dates]
        commands = [
            [
                "req",
                "-new",
                *newkey,
                "-keyout",
                "ca-key.pem",
                "-subj",
                "/CN=dovecot-harness CA",
                "-out",
                "ca.csr",
            ],
            [
                *ca_sign,
                "-selfsign",
                "-keyfile",
                "ca-key.pem",
                "-in",
                "ca.csr",
                "-out",
                "ca.pem",
                "-extensions",
                "ca_ext",
            ],
            [
                "req",
                "-new",
                *newkey,
                "-keyout",
                "key.pem",
                "-subj",
                "/CN=localhost",
                "-out",
                "leaf.csr",
            ],
            [
                *ca_sign,
                "-cert",
                "ca.pem",
                "-keyfile",
                "ca-key.pem",
                "-in",
                "leaf.csr",
                "-out",
                "cert.pem",
                "-extensions",
                "leaf_ext",
            ],
        ]
        for command in commands:
            result = subprocess.run(
                [OPENSSL, *command],
                cwd=scratch,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise DovecotError(f"openssl {command[0]} failed: {result.stderr.strip()}")
        for name in ("ca.pem", "cert.pem", "key.pem"):
            shutil.move(scratch / name, directory / name)


@atexit.register
def _stop_forgotten_servers() -> None:
    """Stop servers a test forgot, so no private Dovecot outlives the test run."""
    for server in list(_running):
        server.stop()
