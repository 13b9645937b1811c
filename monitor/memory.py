"""Process memory settings the C allocator needs told (glibc only; elsewhere nothing)."""

from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)
# Blocks at least this large get their own mapping, returned to the system when freed.
MMAP_THRESHOLD_BYTES = 8 * 1024 * 1024


def return_large_blocks() -> bool:
    """Fix glibc's mmap threshold, so that a freed large block leaves the process at once.

    The CERBERE fingerprint (scrypt, n=2**14, r=8) allocates 16 MiB per call. glibc's
    sliding threshold then rises to that size, and from the next call on the block comes
    from the thread's heap and stays resident: measured, 16 MiB more RSS per thread that
    ever ran scrypt. A fixed threshold keeps that memory for the 50 ms of the call only.
    The largest piece /metrics joins (1,000 mailboxes of one family) stays below it.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
