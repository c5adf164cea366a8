"""Entropy-based LEN: the attention and mask of its first layer, its penalty, and its explanations."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch_explain
from helpers import CONF, SLOW_HANG_GUARD_S, fold_of, job_env, run_train
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from lenbench.callbacks.entropy import EntropyPenalty
from lenbench.data.synthetic import make_dnf, make_xor
from lenbench.explainers.entropy_net import EntropyNetExplainer
from lenbench.folds import CVConfig, run_fold
from lenbench.logic.extract.entropy import Aggregation, aggregate_local_explanations, simplify_term
from lenbench.logic.formula import Formula
from lenbench.nn.layers import EntropyLinear

TRAINER = {"log_every_n_epochs": 100}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py: one thread, as the protocol


def hand_built_layer(temperature: float = 0.5) -> EntropyLinear:
    """2 classes, 2 hidden units, 4 inputs, with known column L1 norms per class."""
    layer = EntropyLinear(4, 2, 2, temperature)
    weight = torch.tensor(
        [
            # class 0: column norms |.|_1 over the 2 units = [2.0, 0.0, 1.8, 0.1]
            [[1.5, 0.0, -1.0, 0.1], [-0.5, 0.0, 0.8, 0.0]],
            # class 1: column norms [0.0, 3.0, 0.0, 0.0]
            [[0.0, -2.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]],
        ]
    )
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(torch.tensor([[[0.1, -0.2]], [[0.3, 0.0]]]))
    return layer


def test_attention_and_mask_of_a_hand_built_weight_matrix() -> None:
    layer = hand_built_layer(temperature=0.5)
    gamma = np.array([[2.0, 0.0, 1.8, 0.1], [0.0, 3.0, 0.0, 0.0]])
    np.testing.assert_allclose(layer.gamma().detach().numpy(), gamma, rtol=1e-6)
    expected = np.exp(gamma / 0.5) / np.exp(gamma / 0.5).sum(axis=1, keepdims=True)
    alpha = layer.attention().detach().numpy()
    np.testing.assert_allclose(alpha, expected, rtol=1e-5)
    np.testing.assert_allclose(alpha.sum(axis=1), 1.0, rtol=1e-6)
    normalized = layer.normalized_attention().detach().numpy()
    # class 0: exp((1.8 - 2.0) / 0.5) = exp(-0.4) = 0.670 > 0.5 keeps input 2; exp(-4) and exp(-3.8) do not.
    np.testing.assert_allclose(
        normalized[0], [1.0, math.exp(-4.0), math.exp(-0.4), math.exp(-3.8)], rtol=1e-5
    )
    assert layer.concept_mask().tolist() == [[True, False, True, False], [False, True, False, False]]
    # A higher temperature flattens the attention: at T=10 every input of class 0 passes the 0.5 bar.
    assert hand_built_layer(temperature=10.0).concept_mask()[0].tolist() == [True, True, True, True]
    entropy = -(expected * np.log(expected)).sum()
    assert float(layer.entropy()) == pytest.approx(entropy, rel=1e-5)


def test_forward_scales_inputs_by_the_normalized_attention() -> None:
    layer = hand_built_layer()
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 0.5, 0.0], [1.0, 1.0, 1.0, 1.0]])
    out = layer(x).detach().numpy()
    assert out.shape == (3, 2, 2)
    w, b = layer.weight.detach().numpy(), layer.bias.detach().numpy()
    a = layer.normalized_attention().detach().numpy()
    for c in range(2):
        np.testing.assert_allclose(out[:, c, :], (x.numpy() * a[c]) @ w[c].T + b[c], rtol=1e-5, atol=1e-6)


def test_penalty_callback_equals_the_penalty_in_the_loss() -> None:
    torch.manual_seed(0)
    net_a = EntropyNetExplainer(seed=0, epochs=1, trainer=TRAINER).build_network(6)
    net_b = EntropyNetExplainer(seed=0, epochs=1, trainer=TRAINER).build_network(6)
    net_b.load_state_dict(net_a.state_dict())
    x = torch.rand(20, 6)
    y = (x[:, 0] > 0.5).long()
    ce = torch.nn.CrossEntropyLoss()
    (ce(net_a(x), y) + 1e-2 * net_a[0].entropy()).backward()
    ce(net_b(x), y).backward()
    EntropyPenalty(1e-2).apply_gradient(net_b)
    torch.testing.assert_close(net_a[0].weight.grad, net_b[0].weight.grad)
    assert EntropyPenalty(1e-2).penalty(net_a) == pytest.approx(1e-2 * float(net_a[0].entropy()))


class TorchExplainAttention(EntropyLinear):
    """lenbench's layer computing as torch_explain 1.5.1's does (its forward, its alpha, its entropy loss)."""

    has_bias, remove_attention = True, False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch_explain.nn.EntropyLinear.forward(self, x)
        del self.__dict__[
            "concept_mask"
        ]  # torch_explain stores the mask as an attribute; lenbench's is a method
        return out

    def gamma(self) -> torch.Tensor:
        return self.weight.norm(dim=1, p=1)

    def attention(self) -> torch.Tensor:
        scaled = torch.exp(self.gamma() / self.temperature)
        return scaled / torch.sum(scaled, dim=1, keepdim=True)

    def entropy(self) -> torch.Tensor:
        alpha = self.attention()
        return -torch.sum(alpha * torch.log(alpha))


def test_torch_explains_entropy_layer_starts_alike_but_computes_its_attention_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Why lenbench keeps its own layer (nn/layers.py, docs/methods.md): torch_explain 1.5.1's EntropyLinear has the
    same parameters, initialisation and output shape, but takes gamma with ``norm(p=1)`` and alpha as
    ``exp / sum exp`` instead of a softmax, which differ in the last bits (and overflow), so it does not train
    bit-identically. On MIMIC-II fold 0 (200 epochs) the trained weights differed by up to 0.094."""
    torch.manual_seed(0)
    mine = EntropyLinear(90, 20, 2, 0.7)
    torch.manual_seed(0)
    theirs = torch_explain.nn.EntropyLinear(90, 20, 2, temperature=0.7)
    assert torch.equal(mine.weight, theirs.weight) and torch.equal(mine.bias, theirs.bias)
    assert theirs.alpha is None  # its attention exists only after a forward, and is that forward's
    x = (torch.rand(64, 90, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    with torch.no_grad():
        out_mine, out_theirs = mine(x), theirs(x)
        weight = mine.weight
        assert out_mine.shape == out_theirs.shape == (64, 2, 20)
        torch.testing.assert_close(out_theirs, out_mine, rtol=1e-5, atol=1e-6)
        assert not torch.equal(out_theirs, out_mine)
        assert not torch.equal(weight.norm(dim=1, p=1), mine.gamma())  # another reduction: last bits differ
        torch.testing.assert_close(theirs.alpha, mine.attention())
        assert not torch.equal(theirs.alpha, mine.attention())  # exp / sum exp is not softmax's arithmetic
        assert not torch.equal(TorchExplainAttention.attention(mine), mine.attention())
        # Its alpha is the last forward's: new weights leave it as it was until the next forward.
        theirs.weight.zero_()
        theirs.weight[:, :, 0] = 70.0 / 20  # gamma = 70 for input 0, gamma / T = 100 > 88.7
        assert not torch.isnan(theirs.alpha).any()
        theirs(x)
        assert torch.isnan(theirs.alpha[:, 0]).all()  # exp overflows in float32: inf / inf
        assert not theirs.concept_mask.any()  # and the mask loses the one concept the layer attends to
        mine.weight.copy_(theirs.weight)
        assert torch.isfinite(mine.attention()).all() and mine.concept_mask()[:, 0].all()  # softmax does not
    # The difference grows in training: the same network, seed and rows, trained with either attention.
    fold = fold_of(make_dnf(n_samples=300, n_concepts=6, seed=2), n_splits=3)

    def trained(layer: type[EntropyLinear]) -> dict[str, torch.Tensor]:
        monkeypatch.setattr("lenbench.explainers.entropy_net.EntropyLinear", layer)
        settings = {"seed": 5, "epochs": 30, "callbacks": [EntropyPenalty(1e-3)], "trainer": TRAINER}
        return EntropyNetExplainer(**settings).fit(fold).network.state_dict()

    lenbench, torch_explain_like = trained(EntropyLinear), trained(TorchExplainAttention)
    assert torch.equal(lenbench["0.weight"], trained(EntropyLinear)["0.weight"])  # deterministic itself
    assert not torch.equal(lenbench["0.weight"], torch_explain_like["0.weight"])


def test_simplify_term_drops_literals_that_do_not_help() -> None:
    # Rows over 3 concepts; the class is concept 0. The local explanation of row (1, 1, 0) keeps only concept 0.
    truth = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]], dtype=bool)
    positive = truth[:, 0].copy()
    kept = simplify_term(np.ones(3, dtype=bool), np.array([True, True, False]), truth, positive)
    assert kept.tolist() == [True, False, False]
    # The last literal is never dropped, even when dropping it would not hurt.
    kept = simplify_term(np.array([False, True, False]), np.array([True, True, False]), truth, truth[:, 1])
    assert kept.tolist() == [False, True, False]


