"""TLS for every protocol: the client context of an endpoint, and what a handshake showed."""

from __future__ import annotations

import ssl
from collections import OrderedDict
from typing import Any

from monitor.config.expiry_model import RelayConfig
from monitor.config.model import EndpointConfig, TlsMode
from monitor.probes.result import TlsFacts


def client_context(endpoint: EndpointConfig | RelayConfig) -> ssl.SSLContext | None:
    """A verifying client context for the endpoint (or relay), or None for plain text."""
    if endpoint.tls is TlsMode.NONE:
        return None
    context = ssl.create_default_context(
        cafile=str(endpoint.ca_file) if endpoint.ca_file is not None else None
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


# Expiry by the server certificate's DER bytes: reading the chain and parsing its dates
# took a third of a millisecond per probe, for an answer that changes once a year.
_EXPIRIES: OrderedDict[bytes, float | None] = OrderedDict()
_EXPIRIES_KEPT = 256  # distinct server certificates remembered; a fleet has a handful


def tls_facts(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> TlsFacts | None:
    """The protocol version and the earliest certificate expiry of a completed handshake.

    Read from the connection the probe already made: no second connection per endpoint.
    """
    if ssl_object is None:
        return None
    version = ssl_object.version()
    if version is None:  # the handshake has not completed
        return None
    leaf = ssl_object.getpeercert(binary_form=True) or b""
    if leaf in _EXPIRIES:
        _EXPIRIES.move_to_end(leaf)
        expiry = _EXPIRIES[leaf]
    else:
        expiry = _EXPIRIES[leaf] = _earliest_expiry(ssl_object)
        if len(_EXPIRIES) > _EXPIRIES_KEPT:
            _EXPIRIES.popitem(last=False)
    return TlsFacts(version=version, cert_not_after=expiry)


def _earliest_expiry(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> float | None:
    """The soonest `notAfter` of the verified chain; the leaf's where the chain is not exposed.

    The C object behind the SSL object gives the chain as decodable certificates (Python
    3.10 on); the public method of 3.13 gives DER bytes only, which the stdlib cannot read.
    """
    chain_of = getattr(getattr(ssl_object, "_sslobj", None), "get_verified_chain", None)
    infos: list[dict[str, Any]] = []
    if chain_of is not None:
        try:
            infos = [dict(cert.get_info()) for cert in chain_of() or ()]
        except (ssl.SSLError, ValueError, TypeError, AttributeError):
            infos = []
    if not infos:
        peer = ssl_object.getpeercert()
        infos = [peer] if peer else []
    expiries = [
        ssl.cert_time_to_seconds(info["notAfter"]) for info in infos if info.get("notAfter")
    ]
    return float(min(expiries)) if expiries else None
