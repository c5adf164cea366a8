"""The job API: one method x one seed x one data set, cross-validated and tracked, from a composed config.

``src/train.py`` composes the Hydra config and calls :func:`run_job` with a :class:`JobContext` (where the job runs
and writes); everything else happens here, in plain Python, so a notebook or another launcher can run a job the same
way. The steps, each before any training where it can be known before:

1. settings: torch threads (torch only imported when the data or method uses it), the CV settings (``cv.n_jobs`` resolved), the seed and target class checked;
2. objects from ``_target_``: the data set, then one explainer built once to validate its hyper-parameters and
   say whether its folds train together (the job's :class:`~lenbench.folds.FoldPlan`);
3. identity: the resolved config's hash (resume key), tags (method, data, seed, git commit, checksum, sweep);
4. tracking: the MLflow store opened (or :class:`NullTracker`), a FINISHED run of the same config skips the job;
   the plan keeps the folds an interrupted run finished and takes the job's share of its seed batch;
5. ``experiment.run_experiment`` runs the folds as planned; :func:`format_summary` renders the console table.

Configuration problems raise :class:`~lenbench.errors.ConfigError` (a :class:`~lenbench.errors.UserError`, as are
data and store problems): the entry point prints those as one line. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from lenbench.config import config_hash, fold_slots, instantiate, job_params, resolve_n_jobs
from lenbench.data.base import ConceptDataset
from lenbench.data.encoded import raw_input_dataset
from lenbench.errors import ConfigError
from lenbench.experiment import ExperimentResult, JobRecord, run_experiment
from lenbench.folds import Companion, CVConfig, FoldPlan, FoldResult, check_cv
from lenbench.logic.formula import Formula
from lenbench.names import check_name
from lenbench.nn.allocator import keep_freed_buffers
from lenbench.scoring import METRICS, MetricSet
from lenbench.seed_batch import SeedBatch, plan_seed_batch, trained_seed_tags
from lenbench.tracking.environment import environment
from lenbench.tracking.errors import TrackingError
from lenbench.tracking.local import write_json
from lenbench.tracking.mlflow import MlflowTracker
from lenbench.tracking.protocol import NullTracker, ResilientTracker, Tracker
from lenbench.tracking.store import default_tracking_uri
from lenbench.tracking.sweeps import record_resumed

log = logging.getLogger("lenbench")


@dataclass(frozen=True)
class JobContext:
    """Where a job runs: the project folder (default store, git commit), its output folder, the sweep it belongs
    to (``""`` for a single run) and whether a parallel launcher already runs jobs side by side."""

    project_dir: Path
    out_dir: Path
    sweep_id: str = ""
    parallel_launcher: bool = False
    seed_batch: SeedBatch | None = None  # the seeds of its sweep that may train with it (lenbench.seed_batch)


@dataclass
class JobOutcome:
    """A job's summary (empty when resume skipped it: ``skipped_by`` is then the FINISHED run's id)."""

    summary: dict[str, float]
    out_dir: Path
    skipped_by: str | None = None


def run_job(cfg: DictConfig, context: JobContext, metrics: MetricSet = METRICS) -> JobOutcome:
    """Run one job from its composed config; see the module docstring for the steps."""
    _check_settings(cfg)
    _set_torch_threads(cfg)
    keep_freed_buffers()  # process-wide, inherited by the fold workers (lenbench.nn.allocator)
    cv = cv_config(cfg, context.parallel_launcher)
    dataset = instantiate(cfg.data, "data")
    _check_target(dataset, int(cfg.target_class))
    check_cv(dataset, cv)
    make_explainer = partial(instantiate, cfg.method.explainer, "method.explainer")
    plan = FoldPlan.alone(make_explainer, cv)  # its one explainer checks the hyper-parameters before training
    explainer = make_explainer()
    explainer.check_inputs(dataset.n_concepts)
    if explainer.reads_inputs:  # raw inputs and true concepts, or one line before training
        dataset = raw_input_dataset(dataset, explainer.name)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    record = job_record(cfg, resolved, dataset, context)
    experiment = experiment_name(cfg, dataset)
    tracker = open_tracker(cfg, context.project_dir, experiment, metrics)
    previous = _finished_run(tracker, record, cfg)
    if previous is not None:
        uri = tracking_uri(cfg, context.project_dir)
        record_resumed(uri, previous, record.run_name, context.sweep_id, context.out_dir)
        return JobOutcome(summary={}, out_dir=context.out_dir, skipped_by=previous)
    if cfg.resume:
        plan = plan.keeping(reusable_folds(tracker, record, metrics))
    record, plan = _seed_batch(cfg, context, record, tracker, dataset, plan)
    _write_job_file(context, experiment, record)
    rows = f"{len(dataset.y)} rows, {dataset.n_concepts} concepts"
    log.info(
        "%s on %s (%s), %d fold(s) -> %s",
        record.run_name,
        dataset.name,
        rows,
        len(cv.fold_indices()),
        context.out_dir,
    )
    outcome = run_experiment(
        dataset,
        str(cfg.method.name),
        plan,
        context.out_dir,
        target_class=int(cfg.target_class),
        tracker=tracker,
        record=record,
        metrics=metrics,
    )
    _hand_over(context, tracker, int(cfg.seed), plan.companions, outcome, record.run_name)
    _raise_store_failure(tracker, context.out_dir)
    return JobOutcome(summary=outcome.summary, out_dir=context.out_dir)


def _hand_over(
    context: JobContext,
    tracker: Tracker,
    seed: int,
    companions: Sequence[Companion],
    outcome: ExperimentResult,
    run_name: str,
) -> None:
    """Leave the other seeds' folds in the seed batch for their jobs; where some trained alone after training
    together failed, correct the ``seed_batch`` tags (:func:`lenbench.seed_batch.trained_seed_tags`)."""
    for index, companion in enumerate(companions):
        if outcome.companion_folds.get(index):  # none when training together failed and the job trained alone
            context.seed_batch.leave(companion.seed, outcome.companion_folds[index], run_name)
    corrected = trained_seed_tags(seed, companions, outcome.companion_folds, [r.fold for r in outcome.folds])
    if companions and corrected is not None:
        tracker.set_tags(*corrected)


def uses_torch(cfg: DictConfig) -> bool:
    """Whether the job computes with torch: its data trains a concept encoder, or its method says so
    (``Explainer.uses_torch``; a target that does not import is left for :func:`instantiate` to report)."""
    if "encoder" in cfg.data:
        return True
    module, _, name = str(cfg.method.explainer._target_).rpartition(".")
    try:  # importlib, not hydra's get_class, which logs an error of its own before the one-line message
        return bool(getattr(getattr(importlib.import_module(module), name), "uses_torch", True))
    except Exception:  # noqa: BLE001 - any failure to find the class is reported where it is built
        return True


def _set_torch_threads(cfg: DictConfig) -> None:
    """torch's thread count, before anything computes with it. A job that never uses torch (a tree on concept
    rows) does not import it: two seconds of CPU at every start."""
    if uses_torch(cfg):
        import torch

        torch.set_num_threads(int(cfg.torch_threads))


def check_names(cfg: DictConfig) -> None:
    """The names that become file, folder and run names (method, data set, experiment, study) are each one safe
    file name (:func:`lenbench.names.check_name`)."""
    for key in ("method.name", "data.name", "tracking.experiment", "tune.study_name"):
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None:
            check_name(str(value), key)


def _check_settings(cfg: DictConfig) -> None:
    check_names(cfg)
    if int(cfg.torch_threads) < 1:
        raise ConfigError(
            f"torch_threads={cfg.torch_threads}: must be a positive integer (1 is reproducible and fastest)"
        )
    if int(cfg.seed) < 0:
        raise ConfigError(
            f"seed={cfg.seed}: must be a non-negative integer (numpy and torch seeds are unsigned)"
        )


def _check_target(dataset: ConceptDataset, target_class: int) -> None:
    classes = sorted(int(c) for c in np.unique(dataset.y))
    if target_class not in classes:
        raise ConfigError(
            f"target_class={target_class}: not a class of {dataset.name} (its classes are {classes}); "
            f"set target_class to one of them"
        )


def cv_config(cfg: DictConfig, parallel_launcher: bool = False) -> CVConfig:
    """The validated CV settings of a config, ``cv.n_jobs: auto`` resolved for this machine and launcher."""
    settings = OmegaConf.to_container(cfg.cv, resolve=True)
    settings["n_jobs"] = resolve_n_jobs(settings.get("n_jobs", 1), fold_slots(cfg.trainer), parallel_launcher)
    cv = CVConfig(**settings)
    cv.fold_indices()  # validates cv.folds before any work
    return cv


def experiment_name(cfg: DictConfig, dataset: ConceptDataset | None = None) -> str:
    """``tracking.experiment``, else the data set's name as its config declares it (``data.name``)."""
    if dataset is not None:
        declared = dataset.name
    else:  # before loading: the config's name, else a table's file name (data=csv names itself after it)
        declared = cfg.data.get("name") or Path(str(cfg.data.get("path") or "")).stem
    return str(cfg.tracking.experiment or declared or "default")


