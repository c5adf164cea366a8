"""Validation scores of one configuration: each outer fold's train+validation rows, split again, never its test rows.

For outer fold k the CV protocol splits the rows that are not test rows into train and validation rows
(``cv.val_size``, ``cv.inner_split_seed``). Tuning treats those validation rows as the held-out rows: the method is
fitted on fold k's *train* rows only (which it splits once more, the same way, into the rows it trains on and the
rows it builds or ranks explanations on), and every metric of the registry is computed on fold k's validation rows.
A data set whose preprocessing is learnt (``data.fit_scope=train``) is refitted on the train rows alone. So no test
row, and no validation row, reaches the fitted model or its explanation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from lenbench.data.base import ConceptDataset, Fold
from lenbench.data.split import build_fold
from lenbench.explainers.base import Explainer
from lenbench.folds import CVConfig, FoldFailed, intervention_evidence, scored_rows
from lenbench.scoring import METRICS, FoldEvidence, MetricSet


def inner_fold(dataset: ConceptDataset, cv: CVConfig, fold_index: int) -> Fold:
    """Outer fold ``fold_index`` seen from inside: its train rows fit (split into train/validation as the protocol
    splits), its validation rows are the ``test`` rows scored. Its ``test_index`` are the outer validation rows."""
    outer = cv.fold(dataset, fold_index)
    return build_fold(
        dataset, fold_index, outer.train_index, outer.val_index, cv.val_size, cv.inner_split_seed
    )


def score_on_validation(
    fold: Fold, make_explainer: Callable[[], Explainer], target_class: int = 1, metrics: MetricSet = METRICS
) -> dict[str, float]:
    """Fit on an inner fold and score every fold metric on its held-out (outer validation) rows."""
    explainer = make_explainer()
    try:
        start = time.perf_counter()
        explainer.fit(fold)
        training = time.perf_counter() - start
        rows, predicted = scored_rows(explainer, fold)
        y_pred = explainer.predict(rows)
        start = time.perf_counter()
        formula = explainer.explain(fold, target_class)
        extraction = time.perf_counter() - start
    except Exception as exc:  # noqa: BLE001 - named by fold, kept as the cause; the trial fails, the study goes on
        raise FoldFailed(fold.index, exc) from exc
    info = dict(explainer.info())
    concepts_true = None if predicted is None else fold.x_test
    evidence = FoldEvidence(
        y_true=fold.y_test,
        y_pred=y_pred,
        x=fold.x_test if predicted is None else predicted,
        concept_names=fold.concept_names,
        target_class=target_class,
        formula=formula if explainer.provides_explanations else None,
        scores=explainer.scores(rows),
        timings={"training": float(info.get("training_time", training)), "extraction": extraction},
        concepts_true=concepts_true,
        interventions=intervention_evidence(explainer, fold, rows, concepts_true),
    )
    return metrics.score_fold(evidence)


def mean_scores(per_fold: Sequence[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over folds (NaN-free folds only; NaN when no fold has a value)."""
    names = per_fold[0].keys() if per_fold else ()
    out = {}
    for name in names:
        values = np.array([f[name] for f in per_fold], dtype=float)
        values = values[np.isfinite(values)]
        out[name] = float(values.mean()) if values.size else float("nan")
    return out
