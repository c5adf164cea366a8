"""One tuning study from a composed ``conf/tune.yaml``: check everything, search, score the front on test folds.

:func:`run_study` is the study's API (the entry point only composes the config and prints the summary):

1. settings: the search space (:mod:`.space`), the budget and objectives (:func:`study_spec`), the data set, the
   inner folds (built once: every trial fits on the same rows), the store and the Optuna storage, all checked
   before any trial;
2. search: ``tune.n_jobs`` processes (spawned, each with its own storage and MLflow connections) run trials until the
   study holds ``tune.n_trials`` completed ones or ``tune.timeout`` passes; each trial fits its configuration on every
   outer fold's train rows and scores it on that fold's validation rows (:mod:`.inner`);
3. front: the non-dominated completed trials; each member runs once as an ordinary job on the outer test folds
   (:func:`lenbench.job.run_job`; a job that already ran is found, not run again);
4. files (:mod:`.files`) and the MLflow record (:mod:`lenbench.tracking.tune_runs`).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lenbench.config import flatten, instantiate
from lenbench.data.base import ConceptDataset, Fold
from lenbench.data.encoded import raw_input_dataset
from lenbench.errors import ConfigError, UserError
from lenbench.folds import FoldFailed
from lenbench.job import (
    JobContext,
    check_names,
    cv_config,
    experiment_name,
    job_hash,
    run_job,
    tracking_uri,
)
from lenbench.nn.allocator import keep_freed_buffers
from lenbench.scoring import METRICS, MetricSet
from lenbench.tracking.mlflow_read import run_metrics
from lenbench.tracking.tune_runs import StudyRecorder
from lenbench.tune import files, optuna_study
from lenbench.tune.inner import inner_fold, mean_scores, score_on_validation
from lenbench.tune.settings import StudySpec, study_spec
from lenbench.tune.space import SearchParam, job_config, parse_space

log = logging.getLogger("lenbench")


@dataclass
class StudyOutcome:
    """What a finished study leaves: its spec, every trial, the front (validation and test), hypervolumes."""

    spec: StudySpec
    trials: Any  # pandas DataFrame, one row per trial
    front: Any  # pandas DataFrame, one row per Pareto member
    summary: dict[str, float]
    out_dir: Path
    files: dict[str, Path]


def run_study(cfg: DictConfig, context: JobContext, metrics: MetricSet = METRICS) -> StudyOutcome:
    """Run (or resume) the study of ``cfg`` and score its front; see the module docstring."""
    import torch

    check_names(cfg)
    torch.set_num_threads(int(cfg.torch_threads))
    keep_freed_buffers()
    method = str(cfg.method.name)
    space = parse_space(OmegaConf.to_container(cfg.search, resolve=True), cfg, method)
    uri = tracking_uri(cfg, context.project_dir)
    spec = study_spec(cfg, space, uri, context.project_dir, metrics)
    dataset: ConceptDataset = instantiate(cfg.data, "data")
    cv = cv_config(cfg)
    base = instantiate(job_config(cfg, {}, space).method.explainer, "method.explainer")  # a valid config
    if base.reads_inputs:  # raw inputs and true concepts, or one line before any trial
        dataset = raw_input_dataset(dataset, base.name)
    folds = [inner_fold(dataset, cv, k) for k in cv.fold_indices()]
    recorder = StudyRecorder(uri, experiment_name(cfg, dataset), spec.name)  # checks the store first
    study = optuna_study.open_study(spec)  # a name taken by other objectives stops here
    parent = recorder.open_study(
        {"method": method, "data": dataset.name, "label": dataset.label}, _study_params(cfg, space, spec)
    )
    log.info(
        "study %s: %s on %s, %d inner fold(s), space %s; storage %s; MLflow run %s",
        spec.name,
        method,
        dataset.name,
        len(folds),
        "; ".join(p.describe() for p in space),
        spec.storage,
        parent,
    )
    try:
        plain = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))  # no schema types: picklable
        search = Search(
            job_cfg=plain,
            space=space,
            folds=folds,
            spec=spec,
            uri=uri,
            parent=parent,
            experiment=recorder.client.get_experiment(recorder.experiment_id).name,
        )
        optimize(search, study)
        trials, front = optuna_study.tables(study, spec, space)
        if len(front) and bool(cfg.tune.score_test):
            front = score_front(cfg, space, front, context, dataset, recorder, spec)
        summary = files.front_summary(trials, front, spec)
        written = files.write_study(context.out_dir, trials, front, spec, summary, dataset.name, method)
        on_front = set(trials.loc[trials["pareto"], "trial"].astype(int)) if len(trials) else set()
        recorder.mark_front(front, on_front, recorder.trial_runs(), parent)
        recorder.finish_study(parent, summary, list(written.values()))
    except BaseException as exc:
        killed = isinstance(exc, (KeyboardInterrupt, SystemExit))
        recorder.fail_study(parent, f"{type(exc).__name__}: {exc}", "KILLED" if killed else "FAILED")
        raise
    return StudyOutcome(spec, trials, front, summary, context.out_dir, written)


def _study_params(cfg: DictConfig, space: tuple[SearchParam, ...], spec: StudySpec) -> dict[str, Any]:
    params = {f"space.{p.name}": p.describe() for p in space}
    params.update(
        {f"tune.{k}": v for k, v in flatten(OmegaConf.to_container(cfg.tune, resolve=True)).items()}
    )
    params.update({"tune.storage": spec.storage, "tune.study_name": spec.name})
    return params


@dataclass
class Search:
    """What every trial process needs: the job config, the space, the inner folds, where to record. Picklable
    (trial processes are spawned)."""

    job_cfg: DictConfig
    space: tuple[SearchParam, ...]
    folds: list[Fold]
    spec: StudySpec
    uri: str
    parent: str
    experiment: str

    def objective(self, recorder: Any, trial: Any) -> list[float]:
        """Fit one configuration on every inner fold and return its mean validation objectives."""
        values = {p.name: p.suggest(trial) for p in self.space}
        job = job_config(self.job_cfg, values, self.space)
        make = partial(instantiate, job.method.explainer, "method.explainer")
        run_id = recorder.start_trial(self.parent, trial.number, values)
        try:
            make()  # a value the method refuses is a user error: the study stops with its message
            per_fold = [score_on_validation(f, make, int(job.target_class)) for f in self.folds]
        except BaseException as exc:
            with contextlib.suppress(Exception):  # the trial's own error is the one to report
                recorder.fail_trial(run_id, f"{type(exc).__name__}: {exc}")
            if isinstance(exc, FoldFailed):
                log.warning("trial %d failed, the study goes on: %s (params %s)", trial.number, exc, values)
            raise
        means = mean_scores(per_fold)
        for name in (*self.spec.objectives, *self.spec.recorded):
            trial.set_user_attr(f"val_{name}", means.get(name, float("nan")))
        recorder.finish_trial(run_id, means, per_fold)
        log.info(
            "trial %d: %s -> %s",
            trial.number,
            values,
            ", ".join(f"{o} {means[o]:.4g}" for o in self.spec.objectives),
        )
        return [means[o] for o in self.spec.objectives]


def score_front(
    cfg: DictConfig,
    space: tuple[SearchParam, ...],
    front: Any,
    context: JobContext,
    dataset: ConceptDataset,
    recorder: Any,
    spec: StudySpec,
) -> Any:
    """Run each Pareto member once as a job on the outer test folds; adds ``test_<metric>`` (mean over test
    folds), ``test_<metric>_sem`` and ``test_run_id`` columns."""
    rows = []
    for row in front.to_dict("records"):
        values = {p.name: _stored(p, row[f"param_{p.name}"]) for p in space}
        job = job_config(cfg, values, space)
        out = context.out_dir / "test" / f"trial-{int(row['trial']):04d}"
        log.info("trial %d on the outer test folds -> %s", int(row["trial"]), out)
        outcome = run_job(job, JobContext(context.project_dir, out, sweep_id=str(context.out_dir)))
        resolved = OmegaConf.to_container(job, resolve=True)
        run_id = outcome.skipped_by or recorder.job_run(job_hash(resolved, dataset))
        summary = outcome.summary or (run_metrics(recorder.uri, run_id) if run_id else {})
        for name in (*spec.objectives, *spec.recorded):
            row[f"test_{name}"] = summary.get(f"{name}_mean", float("nan"))
            row[f"test_{name}_sem"] = summary.get(f"{name}_sem", float("nan"))
        row["test_run_id"] = run_id or ""
        rows.append(row)
    return type(front)(rows)


def _stored(param: SearchParam, value: Any) -> Any:
    """A value as the table holds it, back to the trial's: a ``null`` choice reads back as NaN."""
    if isinstance(value, float) and value != value and None in param.choices:
        return None
    if param.kind == "int":
        return int(value)
    return value.item() if hasattr(value, "item") else value


