"""A formula read from a model's decisions on the concept assignments it was shown: its truth table, row by row.

A task head on a concept bottleneck (:mod:`lenbench.explainers.cbm`) is a function of its concepts; evaluated on the
distinct boolean assignments some rows show, its decisions are a truth table, and the OR of the assignments it
decides for the target class (each one a full conjunction) is a formula equal to the head on every such assignment.
Assignments no row shows are left false: the formula claims nothing about concept combinations never seen.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lenbench.logic.formula import Formula


def distinct_assignments(concepts: np.ndarray) -> np.ndarray:
    """The distinct boolean assignments (> 0.5 is true) among the rows of ``concepts`` [n, k], sorted: bool [m, k]."""
    rows = np.asarray(concepts) > 0.5
    if rows.ndim != 2:
        raise ValueError(f"concepts must be rows [n, k], got shape {rows.shape}")
    return np.unique(rows, axis=0)


def truth_table_formula(assignments: np.ndarray, decisions: np.ndarray, names: Sequence[str]) -> Formula:
    """The OR of the conjunctions of ``assignments`` [m, k] (bool) whose ``decisions`` [m] are True, over the
    concept ``names``; False when none is (unminimised: :func:`lenbench.logic.simplify.simplify` minimises it)."""
    assignments, decisions = np.asarray(assignments, dtype=bool), np.asarray(decisions, dtype=bool)
    if assignments.ndim != 2 or assignments.shape != (decisions.shape[0], len(names)):
        raise ValueError(
            f"assignments {assignments.shape} and decisions {decisions.shape} do not fit {len(names)} concept names"
        )
    terms = [
        Formula.conjunction([(name, not bool(value)) for name, value in zip(names, row, strict=True)])
        for row in assignments[decisions]
    ]
    return Formula.disjunction(terms) if terms else Formula.false()


def majority_decisions(concepts: np.ndarray, decided: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct assignments of the rows ``concepts`` [n, k], sorted as :func:`distinct_assignments`; for each,
    whether most rows showing it are ``decided`` [n] (a tie is not)): the truth table of a model whose decision is
    not a function of the concepts alone (a concept embedding model), read from its decisions on rows."""
    rows = np.asarray(concepts) > 0.5
    if rows.ndim != 2 or np.shape(decided) != (rows.shape[0],):
        raise ValueError(
            f"concepts {rows.shape} and decisions {np.shape(decided)} do not describe the same rows"
        )
    assignments, inverse = np.unique(rows, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    votes = np.bincount(inverse, weights=np.asarray(decided, dtype=float), minlength=len(assignments))
    return assignments, 2 * votes > np.bincount(inverse, minlength=len(assignments))
