"""``python -m lenbench.tune`` as a user runs it: a small study end to end, its files and MLflow record, resuming,
parallel trial processes sharing the storage, and every bad input as one line with exit status 2."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from helpers import Job, hydra_in_process, job_env, run_command, run_report, store_uri
from test_tracking_record import start_server
from ui_helpers import kill_group

from lenbench.tracking.describe import PARENT_RUN_ID_TAG

pytestmark = pytest.mark.e2e

SMALL = ("data=xor", "data.n_samples=300", "cv.n_splits=3")


def tune(tmp_path: Path, folder: str, *overrides: str, uri: str | None = None):  # noqa: ANN201
    cmd = [sys.executable, "-m", "lenbench.tune", f"hydra.run.dir={tmp_path / folder}", *SMALL, *overrides]
    return run_command(cmd, job_env(tmp_path, uri))


def tune_in_process(tmp_path: Path, folder: str, *overrides: str) -> subprocess.CompletedProcess:
    """:func:`tune` through its entry point in this process (helpers.hydra_in_process): for bad inputs, which end
    before any trial, and a study's second run, where a process of its own would spend seconds on imports."""
    from lenbench.tune import __main__ as tune_cli

    argv = [f"hydra.run.dir={tmp_path / folder}", *SMALL, *overrides]
    return hydra_in_process(tune_cli.main, "tune", argv, job_env(tmp_path))


def _runs(uri: str, experiment: str = "xor") -> list:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    return list(client.search_runs([found.experiment_id], max_results=5000))


def test_a_study_writes_its_front_and_records_every_trial(tmp_path: Path) -> None:
    proc = tune(tmp_path, "study", "method=tree", "tune.n_trials=6")
    assert proc.returncode == 0, proc.stderr[-4000:]
    folder = tmp_path / "study"
    trials = pd.read_csv(folder / "trials.csv")
    front = pd.read_csv(folder / "pareto.csv")
    assert len(trials) == 6 and set(trials["state"]) == {"COMPLETE"}
    assert (folder / "pareto.png").stat().st_size > 10_000
    assert len(front) >= 1 and front["test_run_id"].notna().all()
    assert {"val_explanation_accuracy", "val_explanation_complexity", "val_model_accuracy"} <= set(
        front.columns
    )
    assert {"test_explanation_accuracy", "test_explanation_accuracy_sem", "test_majority_accuracy"} <= set(
        front
    )
    assert "hypervolume (explanation_accuracy=0.5, explanation_complexity=100)" in proc.stdout

    runs = _runs(store_uri(tmp_path))
    studies = [r for r in runs if r.data.tags.get("kind") == "tune_study"]
    assert len(studies) == 1 and studies[0].info.status == "FINISHED"
    assert {"hypervolume_val", "n_pareto"} <= set(studies[0].data.metrics)
    trial_runs = [r for r in runs if r.data.tags.get("kind") == "tune_trial"]
    assert len(trial_runs) == 6
    assert all(r.data.tags[PARENT_RUN_ID_TAG] == studies[0].info.run_id for r in trial_runs)
    assert all(
        "val_explanation_accuracy" in r.data.metrics and "max_depth" in r.data.params for r in trial_runs
    )
    on_front = {int(r.data.tags["tune.trial"]) for r in trial_runs if r.data.tags["pareto"] == "true"}
    assert set(front["trial"]) <= on_front == set(trials.loc[trials["pareto"], "trial"])
    jobs = {
        r.info.run_id: r
        for r in runs
        if "config_hash" in r.data.tags and PARENT_RUN_ID_TAG not in r.data.tags
    }
    for row in front.itertuples():
        job = jobs[row.test_run_id]  # the member's job on the outer test folds, linked both ways
        assert job.info.status == "FINISHED" and job.data.tags["tune.trial"] == str(row.trial)
        assert job.data.metrics["explanation_accuracy_mean"] == pytest.approx(row.test_explanation_accuracy)
        folds = [r for r in runs if r.data.tags.get(PARENT_RUN_ID_TAG) == row.test_run_id]
        assert len(folds) == 3

    # The same study, two more trials.
    again = tune_in_process(tmp_path, "again", "method=tree", "tune.n_trials=8")
    assert again.returncode == 0, again.stderr[-4000:]
    assert "resuming study" in again.stderr
    assert len(pd.read_csv(tmp_path / "again" / "trials.csv")) == 8
    assert "already FINISHED this configuration" in again.stderr  # members already scored are not run again
    assert len([r for r in _runs(store_uri(tmp_path)) if r.data.tags.get("kind") == "tune_study"]) == 1

    report = run_report(tmp_path, "xor", tmp_path / "report", "--no-mlflow")  # the fronts join the report
    assert report.returncode == 0, report.stderr[-3000:]
    table = pd.read_csv(tmp_path / "report" / "pareto_hypervolume.csv")
    assert list(table["method"]) == ["tree"] and table["completed trials"].tolist() == [8]
    assert (tmp_path / "report" / "pareto_fronts.png").stat().st_size > 10_000
    rows = pd.read_csv(tmp_path / "report" / "summary_by_experiment.csv")
    assert not rows.iloc[:, 0].astype(str).str.contains("tune").any()  # study runs are no job rows


