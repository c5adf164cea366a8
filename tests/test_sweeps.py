"""Sweeps: Hydra multiruns land one parent run per job, resume after an interruption, run in parallel, report."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from helpers import Job, job_env, run_report, run_train, store_uri, train_command

from lenbench.logic.formula import Formula
from lenbench.logic.metrics import consistency

TAG_LIMIT = 5000  # MLflow tag values hold at most 5000 characters: a child run's formula tag is cut there


def sweep(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    return run_train(tmp_path, *overrides, multirun=True)


def runs(tmp_path: Path, experiment: str = "xor") -> pd.DataFrame:
    from mlflow import MlflowClient

    client = MlflowClient(store_uri(tmp_path))
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


def formula_tags(tmp_path: Path, parent_run_id: str) -> dict[int, str]:
    """The ``formula`` tag of each child run of a job, by fold."""
    from mlflow import MlflowClient

    client = MlflowClient(store_uri(tmp_path))
    children = client.search_runs(
        [client.get_run(parent_run_id).info.experiment_id],
        f"tags.mlflow.parentRunId = '{parent_run_id}'",
    )
    return {int(r.data.tags["fold"]): r.data.tags["formula"] for r in children}


def parsed_or_false(text: str) -> Formula:
    """As the report reads a formula: a text that does not parse (a cut-off formula) mentions no concept."""
    try:
        return Formula.parse(text)
    except ValueError:
        return Formula.false()


# Trees on a DNF with 30 % label noise: formulas of about 8000 characters, longer than an MLflow tag holds.
JOB = ("data=dnf", "data.noise=0.3", "method=tree", "cv.n_splits=3", "cv.folds=[0,1]")
SEEDS = (*JOB, "seed=0,1,2")


@pytest.mark.e2e
def test_seed_sweep_resume_and_report(tmp_path: Path) -> None:
    proc = sweep(tmp_path, *SEEDS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = runs(tmp_path, "dnf")
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
    assert len(runs(tmp_path, "dnf")) == len(table)

    # resume=false forces a rerun of one job.
    forced = sweep(tmp_path, *JOB, "seed=1", "resume=false")
    assert forced.returncode == 0, forced.stderr[-3000:]
    after = runs(tmp_path, "dnf")
    assert (after[after["parent"].isna()]["name"] == "tree-s1").sum() == 2

    out = tmp_path / "report"
    report = run_report(tmp_path, "dnf", out)
    assert report.returncode == 0, report.stderr[-3000:]
    by_row = pd.read_csv(out / "summary_by_experiment.csv")
    assert list(by_row["method"]) == ["tree"]  # one configuration, its seeds pooled: one row
    # 4 runs (3 seeds, seed 1 twice): the job that finished twice counts once, its later run (folds.csv lists each
    # fold once); n is 2 test folds x 3 seeds.
    assert by_row.loc[0, "runs"] == 3 and by_row.loc[0, "test folds"] == 2 and by_row.loc[0, "seeds"] == 3
    folds = pd.read_csv(out / "folds.csv")
    assert len(folds) == 6 and not folds.duplicated(["seed", "fold"]).any()
    by_seed = pd.read_csv(out / "summary_by_experiment_seed.csv")
    assert sorted(by_seed["seed"]) == [0, 1, 2]
    # Consistency is computed from the full formulas (explanations.json), not from the formula tags, which MLflow
    # truncates: these trees' formulas are longer than a tag holds, and their cut-off tags give another consistency.
    seed0 = parents[parents["name"] == "tree-s0"].iloc[0]
    (job0,) = (tmp_path / "sweep").glob("*-tree-s0")
    full = {e["fold"]: e["formula"] for e in json.loads((job0 / "explanations.json").read_text())["folds"]}
    tags = formula_tags(tmp_path, seed0["run_id"])
    assert sorted(full) == sorted(tags) == [0, 1]
    for fold, formula in full.items():
        assert len(formula) > TAG_LIMIT and tags[fold] == formula[:TAG_LIMIT]
    job_consistency = seed0["metrics"]["explanation_consistency"]
    assert job_consistency == pytest.approx(consistency([Formula.parse(f) for f in full.values()]))
    assert consistency([parsed_or_false(t) for t in tags.values()]) != pytest.approx(job_consistency)
    assert by_seed.set_index("seed").loc[0, "consistency"] == pytest.approx(job_consistency)
    for name in (
        "summary_by_experiment.md",
        "summary_by_experiment.tex",
        "accuracy_vs_complexity.png",
        "fold_metrics.png",
        "concept_frequency.png",
        "provenance.json",
    ):
        assert (out / name).stat().st_size > 0, name
    assert "model accuracy" in (out / "summary_by_experiment.md").read_text()  # labels head the human tables
    assert "\\begin{tabular}" in (out / "summary_by_experiment.tex").read_text()
    # the report's run lives in an experiment of its own: the jobs' list holds jobs only
    assert (runs(tmp_path, "dnf-reports")["kind"] == "report").sum() == 1
    assert (runs(tmp_path, "dnf")["kind"] != "report").all()


@pytest.mark.e2e
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


@pytest.mark.e2e
def test_interrupted_sweep_completes_on_rerun(tmp_path: Path) -> None:
    # A short psi training: the sweep's first job trains the folds of all four seeds together (seed batching), so
    # the later jobs only take their folds, and the signal lands in them whatever the epochs (fewer: a faster test).
    overrides = (
        "data=dnf",
        "method=psi",
        "method.explainer.epochs=300",
        "method.explainer.callbacks.1.epoch=100",  # fan-in 2: a small read-out
        "cv.n_splits=3",
        "cv.n_jobs=1",
        "seed=0,1,2,3",
    )
    with Job(train_command(tmp_path, *overrides, multirun=True), job_env(tmp_path)) as job:
        # The event: the second job's first finished fold (the launcher is sequential; each job logs one line per
        # fold, "psi fold 2 (1/3): ..."). Job 0 is then FINISHED and the signal lands in job 1's training.
        job.wait_for_line(r" fold \d+ \(1/3\)", count=2)
        job.proc.send_signal(signal.SIGINT)
        job.finish()
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
