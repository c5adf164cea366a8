"""Fold batching: ``exact`` trains each network bit-identically to training it alone, ``fast`` stacks them and
agrees with exact within float tolerance; the fold loop trains a job's folds in groups (issue 15)."""

from __future__ import annotations

import pytest
import torch
from helpers import boolean_rows

from lenbench.callbacks import FanInPruning, FeaturePruning, L1Regularization
from lenbench.data.synthetic import make_dnf
from lenbench.explainers.entropy_net import EntropyNetExplainer
from lenbench.explainers.network import train_together
from lenbench.explainers.psi_net import PsiNetExplainer
from lenbench.explainers.relu_net import ReluNetExplainer
from lenbench.fold_runner import fold_groups, iter_folds
from lenbench.folds import CVConfig, FoldPlan
from lenbench.nn.stacked import shared_rows
from lenbench.nn.weights import effective_weight, linear_layers

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py: one thread, as the protocol

SEEDS = (3, 4, 5)


def _psi(batching: str, seed: int, epochs: int = 60, precision: str = "32-true") -> PsiNetExplainer:
    callbacks = [L1Regularization(1e-5, layers="all"), FanInPruning(fan_in=2, epoch=20)]
    trainer = {"batching": batching, "precision": precision}
    return PsiNetExplainer(seed=seed, epochs=epochs, lr=1e-2, trainer=trainer, callbacks=callbacks)


def _pruning(batching: str, seed: int, precision: str = "32-true") -> ReluNetExplainer:
    callbacks = [
        L1Regularization(1e-2, include_bias=True),
        FeaturePruning(start_epoch=20, period=10, offset=1),
    ]
    trainer = {"batching": batching, "precision": precision}
    return ReluNetExplainer(seed=seed, epochs=40, lr=1e-2, trainer=trainer, callbacks=callbacks)


def _rows(together: int) -> list[tuple]:
    x, y = boolean_rows(240, 8, rule="dnf")
    return [(x[30 * i :], y[30 * i :]) for i in range(together)]  # each network its own (different) rows


def _max_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    pairs = zip(linear_layers(a), linear_layers(b), strict=True)
    return max(float((effective_weight(p) - effective_weight(q)).abs().max()) for p, q in pairs)


# trainer.precision -> the dtype of the trained weights, and how far fast may stray from exact in it.
PRECISIONS = {"32-true": (torch.float32, 1e-3), "64-true": (torch.float64, 1e-9)}


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("make", [_psi, _pruning], ids=["psi", "pruning"])
def test_fast_agrees_with_exact_within_float_tolerance(make, precision: str) -> None:
    rows = _rows(3)
    exact = [make("exact", s, precision=precision) for s in SEEDS]
    fast = [make("fast", s, precision=precision) for s in SEEDS]
    train_together(exact, rows)
    train_together(fast, rows)
    dtype, tolerance = PRECISIONS[precision]
    for i, (e, f) in enumerate(zip(exact, fast, strict=True)):
        assert f.info()["batching"] == "fast" and e.info()["batching"] == "exact"
        assert {p.dtype for n in (e.network, f.network) for p in n.parameters()} == {dtype}
        difference = _max_difference(e.network, f.network)
        assert difference < tolerance, f"network {i}: weights differ by {difference}"
        masks = [
            (p.weight_mask, q.weight_mask)
            for p, q in zip(linear_layers(e.network), linear_layers(f.network), strict=True)
            if hasattr(p, "weight_mask") or hasattr(q, "weight_mask")
        ]
        assert masks, "the schedule pruned nothing"
        rows_equal = sum(int((a == b).all(dim=-1).sum()) for a, b in masks)
        assert rows_equal == sum(a.shape[0] for a, _ in masks), f"network {i}: pruning masks differ"
        x, _ = rows[i]
        assert (e.predict(x) == f.predict(x)).mean() >= 0.99


def test_fast_psi_gives_the_same_formulas_on_a_known_rule() -> None:
    data = make_dnf(n_samples=400, seed=2)
    cv = CVConfig(n_splits=3)
    formulas = {}
    for batching in ("exact", "fast"):
        results = list(iter_folds(data, FoldPlan.alone(lambda b=batching: _psi(b, seed=0, epochs=300), cv)))
        formulas[batching] = {r.fold: str(r.formula) for r in results}
        if batching == "fast":  # the folds' rows are rows of one data set: one table, one first-layer product
            assert {r.info["stacked_rows"] for r in results} == {"shared"}
    assert formulas["fast"] == formulas["exact"], formulas


