"""The report's figures comparing rows (experiments), matplotlib; returned, saved by ``publish``: explanation
accuracy against complexity, the per-fold values, literal frequencies, critical-difference diagrams across studies,
and, per study with concept interventions, the intervention curves.

Every figure has a title (the study and, when fewer ran than its CV has, its folds) and says its n (test folds x
seeds per row); an accuracy is drawn with its registry ``baseline``; no legend covers data; axes are linear, log with
log ticks, or say that they are symmetric-log. The per-job figure is :mod:`lenbench.tracking.plots`.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

import numpy as np
import pandas as pd

from lenbench.logic.formula import Formula
from lenbench.names import file_name
from lenbench.report.compare import compared_names
from lenbench.report.stats import UNIT, parse_formula, study_titles
from lenbench.scoring import METRICS, Metric, MetricSet, intervention_points
from lenbench.tracking.pareto_plots import pyplot

ACCURACY, COMPLEXITY = "explanation_accuracy", "explanation_complexity"
TOP_CONCEPTS = 6  # per row, for the concept-frequency figure
MAX_CONCEPTS = 30


def _axis_label(metrics: MetricSet, name: str) -> str:
    label, unit = metrics[name].label, metrics[name].unit
    return f"{label} ({unit})" if unit and unit not in label else label


def _n(row: pd.Series) -> str:
    return f"n={int(row['n_folds'])}×{int(row['n_seeds'])}"


def _wrap(text: str, width: int = 18) -> str:
    return "\n".join(textwrap.wrap(text, width)) or text


def baseline_value(folds: pd.DataFrame, study: str, metric: Metric) -> float | None:
    """The mean over a study's test folds of the metric's registry baseline (NaN-free), or None."""
    if not metric.baseline or metric.baseline not in folds:
        return None
    values = folds[folds["study"] == study].groupby(list(UNIT))[metric.baseline].mean().dropna()
    return float(values.mean()) if len(values) else None


def _draw_baseline(ax: Any, value: float | None, metrics: MetricSet, metric: Metric) -> str:
    """The baseline as a dashed line; returns its label ("" when there is none)."""
    if value is None:
        return ""
    label = f"{metrics[metric.baseline].label}: {value:.3f}" if metric.baseline in metrics else f"{value:.3f}"
    ax.axhline(value, color="0.3", linestyle="--", linewidth=1, label=label, zorder=0)
    return label


def _complexity_axis(ax: Any, values: np.ndarray) -> str:
    """Log scale with log ticks when every complexity is positive; otherwise symmetric-log (linear below 1),
    which the axis label says. Returns the scale's note for the label."""
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    finite = values[np.isfinite(values)]
    if len(finite) and (finite > 0).all() and finite.max() < 10 * finite.min():
        return "linear scale"  # within one decade a log axis would show no tick label at all
    if len(finite) and (finite > 0).all():
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10))
        ax.xaxis.set_minor_locator(LogLocator(base=10, subs=np.arange(2, 10)))
        ax.xaxis.set_minor_formatter(NullFormatter())
        return "log scale"
    ax.set_xscale("symlog", linthresh=1, linscale=0.5)
    ax.xaxis.set_major_formatter(ScalarFormatter())
    return "symmetric log: linear in [0, 1], log above"


def _value_axis(ax: Any, values: np.ndarray) -> str:
    """A y axis over values spanning more than two orders of magnitude (complexity: 1 to 1000 literals) is
    logarithmic (symmetric-log, linear below 1, when a value is 0); returns the note for the axis label."""
    finite = values[np.isfinite(values)]
    positive = finite[finite > 0]
    if not len(positive) or (finite < 0).any() or positive.max() / max(positive.min(), 1e-12) < 100:
        return ""
    if (finite > 0).all():
        ax.set_yscale("log")
        return "log scale"
    from matplotlib.ticker import ScalarFormatter

    ax.set_yscale("symlog", linthresh=1, linscale=0.5)
    ax.yaxis.set_major_formatter(ScalarFormatter())
    return "symmetric log scale\n(linear in [0, 1])"


# Characters per legend line: row names carry their settings and can be long.
LEGEND_WIDTH = 70
# Panels per figure row: a suite of eight studies in one row made a figure too wide to read.
MAX_PANELS_PER_ROW = 3


