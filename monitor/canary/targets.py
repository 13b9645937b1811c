"""Which mailboxes get a canary: those listed, and a stable sample of the rest."""

from __future__ import annotations

from monitor.config.model import Config, Mailbox
from monitor.scheduling.plan import stable_key


def canary_targets(config: Config) -> list[Mailbox]:
    """The listed mailboxes (address or local part), then `sample` more, the same ones on
    every run and start: a sample drawn anew each day would visit every school in turn."""
    canary = config.canary
    by_name = {m.address: m for m in config.mailboxes} | {m.local_part: m for m in config.mailboxes}
    chosen = list(
        dict.fromkeys(by_name[name.lower()] for name in canary.mailboxes if name.lower() in by_name)
    )
    if canary.sample:
        taken = {m.address for m in chosen}
        rest = sorted(
            (m for m in config.mailboxes if m.address not in taken),
            key=lambda m: stable_key(f"canary:{m.address}"),
        )
        chosen += rest[: canary.sample]
    return chosen


def unknown_names(config: Config) -> list[str]:
    """Listed canary mailboxes that are not in the inventory (for `check`)."""
    names = {m.address for m in config.mailboxes} | {m.local_part for m in config.mailboxes}
    return [name for name in config.canary.mailboxes if name.lower() not in names]
