"""One logged-in IMAP session for the canary's work, each command under its own deadline.

Errors become a MailboxAccessError with the probe's reason vocabulary at this one
boundary; a ForbiddenCommand (a bug) is not translated and propagates.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Self

from aioimaplib import aioimaplib

from monitor.config.model import EndpointConfig
from monitor.credentials import Secret
from monitor.probes.contract import Clock
from monitor.probes.imap import LoginRefused, classify_exception, logged_in
from monitor.probes.imap_replies import ReplyError, parse_search_uids, status_text
from monitor.probes.imap_session import ImapSession, Response
from monitor.probes.readonly import ImapGate
from monitor.probes.redact import printable
from monitor.probes.result import Reason


class MailboxAccessError(Exception):
    """The mailbox could not be read or changed; `reason` is the probe vocabulary's."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class MailboxSession:
    """An async context holding one logged-in session whose commands pass `gate`."""

    def __init__(
        self,
        endpoint: EndpointConfig,
        address: str,
        secret: Secret,
        *,
        context: ssl.SSLContext | None,
        deadline: float,
        gate: ImapGate,
        clock: Clock = time.time,
    ) -> None:
        self.endpoint = endpoint
        self.address = address
        self._login: AbstractAsyncContextManager[ImapSession] = logged_in(
            endpoint, address, secret, context=context, deadline=deadline, gate=gate, clock=clock
        )
        self._session: ImapSession | None = None

    @property
    def session(self) -> ImapSession:
        """The logged-in session; only inside the `async with`."""
        if self._session is None:
            raise RuntimeError("use the mailbox inside `async with`")
        return self._session

    async def __aenter__(self) -> Self:
        try:
            self._session = await self._login.__aenter__()
        except LoginRefused as exc:
            raise MailboxAccessError(exc.reason, exc.detail) from exc
        except _SERVER_FAULTS as exc:
            raise _translated(exc) from exc
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._session = None
        await self._login.__aexit__(kind, exc, traceback)

    async def ok(self, pending: Awaitable[Response], what: str) -> Response:
        """Await one command under the endpoint's command timeout; anything but OK raises."""
        response = await self.answer(pending)
        if response.result != "OK":
            text = printable(status_text(response.lines)) or response.result
            raise MailboxAccessError(Reason.SERVER_ERROR, f"{what} refused: {text}")
        return response

    async def uid_search(self, criteria: str) -> list[int]:
        """The UIDs a UID SEARCH finds in the open folder."""
        response = await self.ok(self.session.uid("SEARCH", criteria), "UID SEARCH")
        return sorted(parse_search_uids(response.lines))

    async def answer(self, pending: Awaitable[Response]) -> Response:
        """Await one command under the endpoint's command timeout, whatever it answers."""
        try:
            async with asyncio.timeout(self.endpoint.command_timeout):
                return await pending
        except _SERVER_FAULTS as exc:
            raise _translated(exc) from exc


# What a server or the network can cause; anything else (ForbiddenCommand) is a bug.
_SERVER_FAULTS = (OSError, ReplyError, aioimaplib.AioImapException)  # OSError: timeouts too


def _translated(exc: Exception) -> MailboxAccessError:
    """The MailboxAccessError for a server's or network's fault."""
    reason, detail = classify_exception(exc, None)
    return MailboxAccessError(reason, detail)