def test_aggregation_ors_the_frequent_local_explanations() -> None:
    # Every row of the truth table over 3 concepts, twice; the class is (c0 & c1) | (c2 & ~c0).
    table = np.array(list(itertools.product([False, True], repeat=3)))
    positive = (table[:, 0] & table[:, 1]) | (table[:, 2] & ~table[:, 0])
    truth = np.vstack([table, table])
    target = np.concatenate([positive, positive])
    result = aggregate_local_explanations(
        truth,
        target,
        ~target,
        np.array([2, 1, 0]),
        table,
        positive,
        ["c0", "c1", "c2"],
        # whole minterms: their OR is the function (literal dropping may over-generalise)
        Aggregation(topk=5, simplify_local=False),
    )
    formula = result["formula"]
    np.testing.assert_array_equal(formula.evaluate(table.astype(np.float32), ["c0", "c1", "c2"]), positive)
    assert result["rank_accuracy"] == 1.0 and result["distinct_local_explanations"] >= 2
    none = aggregate_local_explanations(
        truth,
        np.zeros(16, dtype=bool),
        ~target,
        np.array([0]),
        table,
        positive,
        ["c0", "c1", "c2"],
        Aggregation(3),
    )
    assert none["formula"].is_false


@pytest.mark.parametrize(
    "dataset",
    [make_xor(n_samples=600, n_concepts=8, seed=0), make_dnf(n_samples=600, n_concepts=8, noise=0.0, seed=0)],
    ids=["xor", "dnf"],
)
def test_recovers_the_synthetic_formulas(dataset) -> None:  # noqa: ANN001
    fold = fold_of(dataset, n_splits=3)
    explainer = EntropyNetExplainer(
        seed=0, epochs=500, callbacks=[EntropyPenalty(1e-3)], trainer=TRAINER
    ).fit(fold)
    formula = explainer.explain(fold, 1)
    table = np.array(list(itertools.product([0.0, 1.0], repeat=8)), dtype=np.float32)
    names = fold.concept_names
    truth = Formula.parse(dataset.ground_truth).evaluate(table, names)
    np.testing.assert_array_equal(formula.evaluate(table, names), truth)
    assert formula.concepts == Formula.parse(dataset.ground_truth).concepts
    assert (explainer.predict(fold.x_test) == fold.y_test).mean() > 0.85
    info = explainer.info()
    assert info["features_used"] <= 4 and info["simplify_exact"] and info["final_entropy"] > 0


