"""Many small networks of one shape trained as one: the building block of the ``fast`` batched mode (issue 15).

Why: the psi network (k-10-4-1) is so small that training it is overhead-bound: a full-batch epoch is a handful of
tiny matrix products, and the Python, autograd and optimiser dispatch around them costs more than the arithmetic.
The ten folds of a cross-validation job run the same network on different rows, so stacking them turns ten sets of
tiny operations into one set of batched ones (``torch.baddbmm`` over a leading network dimension).

What it does: :func:`stack_networks` turns N ``nn.Sequential`` networks of one structure into one
(:class:`StackedNetworks`) whose Linear layers are :class:`BatchedLinear` (weights ``[N, out, in]``, copied from the
networks in order). It maps ``[N, rows, features]`` to ``[N, rows, outputs]`` but computes feature-major, on
``[N, features, rows]``: each layer is ``weight [out, in] x activations [in, rows]`` per network, whose result is
the next layer's input as is (no transposed copies, and products with a long last dimension run faster than
``rows x 10`` ones: 20-35% off an epoch of the psi and pruning networks on a 2-core Xeon). Each network keeps its
own training rows: :func:`pad_rows` pads them to a common count and gives row weights ``1 / n_i`` on network i's real rows and 0 on padding, so
:func:`stacked_loss` (the weighted sum of per-row losses) is the sum of the networks' own mean losses. Its gradient
with respect to slice i is the gradient of network i's own loss, padding contributes exactly nothing, and an
elementwise optimiser (Adam, AdamW) over the stacked parameters updates each slice as it would update that network
alone. Pruning works through :mod:`torch.nn.utils.prune` on the stacked weight (mask ``[N, out, in]``), and
:func:`unstack_into` copies the result back into the original networks (pruned ones as ``weight_orig`` and
``weight_mask``).

What it does not guarantee: bit-identical results to training each network alone. The maths is the same, but the
floating-point summation order is not (batched matrix kernels, a weighted sum instead of a mean), so stacked
training agrees with separate (``exact``) training within float tolerance only, and decisions taken on near-ties
(a fan-in mask choosing between two almost equal weights, the sign of an L1 gradient at a weight near 0) can go
the other way for a few neurons. Use the ``exact`` mode when bitwise reproduction of a single-network run matters.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn.utils import prune

RowLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# Layers that act on the last dimension only (elementwise or, for Softmax, along the features), so they batch as is.
_ELEMENTWISE = (nn.Sigmoid, nn.ReLU, nn.LeakyReLU, nn.Identity)
_PRUNABLE = ("weight", "bias")


class BatchedLinear(nn.Linear):
    """``n_networks`` independent linear maps, feature-major: ``x [N, in, R] -> [N, out, R]``,
    ``y[i] = weight[i] @ x[i] + bias[i]`` (the layout :class:`StackedNetworks` computes in).

    ``weight`` is ``[N, out, in]`` and ``bias`` ``[N, out]`` (or None). A subclass of ``nn.Linear`` so that code
    looking for a network's Linear layers (:func:`lenbench.nn.weights.linear_layers`, the pruning callbacks)
    finds it; ``in_features``/``out_features`` are those of one network. Pruning with
    ``prune.custom_from_mask(layer, "weight", mask)`` (mask ``[N, out, in]``) works as for ``nn.Linear``.
    """

    def __init__(
        self,
        n_networks: int,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        # nn.Linear.__init__ would allocate a [out, in] weight; build the batched parameters instead.
        nn.Module.__init__(self)
        if n_networks < 1:
            raise ValueError(f"BatchedLinear n_networks={n_networks}: need at least one network")
        factory = {"device": device, "dtype": dtype}
        self.n_networks = int(n_networks)
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.weight = nn.Parameter(
            torch.empty(self.n_networks, self.out_features, self.in_features, **factory)
        )
        if bias:
            self.bias = nn.Parameter(torch.empty(self.n_networks, self.out_features, **factory))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Each slice drawn as ``nn.Linear`` draws its parameters: U(-1/sqrt(in), 1/sqrt(in)).

        (``nn.init.kaiming_uniform_`` would read the fan-in of a 3-d tensor wrongly.) Stacked networks overwrite
        these with the networks' own parameters; this only keeps a directly built layer sensible.
        """
        bound = 1.0 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
        with torch.no_grad():
            self.weight.uniform_(-bound, bound)
            if self.bias is not None:
                self.bias.uniform_(-bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [in, R]`` (one table for every network) or ``[N, in, R]`` -> ``[N, out, R]``.

        Why: with the rows last, every product is ``weight [out, in] x activations [in, R]``, whose result is already
        in the layout the next layer reads; the row-major layout needs a transposed copy of the first layer's output
        in the forward and the backward pass, and batched products over ``R x 10`` slices run slower than over
        ``10 x R`` ones (about 30% of an epoch of the psi net, measured).
        """
        n, out = self.n_networks, self.out_features
        if x.dim() == 2 and x.shape[0] == self.in_features:
            weight = self.weight.reshape(n * out, self.in_features)
            if self.bias is None:
                return (weight @ x).reshape(n, out, x.shape[1])
            return torch.addmm(self.bias.reshape(n * out, 1), weight, x).reshape(n, out, x.shape[1])
        if x.dim() != 3 or x.shape[0] != n or x.shape[1] != self.in_features:
            raise ValueError(
                f"BatchedLinear expects input [{n}, {self.in_features}, rows] or "
                f"[{self.in_features}, rows] (one table for all networks), got {list(x.shape)}"
            )
        if self.bias is None:
            return torch.bmm(self.weight, x)
        return torch.baddbmm(self.bias.unsqueeze(-1), self.weight, x)

    def extra_repr(self) -> str:
        return (
            f"n_networks={self.n_networks}, in_features={self.in_features}, "
            f"out_features={self.out_features}, bias={self.bias is not None}"
        )


class StackedNetworks(nn.Sequential):
    """The stacked layers of :func:`stack_networks`: ``x [N, R, in]`` (or one table ``[R, in]`` for every network)
    -> ``[N, R, out]``, computed feature-major (``[N, features, R]``, see :meth:`BatchedLinear.forward`)
    and returned as a transposed view."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.t() if x.dim() == 2 else x.transpose(1, 2)
        for layer in self:
            h = layer(h)
        return h.transpose(1, 2)


def _batched_layer(layer: nn.Module, position: int) -> nn.Module | None:
    """The stacked counterpart of a non-Linear layer (None for a Linear), or ValueError naming what cannot batch."""
    if isinstance(layer, BatchedLinear):
        raise ValueError(f"stack_networks: layer {position} is already a BatchedLinear")
    if type(layer) is nn.Linear:
        return None
    if isinstance(layer, nn.LeakyReLU):
        return nn.LeakyReLU(layer.negative_slope)
    if type(layer) in _ELEMENTWISE:
        return type(layer)()
    if type(layer) is nn.Softmax:
        if layer.dim not in (1, -1):
            raise ValueError(
                f"stack_networks: layer {position} is Softmax(dim={layer.dim}); only a softmax over the features "
                "of [rows, features] outputs (dim=1) can be batched"
            )
        return nn.Softmax(dim=1)  # the features of feature-major activations [N, features, rows]
    raise ValueError(
        f"stack_networks: cannot batch layer {position} of type {type(layer).__name__}; supported: Linear, "
        "Sigmoid, ReLU, LeakyReLU, Softmax(dim=1), Identity"
    )


def _describe(layer: nn.Module) -> tuple:
    if isinstance(layer, nn.Linear):
        return ("Linear", layer.in_features, layer.out_features, layer.bias is not None)
    if isinstance(layer, nn.LeakyReLU):
        return ("LeakyReLU", layer.negative_slope)
    if isinstance(layer, nn.Softmax):
        return ("Softmax", layer.dim)
    return (type(layer).__name__,)


def stack_networks(nets: Sequence[nn.Sequential]) -> StackedNetworks:
    """One ``nn.Sequential`` computing all of ``nets`` at once on inputs ``[N, rows, features]``.

    Every Linear becomes a (feature-major) :class:`BatchedLinear` whose slice i is a clone of ``nets[i]``'s
    parameters; activations are re-created (Softmax over the features becomes a softmax over dim 1 of the
    feature-major activations). The networks must share one structure and be unpruned; ValueError otherwise, naming
    the first layer that cannot be batched.
    """
    nets = list(nets)
    if not nets:
        raise ValueError("stack_networks: no networks to stack")
    for i, net in enumerate(nets):
        if not isinstance(net, nn.Sequential):
            raise ValueError(f"stack_networks: network {i} is a {type(net).__name__}, not an nn.Sequential")
        if prune.is_pruned(net):
            raise ValueError(
                f"stack_networks: network {i} is pruned; stack networks before pruning and prune the stacked one"
            )
    first = nets[0]
    shape = [_describe(layer) for layer in first]
    for i, net in enumerate(nets[1:], start=1):
        other = [_describe(layer) for layer in net]
        if other != shape:
            raise ValueError(f"stack_networks: network {i} has layers {other}, network 0 has {shape}")
    layers: list[nn.Module] = []
    for position, layer in enumerate(first):
        batched = _batched_layer(layer, position)
        if batched is not None:
            layers.append(batched)
            continue
        stacked = BatchedLinear(
            len(nets),
            layer.in_features,
            layer.out_features,
            bias=layer.bias is not None,
            device=layer.weight.device,
            dtype=layer.weight.dtype,
        )
        for name in _PRUNABLE:  # weight and bias: the networks' values, trainable as theirs are
            param = getattr(stacked, name)
            if param is not None:
                with torch.no_grad():
                    param.copy_(torch.stack([getattr(net[position], name).detach() for net in nets]))
                param.requires_grad_(getattr(layer, name).requires_grad)
        layers.append(stacked)
    return StackedNetworks(*layers)


def _copy_slice(source: BatchedLinear, index: int, target: nn.Linear, name: str) -> None:
    """Copy slice ``index`` of ``source.<name>`` (and its pruning mask, if any) into ``target``, bit for bit."""
    mask = getattr(source, f"{name}_mask", None)
    if mask is None:
        if hasattr(target, f"{name}_mask"):
            raise ValueError(
                f"unstack_into: the network's Linear layer has a pruned {name} but the stacked layer does not"
            )
        value = getattr(source, name)
        if value is None:
            return
        with torch.no_grad():
            getattr(target, name).copy_(value[index])
        return
    if not hasattr(target, f"{name}_mask"):
        prune.custom_from_mask(target, name=name, mask=mask[index].detach().clone())
    with torch.no_grad():
        getattr(target, f"{name}_mask").copy_(mask[index])
        getattr(target, f"{name}_orig").copy_(getattr(source, f"{name}_orig")[index])
    # What prune's forward pre-hook would set: the attribute is fresh before the next forward too.
    setattr(target, name, getattr(target, f"{name}_orig") * getattr(target, f"{name}_mask"))


def unstack_into(stacked: nn.Sequential, nets: Sequence[nn.Sequential]) -> None:
    """Copy slice i of every :class:`BatchedLinear` of ``stacked`` into ``nets[i]``'s Linear layer, in place.

    The copies are exact. A pruned stacked layer prunes the network's layer with its mask slice
    (``prune.custom_from_mask``, or the existing mask overwritten when the layer is pruned already) and sets
    ``weight_orig`` to the slice, so ``weight_orig * weight_mask`` equals the stacked slice's product bit for bit.
    """
    nets = list(nets)
    batched = [
        (position, layer) for position, layer in enumerate(stacked) if isinstance(layer, BatchedLinear)
    ]
    if not batched:
        raise ValueError("unstack_into: the stacked network has no BatchedLinear layer")
    n = batched[0][1].n_networks
    if len(nets) != n:
        raise ValueError(f"unstack_into: the stacked network holds {n} networks, got {len(nets)}")
    for i, net in enumerate(nets):
        if len(net) != len(stacked):
            raise ValueError(
                f"unstack_into: network {i} has {len(net)} layers, the stacked one {len(stacked)}"
            )
        for position, layer in batched:
            target = net[position]
            if not isinstance(target, nn.Linear) or isinstance(target, BatchedLinear):
                raise ValueError(
                    f"unstack_into: layer {position} of network {i} is a {type(target).__name__}, not a Linear"
                )
            if _describe(target) != _describe(layer):  # a BatchedLinear is described as one network's Linear
                raise ValueError(
                    f"unstack_into: layer {position} of network {i} does not match the stacked layer"
                )
            for name in _PRUNABLE:
                _copy_slice(layer, i, target, name)


def pad_rows(
    xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each network's training rows padded to one count: ``X [N, Rmax, k]``, ``Y [N, Rmax]``, ``W [N, Rmax]``.

    Padding is 0 in ``X`` and ``Y`` (a valid target for BCE and cross-entropy alike); ``W`` is ``1 / n_i`` on
    network i's ``n_i`` real rows and 0 on padding, so ``(row_loss * W).sum()`` is the sum of the networks' own mean
    losses. ``X`` has the dtype of ``xs``, ``Y`` that of ``ys``, ``W`` that of ``X`` when it is floating (else float32).
    """
    xs, ys = list(xs), list(ys)
    if not xs:
        raise ValueError("pad_rows: no networks")
    if len(xs) != len(ys):
        raise ValueError(f"pad_rows: {len(xs)} inputs but {len(ys)} targets")
    k = xs[0].shape[-1]
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        if x.dim() != 2 or x.shape[1] != k:
            raise ValueError(f"pad_rows: inputs {i} have shape {list(x.shape)}, expected [rows, {k}]")
        if y.dim() != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(f"pad_rows: targets {i} have shape {list(y.shape)}, expected [{x.shape[0]}]")
        if x.shape[0] == 0:
            raise ValueError(f"pad_rows: network {i} has no rows (its mean loss is undefined)")
    rows = max(x.shape[0] for x in xs)
    n = len(xs)
    x0, y0 = xs[0], ys[0]
    w_dtype = x0.dtype if x0.is_floating_point() else torch.float32
    big_x = torch.zeros(n, rows, k, dtype=x0.dtype, device=x0.device)
    big_y = torch.zeros(n, rows, dtype=y0.dtype, device=y0.device)
    big_w = torch.zeros(n, rows, dtype=w_dtype, device=x0.device)
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        m = x.shape[0]
        big_x[i, :m] = x
        big_y[i, :m] = y
        big_w[i, :m] = 1.0 / m
    return big_x, big_y, big_w


def shared_rows(
    xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor], positions: Sequence[Sequence[int]]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """The networks' rows as one table when they are rows of one data set: ``X [U, k]`` (every row any network
    trains on, once), ``Y [N, U]``, ``W [N, U]`` (``1 / n_i`` on network i's rows, 0 elsewhere); ``positions[i]``
    are network i's rows' positions in the data set. None when two networks disagree on a row's values (their
    concepts were fitted per fold) or a network repeats a row: then :func:`pad_rows` serves."""
    union = sorted({int(p) for rows in positions for p in rows})
    where = {p: i for i, p in enumerate(union)}
    x0, y0 = xs[0], ys[0]
    table = torch.zeros(len(union), x0.shape[1], dtype=x0.dtype, device=x0.device)
    big_y = torch.zeros(len(xs), len(union), dtype=y0.dtype, device=y0.device)
    big_w = torch.zeros(len(xs), len(union), dtype=x0.dtype if x0.is_floating_point() else torch.float32)
    filled = torch.zeros(len(union), dtype=torch.bool)
    for i, (x, y, rows) in enumerate(zip(xs, ys, positions, strict=True)):
        index = torch.tensor([where[int(p)] for p in rows], dtype=torch.long)
        if index.numel() != x.shape[0] or index.unique().numel() != index.numel() or index.numel() == 0:
            return None
        seen = filled[index]
        if bool(seen.any()) and not torch.equal(table[index[seen]], x[seen]):
            return None
        table[index], filled[index] = x, True
        big_y[i, index] = y
        big_w[i, index] = 1.0 / index.numel()
    return table, big_y, big_w.to(x0.device)


def network_losses(row_loss: RowLoss, output: torch.Tensor, Y: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """Each network's mean loss over its own rows, ``[N]`` (for loss curves and divergence checks)."""
    return (row_loss(output, Y) * W).sum(dim=1)


def stacked_loss(row_loss: RowLoss, output: torch.Tensor, Y: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """The scalar to back-propagate: the sum over networks of each network's mean loss.

    Its gradient with respect to network i's parameters is the gradient of network i's own mean loss.
    """
    return (row_loss(output, Y) * W).sum()
