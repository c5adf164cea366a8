"""The MLflow layout's tag names (one parent run per job, one child run per fold, the report run), and what the UI
shows of a job besides its numbers: the experiment's kind, the parent run's description and each fold's data as
dataset inputs. Plain values here; :class:`~lenbench.tracking.mlflow.MlflowTracker` logs them and
:mod:`lenbench.tracking.mlflow_read` reads them back.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from lenbench.scoring import METRICS, MetricSet

PARENT_RUN_ID_TAG = "mlflow.parentRunId"  # on a child run: its job's parent run
FOLD_TAG = "fold"  # on a child run: the fold index
FORMULA_TAG = "formula"  # on a child run: the fold's formula, cut (the whole one is in explanations.json)
KIND_TAG = "kind"  # "report" on a report run, absent on job runs
REUSED_FROM_TAG = "reused_from"  # on a child run: the fold run of an earlier, interrupted run it came from
MAX_TAG_CHARS = 5000
# MLflow 3's UI opens an experiment tagged this way in its machine-learning view (runs, metrics, parameters), not
# in its GenAI view (traces, evaluations); the values are those of the UI's ExperimentKind.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
DESCRIPTION_TAG = "mlflow.note.content"  # a run's description in the UI (Markdown)
CONTEXT_TAG = "mlflow.data.context"  # a dataset input's role on its run: train, validation, test
DESCRIBED = ("model_accuracy", "explanation_accuracy", "explanation_fidelity", "explanation_complexity")


def job_description(
    tags: Mapping[str, str], summary: Mapping[str, float], metrics: MetricSet = METRICS
) -> str:
    """The parent run's description: method, data, label, folds, what seed batching did (first, so that the UI's
    preview shows it), then the headline result (mean +- sem, rounded as the registry says)."""
    n_folds = int(summary.get("n_folds", 0))
    head = (
        f"**{tags.get('method', '?')}** on **{tags.get('data', '?')}** (label `{tags.get('label', '?')}`), "
        f"seed {tags.get('seed', '?')}, {n_folds} fold{'s' if n_folds != 1 else ''}: mean ± sem over folds"
    )
    seeds, trained_by = tags.get("seed_batch", "").replace(",", ", "), tags.get("seed_batch_trained_by")
    if trained_by or "," in seeds:  # seed batching: what this run's duration and training times mean
        head += (
            f"\n\nSeed batching: **{trained_by}** trained this seed's networks with its own; this run only "
            "recorded them (a short duration), so its folds have no `training_time`."
            if trained_by
            else f"\n\nSeed batching: trained the networks of seeds {seeds} together; this run's duration and "
            "its folds' `training_time` cover them all (the other seeds' runs only record theirs)."
        )
    parts = []
    for name in DESCRIBED:
        if name in metrics and f"{name}_mean" in summary:
            metric = metrics[name]
            mean, sem = summary[f"{name}_mean"], summary.get(f"{name}_sem", float("nan"))
            parts.append(f"- {metric.label}: {metric.format(mean)} ± {metric.format(sem)}")
    return "\n".join([head, "", *parts]) + "\n"


def fold_inputs(
    dataset_name: str, checksum: str | None, splits: Mapping[str, np.ndarray], source: str | None = None
) -> dict[str, dict[str, Any]]:
    """One dataset input per split of a fold (``{"train": rows, "validation": rows, "test": rows}``), by the split
    (its context): name, a digest of the data and the rows, the source and row count (MLflow's ``Dataset``)."""
    inputs = {}
    for context, rows in splits.items():
        index = np.asarray(rows, dtype=np.int64)
        digest = hashlib.sha256(f"{dataset_name}:{checksum or ''}:".encode() + index.tobytes()).hexdigest()
        inputs[context] = {
            "name": dataset_name,
            "digest": digest[:16],
            "source_type": "local",
            "source": json.dumps({"uri": source or dataset_name}),
            "profile": json.dumps({"num_rows": int(index.size)}),
        }
    return inputs
