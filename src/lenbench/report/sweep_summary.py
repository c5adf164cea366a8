"""The end-of-sweep summary: one console line per job (its headline metrics with the majority-class baseline, where
its results and full formulas are), then the ``python -m lenbench.report --sweep-id ...`` command comparing them.

A job folder says what happened: ``summary.json`` (it ran), ``resumed.json`` (skipped: a FINISHED run had its
configuration; metrics from that run), ``job.json`` alone (failed or interrupted), nothing (it did not start).
:class:`SweepSummary` is the Hydra callback printing it; it keeps Hydra's interface by name, never importing Hydra.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from lenbench.scoring import METRICS, MetricSet
from lenbench.tracking.mlflow_read import run_metrics
from lenbench.tracking.sweeps import RESUMED_FILE, job_folders

log = logging.getLogger(__name__)


def metrics_text(values: dict[str, float], metrics: MetricSet = METRICS) -> str:
    """The headline scores as ``label mean ± sem`` (job-level ones as ``label value``), ``; ``-separated, and the
    majority-class baseline to read the accuracies against; no times."""
    parts = []
    for metric in metrics:
        if not metric.headline or metric.unit == "s":
            continue
        if metric.level == "job":
            if metric.name in values:
                parts.append(f"{metric.label} {metric.format(values[metric.name])}")
            continue
        mean, sem = values.get(f"{metric.name}_mean"), values.get(f"{metric.name}_sem")
        if mean is None or mean != mean:
            continue
        spread = "" if sem is None or sem != sem else f" ± {sem:.{metric.digits}f}"
        parts.append(f"{metric.label} {mean:.{metric.digits}f}{spread}")
    return "; ".join(parts)


def _stored_metrics(uri: str | None, run_id: str) -> dict[str, float]:
    if not uri:
        return {}
    try:
        return run_metrics(uri, run_id)
    except Exception as exc:  # noqa: BLE001 - the summary is a convenience: say what is missing, go on
        log.debug("no metrics for run %s: %s", run_id, exc)
        return {}


def _folds_text(values: dict[str, float]) -> str:
    """`` (n=10 folds)``, or nothing when the job's fold count is unknown (no MLflow metrics to read)."""
    return f" (n={int(values['n_folds'])} folds)" if "n_folds" in values else ""


def job_line(folder: Path, uri: str | None, metrics: MetricSet = METRICS) -> tuple[str, str | None]:
    """One job's line, and the MLflow experiment its job file names (None when unknown)."""
    job = json.loads((folder / "job.json").read_text()) if (folder / "job.json").is_file() else {}
    experiment = job.get("experiment")
    if (folder / "summary.json").is_file():
        values = json.loads((folder / "summary.json").read_text())
        return (
            f"{folder.name}: {metrics_text(values, metrics)}{_folds_text(values)} -> {folder / 'results.csv'}, "
            f"full formulas {folder / 'explanations.json'}",
            experiment,
        )
    if (folder / RESUMED_FILE).is_file():
        resumed = json.loads((folder / RESUMED_FILE).read_text())
        values = _stored_metrics(uri, resumed["run_id"])
        shown = metrics_text(values, metrics) or "metrics in MLflow"
        return (
            f"{folder.name}: already finished, not run again: {shown}{_folds_text(values)} -> "
            f"MLflow run {resumed['run_id']} (full formulas: its explanations.json)",
            experiment,
        )
    if job:
        return f"{folder.name}: did not finish (failed or interrupted) -> {folder / 'train.log'}", experiment
    return f"{folder.name}: did not start -> {folder / 'train.log'}", experiment


def sweep_summary(
    sweep_dir: Path, uri: str | None, experiment: str | None, metrics: MetricSet = METRICS
) -> str:
    """The summary of the sweep in ``sweep_dir``: one line per job, then the report command for its experiment(s)."""
    folders = job_folders(Path(sweep_dir))
    lines = [f"sweep {sweep_dir}: {len(folders)} job(s)"]
    experiments: list[str] = []
    for folder in folders:
        line, found = job_line(folder, uri, metrics)
        lines.append(f"  {line}")
        if found and found not in experiments:
            experiments.append(found)
    for name in experiments or ([experiment] if experiment else []):
        lines.append(
            f"compare them: {_python()} -m lenbench.report --experiment {shlex.quote(name)} "
            f"--sweep-id {shlex.quote(str(sweep_dir))}"
        )
    return "\n".join(lines)


def _python() -> str:
    """The interpreter this sweep ran with, as a user can paste it (``.venv/bin/python`` from the repository):
    a bare ``python`` is often another one, without lenbench."""
    executable = Path(sys.executable)
    if executable.is_relative_to(Path.cwd()):
        return shlex.quote(os.path.relpath(executable))
    return str(executable)


class SweepCallback:
    """Hydra's callback interface by name only (this package never imports Hydra): a subclass defines the hooks it
    uses, and every other ``on_*`` hook Hydra calls does nothing."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("on_"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)


class SweepSummary(SweepCallback):
    """Hydra callback: prints :func:`sweep_summary` when a sweep ends."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        # Deferred: Hydra loads this callback at start-up.
        from lenbench.job import experiment_name, tracking_uri

        uri = tracking_uri(config, Path.cwd()) if config.tracking.enabled else None
        print(sweep_summary(Path(str(config.hydra.sweep.dir)), uri, experiment_name(config)), flush=True)
