"""The report's figures, comparing methods (matplotlib, Agg backend); returned as figures, saved by ``publish``.

- ``accuracy_vs_complexity.png``: the paper's trade-off, explanation accuracy against complexity per method;
- ``fold_metrics.png``: the spread over folds of every headline compared metric of the registry, per method;
- ``concept_frequency.png``: how often each concept appears in a method's explanations.

The per-job figure logged with each run is :mod:`lenbench.tracking.plots`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from lenbench.report.stats import parse_formula
from lenbench.scoring import METRICS, MetricSet

ACCURACY, COMPLEXITY = "explanation_accuracy", "explanation_complexity"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _axis_label(metrics: MetricSet, name: str) -> str:
    metric = metrics[name]
    return (
        f"{metric.label} ({metric.unit})" if metric.unit and metric.unit not in metric.label else metric.label
    )


def accuracy_vs_complexity(by_method: pd.DataFrame, metrics: MetricSet = METRICS) -> Any:
    """Mean ± sem of explanation accuracy against complexity, one point per method."""
    fig, ax = _pyplot().subplots(figsize=(5, 4), constrained_layout=True)
    for _, row in by_method.iterrows():
        ax.errorbar(
            row[f"{COMPLEXITY}_mean"],
            row[f"{ACCURACY}_mean"],
            xerr=row[f"{COMPLEXITY}_sem"],
            yerr=row[f"{ACCURACY}_sem"],
            fmt="o",
            capsize=3,
            label=row["method"],
        )
    ax.set_xscale("symlog")
    ax.set_xlabel(_axis_label(metrics, COMPLEXITY))
    ax.set_ylabel(_axis_label(metrics, ACCURACY))
    ax.legend(fontsize=8)
    return fig


def fold_spread(folds: pd.DataFrame, metrics: MetricSet = METRICS) -> Any:
    """One box plot per headline compared metric: its values over every fold and seed, per method."""
    shown = [m for m in metrics.at("fold") if m.headline and m.compared and m.name in folds]
    methods = sorted(folds["method"].unique())
    fig, axes = _pyplot().subplots(
        1, max(len(shown), 1), figsize=(4 * max(len(shown), 1), 3.5), constrained_layout=True, squeeze=False
    )
    for ax, metric in zip(axes[0], shown, strict=False):
        data = [folds.loc[folds["method"] == m, metric.name].dropna() for m in methods]
        ax.boxplot(data, tick_labels=methods)
        for i, values in enumerate(data, start=1):
            ax.plot(np.full(len(values), i) + np.linspace(-0.1, 0.1, len(values)), values, ".", alpha=0.6)
        ax.set_title(_axis_label(metrics, metric.name))
    return fig


def concept_frequency(folds: pd.DataFrame) -> Any:
    """Per method: the 15 concepts its explanations mention most, as the fraction of explanations naming them."""
    methods = sorted(folds["method"].unique())
    fig, axes = _pyplot().subplots(
        1, len(methods), figsize=(4 * len(methods), 4), constrained_layout=True, squeeze=False
    )
    for ax, method in zip(axes[0], methods, strict=True):
        formulas = [parse_formula(f) for f in folds.loc[folds["method"] == method, "formula"]]
        counts = pd.Series([c for f in formulas for c in f.concepts]).value_counts().head(15)
        ax.barh(counts.index[::-1], (counts / max(len(formulas), 1)).values[::-1])
        ax.set_title(method)
        ax.set_xlabel("fraction of explanations mentioning the concept")
        ax.tick_params(axis="y", labelsize=7)
    return fig


def figures(folds: pd.DataFrame, by_method: pd.DataFrame, metrics: MetricSet = METRICS) -> dict[str, Any]:
    """Every report figure by file name; the trade-off plot only when the set has both of its metrics."""
    figs: dict[str, Any] = {}
    if ACCURACY in metrics and COMPLEXITY in metrics:
        figs["accuracy_vs_complexity.png"] = accuracy_vs_complexity(by_method, metrics)
    figs["fold_metrics.png"] = fold_spread(folds, metrics)
    figs["concept_frequency.png"] = concept_frequency(folds)
    return figs
