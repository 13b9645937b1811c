"""Servers with IMAP, POP3 and SMTP endpoints, the flat IMAP form, and the protocols probed."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest
import yaml

from monitor.config import ConfigError, TlsMode, load_config
from monitor.config.model import HOUR, PROTOCOL_SETS, Config
from monitor.probes.result import Protocol
from tests import fleet
from tests.servers.dovecot import DovecotServer

IMAP, POP3, SMTP = Protocol.IMAP, Protocol.POP3, Protocol.SMTP
ONE_SERVER_ALL = (
    "servers:\n  main:\n    imap: {host: x}\n    pop3: {host: x}\n    smtp: {host: y}\n"
)


def _load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "bma.yaml"
    path.write_text(text)
    return load_config(path)


def _problems(tmp_path: Path, text: str) -> list[str]:
    """The problems of a config file, each as `LINE: path: rule` (the file is bma.yaml)."""
    path = tmp_path / "bma.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert all(p.file == path for p in caught.value.problems)
    return [str(p).removeprefix(f"{path}:") for p in caught.value.problems]


@pytest.mark.parametrize(
    ("protocol", "tls", "port"),
    [
        ("imap", "implicit", 993),
        ("imap", "starttls", 143),
        ("imap", "none", 143),
        ("pop3", "implicit", 995),
        ("pop3", "starttls", 110),
        ("pop3", "none", 110),
        ("smtp", "implicit", 465),
        ("smtp", "starttls", 587),
        ("smtp", "none", 587),
    ],
)
def test_an_endpoint_without_port_takes_its_protocols_port(
    tmp_path: Path, protocol: str, tls: str, port: int
) -> None:
    """A port left out is the protocol's registered port for the TLS mode."""
    config = _load(tmp_path, f"servers:\n  main:\n    {protocol}: {{host: x, tls: {tls}}}\n")
    endpoint = config.servers["main"].endpoint(Protocol(protocol))
    assert endpoint is not None
    assert (endpoint.port, endpoint.tls) == (port, TlsMode(tls))
    assert list(config.servers["main"].endpoints) == [Protocol(protocol)]


def test_the_new_form_loads_every_endpoint_with_its_settings(tmp_path: Path) -> None:
    """Each protocol section is an endpoint of its own: host, port, TLS and timeouts apart."""
    config = _load(
        tmp_path,
        "servers:\n"
        "  main:\n"
        "    imap: {host: imap.example.org, port: 1993, connect_timeout: 5s}\n"
        "    pop3: {host: pop.example.org, tls: starttls, max_connections: 3}\n"
        "    smtp: {host: smtp.example.org, tls: starttls, tls_server_name: mx.example.org}\n"
        "mailboxes:\n  - address: ec000001@adm.cfwb.be\n",
    )
    server = config.servers["main"]
    assert server.imap is not None and server.pop3 is not None and server.smtp is not None
    assert (server.imap.host, server.imap.port, server.imap.connect_timeout) == (
        "imap.example.org",
        1993,
        5.0,
    )
    assert (server.pop3.host, server.pop3.port, server.pop3.max_connections) == (
        "pop.example.org",
        110,
        3,
    )
    assert (server.smtp.port, server.smtp.tls_server_name) == (587, "mx.example.org")
    assert config.mailboxes[0].protocols == (IMAP, POP3, SMTP)


def test_the_flat_form_is_an_imap_only_server(tmp_path: Path) -> None:
    """A server written without protocol sections has one IMAP endpoint with those settings."""
    config = _load(
        tmp_path,
        "servers:\n  main: {host: x, tls: starttls, command_timeout: 7s}\n"
        "mailboxes:\n  - address: ec000001@adm.cfwb.be\n",
    )
    server = config.servers["main"]
    assert server.imap is not None and server.pop3 is None and server.smtp is None
    assert (server.imap.host, server.imap.port, server.imap.command_timeout) == ("x", 143, 7.0)
    assert config.mailboxes[0].protocols == (IMAP,)


def test_flat_and_new_forms_mix_across_servers(tmp_path: Path) -> None:
    """One server flat, another with sections: each is read in its own form."""
    config = _load(
        tmp_path,
        "servers:\n  old: {host: a}\n  new:\n    pop3: {host: b}\ndefault_server: new\n"
        "mailboxes:\n  - {address: ec000001@adm.cfwb.be, server: old}\n"
        "  - {address: ec000002@adm.cfwb.be}\n",
    )
    assert [m.protocols for m in config.mailboxes] == [(IMAP,), (POP3,)]