def tracking_uri(cfg: DictConfig, project_dir: Path) -> str:
    return cfg.tracking.uri or default_tracking_uri(project_dir)


def open_tracker(
    cfg: DictConfig, project_dir: Path, experiment: str, metrics: MetricSet = METRICS
) -> Tracker:
    """The job's tracker: MLflow behind :class:`ResilientTracker` (a store failing mid-job never stops the
    training), or :class:`NullTracker` with ``tracking.enabled=false``."""
    if not cfg.tracking.enabled:
        return NullTracker()
    uri = tracking_uri(cfg, project_dir)
    store = MlflowTracker(uri, experiment, metrics=metrics)  # artifacts where the store keeps them
    return ResilientTracker(store, uri)


def job_record(
    cfg: DictConfig, resolved: dict[str, Any], dataset: ConceptDataset, context: JobContext
) -> JobRecord:
    """Run name, tags, params and texts of a job: what makes its record reproducible and findable."""
    env = environment(context.project_dir, int(cfg.torch_threads), torch_used=uses_torch(cfg))
    method = str(cfg.method.name)
    run_name = f"{method}-s{cfg.seed}"
    tags = {
        "mlflow.runName": run_name,
        "method": method,
        "data": dataset.name,
        "label": dataset.label,
        "seed": str(cfg.seed),
        "git_commit": env["git_commit"],
        "mlflow.source.git.commit": env["git_commit"],
        "git_dirty": str(env["git_dirty"]),
        "torch_threads": str(env["torch_threads"]),
        "cpu_model": env["cpu_model"],  # results differ across CPU types: a column to split or filter by
        "data_checksum": dataset.checksum or "",
        # A job is its config and its data: an edited table is a new job, never "already FINISHED".
        "config_hash": job_hash(resolved, dataset),
        "sweep_id": context.sweep_id,
    }
    texts = {
        "config.yaml": OmegaConf.to_yaml(cfg, resolve=True),
        "environment.json": json.dumps(env, indent=2, default=str) + "\n",
        "data.json": json.dumps(_data_record(dataset), indent=2) + "\n",
    }
    params = job_params(cfg)  # the resolved config once: no instantiation keys, no interpolated copies
    return JobRecord(
        run_name=run_name,
        tags=tags,
        params=params,
        texts=texts,
        summary_extra={"seed": int(cfg.seed), "environment": env},
        log_models=bool(cfg.method.get("log_model", True)) and bool(cfg.tracking.enabled),
    )


