"""Predict, score and explain concept rows with a :class:`~lenbench.models.export.ModelExport`.

:class:`Predictor` rebuilds the fitted model once (a torch network from its layers, or the stored scikit-learn /
imodels estimator) and computes, for a float32 concept matrix ``x`` [n, k], exactly what the fold's explainer
computed: the same operations in the same order on the same dtype, so predictions and scores on CPU are bit for bit
those of the explainer (tested for every method). Local explanations follow each method's own reading:

- ``pruning``: the row's values of the concepts still connected to the first layer (one conjunction per row);
- ``weights``: the row's values of the concepts that weigh in its reduced (firing-path) model;
- ``entropy``: the row's values of the concepts in the concept mask of its predicted class, most attended first;
- ``tree``: the splits on the row's root-to-leaf path; ``brl``/``rulelist``: the first rule that fires (``True``
  for the default rule);
- ``psi`` and ``rf`` have none (empty text).

The local explanations are not simplified against other rows (that needs the fold's validation rows, which the
model does not carry): they are the concepts behind the decision, with the row's values.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lenbench.logic.extract.relu import select_by_pruning, select_by_weights
from lenbench.logic.formula import Formula
from lenbench.models.export import ModelExport
from lenbench.models.network import build_network, linear_arrays


class Predictor:
    """The model of a :class:`ModelExport`, rebuilt once, applied to concept matrices."""

    def __init__(self, export: ModelExport) -> None:
        self.export = export
        self.names = list(export.concept_names)
        self.formula = None if export.formula is None else Formula.parse(export.formula)
        kind = export.predictor["kind"]
        if kind not in ("network", "sklearn"):
            raise ValueError(f"unknown predictor kind {kind!r}")
        self._net = build_network(export.predictor["layers"]) if kind == "network" else None

    # -- labels and scores ---------------------------------------------------------------------------------------

    def _output(self, x: np.ndarray) -> Any:
        import torch

        with torch.no_grad():
            return self._net(torch.as_tensor(np.asarray(x, dtype=np.float32)))

    def _inputs(self, x: np.ndarray) -> np.ndarray:
        spec = self.export.predictor
        if spec["binarize"] is None:
            return x
        binary = (np.asarray(x) > 0.5).astype(spec["binarize"])
        return np.hstack([binary, 1.0 - binary]) if spec.get("negations") else binary

    def predict_and_score(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(labels int64 [n], class-1 scores float64 [n]) of the concept rows ``x``."""
        spec = self.export.predictor
        if self._net is not None:
            return _network_outputs(self._output(x), spec["head"])
        estimator, inputs = spec["estimator"], self._inputs(x)
        labels = np.asarray(estimator.predict(inputs)).astype(np.int64)
        proba = np.asarray(estimator.predict_proba(inputs))
        if spec["scores"] == "column1":
            return labels, proba[:, 1]
        classes = list(estimator.classes_)
        scores = proba[:, classes.index(1)] if 1 in classes else np.zeros(len(x))
        return labels, scores

    def formula_fires(self, x: np.ndarray) -> np.ndarray | None:
        """Whether the global formula is true on each row; None when the method has no formula."""
        return None if self.formula is None else self.formula.evaluate(x, self.names)

    # -- local explanations --------------------------------------------------------------------------------------

    def local_explanations(self, x: np.ndarray, labels: np.ndarray) -> list[str]:
        """Each row's local explanation as formula text ("" where the method has none)."""
        local = self.export.local
        if local is None or len(x) == 0:
            return [""] * len(x)
        kind = local["kind"]
        truth = np.asarray(x) > 0.5
        if kind in ("relu_pruning", "relu_weights"):
            selected = self._relu_selected(x, local)
            rows = [
                [(self.names[j], not truth[i, j]) for j in np.flatnonzero(s)] for i, s in enumerate(selected)
            ]
        elif kind == "entropy":
            order = [np.asarray(c, dtype=np.intp)[::-1] for c in local["concepts"]]
            rows = [[(self.names[j], not truth[i, j]) for j in order[c]] for i, c in enumerate(labels)]
        elif kind == "tree_path":
            rows = self._tree_paths(self._inputs(x))
        elif kind == "rule_list":
            rows = _first_rules(local["rules"], truth, self.names)
        else:
            raise ValueError(f"unknown local explanation kind {kind!r}")
        return [str(Formula.conjunction(literals)) for literals in rows]

    def _relu_selected(self, x: np.ndarray, local: dict[str, Any]) -> np.ndarray:
        layers = linear_arrays(self.export.predictor["layers"])
        if local["kind"] == "relu_pruning":
            return select_by_pruning(layers[0][0], len(x))
        return select_by_weights(layers, np.asarray(x), local["threshold"], local["negative_slope"])

    def _tree_paths(self, inputs: np.ndarray) -> list[list[tuple[str, bool]]]:
        tree = self.export.predictor["estimator"]
        paths = tree.decision_path(inputs)
        feature, threshold = tree.tree_.feature, tree.tree_.threshold
        rows = []
        for i in range(inputs.shape[0]):
            nodes = paths.indices[paths.indptr[i] : paths.indptr[i + 1]]
            rows.append(
                [
                    (self.names[feature[n]], not bool(inputs[i, feature[n]] > threshold[n]))
                    for n in nodes
                    if feature[n] >= 0  # leaves have feature -2
                ]
            )
        return rows


def _network_outputs(output: Any, head: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Labels and class-1 scores from a network's output, as the explainers compute them."""
    import torch

    if head["kind"] == "argmax":
        labels = output.argmax(dim=1).numpy()
        probabilities = output if head["probabilities"] else torch.softmax(output, dim=1)
        return labels.astype(np.int64), probabilities[:, 1].numpy().astype(np.float64)
    target = int(head["target_class"])
    p = output.squeeze(1).numpy()
    labels = np.where(p > 0.5, target, 1 - target)
    return labels.astype(np.int64), (p if target == 1 else 1.0 - p).astype(np.float64)


def _first_rules(
    rules: list[tuple[list[tuple[str, bool]], int]], truth: np.ndarray, names: list[str]
) -> list[list[tuple[str, bool]]]:
    """The literals of the first rule that fires on each row (the default rule: no literal, i.e. True)."""
    index = {name: j for j, name in enumerate(names)}
    chosen: list[list[tuple[str, bool]] | None] = [None] * truth.shape[0]
    for literals, _ in rules:
        fires = np.ones(truth.shape[0], dtype=bool)
        for name, negated in literals:
            fires &= truth[:, index[name]] != negated
        for i in np.flatnonzero(fires):
            if chosen[i] is None:
                chosen[i] = list(literals)
    return [c if c is not None else [] for c in chosen]
