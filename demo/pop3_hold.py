"""A POP3 session the demo keeps open on one mailbox, as a school's mail client would.

With Dovecot's `pop3_lock_session = yes` the session holds the mailbox's POP3 lock, so the
daemon's POP3 probe of that mailbox waits, then gets `-ERR [IN-USE]` (reason `in_use`).
"""

from __future__ import annotations

import contextlib
import poplib
import ssl
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

# Dovecot drops an idle POP3 client after 10 minutes; a NOOP a minute stays well inside.
NOOP_EVERY_SECONDS = 60.0
# After a lost session, wait this long before logging in again (the lock is free meanwhile).
RECONNECT_AFTER_SECONDS = 5.0
SOCKET_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Pop3Login:
    """Where and as whom the held session logs in."""

    host: str
    port: int  # POP3 over implicit TLS
    context: ssl.SSLContext
    login: str
    password: str = field(repr=False)


@contextlib.contextmanager
def pop3_session_held(account: Pop3Login) -> Iterator[None]:
    """Log in (an error raises here, before the demo goes on), keep the session alive with
    NOOP in a thread, and end it with QUIT, which frees the lock, on leaving."""
    stopping = threading.Event()
    session = _log_in(account)
    thread = threading.Thread(target=_keep, args=(account, session, stopping), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stopping.set()
        thread.join(SOCKET_TIMEOUT_SECONDS + 1)


def _log_in(account: Pop3Login) -> poplib.POP3_SSL:
    session = poplib.POP3_SSL(
        account.host, account.port, context=account.context, timeout=SOCKET_TIMEOUT_SECONDS
    )
    try:
        session.user(account.login)
        session.pass_(account.password)
    except BaseException:
        session.close()
        raise
    return session


def _keep(account: Pop3Login, session: poplib.POP3_SSL | None, stopping: threading.Event) -> None:
    while not stopping.wait(NOOP_EVERY_SECONDS if session else RECONNECT_AFTER_SECONDS):
        try:
            if session is None:
                session = _log_in(account)
            else:
                session.noop()
        except (OSError, poplib.error_proto) as exc:
            # poplib's errors carry the server's reply, never the password.
            print(f"demo: POP3 session of {account.login} lost ({exc}); retrying", file=sys.stderr)
            if session is not None:
                session.close()
            session = None
    if session is not None:
        with contextlib.suppress(OSError, poplib.error_proto):
            session.quit()
        session.close()
