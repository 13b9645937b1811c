"""When each mailbox is probed within a cycle: evenly spread, stable, jittered."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence


def stable_key(address: str) -> bytes:
    """An order for mailboxes that is the same on every start, and unrelated to FASE order."""
    return hashlib.blake2b(address.encode("utf-8"), digest_size=8).digest()


def slot_offsets(addresses: Sequence[str], interval: float) -> dict[str, float]:
    """Each mailbox's offset in the cycle: one slot each, slots evenly spaced."""
    if not addresses:
        return {}
    step = interval / len(addresses)
    ordered = sorted(addresses, key=stable_key)
    return {address: i * step for i, address in enumerate(ordered)}


def jittered(offset: float, step: float, jitter: float, rng: random.Random) -> float:
    """Move an offset by up to ±jitter/2 of a slot, so cycles do not phase-lock with others."""
    return max(0.0, offset + (rng.random() - 0.5) * jitter * step)
