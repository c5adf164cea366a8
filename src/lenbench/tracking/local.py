"""Local result files, written atomically: a job's results.csv, summary.json and explanations.json, and any
other text or JSON file (job.json, the report's tables, provenance.json), so no reader sees half a file."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from lenbench.errors import DiskFull

NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # a full disk, a full quota, a file-size limit


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic_write(path: Path, text: str) -> None:
    """Write to a temporary file beside ``path`` and rename it, so no reader ever sees half a file. The file gets
    the mode a plain ``open`` would give it (0644 under the usual umask), not ``mkstemp``'s private 0600. No space
    for it is :class:`DiskFull` (a user error: one line), any other failure keeps its traceback."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o666 & ~_umask())
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        if exc.errno not in NO_SPACE:
            raise
        raise DiskFull(
            f"no space to write {path} ({exc.strerror}; it needs {len(text.encode())} bytes): free space on that "
            f"disk or write elsewhere (hydra.run.dir=...), then run the same command again"
        ) from None


def write_text(path: Path, text: str) -> Path:
    _atomic_write(path, text)
    return path


def write_json(path: Path, payload: Any) -> Path:
    return write_text(path, json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")


def write_results(
    out_dir: Path, results: pd.DataFrame, summary: dict[str, Any], explanations: dict[str, Any]
) -> dict[str, Path]:
    """Write the job's three result files into ``out_dir``; returns their paths by name."""
    out_dir = Path(out_dir)
    paths = {
        "results.csv": out_dir / "results.csv",
        "summary.json": out_dir / "summary.json",
        "explanations.json": out_dir / "explanations.json",
    }
    _atomic_write(paths["results.csv"], results.to_csv(index=False))
    write_json(paths["explanations.json"], explanations)
    write_json(paths["summary.json"], summary)  # last: its "complete" vouches for the other two
    return paths
