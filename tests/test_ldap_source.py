"""The LDAP expiry source against a private slapd with ppolicy, and its pure conversions."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator

import pytest

from monitor.config.expiry_model import LdapConfig
from monitor.credentials import Secret
from monitor.expiry.ldap_errors import BindRefused, DirectoryUnavailable, UnavailableReason
from monitor.expiry.ldap_reader import DirectoryReader
from monitor.expiry.ldap_source import read_directory
from monitor.expiry.ldap_values import (
    FILETIME_NEVER,
    FilterError,
    filetime_expiry,
    matching_rule,
    parse_generalized_time,
)
from monitor.expiry.model import ExpirySource, PasswordDate
from tests.servers.dovecot import free_port
from tests.servers.slapd import PEOPLE_DN, POLICY_DN, SERVICE_DN, Account, SlapdServer

SERVICE_PASSWORD = "Reader-pw-9f3c1e"
MAX_AGE = 180 * 86400
NOW = dt.datetime(2026, 5, 20, 12, 0, tzinfo=dt.UTC)
CHANGED = {
    "ec000001@adm.cfwb.be": dt.datetime(2025, 12, 1, 9, 30, 15, tzinfo=dt.UTC),
    "ec000002@adm.cfwb.be": dt.datetime(2026, 1, 31, 23, 59, 59, tzinfo=dt.UTC),
    "Po.Mixed@Adm.Cfwb.be": dt.datetime(2026, 3, 29, 1, 0, 0, tzinfo=dt.UTC),
}
NEVER_CHANGED = "ec000003@adm.cfwb.be"
BULK = [f"bulk{n:05d}@adm.cfwb.be" for n in range(1200)]
BULK_CHANGED = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)


def bulk_changed(index: int) -> dt.datetime:
    """A distinct change time per bulk account, so that a mix-up shows."""
    return BULK_CHANGED + dt.timedelta(minutes=index)


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlapdServer]:
    """One directory for the module: named accounts, one never changed, 1,200 for paging."""
    accounts = [
        Account(f"named{n}", mail, changed) for n, (mail, changed) in enumerate(CHANGED.items())
    ]
    accounts.append(Account("never", NEVER_CHANGED))
    accounts += [Account(f"bulk{n}", mail, bulk_changed(n)) for n, mail in enumerate(BULK)]
    server = SlapdServer(
        tmp_path_factory.mktemp("slapd"),
        accounts,
        service_password=SERVICE_PASSWORD,
        max_age_seconds=MAX_AGE,
    )
    with server:
        yield server


def config_for(url: str, **changes: object) -> LdapConfig:
    """The source's configuration for the private directory."""
    values: dict[str, object] = {
        "url": url,
        "bind_dn": SERVICE_DN,
        "base_dn": PEOPLE_DN,
        "policy_dn": POLICY_DN,
        "page_size": 200,
        "timeout": 2.0,
    }
    values.update(changes)
    return LdapConfig.model_validate(values)


def test_back_dated_changes_come_back_exact_with_the_policy_max_age(slapd: SlapdServer) -> None:
    """Each account's pwdChangedTime to the second, plus pwdMaxAge; unknown ones are absent."""
    asked = ["ec000001@adm.cfwb.be", "ec000002@adm.cfwb.be", "nobody@adm.cfwb.be"]
    dates = read_directory(config_for(slapd.url), Secret(SERVICE_PASSWORD), asked, now=NOW)
    assert dates == {
        address: PasswordDate(
            address,
            ExpirySource.LDAP,
            changed_at=CHANGED[address],
            expires_at=CHANGED[address] + dt.timedelta(seconds=MAX_AGE),
        )
        for address in asked[:2]
    }


def test_an_account_without_pwdchangedtime_is_absent(slapd: SlapdServer) -> None:
    """No pwdChangedTime means the password never expires: no date at all."""
    dates = read_directory(
        config_for(slapd.url), Secret(SERVICE_PASSWORD), [NEVER_CHANGED], now=NOW
    )
    assert dates == {}


