"""The study's metrics, each defined once so every method is scored the same way.

Definitions follow the reference notebook (README.md, "How lenbench reads the protocol"); where it was ambiguous
or quirky the choice is written next to the function. All functions take numpy arrays (or anything ``np.asarray`` accepts) and return plain Python numbers.
Formulas may be given as :class:`Formula` or as text (parsed with ``Formula.parse``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

from lenbench.logic.formula import Formula


def _as_formula(formula: Formula | str) -> Formula:
    if isinstance(formula, Formula):
        return formula
    if isinstance(formula, str):
        return Formula.parse(formula)
    raise TypeError(f"expected a Formula or its text, got {type(formula).__name__}")


def _vector(values: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {array.shape}")
    return array


def _paired(a: np.ndarray, b: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Labels and predictions of the same samples, at least one; ValueError naming the metric ``what`` otherwise."""
    if a.shape != b.shape:
        raise ValueError(f"y_true and y_pred differ in length: {a.shape[0]} vs {b.shape[0]}")
    if a.size == 0:
        raise ValueError(f"{what} of zero samples is undefined")
    return a, b


def _labels(y_pred: np.ndarray) -> np.ndarray:
    """Predicted labels from labels [n], a score matrix [n, C >= 2] (argmax) or one probability column [n, 1]."""
    array = np.asarray(y_pred)
    if array.ndim == 2 and array.shape[1] >= 2:
        return array.argmax(axis=1)
    if array.ndim == 2 and array.shape[1] == 1:
        return (array[:, 0] > 0.5).astype(np.int64)
    return _vector(array, "y_pred")


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of positions where ``y_true == y_pred`` (labels or booleans, same length, at least one).

    An empty input raises ``ValueError`` instead of returning NaN: a fold with no test rows is a bug upstream.
    """
    a, b = _paired(_vector(y_true, "y_true"), _vector(y_pred, "y_pred"), "accuracy")
    return float(np.mean(a == b))


def model_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Accuracy of the model's predictions on the test fold.

    ``y_pred`` may be labels [n], a score matrix [n, C] with C >= 2 (the label is the argmax, as the reference's
    softmax networks were read) or a single sigmoid column [n, 1] (label = output > 0.5, as for the psi network).
    A one-dimensional ``y_pred`` is always taken as labels, never thresholded.
    """
    return accuracy(y_true, _labels(y_pred))


def majority_accuracy(y: np.ndarray) -> float:
    """Accuracy of always predicting the most frequent class of ``y`` (the baseline every accuracy needs beside it).

    On MIMIC-II this is 0.8407, which is also the psi network's model accuracy: it predicts no positives.
    """
    labels = _vector(y, "y")
    if labels.size == 0:
        raise ValueError("majority accuracy of zero samples is undefined")
    _, counts = np.unique(labels, return_counts=True)
    return float(counts.max() / labels.size)


def explanation_accuracy(
    formula: Formula | str, x: np.ndarray, y: np.ndarray, concept_names: Sequence[str], target_class: int = 1
) -> float:
    """Accuracy of the formula's truth values against ``y == target_class`` (the reference's ``test_explanation``).

    An empty explanation is the constant False (see ``Formula.parse``), so it scores the share of rows not in the
    target class; the reference scored it 0.
    """
    truth = _as_formula(formula).evaluate(x, concept_names)
    return accuracy(_vector(y, "y") == target_class, truth)