def test_same_seed_same_model_and_formula() -> None:
    fold = fold_of(make_dnf(n_samples=300, n_concepts=6, seed=2), n_splits=3)

    def run() -> tuple[np.ndarray, str, np.ndarray]:
        e = EntropyNetExplainer(seed=5, epochs=100, callbacks=[EntropyPenalty(1e-3)], trainer=TRAINER).fit(
            fold
        )
        return e.scores(fold.x_test), str(e.explain(fold, 1)), e.attention()

    first, second = run(), run()
    np.testing.assert_array_equal(first[0], second[0])
    assert first[1] == second[1]
    np.testing.assert_array_equal(first[2], second[2])


def test_run_fold_records_model_and_formula_metrics() -> None:
    result = run_fold(
        make_xor(n_samples=400, n_concepts=6, seed=1),
        0,
        CVConfig(n_splits=3),
        lambda: EntropyNetExplainer(seed=0, epochs=300, callbacks=[EntropyPenalty(1e-3)], trainer=TRAINER),
    )
    m = result.metrics
    assert m["model_accuracy"] > 0.9 and m["model_auroc"] > 0.9 and m["model_f1"] > 0.9
    assert m["model_balanced_accuracy"] > 0.9
    assert m["explanation_auroc"] == pytest.approx(m["explanation_balanced_accuracy"])
    assert 0 <= m["majority_accuracy"] <= 1 and m["explanation_f1"] > 0.9
    assert len(result.loss_curve) >= 3


