"""The report's summaries: pure functions over the per-fold table (no MLflow, no files, no figures): one row per fold
run (``study``, ``row``, ``method``, ``seed``, ``split_seed``, ``fold``, ``run_id``, ``formula``, the fold metrics).

The unit of a summary is the *test fold* ``(split_seed, fold)``: seeds (or repeated runs) on one test fold are
averaged first, then mean and standard error are taken over test folds, so three seeds on three folds are n = 3, not
9; the spread across seeds is apart (``<metric>_seed_sd``). Which metrics, and how, comes from the registry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from lenbench.logic.formula import Formula
from lenbench.logic.metrics import consistency, mean_and_sem
from lenbench.scoring import METRICS, JobEvidence, MetricSet

UNIT = ("split_seed", "fold")  # a test fold
ROW = ("study", "row")  # an experiment: one configuration, any number of seeds
ROW_COLUMNS = ("study", "row", "method", "settings", "config", "label", "split_seed", "n_splits")


def parse_formula(text: str) -> Formula:
    """The formula of a fold; ``False`` for text that does not parse (an empty or foreign record)."""
    try:
        return Formula.parse(text)
    except ValueError:
        return Formula.false()


def present(folds: pd.DataFrame, names: Sequence[str]) -> list[str]:
    return [name for name in names if name in folds]


def attach_rows(folds: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """The fold table with each fold's row identity (:data:`ROW_COLUMNS`) from its job run."""
    columns = ["run_id", *present(runs, [c for c in ROW_COLUMNS if c != "method"])]
    return folds.drop(columns=[c for c in columns if c != "run_id" and c in folds]).merge(
        runs[columns], on="run_id", how="left"
    )


def explained(folds: pd.DataFrame, metrics: MetricSet = METRICS) -> pd.Series:
    """Per fold row: does it have an explanation? No when every explanation *score* (a formula-needing metric
    where higher is better, e.g. explanation accuracy, which any formula gets) is NaN, as for ``rf``."""
    scores = present(
        folds, [m.name for m in metrics.at("fold") if "formula" in m.needs and m.higher_is_better]
    )
    if not scores:
        return pd.Series(True, index=folds.index)
    return folds[scores].notna().any(axis=1)


def blank_missing_explanations(folds: pd.DataFrame, metrics: MetricSet = METRICS) -> pd.DataFrame:
    """Folds without an explanation (see :func:`explained`) get NaN in every metric that needs a formula
    (complexity, extraction time, ...), so that "no formula" never reads as "the simplest formula"."""
    columns = present(folds, [m.name for m in metrics.at("fold") if "formula" in m.needs])
    if not columns:
        return folds
    folds = folds.copy()
    folds.loc[~explained(folds, metrics), columns] = float("nan")
    return folds


def unit_values(folds: pd.DataFrame, names: Sequence[str], by: Sequence[str] = ROW) -> pd.DataFrame:
    """One value per group of ``by`` and test fold: seeds and repeated runs on the same test fold averaged
    (NaN values skipped), indexed by ``(*by, split_seed, fold)``."""
    return folds.groupby([*by, *UNIT])[present(folds, names)].mean()


def _job_level(group: pd.DataFrame, runs: pd.DataFrame | None, metrics: MetricSet) -> dict[str, float]:
    """Job-level metrics (e.g. consistency) of a group: the mean over its jobs of each job's own value as the job
    recorded it (``runs``), computed from the group's formulas per job where a job lacks it."""
    out: dict[str, float] = {}
    for metric in metrics.at("job"):
        values = []
        for run_id, job in group.groupby("run_id"):
            stored = _stored(runs, run_id, metric.name)
            if stored != stored and "formula" in job:  # NaN or missing: recompute from the job's formulas
                formulas = job.loc[explained(job, metrics), "formula"]
                stored = metric.value(JobEvidence([parse_formula(f) for f in formulas]))
            values.append(stored)
        finite = [v for v in values if v == v]
        out[metric.name] = float(np.mean(finite)) if finite else float("nan")
    return out


