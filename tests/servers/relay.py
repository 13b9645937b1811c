"""A recording SMTP relay (aiosmtpd) on 127.0.0.1 for the warning mail tests.

It keeps every message it accepted, parsed, and answers RCPT or DATA with a scripted reply
per recipient (e.g. 451 or 550). It can be stopped (connections then refused) and started
again on the same port.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from tests.servers.dovecot import write_certificate
from tests.servers.threaded import ThreadedSmtp

START_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Received:
    """One message the relay accepted."""

    sender: str
    recipients: tuple[str, ...]
    message: EmailMessage
    raw: bytes


@dataclass
class _Script:
    rcpt: dict[str, str] = field(default_factory=dict)  # recipient -> reply to RCPT
    data: dict[str, str] = field(default_factory=dict)  # recipient -> reply to DATA
    hold_data: int = 0  # this many next mails get no reply to DATA, ever


class _Handler:
    def __init__(self, relay: RecordingRelay) -> None:
        self.relay = relay

    async def handle_RCPT(
        self, server: SMTP, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        reply = self.relay.script.rcpt.get(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        if self.relay.script.hold_data > 0:
            self.relay.script.hold_data -= 1
            self.relay.holding.set()
            # aiosmtpd cancels this when the client hangs up: the mail is never accepted.
            await asyncio.Event().wait()
        for recipient in envelope.rcpt_tos:
            reply = self.relay.script.data.get(recipient)
            if reply is not None:
                return reply
        raw = bytes(envelope.original_content or envelope.content)
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        with self.relay.lock:
            self.relay.received.append(
                Received(envelope.mail_from, tuple(envelope.rcpt_tos), parsed, raw)
            )
        return "250 2.0.0 OK queued"


class RecordingRelay(ThreadedSmtp):
    """An SMTP relay that records what it is given; start() / stop() / start() again."""

    name = "recording relay"

    def __init__(
        self,
        certs: Path | None = None,
        *,
        tls: str = "none",
        users: dict[str, str] | None = None,
    ) -> None:
        if tls != "none" and certs is None:
            raise ValueError("TLS needs a certificate folder")
        super().__init__(tls)
        self.certs = certs
        self.users = dict(users or {})
        self.script = _Script()
        self.received: list[Received] = []
        self.auth_logins: list[str] = []
        self.holding = threading.Event()  # set once a mail is held (script.hold_data)
        self.lock = threading.Lock()

    @property
    def ca_file(self) -> Path:
        """PEM of the CA that signed the relay's certificate."""
        assert self.certs is not None
        return self.certs / "ca.pem"

    def messages(self) -> list[Received]:
        """Every message accepted so far, in order."""
        with self.lock:
            return list(self.received)

    def prepare(self) -> None:
        """The relay's certificate, made once."""
        if self.certs is not None:
            self.certs.mkdir(parents=True, exist_ok=True)
            write_certificate(self.certs)

    def session(self) -> SMTP:
        starttls = self.tls == "starttls"
        return SMTP(
            _Handler(self),
            hostname="relay.test",
            tls_context=self.server_context() if starttls else None,
            require_starttls=starttls,
            auth_require_tls=starttls,
            auth_required=bool(self.users),
            authenticator=self._authenticate if self.users else None,
            loop=self.loop,
        )

    def server_context(self) -> ssl.SSLContext:
        assert self.certs is not None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.certs / "cert.pem", self.certs / "key.pem")
        return context

    def _authenticate(
        self, server: SMTP, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        login = data.login.decode("utf-8", "replace")
        with self.lock:
            self.auth_logins.append(login)
        accepted = self.users.get(login, "\x00").encode("utf-8") == data.password
        return AuthResult(success=accepted, handled=False)
