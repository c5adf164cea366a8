"""The report's statistics: pure functions over the per-fold table (no MLflow, no files, no figures).

Input is one row per fold (``method``, ``seed``, ``fold``, ``run_id``, ``formula`` and one column per fold metric),
as :func:`lenbench.tracking.mlflow_read.load_jobs` returns it. Which metrics are summarised, compared by paired
tests, minimised rather than maximised or blanked when a fold has no explanation, all comes from the registry
(:class:`~lenbench.scoring.MetricSet`), so a metric added there reaches every table.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from lenbench.logic.formula import Formula
from lenbench.logic.metrics import consistency, mean_and_sem
from lenbench.scoring import METRICS, JobEvidence, MetricSet

PAIRED_COLUMNS = (
    "metric",
    "method_a",
    "method_b",
    "n_pairs",
    "mean_a",
    "mean_b",
    "mean_diff",
    "p_wilcoxon",
    "p_ttest",
)


def parse_formula(text: str) -> Formula:
    """The formula of a fold; ``False`` for text that does not parse (an empty or foreign record)."""
    try:
        return Formula.parse(text)
    except ValueError:
        return Formula.false()


def _present(folds: pd.DataFrame, names: Sequence[str]) -> list[str]:
    return [name for name in names if name in folds]


def _formula_metrics(metrics: MetricSet) -> list[str]:
    return [m.name for m in metrics.at("fold") if "formula" in m.needs]


def explained(folds: pd.DataFrame, metrics: MetricSet = METRICS) -> pd.Series:
    """Per fold row: does it have an explanation? No when every explanation *score* (a formula-needing metric
    where higher is better, e.g. explanation accuracy, which any formula gets) is NaN, as for ``rf``."""
    scores = _present(
        folds, [m.name for m in metrics.at("fold") if "formula" in m.needs and m.higher_is_better]
    )
    if not scores:
        return pd.Series(True, index=folds.index)
    return folds[scores].notna().any(axis=1)


def blank_missing_explanations(folds: pd.DataFrame, metrics: MetricSet = METRICS) -> pd.DataFrame:
    """Folds without an explanation (see :func:`explained`) get NaN in every metric that needs a formula
    (complexity, extraction time, ...), so that "no formula" never reads as "the simplest formula"."""
    columns = _present(folds, _formula_metrics(metrics))
    if not columns:
        return folds
    folds = folds.copy()
    folds.loc[~explained(folds, metrics), columns] = float("nan")
    return folds


def summary_table(folds: pd.DataFrame, by: Sequence[str], metrics: MetricSet = METRICS) -> pd.DataFrame:
    """Per group: ``<metric>_mean`` / ``<metric>_sem`` over its fold rows (NaN rows skipped), every job-level
    metric of the set over the group's explained formulas (e.g. consistency), ``n_runs`` and ``n_folds``."""
    records = []
    for key, group in folds.groupby(list(by), sort=True):
        key = key if isinstance(key, tuple) else (key,)
        record: dict[str, Any] = dict(zip(by, key, strict=True))
        for metric in _present(group, metrics.fold_names):
            values = group[metric].dropna().tolist()  # NaN: undefined on that fold (e.g. rf's formula)
            mean, sem = mean_and_sem(values) if values else (float("nan"), float("nan"))
            record[f"{metric}_mean"], record[f"{metric}_sem"] = mean, sem
        formulas = group.loc[explained(group, metrics), "formula"]
        record.update(metrics.score_job(JobEvidence([parse_formula(f) for f in formulas])))
        record["n_runs"] = group["run_id"].nunique()
        record["n_folds"] = len(group)
        records.append(record)
    return pd.DataFrame(records)


def seed_consistency(folds: pd.DataFrame, metrics: MetricSet = METRICS) -> pd.DataFrame:
    """Per method: for each fold, consistency of that fold's formulas across seeds; mean over folds. Also the
    spread of the results across seeds for every headline compared metric: ``<metric>_seed_sd``, the standard
    deviation (ddof=1) over seeds of each seed's mean over folds (NaN with a single seed)."""
    spread = _present(folds, [m.name for m in metrics.at("fold") if m.headline and m.compared])
    records = []
    for method, group in folds.groupby("method"):
        per_fold = [
            consistency([parse_formula(f) for f in g["formula"]])
            for _, g in group.groupby("fold")
            if g["seed"].nunique() > 1
        ]
        record: dict[str, Any] = {
            "method": method,
            "seed_consistency": float(np.mean(per_fold)) if per_fold else float("nan"),
            "n_seeds": group["seed"].nunique(),
        }
        for metric in spread:
            per_seed = group.groupby("seed")[metric].mean().dropna()
            record[f"{metric}_seed_sd"] = float(per_seed.std(ddof=1)) if len(per_seed) > 1 else float("nan")
        records.append(record)
    return pd.DataFrame(records)


