"""L1 regularisation and pruning callbacks: exact gradients, schedules, masks that hold, checkpoint round trips."""

from __future__ import annotations

import io

import pytest
import pytorch_lightning as pl
import torch
from helpers import boolean_rows
from torch import nn

from lenbench.callbacks import FanInPruning, FeaturePruning, L1Regularization
from lenbench.callbacks.pruning import prune_fan_in, prune_features, validate_fan_in
from lenbench.explainers.psi_net import PsiNetExplainer
from lenbench.explainers.relu_net import ReluNetExplainer
from lenbench.nn.module import FullBatchModule
from lenbench.nn.weights import effective_weight, linear_layers, load_pruned_state_dict

TRAINER = {"log_every_n_epochs": 5}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py: one thread, as the protocol


def _mlp(seed: int = 0, sizes: tuple[int, ...] = (6, 5, 4, 2)) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(a, b), nn.LeakyReLU()]
    return nn.Sequential(*layers[:-1])


def _grads(net: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in net.named_parameters()}


@pytest.mark.parametrize(
    ("layers", "include_bias"), [("first", True), ("first", False), ("all", False), ([1, 2], True)]
)
def test_l1_gradient_equals_autograd_of_the_explicit_penalty(layers, include_bias) -> None:
    x, y = boolean_rows(64, 6)
    inputs, targets = torch.from_numpy(x), torch.from_numpy(y)
    strength = 1e-3
    net = _mlp()
    with torch.no_grad():  # exact zeros: sign(0) = 0 in both
        net[0].weight[0, :3] = 0.0
        net[2].bias[1] = 0.0
    callback = L1Regularization(strength, layers=layers, include_bias=include_bias)

    net.zero_grad()
    nn.functional.cross_entropy(net(inputs), targets).backward()
    data_only = _grads(net)
    callback.apply_gradient(net)
    ours = _grads(net)

    net.zero_grad()
    loss = nn.functional.cross_entropy(net(inputs), targets)
    for layer in callback.selected_layers(net):
        loss = loss + strength * torch.norm(layer.weight, 1)
        if include_bias:
            loss = loss + strength * torch.norm(layer.bias, 1)
    loss.backward()
    reference = _grads(net)

    for name in ours:
        assert torch.equal(ours[name], reference[name]), name
    selected = {id(p) for layer in callback.selected_layers(net) for p in layer.parameters()}
    for name, p in net.named_parameters():
        change = ours[name] - data_only[name]
        if id(p) in selected and (include_bias or name.endswith("weight")):
            # (g + s) - g is s up to rounding; the exact comparison is the one with autograd above
            assert torch.allclose(change, strength * torch.sign(p.detach()), rtol=0, atol=1e-6), name
        else:
            assert torch.equal(change, torch.zeros_like(change)), name


def test_l1_gradient_on_a_pruned_layer_is_the_gradient_of_the_masked_weight() -> None:
    x, y = boolean_rows(64, 6)
    net = _mlp()
    prune_features(net[0], threshold=0.99)
    callback = L1Regularization(0.01, layers="first")
    net.zero_grad()
    nn.functional.cross_entropy(net(torch.from_numpy(x)), torch.from_numpy(y)).backward()
    before = net[0].weight_orig.grad.clone()
    callback.apply_gradient(net)
    expected = 0.01 * torch.sign(net[0].weight_orig.detach() * net[0].weight_mask)
    assert torch.equal(net[0].weight_orig.grad - before, expected)
    assert callback.penalty(net) == pytest.approx(0.01 * float(effective_weight(net[0]).abs().sum()))


