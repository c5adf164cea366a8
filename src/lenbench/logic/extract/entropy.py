"""Global explanations of the entropy-based LEN (method ``entropy``) from its concept masks, in numpy only.

The network (:class:`lenbench.nn.layers.EntropyLinear` first) gives, per class, an attention over the concepts and
a mask of the concepts an explanation may use; the explainer passes them in as numpy arrays with the booleanised
rows (``x > 0.5``). Explanation of class t:

1. :func:`explanation_concepts`: the masked concepts, least attended first (the order literals are tried for
   dropping), optionally only the ``max_literals`` most attended;
2. each row of class t that the model classifies correctly gives a local explanation, the AND of those concepts with
   that row's values; :func:`simplify_term` drops literals (least attended first) while its accuracy on the
   correctly classified rows of both classes does not fall;
3. the ``topk`` local explanations (most frequent, or most accurate on the ranking rows: ``selection``) are ranked by
   accuracy on the ranking rows and OR-ed greedily: a candidate joins when the simplified OR is more accurate on
   those rows than the best so far, as the reference aggregates. Simplification is bounded
   (:func:`lenbench.logic.simplify.simplify`); fall-backs are recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lenbench.logic.formula import Formula, Literal
from lenbench.logic.simplify import simplify

SELECTIONS = ("frequency", "accuracy")

Term = tuple[Literal, ...]
Candidate = tuple[Formula, int, int, float]
"""(local explanation, rows it explains, first row, accuracy on the ranking rows)."""


@dataclass(frozen=True)
class Aggregation:
    """How local explanations become one formula: literals dropped from each (``simplify_local``), the ``topk`` by
    ``selection`` OR-ed greedily, simplification bounded by ``max_variables`` and ``max_terms``."""

    topk: int
    selection: str = "frequency"
    simplify_local: bool = True
    max_variables: int = 10
    max_terms: int = 64


def explanation_concepts(alpha: np.ndarray, mask: np.ndarray, max_literals: int | None = None) -> np.ndarray:
    """Indices of the concepts local explanations use: masked ones, least attended first (stable order).

    ``alpha`` [k] the class's attention, ``mask`` bool [k] its concept mask; ``max_literals`` keeps at most that many
    most-attended concepts (None: all masked ones).
    """
    order = np.argsort(alpha, kind="stable")
    concepts = order[mask[order]]
    if max_literals is not None and concepts.size > max_literals:
        concepts = concepts[-max_literals:]
    return concepts


@dataclass(frozen=True)
class AttentionReading:
    """The entropy LEN's local explanation of a row: its values of the concepts in its predicted class's mask, most
    attended first (the exported model's reading). ``concepts[c]``: :func:`explanation_concepts` of class c."""

    concepts: list[list[int]]

    def rows(self, x: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> list[list[tuple[str, bool]]]:
        truth = np.asarray(x) > 0.5
        order = [np.asarray(c, dtype=np.intp)[::-1] for c in self.concepts]
        return [[(names[j], not truth[i, j]) for j in order[c]] for i, c in enumerate(labels)]


def simplify_term(
    term: np.ndarray, literals: np.ndarray, truth: np.ndarray, positive: np.ndarray
) -> np.ndarray:
    """Greedily drop literals (in the given order) while the conjunction's accuracy on ``truth`` rows does not fall.

    ``term``: bool [m] which literals are kept; ``literals``: bool [m] their required values; ``truth``: bool
    [n, m] the rows' values of the m concepts; ``positive``: bool [n] whether each row is of the target class.
    Returns the kept-literal mask (the reference's local ``_simplify_formula``, without its string handling).
    """
    kept = term.copy()
    matches = truth == literals[None, :]  # [n, m]: row agrees with literal j

    def accuracy(keep: np.ndarray) -> float:
        fires = matches[:, keep].all(axis=1) if keep.any() else np.ones(truth.shape[0], dtype=bool)
        return float(np.mean(fires == positive))

    base = accuracy(kept)
    for j in range(kept.size):
        if not kept[j] or kept.sum() == 1:
            continue
        trial = kept.copy()
        trial[j] = False
        score = accuracy(trial)
        if score >= base:
            kept, base = trial, score
    return kept


def local_explanations(
    truth: np.ndarray,
    target: np.ndarray,
    opposite: np.ndarray,
    concepts: np.ndarray,
    names: Sequence[str],
    simplify_local: bool = True,
) -> dict[Term, list[int]]:
    """The distinct local explanations of the ``target`` rows over ``concepts``: term -> [rows, first row].

    ``truth`` [n, k] booleanised rows; ``target``/``opposite`` [n] the correctly classified rows of the class and
    of the others (the rows :func:`simplify_term` scores on). Terms list the most attended concept first.
    """
    sub = truth[:, concepts]  # [n, m]
    correct = target | opposite
    positive = target[correct]
    sub_correct = sub[correct]
    patterns, first, counts = np.unique(sub[target], axis=0, return_index=True, return_counts=True)
    full = np.ones(concepts.size, dtype=bool)
    local: dict[Term, list[int]] = {}
    for pattern, first_row, count in zip(patterns, first, counts, strict=True):
        kept = simplify_term(full, pattern, sub_correct, positive) if simplify_local else full
        term = tuple((str(names[concepts[j]]), not bool(pattern[j])) for j in range(concepts.size) if kept[j])
        term = term[::-1]  # most attended concept first, for reading
        entry = local.setdefault(term, [0, int(first_row)])
        entry[0] += int(count)
        entry[1] = min(entry[1], int(first_row))
    return local


def rank_accuracy(
    formula: Formula, truth_rank: np.ndarray, positive_rank: np.ndarray, names: Sequence[str]
) -> float:
    """Accuracy of ``formula`` on the ranking rows (0 when there are none)."""
    fires = formula.evaluate(truth_rank.astype(np.float32), names)
    return float(np.mean(fires == positive_rank)) if positive_rank.size else 0.0


def select_candidates(scored: list[Candidate], topk: int, selection: str = "frequency") -> list[Candidate]:
    """The ``topk`` candidates by frequency (ties: first row) or by ranking accuracy, ranked by accuracy."""
    if selection == "frequency":
        top = sorted(scored, key=lambda c: (-c[1], c[2]))[:topk]
    else:
        top = sorted(scored, key=lambda c: (-c[3], -c[1], c[2]))[:topk]
    return sorted(top, key=lambda c: (-c[3], -c[1], c[2]))


def greedy_or(
    ranked: Sequence[Candidate],
    truth_rank: np.ndarray,
    positive_rank: np.ndarray,
    names: Sequence[str],
    max_variables: int = 10,
    max_terms: int = 64,
) -> tuple[Formula, float, bool]:
    """OR the ranked candidates in turn, keeping the simplified OR whenever it beats the best ranking accuracy.

    Returns (best formula, its ranking accuracy or -1 when none was kept, whether every simplification was exact).
    """
    best, best_accuracy, exact = Formula.false(), -1.0, True
    pending: list[Formula] = []
    for formula, _, _, _ in ranked:
        pending.append(formula)
        result = simplify(Formula.disjunction(pending), max_variables=max_variables, max_terms=max_terms)
        exact &= result.exact
        if result.formula.is_true or result.formula.is_false:
            continue
        accuracy = rank_accuracy(result.formula, truth_rank, positive_rank, names)
        if accuracy > best_accuracy:
            best, best_accuracy = result.formula, accuracy
            pending = [best]
    return best, best_accuracy, exact


def aggregate_local_explanations(
    truth: np.ndarray,
    target: np.ndarray,
    opposite: np.ndarray,
    concepts: np.ndarray,
    truth_rank: np.ndarray,
    positive_rank: np.ndarray,
    names: Sequence[str],
    settings: Aggregation,
) -> dict[str, Any]:
    """Local explanations of the ``target`` rows over ``concepts``, their top-k, and the greedy OR.

    ``truth`` [n, k] booleanised rows; ``target``/``opposite`` [n] the correctly classified rows of the class and
    of the others; ``truth_rank`` [r, k], ``positive_rank`` [r] the ranking rows. Returns the formula and what is
    worth recording (counts, candidates with their frequency and ranking accuracy, simplification fall-backs).
    """
    if not target.any() or concepts.size == 0:
        return {
            "formula": Formula.false(),
            "local_explanations": 0,
            "distinct_local_explanations": 0,
            "top_local_explanations": [],
            "simplify_exact": True,
        }
    local = local_explanations(truth, target, opposite, concepts, names, settings.simplify_local)
    scored: list[Candidate] = []
    for term, (n, first_row) in local.items():
        formula = Formula((term,))
        scored.append((formula, n, first_row, rank_accuracy(formula, truth_rank, positive_rank, names)))
    ranked = select_candidates(scored, settings.topk, settings.selection)
    limits = (settings.max_variables, settings.max_terms)
    best, best_accuracy, exact = greedy_or(ranked, truth_rank, positive_rank, names, *limits)
    return {
        "formula": best,
        "local_explanations": int(target.sum()),
        "distinct_local_explanations": len(local),
        "top_local_explanations": [[str(f), n, round(acc, 6)] for f, n, _, acc in ranked],
        "rank_accuracy": best_accuracy if best_accuracy >= 0 else float("nan"),
        "simplify_exact": exact,
    }
