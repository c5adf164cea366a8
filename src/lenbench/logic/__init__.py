"""Pure logic core: DNF formulas, bounded simplification, metrics and formula extraction.

Only numpy and sympy (and duck-typed fitted scikit-learn trees): no torch, no files, no logging, so every explainer
and every report can share it and it can be tested in isolation.
"""

from lenbench.logic.extract import tree_to_formula
from lenbench.logic.formula import Formula, Literal, UnknownConceptError
from lenbench.logic.metrics import (
    accuracy,
    complexity,
    consistency,
    explanation_accuracy,
    explanation_fidelity,
    majority_accuracy,
    mean_and_sem,
    model_accuracy,
)
from lenbench.logic.simplify import SimplifyResult, simplify

__all__ = [
    "Formula",
    "Literal",
    "SimplifyResult",
    "UnknownConceptError",
    "accuracy",
    "complexity",
    "consistency",
    "explanation_accuracy",
    "explanation_fidelity",
    "majority_accuracy",
    "mean_and_sem",
    "model_accuracy",
    "simplify",
    "tree_to_formula",
]
