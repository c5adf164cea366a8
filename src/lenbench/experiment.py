"""Cross-validation loop of one job: the same steps for every method, whatever it is.

For each fold: fit the explainer on train+validation rows, predict the test rows, explain the target class (timed
apart from training), score model and formula on the test rows. Across folds: consistency of the formulas, mean and
standard error of every metric. Side effects (files, MLflow) go through ``tracking``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lenbench.data.base import ConceptDataset
from lenbench.data.datamodule import ConceptDataModule
from lenbench.errors import ConfigError
from lenbench.explainers.base import Explainer
from lenbench.logic.formula import Formula
from lenbench.logic.metrics import mean_and_sem
from lenbench.scoring import METRICS, FoldEvidence, JobEvidence, MetricSet
from lenbench.tracking.local import write_results
from lenbench.tracking.protocol import NullTracker, Tracker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CVConfig:
    """Which folds a job runs; ``split_seed`` stays fixed across model seeds so every seed sees the same folds."""

    n_splits: int = 10
    split_seed: int = 42
    folds: Sequence[int] | None = None
    val_size: float = 0.3
    inner_split_seed: int = 42
    n_jobs: int = 1

    def datamodule(self, dataset: ConceptDataset, fold_index: int) -> ConceptDataModule:
        """The (not yet set up) data module of fold ``fold_index`` under these settings; validates them."""
        return ConceptDataModule(
            dataset,
            fold=fold_index,
            n_splits=self.n_splits,
            split_seed=self.split_seed,
            val_size=self.val_size,
            inner_split_seed=self.inner_split_seed,
        )

    def fold_indices(self) -> list[int]:
        if self.folds is None:
            return list(range(self.n_splits))
        if isinstance(self.folds, (str, bytes)) or not hasattr(self.folds, "__iter__"):
            raise ConfigError(f"cv.folds={self.folds!r}: must be null or a list of fold numbers such as [0,1]")
        folds = [int(f) for f in self.folds]
        if not folds or len(set(folds)) != len(folds):
            raise ConfigError(
                f"cv.folds={folds}: give each fold once, e.g. [0,1], or null for all {self.n_splits} folds"
            )
        if any(not 0 <= f < self.n_splits for f in folds):
            raise ConfigError(f"cv.folds={folds}: folds must lie in 0..{self.n_splits - 1} (cv.n_splits)")
        return folds


def check_cv(dataset: ConceptDataset, cv: CVConfig) -> None:
    """Validate the CV settings against the data before any training; messages name the ``cv.*`` key."""
    for fold_index in cv.fold_indices():
        try:
            cv.datamodule(dataset, fold_index)
        except ValueError as exc:
            raise ConfigError(f"cv.{exc}") from None


@dataclass
class FoldResult:
    fold: int
    formula: Formula
    metrics: dict[str, float]
    loss_curve: list[tuple[int, float]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    explained: bool = True  # False: the method gives no explanation (rf), its formula metrics are NaN


def run_fold(
    dataset: ConceptDataset,
    fold_index: int,
    cv: CVConfig,
    make_explainer: Callable[[], Explainer],
    target_class: int = 1,
    metrics: MetricSet = METRICS,
) -> FoldResult:
    """Fit, predict, explain and score one fold. Pure of side effects but for the explainer's own training."""
    datamodule = cv.datamodule(dataset, fold_index)
    datamodule.setup()
    fold = datamodule.fold
    explainer = make_explainer()

    start = time.perf_counter()
    explainer.fit(fold)
    training_time = time.perf_counter() - start
    y_pred = explainer.predict(fold.x_test)

    start = time.perf_counter()
    formula = explainer.explain(fold, target_class)
    extraction_time = time.perf_counter() - start

    info = dict(explainer.info())
    loss_curve = [(int(e), float(v)) for e, v in info.pop("loss_curve", [])]
    explained = explainer.provides_explanations
    evidence = FoldEvidence(
        y_true=fold.y_test,
        y_pred=y_pred,
        x=fold.x_test,
        concept_names=fold.concept_names,
        target_class=target_class,
        formula=formula if explained else None,
        scores=explainer.scores(fold.x_test),
        timings={"training": float(info.pop("training_time", training_time)), "extraction": extraction_time},
    )
    return FoldResult(
        fold=fold_index,
        formula=formula,
        metrics=metrics.score_fold(evidence),
        loss_curve=loss_curve,
        info=info,
        explained=explained,
    )


