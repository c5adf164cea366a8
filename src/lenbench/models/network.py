"""A trained network as plain data (numpy weights and layer names) and back to a torch module.

Why not pickle the ``nn.Module``: a model logged today must load with a later torch, and its weights must be
readable without lenbench's training classes (the Lightning module, pruning hooks, callbacks). A pruned layer is
stored with its effective weight (``weight_orig * weight_mask``, the product its forward computes), so the rebuilt
layer computes bit for bit what the trained one did on the same float32 input.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from torch import nn

LayerSpec = dict[str, Any]


def network_spec(net: nn.Module) -> list[LayerSpec]:
    """The layers of a trained ``nn.Sequential`` as plain dicts (weights as float32 numpy copies)."""
    from torch import nn  # deferred, with the torch modules below: a model is read without torch until here

    from lenbench.nn.layers import EntropyLinear, SqueezeLast
    from lenbench.nn.weights import effective_weight

    def array(tensor: Any) -> np.ndarray:
        return tensor.detach().cpu().numpy().copy()

    specs: list[LayerSpec] = []
    for layer in net.children():
        if isinstance(layer, nn.Linear):
            bias = None if layer.bias is None else array(effective_weight(layer, "bias"))
            specs.append({"type": "linear", "weight": array(effective_weight(layer)), "bias": bias})
        elif isinstance(layer, EntropyLinear):
            specs.append(
                {
                    "type": "entropy_linear",
                    "weight": array(layer.weight),
                    "bias": array(layer.bias),
                    "temperature": layer.temperature,
                }
            )
        elif isinstance(layer, nn.LeakyReLU):
            specs.append({"type": "leaky_relu", "slope": float(layer.negative_slope)})
        elif isinstance(layer, (nn.ReLU, nn.Sigmoid, SqueezeLast)):
            specs.append({"type": {nn.ReLU: "relu", nn.Sigmoid: "sigmoid"}.get(type(layer), "squeeze_last")})
        elif isinstance(layer, nn.Softmax):
            specs.append({"type": "softmax", "dim": int(layer.dim)})
        else:
            raise TypeError(f"cannot export a network layer of type {type(layer).__name__}")
    return specs


def build_network(specs: list[LayerSpec]) -> nn.Module:
    """The ``nn.Sequential`` that :func:`network_spec` described, in eval mode, weights loaded."""
    import torch

    with torch.random.fork_rng(
        devices=[]
    ):  # building layers draws initial weights: keep the caller's RNG state
        return _build(specs)


def _build(specs: list[LayerSpec]) -> nn.Module:
    import torch  # deferred, with the torch layers below: a model is read without torch until here
    from torch import nn

    from lenbench.nn.layers import EntropyLinear, SqueezeLast

    layers: list[nn.Module] = []
    for spec in specs:
        kind = spec["type"]
        if kind == "linear":
            out_features, in_features = spec["weight"].shape
            layer: nn.Module = nn.Linear(in_features, out_features, bias=spec["bias"] is not None)
        elif kind == "entropy_linear":
            n_classes, out_features, in_features = spec["weight"].shape
            layer = EntropyLinear(in_features, out_features, n_classes, spec["temperature"])
        elif kind == "leaky_relu":
            layer = nn.LeakyReLU(spec["slope"])
        elif kind == "softmax":
            layer = nn.Softmax(dim=spec["dim"])
        else:
            layer = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "squeeze_last": SqueezeLast}[kind]()
        if "weight" in spec:
            with torch.no_grad():
                layer.weight.copy_(torch.from_numpy(np.asarray(spec["weight"])))
                if spec.get("bias") is not None:
                    layer.bias.copy_(torch.from_numpy(np.asarray(spec["bias"])))
        layers.append(layer)
    return nn.Sequential(*layers).eval()


def linear_arrays(specs: list[LayerSpec]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(weight, bias) of every Linear layer as float64, as the explainers' ``layer_arrays`` give them."""
    arrays = []
    for spec in specs:
        if spec["type"] == "linear":
            weight = np.asarray(spec["weight"], dtype=np.float64)
            bias = spec["bias"]
            arrays.append(
                (weight, np.zeros(weight.shape[0]) if bias is None else np.asarray(bias, np.float64))
            )
    return arrays
