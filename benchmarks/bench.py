"""lenbench's speed benchmark (``make bench``): folds against a plain PyTorch loop, the whole study, extraction, memory.

Three measurements, each repeated and reported as medians; the figures land in ``benchmarks/results/latest.json``:

1. **Folds** (per network method): one full fold of MIMIC-II (fold 0) through the framework (``run_fold``: Lightning
   training with the method's callbacks, prediction, explanation, metrics) against a plain PyTorch loop doing the
   same training steps with the same optimiser settings, L1 gradient and pruning functions, plus the prediction of
   the test rows (``fold_ratio`` = framework / plain). Repetitions alternate the two in one process, one torch
   thread. ``extraction_s`` is the framework's explanation time (the notebook's ``elapsed_time``); the trained
   weights of both must be bit-for-bit equal (``identical_weights``).
2. **Study**: the wall time of the real ``make paper`` command (``python -m train -m experiment=mimic_paper`` with the
   Makefile's arguments, a fresh temporary MLflow SQLite store, MIMIC-II from ``LENBENCH_DATA_DIR``), against
   ``plain_sum_s``: the sum over the study's network folds of the plain single-process loop's time, i.e. the fold
   medians of (1) times the number of folds (the tree, about 0.01 s a fold, has no plain loop and is left out).
   ``study_ratio`` = study / plain sum; below 0.5 is impossible on two cores.
   ``model_logging_share``: the seconds the jobs spent logging each fold's model to MLflow (``method.log_model``,
   the fold metric ``model_logging_time``) over the study's wall time, at most the slowdown models cause (target 5 %).
3. **Equality**: the same study run sequentially (``cv.n_jobs=1``, Hydra's basic launcher: every job trains its
   folds one after another in one process; the jobs are split over two such commands run side by side, which
   halves the reference's wall time and changes nothing a fold computes); every metric column of every ``results.csv`` (timings excepted) and every formula must be identical. The torch thread
   count each fold trained with is read back from the MLflow store (it changes results, so it must be 1 everywhere).
   Every study runs with ``PYTHONHASHSEED=0``: ``explanation_consistency`` averages over a set of concept names and
   its last bit follows the string hash seed of the interpreter (a property of the metric, not of parallelism).

``peak_rss_mb`` is the largest summed resident memory of the study's process tree (sampled every 0.2 s from /proc).
The machine is shared: the load average before and after is recorded; rerun when it was high.

    make bench                       # 3 fold repetitions per method, 3 studies, the sequential one (~12 min)
    make bench ARGS=--quick          # 1 repetition, studies of folds 0-1 only (~2-3 min)
    make bench ARGS="--study-repeats 2"   # ~10 min
    .venv/bin/python benchmarks/bench.py --methods psi --repeats 5 --skip-study
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_lightning_overhead import plain_loop  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
METHODS = ("pruning", "weights", "psi")
# The Makefile's `paper` target, as arguments of `python -m train` (tests/test_speed_equivalence.py checks they agree).
PAPER_ARGS = ("-m", "experiment=mimic_paper")
SEQUENTIAL_ARGS = ("-m", "experiment=mimic_paper", "cv.n_jobs=1", "hydra/launcher=basic")


def sequential_commands(methods: Sequence[str], cost: dict[str, float]) -> list[tuple[str, ...]]:
    """The sequential reference as two commands run side by side (halves its wall time; each job still runs its
    folds one after another in one process, as ``cv.n_jobs=1`` with the basic launcher does): the methods split
    into two groups of about equal cost, the longest first."""
    groups: list[list[str]] = [[], []]
    load = [0.0, 0.0]
    for m in sorted(methods, key=lambda m: -cost.get(m, 0.0)):
        i = load.index(min(load))
        groups[i].append(m)
        load[i] += cost.get(m, 0.0)
    return [(*SEQUENTIAL_ARGS, f"method={','.join(g)}") for g in groups if g]


TIMING_COLUMNS = ("elapsed_time", "training_time")
PYTHON_HASH_SEED = "0"
# The notebook's extraction time per fold (PROTOCOL.md, "Local explanations"; psi from the notebook's table).
NOTEBOOK_EXTRACTION_S = {"pruning": 0.066, "weights": 0.17, "psi": 0.032}
TARGETS = {
    "fold_ratio": {"pruning": 1.2, "weights": 1.2, "psi": 1.4},
    "study_ratio": 0.65,
    "model_logging_share": 0.05,  # issue 16: logging the folds' models slows the study by at most 5 %
}


# -- folds ----------------------------------------------------------------------------------------------------------


def method_config(method: str, overrides: Sequence[str] = ()) -> Any:
    """The composed ``conf/train.yaml`` for ``method`` (the explainer exactly as ``python -m train`` builds it)."""
    from hydra import compose, initialize_config_dir

    import train  # noqa: F401 - registers the config schema train.yaml builds on

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="train", overrides=[f"method={method}", *overrides])


def bench_folds(
    methods: Sequence[str], repeats: int, fold_index: int, data_root: Path
) -> dict[str, dict[str, Any]]:
    """Per method: medians of the framework's full fold, the plain loop, and the extraction time."""
    from hydra.utils import instantiate

    from lenbench.data.mimic import load_mimic
    from lenbench.folds import CVConfig, run_fold

    dataset = load_mimic(data_root, download=False)
    cv = CVConfig()
    out: dict[str, dict[str, Any]] = {}
    for method in methods:
        cfg = method_config(method)
        framework, plain, training, extraction = [], [], [], []
        identical = True
        for _ in range(repeats):
            made: list[Any] = []

            def make(cfg: Any = cfg, made: list[Any] = made) -> Any:
                made.append(instantiate(cfg.method.explainer))
                return made[-1]

            start = time.perf_counter()
            result = run_fold(dataset, fold_index, cv, make)
            framework.append(time.perf_counter() - start)
            extraction.append(result.metrics["elapsed_time"])
            training.append(result.metrics["training_time"])

            fold = _fold(dataset, fold_index, cv)
            start = time.perf_counter()
            seconds, net = plain_loop(instantiate(cfg.method.explainer), fold.x_trainval, fold.y_trainval)
            with torch.no_grad():
                net(torch.from_numpy(np.asarray(fold.x_test, dtype=np.float32))).argmax(dim=1)
            plain.append(time.perf_counter() - start)
            a, b = made[-1].network.state_dict(), net.state_dict()
            identical &= sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)
        row = {
            "framework_s": statistics.median(framework),
            "plain_s": statistics.median(plain),
            "fold_ratio": statistics.median(framework) / statistics.median(plain),
            "extraction_s": statistics.median(extraction),
            "framework_training_s": statistics.median(training),
            "notebook_extraction_s": NOTEBOOK_EXTRACTION_S[method],
            "identical_weights": bool(identical),
            "framework_runs_s": framework,
            "plain_runs_s": plain,
            "extraction_runs_s": extraction,
        }
        out[method] = row
        print(
            f"  {method:<8} framework {row['framework_s']:7.3f} s  plain {row['plain_s']:7.3f} s  "
            f"ratio {row['fold_ratio']:.3f} (target <= {TARGETS['fold_ratio'][method]})  "
            f"extraction {row['extraction_s']:.4f} s (notebook {NOTEBOOK_EXTRACTION_S[method]})  "
            f"identical weights {identical}",
            flush=True,
        )
    return out


