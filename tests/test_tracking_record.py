"""A tracking record you can trust: artifacts live with their store (a SQLite folder, a tracking server), many
jobs may start at once on a new store, the parent run reads clearly in the UI (params once, a description, the
experiment's kind, each fold's data as inputs), and every store or configuration problem is one line, exit 2.

Jobs run as ``python -m train`` subprocesses; those checking where files land run from a temporary folder (the
entry point needs no particular working directory), so anything written "under the current directory" shows.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import HANG_GUARD_S, REPO, job_env, train_in_process, wait_until
from omegaconf import OmegaConf
from ui_helpers import free_port, kill_group

from lenbench.tracking.mlflow import PARENT_RUN_ID_TAG, MlflowTracker

TINY = ("data=xor", "method=tree", "cv.n_splits=2", "cv.n_jobs=1")
JOB_ARTIFACTS = {
    "results.csv",
    "summary.json",
    "explanations.json",
    "config.yaml",
    "environment.json",
    "data.json",
}


def train_in(cwd: Path, uri: str, *overrides: str) -> subprocess.CompletedProcess:
    """``python -m train`` run from ``cwd`` (not the repository) against the store ``uri``."""
    cmd = [sys.executable, "-m", "train", f"hydra.run.dir={cwd / 'job'}", *overrides]
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=HANG_GUARD_S)


def parent_run(uri: str, experiment: str):  # noqa: ANN201
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], max_results=100)
    parents = [r for r in runs if PARENT_RUN_ID_TAG not in r.data.tags]
    assert len(parents) == 1, [r.info.run_name for r in runs]
    return client, found, parents[0]


# ---- 1. artifacts live with their store --------------------------------------------------------------------------


@pytest.mark.e2e
def test_sqlite_store_keeps_artifacts_beside_it_and_the_parent_reads_clearly(tmp_path: Path) -> None:
    store, cwd = tmp_path / "store", tmp_path / "cwd"
    cwd.mkdir()
    uri = f"sqlite:///{store / 'mlflow.db'}"
    proc = train_in(cwd, uri, *TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in cwd.iterdir()) == ["job"], (
        "nothing but the job folder in the current directory"
    )

    client, experiment, parent = parent_run(uri, "xor")
    assert experiment.artifact_location == (store / "artifacts").as_uri()
    stored = {p.name for p in (store / "artifacts").rglob("*") if p.is_file()}
    assert stored >= JOB_ARTIFACTS | {"formula.txt"}
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= JOB_ARTIFACTS

    # The UI opens the experiment as a machine-learning one, and the parent run says what the job was and found.
    assert experiment.tags.get("mlflow.experimentKind") == "custom_model_development"
    summary = pd.read_json(cwd / "job" / "summary.json", typ="series")
    note = parent.data.tags["mlflow.note.content"]
    for needle in (
        "tree",
        "xor",
        "label `y`",
        "2 folds",
        "model accuracy",
        "explanation accuracy",
        "fidelity",
    ):
        assert needle in note, note
    assert f"complexity: {summary['explanation_complexity_mean']:.1f}" in note, note
    assert f"model accuracy: {summary['model_accuracy_mean']:.3f}" in note, note

    # The Models tab: each fold's model named as its run, the folds' vote as the job, each with the job's params
    # and its metrics, measured on the data its run lists (the fold's test rows, the job's whole data set); the
    # fold runs carry the job's params too, so the UI compares folds on them.
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    models = {m.name: m for m in client.search_logged_models([experiment.experiment_id])}
    assert sorted(models) == sorted(runs) == ["tree-s42", "tree-s42-fold0", "tree-s42-fold1"]
    for name, model in models.items():
        run = runs[name]
        assert model.source_run_id == run.info.run_id
        assert model.params == run.data.params == parent.data.params and "seed" in model.params
        inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
        measured = inputs["test"] if "fold" in name else inputs["cross-validation"]
        linked = {m.key: m for m in model.metrics}
        key = "model_accuracy" if "fold" in name else "model_accuracy_mean"
        assert linked[key].value == run.data.metrics[key]
        assert (linked[key].dataset_name, linked[key].dataset_digest) == (measured.name, measured.digest)
    split_rows = [
        json.loads(i.dataset.profile)["num_rows"] for i in runs["tree-s42-fold0"].inputs.dataset_inputs
    ]
    (job_input,) = runs["tree-s42"].inputs.dataset_inputs  # the job's data set: every row of a fold's splits
    assert json.loads(job_input.dataset.profile)["num_rows"] == sum(split_rows) and len(split_rows) == 3


def test_job_params_are_the_resolved_config_once(tmp_path: Path) -> None:
    """No instantiation keys, no key repeating another through an interpolation (the network's trainer and seed)."""
    from hydra import compose, initialize_config_dir

    from lenbench.config import register_schema
    from lenbench.data.synthetic import make_xor
    from lenbench.job import JobContext, job_record

    register_schema()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["method=psi", "data=xor", "seed=7"])
    resolved = OmegaConf.to_container(cfg, resolve=True)
    params = job_record(cfg, resolved, make_xor(n_samples=100), JobContext(REPO, tmp_path)).params
    assert not [k for k in params if "_target_" in k or "_convert_" in k], sorted(params)
    assert not [k for k in params if k.startswith(("method.explainer.trainer", "method.explainer.seed"))]
    assert "method.explainer.target_class" not in params
    assert params["seed"] == 7 and params["trainer.accelerator"] == "cpu" and params["target_class"] == 1
    assert params["method.explainer.lr"] == pytest.approx(1e-3) and params["method.explainer.hidden"] == [
        10,
        4,
    ]
    assert params["method.explainer.callbacks.0"] == "L1Regularization"
    assert params["method.explainer.callbacks.1.fan_in"] == 2


