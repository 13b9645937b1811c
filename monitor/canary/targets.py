"""Which mailboxes get a canary: those listed, and a stable sample of the rest."""

from __future__ import annotations

from monitor.config.model import Config, Mailbox
from monitor.scheduling.plan import stable_key


def canary_targets(config: Config) -> list[Mailbox]:
    """The listed mailboxes (address or local part), then `sample` more, the same ones on
    every run and start: a sample drawn anew each day would visit every school in turn.

    Drawn from the whole fleet, then cut to this instance's shard: N shards send `sample`
    canaries in all, not N times as many."""
    canary = config.canary
    fleet = config.fleet
    by_name = {m.address: m for m in fleet} | {m.local_part: m for m in fleet}
    chosen = list(
        dict.fromkeys(by_name[name.lower()] for name in canary.mailboxes if name.lower() in by_name)
    )
    if canary.sample:
        taken = {m.address for m in chosen}
        rest = sorted(
            (m for m in fleet if m.address not in taken),
            key=lambda m: stable_key(f"canary:{m.address}"),
        )
        chosen += rest[: canary.sample]
    if config.sharding is None:
        return chosen
    mine = {m.address for m in config.mailboxes}
    return [m for m in chosen if m.address in mine]


def unknown_names(config: Config) -> list[str]:
    """Listed canary mailboxes that are not in the inventory (for `check`)."""
    fleet = config.fleet
    names = {m.address for m in fleet} | {m.local_part for m in fleet}
    return [name for name in config.canary.mailboxes if name.lower() not in names]