def explanation_fidelity(
    formula: Formula | str,
    x: np.ndarray,
    y_pred: np.ndarray,
    concept_names: Sequence[str],
    target_class: int = 1,
) -> float:
    """Accuracy of the formula's truth values against the model's predictions ``y_pred == target_class``.

    ``y_pred`` is read as in :func:`model_accuracy`. The reference carried the previous fold's fidelity when a fold
    had no explanation; lenbench always measures it (an empty explanation is False).
    """
    truth = _as_formula(formula).evaluate(x, concept_names)
    return accuracy(_labels(y_pred) == target_class, truth)


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean recall over the classes present in ``y_true`` (scikit-learn's ``balanced_accuracy_score``).

    Beside plain accuracy because on MIMIC-II always predicting "survived" already scores 0.84: a model that
    never predicts the minority class scores 0.5 here, whatever the class balance.
    """
    a, b = _paired(_vector(y_true, "y_true"), _labels(y_pred), "balanced accuracy")
    return float(np.mean([np.mean(b[a == c] == c) for c in np.unique(a)]))


def f1(y_true: np.ndarray, y_pred: np.ndarray, positive: int | bool = 1) -> float:
    """F1 score of the class ``positive`` (harmonic mean of its precision and recall).

    0.0 when there is no true positive (including when neither labels nor predictions hold the class), as
    scikit-learn's ``f1_score(zero_division=0)``: a method that never finds the rare class gets no credit for it.
    """
    a, b = _paired(_vector(y_true, "y_true"), _labels(y_pred), "F1")
    true, pred = a == positive, b == positive
    tp = int(np.sum(true & pred))
    if tp == 0:
        return 0.0
    return float(2 * tp / (int(true.sum()) + int(pred.sum())))


def auroc(y_true: np.ndarray, scores: np.ndarray | None, positive: int | bool = 1) -> float:
    """Area under the ROC curve of ``scores`` for the class ``positive`` (ties count one half).

    The Mann-Whitney statistic with average ranks, equal to scikit-learn's ``roc_auc_score``. NaN (not an error)
    when ``scores`` is None (a method without scores) or ``y_true`` holds a single class (a test fold without
    positives): the summaries skip NaN. For boolean scores it equals the balanced accuracy.
    """
    if scores is None:
        return float("nan")
    a = _vector(y_true, "y_true") == positive
    s = _vector(scores, "scores").astype(float)
    if a.shape != s.shape:
        raise ValueError(f"y_true and scores differ in length: {a.shape[0]} vs {s.shape[0]}")
    n_pos, n_neg = int(a.sum()), int((~a).sum())
    if n_pos == 0 or n_neg == 0 or np.isnan(s).any():
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    sorted_scores = s[order]
    ranks = np.empty(s.size, dtype=float)
    # Average rank of each group of tied scores (1-based).
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], s.size]
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + end + 1) / 2.0
    u = ranks[a].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def explanation_balanced_accuracy(
    formula: Formula | str, x: np.ndarray, y: np.ndarray, concept_names: Sequence[str], target_class: int = 1
) -> float:
    """Balanced accuracy of the formula's truth values against ``y == target_class``."""
    truth = _as_formula(formula).evaluate(x, concept_names)
    return balanced_accuracy(_vector(y, "y") == target_class, truth)


def explanation_f1(
    formula: Formula | str, x: np.ndarray, y: np.ndarray, concept_names: Sequence[str], target_class: int = 1
) -> float:
    """F1 of the formula as a detector of ``target_class``: precision and recall of its true rows."""
    truth = _as_formula(formula).evaluate(x, concept_names)
    return f1(_vector(y, "y") == target_class, truth, positive=True)


def explanation_auroc(
    formula: Formula | str, x: np.ndarray, y: np.ndarray, concept_names: Sequence[str], target_class: int = 1
) -> float:
    """AUROC of the formula's truth values (0/1 scores) for ``target_class``.

    A formula is a hard classifier, so this is its single ROC point joined to the corners, i.e. exactly its
    balanced accuracy; kept as its own column so model and formula columns line up. NaN on a one-class fold.
    """
    truth = _as_formula(formula).evaluate(x, concept_names)
    return auroc(_vector(y, "y") == target_class, truth.astype(float), positive=True)


def concept_accuracies(concepts_true: np.ndarray, concepts_pred: np.ndarray) -> np.ndarray:
    """Per concept, the share of rows where the predicted concept (> 0.5) equals the true one (> 0.5): float [k].

    The concept-bottleneck pipeline's first stage, scored on its own (a concept encoder's predictions against the
    data set's true concepts)."""
    truth, pred = np.asarray(concepts_true), np.asarray(concepts_pred)
    if truth.shape != pred.shape or truth.ndim != 2:
        raise ValueError(f"true and predicted concepts differ in shape: {truth.shape} vs {pred.shape}")
    if truth.shape[0] == 0:
        raise ValueError("concept accuracy of zero rows is undefined")
    return np.mean((truth > 0.5) == (pred > 0.5), axis=0)


def concept_accuracy(concepts_true: np.ndarray, concepts_pred: np.ndarray) -> float:
    """Overall concept accuracy: the mean of :func:`concept_accuracies` over the concepts (every cell counts once)."""
    return float(concept_accuracies(concepts_true, concepts_pred).mean())


# The orders in which concepts are intervened on (set to their true values): see :func:`intervention_mask`.
INTERVENTION_ORDERS = ("random", "uncertain")


def intervened_count(n_concepts: int, percent: int) -> int:
    """How many of ``n_concepts`` concepts an intervention on ``percent`` % of them replaces: the nearest whole
    number, halves up, in integer arithmetic (no 0.1 x 10 surprise): of 3 concepts 10 % is 0, 25 % is 1, 50 % is 2."""
    if not 0 <= percent <= 100:
        raise ValueError(f"percent={percent}: must lie in [0, 100]")
    return (int(percent) * int(n_concepts) + 50) // 100


def intervention_mask(probabilities: np.ndarray, percent: int, order: str, seed: int) -> np.ndarray:
    """Which concepts of each row an intervention on ``percent`` % of them replaces (bool [n, k]), given the
    predicted probabilities [n, k]. ``random``: the first concepts of one random order, numpy's
    ``default_rng(seed).permutation(k)``, the same in every row and fold of a seed (so the methods of one seed are
    intervened on the same concepts, and seeds average over orders); ``uncertain``: per row, the concepts whose
    probability is closest to 0.5 first (the ones the model is least sure of; ties: lower concept index first)."""
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probabilities must be [rows, concepts], got shape {p.shape}")
    n, k = p.shape
    if order == "random":
        first = np.broadcast_to(np.random.default_rng(seed).permutation(k), (n, k))
    elif order == "uncertain":
        first = np.argsort(np.abs(p - 0.5), axis=1, kind="stable")
    else:
        raise ValueError(f"order={order!r}: one of {', '.join(INTERVENTION_ORDERS)}")
    mask = np.zeros((n, k), dtype=bool)
    np.put_along_axis(mask, first[:, : intervened_count(k, percent)], True, axis=1)
    return mask


def complexity(formula: Formula | str) -> int:
    """Number of literal occurrences in the DNF (``(a & b) | ~a`` has 3); 0 for True/False and the empty formula.

    Equals the reference's count (split on `` | `` then on `` & ``) for every non-empty formula; the reference
    counted the empty string as 1.
    """
    return _as_formula(formula).complexity


def consistency(formulas: Sequence[Formula | str]) -> float:
    """How often the folds' formulas reuse the same concepts.

    For every concept mentioned by at least one formula, the fraction of the formulas that mention it (negated or
    not, counted once per formula); consistency is the mean of those fractions. Formulas that mention nothing
    (True, False, empty) still count in the denominator. 0.0 when no formula mentions any concept, and for an empty
    sequence.

    Differences from the reference's ``formula_consistency``, which worked on strings: it counted the empty string
    as a concept named ``''`` (raising the score of methods with empty folds), and it read the tree's
    ``c <= 0.50`` / ``c > 0.50`` literals as two different concepts. Here a concept is a concept name.
    """
    if len(formulas) == 0:
        return 0.0
    counts = Counter(name for f in formulas for name in _as_formula(f).concepts)
    if not counts:
        return 0.0
    # One exact integer sum and one division: independent of set order (and so of PYTHONHASHSEED).
    return float(sum(counts.values()) / (len(counts) * len(formulas)))


def mean_and_sem(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean over folds, with ``ddof=1`` as pandas' ``.sem()`` computes it.

    One value has no standard error: NaN, as pandas gives (a single fold says nothing about the spread; 0.0 would
    read as "no uncertainty"); no value raises ``ValueError``. NaN values (a metric undefined on some fold, e.g.
    AUROC without positives) are skipped, as pandas does; all NaN gives ``(nan, nan)``.
    """
    array = np.asarray(values, dtype=float).reshape(-1)
    if array.size == 0:
        raise ValueError("mean_and_sem needs at least one value")
    array = array[~np.isnan(array)]
    if array.size == 0:
        return float("nan"), float("nan")
    mean = float(array.mean())
    if array.size == 1:
        return mean, float("nan")
    return mean, float(array.std(ddof=1) / math.sqrt(array.size))