def _fold(dataset: Any, fold_index: int, cv: Any) -> Any:
    module = cv.datamodule(dataset, fold_index)
    module.setup()
    return module.fold


# -- study ----------------------------------------------------------------------------------------------------------


class TreeMemory:
    """Samples the summed resident memory (MB) of processes and their descendants from /proc, every ``period`` s."""

    def __init__(self, pids: Sequence[int], period: float = 0.2) -> None:
        self.pids, self.period, self.peak_mb = list(pids), period, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, tree_rss_mb(self.pids))
            self._stop.wait(self.period)


def tree_rss_mb(roots: Sequence[int]) -> float:
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        pid, ppid = int(entry), int(fields.get("PPid", "0").strip() or 0)
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0])
    total, todo = 0, list(roots)
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total / 1024


def run_study(
    commands: Sequence[Sequence[str]], extra: Sequence[str], workdir: Path, data_root: Path
) -> dict[str, Any]:
    """Run ``python -m train <command> <extra>`` for each command side by side, each with a fresh MLflow store;
    wall time (until the last ends), cores used, peak memory and the concatenated result tables."""
    env = {
        **os.environ,
        "LENBENCH_DATA_DIR": str(data_root),
        # explanation_consistency averages over a set of concept names, whose order follows Python's string hash:
        # its last bit changes with the hash seed (not with parallelism). One seed for every run of the benchmark.
        "PYTHONHASHSEED": PYTHON_HASH_SEED,
    }
    dirs = [workdir / f"command{i}" for i in range(len(commands))]
    cmds = [
        [sys.executable, "-m", "train", *args, f"hydra.sweep.dir={d / 'sweep'}", *extra]
        for args, d in zip(commands, dirs, strict=True)
    ]
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    procs = []
    for cmd, d in zip(cmds, dirs, strict=True):
        d.mkdir(parents=True)
        with open(d / "stderr.log", "w") as err:
            store = {"MLFLOW_TRACKING_URI": f"sqlite:///{d / 'mlflow.db'}"}
            procs.append(
                subprocess.Popen(cmd, cwd=REPO, env={**env, **store}, stdout=subprocess.DEVNULL, stderr=err)
            )
    with TreeMemory([p.pid for p in procs]) as memory:
        codes = [p.wait() for p in procs]
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    for cmd, d, code in zip(cmds, dirs, codes, strict=True):
        if code != 0:
            tail = (d / "stderr.log").read_text()[-3000:]
            raise RuntimeError(f"{' '.join(cmd)} failed with status {code}:\n{tail}")
    tables = [pd.read_csv(p) for d in dirs for p in sorted((d / "sweep").glob("*/results.csv"))]
    results = pd.concat(tables, ignore_index=True).sort_values(["method", "split"]).reset_index(drop=True)
    threads: dict[str, list[int]] = {}
    for d in dirs:
        threads.update(fold_threads(d / "mlflow.db"))
    return {
        "model_logging_s": sum(model_logging_seconds(d / "mlflow.db") for d in dirs),
        "wall_s": wall,
        # CPU seconds of the whole process tree / wall: about 2 when both cores were ours, 1 when shared
        "cores_used": cpu / wall,
        "peak_rss_mb": memory.peak_mb,
        "results": results,
        "threads": threads,
        "command": " & ".join(" ".join(["python", "-m", "train", *args, *extra]) for args in commands),
    }


