"""The networks one :class:`~lenbench.nn.module.FullBatchModule` trains, with their rows: exact or stacked.

A *batch* owns the networks, their training (and validation) rows and how one epoch's losses are computed, one loss
per network. The module sums them for one backward pass; each network's gradient is that of its own loss.

- :class:`ExactBatch`: the networks side by side, each computed on its own rows op by op as if alone (bit-identical
  to training it alone);
- :class:`StackedBatch`: the networks stacked into batched layers (:mod:`lenbench.nn.stacked`), one batched
  product per layer for all of them (equal to the exact batch within float tolerance). When the networks train on
  rows of one data set (the folds of a job), the rows form one table and the first layer is a single matrix product
  for all networks, each network's loss a weighted mean over its own rows; otherwise each network's rows are padded.

On several processes (DDP) each rank keeps a contiguous share of every network's rows and weights its mean loss by
that share (:func:`lenbench.nn.ddp.shard`), so the averaged gradients are the full-batch ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from lenbench.nn.ddp import shard
from lenbench.nn.stacked import network_losses, pad_rows, shared_rows, stack_networks, unstack_into

Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def ordered_parameters(net: nn.Module) -> list[nn.Parameter]:
    """``net``'s parameters in layer order, weight before bias, also once pruned (``weight_orig`` is registered
    after ``bias``), so that an optimiser state saved from a pruned network maps onto the same parameters."""
    params: list[nn.Parameter] = []
    seen: set[int] = set()
    for module in net.modules():
        for name in ("weight", "bias"):
            p = module._parameters.get(f"{name}_orig", module._parameters.get(name))
            if p is not None and id(p) not in seen:
                seen.add(id(p))
                params.append(p)
    params.extend(p for p in net.parameters() if id(p) not in seen)
    return params


class NetworkBatch(nn.Module):
    """Networks and their rows; subclasses say how an epoch's losses are computed (one per network)."""

    def __init__(self, trainable: Sequence[nn.Module], count: int) -> None:
        super().__init__()
        self.trainable = nn.ModuleList(trainable)
        self.count = count
        self.train_rows: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.val_rows: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.scales: list[float] | None = None

    @property
    def has_data(self) -> bool:
        return bool(self.train_rows)

    @property
    def has_validation(self) -> bool:
        return bool(self.val_rows)

    def set_data(
        self,
        xs: list[torch.Tensor] | None,
        ys: list[torch.Tensor] | None,
        x_vals: list[torch.Tensor] | None = None,
        y_vals: list[torch.Tensor] | None = None,
    ) -> None:
        self.train_rows = _pairs("training", self.count, xs, ys)
        self.val_rows = _pairs("validation", self.count, x_vals, y_vals) if x_vals is not None else []

    def release_data(self) -> None:
        self.train_rows, self.val_rows = [], []

    def prepare(self, device: torch.device, world_size: int, rank: int) -> None:
        """Move the rows to ``device``; on several processes keep this rank's share of each network's rows."""
        rows, self.scales = [], None
        if world_size > 1:
            self.scales = []
            for x, y in self.train_rows:
                start, stop, scale = shard(x.shape[0], world_size, rank)
                rows.append((x[start:stop], y[start:stop]))
                self.scales.append(scale)
        self.train_rows = [(x.to(device), y.to(device)) for x, y in (rows or self.train_rows)]
        self.val_rows = [(x.to(device), y.to(device)) for x, y in self.val_rows]

    def float_inputs(self) -> list[torch.Tensor]:
        return [x for x, _ in self.train_rows if x.is_floating_point()]

    def ordered_parameters(self) -> list[nn.Parameter]:
        params = [p for net in self.trainable for p in ordered_parameters(net)]
        seen = {id(p) for p in params}
        return params + [p for p in self.parameters() if id(p) not in seen]

    def losses(self) -> torch.Tensor:
        """This epoch's training loss of every network: [count], each scaled by its rank's share on DDP."""
        raise NotImplementedError

    def validation_losses(self) -> torch.Tensor:
        """The loss of every network on its validation rows: [count]."""
        raise NotImplementedError

    def trained_networks(self) -> list[nn.Module]:
        raise NotImplementedError


class ExactBatch(NetworkBatch):
    """Networks computed one by one, each as if trained alone (see the module docstring)."""

    def __init__(self, nets: Sequence[nn.Module], criterion: Criterion) -> None:
        super().__init__(nets, len(nets))
        self.criterion = criterion

    def losses(self) -> torch.Tensor:
        losses = [
            self.criterion(net(x), y) for net, (x, y) in zip(self.trainable, self.train_rows, strict=True)
        ]
        if self.scales is not None:
            losses = [loss * scale for loss, scale in zip(losses, self.scales, strict=True)]
        return torch.stack(losses)

    def validation_losses(self) -> torch.Tensor:
        pairs = zip(self.trainable, self.val_rows, strict=True)
        return torch.stack([self.criterion(net(x), y) for net, (x, y) in pairs])

    def trained_networks(self) -> list[nn.Module]:
        return list(self.trainable)


class StackedBatch(NetworkBatch):
    """Networks stacked into batched layers over padded rows (``fast``; see the module docstring).

    ``row_loss(output [N, R, C], target [N, R]) -> [N, R]`` is the per-row loss whose row mean is the criterion.
    After training, :meth:`trained_networks` copies each network's slice (and pruning mask) back into ``nets``.
    """

    def __init__(
        self,
        nets: Sequence[nn.Module],
        row_loss: Callable[..., torch.Tensor],
        positions: Sequence[Sequence[int]] | None = None,
    ) -> None:
        super().__init__([stack_networks(nets)], len(nets))
        self.row_loss = row_loss
        # Each network's rows' positions in the data set: one shared table if they agree.
        self.positions = positions
        self.shared = False  # whether the last prepare() built one shared table
        self._nets = list(nets)  # a plain list: not parameters of this module
        self._padded: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._padded_val: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def prepare(self, device: torch.device, world_size: int, rank: int) -> None:
        super().prepare(device, world_size, rank)
        xs, ys = [x for x, _ in self.train_rows], [y for _, y in self.train_rows]
        table = shared_rows(xs, ys, self.positions) if self.positions and world_size == 1 else None
        self.shared = table is not None
        self._padded = table if table is not None else pad_rows(xs, ys)
        if self.scales is not None:
            x, y, weights = self._padded
            scales = torch.tensor(self.scales, dtype=weights.dtype, device=device).unsqueeze(1)
            self._padded = (x, y, weights * scales)
        if self.val_rows:
            self._padded_val = pad_rows([x for x, _ in self.val_rows], [y for _, y in self.val_rows])

    def _losses_on(self, padded: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        assert padded is not None
        x, y, weights = padded
        return network_losses(self.row_loss, self.trainable[0](x), y, weights)

    def losses(self) -> torch.Tensor:
        return self._losses_on(self._padded)

    def validation_losses(self) -> torch.Tensor:
        return self._losses_on(self._padded_val)

    def release_data(self) -> None:
        super().release_data()
        self._padded = self._padded_val = None

    def float_inputs(self) -> list[torch.Tensor]:
        return [] if self._padded is None else [self._padded[0]]

    def trained_networks(self) -> list[nn.Module]:
        unstack_into(self.trainable[0], self._nets)
        return list(self._nets)


def _pairs(
    what: str, count: int, xs: list[Any] | None, ys: list[Any] | None
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if xs is None or ys is None or len(xs) != count or len(ys) != count:
        raise ValueError(f"give {what} rows and targets for each of the {count} networks")
    return list(zip(xs, ys, strict=True))
