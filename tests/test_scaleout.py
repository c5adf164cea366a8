"""Sweeps that leave the machine, really run: jobs as submitit jobs (separate processes, as on cluster nodes) and
several writers, all logging to a real ``mlflow server`` on 127.0.0.1 started here; every run and metric arrives.

``hydra/launcher=submitit_local`` runs each job through submitit's local executor: the job is pickled into the
sweep's ``.submitit/<job id>/`` folder, started as its own process and its result collected, as the Slurm executor
does on nodes (``conf/hydra/launcher/slurm.yaml`` differs from ``submitit_local.yaml`` only in the executor).
"""

from __future__ import annotations

import math
import os
import signal
import sys
from pathlib import Path

import pandas as pd
import pytest
from helpers import REPO, Job, job_env, run_train
from omegaconf import OmegaConf
from test_tracking_record import tracking_server  # noqa: F401 - the fixture: mlflow server on a free port

from lenbench.scoring import METRICS
from lenbench.tracking.describe import PARENT_RUN_ID_TAG

pytestmark = pytest.mark.e2e

TINY = ("data=xor", "data.n_samples=300", "method=tree", "cv.n_splits=3", "cv.n_jobs=1")


def _jobs_on_server(uri: str) -> tuple[list, dict[str, list]]:
    """(parent runs, fold runs by parent id) of experiment xor on the server."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("xor").experiment_id], max_results=5000)
    parents = [r for r in runs if PARENT_RUN_ID_TAG not in r.data.tags]
    folds: dict[str, list] = {}
    for run in runs:
        if PARENT_RUN_ID_TAG in run.data.tags:
            folds.setdefault(run.data.tags[PARENT_RUN_ID_TAG], []).append(run)
    return parents, folds


def _assert_job_arrived(parent, folds: list, job_dir: Path) -> None:  # noqa: ANN001
    """The job's parent run and each fold run are FINISHED on the server, and every finite value of the job's
    ``results.csv`` (one row per fold, one column per metric) is the fold run's metric."""
    results = pd.read_csv(job_dir / "results.csv")
    assert parent.info.status == "FINISHED"
    assert sorted(int(r.data.tags["fold"]) for r in folds) == sorted(results["split"])
    by_fold = {int(r.data.tags["fold"]): r for r in folds}
    for row in results.itertuples():
        run = by_fold[row.split]
        assert run.info.status == "FINISHED"
        for name in METRICS.fold_names:
            value = getattr(row, name)
            if isinstance(value, float) and math.isfinite(value):
                assert run.data.metrics[name] == pytest.approx(value), (name, row.split)
    for name in ("model_accuracy_mean", "explanation_accuracy_mean", "n_folds"):
        assert name in parent.data.metrics


def test_a_submitit_sweep_logs_every_run_to_the_tracking_server(tmp_path: Path, tracking_server) -> None:  # noqa: F811, ANN001
    uri, _ = tracking_server
    proc = run_train(tmp_path, *TINY, "hydra/launcher=submitit_local", "seed=0,1", multirun=True, uri=uri)
    assert proc.returncode == 0, proc.stderr[-4000:]
    sweep = tmp_path / "sweep"
    submitted = [p for p in (sweep / ".submitit").iterdir() if p.name != "%j"]
    assert len(submitted) == 2, "two submitit jobs, each with its folder"
    assert all(list(p.glob("*_result.pkl")) for p in submitted), "each job's result was collected"
    parents, folds = _jobs_on_server(uri)
    assert sorted(r.data.tags["seed"] for r in parents) == ["0", "1"]
    pids = {r.data.tags["lenbench.pid"] for r in parents}
    assert len(pids) == 2, "the two jobs ran in separate processes"
    for parent in parents:
        job_dir = sweep / f"{parent.data.tags['seed']}-tree-s{parent.data.tags['seed']}"
        _assert_job_arrived(parent, folds[parent.info.run_id], job_dir)
    launcher = OmegaConf.load(sweep / "multirun.yaml").hydra.launcher
    assert launcher._target_.endswith("LocalLauncher") and launcher.cpus_per_task == 1


def test_the_slurm_launcher_differs_from_submitit_local_only_in_the_executor() -> None:
    def launcher(name: str) -> dict:
        from lenbench.config import _compose, register_schema

        register_schema()
        cfg, _ = _compose(REPO / "conf", "train", [f"hydra/launcher={name}"], multirun=True)
        return OmegaConf.to_container(cfg.hydra.launcher)

    local, slurm = launcher("submitit_local"), launcher("slurm")
    shared = set(local) - {"_target_"}
    assert {k: slurm[k] for k in shared} == {k: local[k] for k in shared}
    assert local["_target_"].endswith("LocalLauncher") and slurm["_target_"].endswith("SlurmLauncher")
    assert set(slurm) - set(local) >= {"partition", "account"}  # Slurm's own settings, null unless given


def test_four_processes_writing_to_one_server_at_once(tmp_path: Path, tracking_server) -> None:  # noqa: F811, ANN001
    uri, _ = tracking_server
    env = job_env(tmp_path, uri)
    cmds = [
        [sys.executable, "-m", "train", f"hydra.run.dir={tmp_path / f'job{seed}'}", *TINY, f"seed={seed}"]
        for seed in range(4)
    ]
    jobs = [Job(cmd, env) for cmd in cmds]
    try:
        for job in jobs:  # each is held once its parent run exists, so that all four then write at once
            job.wait_for_line(r"MLflow run tree-s\d")
            os.kill(job.proc.pid, signal.SIGSTOP)
        for job in jobs:
            os.kill(job.proc.pid, signal.SIGCONT)
        codes = [job.finish() for job in jobs]
    finally:
        for job in jobs:
            job.__exit__()
    assert codes == [0, 0, 0, 0], [job.stderr[-2000:] for job in jobs]
    parents, folds = _jobs_on_server(uri)
    assert sorted(r.data.tags["seed"] for r in parents) == ["0", "1", "2", "3"]
    for parent in parents:
        _assert_job_arrived(parent, folds[parent.info.run_id], tmp_path / f"job{parent.data.tags['seed']}")
