"""Per-endpoint state, (server, protocol): its outage detector and its connection slots."""

from __future__ import annotations

from monitor.config.model import Config
from monitor.probes.registry import PROBERS
from monitor.scheduling.limits import Slots
from monitor.scheduling.outage import OutageDetector, ServerState
from monitor.scheduling.view import EndpointKey


class Endpoints:
    """The detectors and slots of every configured endpoint, kept across reloads."""

    def __init__(self) -> None:
        self.detectors: dict[EndpointKey, OutageDetector] = {}
        self._slots: dict[EndpointKey, Slots] = {}

    def apply(self, config: Config) -> None:
        """Adopt a configuration: endpoints added or removed, thresholds and caps renewed."""
        outage = config.probing.outage
        for detector in self.detectors.values():
            detector.reconfigure(outage)
        endpoints = {
            (name, protocol): endpoint
            for name, server in config.servers.items()
            for protocol, endpoint in server.endpoints.items()
        }
        self.detectors = {
            key: self.detectors.get(key) or OutageDetector(PROBERS[key[1]], outage)
            for key in endpoints
        }
        # Resized in place: probes running now hold slots of these very objects.
        slots: dict[EndpointKey, Slots] = {}
        for key, endpoint in endpoints.items():
            slots[key] = self._slots.get(key) or Slots(endpoint.max_connections)
            slots[key].resize(endpoint.max_connections)
        self._slots = slots

    def slots(self, key: EndpointKey) -> Slots:
        """The endpoint's connection slots; any will do for one a reload just removed (its
        probe then reports it as no longer configured)."""
        return self._slots.get(key) or Slots(1)

    def states(self) -> dict[EndpointKey, ServerState]:
        """What the metrics show of each endpoint."""
        return {key: detector.state() for key, detector in list(self.detectors.items())}