def job_hash(resolved: dict[str, Any], dataset: ConceptDataset) -> str:
    """A job's identity (resume key): its resolved config and its data (an edited table is a new job)."""
    return config_hash({**resolved, "data_checksum": dataset.checksum or ""})


def _data_record(dataset: ConceptDataset) -> dict[str, Any]:
    """What the job ran on: the data set's name, label, size, class counts, checksum and concept names."""
    return {
        "name": dataset.name,
        "label": dataset.label,
        "rows": int(len(dataset.y)),
        "class_counts": {
            str(c): int(n) for c, n in zip(*np.unique(dataset.y, return_counts=True), strict=True)
        },
        "checksum": dataset.checksum,
        "concepts": list(dataset.concept_names),
    }


def reusable_folds(
    tracker: Tracker, record: JobRecord, metrics: MetricSet = METRICS
) -> dict[int, FoldResult]:
    """Folds an interrupted earlier run of this very configuration finished: reused, not trained again."""
    find = getattr(tracker, "finished_folds", None)
    stored = find(record.tags["config_hash"]) if find is not None else {}
    if stored:
        log.info(
            "%s: reusing %d fold(s) finished by an earlier run of this configuration",
            record.run_name,
            len(stored),
        )
    return {fold: _fold_result(item, metrics) for fold, item in stored.items()}


def _fold_result(stored: Any, metrics: MetricSet) -> FoldResult:
    values = {name: float(stored.metrics.get(name, float("nan"))) for name in metrics.fold_names}
    explained = values.get("explanation_accuracy", 0.0) == values.get("explanation_accuracy", 0.0)
    return FoldResult(
        fold=stored.fold,
        formula=Formula.parse(stored.formula) if stored.formula else Formula.false(),
        metrics=values,
        explained=explained,
        reused_from=stored.run_id,
    )


