"""Sharding the fleet: rendezvous hashing covers it exactly once, moves little when a shard is
added, and reads `I/N` (indexes from 0) from the flag, the environment or the file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from monitor.cli import EXIT_USAGE, main
from monitor.config import ConfigError, Kind, Mailbox, load_config
from monitor.config.shards import Shard, owner, parse_shard, shard_state_path, sharded

INVENTORY = tuple(f"{kind}{n:06d}@adm.cfwb.be" for kind in ("ec", "po") for n in range(5000))
MAX_COUNT = 8
MOVE_SLACK = 0.02  # over the 1/(N+1) that rendezvous hashing moves on average

# Computed once with this code and kept: a changed hash would move every mailbox to another
# shard (and away from its state file), so it must be a deliberate, noticed change.
PINNED = {
    "ec001234@adm.cfwb.be": (1, 7),  # (shard of 3, shard of 8)
    "po000042@adm.cfwb.be": (1, 1),
    "ec000001@adm.cfwb.be": (2, 6),
    "ec099999@adm.cfwb.be": (0, 5),
}


@pytest.fixture(scope="module")
def owners() -> dict[int, list[int]]:
    """Each inventory mailbox's shard, for every count from 1 to MAX_COUNT + 1."""
    return {n: [owner(a, n) for a in INVENTORY] for n in range(1, MAX_COUNT + 2)}


@pytest.mark.parametrize("count", range(1, MAX_COUNT + 1))
def test_every_mailbox_in_exactly_one_shard(count: int) -> None:
    """Each of 10,000 mailboxes is owned by exactly one of N shards, and no shard is empty."""
    shards = [Shard(i, count) for i in range(count)]
    owning = [[s.index for s in shards if s.owns(a)] for a in INVENTORY]
    assert all(len(found) == 1 for found in owning)
    sizes = [sum(1 for found in owning if found == [i]) for i in range(count)]
    assert sum(sizes) == len(INVENTORY)
    # Even enough to plan by: each within 15 % of an equal share at 10,000 mailboxes.
    assert all(abs(size - len(INVENTORY) / count) < 0.15 * len(INVENTORY) / count for size in sizes)


@pytest.mark.parametrize("count", range(1, MAX_COUNT + 1))
def test_adding_a_shard_moves_a_fair_share_onto_it_only(
    count: int, owners: dict[int, list[int]]
) -> None:
    """Going from N to N+1 shards moves at most 1/(N+1) + 2 % of the mailboxes, all onto the
    new shard: every other mailbox keeps its shard and its state file."""
    before, after = owners[count], owners[count + 1]
    moved = [(old, new) for old, new in zip(before, after, strict=True) if old != new]
    assert len(moved) / len(INVENTORY) <= 1 / (count + 1) + MOVE_SLACK
    assert len(moved) / len(INVENTORY) >= 1 / (count + 1) - MOVE_SLACK
    assert {new for _, new in moved} == {count}  # the new shard's index is N


def test_assignment_is_pinned_and_ignores_case() -> None:
    """The owner of an address is the same on every run and host, whatever its case."""
    for address, (of_three, of_eight) in PINNED.items():
        assert (owner(address, 3), owner(address, 8)) == (of_three, of_eight)
        assert owner(address.upper(), 8) == of_eight


def test_assignment_is_the_same_in_another_process() -> None:
    """A fresh interpreter (another hash seed for str) assigns the same shards."""
    sample = INVENTORY[::997]
    code = (
        "import sys; from monitor.config.shards import owner; "
        "print(','.join(str(owner(a, 5)) for a in sys.argv[1:]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *sample],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
        cwd=Path(__file__).parent.parent,
    )
    assert done.stdout.strip() == ",".join(str(owner(a, 5)) for a in sample)


@pytest.mark.parametrize(
    ("text", "shard"), [("0/1", Shard(0, 1)), ("2/3", Shard(2, 3)), (" 7 / 8 ", Shard(7, 8))]
)
def test_parse_shard(text: str, shard: Shard) -> None:
    """`I/N` reads as shard I of N."""
    assert parse_shard(text) == shard
    assert str(parse_shard(text)) == text.replace(" ", "")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3/3", "shard index 3 is out of range for 3 shard(s): indexes count from 0, like "
         "StatefulSet pod ordinals, so the last is 2/3"),
        ("1/0", "the shard count must be from 1 to 1000 (got 0)"),
        ("0/1001", "the shard count must be from 1 to 1000 (got 1001)"),
        ("1", "must be I/N: N shards (1 to 1000) and this instance's index I, counted from 0"),
        ("-1/3", "must be I/N"),
        ("a/b", "must be I/N"),
        (3, "(got 3)"),
    ],
)  # fmt: skip
def test_parse_shard_refuses(text: object, expected: str) -> None:
    """A shard out of range or not `I/N` is refused with the rule, saying indexes start at 0."""
    with pytest.raises(ValueError) as caught:
        parse_shard(text)
    assert expected in str(caught.value)


