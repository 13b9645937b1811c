"""A fingerprint's 16 MiB leave the process once computed, with the daemon's malloc setting."""

from __future__ import annotations

import subprocess
import sys

import pytest

GROWTH = """
import hashlib, sys
from concurrent.futures import ThreadPoolExecutor
from monitor.memory import return_large_blocks

def rss_mib():
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS"))
    return int(line.split()[1]) / 1024

def fingerprint(i):
    return hashlib.scrypt(b"%d" % i, salt=b"s" * 16, n=2**14, r=8, p=1, dklen=16)

if sys.argv[1] == "set":
    assert return_large_blocks()
before = rss_mib()
with ThreadPoolExecutor(1) as pool:
    list(pool.map(fingerprint, range(5)))
    print(rss_mib() - before)
"""


def growth(setting: str) -> float:
    """RSS growth (MiB) of a fresh process after five fingerprints in a thread."""
    run = subprocess.run(
        [sys.executable, "-c", GROWTH, setting], capture_output=True, text=True, check=True
    )
    return float(run.stdout)


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's mallopt: Linux only")
def test_a_fingerprint_thread_keeps_no_scrypt_block_resident() -> None:
    """Without the setting the thread keeps the 16 MiB block; with it, it gives it back."""
    assert growth("unset") >= 12
    assert growth("set") < 4
