"""Paper-ready comparison from MLflow: summary tables (CSV, Markdown, LaTeX) and figures for a set of jobs.

Reads the FINISHED parent runs of an experiment (optionally one sweep, or an MLflow filter), their per-fold metrics
(``step=fold``) and their child runs' formulas, and aggregates per method x seed and per method pooled over seeds.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lenbench.logic.formula import Formula
from lenbench.logic.metrics import consistency, mean_and_sem
from lenbench.scoring import METRICS as REGISTRY
from lenbench.tracking.errors import TrackingError
from lenbench.tracking.local import write_json
from lenbench.tracking.mlflow import PARENT_RUN_ID_TAG, check_store

log = logging.getLogger(__name__)

METRICS = REGISTRY.fold_names
# Metrics where a smaller value is better (the "best" method of a column is its minimum).
LOWER_IS_BETTER = REGISTRY.lower_is_better
# Metrics compared between methods by paired tests: scores of the method, not the majority-class rate (a property
# of the test fold) nor wall-clock times.
TESTED_METRICS = REGISTRY.compared_names


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
        full = _job_formulas(client, run.info.run_id)  # tags are truncated: a tree's formula is longer
        for fold, values in sorted(per_fold.items()):
            formula = full.get(fold, formulas.get((run.info.run_id, fold), ""))
            rows.append({**base, "fold": fold, **values, "formula": formula})
    return ReportData(folds=pd.DataFrame(rows), runs=pd.DataFrame(run_rows))


def _job_formulas(client: Any, run_id: str) -> dict[int, str]:
    """Every fold's full formula from the job's ``explanations.json`` artifact ({} when it is missing)."""
    import json
    import tempfile

    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(run_id, "explanations.json", tmp)
            payload = json.loads(Path(path).read_text())
    except Exception:  # noqa: BLE001 - an imported or partial run may lack it; the tags are the fallback
        return {}
    return {int(entry["fold"]): str(entry["formula"]) for entry in payload.get("folds", [])}


def _formula(text: str) -> Formula:
    try:
        return Formula.parse(text)
    except ValueError:
        return Formula.false()


def blank_missing_explanations(folds: pd.DataFrame) -> pd.DataFrame:
    """Folds without an explanation (explanation accuracy NaN: an accuracy reference such as ``rf``) get NaN
    complexity and extraction time too, so that "no formula" never reads as "the simplest formula"."""
    if "explanation_accuracy" not in folds:
        return folds
    folds = folds.copy()
    missing = folds["explanation_accuracy"].isna()
    for column in ("explanation_complexity", "elapsed_time"):
        if column in folds:
            folds.loc[missing, column] = float("nan")
    return folds


def summary_table(folds: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """``<metric>_mean`` / ``<metric>_sem`` over the fold rows of each group, and the folds' formula consistency."""
    records = []
    for key, group in folds.groupby(list(by), sort=True):
        key = key if isinstance(key, tuple) else (key,)
        record: dict[str, Any] = dict(zip(by, key, strict=True))
        for metric in METRICS:
            if metric in group:
                values = group[metric].dropna().tolist()  # NaN: undefined on that fold (e.g. rf's formula)
                mean, sem = mean_and_sem(values) if values else (float("nan"), float("nan"))
                record[f"{metric}_mean"], record[f"{metric}_sem"] = mean, sem
        explained = group["explanation_accuracy"].notna().any() if "explanation_accuracy" in group else True
        record["explanation_consistency"] = (
            consistency([_formula(f) for f in group["formula"]]) if explained else float("nan")
        )
        record["n_runs"] = group["run_id"].nunique()
        record["n_folds"] = len(group)
        records.append(record)
    return pd.DataFrame(records)


SEED_SPREAD_METRICS = ("model_accuracy", "explanation_accuracy", "explanation_complexity")