def test_parallel_trial_processes_share_the_study(tmp_path: Path) -> None:
    proc = tune(
        tmp_path, "par", "method=rulelist", "tune.n_trials=4", "tune.n_jobs=2", "tune.score_test=false"
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    trials = pd.read_csv(tmp_path / "par" / "trials.csv")
    assert (trials["state"] == "COMPLETE").sum() >= 4
    for worker in (0, 1):  # both processes opened the one study from the shared storage
        assert f"trial process {worker} joined study" in proc.stderr, proc.stderr[-3000:]
    assert trials["trial"].tolist() == list(range(len(trials)))  # one numbering across processes
    runs = [r for r in _runs(store_uri(tmp_path)) if r.data.tags.get("kind") == "tune_trial"]
    assert len(runs) == len(trials) and all(r.info.status == "FINISHED" for r in runs)
    main_pid = {
        r.data.tags["lenbench.pid"]
        for r in _runs(store_uri(tmp_path))
        if r.data.tags.get("kind") == "tune_study"
    }
    assert not {r.data.tags["lenbench.pid"] for r in runs} & main_pid  # trials ran in the trial processes


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("method=rf",), "method=rf has no search space"),
        (
            ("method=tree", "+search.depth={key:method.explainer.depth,type:int,low:1,high:3}"),
            "not a parameter",
        ),
        (("method=tree", "search.max_depth.low=9", "search.max_depth.high=3"), "an inverted range"),
        (("method=entropy", "search.temperature.low=1.0", "search.temperature.high=1.0"), "an empty range"),
        (("method=tree", "tracking.uri=http://127.0.0.1:9"), "is unreachable"),
        (("method=tree", "tune.nope=1"), "Key 'nope' not in 'TuneSettings'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, overrides: tuple[str, ...], message: str) -> None:
    proc = tune_in_process(tmp_path, "bad", *overrides)
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and message in errors[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "bad" / "trials.csv").exists()


def test_a_study_name_taken_by_other_objectives_is_refused(tmp_path: Path) -> None:
    first = tune(
        tmp_path, "first", "method=tree", "tune.n_trials=1", "tune.score_test=false", "tune.study_name=s1"
    )
    assert first.returncode == 0, first.stderr[-3000:]
    proc = tune_in_process(
        tmp_path,
        "second",
        "method=tree",
        "tune.study_name=s1",
        "tune.objectives=[model_accuracy,explanation_complexity]",
        "+tune.reference.model_accuracy=0.5",
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "tune.study_name=s1: that study" in proc.stderr and "Traceback" not in proc.stderr


def test_a_store_lost_during_the_study_is_one_line_and_the_trials_are_kept(tmp_path: Path) -> None:
    import optuna

    uri, server = start_server(tmp_path / "server")
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    cmd = [sys.executable, "-m", "lenbench.tune", f"hydra.run.dir={tmp_path / 'lost'}", *SMALL, "method=tree"]
    cmd += ["tune.n_trials=200", f"tune.storage={storage}"]
    try:
        with Job(cmd, job_env(tmp_path, uri, MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")) as job:
            job.wait_for_line(r"trial 1: ")
            os.kill(job.proc.pid, signal.SIGSTOP)  # the server goes away between two trials
            kill_group(server)
            os.kill(job.proc.pid, signal.SIGCONT)
            code = job.finish()
    finally:
        kill_group(server)
    assert code == 2, job.stderr[-3000:]
    errors = [line for line in job.stderr.splitlines() if "ERROR" in line]
    assert errors and "failed during the study" in errors[-1], job.stderr[-3000:]
    assert "Traceback" not in job.stderr
    kept = optuna.get_all_study_summaries(storage)
    assert kept[0].n_trials >= 2  # trials 0 and 1 completed and stay in the Optuna storage
