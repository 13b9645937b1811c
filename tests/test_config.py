"""Configuration loading: defaults, inventories, and an exact error for each broken rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.config import ConfigError, Kind, TlsMode, load_config
from monitor.config.model import parse_duration
from monitor.config.yamlsource import MAX_FILE_BYTES

DATA = Path(__file__).parent / "testdata" / "config"
EXAMPLE = Path(__file__).parent.parent / "config" / "example.yaml"

# Each invalid file and the one error it must produce: file:line: path: rule.
INVALID = {
    "invalid-address.yaml": "invalid-address.yaml:4: mailboxes[0].address: must be ec or po, "
    "six digits, then @adm.cfwb.be (got 'ec01234@adm.cfwb.be')",
    "invalid-alias-bomb.yaml": "invalid-alias-bomb.yaml:8: aliases expand to more than 250,000 "
    "nodes",
    "invalid-alias-cycle.yaml": "invalid-alias-cycle.yaml:2: an alias refers to a node that "
    "contains it",
    "invalid-alias-depth.yaml": "invalid-alias-depth.yaml:4: nested deeper than 20 levels once "
    "aliases are expanded",
    "invalid-contact.yaml": "invalid-contact.yaml:4: mailboxes[0].contact: "
    "must be an e-mail address (got 'not-an-address')",
    "invalid-csv-header.yaml": "badheader.csv:1: header must name the columns fase, kind[, name, "
    "contact, server]; unknown column(s): number, type; missing column(s): fase, kind",
    "invalid-csv.yaml": "bad.csv:3: fase: must be exactly six digits, e.g. '001234' (got '12345')",
    "invalid-date.yaml": "invalid-date.yaml:4: invalid YAML: '2024-13-01' is not a valid date",
    "invalid-domain.yaml": "invalid-domain.yaml:4: mailboxes[0].address: must be ec or po, six "
    "digits, then @adm.cfwb.be (got 'ec001234@gmail.com')",
    "invalid-duplicate-key.yaml": "invalid-duplicate-key.yaml:5: probing.interval: duplicate key",
    "invalid-duplicate.yaml": "invalid-duplicate.yaml:5: mailboxes[1]: duplicate mailbox "
    "ec001234@adm.cfwb.be (first at {dir}/invalid-duplicate.yaml:4)",
    "invalid-duration.yaml": "invalid-duration.yaml:4: probing.interval: must be a duration like "
    "30s, 5m or 6h (got 'soon')",
    "invalid-fase-number.yaml": "invalid-fase-number.yaml:4: mailboxes[0].fase: must be a quoted "
    "string of six digits, e.g. fase: '001234'",
    "invalid-inventory-bomb.yaml": "bomb-inventory.yaml:6: aliases expand to more than 250,000 "
    "nodes",
    "invalid-kind.yaml": "invalid-kind.yaml:5: mailboxes[0].kind: input should be 'ec' or 'po'",
    "invalid-long-number.yaml": "invalid-long-number.yaml:4: invalid YAML: whole number longer "
    "than 100 characters",
    "invalid-nesting.yaml": "invalid-nesting.yaml:3: nested deeper than 20 levels",
    "invalid-no-servers.yaml": "invalid-no-servers.yaml:1: servers: required key is missing",
    "invalid-server-ref.yaml": "invalid-server-ref.yaml:4: mailboxes[0].server: unknown server "
    "'backup'; servers: main",
    "invalid-thresholds.yaml": "invalid-thresholds.yaml:3: quota: critical_ratio must not be "
    "below warning_ratio",
    "invalid-timeout.yaml": "invalid-timeout.yaml:3: probing: timeout must be shorter than "
    "interval",
    "invalid-tls.yaml": "invalid-tls.yaml:4: servers.main.tls: input should be 'implicit', "
    "'starttls' or 'none'",
    "invalid-unknown-key.yaml": "invalid-unknown-key.yaml:4: probing.intervall: unknown key",
    "invalid-yaml.yaml": "invalid-yaml.yaml:3: invalid YAML: did not find expected ',' or '}'",
}


def test_every_invalid_file_is_covered() -> None:
    """No invalid-*.yaml file in testdata goes untested."""
    assert {p.name for p in DATA.glob("invalid-*.yaml")} == set(INVALID)


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_config_names_file_path_and_rule(name: str) -> None:
    """Each broken rule is reported once, with its file, line, YAML path and rule."""
    with pytest.raises(ConfigError) as caught:
        load_config(DATA / name)
    assert [str(p) for p in caught.value.problems] == [
        f"{DATA}/" + INVALID[name].replace("{dir}", str(DATA))
    ]


def test_all_problems_are_reported_together(tmp_path: Path) -> None:
    """Several broken rules in one file are all listed, not just the first."""
    path = tmp_path / "bad.yaml"
    path.write_text("servers:\n  a: {host: x, port: 0}\nprobing:\n  interval: x\n  bogus: 1\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [p.path for p in caught.value.problems] == [
        "servers.a.port",
        "probing.interval",
        "probing.bogus",
    ]


def test_example_config_is_valid() -> None:
    """The reference configuration loads, with the documented defaults."""
    config = load_config(EXAMPLE)
    assert config.domain == "adm.cfwb.be"
    assert config.default_server == "exchange"
    assert config.servers["exchange"].tls is TlsMode.IMPLICIT
    assert config.probing.interval == 300
    assert int(config.quota.default_limit) == 2 * 1024**3
    assert [m.address for m in config.mailboxes] == ["ec001234@adm.cfwb.be", "po000042@adm.cfwb.be"]
    assert config.mailboxes[1].kind is Kind.PO


def test_inventories_merge_with_inline_mailboxes() -> None:
    """Inline entries, a CSV and a YAML inventory make one fleet; addresses are normalised."""
    config = load_config(DATA / "valid-inventory.yaml")
    assert [(m.address, m.kind, m.name, m.contact) for m in config.mailboxes] == [
        ("ec000001@adm.cfwb.be", Kind.EC, "", ""),
        ("ec000002@adm.cfwb.be", Kind.EC, "École 2", "dir2@example.org"),
        ("po000003@adm.cfwb.be", Kind.PO, "PO 3", ""),
        ("ec000004@adm.cfwb.be", Kind.EC, "École 4", ""),
    ]
    assert config.mailboxes[0].local_part == "ec000001"
    assert all(m.server == "main" for m in config.mailboxes)


def test_relative_paths_follow_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """State and credential paths are relative to the config file, not the working directory."""
    path = tmp_path / "bma.yaml"
    path.write_text(
        "servers:\n  a: {host: x}\nstate: {path: s.db}\ncredentials: {directory: creds}\n"
    )
    monkeypatch.chdir("/")
    config = load_config(path)
    assert config.state.path == tmp_path / "s.db"
    assert config.credentials.directory == tmp_path / "creds"


def test_credentials_directory_defaults_to_systemd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a directory in the file, systemd's $CREDENTIALS_DIRECTORY is used."""
    path = tmp_path / "bma.yaml"
    path.write_text("servers:\n  a: {host: x}\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", "/run/credentials/bma-monitor.service")
    assert load_config(path).credentials.directory == Path("/run/credentials/bma-monitor.service")


