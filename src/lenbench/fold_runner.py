"""Running the folds of a job: one after another, or in forked processes, with their lifecycle as events.

Folds whose explainers train together (network methods, ``trainer.batching`` exact or fast) run in *groups*: the
folds are dealt round-robin into one group per process (``cv.n_jobs``; one group when sequential), and each group's
networks train in one LightningModule (:meth:`~lenbench.explainers.base.Explainer.fit_many`); other methods run one
fold per task.

:func:`iter_folds` yields :class:`~lenbench.folds.FoldResult`\\ s and reports, through ``on_event``, when each fold
starts (:class:`FoldStarted`) and how its training goes (:class:`FoldTraining`, after every checked stretch of epochs). The
events always reach ``on_event`` in the job's own process, also from parallel workers (through a pipe the loop
drains while it waits), so the console and MLflow are written from one place.

Parallel folds (``cv.n_jobs`` > 1) run in *forked* worker processes: the data set and the explainer factory are
inherited, never pickled; each worker uses the job's torch thread count and each fold seeds its own model, so the
results equal the sequential run. Workers ignore Ctrl-C: when the job is interrupted (Ctrl-C, SIGTERM) or a fold
fails, the job's process kills the workers still training, within a second, and the interruption propagates; after
a complete run the idle workers exit, and any that does not within seconds is killed. On Linux the kernel also kills
each worker when the job's process ends in any other way (``kill -9``, a crash: no Python code of the job runs
then), so no worker outlives its job; elsewhere only the cases above are covered.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from lenbench.data.base import ConceptDataset
from lenbench.folds import FoldFailed, FoldPlan, FoldResult, run_folds
from lenbench.progress import ProgressSink, TrainingProgress
from lenbench.scoring import METRICS, MetricSet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FoldStarted:
    fold: int
    at: float  # time.time() when the fold started


@dataclass(frozen=True)
class FoldTraining:
    fold: int
    progress: TrainingProgress


FoldEvent = FoldStarted | FoldTraining
EventSink = Callable[[FoldEvent], None]
RunGroup = Callable[[list[int], list[ProgressSink]], list[FoldResult]]


def _ignore(event: FoldEvent) -> None:
    return None


def fold_groups(fold_indices: Sequence[int], n_jobs: int, together: bool) -> list[list[int]]:
    """The folds of each task: dealt round-robin into ``n_jobs`` groups when they train together, else one each."""
    if not together:
        return [[f] for f in fold_indices]
    n = max(1, min(n_jobs, len(fold_indices)))
    return [list(fold_indices[i::n]) for i in range(n)]


def iter_folds(
    dataset: ConceptDataset,
    plan: FoldPlan,
    target_class: int = 1,
    metrics: MetricSet = METRICS,
    on_event: EventSink = _ignore,
    export_models: bool = False,
) -> Iterator[FoldResult]:
    """Yield the results of the folds ``plan`` trains (those it does not keep), in fold order when sequential, as
    their tasks complete with ``cv.n_jobs`` > 1 processes; ``export_models``: each carries its fitted model
    (:class:`~lenbench.models.export.ModelExport`). The plan's companions (a sweep's other seeds) train with each
    group's folds, their results yielded too (``member`` > 0; no events). When training a group with them fails,
    the group trains again alone (the failure may be another seed's) and yields no companion result."""

    def run(group: list[int], sinks: list[ProgressSink]) -> list[FoldResult]:
        def train(members: list[Callable[[], Any]]) -> list[FoldResult]:
            return run_folds(dataset, group, plan.cv, members, target_class, metrics, sinks, export_models)

        if plan.companions:
            try:
                return train(plan.members)
            except Exception as exc:  # noqa: BLE001 - another seed's network may be the one that failed
                log.warning(
                    "folds %s: training with the sweep's other seeds failed (%s: %s); training them alone",
                    group,
                    type(exc).__name__,
                    exc,
                )
        return train(plan.members[:1])

    fold_indices = [f for f in plan.cv.fold_indices() if f not in plan.kept]
    if not fold_indices:
        return
    n_jobs = min(max(int(plan.cv.n_jobs), 1), len(fold_indices))
    groups = fold_groups(fold_indices, n_jobs, plan.together)
    if n_jobs <= 1:
        results = _iter_sequential(run, groups, on_event)
    else:
        results = _iter_parallel(run, groups, n_jobs, on_event)
    if n_jobs <= 1 and len(groups) < len(fold_indices):
        yield from sorted(results, key=lambda r: (r.member, r.fold))  # one group: all at once, in fold order
    else:
        yield from results


def _sinks(group: list[int], emit: Callable[[FoldEvent], None]) -> list[ProgressSink]:
    return [lambda p, f=fold: emit(FoldTraining(f, p)) for fold in group]


def _iter_sequential(run: RunGroup, groups: list[list[int]], on_event: EventSink) -> Iterator[FoldResult]:
    for group in groups:
        for fold_index in group:
            on_event(FoldStarted(fold_index, time.time()))
        try:
            results = run(group, _sinks(group, on_event))
        except Exception as exc:
            raise FoldFailed.of_group(group, exc) from exc
        yield from results


# Per-process state of a fold worker, set once by its initializer (each worker is its own process).
_worker_state: dict[str, Any] = {}


def _init_worker(
    run: Callable[[list[int]], list[FoldResult]], torch_threads: int | None, job_pid: int
) -> None:
    _die_with_job(job_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the job's process handles Ctrl-C and stops the workers
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the job's handler, inherited through fork
    if torch_threads is not None:  # None: the job never loaded torch (lenbench.job.uses_torch)
        import torch

        torch.set_num_threads(torch_threads)
    _worker_state["run"] = run


def _die_with_job(job_pid: int) -> None:
    """Linux: have the kernel SIGKILL this worker when the job's process ends, ``kill -9`` included (the job then
    runs no code that could stop it, and an orphaned worker would train on, then block forever on its result
    pipe). If the job ended between the fork and this call, the signal will never come: exit now."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (AttributeError, OSError):  # not Linux: the job's process stops its workers as it ends
        return
    prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != job_pid:
        os._exit(1)


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _run_in_worker(group: list[int]) -> list[FoldResult]:
    return _worker_state["run"](group)


def _iter_parallel(
    run: RunGroup, groups: list[list[int]], n_jobs: int, on_event: EventSink
) -> Iterator[FoldResult]:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    torch = sys.modules.get("torch")
    context = multiprocessing.get_context("fork")
    events = context.SimpleQueue()  # synchronous puts: a fold's events are in the pipe before its result

    def observed(group: list[int]) -> list[FoldResult]:
        for fold_index in group:
            events.put(FoldStarted(fold_index, time.time()))
        return run(group, _sinks(group, events.put))

    pool = ProcessPoolExecutor(
        n_jobs,
        mp_context=context,
        initializer=_init_worker,
        initargs=(observed, torch.get_num_threads() if torch else None, os.getpid()),
    )
    completed, workers = False, []
    try:
        futures = {pool.submit(_run_in_worker, g): g for g in groups}
        workers = list((getattr(pool, "_processes", None) or {}).values())  # shutdown forgets them
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            while not events.empty():
                on_event(events.get())
            for future in sorted(done, key=lambda f: futures[f][0]):
                try:
                    results = future.result()
                except Exception as exc:
                    raise FoldFailed.of_group(futures[future], exc) from exc
                yield from results
        completed = True
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        _stop_workers(workers, grace=5.0 if completed else 0.0)


def _stop_workers(workers: Sequence[Any], grace: float) -> None:
    """Give the workers ``grace`` seconds to exit (after a complete run they are idle and leave at once), then
    kill the rest: an interrupted or failed job keeps only finished folds. SIGKILL, not SIGTERM: a worker blocked
    in C code (a lock inherited through fork) never runs a Python-level SIGTERM handler, and Python waits for
    every pool worker when it exits."""
    deadline = time.monotonic() + grace
    for process in workers:
        process.join(timeout=max(0.0, deadline - time.monotonic()))
    for process in workers:
        if process.is_alive():
            process.kill()
    for process in workers:
        process.join(timeout=30)
