"""Running lenbench's own commands for the benchmark (``make bench``, parts 3-5): ``python -m train ...`` as
subprocesses side by side, each with a fresh MLflow SQLite store, timed, with their process tree's peak memory, and
what the MLflow stores and result tables say afterwards (thread counts, model logging time, the configured
``trainer.batching``); and the comparison of two studies' result tables."""

from __future__ import annotations

import json
import os
import resource
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
TIMING_COLUMNS = ("elapsed_time", "training_time")
PYTHON_HASH_SEED = "0"


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
        # One string hash seed for every run: explanation_consistency no longer depends on it (an exact integer
        # sum), but an older checkout's summed floats in the order of a set of names, which follows that seed.
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
        "batching": configured_batching([d / "sweep" for d in dirs]),
        "command": " & ".join(" ".join(["python", "-m", "train", *args, *extra]) for args in commands),
    }


def configured_batching(sweeps: Sequence[Path]) -> dict[str, str]:
    """Per method, the ``trainer.batching`` its job trained with (from the jobs' ``job.json`` params; a checkout
    without that setting has none)."""
    out: dict[str, str] = {}
    for path in sorted(p for sweep in sweeps for p in sweep.glob("*/job.json")):
        job = json.loads(path.read_text())
        for key, value in job.get("params", {}).items():
            if key.endswith("trainer.batching"):
                out[job.get("tags", {}).get("method", path.parent.name)] = str(value)
    return out


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
