"""lenbench's speed benchmark (``make bench``): folds and the whole study against plain PyTorch, extraction, memory.

Six measurements, medians where repeated; a full run writes ``benchmarks/results/latest.json`` (the README's
performance tables come from it: ``make readme-tables``) and a dated copy ``<YYYY-MM-DD>-<cpu>-<batching>.json``,
both committed; a ``--quick`` run writes ``quick-latest.json`` instead (``bench_record.py``).

1. **Folds** (per network method): the MIMIC-II folds one study process trains (folds 0, 2, 4, 6, 8 on two cores)
   through the framework (``run_folds``: their networks trained together in one LightningModule through
   Lightning's standard hooks, then each fold predicted, explained and scored) against a plain PyTorch loop doing
   the same training steps with the same optimiser settings, L1 gradient and pruning functions, plus the
   prediction of the test rows, fold after fold (``fold_ratio`` = framework / plain, per fold, target <= 1.10).
   One torch thread. ``extraction_s`` is the framework's explanation time (the notebook's ``elapsed_time``); the
   trained weights of both must be bit-for-bit equal (``identical_weights``, with the configured exact batching).
2. **Plain study** (``plain_study.py``): the study's network folds (pruning, weights, psi x 10 folds) trained by
   that plain loop the fair way: as many forked processes as cores, one torch thread each, the folds handed out
   longest first to whichever process is free. ``plain_parallel_s`` is its wall time; ``plain_sum_s`` the sum of
   the per-fold times measured inside it (the single-process sum), ``per_method_plain_sum_s`` per method.
3. **Study**: the wall time of the real ``make paper`` command (``python -m train -m experiment=mimic_paper`` with
   the Makefile's arguments, a fresh temporary MLflow SQLite store, MIMIC-II from ``LENBENCH_DATA_DIR``):
   ``study_s``. ``study_over_plain_parallel`` = study_s / plain_parallel_s (target <= 0.95: the framework beats the
   best plain script on the same cores); ``study_ratio`` = study_s / plain_sum_s (target <= 0.50; stretch <= 0.40
   with ``--batching fast``). The tree (about 0.01 s a fold) has no plain loop and is left out of the plain sums.
   ``model_logging_share``: the seconds the jobs spent logging each fold's model to MLflow (``method.log_model``,
   the fold metric ``model_logging_time``) over the study's wall time, at most the slowdown models cause (target 5 %).
4. **psi's folds**: psi's 10 folds through lenbench's fold runner (one forked worker per core, each training its
   folds together; prediction, explanation and scores included): ``psi_folds_s`` in the configured mode,
   ``psi_folds_fast_s`` with ``trainer.batching=fast`` (and in how many folds fast gives the same formula), against
   ``psi_plain_sequential_s`` (psi's plain fold times of part 2, summed); ``psi_speedup`` = plain / the faster of
   the two, target >= 2.5. ``psi_job_s``: the whole ``python -m train -m experiment=mimic_paper method=psi`` job
   (start-up and tracking included).
5. **Equality**: the same study run sequentially (``cv.n_jobs=1``, the basic launcher, ``trainer.batching=off``
   where the checkout has that setting; its jobs split over two such commands side by side, which changes nothing
   a fold computes): every metric column of every ``results.csv`` (timings excepted) and every formula must be
   identical (not judged with ``--batching fast``, not bit-identical by design). The torch thread count of every
   fold is read back from the MLflow store (1 everywhere). Every study runs with ``PYTHONHASHSEED=0`` (an older
   checkout's ``explanation_consistency`` summed floats in the order of a set of names, which follows that seed).

6. **Seed sweep**: ``python -m train method=psi -m seed=0,1,2`` (the sweep's jobs differ only in the seed, so the
   first trains all three seeds' networks together: seed batching) against the same three jobs as three commands
   one after another: ``psi_seed_sweep_s``, ``psi_three_jobs_s``, ``seed_sweep_speedup`` = three jobs / sweep;
   unless ``--batching fast``, the same with both sides in fast mode (``psi_seed_sweep_fast_s``,
   ``psi_three_jobs_fast_s``, ``seed_sweep_speedup_fast``). The target (>= 2) is judged on the larger of the two,
   as ``psi_speedup`` is; every job's results must equal its command alone (``seed_sweep_equals_jobs``, exact mode).

``--batching exact|fast|off`` appends ``trainer.batching=<mode>`` to the lenbench commands of parts 3 and 4 and is
recorded as ``batching`` (``default``: not passed, each method's configured mode). ``--quick`` runs folds 0-1 in
parts 2-5 and judges none of the ratios (fixed costs dominate two folds). ``peak_rss_mb`` is the largest summed
resident memory of the study's process tree (sampled every 0.2 s from /proc). The machine is recorded (CPU, cores,
torch, BLAS settings, git commit, date) with the load average before and after; rerun when it was high.

    make bench                              # part 1 once per method, 3 studies, psi's folds, 3 psi jobs, the sequential one
    make bench ARGS=--quick                 # 1 repetition, folds 0-1 only (~3 min; writes quick-latest.json)
    make bench ARGS="--batching fast"       # every lenbench command with trainer.batching=fast
    .venv/bin/python benchmarks/bench.py --methods psi --repeats 5 --skip-study    # one method's fold only
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_record import machine, write_results  # noqa: E402
from plain_study import DEFAULT_COST, method_config, run_plain_parallel  # noqa: E402
from study_runs import PYTHON_HASH_SEED, compare_results, run_study  # noqa: E402

from lenbench.config import default_data_root
from lenbench.nn.allocator import keep_freed_buffers  # noqa: E402
from lenbench.report.readme_performance import seed_sweep_speedup_best  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
METHODS = ("pruning", "weights", "psi")
BATCHING = ("exact", "fast", "auto", "off")
# The Makefile's `paper` target, as arguments of `python -m train` (tests/test_speed_equivalence.py checks they agree).
PAPER_ARGS = ("-m", "experiment=mimic_paper")
PSI_ARGS = (*PAPER_ARGS, "method=psi")
SWEEP_SEEDS = (0, 1, 2)  # part 6: `python -m train method=psi -m seed=0,1,2`
SEQUENTIAL_ARGS = ("-m", "experiment=mimic_paper", "cv.n_jobs=1", "hydra/launcher=basic")
# The notebook's extraction time per fold (PROTOCOL.md, "Local explanations"; psi from the notebook's table).
NOTEBOOK_EXTRACTION_S = {"pruning": 0.066, "weights": 0.17, "psi": 0.032}
TARGETS = {
    "fold_ratio": {"pruning": 1.10, "weights": 1.10, "psi": 1.10},  # at most, issue 15 (standard hooks)
    "study_ratio": 0.50,  # at most
    "study_ratio_fast": 0.40,  # at most, the stretch target with --batching fast
    "study_over_plain_parallel": 0.95,  # at most
    "psi_speedup": 2.5,  # at least
    "seed_sweep_speedup": 2.0,  # at least: three single-seed psi jobs one after another / the 3-seed sweep
    "model_logging_share": 0.05,  # at most; issue 16: logging the folds' models slows the study by at most 5 %
}


def sequential_commands(
    methods: Sequence[str], cost: dict[str, float], extra: Sequence[str] = ()
) -> list[tuple[str, ...]]:
    """The sequential reference as two commands run side by side (halves its wall time; each job still runs its
    folds one after another in one process, as ``cv.n_jobs=1`` with the basic launcher does): the methods split
    into two groups of about equal cost, the longest first; ``extra`` is appended to both."""
    groups: list[list[str]] = [[], []]
    load = [0.0, 0.0]
    for m in sorted(methods, key=lambda m: -cost.get(m, 0.0)):
        i = load.index(min(load))
        groups[i].append(m)
        load[i] += cost.get(m, 0.0)
    return [(*SEQUENTIAL_ARGS, f"method={','.join(g)}", *extra) for g in groups if g]


def batching_supported() -> bool:
    """Whether this checkout's trainer config has the ``trainer.batching`` setting."""
    return "batching" in method_config("psi").trainer


