"""MLflow record of a tuning study: one parent run per study, one child run per trial, Pareto members tagged and
linked to the jobs that scored them on the test folds.

The study's parent run (tag ``kind=tune_study``, ``tune.study`` = the study's name) lives in the same experiment as
the jobs, so the Pareto members' jobs (ordinary job runs, found by their ``config_hash``) sit beside the jobs of
``python -m train`` and the report compares them; the report's job reader skips study runs. A resumed study (the same
command again, or a second command on the same storage) reopens its parent run. A trial's child run holds its
params, its validation objectives (``val_<metric>``, mean over the outer folds; the per-fold values as steps
0..k-1) and, once the study ends, ``pareto`` = true/false and, for a member, ``test_run_id`` and its test means.
"""

from __future__ import annotations

import functools
import json
import logging
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from lenbench.tracking.cleanup import process_tags
from lenbench.tracking.describe import KIND_TAG, PARENT_RUN_ID_TAG
from lenbench.tracking.errors import TrackingError
from lenbench.tracking.mlflow import MlflowTracker, log_params, metric_entries
from lenbench.tracking.store import short_error, store_lock

log = logging.getLogger(__name__)

STUDY_KIND = "tune_study"
TRIAL_KIND = "tune_trial"
STUDY_TAG = "tune.study"
TRIAL_TAG = "tune.trial"
PARETO_TAG = "pareto"
TEST_RUN_TAG = "test_run_id"