class FoldFailed(RuntimeError):
    """A fold raised: names the fold so the user knows where, keeps the original as ``__cause__``."""

    def __init__(self, fold: int, error: BaseException) -> None:
        super().__init__(f"fold {fold} failed: {type(error).__name__}: {error}")
        self.fold = fold


# Per-process state of a fold worker, set once by its initializer (each worker is its own process).
_worker_state: dict[str, Any] = {}


def _init_worker(run: Callable[[int], FoldResult], torch_threads: int) -> None:
    import torch

    torch.set_num_threads(torch_threads)
    _worker_state["run"] = run


def _run_in_worker(fold_index: int) -> FoldResult:
    return _worker_state["run"](fold_index)


def iter_folds(
    dataset: ConceptDataset,
    fold_indices: Sequence[int],
    cv: CVConfig,
    make_explainer: Callable[[], Explainer],
    target_class: int = 1,
    metrics: MetricSet = METRICS,
) -> Iterator[FoldResult]:
    """Yield fold results, in fold order when sequential, as they complete with ``cv.n_jobs`` > 1 processes.

    Each fold seeds its own model and each worker uses the parent's torch thread count, so the results are
    identical to the sequential run. Workers are forked: the data set and the explainer factory are inherited,
    never pickled.
    """

    def run(fold_index: int) -> FoldResult:
        return run_fold(dataset, fold_index, cv, make_explainer, target_class, metrics)

    n_jobs = min(max(int(cv.n_jobs), 1), len(fold_indices))
    if n_jobs <= 1:
        for fold_index in fold_indices:
            try:
                yield run(fold_index)
            except Exception as exc:
                raise FoldFailed(fold_index, exc) from exc
        return
    yield from _iter_parallel(run, fold_indices, n_jobs)


def _iter_parallel(
    run: Callable[[int], FoldResult], fold_indices: Sequence[int], n_jobs: int
) -> Iterator[FoldResult]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    import torch

    pool = ProcessPoolExecutor(
        n_jobs,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_init_worker,
        initargs=(run, torch.get_num_threads()),
    )
    try:
        futures = {pool.submit(_run_in_worker, f): f for f in fold_indices}
        for future in as_completed(futures):
            try:
                yield future.result()
            except Exception as exc:
                raise FoldFailed(futures[future], exc) from exc
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def results_table(
    method: str, results: Sequence[FoldResult], job_values: dict[str, float], metrics: MetricSet = METRICS
) -> pd.DataFrame:
    """One row per fold with the notebook's columns (``split`` is the fold index), then lenbench's: every metric
    of ``metrics`` in its order, a job-level one (consistency) repeated on each row as the notebook did."""
    rows = [
        {
            "method": method,
            "split": r.fold,
            "explanation": str(r.formula),
            **{x.name: r.metrics[x.name] if x.level == "fold" else job_values[x.name] for x in metrics},
        }
        for r in results
    ]
    return pd.DataFrame(rows)


def summarize(results: Sequence[FoldResult], metrics: MetricSet = METRICS) -> dict[str, float]:
    """``<metric>_mean`` and ``<metric>_sem`` (ddof=1, as pandas) over folds, the job-level metrics
    (consistency, over the folds that explain: a method without explanations gets NaN, not a misleading 0)."""
    summary: dict[str, float] = {}
    for name in metrics.fold_names:
        mean, sem = mean_and_sem([r.metrics[name] for r in results])
        summary[f"{name}_mean"] = mean
        summary[f"{name}_sem"] = sem
    summary.update(metrics.score_job(JobEvidence([r.formula for r in results if r.explained])))
    summary["n_folds"] = float(len(results))
    return summary


@dataclass
class ExperimentResult:
    results: pd.DataFrame
    summary: dict[str, float]
    folds: list[FoldResult]
    files: dict[str, Path]


@dataclass(frozen=True)
class JobRecord:
    """What a job's record carries besides its results: run name, tags, params, texts (config, environment) and
    extra ``summary.json`` entries."""

    run_name: str = "job"
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    summary_extra: dict[str, Any] = field(default_factory=dict)


