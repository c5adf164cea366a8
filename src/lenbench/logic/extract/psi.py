"""Read a psi network (sigmoid MLP pruned to a small fan-in) as a boolean formula, in numpy only.

The reference notebook's read-out: each neuron has k kept inputs; enumerate the 2^k truth table of
those inputs, run the neuron (kept weights, bias, sigmoid, threshold 0.5) and write its boolean function as the OR
of the true rows' minterms (or True / False); the inputs of the first layer are concepts, those of later layers the
previous layer's formulas, substituted in; the output neuron's formula explains class 1.

Substituting formulas into formulas needs negations of DNFs, which can blow up. Here every neuron's function is
kept as a truth table over its *support* (the concepts it depends on): a first-layer neuron's support is its kept
inputs; a later neuron's support is the union of its inputs' supports, and its table is computed by evaluating the
input neurons' tables on every assignment of that union. The function is the same as the reference's substituted
formula; the support is then reduced to the concepts the function really depends on and the minimal DNF is taken
with :func:`lenbench.logic.simplify.simplify` (exact within its bounds, e.g. up to 2*2*2 = 8 concepts for fan-in 2
and three layers). A neuron's kept inputs are its non-zero weights (pruned weights are 0).

A neuron is true when ``sigmoid(w . t + b) >= 0.5``, i.e. ``w . t + b >= 0`` (the reference's ``output < 0.5 -> 0``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lenbench.logic.extract.relu import check_layers, index_name
from lenbench.logic.formula import Formula
from lenbench.logic.simplify import SimplifyResult, assignments, simplify

Layer = tuple[np.ndarray, np.ndarray]

MAX_FAN_IN = 16
"""Largest number of kept inputs per neuron the read-out enumerates (2^16 truth-table rows)."""


@dataclass(frozen=True)
class BooleanFunction:
    """A boolean function as a truth table over ``support`` (concept indices, ascending).

    ``table[r]`` is the value on the assignment whose bits are r, the first support concept most significant
    (``itertools.product`` order, as the reference's truth tables).
    """

    support: tuple[int, ...]
    table: np.ndarray

    @classmethod
    def constant(cls, value: bool) -> BooleanFunction:
        return cls((), np.array([bool(value)]))

    def evaluate(self, assignment: np.ndarray, columns: Sequence[int]) -> np.ndarray:
        """Values on the rows of ``assignment`` [m, len(columns)] whose column c holds concept ``columns[c]``."""
        if not self.support:
            return np.full(assignment.shape[0], bool(self.table[0]))
        position = {concept: c for c, concept in enumerate(columns)}
        index = np.zeros(assignment.shape[0], dtype=np.int64)
        for concept in self.support:
            index = (index << 1) | assignment[:, position[concept]].astype(np.int64)
        return self.table[index]

    def reduced(self) -> BooleanFunction:
        """The same function over the concepts it depends on only."""
        support = list(self.support)
        table = self.table
        p = 0
        while p < len(support):
            n = len(support)
            shaped = table.reshape((2,) * n)
            low = np.take(shaped, 0, axis=p)
            high = np.take(shaped, 1, axis=p)
            if np.array_equal(low, high):
                table = low.reshape(-1)
                support.pop(p)
            else:
                p += 1
        return BooleanFunction(tuple(support), table.reshape(-1))

    def to_formula(self, names: Sequence[str]) -> Formula:
        """The OR of the true rows' minterms over ``names[support]`` (True/False for constants); not simplified."""
        if self.table.all():
            return Formula.true()
        if not self.table.any():
            return Formula.false()
        n = len(self.support)
        support = [names[c] for c in self.support]
        return Formula(
            tuple(
                tuple((name, not (int(r) >> (n - 1 - i)) & 1) for i, name in enumerate(support))
                for r in np.flatnonzero(self.table)
            )
        )


def neuron_functions(
    layers: Sequence[Layer], max_fan_in: int = MAX_FAN_IN, max_support: int = 20
) -> list[list[BooleanFunction]]:
    """The boolean function of every neuron, layer by layer, as truth tables over concept supports."""
    functions: list[list[BooleanFunction]] = []
    previous: list[BooleanFunction] | None = None
    for j, (weight, bias) in enumerate(check_layers(layers)):
        layer_functions = []
        for i in range(weight.shape[0]):
            inputs = np.flatnonzero(weight[i])
            if inputs.size > max_fan_in:
                raise ValueError(
                    f"neuron {i} of layer {j} has {inputs.size} non-zero input weights; the psi read-out enumerates "
                    f"at most {max_fan_in} (train with fan-in pruning, e.g. FanInPruning(fan_in=2))"
                )
            if inputs.size == 0:
                layer_functions.append(BooleanFunction.constant(bias[i] >= 0))
                continue
            if previous is None:
                support = tuple(int(c) for c in inputs)
                values = assignments(len(support)).astype(np.float64)
            else:
                support = tuple(sorted({c for p in inputs for c in previous[p].support}))
                if len(support) > max_support:
                    raise ValueError(
                        f"neuron {i} of layer {j} depends on {len(support)} concepts; at most {max_support} supported"
                    )
                grid = assignments(len(support))
                values = np.stack([previous[p].evaluate(grid, support) for p in inputs], axis=1).astype(
                    np.float64
                )
            z = values @ weight[i, inputs] + bias[i]
            layer_functions.append(BooleanFunction(support, z >= 0).reduced())
        functions.append(layer_functions)
        previous = layer_functions
    return functions


@dataclass(frozen=True)
class PsiReadout:
    """The formula of every output neuron (``formulas``; the first one explains class 1), of every neuron
    (``neurons``, per layer), all simplified, and the simplification results of the outputs."""

    formulas: tuple[Formula, ...]
    neurons: tuple[tuple[Formula, ...], ...]
    results: tuple[SimplifyResult, ...]

    @property
    def formula(self) -> Formula:
        return self.formulas[0]

    @property
    def exact(self) -> bool:
        return all(r.exact for r in self.results)


def read_out(
    layers: Sequence[Layer],
    concept_names: Sequence[str],
    *,
    max_fan_in: int = MAX_FAN_IN,
    max_variables: int = 10,
    max_terms: int = 64,
) -> PsiReadout:
    """Formulas of a psi network given as ``[(weight, bias), ...]`` numpy arrays with zeros where pruned."""
    names = [str(n) for n in concept_names]
    if layers and np.asarray(layers[0][0]).shape[1] != len(names):
        raise ValueError(
            f"the first layer takes {np.asarray(layers[0][0]).shape[1]} inputs, got {len(names)} names"
        )
    functions = neuron_functions(layers, max_fan_in=max_fan_in)
    placeholders = [index_name(j) for j in range(len(names))]
    rename = dict(zip(placeholders, names, strict=True))
    neurons = []
    results: list[SimplifyResult] = []
    for j, layer_functions in enumerate(functions):
        formulas = []
        for f in layer_functions:
            # A minterm DNF has up to 2^support terms; within max_variables its exact minimisation is cheap.
            terms = max(max_terms, 2 ** min(len(f.support), max_variables))
            result = simplify(f.to_formula(placeholders), max_variables=max_variables, max_terms=terms)
            formulas.append(result.formula.rename(rename))
            if j == len(functions) - 1:
                results.append(result)
        neurons.append(tuple(formulas))
    return PsiReadout(formulas=neurons[-1], neurons=tuple(neurons), results=tuple(results))
