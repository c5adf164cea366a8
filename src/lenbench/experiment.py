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
from lenbench.explainers.base import Explainer
from lenbench.logic.formula import Formula
from lenbench.logic.metrics import (
    auroc,
    balanced_accuracy,
    consistency,
    explanation_accuracy,
    explanation_auroc,
    explanation_balanced_accuracy,
    explanation_f1,
    explanation_fidelity,
    f1,
    majority_accuracy,
    mean_and_sem,
    model_accuracy,
)
from lenbench.tracking.local import FOLD_METRICS, write_results
from lenbench.tracking.mlflow import NullTracker, Tracker

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
            raise ValueError(f"cv.folds={self.folds!r}: must be null or a list of fold numbers such as [0,1]")
        bad = [f for f in self.folds if not 0 <= int(f) < self.n_splits]
        if bad:
            raise ValueError(
                f"cv.folds={list(self.folds)}: folds must lie in 0..{self.n_splits - 1} (cv.n_splits)"
            )
        return [int(f) for f in self.folds]


def check_cv(dataset: ConceptDataset, cv: CVConfig) -> None:
    """Validate the CV settings against the data before any training; messages name the ``cv.*`` key."""
    for fold_index in cv.fold_indices():
        try:
            cv.datamodule(dataset, fold_index)
        except ValueError as exc:
            raise ValueError(f"cv.{exc}") from None