def _finished_id(tracker: Tracker, cfg: DictConfig, job_key: str) -> str | None:
    """The FINISHED run of the job whose hash is ``job_key``, when resuming and the tracker can tell."""
    find = getattr(tracker, "find_finished", None)
    return find(job_key) if cfg.resume and find is not None else None


def _finished_run(tracker: Tracker, record: JobRecord, cfg: DictConfig) -> str | None:
    previous = _finished_id(tracker, cfg, record.tags["config_hash"])
    if previous is not None:
        log.info(
            "%s: skipped, run %s already FINISHED this configuration (resume=false reruns it)",
            record.run_name,
            previous,
        )
    return previous


def _write_job_file(context: JobContext, experiment: str, record: JobRecord) -> None:
    """``job.json``: what ``import_results`` needs to replay the job into a store that failed during it."""
    write_json(
        context.out_dir / "job.json",
        {
            "run_name": record.run_name,
            "experiment": experiment,
            "tags": record.tags,
            "params": record.params,
            "texts": record.texts,
        },
    )


def _raise_store_failure(tracker: Tracker, out_dir: Path) -> None:
    error = getattr(tracker, "error", None)
    if error:
        raise TrackingError(
            f"the MLflow store failed during the job ({getattr(tracker, 'store', 'store')}: {error}); its results "
            f"are complete in {out_dir}: "
            f"import them once the store works with `python -m lenbench.tracking.import_results {out_dir}`"
        )


# Needs that depend on the data set rather than the method: a ground-truth formula, concepts from an encoder.
_DATA_SET_NEEDS = frozenset({"truth", "concepts"})


def format_summary(
    method: str, summary: dict[str, float], out_dir: Path, metrics: MetricSet = METRICS
) -> str:
    """The console table of a finished job: every headline metric of the registry, mean +- sem over folds, and
    the metrics that only some data sets have (a known formula, concepts from an encoder) where this one has them."""
    lines = [f"{method}: mean +- sem over {int(summary['n_folds'])} fold(s)"]
    width = max([24, *(len(m.label) for m in metrics)])
    for metric in metrics:
        mean = summary.get(f"{metric.name}_mean")
        shown_here = metric.needs & _DATA_SET_NEEDS and mean == mean  # not NaN
        if not (metric.headline or shown_here):
            continue
        if metric.level == "job":
            lines.append(f"  {metric.label:<{width}} {summary[metric.name]:>10.4f}")
        else:
            mean, sem = summary[f"{metric.name}_mean"], summary[f"{metric.name}_sem"]
            spread = "+- n/a (one fold)" if sem != sem else f"+- {sem:.4f}"
            # n/a: a later seed's training time (the seed batch's first job recorded it)
            shown = f"{mean:>10.4f} {spread}" if mean == mean else f"{'n/a':>10}"
            lines.append(f"  {metric.label:<{width}} {shown}")
    lines.append(f"  results: {out_dir / 'results.csv'}; whole formulas: {out_dir / 'explanations.json'}")
    return "\n".join(lines)


def _seed_batch(
    cfg: DictConfig,
    context: JobContext,
    record: JobRecord,
    tracker: Tracker,
    dataset: ConceptDataset,
    plan: FoldPlan,
) -> tuple[JobRecord, FoldPlan]:
    """The job's share of its seed batch in its plan (:func:`lenbench.seed_batch.plan_seed_batch`), its record
    tagged with it."""
    plan, tags = plan_seed_batch(
        context.seed_batch,
        cfg,
        record.run_name,
        plan,
        apart=partial(_trains_apart, tracker, cfg, dataset),
        explainer_factory=lambda other: partial(instantiate, other.method.explainer, "method.explainer"),
    )
    return dataclasses.replace(record, tags={**record.tags, **tags}), plan


def _trains_apart(
    tracker: Tracker, cfg: DictConfig, dataset: ConceptDataset, other: DictConfig, resolved: dict[str, Any]
) -> bool:
    """Whether another seed's job (config ``other``, ``resolved``) must run on its own: its settings are refused
    (its job says so in one line) or it is FINISHED in the store (resume)."""
    try:
        _check_settings(other)
    except ConfigError:
        return True
    return _finished_id(tracker, cfg, job_hash(resolved, dataset)) is not None