def _study_grid(n_studies: int, width: float, height: float) -> tuple[Any, list[Any]]:
    """A figure with one panel per study, at most :data:`MAX_PANELS_PER_ROW` a row; unused panels hidden."""
    n_cols = max(1, min(n_studies, MAX_PANELS_PER_ROW))
    n_rows = -(-max(n_studies, 1) // n_cols)
    fig, axes = pyplot().subplots(
        n_rows, n_cols, figsize=(width * n_cols, height * n_rows), constrained_layout=True, squeeze=False
    )
    flat = list(axes.flat)
    for ax in flat[n_studies:]:
        ax.set_axis_off()
    return fig, flat[:n_studies]


def accuracy_vs_complexity(by_row: pd.DataFrame, folds: pd.DataFrame, metrics: MetricSet = METRICS) -> Any:
    """Mean ± sem of explanation accuracy against complexity, one point per row, one panel per study; the
    majority-class accuracy of the study's test folds as a dashed line."""
    studies, titles = sorted(by_row["study"].unique()), study_titles(by_row)
    fig, axes = _study_grid(len(studies), 6.5, 7.0)
    for ax, study in zip(axes, studies, strict=False):
        table = by_row[(by_row["study"] == study) & by_row[f"{ACCURACY}_mean"].notna()]
        for _, row in table.iterrows():
            x, dx = row[f"{COMPLEXITY}_mean"], row[f"{COMPLEXITY}_sem"]
            y, dy = row[f"{ACCURACY}_mean"], row[f"{ACCURACY}_sem"]
            lower = min(dx, x * 0.999) if dx == dx and x > 0 else dx  # a log axis has no room below 0
            xerr = None if dx != dx else [[lower], [dx]]
            yerr = None if dy != dy else dy
            label = textwrap.fill(f"{row['row']} ({_n(row)})", LEGEND_WIDTH)
            ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o", capsize=3, label=label)
        scale = _complexity_axis(ax, table[f"{COMPLEXITY}_mean"].to_numpy(dtype=float))
        _draw_baseline(ax, baseline_value(folds, study, metrics[ACCURACY]), metrics, metrics[ACCURACY])
        ax.set_xlabel(f"{_axis_label(metrics, COMPLEXITY)}, {scale}")
        ax.set_ylabel(_axis_label(metrics, ACCURACY))
        ax.set_title(f"{titles[study]}\nmean ± sem over test folds (n = folds × seeds)", fontsize=9)
        # Below the panel, long row names wrapped: beside it, a report's long settings ran into the next panel.
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1)
    fig.suptitle("Explanation accuracy against complexity")
    return fig


def fold_spread(folds: pd.DataFrame, by_row: pd.DataFrame, metrics: MetricSet = METRICS) -> Any:
    """Per study and headline tested metric: a box plot per row of its per-test-fold values (seeds averaged on
    each fold), the folds as dots, the baseline where the metric has one, named in the title (a legend in the
    panel covered a fold)."""
    shown = [
        m for m in metrics.at("fold") if m.headline and m.name in compared_names(metrics) and m.name in folds
    ]
    studies, titles = sorted(folds["study"].unique()), study_titles(by_row)
    n_rows = max(by_row.groupby("study").size().max(), 1)
    n_cols = max(len(shown), 1)
    size = (max(3.2, 0.55 * n_rows + 1.2) * n_cols, 4.4 * len(studies))
    fig, axes = pyplot().subplots(len(studies), n_cols, figsize=size, constrained_layout=True, squeeze=False)
    for axes_row, study in zip(axes, studies, strict=True):
        part = folds[folds["study"] == study]
        rows = by_row[by_row["study"] == study].set_index("row")
        names = sorted(rows.index)
        per_unit = part.groupby(["row", *UNIT])[[m.name for m in shown]].mean()
        for ax, metric in zip(axes_row, shown, strict=False):
            data = [
                per_unit.loc[r, metric.name].dropna() if r in per_unit.index else pd.Series() for r in names
            ]
            labels = [_wrap(f"{r} ({_n(rows.loc[r])})") for r in names]
            ax.boxplot(data, tick_labels=labels, widths=0.6, showfliers=False)  # every fold is a dot
            for i, values in enumerate(data, start=1):
                ax.plot(
                    np.full(len(values), i) + np.linspace(-0.12, 0.12, len(values)), values, ".", alpha=0.6
                )
                if values.empty:  # e.g. a formula metric of a method without formulas
                    ax.text(i, 0.5, "n/a", ha="center", transform=ax.get_xaxis_transform(), fontsize=8)
            baseline = _draw_baseline(ax, baseline_value(folds, study, metric), metrics, metric)
            ax.set_ylabel(_value_axis(ax, pd.concat(data).to_numpy(dtype=float) if data else np.array([])))
            below = f"\ndashed line: {baseline}" if baseline else ""
            ax.set_title(f"{_axis_label(metrics, metric.name)}\n{titles[study]}{below}", fontsize=9)
            ax.tick_params(axis="x", labelsize=7, labelrotation=90)
    fig.suptitle("Per test fold (model seeds averaged on each fold); n = test folds × seeds")
    return fig


