"""How well an extracted formula recovers a known true formula: agreement, equivalence and concept differences.

A synthetic data set knows the formula its labels were made from (``ConceptDataset.ground_truth``), so an
explanation can be scored against the truth itself instead of against noisy test rows:

- :func:`truth_agreement`: the share of assignments of the concepts *either formula mentions* on which the two agree.
  Every assignment is enumerated when there are at most :data:`MAX_ENUMERATED` such concepts (2**20 rows); above,
  a seeded uniform sample of :data:`SAMPLE_SIZE` assignments estimates it (same seed, same number). The assignments
  are uniform over the cube, not the data's distribution: on digits, whose concepts are one-hot, ``~one & ~three &
  ~five & ~seven & ~nine`` matches every real row of ``zero | two | four | six | eight`` yet disagrees with it on
  most of the cube, and agreement says so.
- :func:`truth_exact`: 1.0 when the two are logically equivalent, else 0.0 (exact: by enumeration, or above
  :data:`MAX_ENUMERATED` concepts by a counterexample in the sample or a tautology proof per term; NaN only when
  neither settles it within the proof's work budget).
- :func:`concept_differences`: the concepts the formula mentions that the truth does not (wrongly used) and those
  the truth mentions that the formula does not (missed).

Pure numpy (no torch, no files), like the rest of :mod:`lenbench.logic`.
"""

from __future__ import annotations

import numpy as np

from lenbench.logic.formula import Formula, Term
from lenbench.logic.simplify import _is_tautology

MAX_ENUMERATED = 20
"""Most concepts whose every assignment is enumerated (2**20 = 1,048,576 rows, a few MB)."""

SAMPLE_SIZE = 100_000
"""Assignments sampled above :data:`MAX_ENUMERATED` concepts (standard error of the agreement below 0.002)."""

SAMPLE_SEED = 0


def _assignments(k: int, seed: int = SAMPLE_SEED) -> np.ndarray:
    """Every assignment of k concepts (uint8 [2**k, k]) when k <= MAX_ENUMERATED, else a seeded uniform sample."""
    if k <= MAX_ENUMERATED:
        rows = np.arange(2**k, dtype=np.uint32)[:, None]
        return ((rows >> np.arange(k, dtype=np.uint32)) & 1).astype(np.uint8)
    return np.random.default_rng(seed).integers(0, 2, size=(SAMPLE_SIZE, k), dtype=np.uint8)


def _agreement_and_names(formula: Formula, truth: Formula, seed: int) -> tuple[float, int]:
    names = sorted(formula.concepts | truth.concepts)
    x = _assignments(len(names), seed)
    if not names:  # both constants: one (empty) assignment
        return float(formula.is_true == truth.is_true), 0
    same = formula.evaluate(x, names) == truth.evaluate(x, names)
    return float(same.mean()), len(names)


def truth_agreement(formula: Formula, truth: Formula, seed: int = SAMPLE_SEED) -> float:
    """Share of the assignments of the concepts either formula mentions on which ``formula`` and ``truth`` agree
    (1.0: equivalent; 0.0: ``formula`` is the negation of ``truth``); see the module docstring."""
    return _agreement_and_names(formula, truth, seed)[0]


def truth_exact(formula: Formula, truth: Formula, seed: int = SAMPLE_SEED) -> float:
    """1.0 when ``formula`` and ``truth`` are logically equivalent, 0.0 when not, NaN when undecided (only above
    :data:`MAX_ENUMERATED` concepts, when the tautology proof runs out of budget)."""
    agreement, k = _agreement_and_names(formula, truth, seed)
    if agreement < 1.0:
        return 0.0  # a counterexample was enumerated or sampled
    if k <= MAX_ENUMERATED:
        return 1.0  # every assignment agrees
    proven = _implies(formula, truth) and _implies(truth, formula)
    return 1.0 if proven else float("nan")


def _implies(a: Formula, b: Formula) -> bool:
    """Whether every term of ``a`` implies ``b`` (``b`` restricted by the term is a tautology); False may also mean
    that the proof ran out of budget."""
    return all(_is_tautology(_restrict(b, term)) for term in a.terms)


def _restrict(formula: Formula, term: Term) -> tuple[Term, ...]:
    """The terms of ``formula`` with the literals of ``term`` set true: conflicting terms go, satisfied literals go."""
    fixed = dict(term)  # name -> negated
    out: list[Term] = []
    for t in formula.terms:
        if any(name in fixed and fixed[name] != negated for name, negated in t):
            continue
        out.append(tuple(lit for lit in t if lit[0] not in fixed))
    return tuple(out)


def concept_differences(formula: Formula, truth: Formula) -> tuple[list[str], list[str]]:
    """(concepts ``formula`` mentions that ``truth`` does not: wrongly used; concepts ``truth`` mentions that
    ``formula`` does not: missed), each sorted. Mentions, not semantic dependence: what a reader of the formula sees.
    """
    return sorted(formula.concepts - truth.concepts), sorted(truth.concepts - formula.concepts)
