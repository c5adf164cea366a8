"""Compare two runs of lenbench fold by fold (a GPU run against a CPU one) and write ``gpu_check.sh``'s record.

A run is a folder holding job folders, each with its ``results.csv`` (one row per fold) and ``job.json`` (tags:
method, seed): a Hydra sweep folder (``hydra.sweep.dir``) or a committed snapshot such as ``results/mimic``. Folds
are matched on (method, seed, fold); per method, the record says how many were compared, the fraction with the
same formula, the largest absolute difference of any fold metric (timings excepted) with the metric it was in, and
that of the job metrics (``explanation_consistency``) when both ran the same folds.

    .venv/bin/python benchmarks/gpu_compare.py compare <gpu folder> <cpu folder>     # prints the agreement
    .venv/bin/python benchmarks/gpu_compare.py record --output gpu.json \
        --run <name> <run folder> <cpu folder or -> <seconds> <exit status> <time limit> "<command>" ...
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
KEYS = ["method", "seed", "split"]
NOT_METRICS = ("elapsed_time", "training_time", "model_logging_time")


def load_folds(folder: Path) -> pd.DataFrame:
    """Every fold row of the job folders under ``folder``, with the job's seed (from ``job.json``; -1 without)."""
    tables = []
    for path in sorted(folder.rglob("results.csv")):
        table = pd.read_csv(path)
        job = path.parent / "job.json"
        tags = json.loads(job.read_text()).get("tags", {}) if job.is_file() else {}
        table["seed"] = int(tags.get("seed", -1))
        tables.append(table)
    if not tables:
        return pd.DataFrame(columns=[*KEYS, "explanation"])
    return pd.concat(tables, ignore_index=True)


def metric_columns(a: pd.DataFrame, b: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The numeric metric columns both tables have: (fold-level, job-level) by lenbench's metric registry; a job
    metric (``explanation_consistency``) depends on which folds the job ran, not on one fold."""
    from lenbench.scoring import METRICS

    level = {m.name: m.level for m in METRICS}
    numeric = [
        c
        for c in a.columns
        if c not in (*KEYS, "explanation", *NOT_METRICS)
        and c in b.columns
        and pd.api.types.is_numeric_dtype(a[c])
        and pd.api.types.is_numeric_dtype(b[c])
    ]
    return [c for c in numeric if level.get(c, "fold") == "fold"], [
        c for c in numeric if level.get(c) == "job"
    ]


def largest_difference(rows: pd.DataFrame, metrics: list[str]) -> tuple[float, str | None]:
    """The largest |a - b| over ``metrics`` of merged rows and its metric (NaN in both: equal; in one: inf)."""
    worst, where = 0.0, None
    for metric in metrics:
        x, y = rows[f"{metric}_a"].astype(float), rows[f"{metric}_b"].astype(float)
        diff = (x - y).abs().where(~(x.isna() & y.isna()), 0.0).fillna(math.inf)
        if len(diff) and diff.max() > worst:
            worst, where = float(diff.max()), metric
    return worst, where


def agreement(a: pd.DataFrame, b: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per method of ``a``: the folds also in ``b``, the fraction with the same formula, the largest absolute
    difference of a fold metric, and of a job metric where ``a`` ran the same folds as ``b`` (else None)."""
    both = a.merge(b, on=KEYS, suffixes=("_a", "_b"))
    per_fold, per_job = metric_columns(a, b)
    out: dict[str, dict[str, Any]] = {}
    for method, rows in both.groupby("method", sort=False):
        worst, where = largest_difference(rows, per_fold)
        mine = a[a["method"] == method]
        theirs = b[(b["method"] == method) & b["seed"].isin(mine["seed"])]
        same_folds = set(mine[["seed", "split"]].itertuples(index=False)) == set(
            theirs[["seed", "split"]].itertuples(index=False)
        )
        out[str(method)] = {
            "folds": len(rows),
            "same_formula": float(
                (rows["explanation_a"].astype(str) == rows["explanation_b"].astype(str)).mean()
            ),
            "max_abs_metric_difference": worst,
            "worst_metric": where,
            "max_abs_job_metric_difference": largest_difference(rows, per_job)[0] if same_folds else None,
        }
    for method in a["method"].unique():
        out.setdefault(str(method), {"folds": 0, "same_formula": None, "max_abs_metric_difference": None})
    return out


def device_name() -> str:
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA GPU"


def run_record(
    folder: str, reference: str, seconds: str, status: str, limit: str, command: str
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A GPU run's times and fold count, and its agreement with the CPU run folder ``reference`` (None when that is
    ``-`` or missing)."""
    folds = load_folds(Path(folder))
    run = {
        "command": command,
        "wall_s": float(seconds),
        "exit_status": int(status),
        # timeout(1) exits 124 when the limit stopped the command: the folds done by then are still compared
        "finished": int(status) == 0,
        "timeout_s": float(limit),
        "folds": len(folds),
    }
    if reference == "-" or not Path(reference).is_dir():
        return run, None
    return run, agreement(folds, load_folds(Path(reference)))


def record(specs: list[list[str]]) -> dict[str, Any]:
    """``gpu_check.sh``'s record: the device, the code, and per run (name, folder, CPU folder, seconds, exit status,
    time limit, command) its times and agreement."""
    import torch

    from lenbench.tracking.environment import git_commit

    out: dict[str, Any] = {
        "device": device_name(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "git_commit": git_commit(str(REPO))[0],
        "runs": {},
        "reference": {},
        "agreement": {},
    }
    for name, folder, reference, *rest in specs:
        out["runs"][name], out["agreement"][name] = run_record(folder, reference, *rest)
        out["reference"][name] = None if out["agreement"][name] is None else _relative(reference)
    return out


def _relative(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    compare = commands.add_parser("compare", help="print the agreement of two run folders")
    compare.add_argument("a", type=Path)
    compare.add_argument("b", type=Path)
    write = commands.add_parser("record", help="write gpu_check.sh's JSON record")
    write.add_argument("--output", type=Path, required=True)
    write.add_argument(
        "--run",
        nargs=7,
        action="append",
        default=[],
        metavar="X",
        help="name folder cpu seconds status limit command",
    )
    args = parser.parse_args(argv)
    if args.command == "compare":
        print(json.dumps(agreement(load_folds(args.a), load_folds(args.b)), indent=2))
        return 0
    result = record(args.run)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("device", "runs", "agreement")}, indent=2))
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