def run_worker(search: Search, worker: int, n_trials: int) -> None:
    """One trial process: its own storage and MLflow connections, sampler seed ``tune.seed + worker``. A user
    error ends it with its line and exit status 2."""
    import sys

    import torch

    logging.basicConfig(
        level=logging.INFO,
        format=f"[%(asctime)s][worker {worker}][%(levelname)s] - %(message)s",
        stream=sys.stderr,
    )
    torch.set_num_threads(int(search.job_cfg.torch_threads))
    keep_freed_buffers()
    try:
        recorder = StudyRecorder(search.uri, search.experiment, search.spec.name)
        study = optuna_study.load(search.spec, worker)
        log.info(
            "trial process %d joined study %s (sampler seed %d)",
            worker,
            study.study_name,
            search.spec.seed + worker,
        )
        optuna_study.run_trials(study, partial(search.objective, recorder), search.spec, n_trials)
    except UserError as exc:
        log.error("%s", exc)
        sys.exit(2)


def spawn_workers(search: Search, n_trials: int) -> None:
    """``tune.n_jobs`` spawned processes share the study through its storage; a worker that fails fails the
    study (its trial's error is in its log and on its MLflow run)."""
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=run_worker, args=(search, w, n_trials), name=f"tune-worker-{w}")
        for w in range(search.spec.n_jobs)
    ]
    for process in workers:
        process.start()
    try:
        for process in workers:
            process.join()
    finally:
        for process in workers:
            if process.is_alive():
                process.terminate()
                process.join()
    if any(p.exitcode == 2 for p in workers):
        raise ConfigError(
            "a trial process stopped on the problem logged above (exit status 2); fix it and rerun"
        )
    failed = [p.name for p in workers if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"trial process(es) {', '.join(failed)} failed (exit codes in the log above)")


def optimize(search: Search, study: Any) -> None:
    """Run the missing trials: in this process (``tune.n_jobs=1``, reproducible for a seed) or in parallel
    trial processes sharing the storage."""
    missing = search.spec.n_trials - optuna_study.completed(study)
    if missing <= 0:
        log.info(
            "study %s already holds %d completed trial(s)", search.spec.name, optuna_study.completed(study)
        )
        return
    log.info("running up to %d trial(s) in %d process(es)", missing, search.spec.n_jobs)
    if search.spec.n_jobs == 1:
        recorder = StudyRecorder(search.uri, search.experiment, search.spec.name)
        optuna_study.run_trials(study, lambda trial: search.objective(recorder, trial), search.spec, missing)
    else:
        spawn_workers(search, missing)