def fold_threads(db: Path) -> dict[str, list[int]]:
    """Distinct torch thread counts the folds trained with, per method (from the MLflow child runs)."""
    with sqlite3.connect(db) as con:
        rows = con.execute(
            "SELECT t.value, m.value FROM latest_metrics m JOIN tags t ON t.run_uuid = m.run_uuid "
            "WHERE m.key = 'torch_threads' AND t.key = 'method'"
        ).fetchall()
    threads: dict[str, set[int]] = {}
    for method, value in rows:
        threads.setdefault(method, set()).add(int(value))
    return {m: sorted(v) for m, v in threads.items()}


def model_logging_seconds(db: Path) -> float:
    """Seconds the job processes spent logging the folds' models (``log_model``), summed over the fold runs: the
    fold metric ``model_logging_time`` each job measures around the call."""
    with sqlite3.connect(db) as con:
        (total,) = con.execute(
            "SELECT SUM(value) FROM latest_metrics WHERE key = 'model_logging_time'"
        ).fetchone()
    return float(total or 0.0)


def compare_results(a: pd.DataFrame, b: pd.DataFrame) -> list[str]:
    """Differences between two studies' results (timing columns excepted); empty when identical."""
    if list(a[["method", "split"]].itertuples(index=False)) != list(
        b[["method", "split"]].itertuples(index=False)
    ):
        return ["the two studies ran different folds"]
    problems = []
    for column in a.columns:
        if column in TIMING_COLUMNS:
            continue
        x, y = a[column], b[column]
        same = (x == y) | (x.isna() & y.isna())
        for i in np.flatnonzero(~same.to_numpy()):
            problems.append(f"{a['method'][i]} fold {a['split'][i]} {column}: {x[i]!r} != {y[i]!r}")
    return problems


