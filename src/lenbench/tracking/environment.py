"""What a run must record to be reproducible: code version, thread count, library versions, machine."""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

_PACKAGES = (
    "torch",
    "pytorch-lightning",
    "hydra-core",
    "omegaconf",
    "mlflow",
    "scikit-learn",
    "sympy",
    "numpy",
    "pandas",
)


def git_commit(project_dir: str | Path) -> tuple[str, bool]:
    """(commit sha or "unknown", dirty) of the project checkout; never raises."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=project_dir,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=project_dir,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
        return sha, bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        return "unknown", False


def package_versions() -> dict[str, str]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def cpu_model() -> str:
    """The CPU's model name (results differ across CPU types, e.g. Intel and AMD give other pruning formulas)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(project_dir: str | Path, torch_threads: int) -> dict[str, Any]:
    """A JSON-ready description of where and with what a run happened."""
    sha, dirty = git_commit(project_dir)
    return {
        "git_commit": sha,
        "git_dirty": dirty,
        "torch_threads": torch_threads,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_model": cpu_model(),
        "packages": package_versions(),
    }
