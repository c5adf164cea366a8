"""Comparisons between rows (experiments) of one study, and across studies: pure functions over the fold table.

Pairs are test folds (seeds averaged first); each pair of rows is tested on the folds both have with the corrected
resampled t-test (Nadeau and Bengio 2003) and the Wilcoxon signed-rank test, Holm-adjusted over one metric's
comparisons in one study (:data:`HOLM_FAMILY`: a column of a summary table; some metrics coincide by construction,
so a family over all metrics would adjust for questions no reader asks jointly). The best row is chosen on the folds
*every* compared row has, so no row wins on an easier sample. Only the registry's ``compared`` scores are tested.
Across studies: average ranks, the Friedman test and the Nemenyi critical difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from typing import Any

import pandas as pd

from lenbench.report import significance as sig
from lenbench.report.stats import unit_values
from lenbench.scoring import METRICS, MetricSet

TESTS = ("p_corrected_t", "p_wilcoxon", "p_corrected_t_holm", "p_wilcoxon_holm", "p_wilcoxon_floor")
PAIR_KEYS = ("study", "metric", "row_a", "row_b")
PAIR_COLUMNS = (*PAIR_KEYS, "n_pairs", "mean_a", "mean_b", "mean_diff", "t_corrected", *TESTS)
NAN = float("nan")
#: The level a reader judges significance at: a Wilcoxon test whose floor is above it is not shown as a p-value.
ALPHA = 0.05
#: The comparisons one Holm adjustment covers: those of one metric in one study (a column of a summary table,
#: or all pairs of rows on one metric).
HOLM_FAMILY = ("study", "metric")
LONG_KEYS = ("study", "row", "metric", "best", "best_n", "compared")


def compared_names(metrics: MetricSet | Sequence[str]) -> list[str]:
    """The metrics that are tested: the registry's ``compared`` scores with a direction (never a time)."""
    if not isinstance(metrics, MetricSet):
        return list(metrics)
    return [m.name for m in metrics.at("fold") if m.compared and m.higher_is_better is not None]


def holdout_ratio(folds: pd.DataFrame, study: str) -> float:
    """``n_test / n_train`` of a study's k-fold CV, ``1 / (k - 1)`` (train+validation rows are the training rows);
    NaN when k is unknown, and then no t-test is computed."""
    k = folds.loc[folds["study"] == study, "n_splits"].max() if "n_splits" in folds else 0
    return 1.0 / (k - 1) if k and k > 1 else NAN


def pair_test(a: pd.Series, b: pd.Series, ratio: float) -> dict[str, Any]:
    """Test two rows' per-test-fold values on the folds both have (both defined)."""
    pairs = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner").dropna()
    diff = (pairs["a"] - pairs["b"]).to_numpy()
    t = sig.corrected_resampled_ttest(diff, ratio if ratio == ratio else -1.0)
    n = len(pairs)
    return {
        "n_pairs": n,
        "mean_a": float(pairs["a"].mean()) if n else NAN,
        "mean_b": float(pairs["b"].mean()) if n else NAN,
        "mean_diff": float(diff.mean()) if n else NAN,
        "t_corrected": t.t,
        "p_corrected_t": t.p,
        "p_wilcoxon": sig.wilcoxon_p(diff),
    }


def _rows_of(values: pd.DataFrame, study: str) -> list[str]:
    return sorted(values.loc[study].index.get_level_values("row").unique())


def _series(values: pd.DataFrame, study: str, row: str, metric: str) -> pd.Series:
    return values.loc[(study, row), metric]


def add_holm(table: pd.DataFrame, family: Sequence[str] = HOLM_FAMILY) -> pd.DataFrame:
    """``p_corrected_t_holm`` and ``p_wilcoxon_holm``: each test's p-values Holm-adjusted within each family of
    comparisons, the rows of ``table`` sharing the ``family`` columns (one metric of one study: a column of a summary
    table); ``p_wilcoxon_floor``: the smallest adjusted Wilcoxon p the test could reach at its n in its family."""
    pairs = zip(table["n_pairs"], table["p_wilcoxon"], strict=True)
    table = table.assign(_floor=[sig.wilcoxon_floor(int(n)) if p == p else NAN for n, p in pairs])
    adjust = {"p_corrected_t_holm": ("p_corrected_t", sig.holm), "p_wilcoxon_holm": ("p_wilcoxon", sig.holm)}
    adjust["p_wilcoxon_floor"] = ("_floor", sig.holm_floor)
    groups = table.groupby(list(family), sort=False)
    for name, (column, function) in adjust.items():
        table[name] = groups[column].transform(lambda v, f=function: f(v.to_numpy(dtype=float)))
    return table.drop(columns="_floor")


def paired_tests(folds: pd.DataFrame, metrics: MetricSet | Sequence[str] = METRICS) -> pd.DataFrame:
    """Every pair of rows of each study on every tested metric: mean difference ``row_a - row_b`` over their
    common test folds, corrected resampled t and Wilcoxon p-values, Holm-adjusted over each metric's pairs in
    each study."""
    names = compared_names(metrics)
    if folds.empty or not names:
        return pd.DataFrame(columns=list(PAIR_COLUMNS))
    values = unit_values(folds, names)
    records = []
    for study in sorted(folds["study"].unique()):
        ratio = holdout_ratio(folds, study)
        for metric in values.columns:
            for a, b in combinations(_rows_of(values, study), 2):
                test = pair_test(_series(values, study, a, metric), _series(values, study, b, metric), ratio)
                records.append({"study": study, "metric": metric, "row_a": a, "row_b": b, **test})
    return add_holm(pd.DataFrame(records, columns=list(PAIR_COLUMNS[:-3])))[list(PAIR_COLUMNS)]


