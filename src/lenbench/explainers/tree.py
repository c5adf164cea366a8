"""Decision-tree baseline: accurate enough, but its formula (every path to a class-1 leaf) is unreadable."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.tree import DecisionTreeClassifier

from lenbench.data.base import Fold
from lenbench.explainers.base import Explainer
from lenbench.logic.extract.tree import tree_to_formula
from lenbench.logic.formula import Formula
from lenbench.validation import is_int, refuse


class TreeExplainer(Explainer):
    """``DecisionTreeClassifier(random_state=seed)`` fitted on a fold's train+validation rows.

    ``binarize_inputs`` (default) fits and predicts on ``x > 0.5``: concepts are booleans, and on MIMIC-II one
    mean-imputed ``gender_num`` (0.58) would otherwise let the tree split at a threshold the formula cannot express,
    so tree and formula could disagree on that row. With it, the formula equals the tree on every row.
    """

    name = "tree"
    uses_torch = False

    def __init__(self, *, seed: int, binarize_inputs: bool = True, max_depth: int | None = None) -> None:
        if max_depth is not None and (not is_int(max_depth) or max_depth < 1):
            refuse(type(self).__name__, "max_depth", max_depth, "a positive integer or null")
        self.seed = seed
        self.binarize_inputs = binarize_inputs
        self.max_depth = max_depth
        self._tree: DecisionTreeClassifier | None = None

    def _inputs(self, x: np.ndarray) -> np.ndarray:
        return (x > 0.5).astype(np.float32) if self.binarize_inputs else x

    def fit(self, fold: Fold) -> TreeExplainer:
        self._tree = DecisionTreeClassifier(random_state=self.seed, max_depth=self.max_depth)
        self._tree.fit(self._inputs(fold.x_trainval), fold.y_trainval)
        return self

    @property
    def tree(self) -> DecisionTreeClassifier:
        if self._tree is None:
            raise RuntimeError("TreeExplainer.fit must be called before predict or explain")
        return self._tree

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.tree.predict(self._inputs(x)).astype(np.int64)

    def scores(self, x: np.ndarray) -> np.ndarray | None:
        """Leaf frequency of class 1 (``predict_proba``); all 0 when the tree never saw class 1."""
        classes = list(self.tree.classes_)
        if 1 not in classes:
            return np.zeros(len(x))
        return self.tree.predict_proba(self._inputs(x))[:, classes.index(1)]

    def explain(self, fold: Fold, target_class: int = 1) -> Formula:
        return tree_to_formula(self.tree, fold.concept_names, target_class)

    def explain_local(
        self, x: np.ndarray, labels: np.ndarray, names: Sequence[str]
    ) -> list[list[tuple[str, bool]]]:
        """The splits on each row's root-to-leaf path, with the row's side of each."""
        inputs = self._inputs(np.asarray(x))
        paths = self.tree.decision_path(inputs)
        feature, threshold = self.tree.tree_.feature, self.tree.tree_.threshold
        rows = []
        for i in range(inputs.shape[0]):
            nodes = paths.indices[paths.indptr[i] : paths.indptr[i + 1]]
            inner = [n for n in nodes if feature[n] >= 0]  # leaves have feature -2
            rows.append([(names[feature[n]], not bool(inputs[i, feature[n]] > threshold[n])) for n in inner])
        return rows

    def info(self) -> dict[str, Any]:
        if self._tree is None:
            return {}
        return {"tree_depth": int(self._tree.get_depth()), "tree_leaves": int(self._tree.get_n_leaves())}
