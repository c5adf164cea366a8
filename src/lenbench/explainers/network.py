"""The base of the network explainers: what every network method shares between its config and its formula.

A network explainer seeds, builds its network, trains it full-batch with Lightning and predicts labels; subclasses
say how to build the network, which loss and targets to use, how outputs become labels and scores, and how to read
a formula. The training settings every network method shares live in one
:class:`~lenbench.nn.trainer.TrainingConfig` (``self.training``), built here from the keyword arguments the
subclasses do not declare, with each method's own defaults (``training_defaults``).

Several explainers of one configuration train *together* (:meth:`NetworkExplainer.fit_many`, the folds of a job):
each builds its own network from its own seed exactly as it would alone, and one
:class:`~lenbench.nn.module.FullBatchModule` trains them all (``trainer.batching``: ``exact``, every network
bit-identical to training it alone; ``fast``, stacked arithmetic; see :mod:`lenbench.nn.module`). One explainer
alone is the same path with one network. What the callbacks did is what they report per network
(:func:`lenbench.callbacks.base.fit_report`), so this class never asks which callbacks it was given.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from lenbench.callbacks.base import fit_report
from lenbench.callbacks.progress import ProgressReporter
from lenbench.data.base import Fold
from lenbench.explainers.base import Explainer, declared_settings
from lenbench.logic.simplify import check_budget
from lenbench.models.network import Head, LocalReading, NetworkModel, network_spec
from lenbench.nn.batches import ExactBatch, NetworkBatch, StackedBatch
from lenbench.nn.heads import ArgmaxHead
from lenbench.nn.module import FullBatchModule
from lenbench.nn.trainer import Fit, TrainingConfig, fit, set_seed
from lenbench.nn.weights import effective_weight, linear_layers, numpy_dtype
from lenbench.validation import check_bool, check_positive

logger = logging.getLogger(__name__)


class NetworkExplainer(Explainer):
    """Base of the network explainers: seeds, builds the network, trains it with Lightning, predicts labels.

    Subclasses say how to build the network (:meth:`build_network`), which loss to use and how targets are made
    (:meth:`criterion`, :meth:`targets`), and how outputs become labels and scores (:meth:`head`). ``training`` takes the keyword arguments of
    :class:`~lenbench.nn.trainer.TrainingConfig` (``seed``, ``trainer``, ``epochs``, ``lr``, ``optimizer``,
    ``weight_decay``, ``callbacks``); those a subclass has defaults for may be left out (``training_defaults``).
    ``max_simplify_variables``/``max_simplify_terms`` bound the exact simplification of the method's formula
    (above them it falls back, recorded).
    """

    name = "network"
    training_defaults: ClassVar[Mapping[str, Any]] = {}
    # Whether the networks stack into batched layers (``trainer.batching=fast``): a :meth:`row_loss` and layers
    # :func:`lenbench.nn.stacked.stack_networks` knows.
    stackable: ClassVar[bool] = False

    def __init__(
        self, *, max_simplify_variables: int = 10, max_simplify_terms: int = 64, **training: Any
    ) -> None:
        owner = type(self).__name__
        self.max_simplify_variables, self.max_simplify_terms = check_budget(
            owner, max_simplify_variables, max_simplify_terms
        )
        self.training = TrainingConfig(**{**self.training_defaults, **training}, owner=owner)
        if self.training.trainer["batching"] == "fast" and not self.stackable:
            raise ValueError(
                f"{owner} trainer.batching='fast': this network does not stack into batched layers; "
                "use trainer.batching=exact"
            )
        self._net: nn.Module | None = None
        self._info: dict[str, Any] = {}
        self.fitted_callbacks: list[pl.Callback] = []  # the copies of the callbacks the last fit trained with

    # -- what subclasses define ----------------------------------------------------------------------------------

    @abstractmethod
    def build_network(self, n_inputs: int) -> nn.Module: ...

    @abstractmethod
    def criterion(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]: ...

    @abstractmethod
    def targets(self, y: np.ndarray) -> torch.Tensor: ...

    def head(self) -> Head:
        """How outputs become labels and class-1 scores; one class per output unit by default."""
        return ArgmaxHead()

    def trained_info(self) -> dict[str, Any]:
        """Figures of the trained network worth recording; by default the inputs its first Linear layer uses."""
        first = linear_layers(self.network)[0]
        return {"features_used": int((effective_weight(first).detach() != 0).any(dim=0).sum())}

    def prepare(self, y: np.ndarray) -> None:
        """Called with the training labels before the network is built (e.g. to size its output)."""

    def row_loss(self) -> Callable[..., torch.Tensor]:
        """The per-row loss whose mean is :meth:`criterion` (``trainer.batching=fast``); methods without it
        train exactly."""
        raise NotImplementedError(f"{type(self).__name__} has no stacked (fast) training")

    # -- training ------------------------------------------------------------------------------------------------

    def training_rows(self, fold: Fold) -> tuple[np.ndarray, np.ndarray]:
        """The rows the network trains on: the fold's train+validation rows (in the notebook's row order, which
        full-batch sums depend on), or only its train rows with ``trainer.validate``."""
        if self.training.trainer["validate"]:
            return fold.x_train, fold.y_train
        return fold.x_trainval, fold.y_trainval

    def training_positions(self, fold: Fold) -> np.ndarray | None:
        """The positions in the data set of :meth:`training_rows`, in their order (None when unknown)."""
        return fold.train_index if self.training.trainer["validate"] else fold.trainval_index

    def get_params(self) -> dict[str, Any]:
        """The method's declared settings and the training ones (``seed``, ``epochs``, ``trainer``, ...)."""
        return {**super().get_params(), **self.training.settings()}

    def fit(self, fold: Fold) -> NetworkExplainer:
        self.fit_many([self], [fold])
        return self

    @property
    def trains_together(self) -> bool:
        return self.training.trains_together

    @classmethod
    def fit_many(cls, explainers: Sequence[Explainer], folds: Sequence[Fold]) -> list[float]:
        """Train each explainer on its fold, all in one module; returns each one's share of the training time."""
        networks = [e for e in explainers if isinstance(e, NetworkExplainer)]
        if len(networks) != len(explainers):
            raise TypeError("fit_many trains network explainers only")
        validate = networks[0].training.trainer["validate"]
        rows = [e.training_rows(f) for e, f in zip(networks, folds, strict=True)]
        val = [(f.x_val, f.y_val) for f in folds] if validate else None
        positions = [e.training_positions(f) for e, f in zip(networks, folds, strict=True)]
        return train_together(networks, rows, val, None if any(p is None for p in positions) else positions)

    def train(self, x: np.ndarray, y: np.ndarray) -> NetworkExplainer:
        """Train a fresh network (seeded) full-batch on ``x`` [n, k], ``y`` [n] for ``epochs`` epochs."""
        train_together([self], [(x, y)])
        return self

    def adopt(self, net: nn.Module, info: dict[str, Any], callbacks: Sequence[pl.Callback] = ()) -> None:
        """Take over a trained network, what its fit recorded, and the callbacks it trained with."""
        self._net = net.eval()
        self._info = {**info, **self.trained_info()}
        self.fitted_callbacks = list(callbacks)

    # -- using the trained network -------------------------------------------------------------------------------

    @property
    def network(self) -> nn.Module:
        if self._net is None:
            raise RuntimeError(f"{type(self).__name__}.fit must be called before predict or explain")
        return self._net

    @torch.no_grad()
    def network_output(self, x: np.ndarray) -> torch.Tensor:
        """The network's output for the rows of ``x`` (on the CPU), computed in the dtype it was trained in, on
        rows in C order (as the exported model: the summation order of a matrix product follows the layout)."""
        net = self.network
        param = next(net.parameters())
        rows = np.ascontiguousarray(x, dtype=numpy_dtype(param.dtype))
        return net(torch.as_tensor(rows).to(param.device)).cpu()

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.head().labels(self.network_output(x)).astype(np.int64)

    def scores(self, x: np.ndarray) -> np.ndarray:
        """The network's probability of class 1 per row (for the model's AUROC)."""
        return self.head().scores(self.network_output(x)).astype(np.float64)

    def layer_arrays(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(weight, bias) of every Linear layer as float64 numpy arrays, pruned entries 0, for the extractors."""
        arrays = []
        for layer in linear_layers(self.network):
            weight = effective_weight(layer).detach().cpu().double().numpy()
            bias = (
                layer.bias.detach().cpu().double().numpy()
                if layer.bias is not None
                else np.zeros(weight.shape[0])
            )
            arrays.append((weight, bias))
        return arrays

    def info(self) -> dict[str, Any]:
        return dict(self._info)

    def local_reading(self) -> LocalReading | None:
        """How a row's local explanation is read from the trained network; None when the method has none."""
        return None

    def exported(self) -> NetworkModel:
        """The trained network as plain data, with its head and local reading."""
        return NetworkModel(network_spec(self.network), self.head(), self.local_reading())


def _arrays(x: np.ndarray, y: np.ndarray, dtype: torch.dtype) -> tuple[np.ndarray, np.ndarray]:
    """The rows in the training dtype (``trainer.precision``), the labels as they are."""
    x, y = np.asarray(x, dtype=numpy_dtype(dtype)), np.asarray(y)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"x {x.shape} and y {y.shape} do not describe the same rows")
    return np.ascontiguousarray(x), y


