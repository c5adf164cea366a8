"""Predict, score and explain concept rows with a :class:`~lenbench.models.export.ModelExport`.

The exported model is the fold explainer's own (``Explainer.exported()``): it computes, for a concept matrix ``x``
[n, k], exactly what the fold's explainer computed, so predictions and scores on CPU are bit for bit those of the
explainer (tested for every method). Each method reads its local explanations its own way (``explain_local``):
e.g. ``pruning`` the row's values of the concepts still connected to the first layer, ``tree`` the splits on the
row's path, ``brl``/``rulelist`` the first rule that fires; ``psi`` and ``rf`` have none (empty text). They are not
simplified against other rows (that needs the fold's validation rows, which the model does not carry): they are the
concepts behind the decision, with the row's values.
"""

from __future__ import annotations

import numpy as np

from lenbench.logic.formula import Formula
from lenbench.models.export import ModelExport


class Predictor:
    """The model of a :class:`ModelExport` applied to concept matrices, with its formula parsed once."""

    def __init__(self, export: ModelExport) -> None:
        self.export = export
        self.names = list(export.concept_names)
        self.formula = None if export.formula is None else Formula.parse(export.formula)

    def predict_and_score(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(labels int64 [n], class-1 scores float64 [n]) of the concept rows ``x``."""
        return self.export.model.predict_and_score(x)

    def formula_fires(self, x: np.ndarray) -> np.ndarray | None:
        """Whether the global formula is true on each row; None when the method has no formula."""
        return None if self.formula is None else self.formula.evaluate(x, self.names)

    def local_explanations(self, x: np.ndarray, labels: np.ndarray) -> list[str]:
        """Each row's local explanation as formula text ("" where the method has none)."""
        rows = self.export.model.explain_local(x, labels, self.names) if len(x) else None
        if rows is None:
            return [""] * len(x)
        return [str(Formula.conjunction(literals)) for literals in rows]
