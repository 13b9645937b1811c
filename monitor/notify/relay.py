"""Hands one warning mail to the configured SMTP relay and says what became of it.

This is not a probe: it sends mail, so it uses aiosmtplib's client as it is, not the
read-only gate of monitor/probes. One message, one recipient per SMTP transaction, so a
5xx for one recipient fails that row only.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from enum import StrEnum

import aiosmtplib

from monitor.config.expiry_model import RelayConfig
from monitor.config.model import CredentialsConfig, TlsMode
from monitor.credentials import CredentialMissing, CredentialStore, Secret
from monitor.notify.message import bare_address
from monitor.probes.tls import client_context

_DETAIL_CHARS = 300
# RFC 3463: class.subject.detail at the start of the reply text, e.g. "5.2.2 <u> Quota...".
_ENHANCED_STATUS = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
Step = Callable[[str], Awaitable[None]]


class SendReason(StrEnum):
    """What became of one mail handed to the relay."""

    SENT = "sent"  # 250 after DATA
    REFUSED = "refused"  # 5xx to RCPT or DATA: this mail will never be taken
    DEFERRED = "deferred"  # 4xx: try again later
    SENDER_REFUSED = "sender_refused"  # 5xx to MAIL FROM: the relay's config, not the row's
    AUTH = "auth"  # the relay refused our AUTH
    CREDENTIAL = "credential_missing"  # the relay's password cannot be read
    CONNECTION = "connection"  # refused, reset or closed
    TIMEOUT = "timeout"
    TLS = "tls"

    @property
    def is_final(self) -> bool:
        """Whether retrying is pointless: the relay refused this mail itself."""
        return self is SendReason.REFUSED

    @property
    def relay_unusable(self) -> bool:
        """Whether the next mail would fail the same way: stop the round, retry later."""
        return self not in (SendReason.SENT, SendReason.REFUSED, SendReason.DEFERRED)


class RefusalPhase(StrEnum):
    """The SMTP command a refusal answered."""

    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """The relay's answer to one mail; `detail` never holds a secret.

    `code`, `enhanced_status` ("5.2.2", when the reply carries one) and `phase` describe a
    refusal of MAIL FROM, RCPT or DATA; they are None otherwise.
    """

    reason: SendReason
    detail: str = ""
    code: int | None = None
    enhanced_status: str | None = None
    phase: RefusalPhase | None = None

    @property
    def sent(self) -> bool:
        """Whether the relay took the mail."""
        return self.reason is SendReason.SENT


class RelaySender:
    """Sends mails to the relay of `config`, AUTH password read from the credentials folder.

    `step`, when given, is awaited with "connected" once the session is ready and before
    MAIL FROM: tests use it to kill the process there.
    """

    def __init__(
        self, config: RelayConfig, credentials: CredentialsConfig, *, step: Step | None = None
    ) -> None:
        self._config = config
        self._credentials = credentials
        self._step = step

    async def send(self, message: EmailMessage, sender: str, recipient: str) -> SendOutcome:
        """Send `message` to `recipient` in its own SMTP transaction."""
        password: Secret | None = None
        config = self._config
        if config.username is not None and config.credential is not None:
            store = CredentialStore(self._credentials, salt=b"")
            found = await asyncio.to_thread(store.lookup_named, config.credential)
            if isinstance(found, CredentialMissing):
                return SendOutcome(SendReason.CREDENTIAL, found.detail)
            password = found.secret
        try:
            return await self._transaction(message, sender, recipient, password)
        # Network and relay errors are outcomes; anything else is a bug and propagates.
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return _classify(exc, password)

    async def _transaction(
        self, message: EmailMessage, sender: str, recipient: str, password: Secret | None
    ) -> SendOutcome:
        config = self._config
        # Connected here so that TLS verifies tls_server_name, which aiosmtplib only uses
        # as the name checked when it is also the name it connects to.
        sock = await asyncio.wait_for(
            asyncio.to_thread(
                socket.create_connection, (config.host, config.port), config.connect_timeout
            ),
            config.connect_timeout,
        )
        client = aiosmtplib.SMTP(
            hostname=config.tls_server_name or config.host,
            sock=sock,
            use_tls=config.tls is TlsMode.IMPLICIT,
            start_tls=config.tls is TlsMode.STARTTLS,
            tls_context=client_context(config),
            timeout=config.command_timeout,
        )
        try:
            await client.connect()
            if password is not None and config.username is not None:
                await client.login(config.username, password.reveal())
            if self._step is not None:
                await self._step("connected")
            await client.send_message(message, sender=bare_address(sender), recipients=[recipient])
        except asyncio.CancelledError:
            # A stop (SIGTERM): hang up at once. A polite QUIT would wait command_timeout
            # for a relay that may be stuck mid-transaction, past systemd's TimeoutStopSec;
            # the row stays pending and goes again, same Message-ID, after the restart.
            client.close()
            raise
        finally:
            if client.is_connected:
                try:
                    await client.quit()
                except aiosmtplib.SMTPException:
                    client.close()  # the mail's fate was settled before QUIT
            else:
                sock.close()
        return SendOutcome(SendReason.SENT)


def _classify(
    exc: aiosmtplib.SMTPException | OSError | TimeoutError, password: Secret | None
) -> SendOutcome:
    """The one boundary where the relay's errors become outcomes."""
    reason = SendReason.CONNECTION
    code: int | None = None
    phase: RefusalPhase | None = None
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        code = exc.recipients[0].code
        reason = SendReason.REFUSED if code >= 500 else SendReason.DEFERRED
        text, phase = exc.recipients[0].message, RefusalPhase.RCPT
    elif isinstance(exc, aiosmtplib.SMTPSenderRefused):
        code, text, phase = exc.code, exc.message, RefusalPhase.MAIL
        reason = SendReason.SENDER_REFUSED if code >= 500 else SendReason.DEFERRED
    elif isinstance(exc, aiosmtplib.SMTPDataError):
        code, text, phase = exc.code, exc.message, RefusalPhase.DATA
        reason = SendReason.REFUSED if code >= 500 else SendReason.DEFERRED
    elif isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        code, text, reason = exc.code, exc.message, SendReason.AUTH
    elif isinstance(exc, TimeoutError | aiosmtplib.SMTPTimeoutError):
        text, reason = "no answer in time", SendReason.TIMEOUT
    elif isinstance(exc, ssl.SSLError | ssl.CertificateError):
        text, reason = f"TLS: {exc}", SendReason.TLS
    elif isinstance(exc, aiosmtplib.SMTPResponseException):
        # A 4xx or 5xx to EHLO or STARTTLS: the relay is not taking mail now.
        code, text, reason = exc.code, exc.message, SendReason.DEFERRED
    else:
        text = str(exc) or type(exc).__name__
        if isinstance(exc.__cause__, ssl.SSLError):
            reason = SendReason.TLS
    detail = f"{code} {text}" if code is not None else text
    if password is not None and password.reveal():
        detail = detail.replace(password.reveal(), "********")
    enhanced = _ENHANCED_STATUS.match(text.lstrip()) if phase is not None else None
    return SendOutcome(
        reason,
        " ".join(detail.split())[:_DETAIL_CHARS],
        code=code if phase is not None else None,
        enhanced_status=".".join(enhanced.groups()) if enhanced else None,
        phase=phase,
    )
