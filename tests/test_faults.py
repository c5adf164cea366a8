"""Reliability: every listed fault ends with one clear message, leaves no half-written result, loses nothing.

Each test provokes one fault and asserts on the message and on what is left on disk and in MLflow.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import HANG_GUARD_S, REPO, job_env, run_command, store_uri, train_in_process
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from lenbench.data.base import Fold
from lenbench.data.errors import DataError
from lenbench.data.mimic import RELATIVE_PATH, load_mimic
from lenbench.data.synthetic import make_dnf
from lenbench.errors import ConfigError
from lenbench.experiment import JobRecord, run_experiment
from lenbench.explainers.tree import TreeExplainer
from lenbench.folds import CVConfig, FoldFailed, FoldPlan
from lenbench.job import check_names
from lenbench.scoring import METRICS
from lenbench.tracking.errors import TrackingError
from lenbench.tracking.import_results import import_job
from lenbench.tracking.mlflow import MlflowTracker, check_store
from lenbench.tracking.protocol import TRACKER_CALLS, NullTracker, ResilientTracker


def train(tmp_path: Path, *overrides: str, uri: str | None = None) -> subprocess.CompletedProcess:
    """A job that must end before training, through train's entry point in this test's process."""
    return train_in_process(tmp_path, *overrides, uri=uri)


def assert_clean_failure(proc: subprocess.CompletedProcess, tmp_path: Path, *needles: str) -> None:
    """Non-zero exit, the message on stderr, no traceback, no results, no run in the store."""
    assert proc.returncode != 0
    for needle in needles:
        assert needle in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "job" / "results.csv").exists()
    db = tmp_path / "mlflow.db"
    if db.exists():
        with sqlite3.connect(db) as conn:
            tables = {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}
            if "runs" in tables:
                assert conn.execute("select count(*) from runs").fetchone()[0] == 0


# ---- 1. configuration ----------------------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("overrides", "needles"),
    [
        (("seed=abc",), ("seed", "abc")),
        (("cv.nfolds=3",), ("cv.nfolds",)),
        (("cv.n_splits=1000",), ("cv.n_splits", "smallest class")),
        (("cv.folds=[10]",), ("cv.folds", "0..9")),
        (("cv.n_jobs=0",), ("cv.n_jobs",)),
        (("method=nonsense",), ("method/nonsense", "Available options")),
        (("data=mimic", "data.label=alive"), ("label", "day_28_flg")),
        (("method.explainer.max_depth=0",), ("max_depth",)),
    ],
)
def test_config_errors_end_before_training(
    tmp_path: Path, overrides: tuple[str, ...], needles: tuple[str, ...]
) -> None:
    defaults = ["data=dnf", "method=tree"]
    proc = train(tmp_path, *defaults, *overrides)
    assert_clean_failure(proc, tmp_path, *needles)


# ---- 2. data --------------------------------------------------------------------------------------------------


@pytest.fixture
def data_copy(tmp_path: Path, mimic_csv: Path) -> Path:
    root = tmp_path / "data"
    (root / RELATIVE_PATH).parent.mkdir(parents=True)
    shutil.copy(mimic_csv, root / RELATIVE_PATH)
    return root


@pytest.mark.e2e
def test_missing_file_offline(tmp_path: Path) -> None:
    proc = train(tmp_path, "data=mimic", f"data.root={tmp_path / 'empty'}", "data.download=false")
    assert_clean_failure(proc, tmp_path, "LENBENCH_DATA_DIR", str(tmp_path / "empty"))
    assert not (tmp_path / "empty" / RELATIVE_PATH).exists()


@pytest.mark.e2e
def test_wrong_checksum(tmp_path: Path, data_copy: Path) -> None:
    path = data_copy / RELATIVE_PATH
    raw = path.read_bytes()
    path.write_bytes(raw.replace(b"\r1,", b"\r0,", 1))
    proc = train(tmp_path, "data=mimic", f"data.root={data_copy}")
    assert_clean_failure(proc, tmp_path, "SHA-256")
    assert path.read_bytes() != raw  # a wrong local file is reported, never silently replaced


@pytest.mark.e2e
def test_missing_column(tmp_path: Path, data_copy: Path) -> None:
    path = data_copy / RELATIVE_PATH
    frame = pd.read_csv(path).drop(columns=["stroke_flg"])
    frame.to_csv(path, index=False)
    proc = train(tmp_path, "data=mimic", f"data.root={data_copy}", "data.sha256=null")
    assert_clean_failure(proc, tmp_path, "stroke_flg")


FAULTS = [
    "truncate",
    "drop_column",
    "rename_column",
    "text_in_number",
    "label_2",
    "all_nan",
    "empty",
    "garbage",
]


def _corrupt(raw: bytes, fault: str, position: float) -> bytes:
    text = raw.decode()
    lines = text.split("\r")
    header = lines[0].split(",")
    column = int(position * (len(header) - 1))
    if fault == "truncate":
        return raw[: int(position * len(raw))]
    if fault == "empty":
        return b""
    if fault == "garbage":
        return bytes((i * 37 + int(position * 255)) % 256 for i in range(2000))
    frame = pd.read_csv(__import__("io").StringIO(text.replace("\r", "\n")))
    name = frame.columns[column]
    if fault == "drop_column":
        frame = frame.drop(columns=[name])
    elif fault == "rename_column":
        frame = frame.rename(columns={name: name + "_x"})
    elif fault == "text_in_number":
        frame[name] = frame[name].astype(object)
        frame.loc[int(position * (len(frame) - 1)), name] = "n/a?"
    elif fault == "label_2":
        frame.loc[int(position * (len(frame) - 1)), "day_28_flg"] = 2
    elif fault == "all_nan":
        frame[name] = np.nan
    return frame.to_csv(index=False).encode()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(fault=st.sampled_from(FAULTS), position=st.floats(0, 1))
def test_fuzzed_csv_gives_a_clear_error_or_a_correct_data_set(
    tmp_path: Path, mimic_csv: Path, fault: str, position: float
) -> None:
    root = tmp_path / f"fuzz-{fault}-{position}"
    (root / RELATIVE_PATH).parent.mkdir(parents=True, exist_ok=True)
    (root / RELATIVE_PATH).write_bytes(_corrupt(mimic_csv.read_bytes(), fault, position))
    try:
        data = load_mimic(root, download=False, sha256=None)
    except DataError as exc:
        message = str(exc)
        assert str(root / RELATIVE_PATH) in message or "LENBENCH_DATA_DIR" in message, message
        assert "\n" not in message.strip() or len(message) < 2000
        return
    # No error: the corruption did not touch what lenbench reads, and the data set is well formed.
    assert data.x.dtype == np.float32 and data.x.shape[1] == 90 and len(data.concept_names) == 90
    assert np.isfinite(data.x).all() and ((data.x >= 0) & (data.x <= 1)).all()
    assert set(np.unique(data.y)) <= {0, 1}


# ---- 3. training ----------------------------------------------------------------------------------------------


class FailsOnFold(TreeExplainer):
    """A tree that raises while fitting fold ``bad_fold``: a stand-in for any training crash."""

    bad_fold = 2

    def fit(self, fold: Fold) -> TreeExplainer:
        if fold.index == self.bad_fold:
            raise RuntimeError("simulated crash")
        return super().fit(fold)


def _runs(uri: str, experiment: str) -> pd.DataFrame:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return pd.DataFrame(
        [
            {
                "status": r.info.status,
                "parent": r.data.tags.get("mlflow.parentRunId"),
                "fold": r.data.tags.get("fold"),
                "error": r.data.tags.get("error"),
                "run_id": r.info.run_id,
            }
            for r in client.search_runs([exp.experiment_id], max_results=100)
        ]
    )


def test_crashing_fold_marks_runs_failed_and_keeps_done_folds(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    data = make_dnf(n_samples=400, seed=1)
    cv = CVConfig(n_splits=4)
    with pytest.raises(FoldFailed, match="fold 2 failed: RuntimeError: simulated crash"):
        run_experiment(
            data,
            "tree",
            FoldPlan.alone(lambda: FailsOnFold(seed=0), cv),
            tmp_path / "job",
            tracker=MlflowTracker(uri, "faults"),
            record=JobRecord(run_name="tree-s0"),
        )
    results = pd.read_csv(tmp_path / "job" / "results.csv")
    assert list(results["split"]) == [0, 1]
    assert '"complete": false' in (tmp_path / "job" / "summary.json").read_text()
    runs = _runs(uri, "faults")
    parent = runs[runs["parent"].isna()].iloc[0]
    assert parent["status"] == "FAILED" and "simulated crash" in parent["error"]
    children = runs[runs["parent"].notna()].set_index("fold")
    assert children.loc["0", "status"] == "FINISHED" and children.loc["1", "status"] == "FINISHED"
    assert children.loc["2", "status"] == "FAILED"


# ---- 4. tracking ----------------------------------------------------------------------------------------------


def test_locked_store_is_detected_before_training(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    MlflowTracker(f"sqlite:///{db}", "faults")  # a real store
    # The holder waits as long as it must for the lock (a hang guard); check_store's short lock timeout is what is
    # under test, and it cannot succeed however slow the machine: the lock is held until the check has failed.
    holder = sqlite3.connect(db, timeout=HANG_GUARD_S)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(TrackingError, match="locked"):
            check_store(f"sqlite:///{db}", timeout=0.5)
    finally:
        holder.rollback()
        holder.close()


@pytest.mark.e2e
def test_corrupt_store_is_detected_before_training(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"this is not a database" * 100)
    proc = train(tmp_path, "data=dnf", "method=tree", uri=f"sqlite:///{db}")
    assert proc.returncode == 2
    assert "corrupt" in proc.stderr and str(db) in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "job" / "results.csv").exists()


class BreaksAfter:
    """An MlflowTracker whose store goes away after the first fold."""

    def __init__(self, tracker: MlflowTracker) -> None:
        self.tracker, self.calls = tracker, 0

    def __getattr__(self, name: str):  # noqa: ANN204
        def call(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            if name == "log_fold":
                self.calls += 1
                if self.calls > 1:
                    raise ConnectionError("store went away")
            return getattr(self.tracker, name)(*args, **kwargs)

        return call


def test_null_and_resilient_trackers_answer_each_tracker_call_and_only_those() -> None:
    """NullTracker ignores and ResilientTracker forwards every call of the Tracker protocol; any other name is
    missing, so a tracker without finished_folds/find_finished still reads as one."""
    calls = []

    class Recording:
        def __getattr__(self, name: str):  # noqa: ANN204
            return lambda *args, **kwargs: calls.append((name, args, kwargs))

    resilient = ResilientTracker(Recording(), "sqlite:///unused.db")  # type: ignore[arg-type]
    for name in sorted(TRACKER_CALLS):
        assert getattr(NullTracker(), name)(0, key=1) is None
        getattr(resilient, name)(0, key=1)
    assert calls == [(name, (0,), {"key": 1}) for name in sorted(TRACKER_CALLS)]
    assert "log_fold" in TRACKER_CALLS and "finish_job" in TRACKER_CALLS
    assert not hasattr(NullTracker(), "log_metric") and not hasattr(resilient, "log_metric")
    assert not hasattr(NullTracker(), "find_finished") and NullTracker().run_id is None


def test_store_failing_mid_run_keeps_local_results_that_import_later(tmp_path: Path) -> None:
    import json

    uri = f"sqlite:///{tmp_path / 'broken.db'}"
    tracker = ResilientTracker(BreaksAfter(MlflowTracker(uri, "faults")), uri)
    job = tmp_path / "job"
    data = make_dnf(n_samples=400, seed=1)
    tags = {"method": "tree", "seed": "0", "data": "dnf", "config_hash": "abc123"}
    job.mkdir()
    (job / "job.json").write_text(
        json.dumps(
            {
                "run_name": "tree-s0",
                "experiment": "faults",
                "tags": tags,
                "params": {"seed": 0},
                "texts": {"config.yaml": "seed: 0\n"},
            }
        )
    )
    outcome = run_experiment(
        data,
        "tree",
        FoldPlan.alone(lambda: TreeExplainer(seed=0), CVConfig(n_splits=3)),
        job,
        tracker=tracker,
        record=JobRecord(run_name="tree-s0", tags=tags),
    )
    assert tracker.error and "store went away" in tracker.error
    assert len(pd.read_csv(job / "results.csv")) == 3
    broken = _runs(uri, "faults")  # the store came back: nothing of the job is left RUNNING there
    assert "RUNNING" not in set(broken["status"]), broken
    assert broken[broken["parent"].isna()]["status"].tolist() == ["FAILED"]

    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    run_id = import_job(job, fresh)
    runs = _runs(fresh, "faults")
    assert len(runs) == 4
    parent = runs[runs["run_id"] == run_id].iloc[0]
    assert parent["status"] == "FINISHED"
    from mlflow import MlflowClient

    client = MlflowClient(fresh)
    metrics = client.get_run(run_id).data.metrics
    assert metrics["model_accuracy_mean"] == pytest.approx(outcome.summary["model_accuracy_mean"])
    # The layout of a tracked job: fold values on the child runs only, the parent holds the summary.
    assert not set(metrics) & set(METRICS.fold_names), sorted(metrics)
    results = pd.read_csv(job / "results.csv").set_index("split")
    for child in runs[runs["parent"] == run_id].itertuples():
        fold_metrics = client.get_run(child.run_id).data.metrics
        assert fold_metrics["model_accuracy"] == pytest.approx(results.loc[int(child.fold), "model_accuracy"])
    assert import_job(job, fresh) == run_id  # importing twice does not duplicate


# ---- 5. names ---------------------------------------------------------------------------------------------------

HOSTILE_NAMES = ["../../../../escape", "a/b", "/abs/path", "nul\x00byte", "..", "x" * 300, ""]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_hostile_name_becomes_one_file_name_and_is_refused_at_config_time(name: str) -> None:
    from lenbench.errors import ConfigError
    from lenbench.names import file_name

    safe = file_name(name)
    assert "/" not in safe and "\x00" not in safe and not safe.startswith(".") and 0 < len(safe) <= 100
    assert file_name(safe) == safe  # a safe name is its own file name
    with pytest.raises(ConfigError, match=r"^method\.name=.*not usable as a file name.*fix: "):
        check_names(OmegaConf.create({"method": {"name": name}, "data": {"name": "dnf"}}))


def test_different_names_stay_different_file_names_and_plain_ones_stay_as_they_are() -> None:
    from lenbench.names import file_name

    assert len({file_name(n) for n in [*HOSTILE_NAMES, "a_b", "x" * 301]}) == len(HOSTILE_NAMES) + 2
    for plain in ("psi", "mimic", "pruning-s42-fold3", "MIMIC II day 28", "tree_v2.1"):
        assert file_name(plain) == plain


def test_explain_writes_inside_outputs_explain_whatever_the_run_name(tmp_path: Path) -> None:
    from lenbench.explain import Request, default_out

    out = default_out(Request("../../../../escape-s42-fold0", Path("new.csv"), None, "sqlite:///x.db"))
    assert (tmp_path / out).resolve().parent == (tmp_path / "outputs" / "explain").resolve()


def test_report_figures_of_a_data_set_named_with_a_slash_stay_in_the_report_folder(monkeypatch) -> None:  # noqa: ANN001
    import json

    from lenbench.report import pareto

    studies = [
        {"method": "psi", "study": "s", "data": data, "reference": {"explanation_accuracy": 0.0}}
        for data in ("a/b", "../up")
    ]
    monkeypatch.setattr(
        pareto, "load_fronts", lambda uri, exp: [({"study_json": json.dumps(m)}, None) for m in studies]
    )
    monkeypatch.setattr(pareto, "overlay_figure", lambda fronts, title: title)
    _, figures = pareto.pareto_outputs("sqlite:///unused.db", "exp")
    assert len(figures) == 2 and all("/" not in name and not name.startswith(".") for name in figures)


# ---- 6. a full disk ---------------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_a_job_folder_whose_disk_fills_ends_in_one_line_with_its_runs_closed_and_folds_kept(
    tmp_path: Path,
) -> None:
    """The disk of the job's folder fills after job.json (tests/full_disk.py: writes there fail with ENOSPC)."""
    job = tmp_path / "job"
    cmd = [
        sys.executable,
        str(REPO / "tests" / "full_disk.py"),
        str(job),
        "8000",
        "train",
        f"hydra.run.dir={job}",
    ]
    proc = run_command([*cmd, "data=dnf", "method=tree", "cv.n_splits=3"], job_env(tmp_path))
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if "[ERROR]" in line]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert f"no space to write {job / 'results.csv'} (No space left on device; it needs" in errors[0]
    assert (job / "job.json").is_file() and not (job / "summary.json").exists()
    runs = _runs(store_uri(tmp_path), "dnf")
    assert sorted(runs[runs["fold"].notna()]["status"]) == ["FINISHED"] * 3  # every finished fold kept
    parent = runs[runs["fold"].isna()].iloc[0]
    assert parent["status"] == "FAILED" and "no space to write" in parent["error"]


