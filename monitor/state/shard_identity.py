"""Which shard a state file belongs to, recorded in it so that no shard runs on another's.

A shard's file holds the lock-outs, login attempts and outbox of its own mailboxes. Opened
by another shard, the lock-outs of that shard's mailboxes would be missing (refused
passwords sent again) and the outbox rows of mailboxes it does not own would be sent while
their owner may send them too. So a file recorded for another index is refused. A changed
shard count keeps the index, and so the file: the mailboxes that stayed keep their records.
"""

from __future__ import annotations

from dataclasses import dataclass

from monitor.config.shards import Shard, parse_shard
from monitor.state.store import StateError, StateStore

_KEY = "shard"


class WrongShard(StateError):
    """The state file records another shard's identity."""


@dataclass(frozen=True, slots=True)
class ShardClaim:
    """The identity the file recorded before this instance claimed it (None: none yet)."""

    before: Shard | None
    now: Shard | None

    @property
    def count_changed(self) -> bool:
        """Whether the fleet was split into another number of shards since the last run."""
        return self.before is not None and self.now is not None and self.before != self.now


def claim_shard(store: StateStore, shard: Shard | None) -> ShardClaim:
    """Record `shard` as the file's identity, or raise WrongShard if it is another index's.

    A file of the whole fleet (no identity yet) may become a shard's: it holds at least the
    records of that shard's mailboxes. A shard's file may become the whole fleet's again.
    """
    with store.writing() as db:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (_KEY,)).fetchone()
        before = _recorded(row[0]) if row is not None else None
        if shard is not None and before is not None and before.index != shard.index:
            raise WrongShard(
                f"state file {store.path} belongs to shard {before} (index {before.index}), "
                f"not to shard {shard} (index {shard.index}): each shard keeps its own lock-outs "
                "and outbox, and running on another's would send refused passwords and warnings "
                "twice; point state.path at this shard's own file"
            )
        if shard is None:
            db.execute("DELETE FROM meta WHERE key = ?", (_KEY,))
        else:
            db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (_KEY, str(shard)),
            )
    return ShardClaim(before, shard)


def _recorded(value: object) -> Shard | None:
    """The identity stored, or None when it cannot be read (then the file is claimed anew)."""
    try:
        return parse_shard(value.decode() if isinstance(value, bytes) else value)
    except (ValueError, UnicodeDecodeError):
        return None