def test_mail_matches_case_insensitively_under_the_address_asked(slapd: SlapdServer) -> None:
    """The directory's `Po.Mixed@Adm.Cfwb.be` answers for the inventory's lower-case address."""
    dates = read_directory(
        config_for(slapd.url), Secret(SERVICE_PASSWORD), ["po.mixed@adm.cfwb.be"], now=NOW
    )
    assert list(dates) == ["po.mixed@adm.cfwb.be"]
    assert dates["po.mixed@adm.cfwb.be"].changed_at == CHANGED["Po.Mixed@Adm.Cfwb.be"]


def test_a_filter_on_the_local_part_matches_on_that_attribute(slapd: SlapdServer) -> None:
    """With `(uid={local})` entries are tied to mailboxes by uid, not mail."""
    config = config_for(slapd.url, filter="(&(objectClass=inetOrgPerson)(uid={local}))")
    dates = read_directory(config, Secret(SERVICE_PASSWORD), ["bulk7@elsewhere.be"], now=NOW)
    assert dates["bulk7@elsewhere.be"].changed_at == bulk_changed(7)


def test_filter_syntax_in_an_address_is_escaped(slapd: SlapdServer) -> None:
    """`*` and parentheses in an address neither widen the search nor break it."""
    empty_before = slapd.log_count("nentries=0 ")
    dates = read_directory(
        config_for(slapd.url), Secret(SERVICE_PASSWORD), ["bulk0*", "x)(mail=*"], now=NOW
    )
    assert dates == {}
    # The directory itself found nothing (unescaped, `bulk0*` matches 1,000 entries); the
    # other empty result is the harness's own marker search behind log_count().
    assert slapd.log_count("nentries=0 ") == empty_before + 2


def test_paging_reads_past_the_default_size_limit(slapd: SlapdServer) -> None:
    """1,200 accounts (limit 500) come back in pages of 200, each with its own date."""
    pages_before = slapd.log_count("nentries=200 ")
    started = time.monotonic()
    dates = read_directory(config_for(slapd.url), Secret(SERVICE_PASSWORD), BULK, now=NOW)
    elapsed = time.monotonic() - started
    assert len(dates) == len(BULK)
    assert all(dates[mail].changed_at == bulk_changed(n) for n, mail in enumerate(BULK))
    # Two searches (1,000 addresses, then 200): five full pages, then one.
    assert slapd.log_count("nentries=200 ") - pages_before == 6
    assert elapsed < 5.0


def test_addresses_split_over_several_searches_give_the_same_dates(slapd: SlapdServer) -> None:
    """Chunks of 7 addresses per OR filter find what one search finds."""
    asked = BULK[:20] + list(CHANGED)
    config = config_for(slapd.url)
    whole = read_directory(config, Secret(SERVICE_PASSWORD), asked, now=NOW)
    chunked = read_directory(
        config, Secret(SERVICE_PASSWORD), asked, now=NOW, addresses_per_search=7
    )
    assert chunked == whole
    assert len(whole) == len(asked)


def test_a_refused_bind_is_tried_once_until_the_password_changes(slapd: SlapdServer) -> None:
    """A wrong password binds once; the same one again does not; a new one binds again."""
    reader = DirectoryReader()
    config = config_for(slapd.url)
    binds_before = slapd.binds()
    wrong = "Wrong-pw-51d0"

    with pytest.raises(BindRefused) as refused:
        reader.read(config, Secret(wrong), BULK[:3], now=NOW)
    assert refused.value.attempted
    with pytest.raises(BindRefused) as remembered:
        reader.read(config, Secret(wrong), BULK[:3], now=NOW)
    assert not remembered.value.attempted
    assert slapd.binds() == binds_before + 1
    for error in (refused.value, remembered.value):
        assert wrong not in f"{error} {error!r} {error.detail}"

    with pytest.raises(BindRefused):
        reader.read(config, Secret("Another-wrong-pw"), BULK[:3], now=NOW)
    assert slapd.binds() == binds_before + 2

    dates = reader.read(config, Secret(SERVICE_PASSWORD), BULK[:3], now=NOW)
    assert len(dates) == 3
    assert not reader.refused
    assert slapd.binds() == binds_before + 3