def test_shard_flag_errors(capsys: pytest.CaptureFixture[str]) -> None:
    """`--shard 3/3` stops the command with a usage error naming the rule."""
    with pytest.raises(SystemExit) as caught:
        main(["run", "--config", "x.yaml", "--shard", "3/3"])
    assert caught.value.code == EXIT_USAGE
    error = capsys.readouterr().err
    assert "argument --shard: shard index 3 is out of range for 3 shard(s)" in error
    assert "the last is 2/3" in error


def test_state_path_named_by_index() -> None:
    """A shard's state file is the configured one with the index in its name, not the count."""
    path = Path("/var/lib/bma-monitor/state.db")
    assert shard_state_path(path, Shard(1, 3)) == Path("/var/lib/bma-monitor/state.shard-1.db")
    assert shard_state_path(path, Shard(1, 4)) == shard_state_path(path, Shard(1, 3))
    assert shard_state_path(Path("state"), Shard(0, 2)) == Path("state.shard-0")


def _config_file(tmp_path: Path, extra: str = "") -> Path:
    """A config of eight mailboxes, with `extra` top-level YAML."""
    lines = [f"  - address: ec0000{n:02d}@adm.cfwb.be" for n in range(8)]
    path = tmp_path / "bma.yaml"
    path.write_text(
        "servers: {main: {imap: {host: 127.0.0.1}}}\n"
        "state: {path: state.db}\n" + extra + "mailboxes:\n" + "\n".join(lines) + "\n"
    )
    return path


def test_shard_key_flag_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file's `shard` cuts the fleet; BMA_SHARD overrides it, and --shard both."""
    monkeypatch.delenv("BMA_SHARD", raising=False)
    path = _config_file(tmp_path, 'shard: "1/2"\n')
    config = load_config(path)
    assert config.shard == Shard(1, 2)
    assert config.state.path == tmp_path / "state.shard-1.db"
    assert len(config.fleet) == 8
    assert [m.address for m in config.mailboxes] == [
        m.address for m in config.fleet if owner(m.address, 2) == 1
    ]
    monkeypatch.setenv("BMA_SHARD", "0/2")
    assert load_config(path).shard == Shard(0, 2)
    assert load_config(path, shard=Shard(2, 3)).shard == Shard(2, 3)
    assert load_config(path, shard=Shard(2, 3)).state.path == tmp_path / "state.shard-2.db"


def test_shard_key_errors_name_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad `shard` key, or a bad BMA_SHARD, is a configuration error naming where it is."""
    monkeypatch.delenv("BMA_SHARD", raising=False)
    path = _config_file(tmp_path, "shard: 3/3\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.listed() == [
        f"{path}:3: shard: shard index 3 is out of range for 3 shard(s): indexes count from 0, "
        "like StatefulSet pod ordinals, so the last is 2/3"
    ]
    monkeypatch.setenv("BMA_SHARD", "two")
    with pytest.raises(ConfigError) as caught:
        load_config(_config_file(tmp_path))
    [problem] = caught.value.listed()
    assert problem.startswith(f"{path}: environment variable BMA_SHARD: must be I/N")


def test_sharded_config_goes_back_to_the_whole_fleet(tmp_path: Path) -> None:
    """Cutting a sharded config to another shard, or to none, starts from the whole fleet."""
    config = load_config(_config_file(tmp_path), shard=Shard(0, 3))
    other = sharded(config, Shard(2, 3))
    assert {m.address for m in other.mailboxes} == {
        m.address for m in config.fleet if owner(m.address, 3) == 2
    }
    whole = sharded(other, None)
    assert whole.shard is None and whole.mailboxes == config.fleet
    assert whole.state.path == tmp_path / "state.db"


def test_owned_mailboxes_match_shard() -> None:
    """The filter exposed for other commands keeps exactly the shard's mailboxes, in order."""
    from monitor.config.shards import owned

    boxes = [Mailbox(a, Kind.EC, a[2:8], "main") for a in INVENTORY[:300]]
    parts = [owned(boxes, Shard(i, 4)) for i in range(4)]
    assert sorted(m.address for part in parts for m in part) == sorted(m.address for m in boxes)
    assert owned(boxes, None) == tuple(boxes)
    assert list(parts[1]) == [m for m in boxes if owner(m.address, 4) == 1]


def test_check_and_outbox_take_the_shard(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`check --shard` says the shard's share and file; `outbox --shard` reads that file."""
    monkeypatch.delenv("BMA_SHARD", raising=False)
    path = _config_file(tmp_path)
    mine = sum(1 for n in range(8) if owner(f"ec0000{n:02d}@adm.cfwb.be", 3) == 2)
    assert main(["check", "--config", str(path), "--shard", "2/3"]) == 0
    out = capsys.readouterr().out
    assert f"{path}: valid; {mine} mailboxes" in out
    assert (
        f"shard 2/3 (indexes from 0): {mine} of the fleet's 8 mailboxes; "
        f"state file {tmp_path / 'state.shard-2.db'}"
    ) in out
    assert main(["outbox", "--config", str(path), "--shard", "2/3", "--json"]) == 0
    assert [p.name for p in tmp_path.glob("state*.db")] == ["state.shard-2.db"]
