"""One report, start to end: read the jobs from MLflow (:mod:`lenbench.tracking.mlflow_read`), then :mod:`.rows`,
:mod:`.stats`, :mod:`.compare`, :mod:`.render`, :mod:`.figures`, :mod:`.publish`; this module only wires them, with
one metric set. :func:`analyse` is shared with the README tables (:mod:`.readme`), which read committed results.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lenbench.report import compare, figures, pareto, publish, render, rows, stats
from lenbench.scoring import METRICS, MetricSet
from lenbench.tracking.mlflow import log_report_run
from lenbench.tracking.mlflow_read import load_jobs

log = logging.getLogger(__name__)


@dataclass
class Analysis:
    """Everything a report shows: the fold table with rows attached, the runs, and the summaries."""

    folds: pd.DataFrame
    runs: pd.DataFrame
    by_row: pd.DataFrame
    by_row_seed: pd.DataFrame
    pairs: pd.DataFrame
    ranks: dict[str, Any] = field(default_factory=dict)


def analyse(folds: pd.DataFrame, runs: pd.DataFrame, metrics: MetricSet = METRICS) -> Analysis:
    """Rows (experiments) from the runs, then per-row summaries, comparisons with the best row of each study, all
    pairs, and ranks across studies."""
    runs = rows.assign_rows(runs)
    folds = stats.blank_missing_explanations(stats.attach_rows(folds, runs), metrics)
    by_row = stats.summary_table(folds, stats.ROW, metrics, runs)
    by_row = by_row.merge(stats.seed_consistency(folds, metrics), on=list(stats.ROW), how="left")
    # .copy(): one block per dtype, not one per merged column (pandas warns of a fragmented frame).
    by_row = by_row.merge(compare.compare_with_best(folds, metrics), on=list(stats.ROW), how="left").copy()
    by_row_seed = stats.summary_table(folds, [*stats.ROW, "seed"], metrics, runs)
    pairs, ranks = compare.paired_tests(folds, metrics), compare.across_studies(by_row, metrics)
    return Analysis(folds, runs, by_row, by_row_seed, pairs, ranks)


def keys(table: pd.DataFrame, extra: tuple[str, ...] = ()) -> list[str]:
    """Identity columns a human table starts with: the study only when there are several."""
    return [*(["study"] if table["study"].nunique() > 1 else []), "row", *extra]


def report_texts(analysis: Analysis, metrics: MetricSet = METRICS) -> dict[str, str]:
    """Every table of a report by file name; ``summary_headline`` (the headline metrics) is the one for a paper."""
    by_row, by_seed = analysis.by_row, analysis.by_row_seed
    headline = render.summary_texts(
        "summary_headline", by_row, keys(by_row), MetricSet([m for m in metrics if m.headline])
    )
    return {
        **render.summary_texts("summary_by_experiment", by_row, keys(by_row), metrics),
        **render.summary_texts("summary_by_experiment_seed", by_seed, keys(by_seed, ("seed",)), metrics),
        **{
            name: text for name, text in headline.items() if not name.endswith(".csv")
        },  # the CSV is the above
        **render.pairs_texts(analysis.pairs, metrics),
        **render.ranks_texts(compare.ranks_table(analysis.ranks, metrics), metrics),
        "folds.csv": analysis.folds.to_csv(index=False),
    }


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
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"  # no tqdm bar per downloaded artifact
    jobs = load_jobs(uri, experiment, sweep_id, filter_string, metrics)
    analysis = analyse(jobs.folds, jobs.runs, metrics)
    meta = publish.provenance(analysis.runs, experiment, sweep_id, filter_string)
    drawn = figures.figures(analysis.folds, analysis.by_row, analysis.ranks, metrics)
    front_texts, front_figures = pareto.pareto_outputs(uri, experiment)  # tuning studies, when there are any
    texts = {**report_texts(analysis, metrics), **front_texts}
    files = publish.write_files(out_dir, texts, {**drawn, **front_figures}, meta)
    if log_to_mlflow:
        log_report_run(uri, experiment, list(files.values()), sweep_id)  # one FINISHED ``report`` run
    return files