def _batch(
    explainers: Sequence[NetworkExplainer], nets: list[nn.Module], positions: Sequence[np.ndarray] | None
) -> NetworkBatch:
    """The networks with their loss: stacked with ``batching: fast`` when there are several, else exact."""
    first = explainers[0]
    batching = first.training.trainer["batching"]
    if len(nets) > 1 and (batching == "fast" or (batching == "auto" and first.stackable)):
        return StackedBatch(nets, first.row_loss(), positions)
    return ExactBatch(nets, first.criterion())


def check_together(explainers: Sequence[NetworkExplainer]) -> None:
    """ValueError unless the explainers can share one module: one class, one configuration but for the seed."""
    first = explainers[0]
    if len(explainers) > 1 and not first.training.trains_together:
        raise ValueError(
            f"{first.name}: trainer.batching=off or stock callbacks: train one network per module"
        )
    for other in explainers[1:]:
        if type(other) is not type(first) or repr(_settings(other)) != repr(_settings(first)):
            raise ValueError(
                f"{first.name}: networks trained together need one configuration (seeds may differ)"
            )


class LocalRulesExplainer(NetworkExplainer):
    """A network method whose formula ORs ``topk`` of its rows' local explanations (pruning, weights, entropy);
    ``simplify_local`` drops literals from each local explanation first. Unset, both take the method's
    ``local_defaults``."""

    local_defaults: ClassVar[Mapping[str, Any]] = {"topk": 3, "simplify_local": False}

    def __init__(
        self, *, topk: int | None = None, simplify_local: bool | None = None, **settings: Any
    ) -> None:
        owner = type(self).__name__
        topk = self.local_defaults["topk"] if topk is None else topk
        simplify_local = self.local_defaults["simplify_local"] if simplify_local is None else simplify_local
        self.topk = check_positive(owner, "topk", topk, integer=True)
        self.simplify_local = check_bool(owner, "simplify_local", simplify_local)
        super().__init__(**settings)


