"""How a network explainer trains: its one training configuration and the Lightning fit built from it.

:class:`TrainingConfig` holds the seven settings every network method shares (``seed``, ``trainer``, ``epochs``,
``lr``, ``optimizer``, ``weight_decay``, ``callbacks``), validated once when the explainer is built, so a wrong value
fails before any fold trains. The method configs keep them as flat keys of ``method.explainer``; the explainers take
them as keyword arguments and build the config (:class:`~lenbench.explainers.network.NetworkExplainer`).

``trainer`` takes the keys of ``conf/trainer/*.yaml``: ``accelerator``, ``devices``, ``strategy``, ``precision``,
``log_every_n_epochs`` (loss curve resolution), ``batching`` (how the networks of several folds train together:
``exact``, ``fast``, ``auto`` (fast where the network stacks) or ``off``, see :mod:`lenbench.nn.module`), ``validate`` (train on the fold's train rows and
run Lightning's validation loop on its validation rows, logging ``val_loss``), ``callbacks`` (stock Lightning
callbacks such as ``EarlyStopping``, each with a ``_target_``), ``start_method`` and ``process_group_backend``
(several processes, see :mod:`lenbench.nn.ddp`); any other key is passed to ``pl.Trainer`` as it is
(``enable_progress_bar``, ``logger``, ``check_val_every_n_epoch``, ...), except the ones :func:`fit` fixes (the
epochs and the loops' sizes).

:func:`fit` trains a :class:`~lenbench.nn.module.FullBatchModule` with fresh copies of the callbacks, over one
process or several, and returns what the explainer records.
"""

from __future__ import annotations

import copy
import logging
import random
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from lenbench.nn.ddp import RankRecords, check_ddp, fork_strategy, is_ddp, restore_environment
from lenbench.nn.module import FullBatchModule, TrainingDiverged
from lenbench.validation import PRECISIONS, check_choice, check_positive, check_precision, check_seed

OPTIMIZERS = ("adam", "adamw")
BATCHING = ("exact", "fast", "auto", "off")  # auto: fast where the network stacks, else exact
# Trainer settings fit() fixes itself: one Lightning epoch per protocol epoch over one full-batch step.
_FIXED_TRAINER_KEYS = (
    "max_epochs",
    "max_steps",
    "min_epochs",
    "limit_train_batches",
    "limit_val_batches",
    "num_sanity_val_steps",
    "use_distributed_sampler",
)
# Keys of cfg.trainer read by lenbench itself, not passed to pl.Trainer as they are.
_OWN_TRAINER_KEYS = (
    "log_every_n_epochs",
    "batching",
    "validate",
    "callbacks",
    "start_method",
    "process_group_backend",
)
# The precisions lenbench honours, and the dtype each trains in: networks and data are built in that dtype before
# the fit (:func:`training_dtype`), so every tensor lenbench makes itself (rows, targets, FlatAdam's buffer, stacked
# weights) shares it. Mixed and half precisions are refused before training: a gradient scaler (16-mixed) would scale
# the L1 gradient added after backward, and half weights or autocast (16-true, bf16-*, transformer-engine) would mix
# dtypes in the tensors lenbench builds and break the bit-identity of exact batching and FlatAdam.
PRECISION_DTYPES: Mapping[str, torch.dtype] = {
    p: torch.float64 if p.startswith("64") else torch.float32 for p in PRECISIONS
}
TRAINER_DEFAULTS: Mapping[str, Any] = {
    "accelerator": "cpu",
    "devices": 1,
    "strategy": "auto",
    "precision": "32-true",
    "log_every_n_epochs": 500,
    "batching": "exact",
    "validate": False,
    "callbacks": [],
    "logger": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "start_method": "fork",
    "process_group_backend": None,
}