# -- report ---------------------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        cpu = platform.processor()
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1 repetition; studies of folds 0 and 1 only")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--repeats", type=int, default=None, help="fold repetitions per method (3; quick 1)")
    parser.add_argument("--study-repeats", type=int, default=None, help="study runs (3; quick 1)")
    parser.add_argument("--fold", type=int, default=0, help="the fold timed in part 1")
    parser.add_argument("--skip-study", action="store_true", help="folds only")
    parser.add_argument("--skip-sequential", action="store_true", help="no sequential equality run")
    parser.add_argument(
        "--study-args", default=None, help="replace the paper command's arguments (quoted, space-separated)"
    )
    parser.add_argument(
        "--data-root", type=Path, default=None, help="folder holding mimic-ii/ (default: env)"
    )
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "latest.json")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    study_repeats = args.study_repeats or (1 if args.quick else 3)
    if repeats < 1 or study_repeats < 1:
        parser.error("--repeats and --study-repeats must be >= 1")

    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    data_root = (
        args.data_root or Path(os.environ.get("LENBENCH_DATA_DIR", REPO.parent / "shared" / "data"))
    ).resolve()
    if not (data_root / "mimic-ii" / "full_cohort_data.csv").is_file():
        parser.error(f"MIMIC-II not found under {data_root} (set LENBENCH_DATA_DIR)")
    load_before = os.getloadavg()
    began = time.perf_counter()
    print(
        f"lenbench benchmark on {machine()['cpu']} ({machine()['cores']} cores), load average "
        f"{load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}",
        flush=True,
    )

    print(f"1. one fold (MIMIC-II fold {args.fold}), median of {repeats}, 1 torch thread", flush=True)
    folds = bench_folds(args.methods, repeats, args.fold, data_root)

    report: dict[str, Any] = {
        "methods": {
            m: {k: folds[m][k] for k in ("framework_s", "plain_s", "fold_ratio", "extraction_s")}
            for m in folds
        },
        "study_s": None,
        "plain_sum_s": None,
        "study_ratio": None,
        "model_logging_share": None,
        "peak_rss_mb": None,
        "machine": machine(),
    }
    study_folds = [0, 1] if args.quick else list(range(10))
    extra = [f"cv.folds=[{','.join(map(str, study_folds))}]"] if args.quick else []
    study_args = tuple(args.study_args.split()) if args.study_args else PAPER_ARGS
    if set(args.methods) != set(METHODS):
        study_args += (f"method={','.join(args.methods)}",)
    sequential = sequential_commands([*args.methods, "tree"], {m: folds[m]["plain_s"] for m in args.methods})
    details: dict[str, Any] = {"folds": folds}
    if not args.skip_study:
        with tempfile.TemporaryDirectory(prefix="lenbench-bench-") as tmp:
            runs = []
            for i in range(study_repeats):
                print(
                    f"2. study run {i + 1}/{study_repeats}: python -m train {' '.join(study_args + tuple(extra))}"
                )
                load = os.getloadavg()[0]
                runs.append(run_study([study_args], extra, Path(tmp) / f"study{i}", data_root))
                runs[-1]["load_before"] = load
                print(
                    f"   {runs[-1]['wall_s']:.1f} s, {runs[-1]['cores_used']:.2f} cores busy on average, "
                    f"peak memory {runs[-1]['peak_rss_mb']:.0f} MB, logging the folds' models "
                    f"{runs[-1]['model_logging_s']:.2f} s",
                    flush=True,
                )
            walls = [r["wall_s"] for r in runs]
            plain_sum = sum(folds[m]["plain_s"] for m in args.methods) * len(study_folds)
            report.update(
                study_s=statistics.median(walls),
                plain_sum_s=plain_sum,
                study_ratio=statistics.median(walls) / plain_sum,
                peak_rss_mb=max(r["peak_rss_mb"] for r in runs),
                # Time spent logging models (method.log_model) over the study's wall time: at most the slowdown,
                # since the job's process logs while its other folds train in their workers.
                model_logging_share=statistics.median(r["model_logging_s"] / r["wall_s"] for r in runs),
            )
            run_differences = [d for r in runs[1:] for d in compare_results(runs[0]["results"], r["results"])]
            details["study"] = {
                "command": runs[0]["command"],
                "runs_s": walls,
                "cores_used": [r["cores_used"] for r in runs],
                "load_before": [round(r["load_before"], 2) for r in runs],
                "folds_per_method": len(study_folds),
                "plain_sum_note": (
                    f"plain fold median (fold {args.fold}) x {len(study_folds)} folds, summed over "
                    f"{', '.join(args.methods)}; the tree (no network, ~0.01 s a fold) is not counted"
                ),
                "torch_threads_per_fold": runs[0]["threads"],
                "python_hash_seed": int(PYTHON_HASH_SEED),
                "runs_identical": not run_differences,
                "runs_differences": run_differences[:20],
                "framework_training_sum_s": float(runs[0]["results"]["training_time"].sum(skipna=True)),
                "model_logging_s": [round(r["model_logging_s"], 3) for r in runs],
            }
            if not args.skip_sequential:
                seq = run_study(sequential, extra, Path(tmp) / "sequential", data_root)
                print(f"3. sequential study: {seq['command']}")
                problems = compare_results(runs[0]["results"], seq["results"])
                details["sequential"] = {
                    "command": seq["command"],
                    "wall_s": seq["wall_s"],
                    "cores_used": seq["cores_used"],
                    "identical_metrics": not problems,
                    "differences": problems[:20],
                    "torch_threads_per_fold": seq["threads"],
                }
                print(
                    f"   {seq['wall_s']:.1f} s; metrics identical to the parallel study: {not problems}"
                    + "".join(f"\n   {p}" for p in problems[:5]),
                    flush=True,
                )
    load_after = os.getloadavg()
    report["machine"].update(
        load_before=[round(v, 2) for v in load_before],
        load_after=[round(v, 2) for v in load_after],
        torch_threads=1,
    )
    report["details"] = details
    report["checks"] = checks(report, args.methods)
    report["benchmark_s"] = time.perf_counter() - began
    report["quick"] = bool(args.quick)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    summary = {k: v for k, v in report.items() if k != "details"}
    print(json.dumps(summary, indent=2))
    print(f"written to {args.output}")
    return report


