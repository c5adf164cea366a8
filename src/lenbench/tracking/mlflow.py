"""Writing to MLflow: one parent run per job, one child run per fold, each with its model, params and data, and the
report run in an experiment of its own (the layout docs/sweeps.md shows).

This module and :mod:`lenbench.tracking.mlflow_read` (reading runs back for reports) are the only ones that talk to
MLflow; the layout's tag names, and what the UI shows besides numbers (experiment kind, run description, dataset
inputs), are :mod:`lenbench.tracking.describe`, the store itself (its default URI, where its artifacts go, its checks
and lock) :mod:`lenbench.tracking.store`. It uses ``MlflowClient`` with explicit run ids rather than the fluent
``mlflow.start_run`` API, so no global "active run" state leaks between jobs in one process.

Per-fold metrics live on the child runs only; the parent holds the job's summary (``<metric>_mean``,
``<metric>_sem``, job-level metrics such as ``explanation_consistency``, ``n_folds``), so no parent metric is named
like a fold metric and the UI never shows one fold as the job's result.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lenbench.models.store import MODEL_ID_TAG, PARENT_MODEL_TAG, log_ensemble, log_model
from lenbench.scoring import METRICS, MetricSet
from lenbench.tracking.cleanup import close_stale_runs, process_tags
from lenbench.tracking.describe import (
    CONTEXT_TAG,
    DESCRIPTION_TAG,
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    FOLD_TAG,
    FORMULA_TAG,
    KIND_TAG,
    MAX_TAG_CHARS,
    PARENT_RUN_ID_TAG,
    REUSED_FROM_TAG,
    fold_inputs,
    job_description,
)
from lenbench.tracking.errors import TrackingError
from lenbench.tracking.store import check_store, default_artifact_location, short_error, store_lock

if TYPE_CHECKING:
    import pandas as pd

    from lenbench.tracking.mlflow_read import StoredFold

log = logging.getLogger(__name__)
JOB = -1  # the job's own entry where folds are keyed by number: its data set, its model (the folds' vote)


def _now_ms() -> int:
    return int(time.time() * 1000)


def metric_entries(values: Mapping[str, float], step: int = 0, prefix: str = "", **link: str) -> list[Any]:
    """MLflow metric entries of ``values`` (``prefix`` + name) at ``step``, stamped now; None and NaN left out.
    ``link``: the ``model_id`` that shows them, the ``dataset_name`` and ``dataset_digest`` they were measured on."""
    from mlflow.entities import Metric

    now = _now_ms()
    return [
        Metric(prefix + k, float(v), now, step, **link) for k, v in values.items() if v is not None and v == v
    ]


def log_params(client: Any, run_id: str, params: Mapping[str, Any]) -> None:
    """``params`` on the run as strings (cut to MLflow's 6000 characters), at most 100 a batch as MLflow wants."""
    from mlflow.entities import Param

    items = [Param(k, str(v)[:6000]) for k, v in params.items()]
    for start in range(0, len(items), 100):
        client.log_batch(run_id, params=items[start : start + 100])


class MlflowTracker:
    """Parent run per job (method x seed x data), child run per fold, all through one MlflowClient.

    ``metrics`` are the registry the job scores with: the per-fold figure logged by :meth:`finish_job` draws them.
    ``artifact_location`` is where a new experiment keeps its artifacts; None: where the store keeps them (beside a
    SQLite file, on a tracking server). The experiment is tagged so that MLflow's UI opens it as a machine-learning
    experiment.
    """

    def __init__(
        self, uri: str, experiment: str, artifact_location: str | None = None, metrics: MetricSet = METRICS
    ) -> None:
        from mlflow import MlflowClient  # imported here: mlflow is slow to import and only needed at the edge

        check_store(uri)  # one line naming a problem, before any training; a new SQLite store gets its schema
        self.uri = uri
        self.metrics = metrics
        self.client = MlflowClient(tracking_uri=uri)
        location = artifact_location or default_artifact_location(uri)
        with store_lock(uri):  # jobs started together create the experiment once
            self.experiment_id = self._experiment_id(experiment, location)
        self.run_id: str | None = None
        self._tags: dict[str, str] = {}
        self._params: dict[str, str] = {}  # the job's; on its fold runs and models too (the UI compares them)
        self._datasets: dict[int, dict[str, str]] = {}  # fold (JOB) -> the data its metrics were measured on
        self._runs: dict[int, str] = {}  # fold (JOB) -> its run's id
        self._streamed: dict[int, int] = {}  # fold -> last epoch whose loss was logged while training
        self._models: dict[int, str] = {}  # fold (JOB: the folds' vote) -> its model's URI (models:/<id>)

    def _experiment_id(self, name: str, artifact_location: str | None) -> str:
        """Get or create the experiment, tagged as a machine-learning experiment; a parallel job creating it first
        is not an error."""
        kind = {EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
        try:
            found = self.client.get_experiment_by_name(name)
            if found is None:
                try:
                    return self.client.create_experiment(name, artifact_location=artifact_location, tags=kind)
                except Exception:  # noqa: BLE001 - created meanwhile by a parallel job
                    found = self.client.get_experiment_by_name(name)
                    if found is None:
                        raise
            if found.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:  # created before lenbench tagged it
                self.client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
            return found.experiment_id
        except Exception as exc:  # noqa: BLE001 - any store failure becomes one clear message
            login = "; fix: export MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (the server's login)"
            raise TrackingError(
                f"cannot open MLflow experiment {name!r} at {self.uri}: {short_error(exc)}"
                + (login if "not authenticated" in str(exc) else "")
            ) from None

    def find_finished(self, config_hash: str) -> str | None:
        """The id of a FINISHED parent run of the same configuration, if any: a rerun sweep skips that job."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.config_hash = '{config_hash}' and attributes.status = 'FINISHED'",
            max_results=1000,  # its fold runs carry the same tag: 10 of them once hid the parent
        )
        parents = [r for r in runs if PARENT_RUN_ID_TAG not in r.data.tags]
        return parents[0].info.run_id if parents else None

    def start_job(self, run_name: str, tags: Mapping[str, str], params: Mapping[str, Any]) -> None:
        close_stale_runs(self.client, [self.experiment_id])  # runs of a process that died: not left RUNNING
        self._tags = {**{k: str(v) for k, v in tags.items()}, **process_tags()}
        self._tags["mlflow.runName"] = run_name
        self._params = {k: str(v)[:6000] for k, v in params.items()}
        self.run_id = self._child(JOB)
        log.info(
            "MLflow run %s (%s) in experiment %s at %s", run_name, self.run_id, self.experiment_id, self.uri
        )

    def _name(self, fold: int = JOB) -> str:
        """The run name of the job (``psi-s0``) or of one of its folds (``psi-s0-fold3``), and of its model."""
        return self._tags["mlflow.runName"] + ("" if fold == JOB else f"-fold{fold}")

    def _child(self, fold: int, started_at: float | None = None) -> str:
        """The fold's run (or the JOB's), created on first use (when the fold starts: ``started_at`` is then its
        start time), with the job's params (the UI compares fold runs on them)."""
        if fold not in self._runs:
            tags = {**self._tags, "mlflow.runName": self._name(fold)}
            if fold != JOB:
                tags |= {PARENT_RUN_ID_TAG: self.run_id, FOLD_TAG: str(fold)}
            start = None if started_at is None else int(started_at * 1000)
            run = self.client.create_run(self.experiment_id, start_time=start, tags=tags)
            self._runs[fold] = run.info.run_id
            log_params(self.client, run.info.run_id, self._params)
        return self._runs[fold]

    def _link(self, fold: int) -> dict[str, str]:
        """A fold's (or the JOB's) final metrics' links: the model that shows them, the data they were measured on."""
        model = {"model_id": self._models[fold].removeprefix("models:/")} if fold in self._models else {}
        return {**self._datasets.get(fold, {}), **model}

    def set_tags(self, job: Mapping[str, str], folds: Mapping[int, Mapping[str, str]]) -> None:
        """Set (or correct) tags once the facts are known: on the job run (and fold runs created later), and on
        the runs of the folds named in ``folds``."""
        for key, value in job.items():
            self.client.set_tag(self.run_id, key, value)
        self._tags.update(job)
        for fold, tags in folds.items():
            if fold in self._runs:
                for key, value in tags.items():
                    self.client.set_tag(self._runs[fold], key, value)

    def start_fold(self, fold: int, started_at: float) -> None:
        """Open the fold's run as the fold starts: the UI shows it RUNNING, with its true duration at the end."""
        self._child(fold, started_at)

    def log_training(self, fold: int, losses: Sequence[tuple[int, float]]) -> None:
        """Log training-loss points (step = epoch) on the fold's run while it trains."""
        from mlflow.entities import Metric

        now = _now_ms()
        entries = [Metric("train_loss", float(loss), now, int(epoch)) for epoch, loss in losses]
        if entries:
            self.client.log_batch(self._child(fold), metrics=entries)
            self._streamed[fold] = max(self._streamed.get(fold, -1), *(int(e) for e, _ in losses))

    def log_fold(
        self,
        fold: int,
        metrics: Mapping[str, float],
        formula: str,
        loss_curve: Sequence[tuple[int, float]],
        reused_from: str | None = None,
    ) -> None:
        """The fold's metrics, formula and loss points not yet streamed; then its run is FINISHED. A fold reused
        from an earlier run of the same job is tagged ``reused_from`` with that fold run's id."""
        from mlflow.entities import Metric, RunTag

        child, link = self._child(fold), self._link(fold)  # the fold's model, test rows
        now = _now_ms()
        streamed = self._streamed.get(fold, -1)
        entries = metric_entries(metrics, **link)
        entries += [Metric("train_loss", float(v), now, int(e)) for e, v in loss_curve if int(e) > streamed]
        tags = [RunTag(FORMULA_TAG, formula[:MAX_TAG_CHARS])]
        tags += [RunTag(MODEL_ID_TAG, link["model_id"])] if "model_id" in link else []
        tags += [RunTag(REUSED_FROM_TAG, reused_from)] if reused_from else []
        for start in range(0, max(len(entries), 1), 1000):
            self.client.log_batch(child, metrics=entries[start : start + 1000], tags=tags)
        self.client.log_text(child, formula + "\n", "formula.txt")
        self.client.set_terminated(child, "FINISHED", end_time=_now_ms())

    def finished_folds(self, config_hash: str) -> dict[int, StoredFold]:
        """Folds of this configuration that an earlier, unfinished run of the job completed (for reuse)."""
        from lenbench.tracking.mlflow_read import finished_folds  # deferred: it imports pandas

        return finished_folds(self.client, self.experiment_id, config_hash)

    def log_fold_inputs(
        self,
        fold: int,
        dataset_name: str,
        checksum: str | None,
        splits: Mapping[str, np.ndarray],
        source: str | None = None,
    ) -> None:
        """The fold's data as dataset inputs of its run: one per split (``{"train": rows, "validation": rows,
        "test": rows}``, row positions in the data set), tagged ``mlflow.data.context`` with the split's name; the
        digest covers the data set's checksum and the rows, the source is ``source`` (else the data set's name).
        The first fold's also gives the job's run its data set: every row, context ``cross-validation``."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        every = {"cross-validation": np.sort(np.concatenate([np.asarray(r) for r in splits.values()]))}
        job = [(JOB, self.run_id, every)] if JOB not in self._datasets else []
        for key, run, rows in [(fold, self._child(fold), splits), *job]:
            items = fold_inputs(dataset_name, checksum, rows, source)
            tested = items.get("test") or next(iter(items.values()))  # the job's: its every row
            self._datasets[key] = {"dataset_name": tested["name"], "dataset_digest": tested["digest"]}
            inputs = [DatasetInput(Dataset(**d), [InputTag(CONTEXT_TAG, c)]) for c, d in items.items()]
            self._log_inputs(key, run, inputs)

    def _log_inputs(self, fold: int, run: str, datasets: list[Any]) -> None:
        """MLflow's get-or-create of a dataset is not atomic: parallel jobs creating the same one retry."""
        for attempt in range(3):
            try:
                self.client.log_inputs(run, datasets=datasets)
                return
            except Exception as exc:  # noqa: BLE001 - parallel jobs create the same dataset row at once
                error = exc  # the next try finds the row
                time.sleep(0.1 * (attempt + 1))
        log.warning("%s: its dataset inputs were not recorded (%s)", self._name(fold), short_error(error))

    def log_fold_model(self, fold: int, model: Any) -> None:
        """The fold's fitted explainer as the MLflow model of its run (:func:`lenbench.models.store.log_model`);
        the parent run names it (tag ``lenbench.model.fold<k>``)."""
        self._log_model(fold, log_model, model)

    def log_job_model(self, models: Mapping[int, Any]) -> None:
        """The folds' models as one MLflow model of the parent run, their majority vote
        (:func:`lenbench.models.store.log_ensemble`); tagged ``lenbench.model_id`` with the job's summary."""
        self._log_model(JOB, log_ensemble, dict(models))

    def _log_model(self, fold: int, log_as: Callable[..., str], model: Any) -> None:
        """Named as its run (``psi-s0``, ``psi-s0-fold3``), with the job's params. A model that cannot be saved is
        a warning, not the end of the job's tracking; a store that cannot be reached is (TrackingError)."""
        try:
            run = self._child(fold)
            named = {"name": self._name(fold), "params": self._params}
            self._models[fold] = log_as(self.client, self.experiment_id, run, model, **named)
        except Exception as exc:  # noqa: BLE001 - the fold's metrics and formula still get logged
            check_store(self.uri)  # unless the store itself is gone: then tracking stops now
            log.warning("%s: its model was not logged (%s)", self._name(fold), short_error(exc))

    def _model_tags(self) -> list[Any]:
        """The parent run's tags naming each fold's model (written with the job's summary, in one batch)."""
        from mlflow.entities import RunTag

        tags = [
            RunTag(PARENT_MODEL_TAG.format(fold=f), u) for f, u in sorted(self._models.items()) if f != JOB
        ]
        return tags + ([RunTag(MODEL_ID_TAG, self._link(JOB)["model_id"])] if JOB in self._models else [])

    def fail_fold(self, fold: int, error: str) -> None:
        child = self._child(fold)
        self.client.set_tag(child, "error", error[:MAX_TAG_CHARS])
        self.client.set_terminated(child, "FAILED")

    def finish_job(
        self,
        summary: Mapping[str, float],
        artifacts: Sequence[Path],
        texts: Mapping[str, str],
        results: pd.DataFrame | None,
    ) -> None:
        """Log the job's summary on the parent run (fold values stay on the child runs), its files and texts, and
        the per-fold figure drawn from ``results``."""
        entries = metric_entries(summary, **self._link(JOB))  # the folds' means: shown on their vote's model
        for start in range(0, max(len(entries), 1), 1000):
            tags = self._model_tags() if start == 0 else []
            self.client.log_batch(self.run_id, metrics=entries[start : start + 1000], tags=tags)
        for path in artifacts:
            self.client.log_artifact(self.run_id, str(path))
        for name, text in texts.items():
            self.client.log_text(self.run_id, text, name)
        if results is not None and len(results):
            self._log_fold_figure(results)
        self.client.set_tag(self.run_id, DESCRIPTION_TAG, job_description(self._tags, summary, self.metrics))
        self.client.set_terminated(self.run_id, "FINISHED")

    def _log_fold_figure(self, results: pd.DataFrame) -> None:
        import matplotlib.pyplot as plt

        from lenbench.tracking.plots import fold_metrics_figure  # deferred: it imports matplotlib

        figure = fold_metrics_figure(results, self.metrics, self._tags)
        try:
            self.client.log_figure(self.run_id, figure, "fold_metrics.png")
        finally:
            plt.close(figure)

    def fail_job(self, error: str, status: str = "FAILED") -> None:
        if self.run_id is None:
            return
        self.client.set_tag(self.run_id, "error", error[:MAX_TAG_CHARS])
        if self._models:  # the folds that finished keep their models, named on the parent
            self.client.log_batch(self.run_id, tags=self._model_tags())
        for fold, child in self._runs.items():
            if fold != JOB and self.client.get_run(child).info.status == "RUNNING":
                self.client.set_terminated(child, status)
        self.client.set_terminated(self.run_id, status)


def log_report_run(uri: str, experiment: str, files: Sequence[Path], sweep_id: str | None = None) -> str:
    """Log a report's files as artifacts of a FINISHED run tagged ``kind=report``, in its own experiment
    ``<experiment>-reports``: the jobs' experiment lists jobs only."""
    tracker = MlflowTracker(uri, f"{experiment}-reports")  # checks the store; creates the experiment once
    tags = {KIND_TAG: "report", "sweep_id": sweep_id or "", "report_of": experiment}
    run = tracker.client.create_run(tracker.experiment_id, run_name="report", tags=tags)
    for path in files:
        tracker.client.log_artifact(run.info.run_id, str(path))
    tracker.client.set_terminated(run.info.run_id, "FINISHED")
    log.info("report logged as run %s in MLflow experiment %s-reports", run.info.run_id, experiment)
    return run.info.run_id