def test_explains_either_class_and_refuses_unknown_ones() -> None:
    fold = fold_of(make_xor(n_samples=400, n_concepts=6, seed=1), n_splits=3)
    explainer = EntropyNetExplainer(
        seed=0, epochs=300, callbacks=[EntropyPenalty(1e-3)], trainer=TRAINER
    ).fit(fold)
    zero = explainer.explain(fold, 0)
    table = np.array(list(itertools.product([0.0, 1.0], repeat=6)), dtype=np.float32)
    np.testing.assert_array_equal(zero.evaluate(table, fold.concept_names), table[:, 0] == table[:, 1])
    with pytest.raises(ValueError, match="target_class=2"):
        explainer.explain(fold, 2)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"temperature": 0}, "temperature=0: must be a number > 0"),
        ({"temperature": -1.0}, "temperature=-1.0"),
        ({"topk": 0}, "topk=0: must be an integer > 0"),
        ({"epochs": 0}, "epochs=0"),
        ({"lr": 0}, "lr=0"),
        ({"hidden": []}, r"hidden=\[\]"),
        ({"train_rows": "test"}, "train_rows='test': must be one of"),
        ({"rank_rows": "all"}, "rank_rows='all'"),
        ({"selection": "random"}, "selection='random'"),
        ({"max_literals": 0}, "max_literals=0"),
        ({"simplify_local": "yes"}, "simplify_local='yes'"),
        ({"max_simplify_variables": 25}, "max_simplify_variables=25"),
        ({"optimizer": "sgd"}, "optimizer='sgd'"),
    ],
)
def test_nonsense_settings_are_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EntropyNetExplainer(seed=0, **kwargs)


def test_nonsense_penalty_and_layer_are_refused() -> None:
    with pytest.raises(ValueError, match="strength=-1"):
        EntropyPenalty(-1)
    with pytest.raises(ValueError, match="temperature=0"):
        EntropyLinear(4, 2, 2, 0)
    with pytest.raises(TypeError):
        EntropyNetExplainer(0)  # type: ignore[misc]


def test_method_config_and_paper_experiment_build_the_paper_settings() -> None:
    import train  # noqa: F401  (registers the train_schema config)

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=entropy_paper"], return_hydra_config=True)
    assert cfg.method.name == "entropy" and cfg.hydra.sweeper.params.method == "entropy"
    assert (cfg.data.label, cfg.cv.n_splits, cfg.cv.val_size) == ("any_death", 5, 0.2)
    assert cfg.tracking.experiment == "mimic_entropy_paper"
    explainer = instantiate(cfg.method.explainer)
    assert isinstance(explainer, EntropyNetExplainer)
    assert (
        explainer.hidden,
        explainer.temperature,
        explainer.training.epochs,
        explainer.training.lr,
        explainer.training.optimizer,
    ) == (
        [20],
        0.7,
        200,
        0.01,
        "adamw",
    )
    assert explainer.aggregation.topk == 10 and explainer.train_rows == "train"
    (penalty,) = explainer.training.callbacks
    assert isinstance(penalty, EntropyPenalty) and penalty.strength == 1e-3


@pytest.mark.slow
def test_entropy_paper_experiment_end_to_end(tmp_path: Path, mimic_root: Path) -> None:
    env = job_env(tmp_path, LENBENCH_DATA_DIR=str(mimic_root))
    proc = run_train(tmp_path, "experiment=entropy_paper", multirun=True, env=env, timeout=SLOW_HANG_GUARD_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (job,) = (tmp_path / "sweep").glob("0-entropy-s42")
    results = pd.read_csv(job / "results.csv")
    assert list(results["split"]) == [0, 1, 2, 3, 4]
    summary = json.loads((job / "summary.json").read_text())
    assert summary["label"] == "any_death"
    # The paper: model 79.05 +- 1.35 %, explanation 66.93 +- 2.14 %, complexity 3.50, fidelity 79.11 %.
    assert 0.75 < summary["model_accuracy_mean"] < 0.83
    assert summary["explanation_accuracy_mean"] > summary["majority_accuracy_mean"] - 0.1
    assert summary["explanation_complexity_mean"] < 15
    assert 0.5 < summary["model_auroc_mean"] <= 1.0