def test_a_full_job_folder_disk_is_refused_before_hydra_writes_there(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    from lenbench.config import check_command_line, register_schema

    register_schema()

    def full(self: Path, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(
        ConfigError, match=r"hydra\.run\.dir=.*write 1024 KiB there \(No space left on device\)"
    ):
        check_command_line([f"hydra.run.dir={tmp_path / 'job'}"], REPO / "conf", "train")
    assert list(tmp_path.iterdir()) == []


class DiskFillsAfter(BreaksAfter):
    """An MlflowTracker whose store's disk fills after the first fold (its writes fail as the file system fails
    them: ENOSPC)."""

    def __getattr__(self, name: str):  # noqa: ANN204
        def call(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            if name == "log_fold":
                self.calls += 1
                if self.calls > 1:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "mlflow.db")
            return getattr(self.tracker, name)(*args, **kwargs)

        return call


def test_a_store_whose_disk_fills_mid_job_keeps_the_results_and_says_where_in_one_line(
    tmp_path: Path,
) -> None:
    from lenbench.job import _raise_store_failure

    uri = store_uri(tmp_path)
    tracker = ResilientTracker(DiskFillsAfter(MlflowTracker(uri, "faults")), uri)
    data = make_dnf(n_samples=400, seed=1)
    plan = FoldPlan.alone(lambda: TreeExplainer(seed=0), CVConfig(n_splits=3))
    run_experiment(
        data, "tree", plan, tmp_path / "job", tracker=tracker, record=JobRecord(run_name="tree-s0")
    )
    assert len(pd.read_csv(tmp_path / "job" / "results.csv")) == 3  # every fold, where it could be written
    with pytest.raises(TrackingError) as raised:
        _raise_store_failure(tracker, tmp_path / "job")
    message = str(raised.value)
    assert "\n" not in message and f"({uri}: OSError: [Errno 28] No space left on device" in message
    assert f"import_results {tmp_path / 'job'}" in message
    assert "RUNNING" not in set(_runs(uri, "faults")["status"])  # closed once the disk had room again


# ---- 7. the same job twice at once ------------------------------------------------------------------------------


def test_a_job_that_finished_twice_counts_once_in_the_report(tmp_path: Path) -> None:
    """Two identical sweeps started at once both train each job: the report keeps the run that finished last."""
    from lenbench.tracking.mlflow_read import load_jobs

    uri = store_uri(tmp_path)
    tags = {"method": "tree", "seed": "0", "data": "dnf", "config_hash": "abc123", "git_commit": "c0ffee"}
    plan = FoldPlan.alone(lambda: TreeExplainer(seed=0), CVConfig(n_splits=3))
    for copy in ("a", "b"):
        record = JobRecord(run_name="tree-s0", tags=tags)
        tracker = MlflowTracker(uri, "twice")
        run_experiment(
            make_dnf(n_samples=300, seed=1), "tree", plan, tmp_path / copy, tracker=tracker, record=record
        )
    jobs = load_jobs(uri, "twice")
    assert len(jobs.runs) == 1 and jobs.runs["run_id"].iloc[0] == tracker.run_id  # the later one
    assert sorted(jobs.folds["fold"]) == [0, 1, 2]
