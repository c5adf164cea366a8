"""The report's tables as text: CSV for machines, Markdown and LaTeX for people (no files written here).

CSV keeps the metric names as columns (``<metric>_mean``, ``<metric>_p_wilcoxon``, ...); the human tables show
``mean ± sem`` cells with each metric's digits and its label as the header, both from the registry.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from lenbench.scoring import METRICS, MetricSet


def p_text(value: float) -> str:
    return "nan" if value != value else ("<0.001" if value < 0.001 else f"{value:.3f}")


def _3(value: float) -> str:
    return f"{value:.3f}" if value == value else "n/a"


def _cells(table: pd.DataFrame, name: str, digits: int) -> list[str]:
    """``mean ± sem`` per row, ending with ``(best)`` or ``(p_wilcoxon/p_ttest)`` against the column's best
    method where the table holds those tests."""
    cells = [
        f"{m:.{digits}f} ± {s:.{digits}f}" if m == m else "n/a"
        for m, s in zip(table[f"{name}_mean"], table[f"{name}_sem"], strict=True)
    ]
    if f"{name}_p_wilcoxon" not in table:
        return cells
    means, best = table[f"{name}_mean"], table[f"{name}_best"]
    p_w, p_t = table[f"{name}_p_wilcoxon"], table[f"{name}_p_ttest"]
    for i in range(len(table)):
        if means.iloc[i] != means.iloc[i]:  # NaN: the metric is undefined for this method
            continue
        is_best = table["method"].iloc[i] == best.iloc[i]
        cells[i] += " (best)" if is_best else f" ({p_text(p_w.iloc[i])}/{p_text(p_t.iloc[i])})"
    return cells


def human_table(table: pd.DataFrame, keys: Sequence[str], metrics: MetricSet = METRICS) -> pd.DataFrame:
    """The summary for people, columns still named by metric: ``keys``, then every metric of the set in its
    order (fold metrics as ``mean ± sem`` cells, job-level ones as values), then ``seed_consistency``."""
    out = table[list(keys)].copy()
    for metric in metrics:
        if metric.level == "fold" and f"{metric.name}_mean" in table:
            out[metric.name] = _cells(table, metric.name, metric.digits)
        elif metric.level == "job" and metric.name in table:
            out[metric.name] = table[metric.name].map(metric.format)
    if "seed_consistency" in table:
        out["seed_consistency"] = table["seed_consistency"].map(_3)
    return out


def labelled(table: pd.DataFrame, metrics: MetricSet = METRICS) -> pd.DataFrame:
    """The same table with each metric column headed by its registry label."""
    return table.rename(columns={m.name: m.label for m in metrics if m.name in table})


def note(metrics: MetricSet = METRICS) -> str:
    """What the cells of the by-method table mean, and which metrics are not compared (not scores)."""
    untested = ", ".join(m.label for m in metrics.at("fold") if not m.compared)
    text = (
        "Cells: mean ± standard error over folds (pooled over seeds); (p_wilcoxon/p_ttest): two-sided p-values of "
        "the Wilcoxon signed-rank and paired t-tests against the column's best method, folds paired by (seed, "
        f"fold); all pairs in paired_tests.csv. Not compared (no score of the method): {untested or 'none'}."
    )
    if "majority_accuracy" in metrics:
        text += f" {metrics['majority_accuracy'].label}: always predicting the test fold's majority class."
    return text


def pairs_table(pairs: pd.DataFrame, metrics: MetricSet = METRICS) -> pd.DataFrame:
    """The paired tests for people: metric labels, 4-digit means, p-values as text."""
    out = pairs.copy()
    out["metric"] = out["metric"].map(lambda name: metrics[name].label if name in metrics else name)
    for column in ("mean_a", "mean_b", "mean_diff"):
        out[column] = out[column].map(lambda v: f"{v:.4f}")
    for column in ("p_wilcoxon", "p_ttest"):
        out[column] = out[column].map(p_text)
    return out


def to_markdown(table: pd.DataFrame) -> str:
    if _has_tabulate():
        return table.to_markdown(index=False) + "\n"
    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "---|" * len(table.columns)
    body = ["| " + " | ".join(map(str, row)) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


def summary_texts(
    name: str, table: pd.DataFrame, keys: Sequence[str], metrics: MetricSet = METRICS, with_note: bool = False
) -> dict[str, str]:
    """``<name>.csv``, ``<name>.md`` and ``<name>.tex`` of one summary table."""
    pretty = labelled(human_table(table, keys, metrics), metrics)
    extra = f"\n{note(metrics)}\n" if with_note else ""
    return {
        f"{name}.csv": table.to_csv(index=False),
        f"{name}.md": to_markdown(pretty) + extra,
        f"{name}.tex": pretty.to_latex(index=False),
    }


def pairs_texts(pairs: pd.DataFrame, metrics: MetricSet = METRICS) -> dict[str, str]:
    """``paired_tests.csv``, ``.md`` and ``.tex``."""
    pretty = pairs_table(pairs, metrics)
    return {
        "paired_tests.csv": pairs.to_csv(index=False),
        "paired_tests.md": to_markdown(pretty),
        "paired_tests.tex": pretty.to_latex(index=False),
    }