def _literals(formula: Formula) -> set[str]:
    """The literals a formula uses, with their sign (``~stroke_flg`` is not ``stroke_flg``)."""
    return {f"~{name}" if negated else name for term in formula.terms for name, negated in term}


def _frequencies(folds: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, float], int]:
    """Per row: the fraction of its formulas (folds x seeds) that use each literal, the mean number of distinct
    literals a formula uses, and the number of formulas (rows without any formula are not columns)."""
    columns, sizes, counts = {}, {}, {}
    for row, group in folds.groupby("row"):
        formulas = [parse_formula(f) for f in group["formula"].dropna()]
        if "explanation_accuracy" in group:
            formulas = [
                f for f, ok in zip(formulas, group["explanation_accuracy"].notna(), strict=False) if ok
            ]
        if not formulas:
            continue
        columns[row] = pd.Series([c for f in formulas for c in _literals(f)]).value_counts() / len(formulas)
        sizes[row] = float(np.mean([len(_literals(f)) for f in formulas]))
        counts[row] = len(formulas)
    return pd.DataFrame(columns).fillna(0.0), sizes, counts


def _chosen_concepts(table: pd.DataFrame) -> list[str]:
    """Each row's most frequent concepts (ties broken by how often all rows use them), at most
    :data:`MAX_CONCEPTS`, ordered by overall frequency."""
    overall = table.mean(axis=1)
    chosen: list[str] = []
    for row in table.columns:
        ranked = pd.DataFrame({"f": table[row], "o": overall}).sort_values(["f", "o"], ascending=False)
        chosen += [c for c in ranked.index[:TOP_CONCEPTS] if ranked.loc[c, "f"] > 0]
    unique = list(dict.fromkeys(chosen))
    return sorted(unique, key=lambda c: -overall[c])[:MAX_CONCEPTS]


def concept_frequency(folds: pd.DataFrame, titles: dict[str, str]) -> Any:
    """Per study, a heat map: literals (each row's most frequent ones, ``~`` for a negated concept) x rows, the
    fraction of the row's formulas using the literal; column headers give the formula count and the mean literals
    per formula, so a method that uses nearly every concept (the tree) shows as such. Rows without explanations
    are named below the panel."""
    studies = sorted(folds["study"].unique())
    fig, axes = _study_grid(len(studies), max(6.0, 1.1 * folds["row"].nunique() + 3), 9)
    for ax, study in zip(axes, studies, strict=False):
        part = folds[folds["study"] == study]
        table, sizes, counts = _frequencies(part)
        left_out = sorted(set(part["row"]) - set(table.columns))
        if table.empty:
            ax.text(0.5, 0.5, "no row of this study has explanations", ha="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        concepts = _chosen_concepts(table)
        shown = table.loc[concepts]
        image = ax.imshow(shown.to_numpy(), aspect="auto", cmap="Blues", vmin=0, vmax=1)
        for (i, j), value in np.ndenumerate(shown.to_numpy()):
            color = "white" if value > 0.6 else "black"
            ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=6, color=color)
        ax.set_yticks(range(len(concepts)), concepts, fontsize=7)
        headers = [
            _wrap(f"{r} ({counts[r]} formula{'s' * (counts[r] != 1)}, {sizes[r]:.1f} literals each)", 13)
            for r in shown.columns
        ]
        ax.set_xticks(range(len(shown.columns)), headers, fontsize=7)
        ax.set_title(titles.get(study, study), fontsize=9)
        if left_out:
            ax.set_xlabel("left out (no explanations): " + ", ".join(left_out), fontsize=8)
        fig.colorbar(image, ax=ax, shrink=0.6, label="fraction of the row's formulas using the literal")
    fig.suptitle(
        "Literals in the explanations (each row's most frequent; all formulas of its folds and seeds)"
    )
    return fig


