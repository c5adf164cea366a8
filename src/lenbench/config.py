"""The typed schema of ``conf/train.yaml``, the identity of a job, and how many fold processes it gets.

The schema makes a wrong type (``seed=abc``, ``cv.n_splits=1.5``) or an unknown key (``cv.nfolds=3``) fail at
composition with Hydra's message naming the key, before anything runs. Groups whose keys depend on the choice
(data, method, trainer) are validated by the constructors they instantiate. Registered under the name
``train_schema`` by :func:`register_schema` (the entry point calls it before composing).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, List, Optional  # noqa: UP035 - OmegaConf schemas need typing forms

from omegaconf import MISSING

from lenbench.errors import ConfigError


@dataclass
class CVSchema:
    n_splits: int = 10
    split_seed: int = 42
    folds: Optional[List[int]] = None  # noqa: UP006, UP045 - OmegaConf needs typing's forms
    val_size: float = 0.3
    inner_split_seed: int = 42
    n_jobs: Any = "auto"


@dataclass
class TrackingSchema:
    uri: Optional[str] = None  # noqa: UP045
    experiment: Optional[str] = None  # noqa: UP045
    enabled: bool = True


@dataclass
class TrainSchema:
    data: Any = MISSING
    method: Any = MISSING
    trainer: Any = MISSING
    tracking: TrackingSchema = field(default_factory=TrackingSchema)
    experiment: Any = None
    seed: int = 42
    torch_threads: int = 1
    target_class: int = 1
    resume: bool = True
    cv: CVSchema = field(default_factory=CVSchema)


def register_schema() -> None:
    """Store :class:`TrainSchema` as ``train_schema``, the first default of ``conf/train.yaml``."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="train_schema", node=TrainSchema)


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``: the dotted keys MLflow params and config hashes use."""
    if not isinstance(node, dict):
        return {prefix: node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


# Keys that do not change what a job computes: two runs differing only there are the same experiment.
NOT_HASHED = ("tracking", "hydra", "resume", "trainer.log_every_n_epochs")


def config_hash(resolved: dict[str, Any]) -> str:
    """Hash of the resolved config minus tracking/launcher keys: the identity of a job for resuming sweeps."""
    flat = flatten(resolved)
    kept = {k: v for k, v in flat.items() if not any(k == n or k.startswith(n + ".") for n in NOT_HASHED)}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


def resolve_n_jobs(value: Any, processes_per_fold: int = 1, parallel_launcher: bool = False) -> int:
    """``auto``: every core this process may use divided by the processes one fold occupies (``trainer=ddp``), but
    1 inside a sweep whose launcher already runs jobs in parallel, or when the fold trains on a GPU."""
    if value == "auto":
        if parallel_launcher or processes_per_fold < 1:
            return 1
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1, cores // processes_per_fold)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"cv.n_jobs={value!r}: must be a positive integer or auto")
    return value


def fold_slots(trainer: Any) -> int:
    """Processes one fold trains with: ``devices`` under a DDP strategy on CPU, 1 otherwise; 0 for an accelerator
    (fold workers are forked, and CUDA does not survive a fork once initialised)."""
    if str(trainer.get("accelerator", "cpu")) not in ("cpu", "auto"):
        return 0
    devices = trainer.get("devices", 1)
    if str(trainer.get("strategy", "auto")).startswith("ddp") and isinstance(devices, int):
        return max(1, devices)
    return 1
