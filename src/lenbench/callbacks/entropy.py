"""The entropy LEN's regulariser as a Lightning callback: the gradient of ``strength * entropy(attention)``.

The entropy of each :class:`~lenbench.nn.layers.EntropyLinear` layer's concept attention pushes it towards few
concepts. Like :class:`~lenbench.callbacks.l1.L1Regularization`, the penalty's gradient is added after backward
(the same update as adding the penalty to the loss, since gradients add), so the regulariser stays out of the
network code and is listed, with its weight, in ``conf/method/entropy.yaml``.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn

from lenbench.callbacks.base import training_networks
from lenbench.nn.layers import entropy_layers
from lenbench.validation import is_number, refuse


class EntropyPenalty(pl.Callback):
    """Adds the gradient of ``strength * entropy(attention)`` of every EntropyLinear layer after backward."""

    def __init__(self, strength: float) -> None:
        if not is_number(strength) or not strength >= 0:
            refuse("EntropyPenalty", "strength", strength, "a number >= 0 (0 turns it off)")
        self.strength = float(strength)

    def __repr__(self) -> str:
        return f"EntropyPenalty(strength={self.strength})"

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if not all(entropy_layers(net) for net in training_networks(pl_module)):
            raise ValueError(f"EntropyPenalty: {type(pl_module).__name__} has no EntropyLinear layer")

    def apply_gradient(self, module: nn.Module) -> None:
        """Add the penalty's gradient to the ``.grad`` of every EntropyLinear weight (creating it if missing)."""
        if self.strength == 0.0:
            return
        for layer in entropy_layers(module):
            with torch.enable_grad():
                (grad,) = torch.autograd.grad(self.strength * layer.entropy(), layer.weight)
            if layer.weight.grad is None:
                layer.weight.grad = grad
            else:
                layer.weight.grad.add_(grad)

    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for net in training_networks(pl_module):
            self.apply_gradient(net)

    @torch.no_grad()
    def penalty(self, module: nn.Module) -> float:
        """The value ``strength * sum of the attention entropies`` (a :class:`~lenbench.callbacks.base.Regulariser`)."""
        return self.strength * sum(float(layer.entropy()) for layer in entropy_layers(module))
