"""Pruning schedules as Lightning callbacks.

Both schedules act *after the optimiser step* of a given epoch, as the reference does, in Lightning's standard
``on_train_epoch_end`` keyed on ``trainer.current_epoch`` (one Lightning epoch is one protocol epoch, see
:mod:`lenbench.nn.module`), on every network the module trains (:func:`~lenbench.callbacks.base.training_networks`).
Each reports its history per network (``report(network)``, merged into that fold's info) and hands it over between
processes through ``state_dict``.

The mask functions take a weight ``[out, in]`` or a stack of them ``[N, out, in]`` (the batched layers of
``trainer.batching=fast``, :mod:`lenbench.nn.stacked`): columns are dim -1, rows dim -2, and every norm or maximum is
taken per network. Masks use :mod:`torch.nn.utils.prune` (``weight_orig`` is the Parameter, ``weight_mask`` a
buffer, ``weight`` their product recomputed before each forward), so a pruned entry stays exactly 0 whatever the
optimiser does to ``weight_orig`` (Adam momentum, AdamW weight decay). A state dict of a pruned network holds
``weight_orig`` and ``weight_mask`` instead of ``weight``; :func:`lenbench.nn.weights.load_pruned_state_dict`
re-creates that reparametrisation before loading.
"""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn.utils import prune

from lenbench.callbacks.base import training_networks
from lenbench.nn.weights import effective_weight, linear_layers
from lenbench.validation import check_int, is_number, refuse

logger = logging.getLogger(__name__)


# -- feature pruning (method `pruning`) --------------------------------------------------------------------------