def test_missing_file() -> None:
    """A missing file is a config error naming it."""
    with pytest.raises(ConfigError, match="cannot read file"):
        load_config(DATA / "absent.yaml")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(30, 30.0), ("45", 45.0), ("500ms", 0.5), ("5m", 300.0), ("6h", 21600.0), ("7d", 604800.0)],
)
def test_durations(text: object, seconds: float) -> None:
    """Durations accept plain seconds and ms/s/m/h/d units."""
    assert parse_duration(text) == seconds


def test_anchors_and_merge_keys_load(tmp_path: Path) -> None:
    """Anchors and merge keys work, and keys written beside a merge override the merged ones."""
    config = load_config(DATA / "valid-anchors.yaml")
    backup = config.servers["backup"]
    assert (backup.host, backup.port, backup.connect_timeout) == ("127.0.0.2", 1993, 5.0)
    assert [(m.address, m.contact, m.server) for m in config.mailboxes] == [
        ("ec000001@adm.cfwb.be", "direction@example.org", "main"),
        ("ec000002@adm.cfwb.be", "direction@example.org", "main"),
        ("po000003@adm.cfwb.be", "direction@example.org", "backup"),
    ]


def test_a_file_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    """A file larger than the limit is refused before it is parsed."""
    path = tmp_path / "bma.yaml"
    head = "servers:\n  main: {host: 127.0.0.1}\n"
    path.write_text(head + "#" * (MAX_FILE_BYTES - len(head)) + "\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [str(p) for p in caught.value.problems] == [f"{path}: file is larger than 4 MiB"]


@pytest.mark.parametrize(
    ("style", "depth"),
    [("flow", 21), ("flow", 995), ("flow", 1000), ("flow", 5000), ("block", 21), ("block", 995)],
)
def test_nesting_past_the_limit_is_refused(tmp_path: Path, style: str, depth: int) -> None:
    """Lists or mappings nested past 20 levels are one clear problem, at any depth."""
    if style == "flow":
        nested = "[" * depth + "]" * depth
    else:
        nested = "".join(f"\n{'  ' * (level + 1)}k:" for level in range(depth)) + " 1"
    path = tmp_path / "bma.yaml"
    path.write_text(f"servers:\n  main: {{host: 127.0.0.1}}\nprobing: {nested}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    line = 3 if style == "flow" else 3 + 20
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:{line}: nested deeper than 20 levels"
    ]


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("!!int zz", "'zz' is not a valid whole number"),
        ("!!int ''", "'' is not a valid whole number"),
        ("!!float zz", "'zz' is not a valid number"),
        ("!!bool maybe", "'maybe' is not a valid boolean"),
        ("!!timestamp soon", "'soon' is not a valid date"),
        ("1" + ":0" * 60, "whole number longer than 100 characters"),
    ],
)
def test_values_yaml_cannot_convert_are_problems(tmp_path: Path, value: str, rule: str) -> None:
    """A tagged or malformed value PyYAML fails to convert is a problem at its line."""
    path = tmp_path / "bma.yaml"
    path.write_text(f"servers:\n  main: {{host: 127.0.0.1}}\nprobing:\n  interval: {value}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [str(p) for p in caught.value.problems] == [f"{path}:4: invalid YAML: {rule}"]
