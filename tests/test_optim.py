"""FlatAdam (lenbench.nn.optim): torch's Adam/AdamW update bit for bit over one flat buffer, in every ATen CPU
capability of this machine; its state dict is torch Adam's."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from lenbench.nn.optim import FlatAdam, make_optimizer

# Sizes chosen so that parameters end inside a vector width and tails go through ATen's scalar loops.
SHAPES = [(7, 13), (13,), (3, 7), (3,), (1, 3), (1,)]


def _params(seed: int) -> list[nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    return [nn.Parameter(torch.randn(shape, generator=gen)) for shape in SHAPES]


def _train(params: list[nn.Parameter], optimizer: torch.optim.Optimizer, steps: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed + 1)
    for step in range(steps):
        optimizer.zero_grad()
        loss = sum(((p * torch.randn(p.shape, generator=gen)).sin() ** 2).sum() for p in params)
        loss.backward()
        if step == steps // 2:
            for group in optimizer.param_groups:
                group["lr"] = group["lr"] / 3  # a scheduler's change is read at the next step
        optimizer.step()


@pytest.mark.parametrize(
    ("name", "torch_cls", "weight_decay"),
    [("adam", torch.optim.Adam, 0.0), ("adam", torch.optim.Adam, 0.01), ("adamw", torch.optim.AdamW, 0.01)],
)
def test_flat_adam_equals_torch_bit_for_bit(name: str, torch_cls: type, weight_decay: float) -> None:
    ours, theirs = _params(0), _params(0)
    _train(ours, make_optimizer(name, ours, lr=1e-2, weight_decay=weight_decay), 300, 0)
    _train(theirs, torch_cls(theirs, lr=1e-2, weight_decay=weight_decay), 300, 0)
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(ours, _params(0), strict=True))  # it did train


@pytest.mark.e2e  # one process per ATen CPU capability
def test_flat_adam_in_every_cpu_capability() -> None:
    """ATen picks its vector width at run time; the flat update must equal torch's in each (scalar tails too)."""
    code = (
        f"import sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); import test_optim as t, torch; "
        "ours, theirs = t._params(3), t._params(3); "
        "t._train(ours, t.make_optimizer('adamw', ours, 1e-2, 0.01), 200, 3); "
        "t._train(theirs, torch.optim.AdamW(theirs, lr=1e-2, weight_decay=0.01), 200, 3); "
        "print(all(torch.equal(a, b) for a, b in zip(ours, theirs)))"
    )
    for capability in ("default", "avx2", "avx512"):
        env = {**os.environ, "ATEN_CPU_CAPABILITY": capability}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=300
        ).stdout.split()
        assert out == ["True"], (
            capability,
            out,
        )  # a machine without AVX-512 runs its best capability instead


def test_parameters_become_views_and_pruning_keeps_them() -> None:
    net = nn.Sequential(nn.Linear(5, 4), nn.Linear(4, 1))
    optimizer = make_optimizer("adam", net.parameters(), lr=1e-2, weight_decay=0.0)
    prune.custom_from_mask(net[0], "weight", torch.tensor([[1.0, 0, 1, 1, 0]] * 4))
    before = net[0].weight_orig.detach().clone()
    net(torch.ones(3, 5)).sum().backward()
    optimizer.step()
    assert not torch.equal(net[0].weight_orig, before)  # the pruned layer's weight_orig is still trained
    assert net[0].weight_orig.data_ptr() == optimizer._flat.data_ptr()


def test_state_dict_is_torch_adams_both_ways() -> None:
    ours, theirs = _params(1), _params(1)
    first = make_optimizer("adamw", ours, lr=1e-2, weight_decay=0.01)
    reference = torch.optim.AdamW(theirs, lr=1e-2, weight_decay=0.01)
    _train(ours, first, 40, 1)
    _train(theirs, reference, 40, 1)
    # torch's state loads into a fresh FlatAdam, and FlatAdam's into a fresh torch AdamW: both go on identically
    resumed_ours = [nn.Parameter(p.detach().clone()) for p in theirs]
    flat = FlatAdam(resumed_ours, lr=1e-2, weight_decay=0.01, decoupled_weight_decay=True)
    flat.load_state_dict(reference.state_dict())
    resumed_theirs = [nn.Parameter(p.detach().clone()) for p in ours]
    plain = torch.optim.AdamW(resumed_theirs, lr=1e-2, weight_decay=0.01)
    plain.load_state_dict(first.state_dict())
    for params, optimizer in ((resumed_ours, flat), (resumed_theirs, plain), (theirs, reference)):
        _train(params, optimizer, 20, 7)
    for a, b, c in zip(resumed_ours, resumed_theirs, theirs, strict=True):
        assert torch.equal(a, c) and torch.equal(b, c)


def test_a_missing_gradient_or_replaced_storage_is_an_error() -> None:
    params = _params(2)
    optimizer = make_optimizer("adam", params, lr=1e-2, weight_decay=0.0)
    params[0].grad = torch.zeros_like(params[0])
    with pytest.raises(RuntimeError, match="no gradient"):
        optimizer.step()
    params[0].data = params[0].data.clone()
    with pytest.raises(RuntimeError, match="storage was replaced"):
        optimizer.step()
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer("sgd", _params(2), lr=1e-2, weight_decay=0.0)
