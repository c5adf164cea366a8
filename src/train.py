"""Hydra entry point of one job: ``python -m train method=psi seed=0`` (``-m`` sweeps).

Thin on purpose (lightning-hydra-template style): compose the config, hand it to :func:`lenbench.job.run_job` with
where the job runs, print the summary. A problem the user can fix (:class:`lenbench.errors.UserError`: config, data,
store) ends with one line naming it and the fix, exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import gc
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.utils import get_original_cwd
from omegaconf import DictConfig

from lenbench.config import register_schema, run_command_line
from lenbench.errors import UserError, exit_with
from lenbench.seed_batch import current_batch

log = logging.getLogger("lenbench")
register_schema()


def job_context() -> Any:
    """Where this Hydra job runs: project folder, output folder, sweep folder, parallel launcher or not."""
    from hydra.types import RunMode

    from lenbench.job import JobContext  # deferred, as every lenbench.job import here: it imports torch

    hydra_cfg = HydraConfig.get()
    launcher = str(hydra_cfg.launcher.get("_target_", "")) if hydra_cfg.launcher else ""
    return JobContext(
        project_dir=Path(get_original_cwd()),
        out_dir=Path(hydra_cfg.runtime.output_dir),
        sweep_id=str(hydra_cfg.sweep.dir) if hydra_cfg.mode == RunMode.MULTIRUN else "",
        parallel_launcher="joblib" in launcher or "submitit" in launcher,
        seed_batch=current_batch(),
    )


class PrepareTrackingStore(Callback):
    """Hydra callback: before a sweep's jobs start, create the SQLite schema and the experiment once, so parallel
    jobs never race on them."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.tracking.enabled:
            from lenbench.job import experiment_name, open_tracker  # deferred: imports torch

            try:
                open_tracker(config, Path.cwd(), experiment_name(config))
            except UserError as exc:
                exit_with(exc)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    # Said before the deferred imports below (torch, Lightning, MLflow: seconds of CPU), so a job answers at once.
    log.info("%s-s%s on %s: starting, loading its libraries", cfg.method.name, cfg.seed, cfg.data.name)
    from lenbench.experiment import JobInterrupted  # deferred, with folds and job: they import torch
    from lenbench.folds import FoldFailed
    from lenbench.job import format_summary, run_job

    signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM closes the runs as KILLED, like Ctrl-C
    try:
        outcome = run_job(cfg, job_context())
    except UserError as exc:
        log.error("%s", exc)
        sys.exit(2)
    except JobInterrupted as exc:
        log.error("%s", exc)
        sys.exit(130)
    except FoldFailed as exc:
        # deferred: it imports torch, which the job has loaded by now
        from lenbench.nn.module import TrainingDiverged

        bug = exc.__cause__ is not None and not isinstance(exc.__cause__, TrainingDiverged)
        log.error("%s (method %s)", exc, cfg.method.name, exc_info=exc.__cause__ if bug else None)
        sys.exit(1)
    if outcome.skipped_by is None:
        print(format_summary(str(cfg.method.name), outcome.summary, outcome.out_dir))  # the CLI's own output
    return float(outcome.summary.get("explanation_accuracy_mean", float("nan")))


if __name__ == "__main__":
    try:
        run_command_line(main, Path(__file__).resolve().parent.parent / "conf", "train")
    finally:
        gc.freeze()  # the exit's garbage collections then skip the module heap (torch, Lightning, MLflow)