# -- folds ----------------------------------------------------------------------------------------------------------


def bench_folds(
    methods: Sequence[str], repeats: int, group: Sequence[int], data_root: Path, batching: str | None = None
) -> dict[str, dict[str, Any]]:
    """Per method: the folds one study process trains (``group``) through lenbench (``run_folds``: the networks
    trained together in one module through Lightning's standard hooks, then each predicted, explained, scored)
    against the plain loop on the same folds one after another; per-fold medians of ``repeats`` runs."""
    from bench_lightning_overhead import plain_loop
    from hydra.utils import instantiate

    from lenbench.data.mimic import load_mimic
    from lenbench.folds import CVConfig, run_folds

    dataset = load_mimic(data_root, download=False)
    cv = CVConfig()
    folds = {f: _fold(dataset, f, cv) for f in group}
    out: dict[str, dict[str, Any]] = {}
    for method in methods:
        cfg = method_config(method, [f"trainer.batching={batching}"] if batching else [])
        framework, plain, extraction, identical = [], [], [], True
        for _ in range(repeats):
            made: list[Any] = []

            def make(cfg: Any = cfg, made: list[Any] = made) -> Any:
                made.append(instantiate(cfg.method.explainer))
                return made[-1]

            start = time.perf_counter()
            results = run_folds(dataset, list(group), cv, [make])
            framework.append((time.perf_counter() - start) / len(group))
            extraction.extend(r.metrics["elapsed_time"] for r in results)
            start = time.perf_counter()
            nets = [_plain_fold(plain_loop, instantiate(cfg.method.explainer), folds[f]) for f in group]
            plain.append((time.perf_counter() - start) / len(group))
            identical &= all(_same(e.network, n) for e, n in zip(made, nets, strict=True))
        out[method] = _fold_row(method, framework, plain, extraction, identical, len(group))
        if batching != "fast":
            out[method].update(_fast_folds(dataset, group, cv, method, results))
    return out