def test_l1_penalty_value() -> None:
    net = _mlp()
    callback = L1Regularization(0.5, layers="all", include_bias=True)
    expected = 0.5 * sum(float(p.abs().sum()) for p in net.parameters())
    assert callback.penalty(net) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"strength": -1.0}, "strength=-1.0"),
        ({"strength": 1e-3, "layers": "middle"}, "layers='middle'"),
        ({"strength": 1e-3, "layers": []}, "layers"),
    ],
)
def test_l1_rejects_nonsense(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        L1Regularization(**kwargs)


def test_l1_layer_index_out_of_range() -> None:
    with pytest.raises(ValueError, match="3 Linear layers"):
        L1Regularization(1e-3, layers=[5]).selected_layers(_mlp())


def test_feature_pruning_default_schedule_fires_at_3001_and_4001_only() -> None:
    schedule = FeaturePruning()
    assert [e for e in range(5001) if schedule.fires_at(e)] == [3001, 4001]


def _relu(epochs: int, callbacks: list[pl.Callback], lr: float = 1e-3, **kwargs) -> ReluNetExplainer:
    return ReluNetExplainer(
        seed=0, trainer=TRAINER, hidden=[8, 4], epochs=epochs, lr=lr, callbacks=callbacks, **kwargs
    )


def test_feature_pruning_fires_on_a_small_schedule_after_the_step_of_those_epochs() -> None:
    x, y = boolean_rows(64, 6)
    explainer = _relu(15, [FeaturePruning(start_epoch=5, period=3, offset=1)]).train(x, y)
    assert [e for e, _ in explainer.info()["feature_pruning"]] == [7, 10, 13]
    assert explainer.training.callbacks[0].history == []  # the configured callback is copied for each fit


class _PlainModule(pl.LightningModule):
    """A standard Lightning module (automatic optimisation, one batch per epoch) for the fallback path."""

    def __init__(self) -> None:
        super().__init__()
        self.net = _mlp()
        x, y = boolean_rows(64, 6)
        self.x, self.y = torch.from_numpy(x), torch.from_numpy(y)

    def training_step(self, batch, batch_idx):
        return nn.functional.cross_entropy(self.net(self.x), self.y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


class _OneBatch:
    def __len__(self) -> int:
        return 1

    def __iter__(self):
        return iter([0])


def test_schedules_keyed_on_lightning_epochs_for_other_modules() -> None:
    features = FeaturePruning(start_epoch=5, period=3, offset=1)
    fan_in = FanInPruning(fan_in=2, epoch=3)
    trainer = pl.Trainer(
        max_epochs=15,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[features, fan_in],
    )
    trainer.fit(_PlainModule(), train_dataloaders=_OneBatch())
    assert [e for e, _ in features.history] == [7, 10, 13]
    assert fan_in.pruned_at == 4


def test_pruning_masks_hold_through_adamw_weight_decay() -> None:
    x, y = boolean_rows(64, 6)
    explainer = _relu(
        60,
        [L1Regularization(1e-2, include_bias=True), FeaturePruning(start_epoch=10, period=20, threshold=0.9)],
        lr=2e-2,
        weight_decay=0.1,
    ).train(x, y)
    first = linear_layers(explainer.network)[0]
    mask = first.weight_mask
    assert explainer.info()["feature_pruning"][0][0] == 21
    assert (mask == 0).any() and (mask == 1).any()
    assert torch.equal(effective_weight(first)[mask == 0], torch.zeros(int((mask == 0).sum())))
    assert (first.weight_orig.detach()[mask == 0] != 0).any()  # the optimiser kept moving them; the mask held
    assert explainer.info()["features_used"] == int(mask.any(dim=0).sum())


def _pruned_module(kind: str = "fan_in") -> nn.Sequential:
    net = _mlp()
    if kind == "fan_in":
        prune_fan_in(net, 2)
    else:
        prune_features(net[0], threshold=0.9)
        prune_features(net[0], threshold=0.9)  # twice: the masks combine
    return net


def _assert_masked_zero(net: nn.Module) -> None:
    for layer in linear_layers(net):
        if hasattr(layer, "weight_mask"):
            masked = layer.weight_mask == 0
            assert torch.equal(effective_weight(layer)[masked], torch.zeros(int(masked.sum())))


@pytest.mark.parametrize("kind", ["fan_in", "features"])
def test_state_dict_round_trip_into_a_fresh_module_keeps_the_masks(kind: str) -> None:
    net = _pruned_module(kind)
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer)
    assert any(k.endswith("weight_orig") for k in state) and any(k.endswith("weight_mask") for k in state)
    with pytest.raises(RuntimeError):
        _mlp(seed=1).load_state_dict(state)  # what the helper is for

    fresh = _mlp(seed=1)
    load_pruned_state_dict(fresh, state)
    x = torch.from_numpy(boolean_rows(64, 6)[0])
    assert torch.equal(fresh(x), net(x))
    for a, b in zip(linear_layers(fresh), linear_layers(net), strict=True):
        assert torch.equal(effective_weight(a), effective_weight(b))
        assert hasattr(a, "weight_mask") == hasattr(b, "weight_mask")
    if kind == "fan_in":
        validate_fan_in(fresh, 2)

    optimizer = torch.optim.AdamW(fresh.parameters(), lr=0.1, weight_decay=0.5)
    for _ in range(5):
        optimizer.zero_grad()
        fresh(x).sum().backward()
        optimizer.step()
    _assert_masked_zero(fresh)
    if kind == "fan_in":
        validate_fan_in(fresh, 2)


def test_lightning_module_loads_a_pruned_checkpoint_state_dict() -> None:
    trained = FullBatchModule(_pruned_module(), nn.CrossEntropyLoss(), "adamw", 1e-3, 0.01, 10)
    state = trained.state_dict()
    fresh = FullBatchModule(_mlp(seed=3), nn.CrossEntropyLoss(), "adamw", 1e-3, 0.01, 10)
    fresh.load_state_dict(state)
    x = torch.from_numpy(boolean_rows(64, 6)[0])
    assert torch.equal(fresh(x), trained(x))


def test_fan_in_pruning_leaves_exactly_two_inputs_per_neuron() -> None:
    x, y = boolean_rows(64, 6)
    explainer = PsiNetExplainer(
        seed=0,
        trainer=TRAINER,
        epochs=30,
        lr=1e-2,
        callbacks=[L1Regularization(1e-5, layers="all"), FanInPruning(fan_in=2, epoch=10)],
    ).train(x, y)
    assert explainer.info()["fan_in_pruned_at"] == 11
    for weight, _ in explainer.layer_arrays():
        assert ((weight != 0).sum(axis=1) == 2).all()
    for layer in linear_layers(explainer.network):
        assert (layer.weight_mask.sum(dim=1) == 2).all()


def test_fan_in_larger_than_a_layer_is_refused() -> None:
    with pytest.raises(ValueError, match="fan_in=5.*only 4 inputs"):
        prune_fan_in(_mlp(), 5)
    x, y = boolean_rows(64, 6)
    explainer = PsiNetExplainer(
        seed=0, trainer=TRAINER, epochs=5, callbacks=[FanInPruning(fan_in=5, epoch=1)]
    )
    with pytest.raises(ValueError, match="fan_in=5"):
        explainer.train(x, y)


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: FanInPruning(fan_in=0), "fan_in=0"),
        (lambda: FeaturePruning(period=0), "period=0"),
        (lambda: FeaturePruning(threshold=1.5), "threshold=1.5"),
        (lambda: FeaturePruning(period=3, offset=3), "offset=3"),
    ],
)
def test_pruning_rejects_nonsense(factory, match) -> None:
    with pytest.raises(ValueError, match=match):
        factory()