@pytest.mark.parametrize(
    ("server", "problem"),
    [
        (
            "main:\n    host: x\n    port: 0\n",
            "4: servers.main.port: must be a whole number between 1 and 65535 (got 0)",
        ),
        ("main:\n    host: x\n    bogus: 1\n", "4: servers.main.bogus: unknown key"),
        ("main:\n    port: 993\n", "2: servers.main.host: required key is missing"),
        (
            "main:\n    host: x\n    tls: ssl\n",
            "4: servers.main.tls: input should be 'implicit', 'starttls' or 'none'",
        ),
        (
            "main:\n    host: x\n    ca_file: absent.pem\n",
            "4: servers.main.ca_file: no such file: {dir}/absent.pem",
        ),
    ],
)
def test_a_flat_server_problem_names_the_path_as_written(
    tmp_path: Path, server: str, problem: str
) -> None:
    """Errors in a flat server show the key the file holds, not the `imap` level it becomes."""
    problems = _problems(tmp_path, f"servers:\n  {server}")
    assert problems == [problem.replace("{dir}", str(tmp_path))]


def test_a_flat_server_behind_an_alias_keeps_its_lines(tmp_path: Path) -> None:
    """A flat server merged from an anchor reports the line of the key written beside it."""
    problems = _problems(
        tmp_path,
        "servers:\n  main: &base {host: a}\n  backup:\n    <<: *base\n    port: 70000\n"
        "default_server: main\n",
    )
    assert problems == [
        "5: servers.backup.port: must be a whole number between 1 and 65535 (got 70000)"
    ]


def test_endpoint_settings_beside_a_protocol_section_are_refused(tmp_path: Path) -> None:
    """A server mixing flat settings with sections is one problem naming the keys."""
    problems = _problems(
        tmp_path, "servers:\n  main:\n    host: x\n    port: 993\n    pop3: {host: y}\n"
    )
    assert problems == [
        "2: servers.main: host, port beside pop3: once a server has a protocol section, "
        "endpoint settings go under their protocol (imap:, pop3:, smtp:)"
    ]


def test_a_server_needs_an_endpoint(tmp_path: Path) -> None:
    """A server with no protocol section at all is refused."""
    problems = _problems(tmp_path, "servers:\n  main: {}\n")
    assert problems == ["2: servers.main: needs at least one endpoint: imap, pop3 or smtp"]


def test_new_form_problems_name_the_protocol(tmp_path: Path) -> None:
    """Errors inside a protocol section name that section, at the line of the key."""
    problems = _problems(
        tmp_path,
        "servers:\n  main:\n    imap: {host: x}\n    pop3:\n      host: x\n      port: 0\n"
        "    smtp:\n      host: y\n      tls: ssl\n      helo: me\n    ftp: {host: x}\n",
    )
    assert problems == [
        "6: servers.main.pop3.port: must be a whole number between 1 and 65535 (got 0)",
        "9: servers.main.smtp.tls: input should be 'implicit', 'starttls' or 'none'",
        "10: servers.main.smtp.helo: unknown key",
        "11: servers.main.ftp: unknown key",
    ]


def test_each_endpoint_ca_file_is_resolved_and_checked(tmp_path: Path) -> None:
    """Every endpoint's CA file is relative to the config file and must exist."""
    (tmp_path / "pop.pem").write_text("not checked here")
    config = _load(
        tmp_path, "servers:\n  main:\n    pop3: {host: x, ca_file: pop.pem}\n    imap: {host: x}\n"
    )
    pop3 = config.servers["main"].pop3
    assert pop3 is not None and pop3.ca_file == tmp_path / "pop.pem"

    problems = _problems(
        tmp_path,
        "servers:\n  main:\n    imap: {host: x, ca_file: absent-imap.pem}\n"
        "    pop3: {host: x, ca_file: pop.pem}\n"
        "    smtp:\n      host: y\n      ca_file: absent-smtp.pem\n",
    )
    assert problems == [
        f"3: servers.main.imap.ca_file: no such file: {tmp_path}/absent-imap.pem",
        f"7: servers.main.smtp.ca_file: no such file: {tmp_path}/absent-smtp.pem",
    ]


