"""Network explainers: they train exactly as the notebook's loops, recover known formulas, and are deterministic."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import boolean_rows, fold_of
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch.nn.utils import prune

from lenbench.callbacks import FanInPruning, FeaturePruning, L1Regularization
from lenbench.data.synthetic import make_dnf, make_xor
from lenbench.explainers.network import train_together
from lenbench.explainers.psi_net import PsiNetExplainer
from lenbench.explainers.relu_net import ReluNetExplainer
from lenbench.logic.formula import Formula
from lenbench.logic.metrics import explanation_accuracy

CONF = Path(__file__).resolve().parents[1] / "conf"
TRAINER = {"log_every_n_epochs": 50}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py: one thread, as the protocol


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _notebook_relu(x, y, epochs, lr, l1, start, period, seed=42, dtype=torch.float32):
    """The notebook's ``train_nn`` with ``prune_features`` (n_classes=1), its schedule scaled down; the model and
    rows converted to ``dtype`` once built (float32: as the notebook)."""
    _seed(seed)
    layers = [torch.nn.Linear(x.shape[1], 100), torch.nn.LeakyReLU(), torch.nn.Linear(100, 10)]
    layers += [torch.nn.LeakyReLU(), torch.nn.Linear(10, 2), torch.nn.Softmax(dim=1)]
    model = torch.nn.Sequential(*layers).to(dtype)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    criterion = torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x).to(dtype), torch.from_numpy(y)
    for epoch in range(epochs):
        optimizer.zero_grad()
        loss = criterion(model(xt), yt)
        loss += l1 * torch.norm(model[0].weight, 1)
        loss += l1 * torch.norm(model[0].bias, 1)
        loss.backward()
        optimizer.step()
        if epoch > start and epoch % period == 1:
            norms = torch.norm(model[0].weight, dim=0)
            mask = torch.ones(model[0].weight.shape, dtype=dtype)
            mask[:, (norms / torch.max(norms)) < 0.5] = 0
            prune.custom_from_mask(model[0], name="weight", mask=mask)
    return model


def _notebook_psi(x, y, epochs, lr, start, seed=42, dtype=torch.float32):
    """The notebook's ``train_psi_nn`` with ``prune_equal_fanin(k=2)``, its schedule scaled down; the model and
    rows converted to ``dtype`` once built (float32: as the notebook)."""
    _seed(seed)
    layers = [torch.nn.Linear(x.shape[1], 10), torch.nn.Sigmoid(), torch.nn.Linear(10, 4), torch.nn.Sigmoid()]
    model = torch.nn.Sequential(*layers, torch.nn.Linear(4, 1), torch.nn.Sigmoid()).to(dtype)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    criterion = torch.nn.BCELoss()
    xt, yt = torch.from_numpy(x).to(dtype), torch.from_numpy(y).float().to(dtype)
    need_pruning = True
    for epoch in range(epochs):
        optimizer.zero_grad()
        loss = criterion(model(xt).squeeze(), yt)
        for module in model.children():
            if isinstance(module, torch.nn.Linear):
                loss += 0.00001 * torch.norm(module.weight, 1)
        loss.backward()
        optimizer.step()
        if epoch > start and need_pruning:
            for module in model.children():
                if isinstance(module, torch.nn.Linear):
                    mask = torch.ones(module.weight.shape, dtype=dtype)
                    idx = torch.topk(-torch.abs(module.weight), k=module.weight.shape[1] - 2, dim=1)[1]
                    for j in range(len(idx)):
                        mask[j, idx[j]] = 0
                    prune.custom_from_mask(module, name="weight", mask=mask)
            need_pruning = False
    return model


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sorted(sa) == sorted(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


# Networks trained together (exact batching): network i is seeded with SEEDS[i] and trained on the rows from 20 * i.
SEEDS = (42, 7, 8)


# trainer.precision: float32 as the notebook, and float64 (the notebook's loop on float64 weights and rows).
PRECISIONS = {"32-true": torch.float32, "64-true": torch.float64}


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("together", [1, 3])
def test_pruning_network_trains_bit_for_bit_like_the_notebook_loop(together: int, precision: str) -> None:
    x, y = boolean_rows(200, 8, rule="dnf")
    explainers = [
        ReluNetExplainer(
            seed=seed,
            epochs=60,
            lr=1e-2,
            trainer={"precision": precision},
            callbacks=[
                L1Regularization(1e-2, layers="first", include_bias=True),
                FeaturePruning(start_epoch=20, period=10, offset=1),
            ],
        )
        for seed in SEEDS[:together]
    ]
    train_together(explainers, [(x[20 * i :], y[20 * i :]) for i in range(together)])
    history = explainers[0].info()["feature_pruning"]
    assert [e for e, _ in history] == [21, 31, 41, 51] and history[-1][1] < x.shape[1]  # it really pruned
    for i, explainer in enumerate(explainers):
        notebook = _notebook_relu(
            x[20 * i :], y[20 * i :], 60, 1e-2, 1e-2, 20, 10, seed=SEEDS[i], dtype=PRECISIONS[precision]
        )
        assert {p.dtype for p in explainer.network.parameters()} == {PRECISIONS[precision]}
        assert _same_weights(explainer.network, notebook), f"network {i} of {together}"
        assert explainer.info()["networks_trained_together"] == together


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("together", [1, 3])
def test_psi_network_trains_bit_for_bit_like_the_notebook_loop(together: int, precision: str) -> None:
    x, y = boolean_rows(200, 8, rule="dnf")
    explainers = [
        PsiNetExplainer(
            seed=seed,
            epochs=60,
            lr=1e-2,
            trainer={"precision": precision},
            callbacks=[L1Regularization(1e-5, layers="all"), FanInPruning(fan_in=2, epoch=20)],
        )
        for seed in SEEDS[:together]
    ]
    train_together(explainers, [(x[20 * i :], y[20 * i :]) for i in range(together)])
    assert explainers[0].info()["fan_in_pruned_at"] == 21
    for i, explainer in enumerate(explainers):
        notebook = _notebook_psi(
            x[20 * i :], y[20 * i :], 60, 1e-2, 20, seed=SEEDS[i], dtype=PRECISIONS[precision]
        )
        assert {p.dtype for p in explainer.network.parameters()} == {PRECISIONS[precision]}
        assert _same_weights(explainer.network, notebook), f"network {i} of {together}"


def _pruning(**kwargs) -> ReluNetExplainer:
    settings = dict(seed=42, trainer=TRAINER, epochs=400, lr=1e-2)
    settings.update(kwargs)
    callbacks = [L1Regularization(1e-3, include_bias=True), FeaturePruning(start_epoch=150, period=100)]
    return ReluNetExplainer(feature_selection="pruning", callbacks=callbacks, **settings)


def _weights(**kwargs) -> ReluNetExplainer:
    settings = dict(seed=42, trainer=TRAINER, epochs=400, lr=1e-2, activation="relu")
    settings.update(kwargs)
    return ReluNetExplainer(
        feature_selection="weights", callbacks=[L1Regularization(1e-2, include_bias=True)], **settings
    )


def _psi(epochs: int = 1000, **kwargs) -> PsiNetExplainer:
    # One hidden layer of 4: the notebook's 10-4 psi network often loses XOR when pruned to fan-in 2.
    settings = dict(seed=42, trainer=TRAINER, lr=1e-2, hidden=[4])
    settings.update(kwargs)
    callbacks = [L1Regularization(1e-4, layers="all"), FanInPruning(2, epoch=epochs // 2)]
    return PsiNetExplainer(epochs=epochs, callbacks=callbacks, **settings)


EXPLAINERS = {
    # XOR: the local explanations are the minterms c0 & ~c1 and ~c0 & c1, so the reference setting recovers it.
    ("xor", "pruning"): lambda: _pruning(),
    ("xor", "weights"): lambda: _weights(),
    ("xor", "psi"): lambda: _psi(),
    # DNF: 7 full minterms over c0..c3 are true; the working local simplification shortens them to the two terms.
    ("dnf", "pruning"): lambda: _pruning(simplify_local=True),
    ("dnf", "weights"): lambda: _weights(simplify_local=True, output="logits", topk=2),
    ("dnf", "psi"): lambda: _psi(),
}


@pytest.mark.parametrize(("data_name", "method"), list(EXPLAINERS))
def test_recovers_the_ground_truth_on_synthetic_data(data_name: str, method: str) -> None:
    make = make_xor if data_name == "xor" else make_dnf
    data = make(n_samples=1000, seed=0)
    fold = fold_of(data)
    explainer = EXPLAINERS[(data_name, method)]().fit(fold)
    formula = explainer.explain(fold, target_class=1)
    assert data.ground_truth is not None
    truth = Formula.parse(data.ground_truth)
    # held-out rows: the test fold, and fresh rows with noise-free labels
    fresh = (
        make(n_samples=2000, seed=1) if data_name == "xor" else make_dnf(n_samples=2000, noise=0.0, seed=1)
    )
    assert explanation_accuracy(formula, fresh.x, fresh.y, fresh.concept_names) >= 0.95, str(formula)
    assert explanation_accuracy(formula, fold.x_test, fold.y_test, fold.concept_names) >= 0.9, str(formula)
    assert np.array_equal(
        formula.evaluate(fresh.x, fresh.concept_names), truth.evaluate(fresh.x, fresh.concept_names)
    )
    assert (explainer.predict(fold.x_test) == fold.y_test).mean() >= 0.9
    info = explainer.info()
    assert info["simplify_exact"] and not info["empty_explanation"] and info["training_time"] > 0


@pytest.mark.parametrize("factory", [_pruning, _weights, _psi], ids=["pruning", "weights", "psi"])
def test_same_seed_same_predictions_formula_and_loss(factory) -> None:
    data = make_dnf(n_samples=300, seed=2)
    fold = fold_of(data)
    runs = []
    for _ in range(2):
        explainer = factory(epochs=200).fit(fold)
        runs.append((explainer.predict(fold.x_test), explainer.explain(fold), explainer.info()["loss_curve"]))
    (p1, f1, l1), (p2, f2, l2) = runs
    assert np.array_equal(p1, p2) and f1 == f2 and l1 == l2
    assert [e for e, _ in l1] == [0, 50, 100, 150, 199]


def test_info_records_training() -> None:
    x, y = boolean_rows(200, 8, rule="dnf")
    explainer = _pruning(epochs=120, trainer={"log_every_n_epochs": 40}).train(x, y)
    info = explainer.info()
    assert [e for e, _ in info["loss_curve"]] == [0, 40, 80, 119]
    assert info["final_loss"] == info["loss_curve"][-1][1]
    assert info["epochs"] == 120 and info["seed"] == 42 and info["torch_threads"] == torch.get_num_threads()
    assert info["training_time"] > 0 and info["final_penalty"] > 0
    assert explainer.predict(x).dtype == np.int64
    scores = explainer.scores(x)
    assert scores.shape == (len(x),) and ((scores >= 0) & (scores <= 1)).all()
    assert np.array_equal(scores > 0.5, explainer.predict(x) == 1)


def test_psi_explains_only_the_class_it_was_trained_for() -> None:
    data = make_xor(n_samples=300, seed=0)
    fold = fold_of(data)
    explainer = _psi(epochs=50, target_class=0).fit(fold)
    with pytest.raises(ValueError, match="target_class=0.*class 1"):
        explainer.explain(fold, target_class=1)
    assert isinstance(explainer.explain(fold, target_class=0), Formula)
    output = explainer.network_output(fold.x_test).squeeze(1).numpy()
    assert np.array_equal(explainer.predict(fold.x_test), np.where(output > 0.5, 0, 1))
    assert np.allclose(explainer.scores(fold.x_test), 1.0 - output)  # probability of class 1


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: _pruning(epochs=0), "epochs=0"),
        (lambda: _pruning(lr=0.0), "lr=0.0"),
        (lambda: _pruning(lr=-1e-3), "lr=-0.001"),
        (lambda: _pruning(weight_decay=-1.0), "weight_decay=-1.0"),
        (lambda: _pruning(activation="tanh"), "activation='tanh'.*'leaky_relu', 'relu'"),
        (lambda: _pruning(output="probabilities"), "output='probabilities'"),
        (lambda: _pruning(topk=0), "topk=0"),
        (lambda: _pruning(optimizer="sgd"), "optimizer='sgd'"),
        (lambda: _pruning(hidden=[]), "hidden"),
        (lambda: ReluNetExplainer(seed=0, feature_selection="lime"), "feature_selection='lime'"),
        (lambda: _pruning(trainer={"max_epochs": 3}), "max_epochs"),
        (lambda: _pruning(trainer={"precision": "16-mixed"}), "precision='16-mixed'.*32-true.*64-true"),
        (lambda: _pruning(trainer={"precision": "bf16-mixed"}), "precision='bf16-mixed'"),
        (lambda: _psi(trainer={"precision": "transformer-engine"}), "precision='transformer-engine'"),
        (lambda: _pruning(trainer={"log_every_n_epochs": 0}), "log_every_n_epochs=0"),
        (lambda: ReluNetExplainer(seed=0, callbacks=[object()]), "not a Lightning Callback"),
        (lambda: _psi(target_class=2), "target_class=2"),
        (lambda: PsiNetExplainer(seed=0, epochs=-5), "epochs=-5"),
    ],
)
def test_nonsense_settings_are_refused(factory, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        factory()


def test_arguments_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        ReluNetExplainer(42)  # type: ignore[misc]
    with pytest.raises(TypeError):
        PsiNetExplainer(42, None, 1)  # type: ignore[misc]


@pytest.mark.parametrize("method", ["pruning", "weights", "psi"])
def test_method_configs_build_the_notebook_settings(method: str) -> None:
    import train  # noqa: F401  (registers the train_schema config that train.yaml starts from)

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"method={method}", "seed=7"])
    explainer = instantiate(cfg.method.explainer)
    assert cfg.method.name == method and explainer.training.seed == 7 and explainer.training.epochs == 5001
    training = explainer.training
    assert training.trainer["accelerator"] == "cpu"
    l1 = [cb for cb in explainer.training.callbacks if isinstance(cb, L1Regularization)]
    assert len(l1) == 1
    if method == "psi":
        assert isinstance(explainer, PsiNetExplainer) and explainer.target_class == 1
        assert (training.optimizer, training.lr, training.weight_decay, explainer.hidden) == (
            "adam",
            1e-3,
            0.0,
            [10, 4],
        )
        assert (l1[0].strength, l1[0].layers, l1[0].include_bias) == (1e-5, "all", False)
        (fan_in,) = [cb for cb in explainer.training.callbacks if isinstance(cb, FanInPruning)]
        assert (fan_in.fan_in, fan_in.epoch) == (2, 2001)
        return
    assert isinstance(explainer, ReluNetExplainer) and explainer.feature_selection == method
    assert (training.optimizer, training.weight_decay, explainer.hidden, explainer.topk) == (
        "adamw",
        0.01,
        [100, 10],
        3,
    )
    assert explainer.output == "softmax" and not explainer.simplify_local
    pruning = [cb for cb in explainer.training.callbacks if isinstance(cb, FeaturePruning)]
    if method == "pruning":
        assert (training.lr, explainer.activation, l1[0].strength, l1[0].include_bias) == (
            1e-3,
            "leaky_relu",
            1e-3,
            True,
        )
        assert [e for e in range(5001) if pruning[0].fires_at(e)] == [3001, 4001]
    else:
        assert (training.lr, explainer.activation, l1[0].strength, l1[0].include_bias) == (
            5e-4,
            "relu",
            8e-3,
            True,
        )
        assert pruning == []
