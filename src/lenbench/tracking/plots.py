"""Figures logged with each job (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

_ACCURACIES = ("model_accuracy", "explanation_accuracy", "explanation_fidelity", "majority_accuracy")


def fold_metrics_figure(results: pd.DataFrame) -> plt.Figure:
    """Accuracies per fold beside the majority-class baseline, and formula complexity per fold."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5), constrained_layout=True)
    for name in _ACCURACIES:
        if name in results:
            style = "--" if name == "majority_accuracy" else "-o"
            left.plot(results["split"], results[name], style, label=name.replace("_", " "))
    left.set_xlabel("fold")
    left.set_ylabel("accuracy")
    left.set_ylim(0, 1.02)
    left.legend(fontsize=7, loc="lower right")
    right.bar(results["split"], results["explanation_complexity"], color="tab:gray")
    right.set_xlabel("fold")
    right.set_ylabel("complexity (literals)")
    method = results["method"].iloc[0] if len(results) else ""
    figure.suptitle(f"{method}: per-fold metrics")
    return figure