def _answers(url: str) -> bool:
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({})
    )  # loopback never goes through a proxy
    try:
        with opener.open(url, timeout=600) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_server(folder: Path, *extra: str) -> tuple[str, subprocess.Popen]:
    """``mlflow server`` as ``make server`` starts it (artifacts proxied into its ``--artifacts-destination``), on a
    free loopback port, from ``folder`` (created), with ``extra`` arguments; (uri, process) once /health answers.
    Stop it with ``kill_group``."""
    folder.mkdir()
    port = free_port()
    cmd = [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{folder / 'mlflow.db'}",
    ]
    cmd += ["--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port)]
    uri = f"http://127.0.0.1:{port}"
    return uri, serve([*cmd, "--workers", "1", *extra], folder, uri)


def serve(cmd: list[str], folder: Path, uri: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start the server ``cmd`` from ``folder`` (its log in ``folder/server.log``), in its own process group so its
    workers stop with it, and return it once ``uri``/health answers; stopped again if it never does."""
    with (folder / "server.log").open("wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(
            lambda: _answers(f"{uri}/health"),
            "an answer from the MLflow server's /health",
            proc=proc,
            details=lambda: (folder / "server.log").read_text(errors="replace")[-3000:],
        )
    except BaseException:
        kill_group(proc)
        raise
    return proc


@pytest.fixture
def tracking_server(tmp_path: Path):  # noqa: ANN201
    """:func:`start_server` in ``tmp_path/server``; yields (uri, folder), stops it afterwards."""
    uri, proc = start_server(tmp_path / "server")
    try:
        yield uri, tmp_path / "server"
    finally:
        kill_group(proc)


@pytest.mark.e2e
def test_tracking_server_keeps_artifacts_on_the_server(tmp_path: Path, tracking_server) -> None:  # noqa: ANN001
    uri, server = tracking_server
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    proc = train_in(cwd, uri, *TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in cwd.iterdir()) == ["job"], (
        "nothing but the job folder in the current directory"
    )

    client, experiment, parent = parent_run(uri, "xor")
    assert experiment.artifact_location.startswith("mlflow-artifacts:"), experiment.artifact_location
    on_server = {p.name for p in (server / "artifacts").rglob("*") if p.is_file()}
    assert on_server >= JOB_ARTIFACTS | {"formula.txt"}, on_server
    download = tmp_path / "download"
    download.mkdir()
    local = client.download_artifacts(parent.info.run_id, "results.csv", str(download))
    assert Path(local).read_text() == (cwd / "job" / "results.csv").read_text()
    assert not list(tmp_path.rglob("mlruns")), "no mlruns folder anywhere"


# ---- 2. many writers ---------------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_jobs_started_together_on_a_new_store_all_finish(tmp_path: Path) -> None:
    env = job_env(tmp_path)
    jobs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "train",
                f"hydra.run.dir={tmp_path / f'job{seed}'}",
                *TINY,
                f"seed={seed}",
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in range(4)
    ]
    errors = [job.communicate(timeout=HANG_GUARD_S)[1] for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0, 0, 0], "\n".join(e[-2000:] for e in errors)
    from mlflow import MlflowClient

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("xor").experiment_id], max_results=100)
    parents = [r for r in runs if PARENT_RUN_ID_TAG not in r.data.tags]
    assert sorted(r.info.run_name for r in parents) == ["tree-s0", "tree-s1", "tree-s2", "tree-s3"]
    assert {r.info.status for r in parents} == {"FINISHED"}


# ---- 3. each fold's data as dataset inputs -----------------------------------------------------------------------


def test_fold_inputs_are_logged_with_their_context(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MlflowTracker(uri, "inputs")
    tracker.start_job("tree-s0", {"method": "tree"}, {})
    splits = {"train": np.array([0, 2, 4]), "validation": np.array([1, 5]), "test": np.array([3])}
    tracker.log_fold_inputs(0, "xor", "abc123", splits, source="/data/xor.csv")
    tracker.log_fold_inputs(1, "xor", "abc123", {**splits, "test": np.array([6])})
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    children = {
        int(r.data.tags["fold"]): r
        for r in client.search_runs([tracker.experiment_id])
        if PARENT_RUN_ID_TAG in r.data.tags
    }
    inputs = {
        fold: {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
        for fold, run in children.items()
    }
    assert set(inputs[0]) == {"train", "validation", "test"}
    assert all(i.tags[0].key == "mlflow.data.context" for i in children[0].inputs.dataset_inputs)
    assert {d.name for d in inputs[0].values()} == {"xor"}
    assert '"/data/xor.csv"' in inputs[0]["train"].source and '"num_rows": 3' in inputs[0]["train"].profile
    assert len({d.digest for d in inputs[0].values()}) == 3  # the digest follows the rows
    assert inputs[1]["train"].digest == inputs[0]["train"].digest
    assert inputs[1]["test"].digest != inputs[0]["test"].digest
    # the job's run lists its data set once: every row of the first fold's splits
    (job,) = client.get_run(tracker.run_id).inputs.dataset_inputs
    assert job.tags[0].value == "cross-validation" and job.dataset.name == "xor"
    assert '"num_rows": 6' in job.dataset.profile and job.dataset.digest not in {
        d.digest for d in inputs[0].values()
    }


def test_the_report_run_lives_in_an_experiment_of_its_own(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from lenbench.tracking.mlflow import log_report_run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    jobs = MlflowTracker(uri, "xor")
    table = tmp_path / "summary.md"
    table.write_text("| method |\n")
    run_id = log_report_run(uri, "xor", [table], sweep_id="sweep-1")
    client = MlflowClient(uri)
    assert client.search_runs([jobs.experiment_id]) == []  # the jobs' list holds jobs only
    run = client.get_run(run_id)
    reports = client.get_experiment(run.info.experiment_id)
    assert (
        reports.name == "xor-reports" and reports.tags["mlflow.experimentKind"] == "custom_model_development"
    )
    assert run.info.status == "FINISHED" and run.data.tags["kind"] == "report"
    assert run.data.tags["report_of"] == "xor" and run.data.tags["sweep_id"] == "sweep-1"
    assert [a.path for a in client.list_artifacts(run_id)] == ["summary.md"]


# ---- 4. every store or configuration problem: one line, exit 2 ---------------------------------------------------


# The job's first line, said before its imports (src/train.py); the only line a problem found later may follow.
STARTING = re.compile(r"\[lenbench\]\[INFO\] - [\w.-]+-s\d+ on [\w.-]+: starting, loading its libraries$")


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not STARTING.search(line)]
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(lines) == 1 and "[ERROR]" in lines[0], proc.stderr[-3000:]
    return lines[0]


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("overrides", "uri", "needles"),
    [
        (("tracking.uri=garbage://x",), None, ("tracking.uri='garbage://x'", "sqlite:////", "http(s)://")),
        ((), "sqlite:////proc/mlflow.db", ("/proc", "not writable", "MLFLOW_TRACKING_URI")),
        ((), "sqlite:////proc/forbidden/mlflow.db", ("/proc/forbidden",)),
        (("hydra.run.dir=/proc/forbidden",), None, ("hydra.run.dir=/proc/forbidden", "cannot create")),
        (
            ("method=nonsense",),
            None,
            (
                "method/nonsense",
                "Available options in 'method': blackbox, brl, cbm, cbm_sequential, cem, dcr, entropy",
            ),
        ),
        (("cv.nfolds=3",), None, ("Key 'nfolds' not in 'CVSchema'", "cv.nfolds")),
        (("seed=abc",), None, ("Value 'abc' of type 'str' could not be converted to Integer", "seed")),
    ],
)
def test_store_and_config_problems_are_one_line_exit_2(
    tmp_path: Path, overrides: tuple[str, ...], uri: str | None, needles: tuple[str, ...]
) -> None:
    proc = train_in_process(tmp_path, *TINY, *overrides, uri=uri)
    line = one_error_line(proc)
    for needle in needles:
        assert needle in line, line
    assert not (tmp_path / "job" / "results.csv").exists()
    assert not Path("/proc/forbidden").exists()


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (("tracking.uri=garbage://x",), "unknown store scheme 'garbage'"),
        (("hydra.sweep.dir=/proc/forbidden",), "hydra.sweep.dir=/proc/forbidden"),
    ],
)
def test_sweep_problems_are_one_line_exit_2(tmp_path: Path, overrides: tuple[str, ...], needle: str) -> None:
    sweep_dir = () if "sweep.dir" in " ".join(overrides) else (f"hydra.sweep.dir={tmp_path / 'sweep'}",)
    cmd = [sys.executable, "-m", "train", "-m", *sweep_dir, *TINY, "seed=0,1", *overrides]
    proc = subprocess.run(
        cmd, cwd=REPO, env=job_env(tmp_path), capture_output=True, text=True, timeout=HANG_GUARD_S
    )
    assert needle in one_error_line(proc)
    assert not list(tmp_path.rglob("results.csv"))


@pytest.mark.e2e
def test_store_deleted_mid_job_is_one_line_and_the_results_stay(tmp_path: Path) -> None:
    target = "method.explainer._target_=store_targets.DeletesStoreOnFold1"  # in tests/, imported from here
    proc = train_in_process(tmp_path, "data=xor", "method=tree", "cv.n_splits=3", "cv.n_jobs=1", target)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "[SQL:" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if "[ERROR]" in line]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert "the MLflow store failed during the job" in errors[0]
    assert "python -m lenbench.tracking.import_results" in errors[0]
    warnings = [line for line in proc.stderr.splitlines() if "failed (" in line and "[WARNING]" in line]
    assert len(warnings) == 1, proc.stderr[-3000:]
    assert len(pd.read_csv(tmp_path / "job" / "results.csv")) == 3
