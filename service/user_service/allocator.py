"""A process-wide allocator setting the server makes once at start.

Logins run scrypt (``auth/throttle.py``): 16 MiB buffers, allocated and freed on the login
threads. This module keeps those buffers from staying resident after each login.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
log = logging.getLogger(__name__)


def return_large_buffers_to_the_os(threshold: int = 128 * 1024) -> bool:
    """Pins glibc's mmap threshold so scrypt's 16 MiB buffers go back to the OS when freed.

    glibc raises its threshold after the first large buffer is freed, and from then on
    serves such buffers from the heap of whichever thread asked — where they stay: each
    login thread would keep 16 MiB resident for good. A fixed threshold keeps memory flat.
    Returns whether it took effect (it does nothing on other C libraries).
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        log.debug("no mallopt in %s: large buffers stay with the allocator", name)
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold))
