"""Read a fitted decision tree as a DNF formula over concept names."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lenbench.logic.formula import Formula, Literal

_TREE_LEAF = -1  # sklearn.tree._tree.TREE_LEAF; spelled out so this module needs no scikit-learn import


def tree_to_formula(tree: Any, concept_names: Sequence[str], target_class: int = 1) -> Formula:
    """The OR, over the leaves that predict ``target_class``, of the conjunction of the splits on the way there.

    A split ``x[f] <= threshold`` on the left branch gives ``~name`` and the right branch ``name``; that reading is
    only right on binarised concepts, so every threshold must lie strictly between 0 and 1. A leaf predicts
    ``tree.classes_[argmax(value)]``, the same rule (and tie-break) as ``tree.predict``. The formula is not
    simplified (its size is the point of the tree baseline); terms come in left-to-right leaf order and each
    term's literals from the root down. The walk is iterative, so deep trees cannot hit the recursion limit.
    """
    if not hasattr(tree, "tree_") or not hasattr(tree, "classes_"):
        raise ValueError(
            "tree_to_formula needs a fitted DecisionTreeClassifier (no tree_ / classes_ attribute)"
        )
    names = [str(n) for n in concept_names]
    n_features = getattr(tree, "n_features_in_", tree.tree_.n_features)
    if len(names) != n_features:
        raise ValueError(
            f"the tree was fitted on {n_features} features but {len(names)} concept names were given"
        )
    classes = np.asarray(tree.classes_)
    if classes.ndim != 1:
        raise ValueError("multi-output trees are not supported")
    if target_class not in classes.tolist():
        raise ValueError(f"target_class {target_class!r} is not one of the tree's classes {classes.tolist()}")

    t = tree.tree_
    left, right = t.children_left, t.children_right
    feature, threshold, value = t.feature, t.threshold, t.value

    terms: list[tuple[Literal, ...]] = []
    stack: list[tuple[int, tuple[Literal, ...]]] = [(0, ())]
    while stack:
        node, path = stack.pop()
        if left[node] == _TREE_LEAF:
            if classes[int(np.argmax(value[node][0]))] == target_class:
                terms.append(path)
            continue
        thr = float(threshold[node])
        if not 0.0 < thr < 1.0:
            raise ValueError(
                f"split on {names[feature[node]]!r} at threshold {thr}: tree_to_formula reads splits as "
                "concept true/false, so the tree must be fitted on binarised (0/1) concepts, whose thresholds "
                "lie strictly between 0 and 1"
            )
        name = names[feature[node]]
        stack.append((int(right[node]), (*path, (name, False))))
        stack.append((int(left[node]), (*path, (name, True))))  # popped first: left-to-right leaf order
    return Formula(tuple(terms))
