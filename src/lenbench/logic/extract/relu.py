"""Global explanations of ReLU networks from local ones (methods ``pruning`` and ``weights``), in numpy only.

The algorithm of the reference notebook:

1. for each correctly classified row of the target class, choose its features: the inputs still connected to the
   first layer (``pruning``, the same for every row), or the inputs that matter to the row's *reduced model*
   (``weights``: the product of the layer matrices along the row's firing path, columns whose L2 norm is above
   ``threshold`` times the largest);
2. the local explanation is the AND of those features, each with the row's polarity (``c`` when the value is > 0.5,
   else ``~c``);
3. optionally simplify it: drop literals, in concept order, as long as the conjunction stays false on every
   correctly classified row of the other classes (the reference meant to do this but its test never passed, so
   ``simplify_local=False`` reproduces its numbers);
4. count identical local explanations; the global explanation is the OR of the ``topk`` most frequent (ties: the one
   that occurs first among the rows wins, as ``collections.Counter.most_common`` orders them), simplified to a minimal
   DNF by :func:`lenbench.logic.simplify.simplify` (bounded; falls back to absorption above the bounds).

Everything is vectorised over rows: local explanations are rows of an int8 matrix (+1 the concept, -1 its negation,
0 absent), reduced models are computed for all rows at once, identical explanations are found with ``np.unique``.
Simplification runs over index names ``feature0000000012`` (as the reference did, which fixes sympy's term order)
and the result is renamed to concept names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from lenbench.logic.formula import Formula
from lenbench.logic.simplify import SimplifyResult, simplify

Layer = tuple[np.ndarray, np.ndarray]
"""(weight [out, in], bias [out]) of one Linear layer, pruned entries 0."""

FEATURE_SELECTIONS = ("pruning", "weights")


def index_name(j: int) -> str:
    """The placeholder name of concept ``j`` the reference simplified over."""
    return f"feature{j:010d}"


def check_layers(layers: Sequence[Layer], n_inputs: int | None = None) -> list[Layer]:
    """The layers as float64 arrays, or ValueError when they do not chain (``n_inputs``: the first one's width)."""
    if not layers:
        raise ValueError("a network needs at least one layer")
    out: list[Layer] = []
    width = n_inputs
    for i, (weight, bias) in enumerate(layers):
        weight = np.asarray(weight, dtype=np.float64)
        bias = np.asarray(bias, dtype=np.float64)
        if weight.ndim != 2 or bias.shape != (weight.shape[0],):
            raise ValueError(f"layer {i}: weight {weight.shape} and bias {bias.shape} do not fit")
        if width is not None and weight.shape[1] != width:
            raise ValueError(f"layer {i} takes {weight.shape[1]} inputs, the previous layer gives {width}")
        width = weight.shape[0]
        out.append((weight, bias))
    return out


def firing_slopes(layers: Sequence[Layer], x: np.ndarray, negative_slope: float = 0.0) -> list[np.ndarray]:
    """For each hidden layer, [n, units]: 1 where the unit fires (pre-activation > 0), else ``negative_slope``.

    These are the derivatives of the (leaky) ReLU along each row's path; with ``negative_slope=0`` (ReLU) a unit
    that does not fire is cut from the row's reduced model, as in the reference's ``get_reduced_model``.
    """
    x = np.asarray(x, dtype=np.float64)
    layers = check_layers(layers, x.shape[1])
    slopes = []
    a = x
    for weight, bias in layers[:-1]:
        h = a @ weight.T + bias
        d = np.where(h > 0, 1.0, negative_slope)
        slopes.append(d)
        a = h * d
    return slopes


def reduced_weights(layers: Sequence[Layer], x: np.ndarray, negative_slope: float = 0.0) -> np.ndarray:
    """[n, out, in]: the linear map from inputs to outputs along each row's firing path.

    ``W_L D_{L-1} W_{L-1} ... D_1 W_1`` with ``D_l`` the diagonal of :func:`firing_slopes`, computed from the output
    side so that the intermediate arrays stay [n, out, units].
    """
    layers = check_layers(layers, np.asarray(x).shape[1])
    slopes = firing_slopes(layers, x, negative_slope)
    n = np.asarray(x).shape[0]
    m = np.broadcast_to(layers[-1][0], (n, *layers[-1][0].shape))
    for (weight, _), d in zip(reversed(layers[:-1]), reversed(slopes), strict=True):
        m = (m * d[:, None, :]) @ weight
    return np.array(m)


def select_by_pruning(first_weight: np.ndarray, n_rows: int) -> np.ndarray:
    """[n_rows, in]: the inputs whose first-layer column has a non-zero weight (the same for every row)."""
    used = np.abs(np.asarray(first_weight)).sum(axis=0) > 0
    return np.broadcast_to(used, (n_rows, used.shape[0])).copy()


def select_by_weights(
    layers: Sequence[Layer], x: np.ndarray, threshold: float = 0.5, negative_slope: float = 0.0
) -> np.ndarray:
    """[n, in]: inputs whose reduced-model column norm divided by the row's largest is > ``threshold``.

    A row where no input passes (all columns zero) selects every input, as the reference does.
    """
    norms = np.linalg.norm(reduced_weights(layers, x, negative_slope), axis=1)
    top = norms.max(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        selected = norms / top > threshold
    selected[~selected.any(axis=1)] = True
    return selected


def local_literals(x: np.ndarray, selected: np.ndarray) -> np.ndarray:
    """int8 [n, k]: +1 where a selected concept is true in the row (> 0.5), -1 where it is false, 0 unselected."""
    x = np.asarray(x)
    selected = np.asarray(selected, dtype=bool)
    if x.shape != selected.shape:
        raise ValueError(f"x {x.shape} and selected {selected.shape} differ")
    return np.where(selected, np.where(x > 0.5, 1, -1), 0).astype(np.int8)


@dataclass(frozen=True, eq=False)
class PruningReading:
    """A pruned network's local explanation of a row: its values of the concepts still connected to the first
    layer (one conjunction per row, the exported model's reading of method ``pruning``)."""

    first_weight: np.ndarray

    def rows(self, x: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> list[list[tuple[str, bool]]]:
        return literal_rows(local_literals(x, select_by_pruning(self.first_weight, len(x))), names)


@dataclass(frozen=True, eq=False)
class WeightsReading:
    """A network's local explanation of a row: its values of the concepts that weigh in its reduced (firing-path)
    model (the exported model's reading of method ``weights``)."""

    layers: Sequence[Layer]
    threshold: float
    negative_slope: float

    def rows(self, x: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> list[list[tuple[str, bool]]]:
        selected = select_by_weights(self.layers, x, self.threshold, self.negative_slope)
        return literal_rows(local_literals(x, selected), names)


def literal_rows(literals: np.ndarray, names: Sequence[str]) -> list[list[tuple[str, bool]]]:
    """Each row of a :func:`local_literals` matrix as ``(concept, negated)`` pairs, in concept order."""
    return [[(names[j], bool(row[j] < 0)) for j in np.flatnonzero(row)] for row in literals]


def simplify_local_literals(literals: np.ndarray, x_opposite: np.ndarray) -> tuple[np.ndarray, int]:
    """Drop literals, in concept order, while the conjunction stays false on every row of ``x_opposite``.

    The working version of the reference's local simplification: a literal goes when the remaining conjunction
    still separates the row from every opposite row (it is always true on the row itself); the last literal always
    stays. Rows with the same explanation share the result. Returns the new literals and how many were removed.
    """
    literals = np.asarray(literals, dtype=np.int8)
    opposite = np.asarray(x_opposite) > 0.5
    out = literals.copy()
    removed = 0
    if literals.shape[0] == 0:
        return out, 0
    unique, inverse = np.unique(literals, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    for u, row in enumerate(unique):
        idx = np.flatnonzero(row)
        if idx.size <= 1:
            continue
        # mismatch[j, l]: opposite row j violates literal l, so any conjunction holding l is false on row j.
        mismatch = opposite[:, idx] != (row[idx] > 0)
        count = mismatch.sum(axis=1)
        keep = np.ones(idx.size, dtype=bool)
        for pos in range(idx.size):
            if keep.sum() == 1:
                break
            rest = count - mismatch[:, pos]
            if (rest >= 1).all():
                keep[pos] = False
                count = rest
        new = np.zeros_like(row)
        new[idx[keep]] = row[idx[keep]]
        rows = inverse == u
        out[rows] = new
        removed += int((~keep).sum()) * int(rows.sum())
    return out, removed


def conjunction(row: np.ndarray, names: Sequence[str]) -> Formula:
    """The AND of a literal row (+1/-1/0) over ``names``."""
    return Formula.conjunction((names[j], bool(row[j] < 0)) for j in np.flatnonzero(row))


def rank_local_explanations(literals: np.ndarray) -> list[tuple[np.ndarray, int, int]]:
    """Distinct non-empty local explanations as (literal row, count, first row), most frequent first.

    Ties keep the order of first occurrence (what ``Counter.most_common`` does with the reference's list).
    """
    literals = np.asarray(literals, dtype=np.int8)
    nonempty = np.flatnonzero(literals.any(axis=1))
    if nonempty.size == 0:
        return []
    unique, first, counts = np.unique(literals[nonempty], axis=0, return_index=True, return_counts=True)
    order = sorted(range(len(unique)), key=lambda u: (-counts[u], first[u]))
    return [(unique[u], int(counts[u]), int(nonempty[first[u]])) for u in order]


@dataclass(frozen=True)
class ReluExplanation:
    """A global explanation and how it was made.

    ``formula`` is the simplified OR of the ``candidates`` (the top-k local explanations with their counts);
    ``empty`` is True when no row gave a local explanation (the formula is then False). ``simplify`` says whether
    the final simplification was exact or fell back. ``literals_removed`` counts literals dropped by the local
    simplification over all rows (always 0 with ``simplify_local=False``).
    """

    formula: Formula
    candidates: tuple[tuple[Formula, int], ...]
    n_rows: int
    n_explained: int
    n_distinct: int
    literals_removed: int
    simplify: SimplifyResult | None
    empty: bool = field(default=False)

    @property
    def simplify_exact(self) -> bool:
        return self.simplify is None or self.simplify.exact


def explain_class(
    x_target: np.ndarray,
    selected: np.ndarray,
    concept_names: Sequence[str],
    *,
    topk: int = 3,
    x_opposite: np.ndarray | None = None,
    simplify_local: bool = False,
    max_variables: int = 10,
    max_terms: int = 64,
) -> ReluExplanation:
    """Global explanation from the rows ``x_target`` (correctly classified, target class) and their features.

    ``selected`` [n, k] marks each row's chosen features (:func:`select_by_pruning`, :func:`select_by_weights`);
    ``x_opposite`` (the correctly classified rows of the other classes) is needed when ``simplify_local``.
    """
    if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
        raise ValueError(f"topk={topk!r}: must be an integer >= 1")
    names = [str(n) for n in concept_names]
    x_target = np.asarray(x_target)
    if x_target.ndim != 2 or x_target.shape[1] != len(names):
        raise ValueError(
            f"x_target {x_target.shape} does not have one column per concept name ({len(names)})"
        )
    literals = local_literals(x_target, selected)
    removed = 0
    if simplify_local:
        if x_opposite is None:
            raise ValueError(
                "simplify_local needs x_opposite (the correctly classified rows of the other classes)"
            )
        literals, removed = simplify_local_literals(literals, x_opposite)
    ranked = rank_local_explanations(literals)
    n_explained = int(literals.any(axis=1).sum())
    if not ranked:
        return ReluExplanation(Formula.false(), (), x_target.shape[0], 0, 0, removed, None, empty=True)
    placeholders = [index_name(j) for j in range(len(names))]
    top = ranked[:topk]
    raw = Formula.disjunction(conjunction(row, placeholders) for row, _, _ in top)
    result = simplify(raw, max_variables=max_variables, max_terms=max_terms)
    rename = dict(zip(placeholders, names, strict=True))
    candidates = tuple((conjunction(row, names), count) for row, count, _ in top)
    return ReluExplanation(
        formula=result.formula.rename(rename),
        candidates=candidates,
        n_rows=x_target.shape[0],
        n_explained=n_explained,
        n_distinct=len(ranked),
        literals_removed=removed,
        simplify=result,
    )
