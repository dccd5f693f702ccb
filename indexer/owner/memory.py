"""The owner's own memory: resident size, and handing freed memory back to the system after a model is released.

glibc keeps freed heap pages in its arenas: after a model is dropped, RSS stays where it was until `malloc_trim`
returns them (measured here: releasing offline-lite and trimming gave back ~150 MB that `gc.collect` alone did not).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import sys


def rss_bytes() -> int | None:
    """Resident set size of this process (Linux /proc; None where it cannot be read)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def release_freed_memory() -> None:
    """Collect cycles (a model's modules reference each other), then ask glibc to return free pages."""
    gc.collect()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            libc.malloc_trim(0)
        except (OSError, AttributeError):  # musl or another libc without malloc_trim: nothing to do
            pass