def _stored(runs: pd.DataFrame | None, run_id: str, name: str) -> float:
    if runs is None or name not in runs:
        return float("nan")
    found = runs.loc[runs["run_id"] == run_id, name]
    return float(found.iloc[0]) if len(found) and found.iloc[0] == found.iloc[0] else float("nan")


def summary_table(
    folds: pd.DataFrame,
    by: Sequence[str] = ROW,
    metrics: MetricSet = METRICS,
    runs: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per group of ``by``: ``<metric>_mean`` / ``<metric>_sem`` / ``<metric>_n`` over its test folds (seeds
    averaged first; NaN skipped; sem NaN for one fold), the job-level metrics (mean over the group's jobs, see
    :func:`_job_level`), ``n_folds`` (test folds), ``n_seeds``, ``n_runs`` and the group's descriptive columns."""
    records = []
    names = present(folds, metrics.fold_names)
    for key, group in folds.groupby(list(by), sort=True):  # keys are tuples: grouped by a list
        record: dict[str, Any] = dict(zip(by, key, strict=True))
        for column in present(group, ROW_COLUMNS):
            if column not in record and column not in UNIT:
                record[column] = group[column].iloc[0]
        per_unit = group.groupby(list(UNIT))[names].mean()
        for metric in names:
            values = per_unit[metric].dropna().tolist()
            mean, sem = mean_and_sem(values) if values else (float("nan"), float("nan"))
            record[f"{metric}_mean"], record[f"{metric}_sem"] = mean, sem
            record[f"{metric}_n"] = len(values)
        record.update(_job_level(group, runs, metrics))
        record["n_folds"] = len(per_unit)
        record["n_seeds"] = group["seed"].nunique()
        record["n_runs"] = group["run_id"].nunique()
        records.append(record)
    return pd.DataFrame(records)


def seed_consistency(
    folds: pd.DataFrame, metrics: MetricSet = METRICS, by: Sequence[str] = ROW
) -> pd.DataFrame:
    """Per group: for each test fold, consistency of that fold's formulas across seeds; mean over test folds (NaN
    for a group whose folds have no formula scored, as a black box's).
    Also the spread across seeds of every headline compared metric: ``<metric>_seed_sd``, the standard deviation
    (ddof=1) over seeds of each seed's mean over its test folds (NaN with a single seed)."""
    spread = present(folds, [m.name for m in metrics.at("fold") if m.headline and m.compared])
    scored = present(folds, [m.name for m in metrics.at("fold") if "formula" in m.needs])
    records = []
    for key, group in folds.groupby(list(by)):
        explained = not scored or group[scored].notna().any(
            axis=None
        )  # a black box has no formulas to compare
        per_fold = [
            consistency([parse_formula(f) for f in g["formula"]])
            for _, g in group.groupby(list(UNIT))
            if g["seed"].nunique() > 1 and explained
        ]
        record: dict[str, Any] = {
            **dict(zip(by, key, strict=True)),
            "seed_consistency": float(np.mean(per_fold)) if per_fold else float("nan"),
        }
        for metric in spread:
            per_seed = group.groupby("seed")[metric].mean().dropna()
            record[f"{metric}_seed_sd"] = float(per_seed.std(ddof=1)) if len(per_seed) > 1 else float("nan")
        records.append(record)
    return pd.DataFrame(records)


def study_titles(by_row: pd.DataFrame) -> dict[str, str]:
    """Each study's name for a title, saying how many test folds ran when its rows ran fewer than its CV has
    (``mimic / y / 10-fold: 5 of 10 folds ran``), so a partial run never reads as the full cross-validation."""
    titles = {}
    for study, rows in by_row.groupby("study"):
        ran, planned = int(rows["n_folds"].max()), int(rows.get("n_splits", pd.Series([0])).max())
        titles[study] = f"{study}: {ran} of {planned} folds ran" if ran < planned else study
    return titles
