"""Pareto figures (matplotlib, Agg): one study's ``pareto.png`` (:mod:`lenbench.tune.files`), and the report's
overlay of several methods' fronts (:mod:`lenbench.report.pareto`).

The horizontal axis is the minimised objective (complexity), the vertical the maximised one (explanation
accuracy); fronts are drawn as steps (what is reachable at each complexity), with the majority-class accuracy of the
same rows as a dashed line wherever an accuracy is drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lenbench.scoring import METRICS


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (files, no display): every figure lenbench draws goes through it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(figure: Any, path: Path) -> None:
    plt = pyplot()
    try:
        figure.savefig(path, dpi=120, bbox_inches="tight", pad_inches=0.15)
    finally:
        plt.close(figure)


def axes_of(objectives: Sequence[str], directions: Sequence[str]) -> tuple[str, str]:
    """(x, y): the minimised objective across, the maximised one up (the first two otherwise)."""
    pairs = list(zip(objectives, directions, strict=True))
    x = next((o for o, d in pairs if d == "minimize"), objectives[-1])
    y = next((o for o, d in pairs if d == "maximize" and o != x), objectives[0])
    return x, y


def _label(name: str) -> str:
    if name not in METRICS:
        return name
    metric = METRICS[name]
    return f"{metric.label} ({metric.unit})" if metric.unit else metric.label


def _steps(ax: Any, x: np.ndarray, y: np.ndarray, **style: Any) -> None:
    order = np.argsort(x)
    ax.step(x[order], y[order], where="post", **style)


def pareto_figure(
    trials: pd.DataFrame,
    front: pd.DataFrame,
    objectives: Sequence[str],
    directions: Sequence[str],
    title: str,
) -> Any:
    """Every trial (validation), the validation front, the members' test means with their sem, majority lines."""
    plt = pyplot()
    xname, yname = axes_of(objectives, directions)
    fig, ax = plt.subplots(figsize=(7, 4.8))
    done = trials[trials["state"] == "COMPLETE"] if len(trials) else trials
    if len(done):
        ax.scatter(done[f"val_{xname}"], done[f"val_{yname}"], s=18, color="0.7", label="trials (validation)")
    if len(front):
        fx, fy = front[f"val_{xname}"].to_numpy(float), front[f"val_{yname}"].to_numpy(float)
        _steps(ax, fx, fy, color="tab:blue", linewidth=1.5)
        ax.scatter(fx, fy, s=36, color="tab:blue", label="Pareto front (validation)", zorder=3)
    if len(front) and f"test_{yname}" in front:
        ax.errorbar(
            front[f"test_{xname}"],
            front[f"test_{yname}"],
            xerr=front.get(f"test_{xname}_sem"),
            yerr=front.get(f"test_{yname}_sem"),
            fmt="D",
            color="tab:orange",
            markersize=5,
            capsize=2,
            label="front members on the test folds (mean ± sem)",
            zorder=4,
        )
    for prefix, where, color in (("val_", "validation", "tab:blue"), ("test_", "test", "tab:orange")):
        column = f"{prefix}majority_accuracy"
        source = done if prefix == "val_" else front
        if yname.endswith("accuracy") and column in source and source[column].notna().any():
            value = float(source[column].mean())
            ax.axhline(
                value,
                color=color,
                linestyle="--",
                linewidth=1,
                alpha=0.7,
                label=f"majority-class accuracy ({where}): {value:.3f}",
            )
    ax.set_xlabel(_label(xname))
    ax.set_ylabel(_label(yname))
    ax.set_title(f"{title}\n{len(done)} completed trial(s), {len(front)} on the front")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return fig


def overlay_figure(fronts: Sequence[tuple[str, pd.DataFrame, dict[str, Any]]], title: str) -> Any:
    """Several studies' test fronts (validation fronts where untested) on one axis; the legend gives each
    front's hypervolume."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    colors = plt.get_cmap("tab10")
    majority: list[float] = []
    for i, (name, table, meta) in enumerate(fronts):
        xname, yname = axes_of(meta["objectives"], meta["directions"])
        prefix = "test_" if f"test_{yname}" in table and table[f"test_{yname}"].notna().any() else "val_"
        x, y = table[f"{prefix}{xname}"].to_numpy(float), table[f"{prefix}{yname}"].to_numpy(float)
        hv = meta.get("hypervolume_test" if prefix == "test_" else "hypervolume_val", float("nan"))
        where = "test" if prefix == "test_" else "validation"
        _steps(ax, x, y, color=colors(i % 10), linewidth=1.3)
        ax.scatter(x, y, color=colors(i % 10), s=30, label=f"{name} ({where}; hypervolume {hv:.3g})")
        column = f"{prefix}majority_accuracy"
        if column in table and table[column].notna().any():
            majority.append(float(table[column].mean()))
        ax.set_xlabel(_label(xname))
        ax.set_ylabel(_label(yname))
    if majority:
        value = float(np.mean(majority))
        ax.axhline(
            value, color="0.3", linestyle="--", linewidth=1, label=f"majority-class accuracy: {value:.3f}"
        )
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return fig
