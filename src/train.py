"""Hydra entry point of one job: ``python -m train method=psi seed=0`` (``-m`` sweeps).

Thin on purpose: compose and validate the config, build data set and explainer from ``_target_``s, hand them to
``lenbench.experiment``. Every anticipated problem ends with one line naming it and the fix, exit status 2.
"""

from __future__ import annotations

import logging
import sys
from functools import partial
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import get_original_cwd, instantiate
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("lenbench")


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

    from lenbench.experiment import CVConfig, run_experiment
    from lenbench.tracking.environment import environment
    from lenbench.tracking.mlflow import MlflowTracker, NullTracker, default_artifact_location, default_tracking_uri

    if int(cfg.torch_threads) < 1:
        raise ValueError(f"torch_threads={cfg.torch_threads}: must be a positive integer (1 is reproducible and fastest)")
    torch.set_num_threads(int(cfg.torch_threads))

    project_dir = Path(get_original_cwd())
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    method = str(cfg.method.name)
    cv = CVConfig(**OmegaConf.to_container(cfg.cv, resolve=True))
    cv.fold_indices()  # validates cv.folds before any work

    dataset = instantiate(cfg.data)
    make_explainer = partial(instantiate, cfg.method.explainer)
    make_explainer()  # validates the method's hyper-parameters before any training

    resolved = OmegaConf.to_container(cfg, resolve=True)
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
    }
    tracker = NullTracker()
    if cfg.tracking.enabled:
        uri = cfg.tracking.uri or default_tracking_uri(project_dir)
        experiment = cfg.tracking.experiment or dataset.name
        tracker = MlflowTracker(uri, experiment, artifact_location=default_artifact_location(project_dir))

    log.info("%s on %s (%d rows, %d concepts), %d fold(s) -> %s", run_name, dataset.name, len(dataset.y),
             dataset.n_concepts, len(cv.fold_indices()), out_dir)
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
        params=_flatten("", {k: v for k, v in resolved.items() if k != "hydra"}, {}),
        texts={"config.yaml": OmegaConf.to_yaml(cfg, resolve=True), "environment.json": _json(env)},
        summary_extra={"seed": int(cfg.seed), "environment": env},
    )
    _print_summary(method, outcome.summary, out_dir)
    return outcome.summary


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
    lines += [f"  {label:<24} {summary[f'{k}_mean']:>10.4f} +- {summary[f'{k}_sem']:.4f}" for label, k in rows]
    lines.append(f"  {'consistency':<24} {summary['explanation_consistency']:>10.4f}")
    lines.append(f"  results: {out_dir / 'results.csv'}")
    print("\n".join(lines))  # the CLI's own output, not library logging


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    from lenbench.data.errors import DataError
    from lenbench.tracking.errors import TrackingError

    try:
        summary = run(cfg)
    except (DataError, TrackingError, ValueError) as exc:
        log.error("%s", exc)
        sys.exit(2)
    except InstantiationException as exc:
        log.error("%s", _cause(exc))
        sys.exit(2)
    return float(summary["explanation_accuracy_mean"])


if __name__ == "__main__":
    main()
