"""Concept interventions (issue 27): which concepts an intervention replaces (k rounding, the random and the
uncertainty-first orders, determinism), the metric family in the registry, and the evidence a fold gives a method
on an encoder's concepts (0 % is its plain accuracy, 100 % its accuracy on the true concepts, NaN on true concepts).
The methods on raw inputs (cbm, the black box) are checked where they are trained, in test_concept_models."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import fold_of

from lenbench.data.synthetic import make_trig
from lenbench.explainers.tree import TreeExplainer
from lenbench.folds import CVConfig, intervention_evidence, run_fold
from lenbench.logic.metrics import INTERVENTION_ORDERS, intervened_count, intervention_mask
from lenbench.scoring import (
    BUILTIN_METRICS,
    INTERVENTION_PERCENTS,
    FoldEvidence,
    Interventions,
    intervention_metric_name,
    intervention_points,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
NAMES = [
    "intervention_accuracy_0",
    "intervention_accuracy_random_10",
    "intervention_accuracy_uncertain_10",
    "intervention_accuracy_random_25",
    "intervention_accuracy_uncertain_25",
    "intervention_accuracy_random_50",
    "intervention_accuracy_uncertain_50",
    "intervention_accuracy_100",
]


# -- which concepts --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "k,expected",
    [
        (3, [0, 0, 1, 2, 3]),
        (4, [0, 0, 1, 2, 4]),
        (10, [0, 1, 3, 5, 10]),
        (20, [0, 2, 5, 10, 20]),
        (1, [0, 0, 0, 1, 1]),
    ],
)
def test_a_share_of_the_concepts_is_the_nearest_whole_number_halves_up(k: int, expected: list[int]) -> None:
    assert [intervened_count(k, p) for p in INTERVENTION_PERCENTS] == expected
    with pytest.raises(ValueError, match="percent=101: must lie in"):
        intervened_count(k, 101)


def test_uncertain_first_picks_per_row_the_probabilities_closest_to_one_half() -> None:
    p = np.array([[0.9, 0.45, 0.2, 0.6], [0.5, 0.99, 0.01, 0.3], [0.1, 0.1, 0.1, 0.1]])
    half = intervention_mask(p, 50, "uncertain", seed=0)
    assert half.tolist() == [
        [False, True, False, True],  # |p - 0.5| = .4 .05 .3 .1
        [True, False, False, True],  # 0 .49 .49 .2
        [True, True, False, False],  # ties: the lower concept index first
    ]
    assert intervention_mask(p, 25, "uncertain", seed=0).sum(axis=1).tolist() == [1, 1, 1]
    assert intervention_mask(p, 25, "uncertain", seed=0)[:, 1].tolist() == [True, False, False]


def test_the_random_order_is_one_permutation_per_seed_for_every_row() -> None:
    p = np.random.default_rng(0).random((50, 10))
    order = np.random.default_rng(7).permutation(10)
    for percent in INTERVENTION_PERCENTS:
        mask = intervention_mask(p, percent, "random", seed=7)
        assert (mask == mask[0]).all()  # the same concepts in every row, whatever the probabilities
        assert set(np.flatnonzero(mask[0])) == set(order[: intervened_count(10, percent)])
    assert np.array_equal(intervention_mask(p, 50, "random", 7), intervention_mask(p, 50, "random", 7))
    assert not np.array_equal(intervention_mask(p, 50, "random", 7), intervention_mask(p, 50, "random", 8))


@pytest.mark.parametrize("order", INTERVENTION_ORDERS)
def test_a_larger_share_intervenes_on_the_smaller_ones_concepts_too(order: str) -> None:
    p = np.random.default_rng(1).random((40, 20))
    masks = [intervention_mask(p, percent, order, seed=3) for percent in INTERVENTION_PERCENTS]
    assert not masks[0].any() and masks[-1].all()
    for smaller, larger in zip(masks, masks[1:], strict=False):
        assert (larger | ~smaller).all()  # smaller implies larger
    with pytest.raises(ValueError, match="order='sorted': one of random, uncertain"):
        intervention_mask(p, 10, "sorted", seed=3)


# -- the metric family -----------------------------------------------------------------------------------------------


def test_the_family_is_declared_once_in_the_registry() -> None:
    assert [n for n in BUILTIN_METRICS.fold_names if n.startswith("intervention_")] == NAMES
    assert intervention_metric_name("random", 100) == intervention_metric_name("uncertain", 100)
    assert intervention_points(BUILTIN_METRICS)["uncertain"] == [
        (0, "intervention_accuracy_0"),
        (10, "intervention_accuracy_uncertain_10"),
        (25, "intervention_accuracy_uncertain_25"),
        (50, "intervention_accuracy_uncertain_50"),
        (100, "intervention_accuracy_100"),
    ]
    for name in NAMES:
        metric = BUILTIN_METRICS[name]
        assert metric.needs == {"interventions"} and metric.higher_is_better and not metric.headline
        assert not metric.compared  # read as a curve; at 0 % it is model_accuracy, which is tested
        assert metric.baseline == "majority_accuracy"
    assert len({BUILTIN_METRICS[name].label for name in NAMES}) == len(NAMES)


def _evidence(y: np.ndarray, interventions: Interventions | None) -> FoldEvidence:
    timings = {"training": 0.0, "extraction": 0.0}
    x, names = np.zeros((len(y), 3)), ["a", "b", "c"]
    return FoldEvidence(y, y, x, names, 1, None, None, timings, interventions=interventions)


def test_the_family_scores_the_labels_of_the_intervened_rows() -> None:
    """A stand-in model: the majority of three concepts, all predicted 0 (true: 1, 1, 0 in each row)."""
    y = np.ones(4, dtype=np.int64)
    truth = np.tile([1.0, 1.0, 0.0], (4, 1))
    p = np.array([[0.4, 0.1, 0.2]] * 4)  # concept a is the least sure
    interventions = Interventions(
        p, lambda mask: (np.where(mask, truth, 0.0).sum(axis=1) >= 2).astype(int), 0
    )
    scores = BUILTIN_METRICS.score_fold(_evidence(y, interventions))
    assert scores["intervention_accuracy_0"] == 0.0  # a and b predicted false
    assert scores["intervention_accuracy_uncertain_50"] == 0.0  # 2 of 3: a and c (|p - 0.5|: .1, .4, .3)
    assert scores["intervention_accuracy_100"] == 1.0
    first_two = set(np.random.default_rng(0).permutation(3)[:2])
    assert scores["intervention_accuracy_random_50"] == float(first_two == {0, 1})
    assert all(math.isnan(v) for k, v in BUILTIN_METRICS.score_fold(_evidence(y, None)).items() if k in NAMES)
    deaf = Interventions(p, lambda mask: None, 0)  # a concept model that cannot be intervened on
    assert all(math.isnan(v) for k, v in BUILTIN_METRICS.score_fold(_evidence(y, deaf)).items() if k in NAMES)


# -- a method on an encoder's concepts -------------------------------------------------------------------------------


def test_a_method_on_an_encoders_concepts_is_intervened_on_its_scored_rows() -> None:
    data = make_trig(n_samples=600, seed=0, concepts_from="encoder", encoder={"epochs": 30})
    fold = fold_of(data, fold=0, n_splits=5)
    truth = data.x[fold.test_index]
    assert np.array_equal(fold.concept_probabilities_test > 0.5, fold.x_test > 0.5)  # what it thresholded
    tree = TreeExplainer(seed=0).fit(fold)
    interventions = intervention_evidence(tree, fold, fold.x_test, truth)
    plain = np.mean(tree.predict(fold.x_test) == fold.y_test)
    on_truth = np.mean(tree.predict(truth) == fold.y_test)
    assert plain < on_truth  # the encoder errs (30 epochs): interventions have something to fix
    for order in INTERVENTION_ORDERS:
        assert interventions.accuracy(fold.y_test, 0, order) == plain
        assert interventions.accuracy(fold.y_test, 100, order) == on_truth
    result = run_fold(data, 0, CVConfig(n_splits=5), lambda: TreeExplainer(seed=0))
    assert result.metrics["intervention_accuracy_0"] == result.metrics["model_accuracy"] == plain
    assert result.metrics["intervention_accuracy_100"] == on_truth
    assert result.metrics["intervention_accuracy_uncertain_25"] >= result.metrics["intervention_accuracy_0"]
    again = run_fold(data, 0, CVConfig(n_splits=5), lambda: TreeExplainer(seed=0))
    assert [again.metrics[name] for name in NAMES] == [
        result.metrics[name] for name in NAMES
    ]  # deterministic


def test_a_method_on_the_true_concepts_has_no_interventions() -> None:
    data = make_trig(n_samples=300, seed=0)
    fold = fold_of(data, fold=0, n_splits=5)
    assert fold.concept_probabilities_test is None
    result = run_fold(data, 0, CVConfig(n_splits=5), lambda: TreeExplainer(seed=0))
    assert all(math.isnan(result.metrics[name]) for name in NAMES)
    assert not math.isnan(result.metrics["model_accuracy"])