def feature_mask(weight: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Mask like ``weight`` ([out, in] or [N, out, in]) keeping the input columns whose L2 norm divided by the
    network's largest column norm is >= threshold."""
    norms = torch.linalg.vector_norm(weight.detach(), dim=-2)
    ratio = norms / norms.amax(dim=-1, keepdim=True)
    mask = torch.ones_like(weight)
    mask.masked_fill_((ratio < threshold).unsqueeze(-2).expand_as(mask), 0)
    return mask


def inputs_kept(layer: nn.Module) -> list[int]:
    """The input columns of ``layer`` with a non-zero effective weight: one count, or one per stacked network."""
    used = (effective_weight(layer).detach() != 0).any(dim=-2).sum(dim=-1)
    return [int(v) for v in used.reshape(-1)]


def prune_features(layer: nn.Linear, threshold: float = 0.5) -> list[int]:
    """Mask every input column of ``layer`` whose relative L2 norm is below ``threshold``; returns the columns kept
    (one count, or one per stacked network).

    Like the reference, the norms are those of ``layer.weight``: for a layer pruned before, that is the product
    computed by the last forward pass (before this epoch's optimiser step). Masks accumulate over calls.
    """
    with torch.no_grad():
        mask = feature_mask(layer.weight, threshold)
    prune.custom_from_mask(layer, name="weight", mask=mask)
    return inputs_kept(layer)


class FeaturePruning(pl.Callback):
    """Prunes the input features of one Linear layer after epoch ``e`` when ``e > start_epoch and e % period == offset``.

    The defaults are the reference's (``epoch > 2001 and epoch % 1000 == 1``): with 5001 epochs it fires after
    epochs 3001 and 4001, not 2001. ``layer`` indexes the network's Linear layers (0 = the first, whose columns are
    the input concepts). ``history`` lists ``(epoch, [features kept by each network])`` of every pruning of the
    current fit.
    """

    def __init__(
        self,
        start_epoch: int = 2001,
        period: int = 1000,
        threshold: float = 0.5,
        layer: int = 0,
        offset: int = 1,
    ) -> None:
        self.start_epoch = check_int("FeaturePruning", "start_epoch", start_epoch, -1)
        self.period = check_int("FeaturePruning", "period", period, 1)
        self.offset = check_int("FeaturePruning", "offset", offset, 0)
        if self.offset >= self.period:
            refuse("FeaturePruning", "offset", offset, f"smaller than period={period!r}")
        if not is_number(threshold) or not 0.0 < threshold <= 1.0:
            refuse(
                "FeaturePruning", "threshold", threshold, "in (0, 1] (a fraction of the largest column norm)"
            )
        self.threshold = float(threshold)
        self.layer = check_int("FeaturePruning", "layer", layer, 0)
        self.history: list[tuple[int, list[int]]] = []

    def __repr__(self) -> str:
        return (
            f"FeaturePruning(start_epoch={self.start_epoch}, period={self.period}, threshold={self.threshold}, "
            f"layer={self.layer}, offset={self.offset})"
        )

    def fires_at(self, epoch: int) -> bool:
        """Whether the schedule prunes after the optimiser step of ``epoch``."""
        return epoch > self.start_epoch and epoch % self.period == self.offset

    def target(self, module: nn.Module) -> nn.Linear:
        linears = linear_layers(module)
        if self.layer >= len(linears):
            raise ValueError(
                f"FeaturePruning layer={self.layer}: the network has {len(linears)} Linear layers"
            )
        return linears[self.layer]

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        for net in training_networks(pl_module):
            self.target(net)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.history = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = int(trainer.current_epoch)
        if not self.fires_at(epoch) or any(e == epoch for e, _ in self.history):
            return
        kept = [
            k
            for net in training_networks(pl_module)
            for k in prune_features(self.target(net), self.threshold)
        ]
        self.history.append((epoch, kept))
        logger.debug("epoch %d: feature pruning keeps %s input features", epoch, kept)

    def report(self, network: int = 0) -> dict[str, Any]:
        return {"feature_pruning": [[e, kept[network]] for e, kept in self.history]}

    def state_dict(self) -> dict[str, Any]:
        return {"history": [[e, list(kept)] for e, kept in self.history]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [(int(e), list(kept)) for e, kept in state_dict.get("history", [])]


# -- equal fan-in pruning (method `psi`) -------------------------------------------------------------------------


def fan_in_mask(weight: torch.Tensor, fan_in: int) -> torch.Tensor:
    """Mask like ``weight`` ([out, in] or [N, out, in]) keeping the ``fan_in`` largest |w| of each row (the
    reference's ``topk`` of the smallest)."""
    n_in = weight.shape[-1]
    mask = torch.ones_like(weight)
    if fan_in < n_in:
        smallest = torch.topk(-weight.detach().abs(), k=n_in - fan_in, dim=-1).indices
        mask.scatter_(-1, smallest, 0.0)
    return mask


def check_fan_in(module: nn.Module, fan_in: int) -> None:
    """Raise ValueError when some Linear layer has fewer than ``fan_in`` inputs."""
    for i, layer in enumerate(linear_layers(module)):
        if fan_in > layer.in_features:
            raise ValueError(
                f"FanInPruning fan_in={fan_in}: Linear layer {i} has only {layer.in_features} inputs; "
                f"fan_in must be at most the smallest layer width ({min(m.in_features for m in linear_layers(module))})"
            )


def prune_fan_in(module: nn.Module, fan_in: int, validate: bool = True) -> None:
    """Keep the ``fan_in`` largest |w| of every row of every Linear layer of ``module``; mask the rest."""
    check_fan_in(module, fan_in)
    for layer in linear_layers(module):
        with torch.no_grad():
            mask = fan_in_mask(layer.weight, fan_in)
        prune.custom_from_mask(layer, name="weight", mask=mask)
    if validate:
        validate_fan_in(module, fan_in)


def validate_fan_in(module: nn.Module, fan_in: int) -> None:
    """Check every row of every Linear layer keeps exactly ``fan_in`` inputs (mask) and no masked weight is non-zero."""
    for i, layer in enumerate(linear_layers(module)):
        mask = getattr(layer, "weight_mask", None)
        if mask is None:
            raise RuntimeError(f"Linear layer {i} is not pruned")
        per_row = mask.sum(dim=-1)
        if not bool((per_row == fan_in).all()):
            raise RuntimeError(
                f"Linear layer {i} keeps {per_row.tolist()} inputs per neuron, expected {fan_in}"
            )
        nonzero = (effective_weight(layer).detach() != 0).sum(dim=-1)
        if bool((nonzero > fan_in).any()):
            raise RuntimeError(
                f"Linear layer {i} has {nonzero.tolist()} non-zero weights per neuron, expected {fan_in}"
            )


class FanInPruning(pl.Callback):
    """Once, after the optimiser step of the first epoch > ``epoch``, prunes every Linear layer to fan-in ``fan_in``.

    The reference (``epoch > 2001 and need_pruning``) prunes after epoch 2002. Each row keeps its ``fan_in``
    largest |w|; the result is validated (exactly ``fan_in`` kept inputs per neuron).
    """

    def __init__(self, fan_in: int = 2, epoch: int = 2001, validate: bool = True) -> None:
        self.fan_in = check_int("FanInPruning", "fan_in", fan_in, 1)
        self.epoch = check_int("FanInPruning", "epoch", epoch, -1)
        self.validate = bool(validate)
        self.pruned_at: int | None = None

    def __repr__(self) -> str:
        return f"FanInPruning(fan_in={self.fan_in}, epoch={self.epoch})"

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        for net in training_networks(pl_module):
            check_fan_in(net, self.fan_in)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.pruned_at = None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = int(trainer.current_epoch)
        if self.pruned_at is not None or epoch <= self.epoch:
            return
        for net in training_networks(pl_module):
            prune_fan_in(net, self.fan_in, validate=self.validate)
        self.pruned_at = epoch
        logger.debug("epoch %d: pruned every Linear layer to fan-in %d", epoch, self.fan_in)

    def report(self, network: int = 0) -> dict[str, Any]:
        return {"fan_in_pruned_at": self.pruned_at}

    def state_dict(self) -> dict[str, Any]:
        return {"pruned_at": self.pruned_at}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.pruned_at = state_dict.get("pruned_at")
