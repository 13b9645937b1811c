"""Configuration loading: defaults, inventories, and an exact error for each broken rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.cli import EXIT_USAGE, main
from monitor.config import ConfigError, Kind, TlsMode, load_config
from monitor.config.errors import PROBLEMS_LISTED
from monitor.config.values import NAME_MAX_BYTES, PATH_MAX_BYTES, parse_duration
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
    "contact, server, protocols, password_changed, password_expires]; unknown column(s): number, "
    "type; missing column(s): fase, kind",
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
    "invalid-home.yaml": "invalid-home.yaml:4: state.path: no home directory for "
    "~no-such-user-here/state.db",
    "invalid-inventory-bomb.yaml": "bomb-inventory.yaml:6: aliases expand to more than 250,000 "
    "nodes",
    "invalid-kind.yaml": "invalid-kind.yaml:5: mailboxes[0].kind: input should be 'ec' or 'po'",
    "invalid-listen.yaml": "invalid-listen.yaml:4: http.listen: must be host:port with a port "
    "from 0 to 65535, e.g. 127.0.0.1:9834 or [::1]:9834 (got 'localhost')",
    "invalid-listen-port.yaml": "invalid-listen-port.yaml:4: http.listen: must be host:port with "
    "a port from 0 to 65535, e.g. 127.0.0.1:9834 or [::1]:9834 (got '127.0.0.1:98340')",
    "invalid-long-number.yaml": "invalid-long-number.yaml:4: invalid YAML: whole number longer "
    "than 100 characters",
    "invalid-nesting.yaml": "invalid-nesting.yaml:3: nested deeper than 20 levels",
    "invalid-no-servers.yaml": "invalid-no-servers.yaml:1: servers: required key is missing",
    "invalid-server-ref.yaml": "invalid-server-ref.yaml:4: mailboxes[0].server: unknown server "
    "'backup'; servers: main",
    "invalid-tab.yaml": "invalid-tab.yaml:3: invalid YAML: tab character used for indentation "
    "(YAML allows only spaces)",
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
    exchange = config.servers["exchange"]
    assert exchange.imap is not None and exchange.imap.tls is TlsMode.IMPLICIT
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
    backup = config.servers["backup"].imap
    assert backup is not None
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


def _document(setting: str, raw: str) -> tuple[str, int]:
    """A config setting `setting` (a dotted path) to the YAML text `raw`, and its line."""
    *sections, key = setting.split(".")
    lines = [] if sections[:1] == ["servers"] else ["servers:", "  main: {host: 127.0.0.1}"]
    for depth, section in enumerate(sections):
        lines.append("  " * depth + f"{section}:")
        if sections[:2] == ["servers", "main"] and depth == 1:
            lines.append("    host: 127.0.0.1")
    lines.append("  " * len(sections) + f"{key}: {raw}")
    return "\n".join(lines) + "\n", len(lines)


# Every number a setting takes, given a value out of its range, and the rule it breaks.
OUT_OF_RANGE = [
    ("servers.main.port", "0", "must be a whole number between 1 and 65535 (got 0)"),
    ("servers.main.port", "65536", "must be a whole number between 1 and 65535 (got 65536)"),
    (
        "servers.main.connect_timeout",
        ".inf",
        "must be a duration between 100ms and 10m (got inf)",
    ),
    (
        "servers.main.connect_timeout",
        "50ms",
        "must be a duration between 100ms and 10m (got '50ms')",
    ),
    ("servers.main.command_timeout", "2h", "must be a duration between 100ms and 1h (got '2h')"),
    (
        "servers.main.max_connections",
        "1001",
        "must be a whole number between 1 and 1000 (got 1001)",
    ),
    ("probing.interval", "1.0e+19", "must be a duration between 1s and 1d (got 1e+19)"),
    (
        "probing.interval",
        "'99999999999999999999d'",
        "must be a duration between 1s and 1d (got '99999999999999999999d')",
    ),
    ("probing.interval", "1e19s", "must be a duration like 30s, 5m or 6h (got '1e19s')"),
    ("probing.interval", "-.inf", "must be a duration between 1s and 1d (got -inf)"),
    ("probing.interval", ".nan", "must be a duration between 1s and 1d (got nan)"),
    ("probing.interval", "500ms", "must be a duration between 1s and 1d (got '500ms')"),
    ("probing.jitter", "1.5", "must be a number between 0 and 1 (got 1.5)"),
    ("probing.timeout", "1.0e-9", "must be a duration between 100ms and 1h (got 1e-09)"),
    ("probing.concurrency", "1.0e+400", "must be a whole number between 1 and 1000 (got inf)"),
    ("probing.concurrency", "1e400", "must be a whole number between 1 and 1000 (got '1e400')"),
    ("probing.concurrency", "0", "must be a whole number between 1 and 1000 (got 0)"),
    ("probing.concurrency", "2.5", "must be a whole number between 1 and 1000 (got 2.5)"),
    (
        "probing.rate_limit",
        "1.0e-300",
        "must be 0 (no limit) or a number between 0.01 and 10000 (got 1e-300)",
    ),
    (
        "probing.rate_limit",
        "1e-300",
        "must be 0 (no limit) or a number between 0.01 and 10000 (got '1e-300')",
    ),
    (
        "probing.rate_limit",
        "-1",
        "must be 0 (no limit) or a number between 0.01 and 10000 (got -1)",
    ),
    (
        "probing.quota_estimate_interval",
        "30s",
        "must be a duration between 1m and 30d (got '30s')",
    ),
    ("probing.quota_fetch_chunk", "501", "must be a whole number between 1 and 500 (got 501)"),
    ("probing.auth_retry_after", "1m", "must be a duration between 1h and 365d (got '1m')"),
    ("probing.unknown_outcome_hold", "1m", "must be a duration between 5m and 7d (got '1m')"),
    ("probing.outage.window", "0", "must be a duration between 1s and 1d (got 0)"),
    ("probing.outage.min_probes", "0", "must be a whole number between 1 and 10000 (got 0)"),
    ("probing.outage.failure_ratio", "0", "must be a number between 0.01 and 1 (got 0)"),
    (
        "probing.outage.backoff_initial",
        "10ms",
        "must be a duration between 100ms and 1d (got '10ms')",
    ),
    ("probing.outage.backoff_max", "2d", "must be a duration between 100ms and 1d (got '2d')"),
    (
        "quota.default_limit",
        "1KiB",
        "must be a size between 1MiB and 1TiB, e.g. 2GiB (got '1KiB')",
    ),
    (
        "quota.default_limit",
        ".inf",
        "must be a size between 1MiB and 1TiB, e.g. 2GiB (got inf)",
    ),
    ("quota.default_limit", "2PiB", "must be a size between 1MiB and 1TiB, e.g. 2GiB (got '2PiB')"),
    ("quota.warning_ratio", "0", "must be a number between 0.01 and 1 (got 0)"),
    ("quota.critical_ratio", "1.5", "must be a number between 0.01 and 1 (got 1.5)"),
    ("quota.hysteresis", "0.6", "must be a number between 0 and 0.5 (got 0.6)"),
    ("quota.forecast_window", "1h", "must be a duration between 1d and 90d (got '1h')"),
    ("quota.history", "400d", "must be a duration between 1d and 365d (got '400d')"),
]


@pytest.mark.parametrize(("setting", "raw", "rule"), OUT_OF_RANGE)
def test_numbers_out_of_range_are_refused(
    tmp_path: Path, setting: str, raw: str, rule: str
) -> None:
    """Each numeric setting has a range; a value outside it is refused, naming the range."""
    path = tmp_path / "bma.yaml"
    text, line = _document(setting, raw)
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [str(p) for p in caught.value.problems] == [f"{path}:{line}: {setting}: {rule}"]


def test_every_numeric_setting_has_a_range_test() -> None:
    """No numeric setting is left out of OUT_OF_RANGE."""
    from monitor.config.fullness_model import QuotaConfig
    from monitor.config.model import EndpointConfig, OutageConfig, ProbingConfig

    numeric = {
        f"{prefix}.{name}"
        for prefix, model in [
            ("servers.main", EndpointConfig),  # the flat form, as _document writes it
            ("probing", ProbingConfig),
            ("probing.outage", OutageConfig),
            ("quota", QuotaConfig),
        ]
        for name, field in model.model_fields.items()
        if isinstance(field.default, int | float) and not isinstance(field.default, bool)
    }
    assert numeric == {setting for setting, _, _ in OUT_OF_RANGE}


def test_values_in_range_load(tmp_path: Path) -> None:
    """The ends of the ranges, 0 for no rate limit and port 0 for any free port are accepted."""
    path = tmp_path / "bma.yaml"
    path.write_text(
        "servers:\n  main: {host: 127.0.0.1, port: 65535, connect_timeout: 100ms}\n"
        "probing: {interval: 1d, timeout: 1h, rate_limit: 0, concurrency: 1000,"
        " auth_retry_after: null}\n"
        "quota: {default_limit: 1TiB, warning_ratio: 1, critical_ratio: 1}\n"
        "http: {listen: '[::1]:0'}\n"
    )
    config = load_config(path)
    assert (config.probing.interval, config.probing.rate_limit) == (86400.0, 0.0)
    assert config.probing.auth_retry_after is None
    assert (config.http.host, config.http.port) == ("::1", 0)


@pytest.mark.parametrize(
    ("setting", "name", "rule"),
    [
        (
            "state.path",
            "a" * 5000,
            f"path is too long (5,000 bytes; the system allows {PATH_MAX_BYTES:,})",
        ),
        (
            "state.path",
            "a" * 300,
            f"path is too long (a name of 300 bytes; the system allows {NAME_MAX_BYTES} per name)",
        ),
        (
            "credentials.directory",
            "a" * 5000,
            f"path is too long (5,000 bytes; the system allows {PATH_MAX_BYTES:,})",
        ),
        (
            "servers.main.ca_file",
            "a" * 300,
            f"path is too long (a name of 300 bytes; the system allows {NAME_MAX_BYTES} per name)",
        ),
        ("state.path", '"a\\0b"', "path contains a NUL character"),
    ],
)
def test_paths_the_system_cannot_open_are_refused(
    tmp_path: Path, setting: str, name: str, rule: str
) -> None:
    """A path longer than the system allows is a problem, not a traceback."""
    path = tmp_path / "bma.yaml"
    text, line = _document(setting, name)
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [str(p) for p in caught.value.problems] == [f"{path}:{line}: {setting}: {rule}"]


def test_a_path_too_long_once_joined_to_the_folder_is_refused(tmp_path: Path) -> None:
    """A relative path within the limits that the config's folder makes too long is refused."""
    folder = tmp_path
    while len(str(folder)) < PATH_MAX_BYTES - 350:
        folder /= "d" * 200
    folder /= "e" * (PATH_MAX_BYTES - 100 - len(str(folder)) - 1)
    folder.mkdir(parents=True)
    path = folder / "bma.yaml"
    name = "f" * 250
    path.write_text(f"servers:\n  main: {{host: 127.0.0.1}}\ninventory: [{name}]\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    too_long = len(str(folder / name))
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:3: inventory[0]: path is too long ({too_long:,} bytes; the system allows "
        f"{PATH_MAX_BYTES:,})"
    ]


@pytest.mark.parametrize(
    "text",
    [
        "probing:\n  interval: {big}\n",
        "probing:\n  ? {big}\n  : 1\n",
        "http:\n  listen: {big}\n",
        "mailboxes:\n  - {{fase: '{big}', kind: ec}}\n",
        "servers:\n  ? '{big}!'\n  : {{host: 127.0.0.1}}\ndefault_server: main\n",
        "mailboxes:\n  - {{address: ec000001@adm.cfwb.be, server: '{big}'}}\n",
        "default_server: '{big}'\n",
    ],
)
def test_rejected_values_are_echoed_shortened(tmp_path: Path, text: str) -> None:
    """A huge rejected value is echoed as its first few dozen characters, not whole."""
    path = tmp_path / "bma.yaml"
    servers = "" if "servers:" in text else "servers:\n  main: {host: 127.0.0.1}\n"
    path.write_text(servers + text.format(big="x" * 1_000_000))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    [problem] = caught.value.problems
    assert len(problem.path) + len(problem.rule) < 200
    assert "x" * 100 not in str(problem)
    assert "..." in str(problem)


def test_problems_are_sorted_by_file_then_line(tmp_path: Path) -> None:
    """Problems read top to bottom: the config file first, then each inventory as listed."""
    path = tmp_path / "bma.yaml"
    path.write_text("probing:\n  interval: soon\nservers:\n  main: {host: 127.0.0.1, port: 0}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [p.line for p in caught.value.problems] == [2, 4]

    (tmp_path / "b.csv").write_text("fase,kind\n12345,ec\n000002,xx\n")
    (tmp_path / "a.yaml").write_text("- {fase: '1', kind: ec}\n")
    path.write_text(
        "servers:\n  main: {host: 127.0.0.1, ca_file: absent.pem}\n"
        "inventory: [b.csv, a.yaml]\n"
        "mailboxes:\n  - {fase: '000001', kind: ec, server: other}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [(p.file.name, p.line) for p in caught.value.problems] == [
        ("bma.yaml", 2),
        ("bma.yaml", 5),
        ("b.csv", 2),
        ("b.csv", 3),
        ("a.yaml", 1),
    ]


def test_a_flood_of_problems_is_listed_in_part(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An inventory of 5,000 bad rows: all are counted, the first hundred are listed."""
    (tmp_path / "fleet.csv").write_text("fase,kind\n" + "12345,ec\n" * 5000)
    path = tmp_path / "bma.yaml"
    path.write_text("servers:\n  main: {host: 127.0.0.1}\ninventory: [fleet.csv]\n")
    assert main(["check", "--config", str(path)]) == EXIT_USAGE
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "configuration error (5000 problem(s)):"
    assert len(lines) == 1 + PROBLEMS_LISTED + 1
    assert lines[1].startswith(f"  {tmp_path / 'fleet.csv'}:2: fase: ")
    assert lines[-1] == "  ... and 4,900 more problem(s)"


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
