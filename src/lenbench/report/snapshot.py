"""Committed result snapshots: job folders copied under ``results/<study>/`` (``results.csv``, ``summary.json``, and
``job.json`` with tags and params minus where it ran) and read back as the report reads MLflow, so the README's
tables are regenerated from the repository (``make readme-tables``).

``python -m lenbench.report.snapshot <job or sweep folder>... --into results/<study>``
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from lenbench.scoring import METRICS, MetricSet
from lenbench.tracking.local import write_json, write_text

RESULT_FILES = ("results.csv", "summary.json", "job.json")
LOCAL_KEYS = ("tracking.", "data.root", "hydra.")
KEPT_TAGS = ("method", "data", "label", "seed", "git_commit", "git_dirty", "data_checksum", "config_hash")


def job_folders(paths: Iterable[Path]) -> list[Path]:
    """The finished job folders among ``paths`` and their subfolders (a sweep folder holds one per job)."""
    found = []
    for path in map(Path, paths):
        candidates = [path, *sorted(p for p in path.iterdir() if p.is_dir())] if path.is_dir() else []
        found += [c for c in candidates if all((c / name).is_file() for name in RESULT_FILES)]
    return found


def _portable_job(job: dict[str, Any]) -> dict[str, Any]:
    params = {k: v for k, v in job.get("params", {}).items() if not k.startswith(LOCAL_KEYS)}
    tags = {k: v for k, v in job.get("tags", {}).items() if k in KEPT_TAGS}
    return {"run_name": job.get("run_name", ""), "tags": tags, "params": params}


def collect(paths: Iterable[Path], into: Path) -> list[Path]:
    """Copy each finished job folder's result files into ``into/<folder name>-<config hash>/`` (a Hydra sweep's
    job folders start with the job number, which orders the rows of the README's tables); returns them."""
    written = []
    for folder in job_folders(paths):
        job = _portable_job(json.loads((folder / "job.json").read_text()))
        target = Path(into) / f"{folder.name}-{job['tags'].get('config_hash', '')[:8]}".rstrip("-")
        write_text(target / "results.csv", (folder / "results.csv").read_text())
        write_text(target / "summary.json", (folder / "summary.json").read_text())
        write_json(target / "job.json", job)
        written.append(target)
    return written


IDENTITY = ("method", "seed", "data", "label", "run_id", "git_commit", "data_checksum", "config_hash")


def _run_row(folder: Path, metrics: MetricSet) -> dict[str, Any]:
    job = json.loads((folder / "job.json").read_text())
    summary = json.loads((folder / "summary.json").read_text())
    tags = job["tags"]
    identity = {key: tags.get(key, "") for key in IDENTITY} | {"run_id": folder.name}
    identity |= {"method": tags.get("method", "?"), "seed": int(tags.get("seed", -1))}
    numbers = {k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    kept = {m.name: numbers.get(m.name, float("nan")) for m in metrics.at("job")}
    return {
        **identity,
        "run_name": job.get("run_name", ""),
        "params": job["params"],
        "membership": "",
        **kept,
    }


def _fold_rows(folder: Path, identity: dict[str, Any], metrics: MetricSet) -> pd.DataFrame:
    results = pd.read_csv(folder / "results.csv", keep_default_na=False, na_values=["", "nan", "NaN"])
    folds = pd.DataFrame(
        {"fold": results["split"].astype(int), "formula": results["explanation"].astype(str)}
    )
    for name in metrics.fold_names:
        folds[name] = pd.to_numeric(results[name], errors="coerce") if name in results else float("nan")
    return folds.assign(**{key: identity[key] for key in IDENTITY})


def _natural(path: Path) -> tuple[Any, ...]:
    """``2-psi`` before ``10-rf``: leading numbers compare as numbers."""
    head, _, rest = path.name.partition("-")
    return (str(path.parent), int(head) if head.isdigit() else -1, rest if head.isdigit() else path.name)


def load(root: Path, metrics: MetricSet = METRICS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(folds, runs)`` of every snapshot job folder under ``root`` (recursively), in folder order."""
    found = {p.parent for p in Path(root).rglob("job.json") if (p.parent / "results.csv").is_file()}
    folders = sorted(found, key=_natural)
    if not folders:
        raise FileNotFoundError(f"no snapshot job folders (results.csv, summary.json, job.json) under {root}")
    runs = [_run_row(folder, metrics) for folder in folders]
    folds = pd.concat(
        [_fold_rows(f, r, metrics) for f, r in zip(folders, runs, strict=True)], ignore_index=True
    )
    return folds, pd.DataFrame(runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lenbench.report.snapshot", description=__doc__)
    parser.add_argument("paths", nargs="+", type=Path, help="job folders or sweep folders")
    parser.add_argument(
        "--into", type=Path, required=True, help="the study's snapshot folder, results/<study>"
    )
    args = parser.parse_args(argv)
    written = collect(args.paths, args.into)
    print(f"{len(written)} job folder(s) copied into {args.into}")
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
