"""A trained network as plain data (numpy tensors, layer classes and their arguments) and back: :class:`NetworkModel`.

Why not pickle the ``nn.Module``: a model logged today must load with a later torch, and its weights must be
readable without lenbench's training classes (the Lightning module, pruning hooks, callbacks). Each layer is stored
as its class's import path, the arguments that build it and its tensors; a pruned tensor is stored as its effective
value (``<name>_orig * <name>_mask``, the product its forward computes), so the rebuilt layer computes bit for bit
what the trained one did on the same input. The layer type says how it is built: torch's stock layers through
:data:`STOCK_LAYER_ARGS`, any other layer class (lenbench's or a plugin's) through its own ``export_args()``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from lenbench.nn.weights import effective_weight, numpy_dtype

LayerSpec = dict[str, Any]
Literals = list[tuple[str, bool]]

# How torch's own layers are built again: their constructor arguments, read off a trained layer.
STOCK_LAYER_ARGS: dict[type, Callable[[Any], dict[str, Any]]] = {
    nn.Linear: lambda layer: {
        "in_features": layer.in_features,
        "out_features": layer.out_features,
        "bias": layer.bias is not None,
    },
    nn.LeakyReLU: lambda layer: {"negative_slope": float(layer.negative_slope)},
    nn.Softmax: lambda layer: {"dim": layer.dim},
    nn.ReLU: lambda layer: {},
    nn.Sigmoid: lambda layer: {},
    nn.Tanh: lambda layer: {},
    nn.Identity: lambda layer: {},
}


class Head(Protocol):
    """How a network's output becomes labels and class-1 scores (:mod:`lenbench.nn.heads`)."""

    def labels(self, output: torch.Tensor) -> np.ndarray: ...

    def scores(self, output: torch.Tensor) -> np.ndarray: ...


class LocalReading(Protocol):
    """How a row's local explanation is read: its literals ``(concept, negated)``, from the rows' concept values."""

    def rows(self, x: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> list[Literals]: ...


def layer_spec(layer: nn.Module) -> LayerSpec:
    """One trained layer as plain data: class path, constructor arguments, tensors (numpy copies)."""
    cls = type(layer)
    if hasattr(layer, "export_args"):
        args = layer.export_args()
    elif cls in STOCK_LAYER_ARGS:
        args = STOCK_LAYER_ARGS[cls](layer)
    else:
        raise TypeError(
            f"cannot export a network layer of type {cls.__name__}: give it an export_args() method"
        )
    names = [name.removesuffix("_orig") for name, _ in layer.named_parameters(recurse=False)]
    tensors = {name: effective_weight(layer, name).detach().cpu().numpy().copy() for name in names}
    module = "torch.nn" if getattr(nn, cls.__name__, None) is cls else cls.__module__  # torch's public path
    return {"class": f"{module}:{cls.__qualname__}", "args": args, "tensors": tensors}


def network_spec(net: nn.Module) -> list[LayerSpec]:
    """The layers of a trained ``nn.Sequential`` as plain data."""
    return [layer_spec(layer) for layer in net.children()]


def build_network(specs: Sequence[LayerSpec]) -> nn.Module:
    """The ``nn.Sequential`` that :func:`network_spec` described, in eval mode, tensors loaded."""
    with torch.random.fork_rng(
        devices=[]
    ):  # building layers draws initial weights: keep the caller's RNG state
        return nn.Sequential(*(_build_layer(spec) for spec in specs)).eval()


def _build_layer(spec: LayerSpec) -> nn.Module:
    module, _, qualname = spec["class"].partition(":")
    cls = importlib.import_module(module)
    for part in qualname.split("."):
        cls = getattr(cls, part)
    layer = cls(**spec["args"])
    tensors = {name: torch.from_numpy(np.asarray(value)) for name, value in spec["tensors"].items()}
    if tensors:
        layer.to(next(iter(tensors.values())).dtype)
        with torch.no_grad():
            for name, value in tensors.items():
                getattr(layer, name).copy_(value)
    return layer


@dataclass(eq=False)
class NetworkModel:
    """A network method's exported model: its layers as data, its output head and its local reading (None: the
    method gives no local explanations). Rebuilt once on first use; the rebuilt module is not pickled."""

    layers: list[LayerSpec]
    head: Head
    reading: LocalReading | None = None
    _net: nn.Module | None = field(default=None, init=False, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_net": None}

    @property
    def network(self) -> nn.Module:
        if self._net is None:
            self._net = build_network(self.layers)
        return self._net

    def predict_and_score(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(labels int64 [n], class-1 scores float64 [n]), computed as the fold's explainer computed them."""
        net = self.network
        dtype = numpy_dtype(next(net.parameters()).dtype)
        with torch.no_grad():  # C order, as the explainer's rows: a column-major frame may round differently
            output = net(torch.as_tensor(np.ascontiguousarray(x, dtype=dtype)))
        return self.head.labels(output).astype(np.int64), self.head.scores(output).astype(np.float64)

    def explain_local(self, x: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> list[Literals] | None:
        return None if self.reading is None else self.reading.rows(np.asarray(x), labels, names)
