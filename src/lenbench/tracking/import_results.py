"""``python -m lenbench.tracking.import_results <job dir> [...]``: log a job's local results into MLflow.

For jobs whose tracking store failed or was unreachable mid-run: every job folder holds ``job.json`` (run name,
tags, params, experiment), ``results.csv``, ``summary.json`` and ``explanations.json``; this replays them as the
same parent run with one child run per fold. A partial job (``summary.json`` says ``complete: false``) is imported
as FAILED, so reports never average it silently.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import pandas as pd

from lenbench.scoring import METRICS, MetricSet
from lenbench.tracking.errors import TrackingError
from lenbench.tracking.mlflow import MlflowTracker
from lenbench.tracking.store import default_tracking_uri

log = logging.getLogger(__name__)


def import_job(job_dir: Path, uri: str, experiment: str | None = None, metrics: MetricSet = METRICS) -> str:
    """Replay one job folder into the store at ``uri``; returns the new parent run id."""
    missing = [n for n in ("job.json", "results.csv", "summary.json") if not (job_dir / n).is_file()]
    if missing:
        raise TrackingError(f"{job_dir} is not a finished lenbench job folder: {', '.join(missing)} missing")
    job = json.loads((job_dir / "job.json").read_text())
    summary = json.loads((job_dir / "summary.json").read_text())
    results = pd.read_csv(job_dir / "results.csv")
    # Artifacts go where the target store keeps them, whatever store the job was meant for.
    tracker = MlflowTracker(uri, experiment or job["experiment"], metrics=metrics)
    previous = tracker.find_finished(job["tags"].get("config_hash", "-"))
    if previous is not None and summary.get("complete", False):
        log.info("%s: already in the store as run %s, not imported again", job_dir, previous)
        return previous
    tracker.start_job(job["run_name"], {**job["tags"], "imported_from": str(job_dir)}, job.get("params", {}))
    for row in results.to_dict("records"):
        values = {k: float(row[k]) for k in metrics.fold_names if k in row and pd.notna(row[k])}
        formula = "" if pd.isna(row.get("explanation")) else str(row["explanation"])
        tracker.log_fold(int(row["split"]), values, formula, [])
    files = [
        job_dir / n for n in ("results.csv", "summary.json", "explanations.json") if (job_dir / n).is_file()
    ]
    if summary.get("complete", False):
        tracker.finish_job(_summary_metrics(summary, metrics), files, job.get("texts", {}), results)
    else:
        tracker.fail_job("imported partial results: the job did not complete")
    return tracker.run_id or ""


def _summary_metrics(summary: dict, metrics: MetricSet) -> dict[str, float]:
    """The parent run's metrics from ``summary.json``: what ``experiment.summarize`` puts there for ``metrics``
    (``<metric>_mean``, ``<metric>_sem``, job-level metrics, ``n_folds``), not the job's other entries (seed...)."""
    names = [f"{name}_{stat}" for name in metrics.fold_names for stat in ("mean", "sem")]
    names += [metric.name for metric in metrics.at("job")] + ["n_folds"]
    return {name: float(summary[name]) for name in names if isinstance(summary.get(name), (int, float))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lenbench.tracking.import_results", description=__doc__)
    parser.add_argument("job_dirs", nargs="+", type=Path)
    parser.add_argument(
        "--uri", default=os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(Path.cwd())
    )
    parser.add_argument("--experiment", default=None, help="override the experiment recorded in job.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] %(message)s")
    try:
        for job_dir in args.job_dirs:
            run_id = import_job(job_dir, args.uri, args.experiment)
            print(f"{job_dir} -> run {run_id} at {args.uri}")
    except TrackingError as exc:
        logging.getLogger("lenbench").error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