def paired_p(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sided p-values of the Wilcoxon signed-rank test and the paired t-test of ``a`` against ``b``.

    NaN with fewer than two pairs; 1.0 for both when every difference is 0 (identical results are no evidence of a
    difference; both tests are undefined there). Wilcoxon drops zero differences (scipy's default).
    """
    from scipy import stats

    if len(a) < 2:
        return float("nan"), float("nan")
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if np.all(diff == 0):
        return 1.0, 1.0
    with warnings.catch_warnings():
        # Small samples, ties, zero variance: scipy warns; the p-value (or NaN) already says it.
        warnings.simplefilter("ignore")
        try:
            p_wilcoxon = float(stats.wilcoxon(a, b).pvalue)
        except ValueError:
            p_wilcoxon = float("nan")
        p_ttest = float(stats.ttest_rel(a, b).pvalue)
    return p_wilcoxon, p_ttest


def _per_fold(folds: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """One value per (method, seed, fold): runs that repeat a configuration are averaged, not double counted."""
    return folds.groupby(["method", "seed", "fold"])[_present(folds, metrics)].mean()


def _pair(per_fold: pd.DataFrame, a: str, b: str, metric: str) -> pd.DataFrame:
    """The folds both methods ran (same seed and fold) with the metric defined for both."""
    left = per_fold.loc[a, metric].rename("a")
    right = per_fold.loc[b, metric].rename("b")
    return pd.concat([left, right], axis=1, join="inner").dropna()


def _pair_row(per_fold: pd.DataFrame, a: str, b: str, metric: str) -> dict[str, Any]:
    pairs = _pair(per_fold, a, b, metric)
    p_wilcoxon, p_ttest = paired_p(pairs["a"].to_numpy(), pairs["b"].to_numpy())
    n = len(pairs)
    return {
        "metric": metric,
        "method_a": a,
        "method_b": b,
        "n_pairs": n,
        "mean_a": float(pairs["a"].mean()) if n else float("nan"),
        "mean_b": float(pairs["b"].mean()) if n else float("nan"),
        "mean_diff": float((pairs["a"] - pairs["b"]).mean()) if n else float("nan"),
        "p_wilcoxon": p_wilcoxon,
        "p_ttest": p_ttest,
    }


def paired_tests(folds: pd.DataFrame, metrics: MetricSet | Sequence[str] = METRICS) -> pd.DataFrame:
    """Every pair of methods on every compared metric (a :class:`MetricSet`'s ``compared_names``, or the given
    names): folds paired by (seed, fold), Wilcoxon and paired t p-values.

    ``mean_diff`` is the mean of ``method_a - method_b`` over the pairs. With 5 folds the exact Wilcoxon test
    cannot go below p = 0.0625 (two-sided), with 10 folds below 0.002: read its p-values with the pair count.
    """
    names = metrics.compared_names if isinstance(metrics, MetricSet) else list(metrics)
    if folds.empty:
        return pd.DataFrame(columns=list(PAIRED_COLUMNS))
    per_fold = _per_fold(folds, names)
    methods = sorted(per_fold.index.get_level_values("method").unique())
    rows = [
        _pair_row(per_fold, a, b, metric) for metric in per_fold.columns for a, b in combinations(methods, 2)
    ]
    return pd.DataFrame(rows, columns=list(PAIRED_COLUMNS))


def compare_with_best(
    folds: pd.DataFrame, by_method: pd.DataFrame, metrics: MetricSet = METRICS
) -> pd.DataFrame:
    """Per method and compared metric: the best method on it (highest mean; lowest where the registry says lower
    is better) and the paired p-values of this method against it, as ``<metric>_best``,
    ``<metric>_p_wilcoxon``, ``<metric>_p_ttest`` (NaN for the best method itself and where no pair exists)."""
    out = pd.DataFrame({"method": by_method["method"]})
    if folds.empty:
        return out
    per_fold = _per_fold(folds, metrics.compared_names)
    for metric in per_fold.columns:
        means = by_method.set_index("method")[f"{metric}_mean"].dropna()
        if means.empty:
            continue
        best = str(means.idxmin() if metric in metrics.lower_is_better else means.idxmax())
        p_w, p_t = [], []
        for method in out["method"]:
            pairs = (
                _pair(per_fold, method, best, metric) if method != best and method in means.index else None
            )
            w, t = (
                (float("nan"), float("nan"))
                if pairs is None
                else paired_p(pairs["a"].to_numpy(), pairs["b"].to_numpy())
            )
            p_w.append(w)
            p_t.append(t)
        out[f"{metric}_best"] = best
        out[f"{metric}_p_wilcoxon"] = p_w
        out[f"{metric}_p_ttest"] = p_t
    return out
