"""Sweeps: Hydra multiruns land one parent run per job, resume after an interruption, run in parallel, report."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}


def sweep(tmp_path: Path, *overrides: str, timeout: int = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "train", "-m", f"hydra.sweep.dir={tmp_path / 'sweep'}", *overrides]
    return subprocess.run(cmd, cwd=REPO, env=_env(tmp_path), capture_output=True, text=True, timeout=timeout)


def runs(tmp_path: Path, experiment: str = "xor") -> pd.DataFrame:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    found = client.search_runs([exp.experiment_id], max_results=1000)
    return pd.DataFrame(
        [
            {
                "run_id": r.info.run_id,
                "status": r.info.status,
                "name": r.data.tags.get("mlflow.runName"),
                "parent": r.data.tags.get("mlflow.parentRunId"),
                "kind": r.data.tags.get("kind"),
                "sweep_id": r.data.tags.get("sweep_id"),
                "seed": r.data.tags.get("seed"),
                "metrics": r.data.metrics,
            }
            for r in found
        ],
        columns=["run_id", "status", "name", "parent", "kind", "sweep_id", "seed", "metrics"],
    )


SEEDS = ("data=xor", "method=tree", "cv.n_splits=3", "cv.folds=[0,1]", "seed=0,1,2")


def test_seed_sweep_resume_and_report(tmp_path: Path) -> None:
    proc = sweep(tmp_path, *SEEDS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = runs(tmp_path)
    parents = table[table["parent"].isna()]
    assert sorted(parents["name"]) == ["tree-s0", "tree-s1", "tree-s2"]  # seed=0 honoured, names distinct
    assert (parents["status"] == "FINISHED").all()
    assert parents["sweep_id"].nunique() == 1 and parents["sweep_id"].iloc[0]
    for run_id in parents["run_id"]:
        children = table[table["parent"] == run_id]
        assert len(children) == 2 and (children["status"] == "FINISHED").all()

    # The same command again: every job is already FINISHED, so nothing new is run.
    again = sweep(tmp_path, *SEEDS)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("already FINISHED") == 3
    assert len(runs(tmp_path)) == len(table)

    # resume=false forces a rerun of one job.
    forced = sweep(
        tmp_path, "data=xor", "method=tree", "cv.n_splits=3", "cv.folds=[0,1]", "seed=1", "resume=false"
    )
    assert forced.returncode == 0, forced.stderr[-3000:]
    after = runs(tmp_path)
    assert (after[after["parent"].isna()]["name"] == "tree-s1").sum() == 2

    out = tmp_path / "report"
    report = subprocess.run(
        [sys.executable, "-m", "lenbench.report", "--experiment", "xor", "--out", str(out)],
        cwd=REPO,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.returncode == 0, report.stderr[-3000:]
    by_method = pd.read_csv(out / "summary_by_method.csv")
    assert list(by_method["method"]) == ["tree"]
    assert by_method.loc[0, "n_runs"] == 4 and by_method.loc[0, "n_folds"] == 8
    by_seed = pd.read_csv(out / "summary_by_method_seed.csv")
    assert sorted(by_seed["seed"]) == [0, 1, 2]
    # Consistency is computed from the full formulas (explanations.json), not from truncated tags.
    seed0 = parents[parents["name"] == "tree-s0"].iloc[0]
    assert by_seed.set_index("seed").loc[0, "explanation_consistency"] == pytest.approx(
        seed0["metrics"]["explanation_consistency"]
    )
    for name in (
        "summary_by_method.md",
        "summary_by_method.tex",
        "accuracy_vs_complexity.png",
        "fold_metrics.png",
        "concept_frequency.png",
        "provenance.json",
    ):
        assert (out / name).stat().st_size > 0, name
    assert "model_accuracy" in (out / "summary_by_method.md").read_text()
    assert "\\begin{tabular}" in (out / "summary_by_method.tex").read_text()
    assert (runs(tmp_path)["kind"] == "report").sum() == 1


def test_parallel_jobs_lose_nothing(tmp_path: Path) -> None:
    proc = sweep(
        tmp_path,
        "data=dnf",
        "method=tree",
        "cv.n_splits=4",
        "seed=0,1,2,3",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = runs(tmp_path, "dnf")
    parents = table[table["parent"].isna()]
    assert sorted(parents["name"]) == ["tree-s0", "tree-s1", "tree-s2", "tree-s3"]
    assert (table["status"] == "FINISHED").all() and len(table) == 4 + 4 * 4
    for metrics in parents["metrics"]:
        assert {"model_accuracy_mean", "explanation_accuracy_sem", "explanation_consistency"} <= set(metrics)


def test_interrupted_sweep_completes_on_rerun(tmp_path: Path) -> None:
    # Jobs of a few seconds each (a short psi training), so the signal lands while the sweep is still running.
    overrides = (
        "data=dnf",
        "method=psi",
        "method.explainer.epochs=1500",
        "cv.n_splits=3",
        "cv.n_jobs=1",
        "seed=0,1,2,3",
    )
    cmd = [sys.executable, "-m", "train", "-m", f"hydra.sweep.dir={tmp_path / 'sweep'}", *overrides]
    # Create the store first: a reader opening a brand-new SQLite store would run MLflow's schema migration
    # concurrently with the sweep's own.
    from lenbench.tracking.mlflow import MlflowTracker

    MlflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "dnf")
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 300
    finished = 0
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if (tmp_path / "mlflow.db").exists():
            try:
                table = runs(tmp_path, "dnf")
            except Exception:  # noqa: BLE001 - schema still being created
                continue
            finished = ((table["parent"].isna()) & (table["status"] == "FINISHED")).sum()
            if finished >= 1:
                proc.send_signal(signal.SIGINT)
                break
    proc.communicate(timeout=120)
    interrupted = runs(tmp_path, "dnf")
    done_before = set(
        interrupted[interrupted["parent"].isna() & (interrupted["status"] == "FINISHED")]["name"]
    )
    assert 1 <= len(done_before) < 4, "the sweep should have been stopped part-way"
    assert "RUNNING" not in set(interrupted["status"]), "an interrupted run must not stay RUNNING"

    rerun = sweep(tmp_path, *overrides)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    final = runs(tmp_path, "dnf")
    finished_parents = final[final["parent"].isna() & (final["status"] == "FINISHED")]
    assert sorted(finished_parents["name"]) == [f"psi-s{s}" for s in range(4)]  # no duplicate FINISHED job
    assert rerun.stderr.count("already FINISHED") == len(done_before)
