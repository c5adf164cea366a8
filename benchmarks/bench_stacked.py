"""Ten small networks trained one after another against the same ten stacked into one (:mod:`lenbench.nn.stacked`).

A MIMIC-sized random problem (1600 rows x 90 binary concepts, a random target); each network trains full-batch
on its own ~90% of the rows, as the folds of a cross-validation job do. Per network architecture:

- (a) ``separate``: each network with a plain loop (its own Adam/AdamW), one after another;
- (b) ``stacked``: one stacked network, one optimiser over the stacked parameters, the padded rows of all ten.

Both loops do what the protocol does each epoch: zero_grad, loss, backward, the L1 gradient, step, and for ``psi``
fan-in pruning (2) once halfway. One torch thread. Prints ms per epoch per network, the speed-up, and the largest
weight difference between the two results (float tolerance, not bitwise: see the module's docstring).

    .venv/bin/python benchmarks/bench_stacked.py
    .venv/bin/python benchmarks/bench_stacked.py --epochs 300 --nets 5
"""

from __future__ import annotations

import argparse
import copy
import logging
import time
import warnings

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune

from lenbench.callbacks.l1 import L1Regularization
from lenbench.explainers.psi_net import PsiNetExplainer
from lenbench.explainers.relu_net import ReluNetExplainer
from lenbench.nn.stacked import pad_rows, stack_networks, stacked_loss, unstack_into
from lenbench.nn.weights import effective_weight, linear_layers

ROWS, CONCEPTS, SHARE = 1600, 90, 0.9


def fan_in_mask(weight: torch.Tensor, fan_in: int) -> torch.Tensor:
    """Keep the ``fan_in`` largest |w| of every row (topk over the last dim; [out, in] and [N, out, in] alike)."""
    keep = torch.topk(weight.detach().abs(), k=fan_in, dim=-1).indices
    return torch.zeros_like(weight).scatter_(-1, keep, 1.0)


def make_optimizer(name: str, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    return cls(params, lr=lr, weight_decay=weight_decay)


def train(net: nn.Module, batch, loss_fn, explainer, epochs: int, l1: L1Regularization, prune_at: int | None):
    optimizer = make_optimizer(
        explainer.training.optimizer,
        net.parameters(),
        explainer.training.lr,
        explainer.training.weight_decay,
    )
    for epoch in range(epochs):
        optimizer.zero_grad()
        loss = loss_fn(net, batch)
        loss.backward()
        l1.apply_gradient(net)
        optimizer.step()
        if prune_at is not None and epoch == prune_at:
            for layer in linear_layers(net):
                with torch.no_grad():
                    mask = fan_in_mask(effective_weight(layer), 2)
                prune.custom_from_mask(layer, "weight", mask)


def bench(label: str, explainer, l1: L1Regularization, n_nets: int, epochs: int, with_pruning: bool) -> None:
    rng = np.random.default_rng(0)
    x = torch.from_numpy((rng.random((ROWS, CONCEPTS)) > 0.5).astype(np.float32))
    y = explainer.targets((rng.random(ROWS) > 0.7).astype(np.int64))
    subsets = [torch.from_numpy(np.sort(rng.permutation(ROWS)[: int(SHARE * ROWS)])) for _ in range(n_nets)]
    xs, ys = [x[s] for s in subsets], [y[s] for s in subsets]
    if isinstance(explainer, ReluNetExplainer):
        explainer._n_classes = 2
    torch.manual_seed(0)
    nets = [explainer.build_network(CONCEPTS) for _ in range(n_nets)]
    prune_at = epochs // 2 if with_pruning else None
    criterion, row_loss = explainer.criterion(), explainer.row_loss()

    separate = [copy.deepcopy(net) for net in nets]
    start = time.perf_counter()
    for net, xi, yi in zip(separate, xs, ys, strict=True):
        train(net, (xi, yi), lambda n, b: criterion(n(b[0]), b[1]), explainer, epochs, l1, prune_at)
    t_separate = time.perf_counter() - start

    start = time.perf_counter()
    stacked = stack_networks(nets)
    batch = pad_rows(xs, ys)
    train(
        stacked,
        batch,
        lambda n, b: stacked_loss(row_loss, n(b[0]), b[1], b[2]),
        explainer,
        epochs,
        l1,
        prune_at,
    )
    together = [copy.deepcopy(net) for net in nets]
    unstack_into(stacked, together)
    t_stacked = time.perf_counter() - start

    diff = max(
        float((effective_weight(a) - effective_weight(b)).abs().max())
        for s, t in zip(separate, together, strict=True)
        for a, b in zip(linear_layers(s), linear_layers(t), strict=True)
    )
    per = 1e3 / (epochs * n_nets)
    print(
        f"{label:<22} separate {t_separate * per:7.3f} ms/epoch/net   stacked {t_stacked * per:7.3f} ms/epoch/net   "
        f"speed-up x{t_separate / t_stacked:5.2f}   max |weight difference| {diff:.2g}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--nets", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    print(
        f"{args.nets} networks, {ROWS} rows x {CONCEPTS} concepts, {int(SHARE * ROWS)} rows each, "
        f"{args.epochs} epochs, torch {torch.__version__}, {torch.get_num_threads()} thread"
    )
    bench(
        "psi (k-10-4-1)",
        PsiNetExplainer(seed=0),
        L1Regularization(1e-5, layers="all"),
        args.nets,
        args.epochs,
        with_pruning=True,
    )
    bench(
        "pruning (k-100-10-2)",
        ReluNetExplainer(seed=0),
        L1Regularization(1e-3, layers="first", include_bias=True),
        args.nets,
        args.epochs,
        with_pruning=False,
    )


if __name__ == "__main__":
    main()
