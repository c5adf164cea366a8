"""One report, start to end: read the jobs from MLflow, compute the statistics, render, draw and publish.

Each step lives in its own module (reading in :mod:`lenbench.tracking.mlflow_read`, then :mod:`.stats`,
:mod:`.render`, :mod:`.figures`, :mod:`.publish`); this one only wires them, passing the same metric set to all.
"""

from __future__ import annotations

from pathlib import Path

from lenbench.report import figures, publish, render, stats
from lenbench.scoring import METRICS, MetricSet
from lenbench.tracking.mlflow_read import load_jobs


def build_report(
    uri: str,
    experiment: str,
    out_dir: Path,
    sweep_id: str | None = None,
    filter_string: str = "",
    log_to_mlflow: bool = True,
    metrics: MetricSet = METRICS,
) -> dict[str, Path]:
    """Write tables, figures and provenance under ``out_dir`` and (by default) log them on a ``report`` run."""
    jobs = load_jobs(uri, experiment, sweep_id, filter_string, metrics)
    folds = stats.blank_missing_explanations(jobs.folds, metrics)
    by_method = stats.summary_table(folds, ["method"], metrics)
    by_method = by_method.merge(stats.seed_consistency(folds, metrics), on="method", how="left")
    by_method = by_method.merge(stats.compare_with_best(folds, by_method, metrics), on="method", how="left")
    by_method_seed = stats.summary_table(folds, ["method", "seed"], metrics)
    texts = {
        **render.summary_texts("summary_by_method", by_method, ["method"], metrics, with_note=True),
        **render.summary_texts("summary_by_method_seed", by_method_seed, ["method", "seed"], metrics),
        **render.pairs_texts(stats.paired_tests(folds, metrics), metrics),
        "folds.csv": folds.to_csv(index=False),
    }
    meta = publish.provenance(jobs.runs, experiment, sweep_id, filter_string)
    files = publish.write_files(out_dir, texts, figures.figures(folds, by_method, metrics), meta)
    if log_to_mlflow:
        publish.log_to_mlflow(uri, experiment, files, sweep_id)
    return files
