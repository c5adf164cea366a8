"""Keep freed activation buffers in the process instead of handing them back to the kernel at every epoch.

Why: a full-batch epoch of the pruning MLP allocates and frees the same few buffers of 0.5-1 MB (activations and
their gradients over all rows) thousands of times. glibc serves blocks that large with ``mmap`` and returns them
with ``munmap``, so every epoch pays fresh page faults on zeroed pages; several networks trained in one module
keep more of them alive at once, which made the framework pay more than a plain loop. Raising glibc's
``M_MMAP_THRESHOLD`` (blocks below it come from the heap) and ``M_TRIM_THRESHOLD`` (the heap top is kept up to it)
makes the freed buffers reusable at once. Allocation never changes what is computed: ``make bench`` checks the
trained weights bit for bit.

Process-wide, set once where a job (or a benchmark) starts; forked fold workers inherit it. A no-op off glibc.
"""

from __future__ import annotations

import ctypes
import logging
import platform

log = logging.getLogger(__name__)

# glibc's mallopt parameters (malloc.h) and the values lenbench sets.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
SETTINGS = {"M_MMAP_THRESHOLD": 64 * 2**20, "M_TRIM_THRESHOLD": 256 * 2**20}


def glibc() -> bool:
    """Whether this process runs on glibc, whose ``mallopt`` takes :data:`SETTINGS`."""
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def allocator_settings() -> dict[str, int]:
    """The settings :func:`keep_freed_buffers` applies on this machine (empty off glibc), for the run's record."""
    return dict(SETTINGS) if glibc() else {}


def keep_freed_buffers() -> dict[str, int]:
    """Apply :data:`SETTINGS` through glibc's ``mallopt``; returns what was applied (empty off glibc)."""
    if not glibc():
        return {}
    mallopt = ctypes.CDLL(None).mallopt  # the process's own symbols: glibc is loaded already
    codes = {"M_MMAP_THRESHOLD": _M_MMAP_THRESHOLD, "M_TRIM_THRESHOLD": _M_TRIM_THRESHOLD}
    applied = {key: value for key, value in SETTINGS.items() if mallopt(codes[key], value) == 1}
    if len(applied) != len(SETTINGS):
        log.debug("mallopt refused %s", sorted(set(SETTINGS) - set(applied)))
    return applied
