"""Hydra entry point of one job: ``python -m train method=psi seed=0`` (``-m`` sweeps).

Thin on purpose: compose and validate the config, build data set and explainer from ``_target_``s, hand them to
``lenbench.experiment``. Every anticipated problem ends with one line naming it and the fix, exit status 2.
"""

from __future__ import annotations

import logging
import signal
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, List, Optional  # noqa: UP035 - OmegaConf schemas need typing forms

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.experimental.callback import Callback
from hydra.utils import get_original_cwd, instantiate
from omegaconf import MISSING, DictConfig, OmegaConf

log = logging.getLogger("lenbench")


# The typed schema of conf/train.yaml: a wrong type (seed=abc, cv.n_splits=1.5) or an unknown key (cv.nfolds=3)
# ends at composition with Hydra's message naming the key, before anything runs. Groups whose keys depend on the
# choice (data, method, trainer) are validated by the constructors they instantiate.
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


ConfigStore.instance().store(name="train_schema", node=TrainSchema)


def _flatten(prefix: str, node: Any, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(node, dict):
        for key, value in node.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), value, out)
    else:
        out[prefix] = node
    return out


def _cause(exc: BaseException) -> str:
    """The user-facing message of an instantiation error: the innermost cause, without Hydra's wrapping."""
    while isinstance(exc, InstantiationException) and exc.__cause__ is not None:
        exc = exc.__cause__
    return str(exc)


def run(cfg: DictConfig) -> dict[str, float]:
    import torch

    from lenbench.experiment import CVConfig, check_cv, run_experiment
    from lenbench.tracking.environment import environment
    from lenbench.tracking.errors import TrackingError
    from lenbench.tracking.local import write_json
    from lenbench.tracking.mlflow import (
        MlflowTracker,
        NullTracker,
        ResilientTracker,
        default_artifact_location,
    )

    if int(cfg.torch_threads) < 1:
        raise ValueError(
            f"torch_threads={cfg.torch_threads}: must be a positive integer (1 is reproducible and fastest)"
        )
    torch.set_num_threads(int(cfg.torch_threads))

    project_dir = Path(get_original_cwd())
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    method = str(cfg.method.name)
    cv_settings = OmegaConf.to_container(cfg.cv, resolve=True)
    cv_settings["n_jobs"] = resolve_n_jobs(cv_settings.get("n_jobs", 1), _fold_slots(cfg.trainer))
    cv = CVConfig(**cv_settings)
    cv.fold_indices()  # validates cv.folds before any work

    dataset = instantiate(cfg.data)
    check_cv(dataset, cv)
    make_explainer = partial(instantiate, cfg.method.explainer)
    make_explainer()  # validates the method's hyper-parameters before any training

    resolved = OmegaConf.to_container(cfg, resolve=True)
    digest = config_hash(resolved)
    env = environment(project_dir, torch.get_num_threads())
    run_name = f"{method}-s{cfg.seed}"
    tags = {
        "mlflow.runName": run_name,
        "method": method,
        "data": dataset.name,
        "label": dataset.label,
        "seed": str(cfg.seed),
        "git_commit": env["git_commit"],
        "mlflow.source.git.commit": env["git_commit"],
        "git_dirty": str(env["git_dirty"]),
        "torch_threads": str(env["torch_threads"]),
        "data_checksum": dataset.checksum or "",
        "config_hash": digest,
        "sweep_id": _sweep_id(),
    }
    tracker = NullTracker()
    experiment_name = cfg.tracking.experiment or dataset.name
    if cfg.tracking.enabled:
        tracker = ResilientTracker(
            MlflowTracker(
                tracking_uri(cfg, project_dir),
                experiment_name,
                artifact_location=default_artifact_location(project_dir),
            ),
            tracking_uri(cfg, project_dir),
        )
        previous = tracker.find_finished(digest) if cfg.resume else None
        if previous is not None:
            log.info(
                "%s: skipped, run %s already FINISHED this configuration (resume=false reruns it)",
                run_name,
                previous,
            )
            return {}

    log.info(
        "%s on %s (%d rows, %d concepts), %d fold(s) -> %s",
        run_name,
        dataset.name,
        len(dataset.y),
        dataset.n_concepts,
        len(cv.fold_indices()),
        out_dir,
    )
    params = _flatten("", {k: v for k, v in resolved.items() if k != "hydra"}, {})
    texts = {"config.yaml": OmegaConf.to_yaml(cfg, resolve=True), "environment.json": _json(env)}
    write_json(
        out_dir / "job.json",
        {
            "run_name": run_name,
            "experiment": experiment_name,
            "tags": tags,
            "params": params,
            "texts": texts,
            "artifact_location": default_artifact_location(project_dir),
        },
    )
    outcome = run_experiment(
        dataset,
        method,
        make_explainer,
        cv,
        out_dir,
        target_class=int(cfg.target_class),
        tracker=tracker,
        run_name=run_name,
        tags=tags,
        params=params,
        texts=texts,
        summary_extra={"seed": int(cfg.seed), "environment": env},
    )
    _print_summary(method, outcome.summary, out_dir)
    if getattr(tracker, "error", None):
        raise TrackingError(
            f"the MLflow store failed during the job ({tracker.error}); its results are complete in {out_dir}: "
            f"import them once the store works with `python -m lenbench.tracking.import_results {out_dir}`"
        )
    return outcome.summary