def test_shared_rows_make_one_table_only_when_the_networks_agree_on_every_row() -> None:
    x = torch.tensor([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0]])
    y = torch.tensor([0.0, 1.0, 1.0])
    table, targets, weights = shared_rows([x[[2, 0]], x[[1, 2]]], [y[[2, 0]], y[[1, 2]]], [[7, 3], [5, 7]])
    assert torch.equal(table, torch.stack([x[0], x[1], x[2]]))  # positions 3, 5, 7 in order
    assert torch.equal(weights, torch.tensor([[0.5, 0.0, 0.5], [0.0, 0.5, 0.5]]))
    assert torch.equal(targets, torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 1.0]]))
    other = x[[1, 2]].clone()
    other[1, 0] = 0.0  # network 1 sees position 7 with other values (concepts fitted per fold)
    assert shared_rows([x[[2, 0]], other], [y[[2, 0]], y[[1, 2]]], [[7, 3], [5, 7]]) is None


def test_a_stacked_network_is_unstacked_into_ordinary_pruned_networks() -> None:
    explainers = [_psi("fast", s) for s in SEEDS]
    train_together(explainers, _rows(3))
    for explainer in explainers:
        layers = linear_layers(explainer.network)
        assert all(type(layer) is torch.nn.Linear for layer in layers)
        assert all(int(row.sum()) == 2 for layer in layers for row in layer.weight_mask)  # fan-in 2 kept
        assert explainer.info()["networks_trained_together"] == 3


def test_fast_batching_is_refused_where_the_network_does_not_stack() -> None:
    with pytest.raises(
        ValueError, match="EntropyNetExplainer trainer.batching='fast'.*use trainer.batching=exact"
    ):
        EntropyNetExplainer(seed=0, trainer={"batching": "fast"})
    with pytest.raises(ValueError, match="trainer.batching"):
        _psi("sometimes", seed=0)


def test_folds_are_dealt_round_robin_into_one_group_per_process() -> None:
    assert fold_groups(list(range(10)), 2, together=True) == [[0, 2, 4, 6, 8], [1, 3, 5, 7, 9]]
    assert fold_groups([0, 1, 2], 1, together=True) == [[0, 1, 2]]
    assert fold_groups([0, 1, 2], 4, together=True) == [[0], [1], [2]]
    assert fold_groups([0, 1, 2], 2, together=False) == [[0], [1], [2]]


def test_batching_off_trains_one_network_per_module_with_the_same_result() -> None:
    data = make_dnf(n_samples=300, seed=4)
    cv = CVConfig(n_splits=3)
    together = list(iter_folds(data, FoldPlan.alone(lambda: _pruning("exact", seed=1), cv)))
    alone = list(iter_folds(data, FoldPlan.alone(lambda: _pruning("off", seed=1), cv)))
    assert [r.info["networks_trained_together"] for r in together] == [3, 3, 3]
    assert [r.info["networks_trained_together"] for r in alone] == [1, 1, 1]
    assert [_scores(r.metrics) for r in together] == [_scores(r.metrics) for r in alone]
    assert [r.loss_curve for r in together] == [r.loss_curve for r in alone]


def _scores(metrics: dict) -> dict:
    """The metrics but for the timings, as exact text (NaN equals NaN)."""
    return {k: repr(v) for k, v in metrics.items() if k not in ("elapsed_time", "training_time")}


def test_auto_batching_stacks_the_networks_that_stack_and_trains_the_others_exactly() -> None:
    rows = _rows(2)
    psi = [_psi("auto", s) for s in SEEDS[:2]]
    train_together(psi, rows)
    assert {e.info()["batching"] for e in psi} == {"fast"}
    entropy = [EntropyNetExplainer(seed=s, epochs=5, trainer={"batching": "auto"}) for s in SEEDS[:2]]
    train_together(entropy, rows)
    assert {e.info()["batching"] for e in entropy} == {"exact"}
