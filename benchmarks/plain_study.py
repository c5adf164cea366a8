"""The plain-PyTorch baseline of the whole study, run the fair way (``make bench``, part 2).

Every network fold of the study (each method x each fold) is trained by the plain loop
(:func:`bench_lightning_overhead.plain_loop`: the same steps as lenbench, bit-for-bit the same weights), followed by
the prediction of its test rows, in as many forked processes as the machine has cores (``os.cpu_count()``), one
torch thread each. The folds are handed out longest first to whichever process is free (a ``multiprocessing``
pool's ``imap_unordered`` over the jobs sorted by expected cost), which is what a hand-written script making the
most of the machine would do.

``plain_parallel_s`` is the wall time of the whole (loading MIMIC-II, forking, every fold; the imports and the
composition of the method configs are not counted). ``plain_sum_s`` is the sum of the per-fold times measured inside
that run: the single-process sum as measured while the processes ran side by side (each process has a core of its
own, so it is about what one process would take for all folds in a row).
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_lightning_overhead import plain_loop

REPO = Path(__file__).resolve().parents[1]
# Expected single-thread seconds of one fold (5001 epochs on MIMIC-II) when part 1 did not measure them: they only
# order the jobs, longest first.
DEFAULT_COST = {"pruning": 10.0, "weights": 10.0, "psi": 4.5}

# What the forked workers inherit from the parent: the data set, the CV settings and the composed configs.
_STATE: dict[str, Any] = {}


def method_config(method: str, overrides: Sequence[str] = ()) -> Any:
    """The composed ``conf/train.yaml`` for ``method`` (the explainer exactly as ``python -m train`` builds it)."""
    from hydra import compose, initialize_config_dir

    import train  # noqa: F401 - registers the config schema train.yaml builds on

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="train", overrides=[f"method={method}", *overrides])


def longest_first(
    methods: Sequence[str], folds: Sequence[int], cost: Mapping[str, float]
) -> list[tuple[str, int]]:
    """Every (method, fold) job, the most expensive first; ties keep the methods' and folds' order."""
    jobs = [(m, f) for m in methods for f in folds]
    return sorted(jobs, key=lambda job: -cost.get(job[0], DEFAULT_COST.get(job[0], 0.0)))


def _start_worker() -> None:
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")


def _train(job: tuple[str, int]) -> tuple[str, int, float, int]:
    """One fold in a worker: (method, fold, seconds of training + test prediction, worker pid)."""
    from hydra.utils import instantiate

    method, fold_index = job
    fold = _STATE["cv"].fold(_STATE["dataset"], fold_index)
    explainer = instantiate(_STATE["configs"][method].method.explainer)
    start = time.perf_counter()
    _, net = plain_loop(explainer, fold.x_trainval, fold.y_trainval)
    with torch.no_grad():
        net(torch.from_numpy(np.asarray(fold.x_test, dtype=np.float32))).argmax(dim=1)
    return method, fold_index, time.perf_counter() - start, os.getpid()


def summarise(
    results: Sequence[tuple[str, int, float, int]], methods: Sequence[str], wall: float
) -> dict[str, Any]:
    """The figures of a plain-parallel run from its per-fold results (method, fold, seconds, pid)."""
    per_method = {m: sum(s for method, _, s, _ in results if method == m) for m in methods}
    busy: dict[int, float] = {}
    for _, _, seconds, pid in results:
        busy[pid] = busy.get(pid, 0.0) + seconds
    return {
        "plain_parallel_s": wall,
        "plain_sum_s": sum(per_method.values()),
        "per_method_plain_sum_s": per_method,
        "fold_s": {m: {f: s for method, f, s, _ in sorted(results) if method == m} for m in methods},
        "process_busy_s": sorted(busy.values(), reverse=True),
        "finish_order": [f"{m}:{f}" for m, f, _, _ in results],
    }


def run_plain_parallel(
    methods: Sequence[str],
    folds: Sequence[int],
    data_root: Path,
    cost: Mapping[str, float],
    processes: int | None = None,
) -> dict[str, Any]:
    """Train every (method, fold) of the study with the plain loop on ``processes`` forked workers (default: every
    core), longest first; the wall time, the per-fold times and their sums."""
    from lenbench.data.mimic import load_mimic
    from lenbench.folds import CVConfig

    processes = processes or os.cpu_count() or 1
    jobs = longest_first(methods, folds, cost)
    _STATE["configs"] = {m: method_config(m) for m in methods}
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    _STATE["dataset"], _STATE["cv"] = load_mimic(data_root, download=False), CVConfig()
    results = []
    with multiprocessing.get_context("fork").Pool(processes, initializer=_start_worker) as pool:
        for result in pool.imap_unordered(_train, jobs, chunksize=1):
            results.append(result)
        pool.close()
        pool.join()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the workers, reaped by join
    _STATE.clear()
    out = summarise(results, methods, wall)
    out.update(processes=processes, folds=list(folds), hand_out_order=[f"{m}:{f}" for m, f in jobs])
    # CPU seconds of the workers / wall (as for the study): about the core count when the machine was ours
    out["cores_used"] = (after.ru_utime - usage.ru_utime + after.ru_stime - usage.ru_stime) / wall
    out["plain_sum_note"] = (
        f"sum of the {len(jobs)} per-fold times (plain loop training + test prediction, one torch thread) "
        f"measured inside the plain-parallel run, i.e. the single-process sum as measured while {processes} "
        "processes ran side by side; the tree (no network, ~0.01 s a fold) is not counted"
    )
    return out