def set_seed(seed: int) -> None:
    """Seed Python, numpy and torch, as the notebook's ``set_seed`` does before building each network."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def training_dtype(precision: Any) -> torch.dtype:
    """The dtype of ``trainer.precision`` (checked by :func:`check_trainer`): float32 or float64."""
    return PRECISION_DTYPES[str(precision)]


def _stock_callbacks(owner: str, callbacks: Any) -> list[pl.Callback]:
    """``trainer.callbacks`` as a list of Lightning callbacks, or ValueError naming the entry that is not one."""
    if callbacks is None:
        return []
    if isinstance(callbacks, (str, bytes, Mapping)) or not isinstance(callbacks, Sequence):
        raise ValueError(
            f"{owner} trainer.callbacks={callbacks!r}: a list of callbacks, each with a _target_"
        )
    for cb in callbacks:
        if not isinstance(cb, pl.Callback):
            raise ValueError(
                f"{owner} trainer.callbacks: {cb!r} is not a Lightning Callback (give each one a _target_ such as "
                "pytorch_lightning.callbacks.EarlyStopping)"
            )
    return list(callbacks)


def check_trainer(owner: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """``cfg.trainer`` merged with :data:`TRAINER_DEFAULTS`, or ValueError naming the setting that cannot work."""
    fixed = sorted(set(config) & set(_FIXED_TRAINER_KEYS))
    if fixed:
        raise ValueError(f"{owner} trainer: {', '.join(fixed)} are set by the explainer, remove them")
    merged = {**TRAINER_DEFAULTS, **config}
    check_positive(owner, "trainer.log_every_n_epochs", merged["log_every_n_epochs"], integer=True)
    check_choice(owner, "trainer.batching", merged["batching"], BATCHING)
    if not isinstance(merged["validate"], bool):
        raise ValueError(f"{owner} trainer.validate={merged['validate']!r}: use true or false")
    merged["callbacks"] = _stock_callbacks(owner, merged["callbacks"])
    check_precision(owner, "trainer.precision", merged["precision"])
    accelerator = str(merged["accelerator"])
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"{owner} trainer.accelerator={accelerator!r}: no CUDA GPU is available here; use trainer=cpu "
            "(one process) or trainer=ddp (several CPU processes)"
        )
    if is_ddp(merged["strategy"]):
        check_ddp(owner, merged["strategy"], merged["start_method"])
    return merged


@dataclass(frozen=True)
class TrainingConfig:
    """The training settings of one network explainer, validated on construction (``owner`` names it in errors).

    ``trainer`` is ``cfg.trainer`` merged with :data:`TRAINER_DEFAULTS`; ``callbacks`` are Lightning callbacks
    (regularisers, pruning schedules), never used themselves: each fit trains with fresh copies.
    """

    seed: int
    epochs: int
    lr: float
    optimizer: str
    weight_decay: float
    trainer: Mapping[str, Any] = field(default_factory=dict)
    callbacks: Sequence[pl.Callback] = ()
    owner: str = field(default="TrainingConfig", repr=False, compare=False)

    def __post_init__(self) -> None:
        owner = self.owner
        seed = check_seed(owner, self.seed)
        check_positive(owner, "epochs", self.epochs, integer=True)
        check_positive(owner, "lr", self.lr)
        check_positive(owner, "weight_decay", self.weight_decay, allow_zero=True)
        check_choice(owner, "optimizer", self.optimizer, OPTIMIZERS)
        callbacks = tuple(self.callbacks or ())
        for cb in callbacks:
            if not isinstance(cb, pl.Callback):
                raise ValueError(
                    f"{owner} callbacks: {cb!r} is not a Lightning Callback (give each one a _target_ in the config)"
                )
        trainer = check_trainer(owner, dict(self.trainer or {}))
        for name, value in (
            ("seed", seed),
            ("epochs", int(self.epochs)),
            ("lr", float(self.lr)),
            ("weight_decay", float(self.weight_decay)),
            ("trainer", trainer),
            ("callbacks", callbacks),
        ):
            object.__setattr__(self, name, value)

    def settings(self) -> dict[str, Any]:
        """The settings it was built with, by name, ``owner`` left out (an explainer's ``get_params`` reports them)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init and f.name != "owner"}

    def trainer_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``pl.Trainer`` that ``trainer`` sets (DDP strategies with forked ranks)."""
        kwargs = {k: v for k, v in self.trainer.items() if k not in _OWN_TRAINER_KEYS}
        if is_ddp(kwargs["strategy"]):
            kwargs["strategy"] = fork_strategy(self.trainer["process_group_backend"])
        return kwargs

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the networks and their rows are built in, from ``trainer.precision``."""
        return training_dtype(self.trainer["precision"])

    @property
    def stock_callbacks(self) -> list[pl.Callback]:
        """The stock Lightning callbacks of ``trainer.callbacks`` (never used themselves: fits copy them)."""
        return list(self.trainer["callbacks"])

    @property
    def trains_together(self) -> bool:
        """Whether several networks (folds) may share one module: not with ``batching: off``, and not with stock
        callbacks, which must see one network each (``EarlyStopping`` would stop every fold at once)."""
        return self.trainer["batching"] != "off" and not self.trainer["callbacks"]


@dataclass
class Fit:
    """What one fit leaves: its wall time, the number of processes, the callbacks it trained with, and whether a
    callback stopped it before the last epoch (``EarlyStopping``)."""

    seconds: float
    world_size: int
    callbacks: list[pl.Callback]
    stopped_early: bool = False


def fit(module: FullBatchModule, config: TrainingConfig, observers: Sequence[pl.Callback] = ()) -> Fit:
    """Train ``module`` (its data set) for ``config.epochs`` epochs with fresh copies of ``config.callbacks`` and of
    the stock ``trainer.callbacks``, and ``observers`` as they are (callbacks that only watch, such as a progress
    reporter). Its networks must already be in ``config.dtype``: Lightning's 64-true would convert the parameters
    only, not the rows and stacked copies lenbench builds itself."""
    dtype = module.dtype_of_networks()
    if dtype != config.dtype:  # a bug: the caller builds the networks in config.dtype before the fit
        raise RuntimeError(
            f"{config.owner}: the networks are {dtype}, trainer.precision={config.trainer['precision']!r} "
            f"trains in {config.dtype}"
        )
    callbacks = copy.deepcopy([*config.callbacks, *config.stock_callbacks]) + list(observers)
    module.log_losses = bool(config.stock_callbacks) or config.trainer["logger"] not in (False, None)
    start = time.perf_counter()
    records: RankRecords | None = None
    try:
        with _quiet_lightning(), restore_environment():
            trainer = _trainer(config, callbacks, validate=module.batch.has_validation)
            if trainer.world_size > 1:
                records = RankRecords()
                module.share_records(records, callbacks, torch.get_num_threads())
            _run(trainer, module, records)
        if records is not None:
            record = records.read_record()
            if record is None:
                raise RuntimeError("the training processes ended without sending their record back")
            module.load_record(record)
    finally:
        if records is not None:
            records.close()
        module.share_records(None)
    seconds = time.perf_counter() - start
    stopped_early = bool(trainer.should_stop) and module.epoch < config.epochs - 1
    if module.epoch != config.epochs - 1 and not stopped_early:
        raise RuntimeError(f"training stopped after epoch {module.epoch} of {config.epochs}")
    return Fit(seconds, int(trainer.world_size), callbacks, stopped_early)


def _trainer(config: TrainingConfig, callbacks: list[pl.Callback], validate: bool) -> pl.Trainer:
    """The Lightning trainer of one fit: one epoch per protocol epoch, one step each, validation when asked."""
    kwargs = config.trainer_kwargs()
    kwargs.setdefault("enable_checkpointing", any(isinstance(cb, ModelCheckpoint) for cb in callbacks))
    return pl.Trainer(
        max_epochs=config.epochs,
        num_sanity_val_steps=0,
        limit_val_batches=1 if validate else 0,
        use_distributed_sampler=False,
        callbacks=callbacks,
        **kwargs,
    )


def _run(trainer: pl.Trainer, module: FullBatchModule, records: RankRecords | None) -> None:
    """``trainer.fit``; a divergence (reported by any rank, or behind a failing loss or hook) wins over the
    symptom's error."""
    try:
        trainer.fit(module)
    except TrainingDiverged:
        raise
    except Exception as exc:
        error = records.first_error() if records is not None else None
        if error is not None:
            raise TrainingDiverged(*error) from exc
        diverged = module.divergence()
        if diverged is not None:
            raise diverged from exc
        raise


@contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Silence Lightning's per-fit banners ("GPU available: ...") for the duration of one fit."""
    names = ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            # Lightning's pytree helper warns on every fit with torch >= 2.10, about its own code.
            warnings.filterwarnings("ignore", message=r".*treespec, LeafSpec.*")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
