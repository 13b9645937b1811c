"""A real SMTP submission server (aiosmtpd) on 127.0.0.1 for probe tests.

One listener per server, in the style of a submission port: ``implicit`` (465: TLS from
the first byte; aiosmtpd does not see that TLS, so AUTH is offered without requiring it,
as TESTBED.md says), ``starttls`` (587: AUTH offered only after STARTTLS, as on
Exchange's front end) or ``none`` (plain, AUTH offered). The certificate is the one the
Dovecot harness makes (``write_certificate``), so the CA file verifies both.

Each user either has a password (right: ``235``, wrong: aiosmtpd's ``535 5.7.8
Authentication credentials invalid``) or a scripted reply to every AUTH, whatever the
password. The server runs in a thread with its own event loop and keeps, from its side of
the wire, every command it received and the AUTH exchanges that reached a credential
check, per user: tests count attempts the way a lock-out policy would.
"""

from __future__ import annotations

import base64
import ssl
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from tests.servers.dovecot import write_certificate
from tests.servers.threaded import ThreadedSmtp

HOSTNAME = "smtp.test"
START_TIMEOUT_SECONDS = 10.0
# A scripted reply that makes the server hang up instead of answering.
DROP = "drop"
# A scripted reply that repeats what AUTH carried: the command line, the secret in base64
# and as decoded. A server that does this is what the probe's scrubbing is for.
ECHO = "echo"

# Replies real servers give, for users to script.
INVALID = "535 5.7.8 Authentication credentials invalid"
EXCHANGE_REFUSED = "535 5.7.3 Authentication unsuccessful"
EXPIRED = "535 5.7.8 Authentication failed: password expired"
DISABLED = "525 5.7.13 User account disabled"
TOO_WEAK = "534 5.7.9 Authentication mechanism is too weak"
TRANSITION = "432 4.7.12 A password transition is needed"
BUSY = "421 4.7.0 Too many connections, try again later"


@dataclass(frozen=True)
class SmtpUser:
    """An account: its password, or the reply scripted for every AUTH it tries."""

    login: str
    password: str = ""
    reply: str | None = None


@dataclass
class _Record:
    """What the server saw, from its side of the wire."""

    commands: list[str] = field(default_factory=list)  # verbs, in order, all connections
    auth_lines: list[str] = field(default_factory=list)  # AUTH arguments as received
    attempts: Counter[str] = field(default_factory=Counter)  # credential checks per login
    lock: threading.Lock = field(default_factory=threading.Lock)


class _RecordingSMTP(SMTP):
    """aiosmtpd's SMTP session, noting each command before it runs."""

    def __init__(self, record: _Record, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.record = record
        self.last_auth_line = ""
        # aiosmtpd dispatches every command through this table: wrapping it sees them all.
        self._smtp_methods = {
            verb: self._noted(verb, method) for verb, method in self._smtp_methods.items()
        }

    def _noted(
        self, verb: str, method: Callable[[str], Awaitable[None]]
    ) -> Callable[[str], Awaitable[None]]:
        async def noted(arg: str) -> None:
            with self.record.lock:
                self.record.commands.append(verb)
                if verb == "AUTH":
                    self.record.auth_lines.append(arg)
            if verb == "AUTH":
                self.last_auth_line = arg
            await method(arg)

        return noted


class SmtpServer(ThreadedSmtp):
    """An aiosmtpd submission listener on 127.0.0.1, in a thread; start() or `with`."""

    def __init__(
        self,
        certs: Path,
        users: Iterable[SmtpUser],
        *,
        tls: str = "implicit",
        mechanisms: Iterable[str] = ("PLAIN", "LOGIN"),
    ) -> None:
        if tls not in ("implicit", "starttls", "none"):
            raise ValueError(f"tls must be implicit, starttls or none, not {tls!r}")
        super().__init__(tls)
        self.certs = certs
        self.users = {user.login: user for user in users}
        self.mechanisms = tuple(mechanisms)
        self._record = _Record()

    @property
    def ca_file(self) -> Path:
        """PEM of the CA that signed the server certificate."""
        return self.certs / "ca.pem"

    @property
    def commands(self) -> list[str]:
        """Every command verb received so far, in order, over all connections."""
        with self._record.lock:
            return list(self._record.commands)

    @property
    def auth_lines(self) -> list[str]:
        """The argument of every AUTH command received, e.g. 'PLAIN AGV...' or 'LOGIN'."""
        with self._record.lock:
            return list(self._record.auth_lines)

    def attempts(self, login: str) -> int:
        """How many AUTH exchanges for `login` reached the credential check."""
        with self._record.lock:
            return self._record.attempts[login]

    def prepare(self) -> None:
        """The server's certificate, made once."""
        write_certificate(self.certs)

    def session(self) -> SMTP:
        starttls = self.tls == "starttls"
        return _RecordingSMTP(
            self._record,
            handler=object(),
            hostname=HOSTNAME,
            tls_context=self.server_context() if starttls else None,
            require_starttls=starttls,
            auth_require_tls=starttls,
            auth_exclude_mechanism=[m for m in ("PLAIN", "LOGIN") if m not in self.mechanisms],
            authenticator=self._authenticate,
            enable_SMTPUTF8=True,  # replies may carry a UTF-8 password back (ECHO)
            loop=self.loop,
        )

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.certs / "cert.pem", self.certs / "key.pem")
        return context

    def _authenticate(
        self, server: _RecordingSMTP, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        login = data.login.decode("utf-8", "replace")
        with self._record.lock:
            self._record.attempts[login] += 1
        user = self.users.get(login)
        if user is None or user.reply is None:
            accepted = user is not None and data.password == user.password.encode("utf-8")
            return AuthResult(success=accepted, handled=False)
        if user.reply == DROP:
            assert server.transport is not None
            server.transport.close()
            return AuthResult(success=False, handled=True)
        if user.reply == ECHO:
            secret = data.password.decode("utf-8", "replace")
            encoded = base64.b64encode(data.password).decode("ascii")
            echo = f"535 5.7.8 refused AUTH {server.last_auth_line} ({encoded}) [{secret}]"
            return AuthResult(success=False, handled=False, message=echo)
        return AuthResult(success=False, handled=False, message=user.reply)