def run_experiment(
    dataset: ConceptDataset,
    method: str,
    make_explainer: Callable[[], Explainer],
    cv: CVConfig,
    out_dir: Path,
    *,
    target_class: int = 1,
    tracker: Tracker | None = None,
    record: JobRecord | None = None,
    metrics: MetricSet = METRICS,
) -> ExperimentResult:
    """Run every requested fold, then write and track the results. A failure marks the runs FAILED (KILLED on
    Ctrl-C) and keeps the folds already done in ``results.csv`` before re-raising."""
    tracker = tracker or NullTracker()
    record = record or JobRecord()
    writer = _ResultWriter(method, dataset, out_dir, record.summary_extra, metrics)
    tracker.start_job(record.run_name, record.tags, record.params)
    done: list[FoldResult] = []
    try:
        folds = iter_folds(dataset, cv.fold_indices(), cv, make_explainer, target_class, metrics)
        for result in folds:
            done.append(result)
            _log_fold(method, result, len(done), len(cv.fold_indices()))
            tracker.log_fold(
                result.fold,
                {**result.metrics, **_numeric(result.info)},
                str(result.formula),
                result.loss_curve,
            )
    except BaseException as exc:
        _fail(exc, tracker, writer, done)
        raise
    files, results, summary = writer.write(done, partial=False)
    tracker.finish_job(summary, list(files.values()), record.texts, results)
    return ExperimentResult(
        results=results, summary=summary, folds=sorted(done, key=lambda r: r.fold), files=files
    )


def _fail(exc: BaseException, tracker: Tracker, writer: _ResultWriter, done: list[FoldResult]) -> None:
    """Close the runs (KILLED when the user stopped the job, FAILED otherwise) and keep the finished folds."""
    # Lightning turns a KeyboardInterrupt inside fit into SystemExit: both mean the user stopped the job.
    status = "KILLED" if isinstance(exc, (KeyboardInterrupt, SystemExit)) else "FAILED"
    error = str(exc) if isinstance(exc, FoldFailed) else f"{type(exc).__name__}: {exc}"
    if isinstance(exc, FoldFailed):
        tracker.fail_fold(exc.fold, error)
    if done:
        writer.write(done, partial=True)
        log.error("%s after %d fold(s); results of those folds are in %s", status, len(done), writer.out_dir)
    tracker.fail_job(error, status=status)


@dataclass(frozen=True)
class _ResultWriter:
    """Writes ``results.csv``, ``summary.json`` and ``explanations.json`` of the folds done so far."""

    method: str
    dataset: ConceptDataset
    out_dir: Path
    summary_extra: dict[str, Any]
    metrics: MetricSet

    def write(
        self, done: Sequence[FoldResult], partial: bool
    ) -> tuple[dict[str, Path], pd.DataFrame, dict[str, float]]:
        done = sorted(done, key=lambda r: r.fold)
        summary = summarize(done, self.metrics)
        job_values = {x.name: summary[x.name] for x in self.metrics.at("job")}
        results = results_table(self.method, done, job_values, self.metrics)
        full_summary = {
            "method": self.method,
            "data": self.dataset.name,
            "label": self.dataset.label,
            "complete": not partial,
            "folds": [r.fold for r in done],
            **self.summary_extra,
            **summary,
        }
        explanations = {
            "target_formula": self.dataset.ground_truth,
            "folds": [{"fold": r.fold, "formula": str(r.formula), "info": _jsonable(r.info)} for r in done],
        }
        return write_results(self.out_dir, results, full_summary, explanations), results, summary


def _log_fold(method: str, result: FoldResult, position: int, total: int) -> None:
    m = result.metrics
    log.info(
        "%s fold %d (%d/%d)%s: model %.4f | explanation %.4f | fidelity %.4f | complexity %.0f | %s",
        method,
        result.fold,
        position,
        total,
        _training_note(result),
        m["model_accuracy"],
        m["explanation_accuracy"],
        m["explanation_fidelity"],
        m["explanation_complexity"],
        _short(str(result.formula)),
    )


def _numeric(info: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in info.items() if isinstance(v, (int, float, bool, np.number))}


def _jsonable(info: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in info.items() if not callable(v)}


def _training_note(result: FoldResult) -> str:
    """`` epoch 5000 loss 0.3123`` for networks (last recorded point of the loss curve), empty otherwise."""
    if not result.loss_curve:
        return ""
    epoch, loss = result.loss_curve[-1]
    return f" epoch {epoch} loss {loss:.4f}"


def _short(text: str, width: int = 80) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
