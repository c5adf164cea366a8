"""Metric ``explanation_precision``: of the test rows the formula is true on, the share of the target class.

One registry entry: the :class:`lenbench.scoring.Metric` below, declared under the entry-point group
``lenbench.metrics`` in this package's ``pyproject.toml``. lenbench then computes it for every fold of every method
that gives a formula and writes it wherever its own metrics go (``results.csv``, MLflow, the report).
"""

from __future__ import annotations

import numpy as np

from lenbench.scoring import FoldEvidence, Metric


def explanation_precision(evidence: FoldEvidence) -> float:
    """NaN when the formula is true on no test row (nothing to be precise about)."""
    fires = evidence.formula.evaluate(evidence.x, evidence.concept_names)
    if not fires.any():
        return float("nan")
    return float(np.mean(np.asarray(evidence.y_true)[fires] == evidence.target_class))


EXPLANATION_PRECISION = Metric(
    "explanation_precision", "explanation precision", explanation_precision, needs=frozenset({"formula"})
)
