"""Cross-validation loop of one job: the same steps for every method, whatever it is.

The folds run as the job's :class:`~lenbench.folds.FoldPlan` says, through :func:`lenbench.fold_runner.iter_folds`
(each scored by :func:`lenbench.folds.run_fold`); the folds it keeps (an interrupted earlier run of the job or an
earlier job of its seed batch trained them) are recorded, not trained again. Across folds: consistency of the
formulas, mean and standard error of every metric. While folds train, their start and training progress go to the
tracker (each fold's run starts when the fold starts, its loss is logged as it trains) and to the console
(:mod:`lenbench.progress`). Side effects (files, MLflow) go through ``tracking``.

Every path out closes the runs: FINISHED, FAILED (a fold raised) or KILLED (Ctrl-C, SIGTERM: then
:class:`JobInterrupted` says how many folds were kept), and the finished folds are always in ``results.csv``.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lenbench.data.base import ConceptDataset
from lenbench.errors import DiskFull
from lenbench.fold_runner import FoldEvent, FoldStarted, iter_folds
from lenbench.folds import FoldFailed, FoldPlan, FoldResult
from lenbench.logic.metrics import mean_and_sem
from lenbench.progress import FoldProgressConsole
from lenbench.scoring import METRICS, JobEvidence, MetricSet
from lenbench.tracking.local import write_results
from lenbench.tracking.protocol import NullTracker, Tracker

log = logging.getLogger(__name__)


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
        summary[f"{name}_mean"], summary[f"{name}_sem"] = mean_and_sem([r.metrics[name] for r in results])
    summary.update(metrics.score_job(JobEvidence([r.formula for r in results if r.explained])))
    summary["n_folds"] = float(len(results))
    return summary


@dataclass
class ExperimentResult:
    results: pd.DataFrame
    summary: dict[str, float]
    folds: list[FoldResult]
    files: dict[str, Path]
    companion_folds: dict[int, list[FoldResult]] = field(default_factory=dict)  # companion -> its folds


@dataclass(frozen=True)
class JobRecord:
    """What a job's record carries besides its results: run name, tags, params, texts (config, environment) and
    extra ``summary.json`` entries."""

    run_name: str = "job"
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    summary_extra: dict[str, Any] = field(default_factory=dict)
    log_models: bool = False  # each fold's fitted explainer as an MLflow model on its run (lenbench.models)


class JobInterrupted(Exception):
    """The user stopped the job (Ctrl-C, SIGTERM): the runs are KILLED, the finished folds kept."""

    def __init__(self, kept: int, total: int, out_dir: Path) -> None:
        super().__init__(
            f"interrupted: kept {kept} finished fold(s) of {total}; their results are in {out_dir / 'results.csv'}; "
            f"the same command trains the other {total - kept} and reuses these"
            if kept
            else f"interrupted before any fold finished: nothing was kept; the same command trains all {total}"
        )
        self.kept = kept


def run_experiment(
    dataset: ConceptDataset,
    method: str,
    plan: FoldPlan,
    out_dir: Path,
    *,
    target_class: int = 1,
    tracker: Tracker | None = None,
    record: JobRecord | None = None,
    metrics: MetricSet = METRICS,
) -> ExperimentResult:
    """Record the folds ``plan`` keeps and run the others, then write and track the results. A failure marks the
    runs FAILED (KILLED and :class:`JobInterrupted` on Ctrl-C/SIGTERM) and keeps the folds done in ``results.csv``.
    The results of the plan's companions (other seeds trained with this job's folds) are returned, not recorded."""
    tracker = tracker or NullTracker()
    record = record or JobRecord()
    writer = _ResultWriter(method, dataset, out_dir, record.summary_extra, metrics)
    total = len(plan.cv.fold_indices())
    loop = _FoldLoop(method, tracker, total, FoldProgressConsole(method), dataset)
    try:
        tracker.start_job(record.run_name, record.tags, record.params)  # inside: a Ctrl-C here closes it too
        for _, result in sorted(plan.kept.items()):
            loop.finished(result)
        for result in iter_folds(dataset, plan, target_class, metrics, loop.event, record.log_models):
            loop.arrived(result)
        if record.log_models:
            _log_ensemble(tracker, loop.done)
        files, results, summary = writer.write(loop.done, partial=False)
    except BaseException as exc:
        loop.console.clear()
        _fail(exc, tracker, writer, loop.done)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise JobInterrupted(len(loop.done), total, out_dir) from exc
        raise
    tracker.finish_job(summary, list(files.values()), record.texts, results)
    folds = sorted(loop.done, key=lambda r: r.fold)
    return ExperimentResult(results, summary, folds, files, companion_folds=loop.companion_folds)


@dataclass
class _FoldLoop:
    """The job's side of its folds: events to the console and the tracker, finished folds logged and kept."""

    method: str
    tracker: Tracker
    total: int
    console: FoldProgressConsole
    dataset: ConceptDataset
    done: list[FoldResult] = field(default_factory=list)
    companion_folds: dict[int, list[FoldResult]] = field(default_factory=dict)

    def arrived(self, result: FoldResult) -> None:
        """A fold of this job is recorded; a companion's (another seed trained with it) is kept for its job."""
        if result.member:
            self.companion_folds.setdefault(result.member - 1, []).append(replace(result, member=0))
        else:
            self.finished(result)

    def event(self, event: FoldEvent) -> None:
        if isinstance(event, FoldStarted):
            self.console.started(event.fold, event.at)
            self.tracker.start_fold(event.fold, event.at)
        else:
            self.console.training(event.fold, event.progress)
            if event.progress.losses:
                self.tracker.log_training(event.fold, event.progress.losses)

    def finished(self, result: FoldResult) -> None:
        # a Ctrl-C or SIGTERM lands after the fold is recorded everywhere, not halfway
        with _signals_deferred():
            self._record(result)

    def _record(self, result: FoldResult) -> None:
        self.console.clear()
        self.console.finished(result.fold)
        self.done.append(result)
        info = {**_numeric(result.info), **({"reused": 1.0} if result.reused_from else {})}
        if result.splits:  # a reused fold's inputs are on the run it came from
            self.tracker.log_fold_inputs(result.fold, self.dataset.name, self.dataset.checksum, result.splits)
        if result.model is not None:
            start = time.perf_counter()
            self.tracker.log_fold_model(result.fold, result.model)
            info["model_logging_time"] = time.perf_counter() - start
        self.tracker.log_fold(
            result.fold,
            {**result.metrics, **info},
            str(result.formula),
            result.loss_curve,
            result.reused_from,
        )
        _log_fold(self.method, result, len(self.done), self.total)  # after the fold's run is FINISHED


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back while a finished fold is written (its run FINISHED, its row kept for
    ``results.csv``), then deliver them: folds trained together finish within milliseconds of each other, so an
    interrupt would otherwise often land between the two, and a rerun would reuse fewer folds than the job kept.
    Python-level handlers (a blocked signal mask would not do: any other thread may take the signal, and CPython
    still raises in the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: received.append(signum)) for s in _DEFERRED}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for number in received:
            signal.raise_signal(number)


