"""The canary's write exception and the bounce reader's peeks, held by their gates."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from monitor.probes.imap_session import MAX_LITERAL_BYTES
from monitor.probes.readonly import (
    MAX_PEEK_BYTES,
    PROBE_GATE,
    BounceReads,
    CanaryWrites,
    ForbiddenCommand,
)

CANARY = 'HEADER X-BMA-Monitor-Canary "c0ffee-1234-abcd"'
SEARCH_DONE = b"Search completed."


def selected_gate(found: bytes = b"4 9") -> CanaryWrites:
    """A canary gate whose session selected INBOX and found UIDs 4 and 9 by the header."""
    gate = CanaryWrites()
    gate.check("SELECT", ("INBOX",), None)
    gate.observe("SELECT", ("INBOX",), None, "OK", [b"[READ-WRITE] Select completed."])
    gate.check("SEARCH", (CANARY,), "UID ")
    gate.observe("SEARCH", (CANARY,), "UID ", "OK", [found, SEARCH_DONE])
    return gate


@pytest.mark.parametrize(
    ("name", "args", "prefix"),
    [
        ("EXPUNGE", (), None),  # would also remove the school's own \Deleted messages
        ("CLOSE", (), None),  # expunges too
        ("STORE", ("4,9", "+FLAGS.SILENT", "(\\Deleted)"), None),  # sequence numbers
        ("STORE", ("4,9", "+FLAGS", "(\\Deleted)"), "UID "),  # not SILENT
        ("STORE", ("4,9", "+FLAGS.SILENT", "(\\Seen)"), "UID "),
        ("STORE", ("4,9", "+FLAGS.SILENT", "(\\Deleted \\Seen)"), "UID "),
        ("STORE", ("4,9", "-FLAGS.SILENT", "(\\Deleted)"), "UID "),
        ("STORE", ("4,9 +FLAGS.SILENT (\\Deleted)", "+FLAGS.SILENT", "(\\Deleted)"), "UID "),
        ("STORE", ("4", "+FLAGS.SILENT", "(\\Deleted)"), "UID "),  # a subset
        ("STORE", ("4,9,10", "+FLAGS.SILENT", "(\\Deleted)"), "UID "),  # one more
        ("STORE", ("4:9", "+FLAGS.SILENT", "(\\Deleted)"), "UID "),  # a range
        ("STORE", ("1:*", "+FLAGS.SILENT", "(\\Deleted)"), "UID "),
        ("EXPUNGE", ("4,9,10",), "UID "),
        ("EXPUNGE", ("4:9",), "UID "),
        ("EXPUNGE", ("$",), "UID "),  # SEARCHRES's saved result
        ("APPEND", ("INBOX", "{10}"), None),
        ("COPY", ("4,9", "Trash"), "UID "),
        ("MOVE", ("4,9", "Trash"), "UID "),
        ("SELECT", ('"Sent Items"',), None),  # INBOX only
        ("SEARCH", ("ALL",), "UID "),  # only the canary header
        ("SEARCH", ('HEADER Subject "x"',), "UID "),
        ("SEARCH", ('HEADER X-BMA-Monitor-Canary "short"',), "UID "),
        ("SEARCH", (f"{CANARY} OR ALL",), "UID "),
        ("FETCH", ("4", "(BODY.PEEK[])"), "UID "),
        ("DELETE", ("INBOX",), None),
    ],
)
def test_canary_gate_refuses_everything_but_the_deletion(
    name: str, args: tuple[str, ...], prefix: str | None
) -> None:
    """Even with INBOX selected and canaries found, every other write form is refused."""
    with pytest.raises(ForbiddenCommand):
        selected_gate().check(name, args, prefix)


def test_canary_gate_lets_through_exactly_the_found_uids() -> None:
    """STORE \\Deleted and UID EXPUNGE pass for the found UIDs, in any order."""
    gate = selected_gate()
    gate.check("STORE", ("9,4", "+FLAGS.SILENT", "(\\Deleted)"), "UID ")
    gate.check("EXPUNGE", ("4,9",), "UID ")
    gate.observe("EXPUNGE", ("4,9",), "UID ", "OK", [b"4 EXPUNGE", b"Expunge completed."])
    with pytest.raises(ForbiddenCommand):  # done: nothing is left to delete
        gate.check("EXPUNGE", ("4,9",), "UID ")


def test_found_uids_do_not_survive_a_change_of_folder() -> None:
    """A new SELECT, an EXAMINE, or a failed search forgets what was found."""
    store = ("4,9", "+FLAGS.SILENT", "(\\Deleted)")
    for name, result in [("SELECT", "OK"), ("EXAMINE", "OK"), ("SELECT", "NO")]:
        gate = selected_gate()
        gate.observe(name, ("INBOX",), None, result, [b"done"])
        with pytest.raises(ForbiddenCommand):
            gate.check("STORE", store, "UID ")
    gate = selected_gate()
    gate.observe("SEARCH", (CANARY,), "UID ", "NO", [SEARCH_DONE])
    with pytest.raises(ForbiddenCommand):
        gate.check("STORE", store, "UID ")


def test_a_search_made_while_examining_authorises_nothing() -> None:
    """UIDs found read-only must be found again once INBOX is selected."""
    gate = CanaryWrites()
    gate.observe("EXAMINE", ("INBOX",), None, "OK", [b"[READ-ONLY] done"])
    gate.observe("SEARCH", (CANARY,), "UID ", "OK", [b"4 9", SEARCH_DONE])
    with pytest.raises(ForbiddenCommand):
        gate.check("STORE", ("4,9", "+FLAGS.SILENT", "(\\Deleted)"), "UID ")


def test_untagged_lines_in_a_search_reply_are_not_found_uids() -> None:
    """`3 EXISTS` arriving with a search reply does not add UID 3."""
    gate = selected_gate(found=b"4")
    gate.observe("SEARCH", (CANARY,), "UID ", "OK", [b"4", b"3 EXISTS", SEARCH_DONE])
    gate.check("EXPUNGE", ("4",), "UID ")
    with pytest.raises(ForbiddenCommand):
        gate.check("EXPUNGE", ("3,4",), "UID ")


def test_a_canary_gate_serves_one_session() -> None:
    """UIDs found in one mailbox cannot authorise a deletion in another."""
    gate = CanaryWrites()
    gate.claim()
    with pytest.raises(ForbiddenCommand):
        gate.claim()


@pytest.mark.parametrize(
    ("name", "args", "prefix"),
    [
        ("SELECT", ("INBOX",), None),
        ("FETCH", ("4", "(BODY[])"), "UID "),  # sets \Seen
        ("FETCH", ("4", "(RFC822)"), "UID "),
        ("FETCH", ("4", "(BODY.PEEK[])"), "UID "),  # no cap
        ("FETCH", ("4", f"(BODY.PEEK[]<0.{MAX_PEEK_BYTES + 1}>)"), "UID "),
        ("FETCH", ("4", "(BODY.PEEK[]<0.100> BODY[])"), "UID "),
        ("FETCH", ("4", "(BODY.PEEK[]<0.100>)", "(BODY[])"), "UID "),
        ("FETCH", ("4 (BODY[]) 5", "(BODY.PEEK[]<0.100>)"), "UID "),
        ("FETCH", ("4", "(FLAGS)"), "UID "),
        ("STORE", ("4", "+FLAGS.SILENT", "(\\Deleted)"), "UID "),
        ("EXPUNGE", ("4",), "UID "),
        ("COPY", ("4", "Trash"), "UID "),
        ("FETCH", ("1", "(BODY.PEEK[]<0.100>)"), None),
    ],
)
def test_bounce_reader_gate_only_reads(
    name: str, args: tuple[str, ...], prefix: str | None
) -> None:
    """The bounce reader may not write, select, or fetch beyond a capped peek."""
    with pytest.raises(ForbiddenCommand):
        BounceReads().check(name, args, prefix)


def test_bounce_reader_gate_passes_searches_and_capped_peeks() -> None:
    """A search and a capped peek (with or without UID) pass."""
    gate = BounceReads()
    gate.check("SEARCH", ("UID 5:* HEADER Content-Type report",), "UID ")
    gate.check("FETCH", ("5,7:9", f"(UID BODY.PEEK[]<0.{MAX_PEEK_BYTES}>)"), "UID ")
    gate.check("FETCH", ("5", "(BODY.PEEK[]<0.100>)"), "UID ")


def test_probes_keep_their_list() -> None:
    """The probes' gate refuses what the two other gates add."""
    for args, prefix in [(("ALL",), "UID "), (("4", "(BODY.PEEK[]<0.100>)"), "UID ")]:
        with pytest.raises(ForbiddenCommand):
            PROBE_GATE.check("SEARCH" if args == ("ALL",) else "FETCH", args, prefix)
    with pytest.raises(ForbiddenCommand):
        PROBE_GATE.check("SELECT", ("INBOX",), None)


def test_a_peek_fits_the_sessions_literal_cap() -> None:
    """The peek cap is within what a session accepts as one literal."""
    assert MAX_PEEK_BYTES <= MAX_LITERAL_BYTES


def test_only_the_canary_cleaner_obtains_the_write_gate() -> None:
    """No module of the monitor but the canary's IMAP side names CanaryWrites."""
    root = Path(__file__).resolve().parent.parent / "monitor"
    users = {
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if re.search(r"\bCanaryWrites\b", path.read_text(encoding="utf-8"))
    }
    assert users == {"probes/readonly.py", "canary/imap_side.py"}
