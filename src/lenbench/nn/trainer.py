"""How a network explainer trains: its one training configuration and the Lightning fit built from it.

:class:`TrainingConfig` holds the seven settings every network method shares (``seed``, ``trainer``, ``epochs``,
``lr``, ``optimizer``, ``weight_decay``, ``callbacks``), validated once when the explainer is built, so a wrong value
fails before any fold trains. The method configs keep them as flat keys of ``method.explainer``; the explainers take
them as keyword arguments and build the config (:class:`~lenbench.explainers.network.NetworkExplainer`).

``trainer`` takes the keys of ``conf/trainer/*.yaml``: ``accelerator``, ``devices``, ``strategy``, ``precision``,
``log_every_n_epochs`` (loss curve resolution), ``epochs_per_batch`` (epochs per Lightning step, see
:mod:`lenbench.nn.module`), ``start_method`` and ``process_group_backend`` (several processes, see
:mod:`lenbench.nn.ddp`); any other key is passed to ``pl.Trainer`` as it is, except the ones :func:`fit` fixes
(logger, checkpointing, progress bar, model summary, validation, epochs, callbacks).

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
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from lenbench.nn.ddp import RankRecords, check_ddp, fork_strategy, is_ddp, restore_environment
from lenbench.nn.module import EpochChunks, FullBatchModule, TrainingDiverged
from lenbench.validation import check_choice, check_positive, check_seed

OPTIMIZERS = ("adam", "adamw")
# Trainer settings fit() fixes itself: full-batch training without logger, checkpoints, progress bar, model summary or
# validation loop.
_FIXED_TRAINER_KEYS = (
    "max_epochs",
    "max_steps",
    "logger",
    "enable_checkpointing",
    "enable_progress_bar",
    "enable_model_summary",
    "num_sanity_val_steps",
    "limit_val_batches",
    "callbacks",
    "use_distributed_sampler",
)
# Keys of cfg.trainer read by lenbench itself, not passed to pl.Trainer.
_OWN_TRAINER_KEYS = ("log_every_n_epochs", "epochs_per_batch", "start_method", "process_group_backend")
# A gradient scaler would scale the gradients that the L1 callback adds to; those precisions are refused.
_SCALED_PRECISIONS = ("16", "16-mixed")
TRAINER_DEFAULTS: Mapping[str, Any] = {
    "accelerator": "cpu",
    "devices": 1,
    "strategy": "auto",
    "precision": "32-true",
    "log_every_n_epochs": 500,
    "epochs_per_batch": 100,
    "start_method": "fork",
    "process_group_backend": None,
}


def set_seed(seed: int) -> None:
    """Seed Python, numpy and torch, as the notebook's ``set_seed`` does before building each network."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def check_trainer(owner: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """``cfg.trainer`` merged with :data:`TRAINER_DEFAULTS`, or ValueError naming the setting that cannot work."""
    fixed = sorted(set(config) & set(_FIXED_TRAINER_KEYS))
    if fixed:
        raise ValueError(f"{owner} trainer: {', '.join(fixed)} are set by the explainer, remove them")
    merged = {**TRAINER_DEFAULTS, **config}
    check_positive(owner, "trainer.log_every_n_epochs", merged["log_every_n_epochs"], integer=True)
    check_positive(owner, "trainer.epochs_per_batch", merged["epochs_per_batch"], integer=True)
    if str(merged["precision"]) in _SCALED_PRECISIONS:
        raise ValueError(
            f"{owner} trainer.precision={merged['precision']!r}: needs a gradient scaler, which would scale the "
            "L1 gradient added after backward; use 32-true, 64-true, bf16-mixed or bf16-true"
        )
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

    def trainer_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``pl.Trainer`` that ``trainer`` sets (DDP strategies with forked ranks)."""
        kwargs = {k: v for k, v in self.trainer.items() if k not in _OWN_TRAINER_KEYS}
        if is_ddp(kwargs["strategy"]):
            kwargs["strategy"] = fork_strategy(self.trainer["process_group_backend"])
        return kwargs


@dataclass
class Fit:
    """What one fit leaves: its wall time, the number of processes, and the callbacks it trained with."""

    seconds: float
    world_size: int
    callbacks: list[pl.Callback]


def fit(module: FullBatchModule, config: TrainingConfig, observers: Sequence[pl.Callback] = ()) -> Fit:
    """Train ``module`` (its data set) for ``config.epochs`` epochs with fresh copies of ``config.callbacks``, and
    ``observers`` as they are (callbacks that only watch, such as a progress reporter)."""
    callbacks = copy.deepcopy(list(config.callbacks)) + list(observers)
    kwargs = config.trainer_kwargs()
    start = time.perf_counter()
    records: RankRecords | None = None
    try:
        with _quiet_lightning(), restore_environment():
            trainer = pl.Trainer(
                max_epochs=1,
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                num_sanity_val_steps=0,
                limit_val_batches=0,
                use_distributed_sampler=False,
                callbacks=callbacks,
                **kwargs,
            )
            if trainer.world_size > 1:
                records = RankRecords()
                module.share_records(records, callbacks, torch.get_num_threads())
            _run(trainer, module, config, records)
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
    if module.epoch != config.epochs - 1:
        raise RuntimeError(f"training stopped after epoch {module.epoch} of {config.epochs}")
    return Fit(seconds=seconds, world_size=int(trainer.world_size), callbacks=callbacks)


def _run(
    trainer: pl.Trainer, module: FullBatchModule, config: TrainingConfig, records: RankRecords | None
) -> None:
    """``trainer.fit`` over the epoch chunks; a divergence reported by any rank wins over the launcher's error."""
    try:
        trainer.fit(module, train_dataloaders=EpochChunks(config.epochs, config.trainer["epochs_per_batch"]))
    except Exception as exc:
        error = records.first_error() if records is not None else None
        if error is not None:
            raise TrainingDiverged(*error) from exc
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
