"""The flat server form: an IMAP-only server written without `imap:`, as before POP3 and SMTP."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from monitor.config.model import EndpointConfig
from monitor.config.yamlsource import Location
from monitor.probes.result import Protocol

_ENDPOINT_KEYS = frozenset(EndpointConfig.model_fields)
_PROTOCOL_KEYS = frozenset(str(p) for p in Protocol)


@dataclass(frozen=True, slots=True)
class FlatServers:
    """The names of the servers written flat, to report their settings where they stand."""

    names: frozenset[Any] = frozenset()

    def written(self, at: Location) -> Location:
        """Where a place of the expanded document is written in the file."""
        if len(at) >= 3 and at[0] == "servers" and at[2] == "imap" and at[1] in self.names:
            return at[:2] + at[3:]
        return at


def expand_flat_servers(document: dict[Any, Any]) -> tuple[dict[Any, Any], FlatServers]:
    """The document with each flat server moved under `imap:`, and which ones were.

    A server mixing flat settings with protocol sections is left as written: the model
    refuses it, naming the keys.
    """
    servers = document.get("servers")
    if not isinstance(servers, dict):
        return document, FlatServers()
    flat = frozenset(
        name
        for name, server in servers.items()
        if isinstance(server, dict)
        and _ENDPOINT_KEYS & set(server)
        and not _PROTOCOL_KEYS & set(server)
    )
    if not flat:
        return document, FlatServers()
    # New mappings, not edits: an alias (`backup: *main`) shares its mapping with its anchor.
    expanded = {name: {"imap": s} if name in flat else s for name, s in servers.items()}
    return {**document, "servers": expanded}, FlatServers(flat)
