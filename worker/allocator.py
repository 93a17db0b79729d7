"""Process set-up: keep glibc's allocator from handing PyTorch's big buffers back to the kernel after every use.

Why: a CPU forward/backward pass allocates and frees buffers of a few hundred KB to tens of MB many times a
step. glibc serves each one above its mmap threshold with a fresh ``mmap`` and returns it with ``munmap`` on
free, and trims the heap's top whenever more than 128 KB is free there — so the same pages are faulted in and
zeroed by the kernel again and again. On this project's 2-core machine the demo's healthy run spent 23 s of
44 s in the kernel over 3 epochs; with the settings below it took 34 s, 6 s of them in the kernel, with
bit-identical results (the arithmetic does not change, only where the memory comes from).

The settings, through ``mallopt`` (the same as the ``MALLOC_*_`` environment variables, but applied by the
process itself so that every way of starting a worker gets them):

* ``M_MMAP_THRESHOLD`` 32 MiB (glibc's ceiling): buffers below it come from the heap and are reused;
* ``M_TRIM_THRESHOLD`` 1 GiB: free memory at the heap's top is returned only past 1 GiB;
* ``M_TOP_PAD`` 256 MiB: the heap grows in large steps.

Measured on that run (3 epochs, 43.9 s with glibc's defaults): all three 34.3 s; the mmap and trim thresholds
without the pad 36.8 s; the mmap threshold alone 45.8 s; the trim threshold and pad without it 56.0 s (worse:
large buffers still come from ``mmap``, and the heap keeps growing). The cost is memory the process keeps
after a peak (up to about 1 GiB per malloc arena) — a fair trade for a worker or a training process, whose next
step needs the same buffers again. Anything but glibc (musl, macOS, Windows) is left alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

# mallopt parameter numbers, from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

#: (parameter, value) pairs applied by :func:`keep_freed_memory`.
SETTINGS: tuple[tuple[int, int], ...] = (
    (_M_MMAP_THRESHOLD, 32 << 20),
    (_M_TRIM_THRESHOLD, 1 << 30),
    (_M_TOP_PAD, 256 << 20),
)

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Apply :data:`SETTINGS` to this process's glibc allocator, once (later calls return the first answer).

    Returns:
        True when glibc accepted every setting; False on another C library or when one was refused
        (the process then runs with the allocator's defaults for the rest, which is only slower).
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl has no mallopt symbol
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _applied = all(mallopt(parameter, value) == 1 for parameter, value in SETTINGS)
    if not _applied:
        log.debug("glibc refused a mallopt setting; the allocator keeps its defaults")
    return _applied
