"""The metric registry is the one list of metrics: a metric added to a set reaches every output, a metric left out
reaches none (results.csv, summary.json, MLflow child and parent runs, an import into another store, the report's
tables, the console summary)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from lenbench.data.synthetic import make_xor
from lenbench.experiment import JobRecord, run_experiment
from lenbench.explainers.tree import TreeExplainer
from lenbench.folds import CVConfig, FoldPlan
from lenbench.job import format_summary
from lenbench.report.build import build_report
from lenbench.scoring import METRICS, Metric, MetricSet
from lenbench.tracking.import_results import import_job
from lenbench.tracking.mlflow import PARENT_RUN_ID_TAG, MlflowTracker

EXPERIMENT = "registry"
LENGTH = Metric(
    "explanation_length_chars",
    "formula length",
    lambda e: len(str(e.formula)),
    needs=frozenset({"formula"}),
    higher_is_better=False,
    headline=True,
)
WITH_LENGTH = METRICS.with_metric(LENGTH)
WITHOUT_F1 = MetricSet([metric for metric in METRICS if metric.name != "model_f1"])


@dataclass
class Outputs:
    """Where a job scored with one metric set left its numbers, as text or as name sets per output."""

    results_columns: set[str]
    summary_keys: set[str]
    summary: dict
    child_metrics: list[dict[str, float]]
    parent_metrics: dict[str, float]
    imported_child_metrics: list[dict[str, float]]
    imported_parent_metrics: dict[str, float]
    report_csv_columns: set[str]
    report_markdown: str
    report_folds_columns: set[str]
    console: str


def _runs(uri: str) -> tuple[list[dict[str, float]], dict[str, float]]:
    """(metrics of each child run, metrics of the single parent run) of the experiment at ``uri``."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    children = [r.data.metrics for r in runs if PARENT_RUN_ID_TAG in r.data.tags]
    parents = [r.data.metrics for r in runs if PARENT_RUN_ID_TAG not in r.data.tags]
    assert len(parents) == 1 and len(children) == 3
    return children, parents[0]


def _run_everything(tmp_path: Path, metrics: MetricSet) -> Outputs:
    uri, imported = f"sqlite:///{tmp_path / 'mlflow.db'}", f"sqlite:///{tmp_path / 'imported.db'}"
    job = tmp_path / "job"
    tags = {"method": "tree", "seed": "0", "data": "xor", "config_hash": "registry-test"}
    job.mkdir()
    (job / "job.json").write_text(
        json.dumps({"run_name": "tree-s0", "experiment": EXPERIMENT, "tags": tags, "params": {"seed": 0}})
    )
    outcome = run_experiment(
        make_xor(n_samples=300, n_concepts=4, seed=0),
        "tree",
        FoldPlan.alone(lambda: TreeExplainer(seed=0), CVConfig(n_splits=3)),
        job,
        tracker=MlflowTracker(uri, EXPERIMENT, metrics=metrics),
        record=JobRecord(run_name="tree-s0", tags=tags),
        metrics=metrics,
    )
    children, parent = _runs(uri)
    import_job(job, imported, metrics=metrics)
    imported_children, imported_parent = _runs(imported)
    report = tmp_path / "report"
    build_report(uri, EXPERIMENT, report, log_to_mlflow=False, metrics=metrics)
    summary = json.loads((job / "summary.json").read_text())
    return Outputs(
        results_columns=set(pd.read_csv(job / "results.csv").columns),
        summary_keys=set(summary),
        summary=summary,
        child_metrics=children,
        parent_metrics=parent,
        imported_child_metrics=imported_children,
        imported_parent_metrics=imported_parent,
        report_csv_columns=set(pd.read_csv(report / "summary_by_experiment.csv").columns),
        report_markdown=(report / "summary_by_experiment.md").read_text(),
        report_folds_columns=set(pd.read_csv(report / "folds.csv").columns),
        console=format_summary("tree", outcome.summary, job, metrics=metrics),
    )


@pytest.mark.e2e
def test_a_registered_metric_reaches_every_output(tmp_path: Path) -> None:
    name = LENGTH.name
    out = _run_everything(tmp_path, WITH_LENGTH)
    results = pd.read_csv(tmp_path / "job" / "results.csv")
    assert name in out.results_columns
    assert list(results[name]) == [len(formula) for formula in results["explanation"]]
    assert out.summary[f"{name}_mean"] == pytest.approx(results[name].mean())
    assert out.summary[f"{name}_sem"] == pytest.approx(results[name].sem())
    for children, parent in (
        (out.child_metrics, out.parent_metrics),
        (out.imported_child_metrics, out.imported_parent_metrics),
    ):
        assert sorted(child[name] for child in children) == sorted(results[name])
        assert parent[f"{name}_mean"] == pytest.approx(out.summary[f"{name}_mean"])
        assert f"{name}_sem" in parent
        assert name not in parent  # fold values only on the child runs
        assert not set(parent) & set(WITH_LENGTH.fold_names)
    label = LENGTH.label  # the report's CSV is headed by labels
    assert {f"{label} mean", f"{label} sem", f"{label} p Wilcoxon vs best"} <= out.report_csv_columns
    assert name in out.report_folds_columns
    assert LENGTH.label in out.report_markdown
    assert LENGTH.label in out.console


@pytest.mark.e2e
def test_a_metric_left_out_of_the_set_reaches_no_output(tmp_path: Path) -> None:
    out = _run_everything(tmp_path, WITHOUT_F1)
    for left_out in ("model_f1", LENGTH.name):
        texts = {
            "results.csv": " ".join(out.results_columns),
            "summary.json": " ".join(out.summary_keys),
            "child runs": " ".join(k for child in out.child_metrics for k in child),
            "parent run": " ".join(out.parent_metrics),
            "imported child runs": " ".join(k for child in out.imported_child_metrics for k in child),
            "imported parent run": " ".join(out.imported_parent_metrics),
            "report csv": " ".join(out.report_csv_columns),
            "report folds": " ".join(out.report_folds_columns),
        }
        for where, text in texts.items():
            assert left_out not in text, (left_out, where)
    for label in (METRICS["model_f1"].label, LENGTH.label):
        assert label not in out.report_markdown and label not in out.console
        assert label not in " ".join(out.report_csv_columns)  # the report's CSV is headed by labels
    # ... while the metrics kept are all there.
    assert "model_accuracy_mean" in out.parent_metrics and "model_accuracy" in out.results_columns
    assert METRICS["model_accuracy"].label in out.report_markdown
