"""What the network explainers ask of a callback, so that they never switch on concrete callback classes.

A callback listed in a method config is a plain Lightning callback acting through Lightning's standard hooks: a
Lightning epoch is one protocol epoch (one full-batch optimiser step, see :mod:`lenbench.nn.module`), so a pruning
schedule acts in ``on_train_epoch_end`` with ``trainer.current_epoch`` and a regulariser in ``on_after_backward``.
A module may train several networks at once; callbacks reach them through :func:`training_networks`. On top of
Lightning's hooks a callback may take part in two small protocols, each duck-typed:

- *regulariser* (:class:`Regulariser`): ``penalty(module) -> float``, the value of the term it adds to the loss;
  the penalties of a fit's regularisers add up to the fold's ``final_penalty``;
- *report* (:class:`Reports`): ``report(network) -> dict``, what the callback did to network ``network`` (its
  position among the networks trained together) during the fit, e.g. the pruning history, merged into that
  fold's info.

State that must survive a fit over several processes goes through Lightning's ``state_dict``/``load_state_dict``
(rank 0 sends it back, see :mod:`lenbench.nn.ddp`); the report is then read in the calling process.
:func:`fit_report` gathers what a fit's callbacks report.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

import pytorch_lightning as pl
from torch import nn


def training_networks(module: nn.Module) -> list[nn.Module]:
    """The networks ``module`` trains, as callbacks act on them: ``module.networks()`` when it has several (one
    stacked module when they are batched), else the module itself (any other LightningModule)."""
    networks = getattr(module, "networks", None)
    return list(networks()) if callable(networks) else [module]


@runtime_checkable
class Regulariser(Protocol):
    """A callback that adds a penalty's gradient to the loss's: ``penalty`` is that penalty's current value."""

    def penalty(self, module: nn.Module) -> float: ...


@runtime_checkable
class Reports(Protocol):
    """A callback that reports what it did during the fit (JSON-friendly values, one key per concept)."""

    def report(self, network: int = 0) -> dict[str, Any]: ...


def fit_report(callbacks: Iterable[pl.Callback], module: nn.Module, network: int = 0) -> dict[str, Any]:
    """What the callbacks of a finished fit report about network ``network``: their reports in order, and
    ``final_penalty``, the sum of the regularisers' penalties on ``module`` (that network; absent without
    regularisers)."""
    callbacks = list(callbacks)
    info: dict[str, Any] = {}
    penalties = [cb.penalty(module) for cb in callbacks if isinstance(cb, Regulariser)]
    if penalties:
        info["final_penalty"] = sum(penalties, 0.0)
    for cb in callbacks:
        if isinstance(cb, Reports):
            info.update(cb.report(network))
    return info