def seed_consistency(folds: pd.DataFrame) -> pd.DataFrame:
    """Per method: for each fold, consistency of that fold's formulas across seeds; mean over folds. Also the
    spread of the results across seeds: ``<metric>_seed_sd``, the standard deviation (ddof=1) over seeds of each
    seed's mean over folds (NaN with a single seed)."""
    records = []
    for method, group in folds.groupby("method"):
        per_fold = [
            consistency([_formula(f) for f in g["formula"]])
            for _, g in group.groupby("fold")
            if g["seed"].nunique() > 1
        ]
        record: dict[str, Any] = {
            "method": method,
            "seed_consistency": float(np.mean(per_fold)) if per_fold else float("nan"),
            "n_seeds": group["seed"].nunique(),
        }
        for metric in SEED_SPREAD_METRICS:
            if metric in group:
                per_seed = group.groupby("seed")[metric].mean().dropna()
                record[f"{metric}_seed_sd"] = (
                    float(per_seed.std(ddof=1)) if len(per_seed) > 1 else float("nan")
                )
        records.append(record)
    return pd.DataFrame(records)


def _paired_p(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
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
    present = [m for m in metrics if m in folds]
    return folds.groupby(["method", "seed", "fold"])[present].mean()


def _pair(per_fold: pd.DataFrame, a: str, b: str, metric: str) -> pd.DataFrame:
    """The folds both methods ran (same seed and fold) with the metric defined for both."""
    left = per_fold.loc[a, metric].rename("a")
    right = per_fold.loc[b, metric].rename("b")
    return pd.concat([left, right], axis=1, join="inner").dropna()


def paired_tests(folds: pd.DataFrame, metrics: Sequence[str] = TESTED_METRICS) -> pd.DataFrame:
    """Every pair of methods on every metric: folds paired by (seed, fold), Wilcoxon and paired t p-values.

    ``mean_diff`` is the mean of ``method_a - method_b`` over the pairs. With 5 folds the exact Wilcoxon test
    cannot go below p = 0.0625 (two-sided), with 10 folds below 0.002: read its p-values with the pair count.
    """
    columns = [
        "metric",
        "method_a",
        "method_b",
        "n_pairs",
        "mean_a",
        "mean_b",
        "mean_diff",
        "p_wilcoxon",
        "p_ttest",
    ]
    if folds.empty:
        return pd.DataFrame(columns=columns)
    per_fold = _per_fold(folds, metrics)
    methods = sorted(per_fold.index.get_level_values("method").unique())
    rows = []
    for metric in per_fold.columns:
        for a, b in combinations(methods, 2):
            pairs = _pair(per_fold, a, b, metric)
            p_wilcoxon, p_ttest = _paired_p(pairs["a"].to_numpy(), pairs["b"].to_numpy())
            n = len(pairs)
            rows.append(
                {
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
            )
    return pd.DataFrame(rows, columns=columns)


def compare_with_best(folds: pd.DataFrame, by_method: pd.DataFrame) -> pd.DataFrame:
    """Per method and metric: the best method on that metric (highest mean; lowest for complexity and times) and
    the paired p-values of this method against it, as ``<metric>_best``, ``<metric>_p_wilcoxon``,
    ``<metric>_p_ttest`` (NaN for the best method itself and where no pair exists)."""
    out = pd.DataFrame({"method": by_method["method"]})
    if folds.empty:
        return out
    per_fold = _per_fold(folds, TESTED_METRICS)
    for metric in per_fold.columns:
        means = by_method.set_index("method")[f"{metric}_mean"].dropna()
        if means.empty:
            continue
        best = str(means.idxmin() if metric in LOWER_IS_BETTER else means.idxmax())
        p_w, p_t = [], []
        for method in out["method"]:
            if method == best or method not in means.index:
                p_w.append(float("nan"))
                p_t.append(float("nan"))
                continue
            pairs = _pair(per_fold, method, best, metric)
            w, t = _paired_p(pairs["a"].to_numpy(), pairs["b"].to_numpy())
            p_w.append(w)
            p_t.append(t)
        out[f"{metric}_best"] = best
        out[f"{metric}_p_wilcoxon"] = p_w
        out[f"{metric}_p_ttest"] = p_t
    return out


def _p(value: float) -> str:
    return "nan" if value != value else ("<0.001" if value < 0.001 else f"{value:.3f}")


def _pm_table(table: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Human table: ``mean ± sem`` cells in the notebook's column order.

    Where the table holds paired tests against the best method (``<metric>_p_wilcoxon``), each cell ends with
    ``(best)`` or ``(p_wilcoxon/p_ttest)`` against the best method of that column.
    """
    out = table[list(keys)].copy()
    for metric in METRICS:
        if f"{metric}_mean" in table:
            digits = REGISTRY[metric].digits
            cells = [
                f"{m:.{digits}f} ± {s:.{digits}f}" if m == m else "n/a"
                for m, s in zip(table[f"{metric}_mean"], table[f"{metric}_sem"], strict=True)
            ]
            if f"{metric}_p_wilcoxon" in table:
                means, best = table[f"{metric}_mean"], table[f"{metric}_best"]
                p_w, p_t = table[f"{metric}_p_wilcoxon"], table[f"{metric}_p_ttest"]
                for i in range(len(table)):
                    if means.iloc[i] != means.iloc[i]:  # NaN: the metric is undefined for this method
                        continue
                    is_best = table["method"].iloc[i] == best.iloc[i]
                    cells[i] += " (best)" if is_best else f" ({_p(p_w.iloc[i])}/{_p(p_t.iloc[i])})"
            out[metric] = cells
    out["explanation_consistency"] = table["explanation_consistency"].map(_3)
    if "seed_consistency" in table:
        out["seed_consistency"] = table["seed_consistency"].map(_3)
    return out


def _3(value: float) -> str:
    return f"{value:.3f}" if value == value else "n/a"


P_VALUE_NOTE = (
    "Cells: mean ± standard error over folds (pooled over seeds); (p_wilcoxon/p_ttest): two-sided p-values of "
    "the Wilcoxon signed-rank and paired t-tests against the column's best method, folds paired by (seed, fold); "
    "all pairs in paired_tests.csv. majority_accuracy: always predicting the test fold's majority class."
)


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
    data = ReportData(folds=blank_missing_explanations(data.folds), runs=data.runs)
    by_method = summary_table(data.folds, ["method"])
    by_method = by_method.merge(seed_consistency(data.folds), on="method", how="left")
    by_method = by_method.merge(compare_with_best(data.folds, by_method), on="method", how="left")
    by_method_seed = summary_table(data.folds, ["method", "seed"])
    pairs = paired_tests(data.folds)
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    for name, table, keys in (
        ("summary_by_method", by_method, ["method"]),
        ("summary_by_method_seed", by_method_seed, ["method", "seed"]),
    ):
        files[f"{name}.csv"] = out_dir / f"{name}.csv"
        table.to_csv(files[f"{name}.csv"], index=False)
        pretty = _pm_table(table, keys)
        note = f"\n{P_VALUE_NOTE}\n" if name == "summary_by_method" else ""
        files[f"{name}.md"] = out_dir / f"{name}.md"
        files[f"{name}.md"].write_text(_to_markdown(pretty) + note)
        files[f"{name}.tex"] = out_dir / f"{name}.tex"
        files[f"{name}.tex"].write_text(pretty.to_latex(index=False))
    files["paired_tests.csv"] = out_dir / "paired_tests.csv"
    pairs.to_csv(files["paired_tests.csv"], index=False)
    pretty_pairs = pairs.copy()
    for column in ("mean_a", "mean_b", "mean_diff"):
        pretty_pairs[column] = pretty_pairs[column].map(lambda v: f"{v:.4f}")
    for column in ("p_wilcoxon", "p_ttest"):
        pretty_pairs[column] = pretty_pairs[column].map(_p)
    files["paired_tests.md"] = out_dir / "paired_tests.md"
    files["paired_tests.md"].write_text(_to_markdown(pretty_pairs))
    files["paired_tests.tex"] = out_dir / "paired_tests.tex"
    files["paired_tests.tex"].write_text(pretty_pairs.to_latex(index=False))
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


def _to_markdown(table: pd.DataFrame) -> str:
    return table.to_markdown(index=False) + "\n" if _has_tabulate() else _markdown(table)


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
