"""Reading the MLflow layout back for reports: finished job runs, their fold runs and their formulas.

The counterpart of :mod:`lenbench.tracking.mlflow` (which writes that layout): together they are the only modules
that talk to MLflow. A job's per-fold values are read from its child runs (tag ``mlflow.parentRunId`` plus tag
``fold``), never from the parent, which holds only the summary; formulas come whole from the job's
``explanations.json`` artifact, the child's (truncated) ``formula`` tag being the fallback. The result is plain
DataFrames: :mod:`lenbench.report` computes on them without knowing MLflow.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from lenbench.scoring import METRICS, MetricSet
from lenbench.tracking.describe import FOLD_TAG, FORMULA_TAG, KIND_TAG, MAX_TAG_CHARS, PARENT_RUN_ID_TAG
from lenbench.tracking.errors import TrackingError
from lenbench.tracking.store import check_store
from lenbench.tracking.sweeps import member_tag

log = logging.getLogger(__name__)
PAGE = 1000  # runs per search request


@dataclass
class StoredJobs:
    """What a report reads: one row per fold (method, seed, data, label, run_id, git_commit, data_checksum,
    config_hash, fold, every fold metric of the set, formula) and one row per job run (the same identity,
    run_name, ``params``: the flattened resolved config as logged, ``membership``: ``ran`` in the selected sweep
    or ``resumed`` by it (``""`` without a sweep), and the run's summary metrics)."""

    folds: pd.DataFrame
    runs: pd.DataFrame


def load_jobs(
    uri: str,
    experiment: str,
    sweep_id: str | None = None,
    filter_string: str = "",
    metrics: MetricSet = METRICS,
) -> StoredJobs:
    """The FINISHED job runs of ``experiment`` (optionally one sweep, with the runs it resumed, or an extra
    MLflow filter) and their folds."""
    from mlflow import MlflowClient

    check_store(uri)
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise TrackingError(
            f"no MLflow experiment named {experiment!r} at {uri}; run `make train` first or pass --experiment"
        )
    parents = one_per_job(sweep_jobs(client, found.experiment_id, sweep_id, filter_string))
    if not parents:
        query = _job_query(sweep_id, filter_string)
        raise TrackingError(f"no FINISHED job runs in experiment {experiment!r} match {query!r}")
    children = fold_runs(client, found.experiment_id, {run.info.run_id for run, _ in parents})
    fold_rows, run_rows = [], []
    for run, membership in parents:
        identity = _identity(run)
        run_rows.append(
            {
                **identity,
                "run_name": run.data.tags.get("mlflow.runName", ""),
                "params": dict(run.data.params),
                "membership": membership,
                **run.data.metrics,
            }
        )
        fold_rows += _fold_rows(client, identity, children.get(run.info.run_id, []), metrics)
    columns = [*IDENTITY, "fold", *metrics.fold_names, "formula"]  # a metric no fold holds is still a column
    return StoredJobs(folds=pd.DataFrame(fold_rows, columns=columns), runs=pd.DataFrame(run_rows))


def sweep_jobs(
    client: Any, experiment_id: str, sweep_id: str | None, filter_string: str
) -> list[tuple[Any, str]]:
    """The FINISHED job runs to report, each with its membership: without a sweep, every one matching the filter
    (membership ``""``); with one, those it ran (tag ``sweep_id``, ``ran``) and those it resumed (the tag of
    :func:`lenbench.tracking.sweeps.member_tag`, ``resumed``)."""
    if not sweep_id:
        return [(run, "") for run in finished_jobs(client, experiment_id, _job_query(None, filter_string))]
    ran = finished_jobs(client, experiment_id, _job_query(sweep_id, filter_string))
    member = f"tags.`{member_tag(sweep_id)}` = '{sweep_id}'"
    query = " and ".join(c for c in ("attributes.status = 'FINISHED'", member, filter_string) if c)
    seen = {run.info.run_id for run in ran}
    resumed = [run for run in finished_jobs(client, experiment_id, query) if run.info.run_id not in seen]
    return [(run, "ran") for run in ran] + [(run, "resumed") for run in resumed]


def one_per_job(parents: list[tuple[Any, str]]) -> list[tuple[Any, str]]:
    """One run per job (its ``config_hash`` at its ``git_commit``), the one that finished last: the same job run
    twice at once (two identical sweeps) finishes twice, and its folds must not count twice in the report."""
    last: dict[tuple[str, str], Any] = {}
    for run, _ in parents:
        key = (run.data.tags.get("config_hash") or run.info.run_id, run.data.tags.get("git_commit", ""))
        if key not in last or (run.info.end_time or 0) > (last[key].info.end_time or 0):
            last[key] = run
    kept = {run.info.run_id for run in last.values()}
    if len(kept) < len(parents):
        log.info("report: %d run(s) of a job that finished again later left out", len(parents) - len(kept))
    return [(run, membership) for run, membership in parents if run.info.run_id in kept]


def _search(client: Any, experiment_id: str, filter_string: str) -> Iterator[Any]:
    """Every run matching ``filter_string``, page by page (no cap on the number of runs)."""
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string, max_results=PAGE, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def _job_query(sweep_id: str | None, filter_string: str) -> str:
    sweep = f"tags.sweep_id = '{sweep_id}'" if sweep_id else ""
    return " and ".join(c for c in ("attributes.status = 'FINISHED'", sweep, filter_string) if c)


def finished_jobs(client: Any, experiment_id: str, query: str) -> list[Any]:
    """The parent runs (jobs; report and tuning-study runs excluded) matching ``query`` (which includes the
    FINISHED status)."""
    return [
        run
        for run in _search(client, experiment_id, query)
        if PARENT_RUN_ID_TAG not in run.data.tags
        and run.data.tags.get(KIND_TAG) not in ("report", "tune_study")
    ]


def fold_runs(client: Any, experiment_id: str, parent_ids: set[str]) -> dict[str, list[Any]]:
    """The FINISHED child runs of the given parents, by parent run id, in fold order."""
    children: dict[str, list[Any]] = {}
    for run in _search(client, experiment_id, "attributes.status = 'FINISHED'"):
        parent = run.data.tags.get(PARENT_RUN_ID_TAG)
        if parent in parent_ids and FOLD_TAG in run.data.tags:
            children.setdefault(parent, []).append(run)
    for runs in children.values():
        runs.sort(key=lambda run: int(run.data.tags[FOLD_TAG]))
    return children


IDENTITY = ("method", "seed", "data", "label", "run_id", "git_commit", "data_checksum", "config_hash")


def _identity(run: Any) -> dict[str, Any]:
    """A job's identity columns (:data:`IDENTITY`), from its parent run's tags."""
    tags = run.data.tags
    identity = {name: tags.get(name, "") for name in IDENTITY}
    identity.update(method=tags.get("method", "?"), seed=int(tags.get("seed", -1)), run_id=run.info.run_id)
    return identity


def _fold_rows(
    client: Any, identity: dict[str, Any], children: list[Any], metrics: MetricSet
) -> list[dict[str, Any]]:
    """One row per fold run: the set's fold metrics the run holds, and the fold's full formula."""
    full = job_formulas(client, identity["run_id"]) if children else {}
    rows = []
    for child in children:
        fold = int(child.data.tags[FOLD_TAG])
        values = {name: child.data.metrics[name] for name in metrics.fold_names if name in child.data.metrics}
        formula = full.get(fold, child.data.tags.get(FORMULA_TAG, ""))
        rows.append({**identity, "fold": fold, **values, "formula": formula})
    return rows


def job_formulas(client: Any, run_id: str) -> dict[int, str]:
    """Every fold's full formula from the job's ``explanations.json`` artifact ({} when it is missing)."""
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(run_id, "explanations.json", tmp)
            payload = json.loads(Path(path).read_text())
    except Exception:  # noqa: BLE001 - an imported or partial run may lack it; the tags are the fallback
        return {}
    return {int(entry["fold"]): str(entry["formula"]) for entry in payload.get("folds", [])}


@dataclass(frozen=True)
class StoredFold:
    """A fold an earlier run of a job finished: its fold run's id, metrics and full formula."""

    fold: int
    run_id: str
    metrics: dict[str, float]
    formula: str


def finished_folds(client: Any, experiment_id: str, config_hash: str) -> dict[int, StoredFold]:
    """The latest FINISHED fold run of each fold of the configuration ``config_hash`` (a job interrupted before it
    finished leaves them; a rerun reuses them instead of training those folds again)."""
    query = f"tags.config_hash = '{config_hash}' and attributes.status = 'FINISHED'"
    latest: dict[int, Any] = {}
    for run in _search(client, experiment_id, query):
        if PARENT_RUN_ID_TAG not in run.data.tags or FOLD_TAG not in run.data.tags:
            continue
        fold = int(run.data.tags[FOLD_TAG])
        if fold not in latest or run.info.start_time > latest[fold].info.start_time:
            latest[fold] = run
    return {fold: _stored_fold(client, fold, run) for fold, run in latest.items()}


def _stored_fold(client: Any, fold: int, run: Any) -> StoredFold:
    formula = run.data.tags.get(FORMULA_TAG, "")
    if len(formula) >= MAX_TAG_CHARS:  # the tag was truncated: the run's formula.txt holds the whole formula
        with tempfile.TemporaryDirectory() as tmp:
            formula = Path(client.download_artifacts(run.info.run_id, "formula.txt", tmp)).read_text().strip()
    metrics = {k: v for k, v in run.data.metrics.items() if k != "train_loss"}
    return StoredFold(fold=fold, run_id=run.info.run_id, metrics=metrics, formula=formula)


def run_metrics(uri: str, run_id: str) -> dict[str, float]:
    """A run's metrics (a job's summary on its parent run), e.g. for the end-of-sweep summary of resumed jobs."""
    from mlflow import MlflowClient

    check_store(uri)
    return dict(MlflowClient(uri).get_run(run_id).data.metrics)
