"""``python tests/full_disk.py <folder> <bytes> <module> <args...>``: ``python -m <module> <args...>`` on a disk
that fills up: once ``<bytes>`` were written into files under ``<folder>`` through ``os.fdopen`` (how lenbench
writes its result files: ``tracking/local.py``), every further write there fails with ENOSPC, as the kernel fails
it on a full disk. Test-only fault injection (a test cannot mount a small tmpfs); the job's forked workers inherit it.
"""

from __future__ import annotations

import errno
import os
import runpy
import sys
from typing import Any

FOLDER, BUDGET = os.path.realpath(sys.argv[1]) + os.sep, int(sys.argv[2])
_written = [0]
_fdopen = os.fdopen


class _FillingFile:
    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def write(self, data: Any) -> int:
        _written[0] += len(data)
        if _written[0] > BUDGET:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self._handle.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def __enter__(self) -> _FillingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.__exit__(*exc)


def _fdopen_on_small_disk(fd: int, *args: Any, **kwargs: Any) -> Any:
    handle = _fdopen(fd, *args, **kwargs)
    return _FillingFile(handle) if os.readlink(f"/proc/self/fd/{fd}").startswith(FOLDER) else handle


os.fdopen = _fdopen_on_small_disk
sys.argv = sys.argv[3:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
