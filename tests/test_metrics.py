"""Metrics on hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lenbench.logic import (
    Formula,
    accuracy,
    complexity,
    consistency,
    explanation_accuracy,
    explanation_fidelity,
    majority_accuracy,
    mean_and_sem,
    model_accuracy,
)

NAMES = ["a", "b", "c"]
# rows:      a    b    c
X = np.array(
    [
        [1.0, 0.0, 0.0],
        [1.0, 1.0, 0.0],
        [0.0, 1.0, 1.0],
        [0.0, 0.0, 1.0],
        [0.6, 0.2, 0.0],
    ]
)


def test_accuracy() -> None:
    assert accuracy(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0])) == 0.75
    assert accuracy(np.array([True, False]), np.array([1, 0])) == 1.0
    assert accuracy(np.array([[1], [0]]), np.array([0, 0])) == 0.5  # a single column is a vector
    assert isinstance(accuracy(np.array([1]), np.array([1])), float)
    with pytest.raises(ValueError, match="length"):
        accuracy(np.array([0, 1]), np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="zero samples"):
        accuracy(np.array([]), np.array([]))


def test_model_accuracy_reads_labels_scores_and_probabilities() -> None:
    y = np.array([0, 1, 1, 0])
    assert model_accuracy(y, np.array([0, 1, 0, 0])) == 0.75
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]])  # argmax 0 1 0 0
    assert model_accuracy(y, scores) == 0.75
    probabilities = np.array([[0.2], [0.7], [0.5], [0.1]])  # > 0.5: 0 1 0 0
    assert model_accuracy(y, probabilities) == 0.75


def test_majority_accuracy() -> None:
    assert majority_accuracy(np.array([0, 0, 0, 1])) == 0.75
    assert majority_accuracy(np.array([1, 1, 0, 0, 1])) == 0.6
    assert majority_accuracy(np.array([2])) == 1.0
    # MIMIC-II: 283 positives of 1776 rows
    assert majority_accuracy(np.array([1] * 283 + [0] * 1493)) == pytest.approx(0.8407, abs=1e-4)
    with pytest.raises(ValueError):
        majority_accuracy(np.array([]))


def test_explanation_accuracy() -> None:
    y = np.array([1, 1, 0, 0, 0])
    # "a" is true on rows 0, 1, 4 -> predictions 1 1 0 0 1 vs y == 1: 1 1 0 0 0 -> 4/5
    assert explanation_accuracy(Formula.parse("a"), X, y, NAMES) == 0.8
    # target class 0: y == 0 is 0 0 1 1 1; "~a" is 0 0 1 1 0 -> 4/5
    assert explanation_accuracy("~a", X, y, NAMES, target_class=0) == 0.8
    # "a & ~b": rows 0, 4 -> 1 0 0 0 1 vs 1 1 0 0 0 -> 3/5
    assert explanation_accuracy("a & ~b", X, y, NAMES) == 0.6
    # the empty explanation is False: right on the 3 negative rows
    assert explanation_accuracy("", X, y, NAMES) == 0.6
    assert explanation_accuracy(Formula.true(), X, y, NAMES) == 0.4


def test_explanation_fidelity() -> None:
    y_pred = np.array([1, 0, 0, 0, 1])
    # "a": 1 1 0 0 1 vs y_pred == 1: 1 0 0 0 1 -> 4/5
    assert explanation_fidelity(Formula.parse("a"), X, y_pred, NAMES) == 0.8
    # "a & ~b": 1 0 0 0 1 -> 5/5
    assert explanation_fidelity("a & ~b", X, y_pred, NAMES) == 1.0
    # target 0: y_pred == 0 is 0 1 1 1 0; "~a | b" is 0 1 1 1 0 -> 1
    assert explanation_fidelity("~a | b", X, y_pred, NAMES, target_class=0) == 1.0
    scores = np.array([[0.1, 0.9], [0.9, 0.1], [0.9, 0.1], [0.9, 0.1], [0.3, 0.7]])
    assert explanation_fidelity("a & ~b", X, scores, NAMES) == 1.0


def test_complexity() -> None:
    assert complexity(Formula.parse("(a & b) | ~a")) == 3
    assert complexity("(stroke_flg & age_HIGH) | (age_HIGH & ~bun_first_LOW)") == 4
    assert complexity("stroke_flg") == 1
    assert complexity("") == 0  # the reference counted 1
    assert complexity(Formula.true()) == 0


def test_consistency_hand_computed() -> None:
    # a: 2 of 3 formulas, b: 1 of 3, c: 1 of 3
    assert consistency([Formula.parse("a & b"), Formula.parse("a"), Formula.parse("c")]) == pytest.approx(
        np.mean([2 / 3, 1 / 3, 1 / 3])
    )
    # negated or not, once per formula: a in 2 of 2, b in 1 of 2
    assert consistency(["(a & b) | (~a & ~b) | a", "~a"]) == pytest.approx(np.mean([2 / 2, 1 / 2]))
    # formulas that mention nothing still count in the denominator: a in 1 of 3
    assert consistency(["a", "", "True"]) == pytest.approx(1 / 3)
    assert consistency(["stroke_flg"] * 10) == 1.0


def test_consistency_degenerate() -> None:
    assert consistency([]) == 0.0
    assert consistency([Formula.false(), Formula.false()]) == 0.0
    assert consistency(["", "True"]) == 0.0


def test_mean_and_sem() -> None:
    mean, sem = mean_and_sem([1.0, 2.0, 3.0, 4.0])
    # std with ddof=1: sqrt(((1.5^2 + 0.5^2) * 2) / 3) = sqrt(5/3); sem = that / 2
    assert mean == 2.5
    assert sem == pytest.approx(math.sqrt(5 / 3) / 2)
    mean, sem = mean_and_sem([0.7])  # one fold: no standard error (NaN, as pandas), not 0.0
    assert mean == 0.7 and math.isnan(sem)
    assert mean_and_sem([2, 2, 2]) == (2.0, 0.0)
    assert all(isinstance(v, float) for v in mean_and_sem(np.array([1, 2])))
    with pytest.raises(ValueError):
        mean_and_sem([])


def test_mean_and_sem_matches_pandas() -> None:
    pd = pytest.importorskip("pandas")
    values = [
        0.842697,
        0.837079,
        0.853933,
        0.865169,
        0.865169,
        0.859551,
        0.847458,
        0.864407,
        0.830508,
        0.875706,
    ]
    series = pd.Series(values)
    mean, sem = mean_and_sem(values)
    assert mean == pytest.approx(series.mean())
    assert sem == pytest.approx(series.sem())