def _settings(explainer: NetworkExplainer) -> dict[str, Any]:
    """The explainer's configuration as comparable values (callbacks by class and settings), seed left out."""
    settings = explainer.get_params()
    del settings["seed"]
    settings["callbacks"] = [(type(cb).__qualname__, declared_settings(cb)) for cb in settings["callbacks"]]
    settings["trainer"] = {k: v for k, v in settings["trainer"].items() if k != "callbacks"}
    return settings


def train_together(
    explainers: Sequence[NetworkExplainer],
    rows: Sequence[tuple[np.ndarray, np.ndarray]],
    val_rows: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
    positions: Sequence[np.ndarray] | None = None,
) -> list[float]:
    """Train explainer ``i`` on ``rows[i]`` (validated on ``val_rows[i]``), all in one module; each network is
    seeded with its explainer's seed and built exactly as alone. ``positions[i]``: where ``rows[i]`` lie in the
    data set (lets ``fast`` batching share one table). Returns each one's share of the training time."""
    check_together(explainers)
    config = explainers[0].training
    data = [_arrays(x, y, config.dtype) for x, y in rows]
    nets = []
    for explainer, (x, y) in zip(explainers, data, strict=True):
        explainer.prepare(y)
        set_seed(explainer.training.seed)
        # in the training dtype before the batch stacks them (trainer.precision; float32: the module as built)
        nets.append(explainer.build_network(x.shape[1]).to(config.dtype))
    module = FullBatchModule(
        _batch(explainers, nets, positions),
        optimizer=config.optimizer,
        lr=config.lr,
        weight_decay=config.weight_decay,
        log_every_n_epochs=config.trainer["log_every_n_epochs"],
        name=[e.name for e in explainers],
    )
    val = [_arrays(x, y, config.dtype) for x, y in val_rows] if val_rows is not None else None
    module.set_data(
        [torch.from_numpy(x) for x, _ in data],
        [e.targets(y) for e, (_, y) in zip(explainers, data, strict=True)],
        config.epochs,
        None if val is None else [torch.from_numpy(x) for x, _ in val],
        None if val is None else [e.targets(y) for e, (_, y) in zip(explainers, val, strict=True)],
    )
    sinks = [e.progress for e in explainers]
    done = fit(module, config, [ProgressReporter(sinks)] if any(sinks) else [])
    module.release_data()
    share = done.seconds / len(explainers)
    for i, (explainer, net) in enumerate(zip(explainers, module.trained_networks(), strict=True)):
        explainer.adopt(net, _record(module, done, explainer.training, i, net, share), done.callbacks)
    logger.debug("%s: trained %d networks in %.1f s", explainers[0].name, len(explainers), done.seconds)
    return [share] * len(explainers)


def _record(
    module: FullBatchModule, done: Fit, config: TrainingConfig, i: int, net: nn.Module, seconds: float
) -> dict[str, Any]:
    """What network ``i``'s fit records (its fold's info); ``config``: its own explainer's (its seed)."""
    record = {
        "training_time": seconds,
        "final_loss": module.final_losses()[i],
        "loss_curve": list(module.loss_curves[i]),
        "epochs": config.epochs,
        "seed": config.seed,
        "torch_threads": torch.get_num_threads(),
        "world_size": done.world_size,
        "networks_trained_together": module.batch.count,
        "batching": "fast" if isinstance(module.batch, StackedBatch) else "exact",  # the arithmetic used
        **fit_report(done.callbacks, net, i),
    }
    if isinstance(module.batch, StackedBatch):
        record["stacked_rows"] = "shared" if module.batch.shared else "padded"  # one table for all, or padded
    if done.stopped_early:
        record["epochs_trained"] = module.epoch + 1
    return record
