"""tree_to_formula reproduces the tree's own predictions."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.tree import DecisionTreeClassifier

from lenbench.logic import Formula, tree_to_formula

NAMES = [f"concept_{i}" for i in range(8)]


def fitted_tree(seed: int, n: int = 300, **kwargs) -> tuple[DecisionTreeClassifier, np.ndarray]:  # noqa: ANN003
    rng = np.random.default_rng(seed)
    x = (rng.random((n, len(NAMES))) < 0.5).astype(np.float32)
    noise = rng.random(n) < 0.15
    y = ((x[:, 0].astype(bool) & ~x[:, 3].astype(bool)) | x[:, 5].astype(bool)) ^ noise
    tree = DecisionTreeClassifier(random_state=seed, **kwargs).fit(x, y.astype(np.int64))
    return tree, x


def leaf_depths(tree: DecisionTreeClassifier, target_class: int) -> int:
    """Sum of the depths of the leaves predicting target_class (= literals on their paths)."""
    t = tree.tree_
    total, stack = 0, [(0, 0)]
    while stack:
        node, depth = stack.pop()
        if t.children_left[node] == -1:
            if tree.classes_[np.argmax(t.value[node])] == target_class:
                total += depth
        else:
            stack += [(t.children_left[node], depth + 1), (t.children_right[node], depth + 1)]
    return total


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("target_class", [0, 1])
def test_formula_reproduces_tree_predictions(seed: int, target_class: int) -> None:
    tree, x = fitted_tree(seed)
    formula = tree_to_formula(tree, NAMES, target_class)
    np.testing.assert_array_equal(formula.evaluate(x, NAMES), tree.predict(x) == target_class)
    assert formula.complexity == leaf_depths(tree, target_class)
    assert Formula.parse(str(formula)) == formula


def test_formulas_of_both_classes_partition_rows() -> None:
    tree, x = fitted_tree(7)
    f0, f1 = tree_to_formula(tree, NAMES, 0), tree_to_formula(tree, NAMES, 1)
    assert not np.any(f0.evaluate(x, NAMES) & f1.evaluate(x, NAMES))
    assert np.all(f0.evaluate(x, NAMES) | f1.evaluate(x, NAMES))


def test_small_tree_by_hand() -> None:
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]] * 5, dtype=float)
    y = np.array([0, 0, 1, 0] * 5)  # class 1 iff a & ~b
    tree = DecisionTreeClassifier(random_state=0).fit(x, y)
    f1 = tree_to_formula(tree, ["a", "b"], 1)
    assert set(f1.terms[0]) == {("a", False), ("b", True)} and len(f1.terms) == 1
    f0 = tree_to_formula(tree, ["a", "b"], 0)
    np.testing.assert_array_equal(f0.evaluate(x, ["a", "b"]), y == 0)
    assert "~" in str(f0)


def test_single_leaf_tree_is_a_constant() -> None:
    x = np.zeros((10, 2))
    y = np.array([0] * 7 + [1] * 3)
    tree = DecisionTreeClassifier().fit(x, y)
    assert tree.tree_.node_count == 1
    assert tree_to_formula(tree, ["a", "b"], 0) == Formula.true()
    assert tree_to_formula(tree, ["a", "b"], 1) == Formula.false()


def chain_tree(depth: int) -> SimpleNamespace:
    """A fitted-tree look-alike: node i splits on concept i; its left leaf predicts 0, the chain goes right."""
    left, right, feature, threshold, value = [], [], [], [], []

    def add(node_left: int, node_right: int, split: int, thr: float, counts: list[float]) -> None:
        left.append(node_left)
        right.append(node_right)
        feature.append(split)
        threshold.append(thr)
        value.append([counts])

    for i in range(depth):
        node = len(left)
        add(node + 1, node + 2, i, 0.5, [0.5, 0.5])
        add(-1, -1, -2, -2.0, [1.0, 0.0])
    add(-1, -1, -2, -2.0, [0.0, 1.0])
    arrays = {
        "children_left": np.array(left),
        "children_right": np.array(right),
        "feature": np.array(feature),
        "threshold": np.array(threshold),
        "value": np.array(value),
        "n_features": depth,
    }
    return SimpleNamespace(tree_=SimpleNamespace(**arrays), classes_=np.array([0, 1]), n_features_in_=depth)


def test_deep_tree_no_recursion_limit() -> None:
    depth = 1200  # deeper than the default recursion limit (1000)
    names = [f"c{i}" for i in range(depth)]
    f1 = tree_to_formula(chain_tree(depth), names, 1)
    assert f1 == Formula.conjunction((n, False) for n in names)
    f0 = tree_to_formula(chain_tree(depth), names, 0)
    assert len(f0.terms) == depth and f0.complexity == depth * (depth + 1) // 2
    assert str(f0).startswith("~c0 | (c0 & ~c1) | (c0 & c1 & ~c2)")


def test_non_binary_thresholds_rejected() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 2)) * 3
    y = (x[:, 0] > 1.7).astype(int)
    tree = DecisionTreeClassifier(random_state=0).fit(x, y)
    with pytest.raises(ValueError, match="binarised"):
        tree_to_formula(tree, ["a", "b"], 1)


def test_bad_inputs() -> None:
    tree, _ = fitted_tree(0)
    with pytest.raises(ValueError, match="8 features"):
        tree_to_formula(tree, NAMES[:5], 1)
    with pytest.raises(ValueError, match="not one of"):
        tree_to_formula(tree, NAMES, 2)
    with pytest.raises(ValueError, match="fitted"):
        tree_to_formula(DecisionTreeClassifier(), NAMES, 1)


def test_string_labels() -> None:
    tree, x = fitted_tree(3)
    y = np.where(tree.predict(x) == 1, "died", "alive")
    tree2 = DecisionTreeClassifier(random_state=0).fit(x, y)
    f = tree_to_formula(tree2, NAMES, "died")  # type: ignore[arg-type]
    np.testing.assert_array_equal(f.evaluate(x, NAMES), tree2.predict(x) == "died")
