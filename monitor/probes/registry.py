"""Which module probes which protocol: the one place a new protocol is plugged in."""

from __future__ import annotations

from monitor.probes import imap, pop3, smtp
from monitor.probes.contract import Prober
from monitor.probes.result import Protocol

PROBERS: dict[Protocol, Prober] = {
    prober.protocol: prober for prober in (imap.PROBER, pop3.PROBER, smtp.PROBER)
}


def prober(protocol: Protocol) -> Prober:
    """The prober of a protocol."""
    return PROBERS[protocol]
