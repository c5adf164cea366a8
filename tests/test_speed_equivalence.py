"""Speed must not change results: parallel folds and parallel jobs give the sequential run's numbers bit for bit
(one torch thread per process), and the benchmark times the command ``make paper`` runs."""

from __future__ import annotations

import importlib
import re
import struct
import sys
from functools import partial
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest
from helpers import REPO, job_env, run_train
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from lenbench.callbacks import FanInPruning, FeaturePruning, L1Regularization
from lenbench.data.synthetic import make_dnf
from lenbench.explainers.psi_net import PsiNetExplainer
from lenbench.explainers.relu_net import ReluNetExplainer
from lenbench.fold_runner import iter_folds
from lenbench.folds import CVConfig, FoldPlan, run_fold

TIMING = ("elapsed_time", "training_time")
SHORT = {
    "pruning": (
        "method.explainer.epochs=250",
        "method.explainer.callbacks.1.start_epoch=100",
        "method.explainer.callbacks.1.period=100",
    ),
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py: one thread, as the protocol


def _pruning() -> ReluNetExplainer:
    callbacks = [L1Regularization(1e-3, include_bias=True), FeaturePruning(start_epoch=100, period=100)]
    return ReluNetExplainer(seed=42, trainer={}, epochs=250, lr=1e-2, callbacks=callbacks)


def _psi() -> PsiNetExplainer:
    callbacks = [L1Regularization(1e-4, layers="all"), FanInPruning(2, epoch=100)]
    return PsiNetExplainer(seed=42, trainer={}, epochs=250, lr=1e-2, callbacks=callbacks)


def _bits(metrics: dict) -> dict:
    """The metrics but timings, each as its float's bytes: bit for bit, and a NaN (a metric the data set does not
    have, e.g. concept accuracy with the true concepts) equal to the NaN of the other run."""
    return {k: struct.pack("<d", v) for k, v in metrics.items() if k not in TIMING}


def _without_timing(info: dict) -> dict:
    """The fold's info but for timings and how many networks shared its module (3 sequential, 2 in parallel)."""
    skip = ("training_time", "extraction_time", "networks_trained_together")
    return {k: v for k, v in info.items() if k not in skip}


@pytest.mark.parametrize("factory", [_pruning, _psi], ids=["pruning", "psi"])
def test_parallel_folds_equal_sequential_folds_bit_for_bit(factory) -> None:
    data = make_dnf(n_samples=400, seed=3)
    runs = {}
    for n_jobs in (1, 2):
        cv = CVConfig(n_splits=3, n_jobs=n_jobs)
        runs[n_jobs] = sorted(iter_folds(data, FoldPlan.alone(factory, cv)), key=lambda r: r.fold)
    for seq, par in zip(runs[1], runs[2], strict=True):
        assert seq.fold == par.fold and seq.formula == par.formula
        assert _bits(seq.metrics) == _bits(par.metrics)
        assert seq.loss_curve == par.loss_curve  # the training trajectory itself, bit for bit
        assert _without_timing(seq.info) == _without_timing(par.info)
        assert par.info["torch_threads"] == 1  # fold workers use the parent's thread count


def _benchmark_module(name: str) -> ModuleType:
    """A module of ``benchmarks/`` (not a package: imported from its folder)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.pop(0)


@pytest.mark.e2e
def test_joblib_jobs_use_one_thread_and_give_the_sequential_results(tmp_path: Path) -> None:
    """Two network jobs in parallel loky workers (folds sequential inside each, cv.n_jobs auto = 1) against the
    same folds run here, one after another. The workers must not inherit another thread count."""
    # A thread setting inherited from the shell must not win over torch_threads (1).
    env = job_env(tmp_path, OMP_NUM_THREADS="2", MKL_NUM_THREADS="2")
    common = ("data=dnf", "cv.n_splits=3", "cv.folds=[0,1]", "method=pruning", *SHORT["pruning"])
    launcher = ("hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    proc = run_train(tmp_path, *common, "seed=42,43", *launcher, multirun=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the distinct thread counts of the folds, per method, read back from the MLflow store (as make bench does)
    assert _benchmark_module("study_runs").fold_threads(tmp_path / "mlflow.db") == {"pruning": [1]}

    import train  # noqa: F401  (registers the train_schema config that train.yaml starts from)

    jobs = sorted((tmp_path / "sweep").glob("*-pruning-s*"))
    assert len(jobs) == 2
    for job in jobs:
        seed = int(job.name.rsplit("-s", 1)[1])
        table = pd.read_csv(job / "results.csv").sort_values("split").reset_index(drop=True)
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            cfg = compose("train", overrides=[*common, f"seed={seed}"])
        data = instantiate(cfg.data)
        for row in table.itertuples():
            result = run_fold(
                data, row.split, CVConfig(n_splits=3), partial(instantiate, cfg.method.explainer)
            )
            assert row.explanation == str(result.formula), (seed, row.split)
            for name, value in result.metrics.items():
                if name not in TIMING:
                    assert getattr(row, name) == pytest.approx(value, rel=0, abs=0, nan_ok=True), name


def test_benchmark_times_the_paper_target() -> None:
    bench = _benchmark_module("bench")
    makefile = (REPO / "Makefile").read_text()
    recipe = re.search(r"^paper:.*\n\t(.*)$", makefile, flags=re.MULTILINE)
    assert recipe is not None
    assert recipe.group(1).split() == ["$(PY)", "-m", "train", *bench.PAPER_ARGS, "$(ARGS)"]
    assert re.search(r"^bench:.*\n\t\$\(PY\) benchmarks/bench.py \$\(ARGS\)$", makefile, flags=re.MULTILINE)


def test_benchmark_result_comparison() -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import bench
    finally:
        sys.path.pop(0)
    a = pd.DataFrame(
        {
            "method": ["psi", "psi"],
            "split": [0, 1],
            "explanation": ["a", "b"],
            "model_accuracy": [0.5, float("nan")],
            "elapsed_time": [1.0, 2.0],
        }
    )
    b = a.copy()
    b["elapsed_time"] = [3.0, 4.0]  # timings may differ
    assert bench.compare_results(a, b) == []
    b.loc[1, "explanation"] = "c"
    b.loc[0, "model_accuracy"] = 0.5000001
    assert len(bench.compare_results(a, b)) == 2