_DEFERRED = (signal.SIGINT, signal.SIGTERM)


def _log_ensemble(tracker: Tracker, done: Sequence[FoldResult]) -> None:
    """The parent run's model: the folds' models voting; only when every fold has its model in hand (a fold
    reused from an earlier run has it on that run, where ``python -m lenbench.explain`` finds it)."""
    models = {r.fold: r.model for r in done if r.model is not None}
    if models and len(models) == len(done):
        tracker.log_job_model(models)
    elif models:
        log.info(
            "the job's ensemble model is not logged: %d fold(s) were reused from an earlier run; "
            "python -m lenbench.explain run=<this job's run> combines every fold's model",
            len(done) - len(models),
        )


def _fail(exc: BaseException, tracker: Tracker, writer: _ResultWriter, done: list[FoldResult]) -> None:
    """Close the runs (KILLED when the user stopped the job, FAILED otherwise) and keep the finished folds."""
    # Lightning turns a KeyboardInterrupt inside fit into SystemExit: both mean the user stopped the job.
    status = "KILLED" if isinstance(exc, (KeyboardInterrupt, SystemExit)) else "FAILED"
    error = str(exc) if isinstance(exc, FoldFailed) else f"{type(exc).__name__}: {exc}"
    if isinstance(exc, FoldFailed):
        tracker.fail_fold(exc.fold, error)
    try:  # a full disk (DiskFull) still closes the runs; the finished folds' runs keep their results
        if done and not isinstance(exc, DiskFull):
            writer.write(done, partial=True)
            if status == "FAILED":
                log.error(
                    "FAILED after %d fold(s); results of those folds are in %s", len(done), writer.out_dir
                )
    finally:
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
        folds_done = {"complete": not partial, "folds": [r.fold for r in done]}
        full_summary = {"method": self.method, "data": self.dataset.name, "label": self.dataset.label}
        full_summary |= {**folds_done, **self.summary_extra, **summary}
        explanations = {
            "target_formula": self.dataset.ground_truth,
            "folds": [{"fold": r.fold, "formula": str(r.formula), "info": _jsonable(r.info)} for r in done],
        }
        return write_results(self.out_dir, results, full_summary, explanations), results, summary


def _log_fold(method: str, result: FoldResult, position: int, total: int) -> None:
    note = f" reused from run {result.reused_from}" if result.reused_from else _training_note(result)
    model, explanation, fidelity, complexity = (result.metrics.get(name, float("nan")) for name in _SHOWN)
    head = f"{method} fold {result.fold} ({position}/{total}){note}"
    scores = f"model {model:.4f} | explanation {explanation:.4f} | fidelity {fidelity:.4f}"
    log.info("%s: %s | complexity %.0f | %s", head, scores, complexity, _short(str(result.formula)))


_SHOWN = ("model_accuracy", "explanation_accuracy", "explanation_fidelity", "explanation_complexity")


# Settings an explainer echoes in its info: already the job's params, so not measurements of the fold (the thread
# count and world size it reports are measured in the fold's own process, and stay).
_SETTINGS = frozenset({"seed", "epochs"})


def _numeric(info: dict[str, Any]) -> dict[str, float]:
    """The fold's numeric measurements (final loss, penalties, pruning counts...) to log as its run's metrics."""
    return {
        k: float(v)
        for k, v in info.items()
        if isinstance(v, (int, float, bool, np.number)) and k not in _SETTINGS
    }


def _jsonable(info: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in info.items() if not callable(v)}


def _training_note(result: FoldResult) -> str:
    """`` epoch 5000 loss 0.3123`` for networks (last recorded point of the loss curve), empty otherwise."""
    if not result.loss_curve:
        return ""
    epoch, loss = result.loss_curve[-1]
    trained_by = result.info.get("trained_by")  # seed batching: another job of the sweep trained it
    return f" epoch {epoch} loss {loss:.4f}" + (f" (trained by {trained_by})" if trained_by else "")


def _short(text: str, width: int = 80) -> str:
    """The formula, cut after ``width`` characters with a pointer to the whole one (in the job's folder)."""
    return text if len(text) <= width else text[:width] + " ... [whole: explanations.json]"
