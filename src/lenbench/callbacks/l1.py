"""L1 regularisation as a Lightning callback: the gradient of ``strength * ||p||_1`` added after backward.

The reference adds ``l1 * torch.norm(w, 1)`` to the loss. Its gradient is ``l1 * sign(w)`` (``sign(0) = 0``, as the
backward of ``abs`` gives), so adding that term to the gradients after backward gives the same update without
building the penalty into the graph, and keeps the regulariser out of the network code (it is listed in the method
config). For a pruned layer the penalty is on the effective weight ``weight_orig * weight_mask``: its gradient with
respect to ``weight_orig`` is ``sign(weight_orig * mask) * mask``, which is ``sign`` of the effective weight since
masked entries are 0.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytorch_lightning as pl
import torch
from torch import nn

from lenbench.callbacks.base import training_networks
from lenbench.nn.weights import effective_weight, linear_layers, trainable_parameter
from lenbench.validation import is_number, refuse

logger = logging.getLogger(__name__)

_LAYER_WORDS = ("first", "all")


class L1Regularization(pl.Callback):
    """Adds ``strength * sign(p)`` to the gradient of the weights (and biases) of the chosen Linear layers.

    ``layers``: ``"first"`` (the reference's ``pruning``/``weights`` networks), ``"all"`` (the psi network), or a list
    of indices into the module's Linear layers in order. Works with automatic and manual optimisation alike, since
    Lightning calls ``on_after_backward`` after every ``backward``/``manual_backward``.
    """

    def __init__(
        self, strength: float, layers: Sequence[int] | str = "first", include_bias: bool = False
    ) -> None:
        if not is_number(strength) or not strength >= 0:
            refuse("L1Regularization", "strength", strength, "a number >= 0 (0 turns it off)")
        if isinstance(layers, str):
            if layers not in _LAYER_WORDS:
                raise ValueError(
                    f"L1Regularization layers={layers!r}: use 'first', 'all' or a list of Linear-layer indices"
                )
        else:
            layers = list(layers)
            if not layers or any(isinstance(i, bool) or not isinstance(i, int) for i in layers):
                raise ValueError(
                    f"L1Regularization layers={layers!r}: use 'first', 'all' or a non-empty list of integer indices"
                )
        self.strength = float(strength)
        self.layers = layers
        self.include_bias = bool(include_bias)
        self._fit_layers: dict[int, list[nn.Linear]] = {}  # during a fit: each network's selected layers

    def __repr__(self) -> str:
        return f"L1Regularization(strength={self.strength}, layers={self.layers!r}, include_bias={self.include_bias})"

    def selected_layers(self, module: nn.Module) -> list[nn.Linear]:
        """The Linear layers of ``module`` this regulariser acts on."""
        linears = linear_layers(module)
        if not linears:
            raise ValueError(f"L1Regularization: {type(module).__name__} has no Linear layer")
        if self.layers == "first":
            return linears[:1]
        if self.layers == "all":
            return linears
        try:
            return [linears[i] for i in self.layers]
        except IndexError:
            raise ValueError(
                f"L1Regularization layers={self.layers!r}: the network has {len(linears)} Linear layers"
            ) from None

    def _names(self, layer: nn.Linear) -> list[str]:
        return ["weight", "bias"] if self.include_bias and layer.bias is not None else ["weight"]

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # Fails before training when the indices do not fit a network; the layers are kept for the fit's epochs.
        self._fit_layers = {id(net): self.selected_layers(net) for net in training_networks(pl_module)}

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._fit_layers = {}

    def _layers_of(self, module: nn.Module) -> list[nn.Linear]:
        layers = self._fit_layers.get(id(module))
        return layers if layers is not None else self.selected_layers(module)

    def apply_gradient(self, module: nn.Module) -> None:
        """Add the penalty's gradient to the ``.grad`` of every selected parameter (creating it if missing)."""
        self.apply_gradients([module])

    @torch.no_grad()
    def apply_gradients(self, modules: Sequence[nn.Module]) -> None:
        """:meth:`apply_gradient` for several networks at once: three ``torch._foreach_*`` calls over all their
        selected parameters instead of three operations per parameter (the same operations on each tensor, so the
        gradients are the same bit for bit)."""
        if self.strength == 0.0:
            return
        params, weights = [], []
        for module in modules:
            for layer in self._layers_of(module):
                for name in self._names(layer):
                    params.append(trainable_parameter(layer, name))
                    weights.append(effective_weight(layer, name))
        steps = torch._foreach_sign(weights)
        torch._foreach_mul_(steps, self.strength)
        present = [(p.grad, step) for p, step in zip(params, steps, strict=True) if p.grad is not None]
        for param, step in zip(params, steps, strict=True):
            if param.grad is None:
                param.grad = step
        if present:
            torch._foreach_add_([grad for grad, _ in present], [step for _, step in present])

    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.apply_gradients(training_networks(pl_module))

    @torch.no_grad()
    def penalty(self, module: nn.Module) -> float:
        """The value ``strength * sum ||p||_1`` over the selected parameters (what the reference added to its loss)."""
        total = 0.0
        for layer in self.selected_layers(module):
            for name in self._names(layer):
                total += float(effective_weight(layer, name).abs().sum())
        return self.strength * total