def _store_call(method: Callable[..., Any]) -> Callable[..., Any]:
    """A store that fails during the study (server down, database gone) ends it with one line: the completed
    trials are kept in the Optuna storage, and the same command resumes once the store works."""

    @functools.wraps(method)
    def call(self: StudyRecorder, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except TrackingError:
            raise
        except Exception as exc:  # noqa: BLE001 - any store failure is reported, with what is kept
            raise TrackingError(
                f"the MLflow store {self.uri} failed during the study ({short_error(exc)}); the completed trials "
                "are kept in the Optuna storage: run the same command again once the store works"
            ) from exc

    return call


class StudyRecorder:
    """Writes one study's runs; every process of the study (workers included) opens its own."""

    def __init__(self, uri: str, experiment: str, study_name: str) -> None:
        self.tracker = MlflowTracker(uri, experiment)  # checks the store (one line when it cannot be used)
        self.uri, self.client, self.experiment_id = uri, self.tracker.client, self.tracker.experiment_id
        self.study_name = study_name

    def _study_runs(self, kind: str, extra: str = "") -> list[Any]:
        query = f"tags.{KIND_TAG} = '{kind}' and tags.`{STUDY_TAG}` = '{self.study_name}'" + extra
        return list(self.client.search_runs([self.experiment_id], query, max_results=5000))

    @_store_call
    def open_study(self, tags: Mapping[str, str], params: Mapping[str, Any]) -> str:
        """The study's parent run: reopened (RUNNING, this process's tags) when it exists, else created."""
        with store_lock(self.uri):  # two commands starting the same study create one parent run
            found = self._study_runs(STUDY_KIND)
            mine = {**tags, **process_tags(), KIND_TAG: STUDY_KIND, STUDY_TAG: self.study_name}
            if found:
                run_id = found[0].info.run_id
                self.client.update_run(run_id, status="RUNNING")
                for key, value in mine.items():
                    self.client.set_tag(run_id, key, str(value))
                return run_id
            mine["mlflow.runName"] = f"tune-{self.study_name}"
            run_id = self.client.create_run(self.experiment_id, tags=mine).info.run_id
        log_params(self.client, run_id, params)
        return run_id

    @_store_call
    def start_trial(self, parent: str, number: int, params: Mapping[str, Any]) -> str:
        tags = {
            **process_tags(),
            PARENT_RUN_ID_TAG: parent,
            KIND_TAG: TRIAL_KIND,
            STUDY_TAG: self.study_name,
            TRIAL_TAG: str(number),
            "mlflow.runName": f"{self.study_name}-t{number}",
        }
        run_id = self.client.create_run(self.experiment_id, tags=tags).info.run_id
        log_params(self.client, run_id, params)
        return run_id

    @_store_call
    def finish_trial(
        self, run_id: str, means: Mapping[str, float], per_fold: Sequence[Mapping[str, float]]
    ) -> None:
        """``val_<metric>``: the mean over outer folds at step k (the number of folds), each fold's value at its
        position 0..k-1 (MLflow shows the history)."""
        entries = metric_entries(means, len(per_fold), prefix="val_")
        for step, fold in enumerate(per_fold):
            entries += metric_entries(fold, step, prefix="val_")
        for start in range(0, len(entries), 1000):
            self.client.log_batch(run_id, metrics=entries[start : start + 1000])
        self.client.set_terminated(run_id, "FINISHED")

    @_store_call
    def fail_trial(self, run_id: str, error: str) -> None:
        self.client.set_tag(run_id, "error", error[:5000])
        self.client.set_terminated(run_id, "FAILED")

    @_store_call
    def trial_runs(self) -> dict[int, str]:
        """Trial number -> its latest run id (a trial rerun after a crash has two runs)."""
        latest: dict[int, Any] = {}
        for run in self._study_runs(TRIAL_KIND):
            number = int(run.data.tags[TRIAL_TAG])
            if number not in latest or run.info.start_time > latest[number].info.start_time:
                latest[number] = run
        return {n: r.info.run_id for n, r in latest.items()}

    @_store_call
    def job_run(self, config_hash: str) -> str | None:
        """The FINISHED job run of a configuration (the parent run of its folds), as a job finds it."""
        return self.tracker.find_finished(config_hash)

    @_store_call
    def mark_front(
        self, front: pd.DataFrame, on_front: set[int], trials: Mapping[int, str], parent: str
    ) -> None:
        """Tag every trial run ``pareto`` (true for each trial on the front, a repeat of a member's params
        included); a member's run gets its test job's id and test means, the job run the study and trial it came
        from."""
        members = {int(row.trial): row for row in front.itertuples()}
        for number, run_id in trials.items():
            self.client.set_tag(run_id, PARETO_TAG, str(number in on_front).lower())
        for number, row in members.items():
            test_run = str(getattr(row, "test_run_id", "") or "")
            run_id = trials.get(number)
            if run_id is None:
                continue
            tests = {k: float(v) for k, v in row._asdict().items() if k.startswith("test_") and _number(v)}
            self.client.log_batch(run_id, metrics=metric_entries(tests))
            if test_run:
                self.client.set_tag(run_id, TEST_RUN_TAG, test_run)
                self.client.set_tag(test_run, STUDY_TAG, self.study_name)
                self.client.set_tag(test_run, TRIAL_TAG, str(number))
                self.client.set_tag(test_run, "tune.study_run_id", parent)

    @_store_call
    def finish_study(self, parent: str, summary: Mapping[str, float], files: Sequence[Path]) -> None:
        self.client.log_batch(parent, metrics=metric_entries(summary))
        for path in files:
            self.client.log_artifact(parent, str(path))
        self.client.set_terminated(parent, "FINISHED")

    def fail_study(self, parent: str, error: str, status: str = "FAILED") -> None:
        """Close the study's run on the way out of a failure; a store that fails here too only warns (the first
        error is the one to report)."""
        try:
            self.client.set_tag(parent, "error", error[:5000])
            self.client.set_terminated(parent, status)
        except Exception as exc:  # noqa: BLE001
            log.warning(
                "the study's MLflow run %s could not be closed as %s (%s)", parent, status, short_error(exc)
            )


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def load_fronts(uri: str, experiment: str) -> list[tuple[dict[str, str], pd.DataFrame]]:
    """Every FINISHED study of ``experiment`` with its ``pareto.csv``: (its tags, the table); [] when none."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    query = f"tags.{KIND_TAG} = '{STUDY_KIND}' and attributes.status = 'FINISHED'"
    fronts = []
    for run in client.search_runs([found.experiment_id], query, max_results=1000):
        try:
            with tempfile.TemporaryDirectory() as tmp:
                table = pd.read_csv(client.download_artifacts(run.info.run_id, "pareto.csv", tmp))
                meta = json.loads(
                    Path(client.download_artifacts(run.info.run_id, "study.json", tmp)).read_text()
                )
        except Exception as exc:  # noqa: BLE001 - a study without its files is reported, not fatal
            log.warning("study run %s has no readable pareto.csv/study.json (%s)", run.info.run_id, exc)
            continue
        fronts.append(({**run.data.tags, "study_json": json.dumps(meta)}, table))
    return fronts
