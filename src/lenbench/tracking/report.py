"""Paper-ready comparison from MLflow: summary tables (CSV, Markdown, LaTeX) and figures for a set of jobs.

Reads the FINISHED parent runs of an experiment (optionally one sweep, or an MLflow filter), their per-fold metrics
(``step=fold``) and their child runs' formulas, and aggregates per method x seed and per method pooled over seeds.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lenbench.logic.formula import Formula
from lenbench.logic.metrics import consistency, mean_and_sem
from lenbench.tracking.errors import TrackingError
from lenbench.tracking.local import FOLD_METRICS as METRICS
from lenbench.tracking.local import write_json
from lenbench.tracking.mlflow import PARENT_RUN_ID_TAG, check_store

log = logging.getLogger(__name__)


@dataclass
class ReportData:
    """Per-fold rows (method, seed, run, fold, metrics..., formula) of the selected jobs."""

    folds: pd.DataFrame
    runs: pd.DataFrame


def load_report_data(
    uri: str, experiment: str, sweep_id: str | None = None, filter_string: str = ""
) -> ReportData:
    from mlflow import MlflowClient

    check_store(uri)
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise TrackingError(
            f"no MLflow experiment named {experiment!r} at {uri}; run `make train` first or pass --experiment"
        )
    clauses = ["attributes.status = 'FINISHED'"]
    if sweep_id:
        clauses.append(f"tags.sweep_id = '{sweep_id}'")
    if filter_string:
        clauses.append(filter_string)
    runs = client.search_runs([found.experiment_id], " and ".join(clauses), max_results=5000)
    parents = [
        r for r in runs if PARENT_RUN_ID_TAG not in r.data.tags and r.data.tags.get("kind") != "report"
    ]
    if not parents:
        raise TrackingError(
            f"no FINISHED job runs in experiment {experiment!r} match {' and '.join(clauses)!r}"
        )
    children = client.search_runs([found.experiment_id], "attributes.status = 'FINISHED'", max_results=50000)
    formulas = {
        (c.data.tags.get(PARENT_RUN_ID_TAG), int(c.data.tags.get("fold", -1))): c.data.tags.get("formula", "")
        for c in children
        if PARENT_RUN_ID_TAG in c.data.tags
    }
    rows, run_rows = [], []
    for run in parents:
        tags = run.data.tags
        per_fold: dict[int, dict[str, Any]] = {}
        for metric in METRICS:
            for m in client.get_metric_history(run.info.run_id, metric):
                per_fold.setdefault(int(m.step), {})[metric] = m.value
        base = {
            "method": tags.get("method", "?"),
            "seed": int(tags.get("seed", -1)),
            "data": tags.get("data", ""),
            "run_id": run.info.run_id,
            "git_commit": tags.get("git_commit", ""),
            "data_checksum": tags.get("data_checksum", ""),
        }
        run_rows.append({**base, "run_name": tags.get("mlflow.runName", ""), **run.data.metrics})
        for fold, values in sorted(per_fold.items()):
            rows.append(
                {**base, "fold": fold, **values, "formula": formulas.get((run.info.run_id, fold), "")}
            )
    return ReportData(folds=pd.DataFrame(rows), runs=pd.DataFrame(run_rows))


def _formula(text: str) -> Formula:
    try:
        return Formula.parse(text)
    except ValueError:
        return Formula.false()


def summary_table(folds: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """``<metric>_mean`` / ``<metric>_sem`` over the fold rows of each group, and the folds' formula consistency."""
    records = []
    for key, group in folds.groupby(list(by), sort=True):
        key = key if isinstance(key, tuple) else (key,)
        record: dict[str, Any] = dict(zip(by, key, strict=True))
        for metric in METRICS:
            if metric in group:
                mean, sem = mean_and_sem(group[metric].dropna().tolist())
                record[f"{metric}_mean"], record[f"{metric}_sem"] = mean, sem
        record["explanation_consistency"] = consistency([_formula(f) for f in group["formula"]])
        record["n_runs"] = group["run_id"].nunique()
        record["n_folds"] = len(group)
        records.append(record)
    return pd.DataFrame(records)


def seed_consistency(folds: pd.DataFrame) -> pd.DataFrame:
    """Per method: for each fold, consistency of that fold's formulas across seeds; mean over folds."""
    records = []
    for method, group in folds.groupby("method"):
        per_fold = [
            consistency([_formula(f) for f in g["formula"]])
            for _, g in group.groupby("fold")
            if g["seed"].nunique() > 1
        ]
        records.append(
            {
                "method": method,
                "seed_consistency": float(np.mean(per_fold)) if per_fold else float("nan"),
                "n_seeds": group["seed"].nunique(),
            }
        )
    return pd.DataFrame(records)


