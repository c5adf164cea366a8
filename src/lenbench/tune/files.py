"""A study's files in its folder ``outputs/tune/<date>/<time>-<method>-<data>/`` and its console summary.

- ``pareto.csv``: one row per Pareto member (trial, ``param_*``, ``val_*`` = mean over the outer folds' validation
  rows, ``test_*``/``test_*_sem`` = mean and standard error over the outer test folds, ``test_run_id``);
- ``trials.csv``: every trial with its state, params, validation values and ``pareto`` flag;
- ``study.json``: name, storage, objectives, directions, the reference point and the hypervolumes;
- ``pareto.png``: the validation front over every trial, the members' test scores, the majority-class lines.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lenbench.report.sweep_summary import SweepCallback
from lenbench.tracking.pareto_plots import pareto_figure, save
from lenbench.tracking.sweeps import job_folders
from lenbench.tune.front import hypervolume, pareto_mask

if TYPE_CHECKING:
    from lenbench.tune.settings import StudySpec


def front_summary(trials: pd.DataFrame, front: pd.DataFrame, spec: StudySpec) -> dict[str, float]:
    """Counts and hypervolumes: of the validation front, and of the members' test scores (their non-dominated
    subset), both against the fixed reference point."""
    states = trials["state"] if len(trials) else pd.Series(dtype=str)
    summary = {
        "n_trials": float(len(trials)),
        "n_complete": float((states == "COMPLETE").sum()),
        "n_failed": float((states == "FAIL").sum()),
        "n_pareto": float(len(front)),
    }
    val = [f"val_{o}" for o in spec.objectives]
    summary["hypervolume_val"] = (
        hypervolume(front[val].to_numpy(float), spec.directions, spec.reference) if len(front) else 0.0
    )
    test = [f"test_{o}" for o in spec.objectives]
    if len(front) and all(c in front for c in test):
        points = front[test].to_numpy(float)
        summary["hypervolume_test"] = hypervolume(points, spec.directions, spec.reference)
        summary["n_pareto_test"] = float(pareto_mask(points, spec.directions).sum())
    return summary


def write_study(
    out_dir: Path,
    trials: pd.DataFrame,
    front: pd.DataFrame,
    spec: StudySpec,
    summary: Mapping[str, float],
    data: str,
    method: str,
) -> dict[str, Path]:
    """Write the study's files; returns them by name."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {name: out_dir / name for name in ("pareto.csv", "trials.csv", "study.json", "pareto.png")}
    front.to_csv(files["pareto.csv"], index=False)
    trials.to_csv(files["trials.csv"], index=False)
    meta = {
        "study": spec.name,
        "method": method,
        "data": data,
        "storage": spec.storage,
        "objectives": list(spec.objectives),
        "directions": list(spec.directions),
        "reference": dict(zip(spec.objectives, spec.reference, strict=True)),
        "sampler": spec.sampler,
        "seed": spec.seed,
        **summary,
    }
    files["study.json"].write_text(json.dumps(meta, indent=2) + "\n")
    save(
        pareto_figure(trials, front, spec.objectives, spec.directions, f"{method} on {data}: {spec.name}"),
        files["pareto.png"],
    )
    return files


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "n/a" if not np.isfinite(value) else f"{value:.4g}"
    return str(value)


def format_study(front: pd.DataFrame, summary: Mapping[str, float], spec: StudySpec, out_dir: Path) -> str:
    """The console summary: the front (validation and test), the hypervolumes, where the files are."""
    lines = [
        f"study {spec.name}: {int(summary['n_complete'])} completed trial(s) "
        f"({int(summary['n_failed'])} failed), {len(front)} on the validation front"
    ]
    columns = [
        c for c in front.columns if c.startswith(("param_", "val_", "test_")) and not c.endswith("_sem")
    ]
    columns = [c for c in columns if not c.endswith("majority_accuracy")]
    if len(front):
        shown = front[["trial", *columns]].rename(columns=lambda c: c.removeprefix("param_"))
        lines.append(shown.to_string(index=False, formatters={c: _cell for c in shown.columns}))
    reference = ", ".join(f"{o}={r:g}" for o, r in zip(spec.objectives, spec.reference, strict=True))
    hv = f"validation {summary['hypervolume_val']:.4g}"
    if "hypervolume_test" in summary:
        hv += f", test {summary['hypervolume_test']:.4g}"
    lines.append(f"hypervolume ({reference}): {hv}")
    lines.append(f"files: {out_dir / 'pareto.csv'}, {out_dir / 'pareto.png'}")
    return "\n".join(lines)


def studies_summary(sweep_dir: Path, experiment: str) -> str:
    """One line per study of a tuning sweep (front size, hypervolumes, where its front is), and the report
    command that overlays them."""
    folders = job_folders(sweep_dir)
    lines = [f"tuning sweep {sweep_dir}: {len(folders)} stud{'y' if len(folders) == 1 else 'ies'}"]
    for folder in folders:
        meta_file = folder / "study.json"
        if not meta_file.exists():
            lines.append(f"  {folder.name}: no study.json (failed or interrupted; see its log)")
            continue
        meta = json.loads(meta_file.read_text())
        hv = f"hypervolume validation {meta['hypervolume_val']:.4g}"
        hv += f", test {meta['hypervolume_test']:.4g}" if "hypervolume_test" in meta else ""
        lines.append(
            f"  {folder.name}: {meta['study']}, {int(meta['n_complete'])} completed trial(s), "
            f"{int(meta['n_pareto'])} on the front, {hv} -> {folder / 'pareto.csv'}"
        )
    lines.append(f"overlay the fronts: python -m lenbench.report --experiment {experiment}")
    return "\n".join(lines)


class StudiesSummary(SweepCallback):
    """Hydra callback: prints :func:`studies_summary` when a tuning sweep ends."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        # Deferred: Hydra loads this callback at start-up; job imports torch.
        from lenbench.job import experiment_name

        print(studies_summary(Path(str(config.hydra.sweep.dir)), experiment_name(config)), flush=True)