def checks(report: dict[str, Any], methods: Sequence[str]) -> dict[str, bool | None]:
    """The issue's acceptance figures, each True/False (None when not measured)."""
    out: dict[str, bool | None] = {}
    for m in methods:
        row = report["methods"][m]
        out[f"fold_ratio_{m}"] = row["fold_ratio"] <= TARGETS["fold_ratio"][m]
        out[f"extraction_{m}"] = row["extraction_s"] <= NOTEBOOK_EXTRACTION_S[m]
        out[f"identical_weights_{m}"] = report["details"]["folds"][m]["identical_weights"]
    ratio = report["study_ratio"]
    # --quick studies two folds per job: fixed costs (interpreter start, MLflow store) dominate, no verdict
    quick = report["details"].get("study", {}).get("folds_per_method", 10) < 10
    out["study_ratio"] = None if ratio is None or quick else ratio <= TARGETS["study_ratio"]
    share = report.get("model_logging_share")
    out["model_logging_under_5_percent"] = None if share is None else share <= TARGETS["model_logging_share"]
    seq = report["details"].get("sequential")
    out["study_equals_sequential"] = None if seq is None else seq["identical_metrics"]
    study = report["details"].get("study")
    out["one_thread_per_fold"] = (
        None
        if study is None
        else all(v == [1] for v in study["torch_threads_per_fold"].values())
        and all(v == [1] for v in (seq or {}).get("torch_threads_per_fold", {"-": [1]}).values())
    )
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
