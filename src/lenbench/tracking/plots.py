"""The figure logged with each job: its headline metrics per fold (matplotlib, Agg backend: no display needed).

It lives at the tracking edge because only :class:`~lenbench.tracking.mlflow.MlflowTracker` logs it; the report's
figures, comparing jobs, are in :mod:`lenbench.report.figures`. Which metrics it draws comes from the registry.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from lenbench.scoring import METRICS, Metric, MetricSet  # noqa: E402


def _panels(results: pd.DataFrame, metrics: MetricSet) -> dict[str, list[Metric]]:
    """The headline fold metrics present in ``results``, grouped by unit (one panel per unit)."""
    panels: dict[str, list[Metric]] = {}
    for metric in metrics.at("fold"):
        if metric.headline and metric.name in results:
            panels.setdefault(metric.unit, []).append(metric)
    return panels


def figure_title(results: pd.DataFrame, tags: Mapping[str, str] | None = None) -> str:
    """``<run name> (<data> / <label>): per-fold metrics, n = <folds> folds``: each seed's figure says whose it is."""
    tags = tags or {}
    method = results["method"].iloc[0] if len(results) else tags.get("method", "")
    name = tags.get("mlflow.runName") or (f"{method}-s{tags['seed']}" if "seed" in tags else method)
    where = " / ".join(tags[k] for k in ("data", "label") if tags.get(k))
    return f"{name}{f' ({where})' if where else ''}: per-fold metrics, n = {len(results)} folds"


def fold_metrics_figure(
    results: pd.DataFrame, metrics: MetricSet = METRICS, tags: Mapping[str, str] | None = None
) -> plt.Figure:
    """One panel per unit of the headline metrics (scores, literals, seconds), each metric a line over the folds
    (integer fold ticks); a baseline (``higher_is_better`` None, e.g. the majority-class accuracy) dashed. The
    title names the run (method and seed, from the job's ``tags``), its data and the number of folds."""
    panels = _panels(results, metrics) or {"": []}
    figure, axes = plt.subplots(
        1, len(panels), figsize=(4.5 * len(panels), 3.5), constrained_layout=True, squeeze=False
    )
    for axis, (unit, members) in zip(axes[0], panels.items(), strict=True):
        for metric in members:
            style = "--" if metric.higher_is_better is None else "-o"
            axis.plot(results["split"], results[metric.name], style, label=metric.label)
        values = results[[m.name for m in members]].stack() if members else pd.Series(dtype=float)
        if unit == "" and len(values) and values.between(0, 1).all():
            axis.set_ylim(0, 1.02)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_xlabel("fold")
        axis.set_ylabel(unit or "score")
        axis.legend(fontsize=7, loc="best")
    figure.suptitle(figure_title(results, tags))
    return figure
