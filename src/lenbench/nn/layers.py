"""Layers of the network explainers that torch lacks, and the activation constants their networks share.

:class:`EntropyLinear` is the first layer of the entropy-based LEN (method ``entropy``); its penalty is the callback
:class:`~lenbench.callbacks.entropy.EntropyPenalty` and its explanations are read by
:mod:`lenbench.logic.extract.entropy`. The layer itself only computes: attention, mask, entropy, forward.

Why not ``torch_explain.nn.EntropyLinear`` (torch-explain 1.5.1, the LEN authors' library): it has the same
parameters, the same initialisation (bit-identical under one seed) and the same output shape, but computes the
attention otherwise, and so does not train bit-identically to this layer (docs/methods.md has the numbers; the test
``test_torch_explains_entropy_layer_starts_alike_but_computes_its_attention_otherwise`` pins each point):

- gamma is ``weight.norm(p=1, dim=1)``, another reduction than ``abs().sum(dim=1)``: last bits differ;
- alpha is ``exp(gamma / T) / sum(exp(gamma / T))``, not a softmax: last bits differ, and above gamma / T = 88.7
  (float32) exp overflows, alpha is NaN and the concept mask empty, where the softmax stays exact;
- its entropy penalty (``entropy_logic_loss``) is ``-sum(alpha * log(alpha))`` of the alpha stored by the last
  forward; alpha, its normalisation and the mask are attributes set by ``forward``, so after an optimiser step they
  describe the previous weights until the next forward (here they are computed from the current weights).

Either of the first two alone changes the trained weights, and with them lenbench's committed results, so lenbench
keeps this layer: the paper's softmax, in its stable form.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from lenbench.validation import check_positive

LEAKY_SLOPE = 0.01  # torch.nn.LeakyReLU's default, as in the reference networks


class EntropyLinear(nn.Module):
    """Per-class linear map whose inputs are scaled by the class's concept attention.

    ``weight`` is [n_classes, out_features, in_features], ``bias`` [n_classes, 1, out_features]; the output of
    ``x`` [n, in] is [n, n_classes, out]. Initialised as the reference does (Kaiming-uniform with a = sqrt(5) on
    the 3-D weight, whose fan-in PyTorch computes as out * in, so the initial weights are small).

    The *concept attention* of class c is a softmax (temperature T) over the inputs of the L1 norms of their weight
    columns, ``gamma[c, j] = sum_h |W[c, h, j]|``; divided by its maximum it scales the inputs, and its values above
    0.5 are the *concept mask* of class c: the concepts an explanation of c may use.
    """

    def __init__(self, in_features: int, out_features: int, n_classes: int, temperature: float) -> None:
        super().__init__()
        check_positive("EntropyLinear", "in_features", in_features, integer=True)
        check_positive("EntropyLinear", "out_features", out_features, integer=True)
        check_positive("EntropyLinear", "n_classes", n_classes, integer=True)
        check_positive("EntropyLinear", "temperature", temperature)
        self.in_features = in_features
        self.out_features = out_features
        self.n_classes = n_classes
        self.temperature = float(temperature)
        self.weight = nn.Parameter(torch.empty(n_classes, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(n_classes, 1, out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        fan_in, _ = nn.init._calculate_fan_in_and_fan_out(self.weight)
        bound = 1 / math.sqrt(fan_in)
        nn.init.uniform_(self.bias, -bound, bound)

    def gamma(self) -> torch.Tensor:
        """L1 norm of each input's weight column, per class: [n_classes, in]."""
        return self.weight.abs().sum(dim=1)

    def attention(self) -> torch.Tensor:
        """alpha = softmax(gamma / T) over the inputs, per class: [n_classes, in], rows sum to 1."""
        return torch.softmax(self.gamma() / self.temperature, dim=1)

    def normalized_attention(self) -> torch.Tensor:
        """alpha divided by its per-class maximum: the factor each input is scaled by, in (0, 1]."""
        alpha = self.attention()
        return alpha / alpha.max(dim=1, keepdim=True).values

    def concept_mask(self) -> torch.Tensor:
        """The concepts an explanation of each class may use: normalised attention > 0.5, [n_classes, in]."""
        return self.normalized_attention() > 0.5

    def entropy(self) -> torch.Tensor:
        """Sum over classes of the entropy of the attention, -sum alpha log alpha (the penalised quantity)."""
        log_alpha = torch.log_softmax(self.gamma() / self.temperature, dim=1)
        return -(log_alpha.exp() * log_alpha).sum()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scaled = x.unsqueeze(0) * self.normalized_attention().unsqueeze(1)  # [C, n, in]
        out = scaled.matmul(self.weight.transpose(1, 2)) + self.bias  # [C, n, out]
        return out.permute(1, 0, 2)

    def export_args(self) -> dict[str, Any]:
        """The arguments that build this layer again (:mod:`lenbench.models.network`)."""
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "n_classes": self.n_classes,
            "temperature": self.temperature,
        }

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value}" for key, value in self.export_args().items())


class SqueezeLast(nn.Module):
    """Drops the last dimension (of size 1): the per-class Linear(h, 1) outputs become one logit per class."""

    def export_args(self) -> dict[str, Any]:
        return {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.squeeze(-1)


def entropy_layers(module: nn.Module) -> list[EntropyLinear]:
    """The EntropyLinear layers of ``module`` in registration order."""
    return [m for m in module.modules() if isinstance(m, EntropyLinear)]