def test_a_server_that_is_down_is_unavailable_at_once() -> None:
    """Nothing listening: DirectoryUnavailable (connect), well within the timeout."""
    config = config_for(f"ldap://127.0.0.1:{free_port()}", timeout=5.0)
    started = time.monotonic()
    with pytest.raises(DirectoryUnavailable) as unavailable:
        read_directory(config, Secret(SERVICE_PASSWORD), BULK[:1], now=NOW)
    assert unavailable.value.reason is UnavailableReason.CONNECT
    assert time.monotonic() - started < 5.0


def test_a_server_that_does_not_answer_times_out(slapd: SlapdServer) -> None:
    """A stopped slapd accepts the connection and never answers: a timeout after `timeout`."""
    config = config_for(slapd.url, timeout=0.5)
    started = time.monotonic()
    with slapd.paused(), pytest.raises(DirectoryUnavailable) as unavailable:
        read_directory(config, Secret(SERVICE_PASSWORD), BULK[:1], now=NOW)
    elapsed = time.monotonic() - started
    assert unavailable.value.reason is UnavailableReason.TIMEOUT
    assert 0.5 <= elapsed < 2.0
    assert SERVICE_PASSWORD not in str(unavailable.value)


def test_a_missing_policy_entry_is_reported(slapd: SlapdServer) -> None:
    """A policy_dn that does not exist: DirectoryUnavailable (policy), not dates without age."""
    config = config_for(slapd.url, policy_dn="cn=absent,ou=policies,dc=example,dc=org")
    with pytest.raises(DirectoryUnavailable) as unavailable:
        read_directory(config, Secret(SERVICE_PASSWORD), BULK[:1], now=NOW)
    assert unavailable.value.reason is UnavailableReason.POLICY


def test_a_change_dated_in_the_future_counts_as_now(slapd: SlapdServer) -> None:
    """A directory clock running ahead cannot push an expiry further than a change made now."""
    early = CHANGED["ec000002@adm.cfwb.be"] - dt.timedelta(hours=1)
    dates = read_directory(
        config_for(slapd.url), Secret(SERVICE_PASSWORD), ["ec000002@adm.cfwb.be"], now=early
    )
    assert dates["ec000002@adm.cfwb.be"].changed_at == early


@pytest.mark.parametrize(
    ("filetime", "expected"),
    [
        (116_444_736_000_000_000, dt.datetime(1970, 1, 1, tzinfo=dt.UTC)),  # the Unix epoch
        (132_223_104_000_000_000, dt.datetime(2020, 1, 1, tzinfo=dt.UTC)),  # 1577836800 s
        (132_223_104_000_000_015, dt.datetime(2020, 1, 1, 0, 0, 0, 1, tzinfo=dt.UTC)),
        (FILETIME_NEVER, None),
        (0, None),
        (-1, None),
    ],
)
def test_ad_filetime_becomes_an_expiry_or_never(
    filetime: int, expected: dt.datetime | None
) -> None:
    """msDS-UserPasswordExpiryTimeComputed: 100 ns ticks since 1601; max and 0 mean none."""
    assert filetime_expiry(filetime) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20251201093015Z", dt.datetime(2025, 12, 1, 9, 30, 15, tzinfo=dt.UTC)),
        ("20251201093015.25Z", dt.datetime(2025, 12, 1, 9, 30, 15, 250000, tzinfo=dt.UTC)),
        ("202512011030+0100", dt.datetime(2025, 12, 1, 9, 30, tzinfo=dt.UTC)),
    ],
)
def test_generalized_time_is_read_in_utc(text: str, expected: dt.datetime) -> None:
    """pwdChangedTime as slapd writes it, with a fraction, or with an offset."""
    assert parse_generalized_time(text) == expected


def test_the_matching_attribute_follows_the_filter() -> None:
    """The attribute compared with {address} or {local} is the one entries are matched on."""
    assert matching_rule("(mail={address})") == ("mail", False)
    assert matching_rule("(&(objectClass=user)(sAMAccountName={local}))") == (
        "sAMAccountName",
        True,
    )
    with pytest.raises(FilterError):
        matching_rule("(objectClass=person)")