def test_a_mailbox_lists_its_own_protocols(tmp_path: Path) -> None:
    """An entry's protocols replace the default; order and spelling do not change the set."""
    config = _load(
        tmp_path,
        ONE_SERVER_ALL + "probing:\n  protocols: [imap]\nmailboxes:\n"
        "  - {address: ec000001@adm.cfwb.be, protocols: [smtp, imap]}\n"
        "  - {address: ec000002@adm.cfwb.be, protocols: [imap, smtp]}\n"
        "  - {address: ec000003@adm.cfwb.be, protocols: pop3}\n"
        "  - {address: ec000004@adm.cfwb.be}\n",
    )
    assert [m.protocols for m in config.mailboxes] == [
        (IMAP, SMTP),
        (IMAP, SMTP),
        (POP3,),
        (IMAP,),
    ]
    assert config.mailboxes[0].protocols is config.mailboxes[1].protocols


def test_the_csv_protocols_column(tmp_path: Path) -> None:
    """A CSV cell lists protocols apart by spaces, `;` or `|`; an empty cell takes the default."""
    (tmp_path / "fleet.csv").write_text(
        "fase,kind,protocols\n"
        "000001,ec,imap pop3\n"
        "000002,ec,smtp;imap\n"
        "000003,po, pop3 | smtp \n"
        "000004,ec,\n"
    )
    config = _load(tmp_path, ONE_SERVER_ALL + "inventory: [fleet.csv]\n")
    assert [m.protocols for m in config.mailboxes] == [
        (IMAP, POP3),
        (IMAP, SMTP),
        (POP3, SMTP),
        (IMAP, POP3, SMTP),
    ]


def test_a_bad_csv_protocols_cell_names_the_row(tmp_path: Path) -> None:
    """An unknown protocol, a repeated one or a missing endpoint in CSV: at the row's line."""
    (tmp_path / "fleet.csv").write_text(
        "fase,kind,server,protocols\n"
        "000001,ec,,imap ftp\n"
        "000002,ec,,imap;imap\n"
        "000003,ec,small,imap smtp\n"
    )
    path = tmp_path / "bma.yaml"
    path.write_text(
        "servers:\n  main: {host: x}\n  small: {host: y}\ndefault_server: main\n"
        "inventory: [fleet.csv]\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [str(p) for p in caught.value.problems] == [
        f"{tmp_path}/fleet.csv:2: protocols[1]: input should be 'imap', 'pop3' or 'smtp'",
        f"{tmp_path}/fleet.csv:3: protocols: lists imap more than once",
        f"{tmp_path}/fleet.csv:4: protocols: server small has no smtp endpoint",
    ]


def test_one_tuple_is_shared_per_set_of_protocols(tmp_path: Path) -> None:
    """Thousands of mailboxes hold a handful of protocol tuples, not one each."""
    rows = "".join(
        f"{i:06d},ec,{('imap pop3', 'pop3 imap', '', 'smtp')[i % 4]}\n" for i in range(1, 2001)
    )
    (tmp_path / "fleet.csv").write_text("fase,kind,protocols\n" + rows)
    config = _load(tmp_path, ONE_SERVER_ALL + "inventory: [fleet.csv]\n")
    assert len(config.mailboxes) == 2000
    assert {id(m.protocols) for m in config.mailboxes} == {
        id(PROTOCOL_SETS[frozenset(s)]) for s in ({IMAP, POP3}, {IMAP, POP3, SMTP}, {SMTP})
    }


@pytest.mark.parametrize(
    ("protocols", "problem"),
    [
        (
            "\n      - imap\n      - ftp",
            "7: mailboxes[0].protocols[1]: input should be 'imap', 'pop3' or 'smtp'",
        ),
        ("[imap, pop3, imap]", "5: mailboxes[0].protocols: lists imap more than once"),
        (
            "[]",
            "5: mailboxes[0].protocols: must name at least one protocol: imap, pop3 or smtp",
        ),
        (
            "{imap: yes}",
            "5: mailboxes[0].protocols: must be a list of protocols, e.g. [imap, pop3] "
            "(got {'imap': True})",
        ),
        ("[IMAP]", "5: mailboxes[0].protocols[0]: input should be 'imap', 'pop3' or 'smtp'"),
    ],
)
def test_a_bad_protocols_list_is_refused(tmp_path: Path, protocols: str, problem: str) -> None:
    """Unknown, repeated, empty or malformed protocol lists: each one clear problem."""
    problems = _problems(
        tmp_path,
        "servers:\n  main: {host: x}\nmailboxes:\n  - address: ec000001@adm.cfwb.be\n"
        f"    protocols: {protocols}\n",
    )
    assert problems == [problem]