@dataclass
class FoldResult:
    fold: int
    formula: Formula
    metrics: dict[str, float]
    loss_curve: list[tuple[int, float]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


def run_fold(
    dataset: ConceptDataset,
    fold_index: int,
    cv: CVConfig,
    make_explainer: Callable[[], Explainer],
    target_class: int = 1,
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
    elapsed_time = time.perf_counter() - start

    info = dict(explainer.info())
    loss_curve = [(int(e), float(v)) for e, v in info.pop("loss_curve", [])]
    scores = explainer.scores(fold.x_test)
    args = (formula, fold.x_test, fold.y_test, fold.concept_names, target_class)
    fidelity_args = (formula, fold.x_test, y_pred, fold.concept_names, target_class)
    explains = explainer.provides_explanations  # False: an accuracy reference, its formula metrics are NaN
    nan = float("nan")
    metrics = {
        "model_accuracy": model_accuracy(fold.y_test, y_pred),
        "explanation_accuracy": explanation_accuracy(*args) if explains else nan,
        "explanation_fidelity": explanation_fidelity(*fidelity_args) if explains else nan,
        "explanation_complexity": float(formula.complexity) if explains else nan,
        "elapsed_time": elapsed_time,
        "training_time": float(info.pop("training_time", training_time)),
        "majority_accuracy": majority_accuracy(fold.y_test),
        "model_balanced_accuracy": balanced_accuracy(fold.y_test, y_pred),
        "model_f1": f1(fold.y_test, y_pred, positive=target_class),
        # AUROC of the class-1 score against class 1 (the same number as for class 0 with 1 - score).
        "model_auroc": auroc(fold.y_test, scores, positive=1),
        "explanation_balanced_accuracy": explanation_balanced_accuracy(*args) if explains else nan,
        "explanation_f1": explanation_f1(*args) if explains else nan,
        "explanation_auroc": explanation_auroc(*args) if explains else nan,
    }
    return FoldResult(fold=fold_index, formula=formula, metrics=metrics, loss_curve=loss_curve, info=info)


class FoldFailed(RuntimeError):
    """A fold raised: names the fold so the user knows where, keeps the original as ``__cause__``."""

    def __init__(self, fold: int, error: BaseException) -> None:
        super().__init__(f"fold {fold} failed: {type(error).__name__}: {error}")
        self.fold = fold


# Per-process state of a fold worker, set once by its initializer (each worker is its own process).
_worker_state: dict[str, Any] = {}


def _init_worker(dataset, cv, make_explainer, target_class, torch_threads) -> None:  # noqa: ANN001
    import torch

    torch.set_num_threads(torch_threads)
    _worker_state.update(dataset=dataset, cv=cv, make_explainer=make_explainer, target_class=target_class)


def _run_in_worker(fold_index: int) -> FoldResult:
    s = _worker_state
    return run_fold(s["dataset"], fold_index, s["cv"], s["make_explainer"], s["target_class"])


def iter_folds(
    dataset: ConceptDataset,
    fold_indices: Sequence[int],
    cv: CVConfig,
    make_explainer: Callable[[], Explainer],
    target_class: int = 1,
) -> Iterator[FoldResult]:
    """Yield fold results, in fold order when sequential, as they complete with ``cv.n_jobs`` > 1 processes.

    Each fold seeds its own model and each worker uses the parent's torch thread count, so the results are
    identical to the sequential run. Workers are forked: the data set and the explainer factory are inherited,
    never pickled.
    """
    n_jobs = min(max(int(cv.n_jobs), 1), len(fold_indices))
    if n_jobs <= 1:
        for fold_index in fold_indices:
            try:
                yield run_fold(dataset, fold_index, cv, make_explainer, target_class)
            except Exception as exc:
                raise FoldFailed(fold_index, exc) from exc
        return

    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    import torch

    pool = ProcessPoolExecutor(
        n_jobs,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_init_worker,
        initargs=(dataset, cv, make_explainer, target_class, torch.get_num_threads()),
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


def results_table(method: str, results: Sequence[FoldResult], fold_consistency: float) -> pd.DataFrame:
    """One row per fold with the notebook's columns (``split`` is the fold index) plus lenbench's."""
    rows = [
        {
            "method": method,
            "split": r.fold,
            "explanation": str(r.formula),
            **{k: r.metrics[k] for k in FOLD_METRICS[:4]},
            "explanation_consistency": fold_consistency,
            **{k: r.metrics[k] for k in FOLD_METRICS[4:]},
        }
        for r in results
    ]
    return pd.DataFrame(rows)


def summarize(results: Sequence[FoldResult]) -> dict[str, float]:
    """``<metric>_mean`` and ``<metric>_sem`` (ddof=1, as pandas) over folds, and ``explanation_consistency``."""
    summary: dict[str, float] = {}
    for name in FOLD_METRICS:
        mean, sem = mean_and_sem([r.metrics[name] for r in results])
        summary[f"{name}_mean"] = mean
        summary[f"{name}_sem"] = sem
    explained = [
        r.formula
        for r in results
        if r.metrics["explanation_complexity"] == r.metrics["explanation_complexity"]
    ]
    # A method without explanations (rf) has no consistency either, rather than a misleading 0.
    summary["explanation_consistency"] = consistency(explained) if explained else float("nan")
    summary["n_folds"] = float(len(results))
    return summary


@dataclass
class ExperimentResult:
    results: pd.DataFrame
    summary: dict[str, float]
    folds: list[FoldResult]
    files: dict[str, Path]


def run_experiment(
    dataset: ConceptDataset,
    method: str,
    make_explainer: Callable[[], Explainer],
    cv: CVConfig,
    out_dir: Path,
    *,
    target_class: int = 1,
    tracker: Tracker | None = None,
    run_name: str = "job",
    tags: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
    texts: dict[str, str] | None = None,
    summary_extra: dict[str, Any] | None = None,
) -> ExperimentResult:
    """Run every requested fold, then write and track the results. A failure marks the runs FAILED (KILLED on
    Ctrl-C) and keeps the folds already done in ``results.csv`` before re-raising."""
    tracker = tracker or NullTracker()
    fold_indices = cv.fold_indices()
    tracker.start_job(run_name, tags or {}, params or {})
    done: list[FoldResult] = []
    try:
        for position, result in enumerate(
            iter_folds(dataset, fold_indices, cv, make_explainer, target_class), 1
        ):
            done.append(result)
            m = result.metrics
            log.info(
                "%s fold %d (%d/%d)%s: model %.4f | explanation %.4f | fidelity %.4f | complexity %.0f | %s",
                method,
                result.fold,
                position,
                len(fold_indices),
                _training_note(result),
                m["model_accuracy"],
                m["explanation_accuracy"],
                m["explanation_fidelity"],
                m["explanation_complexity"],
                _short(str(result.formula)),
            )
            tracker.log_fold(
                result.fold, {**m, **_numeric(result.info)}, str(result.formula), result.loss_curve
            )
    except BaseException as exc:
        # Lightning turns a KeyboardInterrupt inside fit into SystemExit: both mean the user stopped the job.
        status = "KILLED" if isinstance(exc, (KeyboardInterrupt, SystemExit)) else "FAILED"
        error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, FoldFailed) else str(exc)
        if isinstance(exc, FoldFailed):
            tracker.fail_fold(exc.fold, error)
        if done:
            _write(method, done, dataset, out_dir, summary_extra, partial=True)
            log.error("%s after %d fold(s); results of those folds are in %s", status, len(done), out_dir)
        tracker.fail_job(error, status=status)
        raise

    done.sort(key=lambda r: r.fold)
    files, results, summary, explanations = _write(
        method, done, dataset, out_dir, summary_extra, partial=False
    )
    fold_metrics = {name: [(r.fold, r.metrics[name]) for r in done] for name in FOLD_METRICS}
    figures = _figures(results)
    try:
        tracker.finish_job(fold_metrics, summary, list(files.values()), texts or {}, figures)
    finally:
        _close(figures)
    return ExperimentResult(results=results, summary=summary, folds=done, files=files)


def _write(method, done, dataset, out_dir, summary_extra, partial):  # noqa: ANN001, ANN202
    done = sorted(done, key=lambda r: r.fold)
    summary = summarize(done)
    results = results_table(method, done, summary["explanation_consistency"])
    full_summary = {
        "method": method,
        "data": dataset.name,
        "label": dataset.label,
        "complete": not partial,
        "folds": [r.fold for r in done],
        **(summary_extra or {}),
        **summary,
    }
    explanations = {
        "target_formula": dataset.ground_truth,
        "folds": [{"fold": r.fold, "formula": str(r.formula), "info": _jsonable(r.info)} for r in done],
    }
    files = write_results(out_dir, results, full_summary, explanations)
    return files, results, summary, explanations


def _figures(results: pd.DataFrame) -> dict[str, Any]:
    from lenbench.tracking.plots import fold_metrics_figure

    return {"fold_metrics.png": fold_metrics_figure(results)}


def _close(figures: dict[str, Any]) -> None:
    import matplotlib.pyplot as plt

    for figure in figures.values():
        plt.close(figure)


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
