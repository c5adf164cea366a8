"""Where and how a benchmark result is recorded: the machine it ran on, and the files it is written to.

A full ``make bench`` writes ``benchmarks/results/latest.json`` (the README's performance tables are generated from
it: ``make readme-tables``) and a dated copy ``<YYYY-MM-DD>-<cpu>-<batching>.json``; both are committed. A
``--quick`` run writes ``quick-latest.json`` and ``<YYYY-MM-DD>-<cpu>-<batching>-quick.json`` (git-ignored) and
never touches ``latest.json``.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def cpu_slug(cpu: str) -> str:
    """A file-name form of a CPU model: ``AMD EPYC 7B13`` -> ``amd-epyc-7b13`` (as ``make numerics`` names its)."""
    return re.sub(r"[^a-z0-9]+", "-", cpu.lower()).strip("-")[:40] or "unknown-cpu"


def result_names(date: str, cpu: str, batching: str | None, quick: bool) -> tuple[str, str]:
    """(the latest result's file name, the dated copy's file name) of a run."""
    stem = f"{date}-{cpu_slug(cpu)}-{batching or 'default'}"
    return ("quick-latest.json", f"{stem}-quick.json") if quick else ("latest.json", f"{stem}.json")


def write_results(report: dict[str, Any], folder: Path = RESULTS) -> list[Path]:
    """Write ``report`` as its latest file and its dated copy under ``folder``; the paths written."""
    names = result_names(
        report["machine"]["date"][:10], report["machine"]["cpu"], report.get("batching"), report["quick"]
    )
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2) + "\n"
    paths = [folder / name for name in names]
    for path in paths:
        path.write_text(text)
    return paths


def _git(*args: str) -> str:
    import subprocess

    try:
        done = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=True
        )
        return done.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _numerics() -> dict[str, Any] | None:
    try:
        from lenbench.tracking.environment import numerics
    except ImportError:
        return None
    return numerics()


def machine() -> dict[str, Any]:
    """The machine, the software and the code the benchmark ran with (loads are added by the caller)."""
    from lenbench.tracking.environment import cpu_model

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "numerics": _numerics(),
        "platform": platform.platform(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": _git("status", "--porcelain", "--untracked-files=no") not in ("", "unknown"),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
