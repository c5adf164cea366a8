"""What a run must record to be reproducible: code version, thread count, library versions, machine."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from functools import lru_cache, partial
from importlib import metadata
from pathlib import Path
from typing import Any

from lenbench.nn.allocator import allocator_settings

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


@lru_cache(maxsize=8)
def git_commit(project_dir: str | Path) -> tuple[str, bool]:
    """(commit sha or "unknown", dirty) of the project checkout; never raises.

    Read once per process: a sweep's jobs run the code its process imported, so a commit made while a long sweep
    runs must not relabel the jobs that start after it (they used to record the HEAD of their own start)."""
    git = partial(subprocess.run, cwd=project_dir, capture_output=True, text=True, timeout=5, check=True)
    try:
        sha = git(["git", "rev-parse", "HEAD"]).stdout.strip()
        status = git(["git", "status", "--porcelain", "--untracked-files=no"]).stdout
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


# Settings that choose float kernels, hence the low bits of results: oneMKL's code path (MKL_CBWR), ATen's vector
# width (ATEN_CPU_CAPABILITY) and the thread pools.
_NUMERIC_VARIABLES = (
    "MKL_CBWR",
    "MKL_ENABLE_INSTRUCTIONS",
    "ATEN_CPU_CAPABILITY",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "MKL_DYNAMIC",
)


def numerics(torch_used: bool = True) -> dict[str, Any]:
    """How this process computes floats: the BLAS torch was built with, the vector instructions ATen dispatches to,
    and the environment variables that change either (unset ones are recorded as null). Without ``torch_used`` (a
    job that never loads torch) only the variables: there are no torch kernels to describe."""
    variables = {name: os.environ.get(name) for name in _NUMERIC_VARIABLES}
    if not torch_used:
        return {"blas": None, "mkl_version": None, "aten_cpu_capability": None, "variables": variables}
    import torch

    config = torch.__config__.show()
    blas = re.search(r"BLAS_INFO=(\w+)", config)
    mkl = re.search(r"Math Kernel Library Version ([^\s]+)", config)
    return {
        "blas": blas.group(1) if blas else "unknown",
        "mkl_version": mkl.group(1) if mkl else None,
        "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "variables": variables,
    }


def environment(project_dir: str | Path, torch_threads: int, torch_used: bool = True) -> dict[str, Any]:
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
        "numerics": numerics(torch_used),
        "allocator": allocator_settings(),  # glibc malloc settings lenbench applies (lenbench.nn.allocator)
        "packages": package_versions(),
    }
