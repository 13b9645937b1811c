"""What a POP3 server can do to a probe, as exceptions under one root.

Each leaf also inherits the builtin it resembles, as aiosmtplib's errors do; the probe
turns them into reasons at one boundary (pop3.classify_exception).
"""

from __future__ import annotations


class Pop3Error(Exception):
    """Root of the errors a POP3 server can cause."""


class ConnectionLost(Pop3Error, ConnectionError):
    """The server closed the connection before the probe was done."""


class GreetingRefused(Pop3Error, ConnectionError):
    """The server greeted with `-ERR`: it will not serve this connection."""


class ProtocolFault(Pop3Error, ValueError):
    """The server sent what POP3 does not allow, or what leaves the probe no way on."""
