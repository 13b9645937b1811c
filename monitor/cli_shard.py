"""The `--shard I/N` option, shared by every command that reads the fleet or a state file."""

from __future__ import annotations

import argparse

from monitor.config.shards import SHARD_ENV, SHARD_FORM, Shard, parse_shard


def add_shard_option(parser: argparse.ArgumentParser) -> None:
    """Give `parser` the `--shard I/N` option (default None: $BMA_SHARD, else the file's)."""
    parser.add_argument(
        "--shard",
        type=_shard,
        metavar="I/N",
        help=f"this instance's part of the fleet, {SHARD_FORM}; its state file is the "
        "configured one named for the index (state.shard-I.db); overrides "
        f"${SHARD_ENV} and the configuration's `shard`",
    )


def _shard(text: str) -> Shard:
    """The `--shard` value; argparse turns the error into a usage message."""
    try:
        return parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