def test_a_protocol_the_server_lacks_is_refused_at_the_entry(tmp_path: Path) -> None:
    """An entry asking for a protocol its server has no endpoint for is a problem there."""
    problems = _problems(
        tmp_path,
        "servers:\n  main: {host: x}\n  mail:\n    pop3: {host: y}\ndefault_server: main\n"
        "mailboxes:\n  - address: ec000001@adm.cfwb.be\n    protocols: [imap, pop3, smtp]\n"
        "  - {address: ec000002@adm.cfwb.be, server: mail, protocols: [pop3]}\n",
    )
    assert problems == ["7: mailboxes[0].protocols: server main has no pop3 or smtp endpoint"]


def test_the_fleet_default_must_be_served_by_each_server_that_takes_it(tmp_path: Path) -> None:
    """probing.protocols naming a protocol a server lacks: one problem per server, not per
    mailbox, naming the first mailbox that takes it; mailboxes with their own list do not count.
    """
    problems = _problems(
        tmp_path,
        "servers:\n"
        "  main:\n    imap: {host: x}\n    smtp: {host: x}\n"
        "  pop: {pop3: {host: y}}\n"
        "  imaponly: {host: z}\n"
        "default_server: pop\n"
        "probing:\n  protocols: [imap, smtp]\n"
        "mailboxes:\n"
        "  - {address: ec000001@adm.cfwb.be, server: main}\n"
        "  - {address: ec000002@adm.cfwb.be}\n"
        "  - {address: ec000003@adm.cfwb.be}\n"
        "  - {address: ec000004@adm.cfwb.be, server: imaponly, protocols: [imap]}\n",
    )
    assert problems == [
        f"9: probing.protocols: server pop has no imap or smtp endpoint (2 mailbox(es) on it "
        f"take this default, the first at {tmp_path}/bma.yaml:12)"
    ]


def test_the_fleet_default_applies_where_an_entry_names_none(tmp_path: Path) -> None:
    """Without its own list a mailbox takes probing.protocols; without that, its server's."""
    mailboxes = "mailboxes:\n  - address: ec000001@adm.cfwb.be\n"
    assert _load(tmp_path, ONE_SERVER_ALL + mailboxes).mailboxes[0].protocols == (IMAP, POP3, SMTP)
    config = _load(tmp_path, ONE_SERVER_ALL + "probing: {protocols: [pop3, imap]}\n" + mailboxes)
    assert config.probing.protocols == (IMAP, POP3)
    assert config.mailboxes[0].protocols is config.probing.protocols


@pytest.mark.parametrize(
    ("probing", "problem"),
    [
        ("protocols: [imap, imap]", "8: probing.protocols: lists imap more than once"),
        (
            "protocols: [imap, ftp]",
            "8: probing.protocols[1]: input should be 'imap', 'pop3' or 'smtp'",
        ),
        (
            "intervals: {ftp: 5m}",
            "8: probing.intervals.ftp: unknown key; keys are 'imap', 'pop3' or 'smtp'",
        ),
        (
            "intervals:\n    imap: 5m\n    pop3: 2d",
            "10: probing.intervals.pop3: must be a duration between 1s and 1d (got '2d')",
        ),
        ("intervals: []", "8: probing.intervals: input should be a valid dictionary"),
        (
            "interval: 2h\n  timeout: 1h",
            "7: probing: timeout must be shorter than intervals.smtp (1h)",
        ),
        (
            "timeout: 1m\n  intervals: {pop3: 30s}",
            "7: probing: timeout must be shorter than intervals.pop3 (30s)",
        ),
        ("timeout: 5m", "7: probing: timeout must be shorter than interval"),
    ],
)
def test_probing_protocols_intervals_and_timeout(
    tmp_path: Path, probing: str, problem: str
) -> None:
    """The fleet's protocols and per-protocol intervals are checked, each at its line."""
    problems = _problems(
        tmp_path, ONE_SERVER_ALL.replace("y}", "y}\nmailboxes: []") + f"probing:\n  {probing}\n"
    )
    assert problems == [problem]


def test_intervals_keep_smtps_hour_when_another_is_set(tmp_path: Path) -> None:
    """Setting one protocol's interval leaves SMTP at its hour and the rest at `interval`."""
    config = _load(
        tmp_path, ONE_SERVER_ALL + "probing:\n  interval: 2m\n  intervals: {pop3: 10m}\n"
    )
    probing = config.probing
    assert probing.intervals == {POP3: 600.0, SMTP: HOUR}
    assert [probing.interval_for(p) for p in Protocol] == [120.0, 600.0, HOUR]
    config = _load(tmp_path, ONE_SERVER_ALL + "probing:\n  intervals: {smtp: 5m}\n")
    assert config.probing.interval_for(SMTP) == 300.0