def best_on_common_folds(
    values: pd.DataFrame, study: str, metric: str, lower_is_better: bool
) -> tuple[str | None, int, list[str]]:
    """The best row of a study on one metric, judged on the test folds every compared row has; how many such
    folds there are; and the compared rows. When no fold is common to all rows with the metric, the row with the
    fewest folds is left out (it is not compared: it ran on other folds) until some are; ``(None, 0, [])`` when
    no row has the metric."""
    table = values.loc[study, metric].unstack("row").dropna(axis=1, how="all")
    rows = sorted(table.columns)
    while rows:
        common = table[rows].dropna(axis=0, how="any")
        if len(common):
            means = common.mean()
            return str(means.idxmin() if lower_is_better else means.idxmax()), len(common), rows
        counts = table[rows].notna().sum()
        rows.remove(str(counts.sort_values(kind="stable").index[0]))
    return None, 0, []


def compare_with_best(folds: pd.DataFrame, metrics: MetricSet = METRICS) -> pd.DataFrame:
    """Per row and tested metric: the study's best row on it (:func:`best_on_common_folds`), the number of test
    folds it was chosen on, whether this row took part (``<metric>_compared``: False for a row run on other
    folds), and this row's tests against it (``<metric>_best``, ``<metric>_best_n``, ``<metric>_n_pairs``,
    ``<metric>_p_corrected_t``, ``<metric>_p_wilcoxon``, both ``*_holm``, adjusted over the column's
    comparisons, and ``<metric>_p_wilcoxon_floor``). NaN for the best row itself and rows not compared."""
    names = compared_names(metrics)
    keys = folds[["study", "row"]].drop_duplicates().sort_values(["study", "row"]).reset_index(drop=True)
    if folds.empty or not names:
        return keys
    values = unit_values(folds, names)
    long = []
    for study in keys["study"].unique():
        ratio = holdout_ratio(folds, study)
        for metric in values.columns:
            best, n_common, compared = best_on_common_folds(
                values, study, metric, metric in metrics.lower_is_better
            )
            for row in _rows_of(values, study):
                record = {"study": study, "row": row, "metric": metric, "best": best, "best_n": n_common}
                record["compared"] = row in compared
                if best is not None and row != best and row in compared:
                    target = _series(values, study, best, metric)
                    record.update(pair_test(_series(values, study, row, metric), target, ratio))
                long.append(record)
    return _wide(add_holm(pd.DataFrame(long).reindex(columns=[*LONG_KEYS, *PAIR_COLUMNS[4:11]])), keys)


def _wide(long: pd.DataFrame, keys: pd.DataFrame) -> pd.DataFrame:
    # best, best_n, compared, n_pairs and the tests: what compare_with_best adds per metric, joined once.
    fields = [*LONG_KEYS[3:], "n_pairs", *TESTS]
    by_metric = long.groupby("metric", sort=False)
    parts = [
        group.set_index(["study", "row"])[fields].add_prefix(f"{metric}_") for metric, group in by_metric
    ]
    return keys.merge(pd.concat(parts, axis=1), left_on=["study", "row"], right_index=True, how="left")


def across_studies(by_row: pd.DataFrame, metrics: MetricSet = METRICS) -> dict[str, Any]:
    """Across data sets (studies): for each headline tested metric, the rows (matched by name) that every study
    has, their average ranks over the studies, the Friedman test and the Nemenyi critical difference (alpha
    0.05). Empty with fewer than two studies; a metric is left out with fewer than three common rows."""
    studies = sorted(by_row["study"].unique()) if len(by_row) else []
    if len(studies) < 2:
        return {}
    out: dict[str, Any] = {}
    for metric in [m for m in metrics.at("fold") if m.headline and m.name in compared_names(metrics)]:
        table = by_row.pivot_table(
            index="study", columns="row", values=f"{metric.name}_mean", aggfunc="first"
        )
        table = table.dropna(axis=1, how="any")
        # Two rows: the Friedman test is not the test (Demšar: Wilcoxon over data sets).
        if table.shape[1] < 3:
            continue
        scores = table.to_numpy(dtype=float)
        ranks = sig.average_ranks(scores, bool(metric.higher_is_better))
        out[metric.name] = {
            "rows": list(table.columns),
            "average_ranks": dict(zip(table.columns, map(float, ranks), strict=True)),
            "friedman": sig.friedman(scores, bool(metric.higher_is_better)),
            "cd": sig.nemenyi_cd(table.shape[1], table.shape[0]),
            "n_studies": table.shape[0],
            "studies": list(table.index),
        }
    return out


def ranks_table(ranks: dict[str, Any], metrics: MetricSet = METRICS) -> pd.DataFrame:
    """The across-studies result as one table: per metric and row, its average rank; Friedman and CD alongside."""
    records = [
        {
            "metric": name,
            "row": row,
            "average_rank": rank,
            "n_studies": result["n_studies"],
            "friedman_chi2": result["friedman"].chi2,
            "friedman_p": result["friedman"].p_chi2,
            "iman_davenport_p": result["friedman"].p_f,
            "nemenyi_cd": result["cd"],
        }
        for name, result in ranks.items()
        for row, rank in sorted(result["average_ranks"].items(), key=lambda item: item[1])
    ]
    return pd.DataFrame(records)