def _fast_folds(
    dataset: Any, group: Sequence[int], cv: Any, method: str, exact: Sequence[Any]
) -> dict[str, Any]:
    """The same folds with ``trainer.batching=fast`` (stacked arithmetic): per-fold time, ratio to the plain loop
    is computed by the caller's table, and in how many folds the formula is exact's."""
    from hydra.utils import instantiate

    from lenbench.folds import run_folds

    cfg = method_config(method, ["trainer.batching=fast"])
    start = time.perf_counter()
    results = run_folds(dataset, list(group), cv, [lambda: instantiate(cfg.method.explainer)])
    seconds = (time.perf_counter() - start) / len(group)
    same = sum(str(a.formula) == str(b.formula) for a, b in zip(exact, results, strict=True))
    print(f"  {method:<8} fast     {seconds:7.3f} s/fold  same formulas as exact in {same} of {len(group)}")
    return {"fast_s": seconds, "fast_same_formulas": f"{same} of {len(group)}"}


def _plain_fold(plain_loop: Any, explainer: Any, fold: Any) -> Any:
    """The plain loop's training of ``fold`` and its prediction of the test rows; returns the network."""
    _, net = plain_loop(explainer, fold.x_trainval, fold.y_trainval)
    with torch.no_grad():
        net(torch.from_numpy(np.asarray(fold.x_test, dtype=np.float32))).argmax(dim=1)
    return net


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sorted(sa) == sorted(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def _fold_row(
    method: str,
    framework: list[float],
    plain: list[float],
    extraction: list[float],
    identical: bool,
    size: int,
) -> dict[str, Any]:
    row = {
        "framework_s": statistics.median(framework),
        "plain_s": statistics.median(plain),
        "fold_ratio": statistics.median(framework) / statistics.median(plain),
        "extraction_s": statistics.median(extraction),
        "notebook_extraction_s": NOTEBOOK_EXTRACTION_S[method],
        "identical_weights": bool(identical),
        "networks_per_module": size,
        "framework_runs_s": framework,
        "plain_runs_s": plain,
    }
    print(
        f"  {method:<8} lenbench {row['framework_s']:7.3f} s/fold  plain {row['plain_s']:7.3f} s/fold  "
        f"ratio {row['fold_ratio']:.3f} (target <= {TARGETS['fold_ratio'][method]})  "
        f"extraction {row['extraction_s']:.4f} s (notebook {NOTEBOOK_EXTRACTION_S[method]})  "
        f"identical weights {identical}",
        flush=True,
    )
    return row


def _fold(dataset: Any, fold_index: int, cv: Any) -> Any:
    return cv.fold(dataset, fold_index)


# -- plain study, lenbench's jobs -----------------------------------------------------------------------------------


def bench_plain(
    methods: Sequence[str], study_folds: Sequence[int], data_root: Path, folds: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Part 2: the plain loop over every network fold of the study, on every core, longest first."""
    cost = {m: folds[m]["plain_s"] if m in folds else DEFAULT_COST[m] for m in methods}
    print(
        f"2. plain study: {len(methods) * len(study_folds)} folds of {', '.join(methods)} on {os.cpu_count()} "
        "processes, longest first",
        flush=True,
    )
    plain = run_plain_parallel(methods, study_folds, data_root, cost)
    print(
        f"   {plain['plain_parallel_s']:.1f} s wall, {plain['cores_used']:.2f} cores busy on average; the folds "
        f"sum to {plain['plain_sum_s']:.1f} s ("
        + ", ".join(f"{m} {s:.1f} s" for m, s in plain["per_method_plain_sum_s"].items())
        + ")",
        flush=True,
    )
    return plain


def bench_study(
    study_args: Sequence[str], extra: Sequence[str], repeats: int, tmp: Path, data_root: Path
) -> list[dict[str, Any]]:
    """Part 3: ``repeats`` runs of the study command."""
    runs = []
    for i in range(repeats):
        print(
            f"3. study run {i + 1}/{repeats}: python -m train {' '.join([*study_args, *extra])}", flush=True
        )
        load = os.getloadavg()[0]
        runs.append(run_study([study_args], extra, tmp / f"study{i}", data_root))
        runs[-1]["load_before"] = load
        print(
            f"   {runs[-1]['wall_s']:.1f} s, {runs[-1]['cores_used']:.2f} cores busy on average, "
            f"peak memory {runs[-1]['peak_rss_mb']:.0f} MB, logging the folds' models "
            f"{runs[-1]['model_logging_s']:.2f} s",
            flush=True,
        )
    return runs


def study_details(runs: Sequence[dict[str, Any]], n_folds: int) -> dict[str, Any]:
    walls = [r["wall_s"] for r in runs]
    differences = [d for r in runs[1:] for d in compare_results(runs[0]["results"], r["results"])]
    return {
        "command": runs[0]["command"],
        "runs_s": walls,
        "cores_used": [r["cores_used"] for r in runs],
        "load_before": [round(r["load_before"], 2) for r in runs],
        "folds_per_method": n_folds,
        "batching_per_method": runs[0]["batching"],
        "torch_threads_per_fold": runs[0]["threads"],
        "python_hash_seed": int(PYTHON_HASH_SEED),
        "runs_identical": not differences,
        "runs_differences": differences[:20],
        "framework_training_sum_s": float(runs[0]["results"]["training_time"].sum(skipna=True)),
        "model_logging_s": [round(r["model_logging_s"], 3) for r in runs],
    }


def bench_psi_folds(folds: Sequence[int], data_root: Path, batching: str | None) -> dict[str, Any]:
    """Part 4: psi's folds through lenbench's fold runner in this process (one forked worker per core, the folds of
    each trained together; prediction, explanation, scores), in the configured mode and in ``fast``."""
    from hydra.utils import instantiate

    from lenbench.data.mimic import load_mimic
    from lenbench.fold_runner import iter_folds
    from lenbench.folds import CVConfig, FoldPlan

    dataset = load_mimic(data_root, download=False)
    cv = CVConfig(folds=list(folds), n_jobs=os.cpu_count() or 1)
    out: dict[str, Any] = {}
    for mode in dict.fromkeys([batching or "exact", "fast"]):
        cfg = method_config("psi", [f"trainer.batching={mode}"])
        start = time.perf_counter()
        results = list(
            iter_folds(dataset, FoldPlan.alone(lambda cfg=cfg: instantiate(cfg.method.explainer), cv))
        )
        out[mode] = {
            "seconds": time.perf_counter() - start,
            "formulas": {r.fold: str(r.formula) for r in results},
        }
        print(f"4. psi's {len(folds)} folds, batching={mode}: {out[mode]['seconds']:.1f} s", flush=True)
    first = out[batching or "exact"]["formulas"]
    out["fast_same_formulas"] = sum(first[f] == out["fast"]["formulas"][f] for f in first)
    return out


def bench_psi(extra: Sequence[str], repeats: int, tmp: Path, data_root: Path) -> dict[str, Any]:
    """Part 4b: ``repeats`` runs of psi's folds as one whole lenbench job (start-up and tracking included)."""
    walls = []
    for i in range(repeats):
        print(f"4. psi job {i + 1}/{repeats}: python -m train {' '.join([*PSI_ARGS, *extra])}", flush=True)
        run = run_study([PSI_ARGS], extra, tmp / f"psi{i}", data_root)
        walls.append(run["wall_s"])
        print(f"   {run['wall_s']:.1f} s, {run['cores_used']:.2f} cores busy on average", flush=True)
    return {"command": run["command"], "runs_s": walls, "psi_job_s": statistics.median(walls)}


def bench_seed_sweep(extra: Sequence[str], tmp: Path, data_root: Path) -> dict[str, Any]:
    """Part 6: the 3-seed psi sweep as one command (its jobs' networks trained together: seed batching) against
    the same three jobs as three commands run one after another; the jobs' results must be identical."""
    seeds = ",".join(map(str, SWEEP_SEEDS))
    print(f"6. psi seed sweep: python -m train method=psi -m seed={seeds} {' '.join(extra)}", flush=True)
    sweep = run_study([("-m", "method=psi", f"seed={seeds}")], extra, tmp / "seed_sweep", data_root)
    alone_s, problems = 0.0, []
    for seed in SWEEP_SEEDS:
        alone = run_study([("-m", "method=psi", f"seed={seed}")], extra, tmp / f"seed{seed}", data_root)
        alone_s += alone["wall_s"]
        batched = _job_results(tmp / "seed_sweep", seed)
        problems += [
            f"seed {seed}: {p}" for p in compare_results(batched, _job_results(tmp / f"seed{seed}", seed))
        ]
    print(f"   sweep {sweep['wall_s']:.1f} s, three jobs {alone_s:.1f} s", flush=True)
    return {
        "command": sweep["command"],
        "seed_sweep_s": sweep["wall_s"],
        "three_jobs_s": alone_s,
        "identical_results": not problems,
        "differences": problems[:20],
    }


def _job_results(workdir: Path, seed: int) -> Any:
    """The results table of the job of ``seed`` in a :func:`run_study` folder."""
    import pandas as pd

    (path,) = (workdir / "command0" / "sweep").glob(f"*-s{seed}/results.csv")
    return pd.read_csv(path)


def bench_sequential(
    commands: Sequence[Sequence[str]], extra: Sequence[str], tmp: Path, data_root: Path, study: Any
) -> dict[str, Any]:
    """Part 5: the sequential reference, compared with the (first) study's results."""
    seq = run_study(commands, extra, tmp / "sequential", data_root)
    print(f"5. sequential study: {seq['command']}")
    problems = compare_results(study, seq["results"])
    print(
        f"   {seq['wall_s']:.1f} s; metrics identical to the parallel study: {not problems}"
        + "".join(f"\n   {p}" for p in problems[:5]),
        flush=True,
    )
    return {
        "command": seq["command"],
        "wall_s": seq["wall_s"],
        "cores_used": seq["cores_used"],
        "identical_metrics": not problems,
        "differences": problems[:20],
        "torch_threads_per_fold": seq["threads"],
    }


# -- report ---------------------------------------------------------------------------------------------------------


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _fastest(report: dict[str, Any], *keys: str) -> float | None:
    values = [report[k] for k in keys if report.get(k) is not None]
    return min(values) if values else None


def ratios(report: dict[str, Any]) -> dict[str, float | None]:
    """The study's ratios from its measured seconds (None where a part did not run)."""
    return {
        "study_ratio": _ratio(report.get("study_s"), report.get("plain_sum_s")),
        "study_over_plain_parallel": _ratio(report.get("study_s"), report.get("plain_parallel_s")),
        "psi_speedup": _ratio(
            report.get("psi_plain_sequential_s"), _fastest(report, "psi_folds_s", "psi_folds_fast_s")
        ),
        "seed_sweep_speedup": _ratio(report.get("psi_three_jobs_s"), report.get("psi_seed_sweep_s")),
        "seed_sweep_speedup_fast": _ratio(
            report.get("psi_three_jobs_fast_s"), report.get("psi_seed_sweep_fast_s")
        ),
    }


def checks(report: dict[str, Any], methods: Sequence[str]) -> dict[str, bool | None]:
    """The issue's acceptance figures, each True/False (None when not measured or not judged)."""
    out: dict[str, bool | None] = {}
    for m in methods:
        row = report["methods"][m]
        out[f"fold_ratio_{m}"] = row["fold_ratio"] <= TARGETS["fold_ratio"][m]
        out[f"extraction_{m}"] = row["extraction_s"] <= NOTEBOOK_EXTRACTION_S[m]
        out[f"identical_weights_{m}"] = report["details"]["folds"][m]["identical_weights"]
    study = report["details"].get("study")
    # --quick studies two folds per job: fixed costs (interpreter start, MLflow store) dominate, no verdict
    quick = report.get("quick") or (study or {}).get("folds_per_method", 10) < 10

    def judge(value: float | None, target: float, at_most: bool = True) -> bool | None:
        if value is None or quick:
            return None
        return value <= target if at_most else value >= target

    out["study_ratio"] = judge(report.get("study_ratio"), TARGETS["study_ratio"])
    out["study_ratio_fast_stretch"] = (
        judge(report.get("study_ratio"), TARGETS["study_ratio_fast"])
        if report.get("batching") == "fast"
        else None
    )
    out["study_over_plain_parallel"] = judge(
        report.get("study_over_plain_parallel"), TARGETS["study_over_plain_parallel"]
    )
    # fast (and auto, which stacks where it can) are not bit-identical to training alone, by design
    exact = report.get("batching") not in ("fast", "auto")
    out["psi_speedup"] = judge(report.get("psi_speedup"), TARGETS["psi_speedup"], at_most=False)
    out["seed_sweep_speedup"] = judge(
        seed_sweep_speedup_best(report), TARGETS["seed_sweep_speedup"], at_most=False
    )
    sweep = report["details"].get("seed_sweep")
    out["seed_sweep_equals_jobs"] = None if sweep is None or not exact else sweep["identical_results"]
    share = report.get("model_logging_share")
    out["model_logging_under_5_percent"] = None if share is None else share <= TARGETS["model_logging_share"]
    seq = report["details"].get("sequential")
    out["study_equals_sequential"] = None if seq is None or not exact else seq["identical_metrics"]
    out["one_thread_per_fold"] = (
        None
        if study is None
        else all(v == [1] for v in study["torch_threads_per_fold"].values())
        and all(v == [1] for v in (seq or {}).get("torch_threads_per_fold", {"-": [1]}).values())
    )
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1 repetition; folds 0-1 only from part 2 on")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--repeats", type=int, default=None, help="part 1 repetitions per method (1)")
    parser.add_argument("--study-repeats", type=int, default=None, help="study and psi job runs (3; quick 1)")
    parser.add_argument(
        "--fold",
        type=int,
        default=0,
        help="part 1 times the folds fold, fold + cores, ... (one process's share)",
    )
    parser.add_argument("--skip-study", action="store_true", help="part 1 only (one fold per method)")
    parser.add_argument("--skip-psi", action="store_true", help="no psi job (part 4)")
    parser.add_argument("--skip-sequential", action="store_true", help="no sequential equality run (part 5)")
    parser.add_argument(
        "--batching",
        choices=BATCHING,
        default=None,
        help="trainer.batching of lenbench's commands (default: unset)",
    )
    parser.add_argument(
        "--study-args", default=None, help="replace the paper command's arguments (quoted, space-separated)"
    )
    parser.add_argument(
        "--data-root", type=Path, default=None, help="folder holding mimic-ii/ (default: env)"
    )
    parser.add_argument(
        "--output-dir", type=Path, default=REPO / "benchmarks" / "results", help="where the JSON files go"
    )
    args = parser.parse_args(argv)
    args.repeats = args.repeats or 1
    args.study_repeats = args.study_repeats or (1 if args.quick else 3)
    if args.repeats < 1 or args.study_repeats < 1:
        parser.error("--repeats and --study-repeats must be >= 1")
    args.data_root = (args.data_root or Path(default_data_root())).resolve()
    if not (args.data_root / "mimic-ii" / "full_cohort_data.csv").is_file():
        parser.error(f"MIMIC-II not found under {args.data_root} (set LENBENCH_DATA_DIR)")
    if args.batching and not args.skip_study and not batching_supported():
        parser.error(
            "--batching: this checkout's trainer config has no `batching` setting (conf/trainer/cpu.yaml)"
        )
    return args


def run_jobs(args: argparse.Namespace, report: dict[str, Any], cost: dict[str, float]) -> None:
    """Parts 3-5 (lenbench's commands), into ``report``."""
    details = report["details"]
    study_folds = details["plain"]["folds"]
    extra = [f"cv.folds=[{','.join(map(str, study_folds))}]"] if args.quick else []
    batching = [f"trainer.batching={args.batching}"] if args.batching else []
    study_args = tuple(args.study_args.split()) if args.study_args else PAPER_ARGS
    if set(args.methods) != set(METHODS):
        study_args += (f"method={','.join(args.methods)}",)
    with tempfile.TemporaryDirectory(prefix="lenbench-bench-") as tmp:
        runs = bench_study(study_args, [*extra, *batching], args.study_repeats, Path(tmp), args.data_root)
        walls = [r["wall_s"] for r in runs]
        report.update(
            study_s=statistics.median(walls),
            peak_rss_mb=max(r["peak_rss_mb"] for r in runs),
            # Time spent logging models (method.log_model) over the study's wall time: at most the slowdown,
            # since the job's process logs while its other folds train in their workers.
            model_logging_share=statistics.median(r["model_logging_s"] / r["wall_s"] for r in runs),
        )
        details["study"] = study_details(runs, len(study_folds))
        if "psi" in args.methods and not args.skip_psi:
            psi = bench_psi_folds(study_folds, args.data_root, args.batching)
            details["psi_folds"] = psi
            report["psi_folds_s"] = psi[args.batching or "exact"]["seconds"]
            report["psi_folds_fast_s"] = psi["fast"]["seconds"]
            report["psi_fast_same_formulas"] = f"{psi['fast_same_formulas']} of {len(study_folds)}"
            details["psi_job"] = bench_psi([*extra, *batching], args.study_repeats, Path(tmp), args.data_root)
            report["psi_job_s"] = details["psi_job"]["psi_job_s"]
            details["seed_sweep"] = bench_seed_sweep([*extra, *batching], Path(tmp), args.data_root)
            report["psi_seed_sweep_s"] = details["seed_sweep"]["seed_sweep_s"]
            report["psi_three_jobs_s"] = details["seed_sweep"]["three_jobs_s"]
            if args.batching != "fast":  # the same comparison with both sides in fast mode
                fast = ["trainer.batching=fast"]
                details["seed_sweep_fast"] = bench_seed_sweep(
                    [*extra, *fast], Path(tmp) / "fast", args.data_root
                )
                report["psi_seed_sweep_fast_s"] = details["seed_sweep_fast"]["seed_sweep_s"]
                report["psi_three_jobs_fast_s"] = details["seed_sweep_fast"]["three_jobs_s"]
        if not args.skip_sequential:
            off = ["trainer.batching=off"] if batching_supported() else []
            commands = sequential_commands([*args.methods, "tree"], cost, off)
            details["sequential"] = bench_sequential(
                commands, extra, Path(tmp), args.data_root, runs[0]["results"]
            )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    keep_freed_buffers()  # as every lenbench job does: the plain loop (here and in its forked workers) runs with it too
    load_before, began, where = os.getloadavg(), time.perf_counter(), machine()
    print(
        f"lenbench benchmark on {where['cpu']} ({where['cores']} cores), load average "
        f"{load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}",
        flush=True,
    )
    group = list(range(args.fold, 10, os.cpu_count() or 1))  # the folds one study process trains
    print(f"1. the folds one process trains ({group}), median of {args.repeats}, 1 torch thread", flush=True)
    folds = bench_folds(args.methods, args.repeats, group, args.data_root, args.batching)
    keys = ("framework_s", "plain_s", "fold_ratio", "extraction_s")
    report: dict[str, Any] = {
        "methods": {m: {k: folds[m][k] for k in keys} for m in folds},
        "batching": args.batching or "default",
        "quick": bool(args.quick),
        **dict.fromkeys(("study_s", "plain_parallel_s", "plain_sum_s", "per_method_plain_sum_s")),
        **dict.fromkeys(("psi_folds_s", "psi_folds_fast_s", "psi_fast_same_formulas", "psi_job_s")),
        **dict.fromkeys(("psi_plain_sequential_s", "model_logging_share", "peak_rss_mb")),
        **dict.fromkeys(("psi_seed_sweep_s", "psi_three_jobs_s")),
        "targets": TARGETS,
        "machine": where,
        "details": {"folds": folds},
    }
    if not args.skip_study:
        plain = bench_plain(args.methods, [0, 1] if args.quick else list(range(10)), args.data_root, folds)
        report["details"]["plain"] = plain
        report.update({k: plain[k] for k in ("plain_parallel_s", "plain_sum_s", "per_method_plain_sum_s")})
        report["psi_plain_sequential_s"] = plain["per_method_plain_sum_s"].get("psi")
        run_jobs(args, report, {m: folds[m]["plain_s"] for m in args.methods})
    report.update(ratios(report))
    report["machine"].update(
        load_before=[round(v, 2) for v in load_before], load_after=[round(v, 2) for v in os.getloadavg()]
    )
    report["checks"] = checks(report, args.methods)
    report["benchmark_s"] = time.perf_counter() - began
    paths = write_results(report, args.output_dir)
    print(json.dumps({k: v for k, v in report.items() if k != "details"}, indent=2))
    print("written to " + " and ".join(str(p) for p in paths))
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