def test_a_timeout_only_has_to_fit_the_protocols_offered(tmp_path: Path) -> None:
    """SMTP's hour does not refuse a one-hour timeout where no server has an SMTP endpoint."""
    text = "servers:\n  main:\n    imap: {host: x}\n    pop3: {host: x}\n"
    config = _load(tmp_path, text + "probing: {interval: 2h, timeout: 1h}\n")
    assert config.probing.timeout == HOUR
    problems = _problems(
        tmp_path, text + "probing: {interval: 2h, timeout: 1h, intervals: {pop3: 1h}}\n"
    )
    assert problems == ["5: probing: timeout must be shorter than intervals.pop3 (1h)"]


def test_the_example_documents_every_protocol() -> None:
    """The reference file shows each protocol's endpoint, the SMTP hour and an override."""
    config = load_config(Path(__file__).parent.parent / "config" / "example.yaml")
    server = config.servers["exchange"]
    assert {p: (e.host, e.port, e.tls) for p, e in server.endpoints.items()} == {
        IMAP: ("outlook.office365.com", 993, TlsMode.IMPLICIT),
        POP3: ("outlook.office365.com", 995, TlsMode.IMPLICIT),
        SMTP: ("smtp.cfwb.be", 465, TlsMode.IMPLICIT),
    }
    assert config.probing.protocols is None
    assert config.probing.interval_for(SMTP) == HOUR
    assert [m.protocols for m in config.mailboxes] == [(IMAP, POP3, SMTP), (POP3, SMTP)]


def test_the_test_fleet_writes_every_protocol(tmp_path: Path) -> None:
    """write_config writes per-protocol endpoints, CERBERE files and per-mailbox lists."""
    path = fleet.write_config(
        tmp_path,
        None,
        "none",
        [fleet.EMPTY, fleet.FULL],
        port=1143,
        protocols={"imap": {}, "pop3": {"port": 1110}, "smtp": {"port": 1587}},
        cerbere={fleet.EMPTY: fleet.cerbere_password(fleet.EMPTY)},
        mailbox_protocols={fleet.FULL: ["pop3"]},
    )
    config = load_config(path)
    ports = {p: e.port for p, e in config.servers["dovecot"].endpoints.items()}
    assert ports == {IMAP: 1143, POP3: 1110, SMTP: 1587}
    assert [m.protocols for m in config.mailboxes] == [(IMAP, POP3, SMTP), (POP3,)]
    credentials = tmp_path / "credentials"
    assert sorted(p.name for p in credentials.iterdir()) == [
        f"{fleet.address(fleet.EMPTY)}.cerbere",
        f"{fleet.address(fleet.EMPTY)}.imap",
        f"{fleet.address(fleet.FULL)}.imap",
    ]
    cerbere = (credentials / f"{fleet.address(fleet.EMPTY)}.cerbere").read_text()
    assert cerbere == fleet.cerbere_password(fleet.EMPTY) + "\n"
    assert cerbere.strip() != fleet.password(fleet.EMPTY)


def test_the_test_fleet_default_stays_imap_only(tmp_path: Path) -> None:
    """Without protocols, write_config writes the single IMAP endpoint its callers expect."""
    path = fleet.write_config(tmp_path, None, "none", port=143)
    servers = yaml.safe_load(path.read_text())["servers"]
    assert list(servers["dovecot"]) == ["imap"]
    config = load_config(path)
    assert list(config.servers["dovecot"].endpoints) == [IMAP]
    assert config.mailboxes[0].protocols == (IMAP,)


@pytest.mark.parametrize("tls", ["implicit", "none"])
def test_the_test_fleet_points_each_endpoint_at_its_dovecot_port(
    tmp_path: Path, dovecot: DovecotServer, tls: str
) -> None:
    """The IMAP and POP3 endpoints written for a real Dovecot greet in their own protocol."""
    path = fleet.write_config(tmp_path, dovecot, tls, protocols={"imap": {}, "pop3": {}})
    endpoints = load_config(path).servers["dovecot"].endpoints
    greetings = {}
    for protocol, endpoint in endpoints.items():
        with socket.create_connection((endpoint.host, endpoint.port), timeout=5) as raw:
            if endpoint.tls is TlsMode.IMPLICIT:
                assert endpoint.ca_file is not None
                context = ssl.create_default_context(cafile=str(endpoint.ca_file))
                with context.wrap_socket(raw, server_hostname=endpoint.tls_server_name) as tls_:
                    greetings[protocol] = tls_.recv(100).split(maxsplit=1)[0]
            else:
                greetings[protocol] = raw.recv(100).split(maxsplit=1)[0]
    assert greetings == {IMAP: b"*", POP3: b"+OK"}
