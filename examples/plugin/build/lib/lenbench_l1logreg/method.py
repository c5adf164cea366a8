"""Method ``l1logreg``: an L1-regularised logistic regression read out as a DNF over its strongest concepts.

A complete lenbench method in one file, outside lenbench: the class keeps lenbench's explainer contract
(:mod:`lenbench.explainers.base`), so the job trains, scores, tracks and exports it like a built-in method, the
tuner searches ``conf/search/l1logreg.yaml``, and its logged model predicts and explains new rows. Nothing under
lenbench's ``src/`` names it.

The formula: the ``max_literals`` concepts with the largest absolute weights; every assignment of them that occurs
on the fold's validation rows and on which the model predicts the target class for most of those rows is a term;
the OR of the terms, minimised. A row's local explanation is its own values of those concepts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression

from lenbench.data.base import Fold
from lenbench.explainers.base import Explainer
from lenbench.logic.formula import Formula
from lenbench.logic.simplify import simplify
from lenbench.validation import check_int, check_positive, check_seed


def _binary(x: np.ndarray) -> np.ndarray:
    return (np.asarray(x) > 0.5).astype(np.float64)


def _l1_logistic(C: float, seed: int) -> LogisticRegression:  # noqa: N803 - scikit-learn's name
    """scikit-learn 1.8 deprecates ``penalty`` (``l1_ratio=1`` means L1 there); earlier versions need it."""
    major, minor = (int(part) for part in sklearn.__version__.split(".")[:2])
    penalty = {"l1_ratio": 1.0} if (major, minor) >= (1, 8) else {"penalty": "l1"}
    return LogisticRegression(C=C, solver="liblinear", random_state=seed, **penalty)


class L1LogisticExplainer(Explainer):
    """Logistic regression with an L1 penalty (``C``: inverse strength) on the booleanised concepts."""

    name = "l1logreg"

    def __init__(self, *, seed: int, C: float = 0.1, max_literals: int = 3) -> None:  # noqa: N803 - sklearn's C
        owner = type(self).__name__  # lenbench's checks: a bad value is one line naming the key (exit 2)
        self.seed = check_seed(owner, seed)
        self.C = check_positive(owner, "C", C)
        self.max_literals = check_int(owner, "max_literals", max_literals, 1)
        self._model: LogisticRegression | None = None

    @property
    def model(self) -> LogisticRegression:
        if self._model is None:
            raise RuntimeError("L1LogisticExplainer.fit must be called before predict or explain")
        return self._model

    def fit(self, fold: Fold) -> L1LogisticExplainer:
        self._model = _l1_logistic(self.C, self.seed).fit(_binary(fold.x_trainval), fold.y_trainval)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict(_binary(x)).astype(np.int64)

    def scores(self, x: np.ndarray) -> np.ndarray:
        classes = list(self.model.classes_)
        if 1 not in classes:
            return np.zeros(len(x))
        return self.model.predict_proba(_binary(x))[:, classes.index(1)]

    def strongest(self) -> np.ndarray:
        """Indices of the concepts with the largest absolute weights (at most ``max_literals``, none of weight 0)."""
        weight = np.abs(self.model.coef_).max(axis=0)
        order = np.argsort(-weight, kind="stable")[: self.max_literals]
        return np.sort(order[weight[order] > 0])

    def explain(self, fold: Fold, target_class: int = 1) -> Formula:
        top = self.strongest()
        patterns = _binary(fold.x_val)[:, top]
        predicted = self.predict(fold.x_val)
        terms = []
        for pattern in np.unique(patterns, axis=0):
            rows = (patterns == pattern).all(axis=1)
            if np.mean(predicted[rows] == target_class) > 0.5:
                literals = [(fold.concept_names[j], bool(v < 0.5)) for j, v in zip(top, pattern, strict=True)]
                terms.append(Formula.conjunction(literals))
        return simplify(Formula.disjunction(terms)).formula

    def explain_local(
        self, x: np.ndarray, labels: np.ndarray, names: Sequence[str]
    ) -> list[list[tuple[str, bool]]]:
        """Each row's own values of the strongest concepts."""
        truth = _binary(x) > 0.5
        top = self.strongest()
        return [[(names[j], not row[j]) for j in top] for row in truth]

    def info(self) -> dict[str, Any]:
        if self._model is None:
            return {}
        return {"concepts_used": int(np.count_nonzero(self._model.coef_))}
