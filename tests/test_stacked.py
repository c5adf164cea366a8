"""Stacked networks (issue 15, ``fast`` mode): stacking round trips, per-network forward and gradients, padding that
contributes nothing, stacked training against separate training, pruning through the stack, refusals."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from lenbench.callbacks.l1 import L1Regularization
from lenbench.explainers.psi_net import PsiNetExplainer
from lenbench.explainers.relu_net import ReluNetExplainer
from lenbench.nn.stacked import (
    BatchedLinear,
    network_losses,
    pad_rows,
    stack_networks,
    stacked_loss,
    unstack_into,
)
from lenbench.nn.weights import effective_weight, linear_layers

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),  # conftest.py: one thread, as the protocol
    pytest.mark.filterwarnings("ignore"),
]

K = 12
ROWS = (40, 33, 27)  # different row counts per network


def _psi() -> PsiNetExplainer:
    return PsiNetExplainer(seed=0)


def _relu(output: str = "softmax") -> ReluNetExplainer:
    return ReluNetExplainer(seed=0, output=output)


def _nets(explainer, n: int, seed: int = 0) -> list[nn.Sequential]:
    torch.manual_seed(seed)
    return [explainer.build_network(K) for _ in range(n)]


def _data(explainer, rows=ROWS, seed: int = 1) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    xs, ys = [], []
    for r in rows:
        x = (torch.rand(r, K, generator=g) > 0.5).float()
        y = ((x[:, 0] * x[:, 1] + x[:, 2]) > 0).long().numpy()
        xs.append(x)
        ys.append(explainer.targets(y))
    return xs, ys


def _fan_in_mask(weight: torch.Tensor, fan_in: int = 2) -> torch.Tensor:
    """Keep the ``fan_in`` largest |w| of every row (topk over the last dim): works on [out, in] and [N, out, in]."""
    keep = torch.topk(weight.detach().abs(), k=fan_in, dim=-1).indices
    return torch.zeros_like(weight).scatter_(-1, keep, 1.0)


# -- BatchedLinear -------------------------------------------------------------------------------------------------


def test_batched_linear_is_n_linear_maps_and_prunes():
    torch.manual_seed(0)
    layer = BatchedLinear(3, 5, 4)
    assert isinstance(layer, nn.Linear)
    assert (layer.n_networks, layer.in_features, layer.out_features) == (3, 5, 4)
    assert layer.weight.shape == (3, 4, 5) and layer.bias.shape == (3, 4)
    assert float(layer.weight.abs().max()) <= 1 / 5**0.5  # drawn as nn.Linear draws its weights
    assert linear_layers(nn.Sequential(layer, nn.Sigmoid())) == [layer]
    x = torch.randn(3, 7, 5)
    out = layer(x.transpose(1, 2)).transpose(1, 2)  # feature-major in and out: [N, in, R] -> [N, out, R]
    for i in range(3):
        torch.testing.assert_close(out[i], x[i] @ layer.weight[i].T + layer.bias[i], atol=1e-6, rtol=0)
    no_bias = BatchedLinear(2, 5, 4, bias=False)
    assert no_bias.bias is None
    no_bias_out = no_bias(x[:2].transpose(1, 2))[1].T
    torch.testing.assert_close(no_bias_out, x[1] @ no_bias.weight[1].T, atol=1e-6, rtol=0)

    mask = _fan_in_mask(layer.weight, 2)
    prune.custom_from_mask(layer, "weight", mask)
    assert hasattr(layer, "weight_orig") and torch.equal(layer.weight_mask, mask)
    out = layer(x.transpose(1, 2)).transpose(1, 2)
    for i in range(3):
        w = layer.weight_orig[i] * mask[i]
        torch.testing.assert_close(out[i], x[i] @ w.T + layer.bias[i], atol=1e-6, rtol=0)
    out.sum().backward()
    assert torch.equal(layer.weight_orig.grad * (1 - mask), torch.zeros_like(mask))  # masked entries get none
    assert bool((layer.weight_orig.grad[mask.bool()] != 0).any())


# -- stacking ------------------------------------------------------------------------------------------------------


# Every network shape fast mode stacks: the psi net, and the ReLU net with and without its softmax output.
EACH_NETWORK = pytest.mark.parametrize(
    "make", [_psi, _relu, lambda: _relu("logits")], ids=["psi", "relu_softmax", "relu_logits"]
)


@EACH_NETWORK
def test_stack_unstack_round_trip_is_bitwise(make):
    nets = _nets(make(), 3)
    stacked = stack_networks(nets)
    assert len(linear_layers(stacked)) == len(linear_layers(nets[0]))
    fresh = _nets(make(), 3, seed=99)  # other values, same structure
    assert not torch.equal(fresh[0][0].weight, nets[0][0].weight)
    unstack_into(stacked, fresh)
    for net, copy_ in zip(nets, fresh, strict=True):
        for (name, a), (_, b) in zip(net.named_parameters(), copy_.named_parameters(), strict=True):
            assert torch.equal(a, b), name
    # the stack holds clones: training it does not move the original networks
    with torch.no_grad():
        stacked[0].weight.add_(1.0)
    assert not torch.equal(stacked[0].weight[0], nets[0][0].weight)


@EACH_NETWORK
def test_stacked_forward_is_each_network_on_its_rows(make):
    explainer = make()
    nets = _nets(explainer, 3)
    xs, ys = _data(explainer)
    X, Y, W = pad_rows(xs, ys)
    out = stack_networks(nets)(X)
    for i, (net, x) in enumerate(zip(nets, xs, strict=True)):
        torch.testing.assert_close(out[i, : x.shape[0]], net(x), atol=1e-6, rtol=0)
    if explainer.name != "psi" and explainer.output == "softmax":
        torch.testing.assert_close(
            out.sum(dim=-1), torch.ones(out.shape[:2])
        )  # the softmax is over the classes


def test_feature_major_layer_is_the_same_map_with_rows_last():
    torch.manual_seed(0)
    layer = BatchedLinear(3, 5, 4)
    x = torch.randn(3, 7, 5)
    out = layer(x.transpose(1, 2))  # [N, in, R] -> [N, out, R]
    assert out.shape == (3, 4, 7)
    for i in range(3):
        torch.testing.assert_close(out[i].T, x[i] @ layer.weight[i].T + layer.bias[i], atol=1e-6, rtol=0)
    table = torch.randn(7, 5)
    shared = layer(table.T)  # one table for every network: [in, R]
    for i in range(3):
        torch.testing.assert_close(shared[i].T, table @ layer.weight[i].T + layer.bias[i], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=r"\[3, 5, rows\]"):
        layer(torch.randn(2, 5, 7))


@EACH_NETWORK
def test_stacked_forward_on_one_shared_table(make):
    explainer = make()
    nets = _nets(explainer, 3)
    table = _data(explainer)[0][0]
    out = stack_networks(nets)(table)  # [R, k] for every network -> [N, R, C]
    assert out.shape[:2] == (3, table.shape[0])
    for i, net in enumerate(nets):
        torch.testing.assert_close(out[i], net(table), atol=1e-6, rtol=0)


def test_pad_rows_weights_and_dtypes():
    explainer = _relu()
    xs, ys = _data(explainer)
    X, Y, W = pad_rows(xs, ys)
    assert X.shape == (3, max(ROWS), K) and Y.shape == (3, max(ROWS)) and W.shape == (3, max(ROWS))
    assert Y.dtype == torch.int64 and W.dtype == torch.float32
    for i, n in enumerate(ROWS):
        assert torch.equal(X[i, :n], xs[i]) and torch.equal(Y[i, :n], ys[i])
        assert bool((W[i, :n] == 1.0 / n).all()) and bool((W[i, n:] == 0).all())
        assert bool((X[i, n:] == 0).all())
    torch.testing.assert_close(W.sum(dim=1), torch.ones(3))
    assert pad_rows(*_data(_psi()))[1].dtype == torch.float32
    with pytest.raises(ValueError, match="no rows"):
        pad_rows([torch.zeros(0, K)], [torch.zeros(0)])
    with pytest.raises(ValueError, match="targets"):
        pad_rows([torch.zeros(3, K)], [torch.zeros(2)])


@EACH_NETWORK
def test_stacked_loss_gradient_is_each_networks_own(make):
    explainer = make()
    nets = _nets(explainer, 3)
    xs, ys = _data(explainer)
    X, Y, W = pad_rows(xs, ys)
    stacked = stack_networks(nets)
    row_loss = explainer.row_loss()
    output = stacked(X)
    assert row_loss(output, Y).shape == Y.shape
    loss = stacked_loss(row_loss, output, Y, W)
    loss.backward()
    criterion = explainer.criterion()
    own = []
    for net, x, y in zip(nets, xs, ys, strict=True):
        net_loss = criterion(net(x), y)
        net_loss.backward()
        own.append(net_loss.detach())
    torch.testing.assert_close(network_losses(row_loss, output.detach(), Y, W), torch.stack(own))
    torch.testing.assert_close(loss.detach(), torch.stack(own).sum())
    for position, layer in enumerate(stacked):
        if not isinstance(layer, BatchedLinear):
            continue
        for i, net in enumerate(nets):
            torch.testing.assert_close(layer.weight.grad[i], net[position].weight.grad, atol=1e-6, rtol=1e-5)
            torch.testing.assert_close(layer.bias.grad[i], net[position].bias.grad, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("make", [_psi, _relu], ids=["psi", "relu_softmax"])
def test_padding_rows_contribute_nothing(make):
    explainer = make()
    nets = _nets(explainer, 3)
    xs, ys = _data(explainer)
    X, Y, W = pad_rows(xs, ys)
    noisy = X.clone()
    g = torch.Generator().manual_seed(5)
    for i, n in enumerate(ROWS):
        noisy[i, n:] = torch.randn(noisy.shape[1] - n, K, generator=g) * 10
    assert not torch.equal(noisy, X)
    results = []
    for inputs in (X, noisy):
        stacked = stack_networks(nets)
        output = stacked(inputs)
        loss = stacked_loss(explainer.row_loss(), output, Y, W)
        loss.backward()
        per_net = network_losses(explainer.row_loss(), output.detach(), Y, W)
        results.append((loss.detach(), per_net, [p.grad.clone() for p in stacked.parameters()]))
    (loss_a, per_a, grads_a), (loss_b, per_b, grads_b) = results
    # Exactly: a padded row's loss is multiplied by 0, so its gradient terms are exact zeros, and no real row's
    # output depends on another row.
    assert torch.equal(per_a, per_b) and torch.equal(loss_a, loss_b)
    for a, b in zip(grads_a, grads_b, strict=True):
        assert torch.equal(a, b)


# -- training ------------------------------------------------------------------------------------------------------

EPOCHS = 200
PRUNE_AFTER = 100


def _train(net: nn.Module, batches, row_loss=None, epochs=EPOCHS, prune_after=None, l1=1e-5):
    """Full-batch Adam as the protocol trains: loss, backward, L1 gradient, step, optional fan-in pruning once."""
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    regulariser = L1Regularization(l1, layers="all")
    criterion = _psi().criterion()
    for epoch in range(epochs):
        optimizer.zero_grad()
        if row_loss is None:
            x, y = batches
            loss = criterion(net(x), y)
        else:
            X, Y, W = batches
            loss = stacked_loss(row_loss, net(X), Y, W)
        loss.backward()
        regulariser.apply_gradient(net)
        optimizer.step()
        if prune_after is not None and epoch == prune_after:
            for layer in linear_layers(net):
                with torch.no_grad():
                    mask = _fan_in_mask(effective_weight(layer), 2)
                prune.custom_from_mask(layer, "weight", mask)


@pytest.mark.parametrize("prune_after", [None, PRUNE_AFTER], ids=["dense", "fan_in_pruned"])
def test_stacked_training_matches_separate_training(prune_after):
    explainer = _psi()
    nets = _nets(explainer, 3, seed=3)
    g = torch.Generator().manual_seed(7)
    x = (torch.rand(120, K, generator=g) > 0.5).float()
    y = explainer.targets((((x[:, 0] * x[:, 1]) + x[:, 2] * (1 - x[:, 3])) > 0).long().numpy())
    subsets = [torch.randperm(120, generator=g)[:n] for n in (110, 96, 84)]
    xs, ys = [x[s] for s in subsets], [y[s] for s in subsets]

    separate = [copy.deepcopy(net) for net in nets]
    for net, xi, yi in zip(separate, xs, ys, strict=True):
        _train(net, (xi, yi), prune_after=prune_after)
    stacked = stack_networks(nets)
    _train(stacked, pad_rows(xs, ys), row_loss=explainer.row_loss(), prune_after=prune_after)
    together = _nets(explainer, 3, seed=11)
    unstack_into(stacked, together)

    max_diff, rows, same_rows = 0.0, 0, 0
    for alone, batched in zip(separate, together, strict=True):
        for a, b in zip(linear_layers(alone), linear_layers(batched), strict=True):
            max_diff = max(max_diff, float((effective_weight(a) - effective_weight(b)).abs().max()))
            max_diff = max(max_diff, float((a.bias - b.bias).abs().max()))
            if prune_after is not None:
                rows += a.weight_mask.shape[0]
                same_rows += int((a.weight_mask == b.weight_mask).all(dim=1).sum())
    moved = float((separate[0][0].weight.detach() - nets[0][0].weight.detach()).abs().max())
    assert moved > 0.1, f"training barely moved the weights ({moved}): the comparison would be vacuous"
    if prune_after is None:
        assert max_diff < 1e-4, f"stacked vs separate training: max weight difference {max_diff:.3g}"
    else:
        assert same_rows >= 0.9 * rows, f"fan-in masks: {same_rows}/{rows} rows identical"
        # where the masks agree (all rows, here) the weights agree too
        if same_rows == rows:
            assert max_diff < 1e-4, f"pruned stacked vs separate: max weight difference {max_diff:.3g}"
    print(
        f"prune_after={prune_after}: max |difference| {max_diff:.3g}, masks {same_rows}/{rows} rows identical"
    )


# -- pruning through the stack -------------------------------------------------------------------------------------


def test_pruned_stack_unstacks_into_pruned_networks_bitwise():
    explainer = _psi()
    nets = _nets(explainer, 3)
    stacked = stack_networks(nets)
    for layer in linear_layers(stacked):
        prune.custom_from_mask(layer, "weight", _fan_in_mask(layer.weight, 2))
    with torch.no_grad():  # weight_orig moves after pruning, as it does under the optimiser
        for layer in linear_layers(stacked):
            layer.weight_orig.add_(torch.randn_like(layer.weight_orig) * 0.1)
    unstack_into(stacked, nets)
    xs, ys = _data(explainer)
    X, _, _ = pad_rows(xs, ys)
    out = stacked(X)
    for i, net in enumerate(nets):
        assert prune.is_pruned(net)
        for layer, batched in zip(linear_layers(net), linear_layers(stacked), strict=True):
            assert torch.equal(layer.weight_mask, batched.weight_mask[i])
            assert torch.equal(layer.weight_orig, batched.weight_orig[i])
            assert torch.equal(effective_weight(layer), effective_weight(batched)[i])
            assert torch.equal(layer.weight, effective_weight(batched)[i])  # fresh before any forward
            assert torch.equal(layer.bias, batched.bias[i])
            assert isinstance(layer.weight_orig, nn.Parameter)
        torch.testing.assert_close(net(xs[i]), out[i, : xs[i].shape[0]], atol=1e-6, rtol=0)
    # a second unstack (after more training) overwrites the masks of networks pruned already
    with torch.no_grad():
        first = linear_layers(stacked)[0]
        first.weight_mask.copy_(_fan_in_mask(first.weight_orig + 5 * torch.randn_like(first.weight_orig), 2))
    unstack_into(stacked, nets)
    assert torch.equal(effective_weight(nets[2][0]), effective_weight(linear_layers(stacked)[0])[2])


# -- refusals ------------------------------------------------------------------------------------------------------


def test_refuses_what_it_cannot_batch():
    with pytest.raises(ValueError, match="Dropout"):
        stack_networks([nn.Sequential(nn.Linear(3, 2), nn.Dropout(0.1)) for _ in range(2)])
    with pytest.raises(ValueError, match="Softmax"):
        stack_networks([nn.Sequential(nn.Linear(3, 2), nn.Softmax(dim=0))])
    with pytest.raises(ValueError, match="network 1"):
        stack_networks([nn.Sequential(nn.Linear(3, 2)), nn.Sequential(nn.Linear(3, 4))])
    with pytest.raises(ValueError, match="no networks"):
        stack_networks([])
    pruned = nn.Sequential(nn.Linear(3, 2))
    prune.custom_from_mask(pruned[0], "weight", torch.ones(2, 3))
    with pytest.raises(ValueError, match="pruned"):
        stack_networks([pruned])
    stacked = stack_networks([nn.Sequential(nn.Linear(3, 2)) for _ in range(2)])
    with pytest.raises(ValueError, match="holds 2 networks"):
        unstack_into(stacked, [nn.Sequential(nn.Linear(3, 2))])
    with pytest.raises(ValueError, match="does not match"):
        unstack_into(stacked, [nn.Sequential(nn.Linear(3, 5)) for _ in range(2)])
