"""A network's weights as training, pruning and the explainers read them: its Linear layers, the effective weight of
a pruned layer (``weight_orig * weight_mask``, see :mod:`torch.nn.utils.prune`), and loading a pruned state dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune


def linear_layers(module: nn.Module) -> list[nn.Linear]:
    """The Linear layers of ``module`` in registration order (the order of the network's layers)."""
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


def effective_weight(layer: nn.Module, name: str = "weight") -> torch.Tensor:
    """``layer.<name>`` as the next forward will use it: ``<name>_orig * <name>_mask`` when pruned.

    The attribute ``layer.weight`` of a pruned layer is only refreshed by the forward pre-hook, so after an optimiser
    step it is stale until the next forward; reading the product avoids that.
    """
    mask = getattr(layer, f"{name}_mask", None)
    if mask is None:
        return getattr(layer, name)
    return getattr(layer, f"{name}_orig") * mask


def trainable_parameter(layer: nn.Module, name: str = "weight") -> nn.Parameter:
    """The Parameter the optimiser updates for ``layer.<name>`` (``<name>_orig`` once pruned)."""
    param = getattr(layer, f"{name}_orig", None)
    return param if param is not None else getattr(layer, name)


def restore_pruning(module: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """Re-create the pruning reparametrisation that ``state_dict`` was saved with; returns the parameters pruned.

    For every ``<prefix><name>_mask`` key whose sub-module is not pruned yet, apply ``custom_from_mask`` with that
    mask, so that ``weight_orig``/``weight_mask`` exist and ``module.load_state_dict(state_dict)`` then succeeds.
    """
    restored = []
    submodules = dict(module.named_modules())
    for key, mask in state_dict.items():
        if not key.endswith("_mask"):
            continue
        path, _, attr = key.rpartition(".")
        name = attr[: -len("_mask")]
        owner = submodules.get(path)
        if owner is None or f"{path + '.' if path else ''}{name}_orig" not in state_dict:
            continue
        if hasattr(owner, f"{name}_orig"):
            continue  # already pruned: load_state_dict overwrites the mask
        prune.custom_from_mask(owner, name=name, mask=mask.detach().clone())
        restored.append(key[: -len("_mask")])
    return restored


def load_pruned_state_dict(
    module: nn.Module, state_dict: Mapping[str, torch.Tensor], strict: bool = True
) -> Any:
    """``module.load_state_dict(state_dict)`` that also works when ``state_dict`` comes from a pruned network."""
    restore_pruning(module, state_dict)
    return nn.Module.load_state_dict(module, state_dict, strict=strict)


def numpy_dtype(dtype: torch.dtype) -> np.dtype:
    """The numpy dtype of a torch floating dtype (float32 -> float32, float64 -> float64)."""
    return torch.empty(0, dtype=dtype).numpy().dtype
