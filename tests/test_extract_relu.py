"""Local explanations of ReLU networks: reduced models, feature selection, local simplification, top-k."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lenbench.data.base import Fold
from lenbench.explainers.relu_net import ReluNetExplainer
from lenbench.logic.extract.relu import (
    explain_class,
    local_literals,
    rank_local_explanations,
    reduced_weights,
    select_by_pruning,
    select_by_weights,
    simplify_local_literals,
)
from lenbench.logic.formula import Formula

NAMES = ["c0", "c1", "c2"]


def terms(formula: Formula | str) -> set[frozenset[tuple[str, bool]]]:
    """A DNF as a set of terms, so that tests do not depend on the order sympy prints literals in."""
    f = Formula.parse(formula) if isinstance(formula, str) else formula
    return {frozenset(t) for t in f.terms}


# Hidden unit 0 = relu(c0), unit 1 = relu(c1 - c2 - 0.5); class-1 logit = u0 + u1, class-0 logit = -(u0 + u1).
W1 = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, -1.0]])
B1 = np.array([0.0, -0.5])
W2 = np.array([[-1.0, -1.0], [1.0, 1.0]])
B2 = np.zeros(2)
LAYERS = [(W1, B1), (W2, B2)]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py: one thread, as the protocol


def test_reduced_model_of_a_hand_built_network() -> None:
    x = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]], dtype=np.float64)
    reduced = reduced_weights(LAYERS, x)
    # only unit 0 fires / only unit 1 fires / both / none
    assert np.array_equal(reduced[0], [[-1, 0, 0], [1, 0, 0]])
    assert np.array_equal(reduced[1], [[0, -1, 1], [0, 1, -1]])
    assert np.array_equal(reduced[2], W2 @ W1)
    assert np.array_equal(reduced[3], np.zeros((2, 3)))
    selected = select_by_weights(LAYERS, x)
    assert selected.tolist() == [
        [True, False, False],
        [False, True, True],
        [True, True, True],
        [True, True, True],  # nothing fires: no column passes, so every input is kept (as the reference)
    ]


def test_reduced_model_is_the_jacobian_of_a_leaky_network() -> None:
    rng = np.random.default_rng(0)
    layers = [(rng.normal(size=(7, 5)), rng.normal(size=7)), (rng.normal(size=(4, 7)), rng.normal(size=4))]
    layers.append((rng.normal(size=(2, 4)), rng.normal(size=2)))
    x = rng.random((6, 5))

    def forward(v: np.ndarray) -> np.ndarray:
        for weight, bias in layers[:-1]:
            h = v @ weight.T + bias
            v = np.where(h > 0, h, 0.01 * h)
        return v @ layers[-1][0].T + layers[-1][1]

    reduced = reduced_weights(layers, x, negative_slope=0.01)
    eps = 1e-7
    for j in range(5):
        step = np.zeros(5)
        step[j] = eps
        numeric = (forward(x + step) - forward(x - step)) / (2 * eps)
        np.testing.assert_allclose(reduced[:, :, j], numeric, atol=1e-5)


def test_local_explanations_and_global_explanation_of_the_hand_built_network() -> None:
    x = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 1], [1, 1, 0], [0, 1, 0]], dtype=np.float64)
    literals = local_literals(x, select_by_weights(LAYERS, x))
    assert literals.tolist() == [[1, 0, 0], [0, 1, -1], [1, 0, 0], [1, 1, -1], [0, 1, -1]]
    result = explain_class(x, select_by_weights(LAYERS, x), NAMES, topk=3)
    assert terms(result.formula) == terms("c0 | (c1 & ~c2)")  # c0 & c1 & ~c2 is absorbed
    assert [(str(f), n) for f, n in result.candidates] == [("c0", 2), ("c1 & ~c2", 2), ("c0 & c1 & ~c2", 1)]
    assert (result.n_rows, result.n_explained, result.n_distinct, result.empty) == (5, 5, 3, False)


def test_top_k_ties_go_to_the_first_occurrence() -> None:
    literals = np.array([[0, 1, 0], [1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, -1], [0, 0, 0]], dtype=np.int8)
    ranked = rank_local_explanations(literals)
    assert [(row.tolist(), n, first) for row, n, first in ranked] == [
        ([0, 1, 0], 2, 0),
        ([1, 0, 0], 2, 1),
        ([0, 0, -1], 1, 4),
    ]
    x = np.array([[0, 1, 0], [1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=np.float64)
    selected = np.array([[0, 1, 0], [1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=bool)
    assert terms(explain_class(x, selected, NAMES, topk=1).formula) == terms("c1")


def test_pruning_selection_uses_the_connected_inputs() -> None:
    weight = np.array([[0.0, 2.0, 0.0], [0.0, -1.0, 0.5]])
    assert select_by_pruning(weight, 2).tolist() == [[False, True, True]] * 2
    x = np.array([[1, 0, 1], [0, 1, 0]], dtype=np.float64)
    result = explain_class(x, select_by_pruning(weight, 2), NAMES, topk=3)
    assert terms(result.formula) == terms("(~c1 & c2) | (c1 & ~c2)")


def test_local_simplification_drops_literals_that_do_not_separate() -> None:
    literals = np.array([[1, -1, 1], [1, -1, 1], [0, 1, 0]], dtype=np.int8)
    opposite = np.array([[1, 1, 1], [0, 0, 1]], dtype=np.float64)
    simplified, removed = simplify_local_literals(literals, opposite)
    # dropping c0 leaves ~c1 & c2, true on (0, 0, 1); dropping ~c1 leaves c0 & c2, true on (1, 1, 1); c2 can go
    assert simplified.tolist() == [[1, -1, 0], [1, -1, 0], [0, 1, 0]]
    assert removed == 2
    # with no opposite row everything can go but the last literal, as in the reference
    assert simplify_local_literals(literals[:1], np.zeros((0, 3)))[0].tolist() == [[0, 0, 1]]


def test_simplify_local_option_changes_the_global_explanation() -> None:
    x = np.array([[1, 0, 1], [1, 0, 1]], dtype=np.float64)
    selected = np.ones((2, 3), dtype=bool)
    opposite = np.array([[0, 0, 1], [1, 1, 1]], dtype=np.float64)
    assert terms(explain_class(x, selected, NAMES).formula) == terms("c0 & ~c1 & c2")
    simplified = explain_class(x, selected, NAMES, x_opposite=opposite, simplify_local=True)
    assert terms(simplified.formula) == terms("c0 & ~c1")
    assert simplified.literals_removed == 2
    with pytest.raises(ValueError, match="x_opposite"):
        explain_class(x, selected, NAMES, simplify_local=True)


def test_no_row_gives_the_constant_false() -> None:
    result = explain_class(np.zeros((0, 3)), np.zeros((0, 3), dtype=bool), NAMES)
    assert result.formula.is_false and result.empty and result.candidates == ()


def test_simplification_fall_back_is_recorded() -> None:
    x = np.array([[1, 0, 1], [0, 1, 1]], dtype=np.float64)
    result = explain_class(x, np.ones((2, 3), dtype=bool), NAMES, max_terms=1)
    assert not result.simplify_exact and result.simplify is not None and result.simplify.method == "fallback"
    assert terms(result.formula) == terms("(c0 & ~c1 & c2) | (~c0 & c1 & c2)")


def test_topk_must_be_positive() -> None:
    with pytest.raises(ValueError, match="topk=0"):
        explain_class(np.zeros((1, 3)), np.ones((1, 3), dtype=bool), NAMES, topk=0)


def _fold(x_val: np.ndarray, y_val: np.ndarray) -> Fold:
    empty_x, empty_i = np.zeros((0, 3), dtype=np.float32), np.zeros(0, dtype=np.int64)
    return Fold(
        index=0,
        concept_names=NAMES,
        x_trainval=np.concatenate([x_val, x_val]),
        y_trainval=np.concatenate([y_val, y_val]),
        trainval_index=np.arange(2 * len(y_val)),
        x_train=x_val,
        y_train=y_val,
        x_val=x_val,
        y_val=y_val,
        x_test=empty_x,
        y_test=empty_i,
        train_index=np.arange(len(y_val)),
        val_index=np.arange(len(y_val), 2 * len(y_val)),
        test_index=empty_i,
    )


def test_explainer_on_a_hand_built_network() -> None:
    """The whole explain path: correct rows of class 1 only, their reduced models, top-k, simplification."""
    x_val = np.array(
        [[1, 0, 0], [0, 1, 0], [1, 0, 1], [0, 0, 0], [0, 1, 1], [1, 1, 0], [0, 1, 0], [1, 1, 1]],
        dtype=np.float32,
    )
    # the network predicts 1 exactly when c0 | (c1 & ~c2); row 6 is labelled 0 (a wrong prediction, skipped)
    y_val = np.array([1, 1, 1, 0, 0, 1, 0, 1])
    explainer = ReluNetExplainer(
        seed=0, feature_selection="weights", hidden=[2], activation="relu", output="logits", epochs=1, topk=1
    )
    explainer.train(x_val, y_val)
    linears = [m for m in explainer.network.modules() if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for layer, (weight, bias) in zip(linears, LAYERS, strict=True):
            layer.weight.copy_(torch.tensor(weight))
            layer.bias.copy_(torch.tensor(bias))
    assert explainer.predict(x_val).tolist() == [1, 1, 1, 0, 0, 1, 1, 1]
    formula = explainer.explain(_fold(x_val, y_val), target_class=1)
    assert formula == Formula.parse(
        "c0"
    )  # c0 (rows 0, 2, 7) beats c1 & ~c2 (row 1) and c0 & c1 & ~c2 (row 5)
    info = explainer.info()
    assert info["explained_rows"] == 5 and info["opposite_rows"] == 2
    assert info["top_local_explanations"] == [["c0", 3]] and info["distinct_local_explanations"] == 3
    assert not info["empty_explanation"] and info["simplify_exact"]

    explainer.topk = 3
    assert terms(explainer.explain(_fold(x_val, y_val))) == terms("c0 | (c1 & ~c2)")
    # no correctly classified row of class 1: the constant False, flagged
    assert explainer.explain(_fold(x_val[[3, 4]], y_val[[3, 4]])).is_false
    assert explainer.info()["empty_explanation"] is True