def critical_difference(result: dict[str, Any], title: str) -> Any:
    """Demšar's (2006) critical-difference diagram: rows on an axis of average rank (1 = best, left), rows whose
    ranks differ by less than the Nemenyi CD joined by a bar."""
    ranks = sorted(result["average_ranks"].items(), key=lambda item: item[1])
    k, cd = len(ranks), result["cd"]
    fig, ax = pyplot().subplots(figsize=(7.5, 1.6 + 0.32 * k), constrained_layout=True)
    ax.set_xlim(0.5, k + 0.5)
    ax.set_ylim(-(k // 2 + 2.5), 2.2)
    ax.axhline(0, color="black", linewidth=1)
    for r in range(1, k + 1):
        ax.plot([r, r], [0, 0.15], color="black", linewidth=1)
        ax.text(r, 0.3, str(r), ha="center", fontsize=8)
    ax.plot([1, 1 + cd], [1.3, 1.3], color="black", linewidth=2)
    ax.text(1 + cd / 2, 1.5, f"CD = {cd:.2f}", ha="center", fontsize=8)
    half = (k + 1) // 2
    for i, (name, rank) in enumerate(ranks):
        left = i < half
        depth = -(i + 1 if left else k - i)
        edge = 0.55 if left else k + 0.45
        ax.plot([rank, rank, edge], [0, depth, depth], color="0.2", linewidth=0.8)
        ax.text(edge, depth + 0.12, f"{name} ({rank:.2f})", ha="left" if left else "right", fontsize=8)
    level, drawn = -0.35, []
    for i in range(k):
        j = max(j for j in range(i, k) if ranks[j][1] - ranks[i][1] < cd)
        if j > i and not any(a <= i and j <= b for a, b in drawn):
            ax.plot([ranks[i][1] - 0.03, ranks[j][1] + 0.03], [level, level], color="red", linewidth=3)
            drawn.append((i, j))
            level -= 0.25
    ax.set_axis_off()
    ax.set_title(title, fontsize=9)
    return fig


MARKERS = "osD^v<>pX*"
ORDER_TITLES = {"random": "random order (one per seed)", "uncertain": "uncertain first (per row)"}


def intervention_columns(by_row: pd.DataFrame, metrics: MetricSet) -> dict[str, list[tuple[int, str]]]:
    """Per order, the (percent, metric) points of its curve (:func:`~lenbench.scoring.intervention_points`) that
    ``by_row`` has; {} when none."""
    curves = {
        order: [(p, name) for p, name in points if f"{name}_mean" in by_row]
        for order, points in intervention_points(metrics).items()
    }
    return {order: points for order, points in curves.items() if points}


def _references(table: pd.DataFrame, names: list[str], metrics: MetricSet) -> pd.DataFrame:
    """The study's accuracy references: rows with a model accuracy, no intervention value and no explanation (a
    black box on raw inputs): its ceiling lines."""
    scores = [f"{m.name}_mean" for m in metrics.at("fold") if "formula" in m.needs and m.higher_is_better]
    empty = [c for c in [*(f"{n}_mean" for n in names), *scores] if c in table]
    if "model_accuracy_mean" not in table:
        return table.iloc[:0]
    return table[table[empty].isna().all(axis=1) & table["model_accuracy_mean"].notna()]


def intervention_curves(by_row: pd.DataFrame, folds: pd.DataFrame, study: str, metrics: MetricSet) -> Any:
    """One study's intervention curves, a panel per order: task accuracy (mean ± sem over test folds) against the
    share of concepts set to their true values, a line per row that can be intervened on; the accuracy references
    (black box) as dotted ceiling lines, the majority class dashed; one legend below both."""
    curves = intervention_columns(by_row, metrics)
    names = sorted({name for points in curves.values() for _, name in points})
    table = by_row[by_row["study"] == study]
    shown = table[table[[f"{n}_mean" for n in names]].notna().any(axis=1)]
    fig, axes = pyplot().subplots(
        1, len(curves), figsize=(5.6 * len(curves), 6.2), sharey=True, constrained_layout=True, squeeze=False
    )
    for ax, (order, points) in zip(axes[0], curves.items(), strict=True):
        percents = [p for p, _ in points]
        x = np.array(percents, dtype=float)
        for i, (_, row) in enumerate(shown.iterrows()):
            y = [row[f"{n}_mean"] for _, n in points]
            err = [row[f"{n}_sem"] for _, n in points]
            label = textwrap.fill(f"{row['row']} ({_n(row)})", LEGEND_WIDTH // 2)
            # Rows often end on the same accuracies: each its own marker, and nudged sideways, stays visible.
            nudge = (i - (len(shown) - 1) / 2) * min(1.5, 6.0 / max(len(shown), 1))
            ax.errorbar(x + nudge, y, yerr=err, marker=MARKERS[i % len(MARKERS)], capsize=3, label=label)
        for _, ref in _references(table, names, metrics).iterrows():
            value = ref["model_accuracy_mean"]
            label = textwrap.fill(f"ceiling: {ref['row']} ({_n(ref)}): {value:.3f}", LEGEND_WIDTH // 2)
            ax.axhline(value, color="0.1", linestyle=":", linewidth=1.2, label=label, zorder=0)
        metric = metrics[points[0][1]]
        _draw_baseline(ax, baseline_value(folds, study, metric), metrics, metric)
        ax.set_xticks(x, [f"{p}%" for p in percents], fontsize=8)
        ax.set_xlabel(
            "share of concepts set to their true values\n(nearest whole concept; lines nudged apart)"
        )
        ax.set_title(ORDER_TITLES.get(order, order), fontsize=9)
    axes[0][0].set_ylabel("task accuracy on the test rows")
    # One legend for both panels (the same rows, colours and lines), below them: none covers a curve.
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="outside lower center", fontsize=7, ncol=2)
    fig.suptitle(
        f"Concept interventions: {study_titles(by_row)[study]}\nmean ± sem over test folds (n = folds × seeds)",
        fontsize=10,
    )
    return fig


def file_stem(study: str) -> str:
    """A study's name as part of a file name (``trig / y / 3-fold``: ``trig_y_3-fold``), through
    :func:`lenbench.names.file_name` like every name lenbench writes a file under (a leading dot, a long name)."""
    return file_name(re.sub(r"[^A-Za-z0-9.-]+", "_", study).strip("_"))


def figures(
    folds: pd.DataFrame, by_row: pd.DataFrame, ranks: dict[str, Any], metrics: MetricSet = METRICS
) -> dict[str, Any]:
    """Every report figure by file name; the trade-off plot only when the set has both of its metrics, the
    intervention curves of each study some row of which has intervention values."""
    figs: dict[str, Any] = {}
    if ACCURACY in metrics and COMPLEXITY in metrics and f"{ACCURACY}_mean" in by_row:
        figs["accuracy_vs_complexity.png"] = accuracy_vs_complexity(by_row, folds, metrics)
    figs["fold_metrics.png"] = fold_spread(folds, by_row, metrics)
    figs["concept_frequency.png"] = concept_frequency(folds, study_titles(by_row))
    for name, result in ranks.items():
        f = result["friedman"]
        title = (
            f"{metrics[name].label}: average ranks over {result['n_studies']} data sets "
            f"(Friedman p = {f.p_chi2:.3g}; Nemenyi CD at alpha 0.05; n = data sets)"
        )
        figs[f"critical_difference_{name}.png"] = critical_difference(result, title)
    names = [n for points in intervention_columns(by_row, metrics).values() for _, n in points]
    for study, table in by_row.groupby("study"):
        if names and table[[f"{n}_mean" for n in names]].notna().any(axis=None):
            figs[f"intervention_curves_{file_stem(study)}.png"] = intervention_curves(
                by_row, folds, study, metrics
            )
    return figs
