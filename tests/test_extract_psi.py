"""Psi read-out: truth tables of pruned sigmoid neurons, substituted layer by layer, minimal DNF."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lenbench.logic.extract.psi import BooleanFunction, neuron_functions, read_out
from lenbench.logic.formula import Formula

NAMES = ["c0", "c1", "c2", "c3"]


def terms(formula: Formula | str) -> set[frozenset[tuple[str, bool]]]:
    f = Formula.parse(formula) if isinstance(formula, str) else formula
    return {frozenset(t) for t in f.terms}


def _hand_built() -> list[tuple[np.ndarray, np.ndarray]]:
    # A = c0 & c1 (5 + 5 - 7.5 >= 0 only when both); B = c1 | ~c2 (false only for c1=0, c2=1);
    # output = A | ~B (false only for A=0, B=1). So output = (c0 & c1) | (~c1 & c2).
    w1 = np.array([[5.0, 5.0, 0.0, 0.0], [0.0, 5.0, -5.0, 0.0]])
    b1 = np.array([-7.5, 2.5])
    w2 = np.array([[5.0, -5.0]])
    b2 = np.array([2.5])
    return [(w1, b1), (w2, b2)]


def test_read_out_of_a_hand_built_network() -> None:
    readout = read_out(_hand_built(), NAMES)
    assert terms(readout.neurons[0][0]) == terms("c0 & c1")
    assert terms(readout.neurons[0][1]) == terms("c1 | ~c2")
    assert terms(readout.formula) == terms("(c0 & c1) | (~c1 & c2)")
    assert readout.exact


def _thresholded_forward(layers: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray) -> np.ndarray:
    """Each neuron's output thresholded at 0.5 before it feeds the next layer: what the read-out describes."""
    a = x.astype(np.float64)
    for weight, bias in layers:
        a = (1.0 / (1.0 + np.exp(-(a @ weight.T + bias))) >= 0.5).astype(np.float64)
    return a[:, 0] > 0.5


@pytest.mark.parametrize("seed", range(5))
def test_read_out_equals_the_thresholded_network_on_every_input(seed: int) -> None:
    rng = np.random.default_rng(seed)
    layers = []
    for n_out, n_in in [(6, 5), (3, 6), (1, 3)]:
        weight = rng.normal(size=(n_out, n_in))
        for row in weight:
            row[rng.permutation(n_in)[2:]] = 0.0  # fan-in 2
        layers.append((weight, rng.normal(size=n_out)))
    names = [f"c{i}" for i in range(5)]
    formula = read_out(layers, names).formula
    grid = np.array(list(itertools.product([0.0, 1.0], repeat=5)))
    assert np.array_equal(formula.evaluate(grid, names), _thresholded_forward(layers, grid))


def test_constant_outputs_are_valid_formulas() -> None:
    w1 = np.array([[1.0, -1.0, 0.0, 0.0]])
    assert read_out([(w1, np.array([10.0]))], NAMES).formula.is_true
    assert read_out([(w1, np.array([-10.0]))], NAMES).formula.is_false
    # a neuron without inputs is the constant its bias gives; a constant input is substituted in
    layers = [(np.zeros((1, 4)), np.array([1.0])), (np.array([[4.0]]), np.array([-2.0]))]
    assert read_out(layers, NAMES).formula.is_true


def test_support_is_reduced_to_the_concepts_the_function_depends_on() -> None:
    f = BooleanFunction((0, 1), np.array([False, False, True, True]))  # = c0, whatever c1
    reduced = f.reduced()
    assert reduced.support == (0,) and reduced.table.tolist() == [False, True]
    # an output that depends on nothing reads as a constant, e.g. A | ~A
    w1 = np.array([[5.0, 0.0, 0.0, 0.0], [5.0, 0.0, 0.0, 0.0]])
    layers = [(w1, np.array([-2.5, -2.5])), (np.array([[5.0, -5.0]]), np.array([2.5]))]
    functions = neuron_functions(layers)
    assert functions[1][0].support == () and bool(functions[1][0].table[0])


def test_too_many_inputs_are_refused_with_a_hint() -> None:
    dense = [(np.ones((2, 4)), np.zeros(2))]
    with pytest.raises(ValueError, match="FanInPruning"):
        read_out(dense, NAMES, max_fan_in=3)


def test_layer_shapes_are_checked() -> None:
    with pytest.raises(ValueError, match="layer 1 takes 3 inputs"):
        read_out([(np.eye(2, 4), np.zeros(2)), (np.ones((1, 3)), np.zeros(1))], NAMES)
    with pytest.raises(ValueError, match="names"):
        read_out(_hand_built(), NAMES[:3])