def _pm_table(table: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Human table: ``mean ± sem`` cells in the notebook's column order."""
    out = table[list(keys)].copy()
    for metric in METRICS:
        if f"{metric}_mean" in table:
            digits = 1 if metric == "explanation_complexity" else 3
            out[metric] = [
                f"{m:.{digits}f} ± {s:.{digits}f}"
                for m, s in zip(table[f"{metric}_mean"], table[f"{metric}_sem"], strict=True)
            ]
    out["explanation_consistency"] = table["explanation_consistency"].map(lambda v: f"{v:.3f}")
    return out


def figures(folds: pd.DataFrame, by_method: pd.DataFrame) -> dict[str, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs: dict[str, Any] = {}
    fig, ax = plt.subplots(figsize=(5, 4), constrained_layout=True)
    for _, row in by_method.iterrows():
        ax.errorbar(
            row["explanation_complexity_mean"],
            row["explanation_accuracy_mean"],
            xerr=row["explanation_complexity_sem"],
            yerr=row["explanation_accuracy_sem"],
            fmt="o",
            capsize=3,
            label=row["method"],
        )
    ax.set_xscale("symlog")
    ax.set_xlabel("explanation complexity (literals)")
    ax.set_ylabel("explanation accuracy")
    ax.legend(fontsize=8)
    figs["accuracy_vs_complexity.png"] = fig

    methods = sorted(folds["method"].unique())
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5), constrained_layout=True)
    for ax, metric in zip(
        axes, ("model_accuracy", "explanation_accuracy", "explanation_fidelity"), strict=True
    ):
        data = [folds.loc[folds["method"] == m, metric].dropna() for m in methods]
        ax.boxplot(data, tick_labels=methods)
        for i, values in enumerate(data, start=1):
            ax.plot(np.full(len(values), i) + np.linspace(-0.1, 0.1, len(values)), values, ".", alpha=0.6)
        ax.set_title(metric.replace("_", " "))
    figs["fold_metrics.png"] = fig

    fig, axes = plt.subplots(
        1, len(methods), figsize=(4 * len(methods), 4), constrained_layout=True, squeeze=False
    )
    for ax, method in zip(axes[0], methods, strict=True):
        formulas = [_formula(f) for f in folds.loc[folds["method"] == method, "formula"]]
        counts = pd.Series([c for f in formulas for c in f.concepts]).value_counts().head(15)
        ax.barh(counts.index[::-1], (counts / max(len(formulas), 1)).values[::-1])
        ax.set_title(method)
        ax.set_xlabel("fraction of explanations mentioning the concept")
        ax.tick_params(axis="y", labelsize=7)
    figs["concept_frequency.png"] = fig
    return figs


def build_report(
    uri: str,
    experiment: str,
    out_dir: Path,
    sweep_id: str | None = None,
    filter_string: str = "",
    log_to_mlflow: bool = True,
) -> dict[str, Path]:
    """Write tables and figures under ``out_dir`` and (by default) log them on a ``report`` run in MLflow."""
    import matplotlib.pyplot as plt

    data = load_report_data(uri, experiment, sweep_id, filter_string)
    by_method = summary_table(data.folds, ["method"])
    by_method = by_method.merge(seed_consistency(data.folds), on="method", how="left")
    by_method_seed = summary_table(data.folds, ["method", "seed"])
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    for name, table, keys in (
        ("summary_by_method", by_method, ["method"]),
        ("summary_by_method_seed", by_method_seed, ["method", "seed"]),
    ):
        files[f"{name}.csv"] = out_dir / f"{name}.csv"
        table.to_csv(files[f"{name}.csv"], index=False)
        pretty = _pm_table(table, keys)
        files[f"{name}.md"] = out_dir / f"{name}.md"
        files[f"{name}.md"].write_text(
            pretty.to_markdown(index=False) + "\n" if _has_tabulate() else _markdown(pretty)
        )
        files[f"{name}.tex"] = out_dir / f"{name}.tex"
        files[f"{name}.tex"].write_text(pretty.to_latex(index=False))
    files["folds.csv"] = out_dir / "folds.csv"
    data.folds.to_csv(files["folds.csv"], index=False)
    provenance = {
        "experiment": experiment,
        "sweep_id": sweep_id,
        "filter": filter_string,
        "runs": data.runs["run_id"].tolist(),
        "git_commits": sorted(set(data.runs["git_commit"])),
        "data_checksums": sorted(set(data.runs["data_checksum"])),
    }
    if len(provenance["git_commits"]) > 1:
        log.warning(
            "the pooled runs come from %d code versions: %s",
            len(provenance["git_commits"]),
            ", ".join(c[:10] for c in provenance["git_commits"]),
        )
    if len(provenance["data_checksums"]) > 1:
        log.warning("the pooled runs used %d different data files", len(provenance["data_checksums"]))
    files["provenance.json"] = write_json(out_dir / "provenance.json", provenance)
    figs = figures(data.folds, by_method)
    for name, fig in figs.items():
        files[name] = out_dir / name
        fig.savefig(files[name], dpi=120)
        plt.close(fig)
    if log_to_mlflow:
        from mlflow import MlflowClient

        client = MlflowClient(uri)
        exp = client.get_experiment_by_name(experiment)
        run = client.create_run(
            exp.experiment_id, run_name="report", tags={"kind": "report", "sweep_id": sweep_id or ""}
        )
        for path in files.values():
            client.log_artifact(run.info.run_id, str(path))
        client.set_terminated(run.info.run_id, "FINISHED")
    return files


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


def _markdown(table: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "---|" * len(table.columns)
    body = ["| " + " | ".join(map(str, row)) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"
