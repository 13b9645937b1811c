"""Splitting the fleet across instances by rendezvous hashing. Pure: no I/O.

Each mailbox belongs to the shard with the highest score hash(shard index, address).
Going from N to N+1 shards, a mailbox moves only if the new shard outscores every old
one, which happens to about 1/(N+1) of them, and only onto the new shard: the others keep
their shard and the records in its state file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from monitor.config.errors import shown

if TYPE_CHECKING:
    from monitor.config.model import Config, Mailbox

MAX_SHARDS = 1000
SHARD_ENV = "BMA_SHARD"  # set by the environment, e.g. from a Kubernetes pod's ordinal
SHARD_FORM = (
    f"I/N: N shards (1 to {MAX_SHARDS}) and this instance's index I, counted from 0 "
    "(0 to N-1, like a Kubernetes StatefulSet's pod ordinals), e.g. 0/3, 1/3 or 2/3"
)
_SHARD = re.compile(r"^\s*(\d{1,6})\s*/\s*(\d{1,6})\s*$")


@dataclass(frozen=True, slots=True)
class Shard:
    """This instance's part of the fleet: shard `index` of `count`, 0 <= index < count."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS:
            raise ValueError(f"the shard count must be from 1 to {MAX_SHARDS} (got {self.count})")
        if not 0 <= self.index < self.count:
            last = self.count - 1
            raise ValueError(
                f"shard index {self.index} is out of range for {self.count} shard(s): indexes "
                f"count from 0, like StatefulSet pod ordinals, so the last is {last}/{self.count}"
            )

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, address: str) -> bool:
        """Whether this shard probes and warns the mailbox at `address`."""
        return owner(address, self.count) == self.index


def parse_shard(text: object) -> Shard:
    """Read `I/N`; a ValueError says what is wrong in words an operator can act on."""
    match = _SHARD.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"must be {SHARD_FORM} (got {shown(text)})")
    return Shard(int(match[1]), int(match[2]))


def score(index: int, address: str) -> int:
    """The rendezvous score of a shard for a mailbox: stable across runs, hosts and versions
    (blake2b, not Python's hash(), which is salted per process)."""
    data = f"{index}\0{address.strip().lower()}".encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8, person=b"bma-shard").digest())


def owner(address: str, count: int) -> int:
    """The index of the shard, among `count`, that owns `address`."""
    # Ties (one in 2**64) go to the lower index, so the answer never depends on order.
    return max(range(count), key=lambda index: (score(index, address), -index))


def owned(mailboxes: Iterable[Mailbox], shard: Shard | None) -> tuple[Mailbox, ...]:
    """The mailboxes of `shard`, in their order; all of them when not sharded."""
    if shard is None or shard.count == 1:
        return tuple(mailboxes)
    return tuple(m for m in mailboxes if shard.owns(m.address))


def shard_state_path(path: Path, shard: Shard) -> Path:
    """The state file of one shard: `state.db` becomes `state.shard-1.db`.

    Named by index alone: going from N to N+1 shards moves mailboxes only onto the new
    shard, so every other shard keeps its file, and all the records of its mailboxes.
    """
    return path.with_name(f"{path.stem}.shard-{shard.index}{path.suffix}")


@dataclass(frozen=True, slots=True)
class Sharding:
    """What a sharded Config was cut from: its shard, the whole fleet, the configured path."""

    shard: Shard
    fleet: tuple[Mailbox, ...]
    state_path: Path  # as configured, before the shard's name was given to it


def sharded(config: Config, shard: Shard | None) -> Config:
    """`config` for one shard: its mailboxes only, and its own state file (and so its own
    outbox, which lives there). None: the whole fleet, as configured."""
    fleet = config.fleet
    path = config.sharding.state_path if config.sharding else config.state.path
    if shard is None:
        state = config.state.model_copy(update={"path": path})
        return dataclasses.replace(config, mailboxes=fleet, state=state, sharding=None)
    state = config.state.model_copy(update={"path": shard_state_path(path, shard)})
    return dataclasses.replace(
        config,
        mailboxes=owned(fleet, shard),
        state=state,
        sharding=Sharding(shard, fleet, path),
    )