# Keys that do not change what a job computes: two runs differing only there are the same experiment.
_NOT_HASHED = ("tracking", "hydra", "resume", "trainer.log_every_n_epochs")


def config_hash(resolved: dict[str, Any]) -> str:
    """Hash of the resolved config minus tracking/launcher keys: the identity of a job for resuming sweeps."""
    import hashlib
    import json

    flat = _flatten("", resolved, {})
    kept = {k: v for k, v in flat.items() if not any(k == n or k.startswith(n + ".") for n in _NOT_HASHED)}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


def resolve_n_jobs(value: Any, processes_per_fold: int = 1) -> int:
    """``auto``: every core this process may use divided by the processes one fold occupies (``trainer=ddp``), but
    1 inside a sweep whose launcher already runs jobs in parallel, or when the fold trains on a GPU."""
    import os

    if value == "auto":
        hydra_cfg = HydraConfig.get()
        launcher = str(hydra_cfg.launcher.get("_target_", "")) if hydra_cfg.launcher else ""
        if "joblib" in launcher or "submitit" in launcher or processes_per_fold < 1:
            return 1
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1, cores // processes_per_fold)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"cv.n_jobs={value!r}: must be a positive integer or auto")
    return value


def _fold_slots(trainer: DictConfig) -> int:
    """Processes one fold trains with: ``devices`` under a DDP strategy on CPU, 1 otherwise; 0 for an accelerator
    (fold workers are forked, and CUDA does not survive a fork once initialised)."""
    if str(trainer.get("accelerator", "cpu")) not in ("cpu", "auto"):
        return 0
    devices = trainer.get("devices", 1)
    if str(trainer.get("strategy", "auto")).startswith("ddp") and isinstance(devices, int):
        return max(1, devices)
    return 1


def tracking_uri(cfg: DictConfig, project_dir: Path) -> str:
    from lenbench.tracking.mlflow import default_tracking_uri

    return cfg.tracking.uri or default_tracking_uri(project_dir)


def _sweep_id() -> str:
    """The sweep folder of a multirun (unique per sweep), or "" for a single run."""
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    return str(hydra_cfg.sweep.dir) if hydra_cfg.mode == RunMode.MULTIRUN else ""


class PrepareTrackingStore(Callback):
    """Hydra callback: before a sweep's jobs start, create the SQLite schema and the experiment once, so parallel
    jobs never race on them."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not config.tracking.enabled:
            return
        from lenbench.tracking.mlflow import MlflowTracker, default_artifact_location

        project_dir = Path.cwd()
        experiment = config.tracking.experiment or _data_name(config)
        MlflowTracker(tracking_uri(config, project_dir), experiment, default_artifact_location(project_dir))


def _data_name(config: DictConfig) -> str:
    """The data set's name without loading it: the loader's module name (mimic, synthetic xor/dnf)."""
    target = str(config.data.get("_target_", ""))
    return {"make_xor": "xor", "make_dnf": "dnf", "load_mimic": "mimic"}.get(
        target.rsplit(".", 1)[-1], "default"
    )


def _json(payload: Any) -> str:
    import json

    return json.dumps(payload, indent=2, default=str) + "\n"


def _print_summary(method: str, summary: dict[str, float], out_dir: Path) -> None:
    rows = [
        ("model accuracy", "model_accuracy"),
        ("explanation accuracy", "explanation_accuracy"),
        ("fidelity", "explanation_fidelity"),
        ("complexity", "explanation_complexity"),
        ("extraction time (s)", "elapsed_time"),
        ("training time (s)", "training_time"),
        ("majority-class accuracy", "majority_accuracy"),
    ]
    lines = [f"{method}: mean +- sem over {int(summary['n_folds'])} fold(s)"]
    lines += [
        f"  {label:<24} {summary[f'{k}_mean']:>10.4f} +- {summary[f'{k}_sem']:.4f}" for label, k in rows
    ]
    lines.append(f"  {'consistency':<24} {summary['explanation_consistency']:>10.4f}")
    lines.append(f"  results: {out_dir / 'results.csv'}")
    print("\n".join(lines))  # the CLI's own output, not library logging


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    from lenbench.data.errors import DataError
    from lenbench.experiment import FoldFailed
    from lenbench.tracking.errors import TrackingError

    signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM closes the runs as KILLED, like Ctrl-C
    try:
        summary = run(cfg)
    except (DataError, TrackingError, ValueError) as exc:
        log.error("%s", exc)
        sys.exit(2)
    except InstantiationException as exc:
        log.error("%s", _cause(exc))
        sys.exit(2)
    except FoldFailed as exc:
        log.error("%s (method %s; the folds done before are in results.csv)", exc, cfg.method.name)
        log.debug("cause", exc_info=exc.__cause__)
        sys.exit(1)
    return float(summary.get("explanation_accuracy_mean", float("nan")))


if __name__ == "__main__":
    main()
