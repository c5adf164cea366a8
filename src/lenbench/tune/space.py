"""A method's search space: parsed and checked before any trial, sampled per trial, applied to the job's config.

``conf/search/<method>.yaml`` maps a short name (the Optuna and MLflow param name) to where the value goes and its
range::

    temperature: {key: method.explainer.temperature, type: float, low: 0.3, high: 2.0, log: true}
    penalty:     {key: method.explainer.callbacks.0.strength, type: float, low: 1.0e-5, high: 1.0e-1, log: true}
    criterion:   {key: method.explainer.criterion, type: categorical, choices: [gini, entropy]}

A key must exist in the composed config or be a named argument of the ``_target_`` it configures (the tree's
``max_depth``); a range must be non-empty and ordered. Each problem is one :class:`ConfigError` naming the entry.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lenbench.errors import ConfigError
from lenbench.explainers.base import declared_parameters
from lenbench.validation import is_number

KINDS = ("float", "int", "categorical")
FIELDS = ("key", "type", "low", "high", "log", "step", "choices")


@dataclass(frozen=True)
class SearchParam:
    """One searched value: its name, its config key, and its range (``low``..``high``) or ``choices``."""

    name: str
    key: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """The trial's value (Optuna's ``suggest_*``)."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            step = int(self.step or 1)
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=step, log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), step=self.step, log=self.log)

    def describe(self) -> str:
        if self.kind == "categorical":
            return f"{self.name} in {list(self.choices)}"
        return f"{self.name} in [{self.low}, {self.high}]{' (log)' if self.log else ''}"


def parse_space(search: Mapping[str, Any], cfg: DictConfig, method: str) -> tuple[SearchParam, ...]:
    """The checked search space of ``method`` from the composed ``search`` block; raises ConfigError."""
    if not search:
        raise ConfigError(
            f"method={method} has no search space (conf/search/{method}.yaml): "
            + (
                "it gives no explanations, so it has no accuracy/complexity front; "
                if method == "rf"
                else "declare one there; "
            )
            + "tune a method that has one, e.g. method=tree or method=entropy"
        )
    params = tuple(_param(str(name), spec, cfg, method) for name, spec in search.items())
    keys = [p.key for p in params]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise ConfigError(f"search: {', '.join(twice)} is searched by two entries; keep one")
    return params


def _param(name: str, spec: Any, cfg: DictConfig, method: str) -> SearchParam:
    where = f"search.{name}"
    if not isinstance(spec, Mapping):
        raise ConfigError(
            f"{where}: give a mapping {{key: ..., type: float|int|categorical, low/high or choices}}"
        )
    unknown = sorted(set(spec) - set(FIELDS))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(FIELDS)}")
    key, kind = str(spec.get("key") or ""), str(spec.get("type") or "float")
    if kind not in KINDS:
        raise ConfigError(f"{where}.type={kind}: use one of {', '.join(KINDS)}")
    _check_key(where, key, cfg, method)
    if kind == "categorical":
        choices = tuple(spec.get("choices") or ())
        if not choices:
            raise ConfigError(
                f"{where}: an empty list of choices; give at least one value in {where}.choices"
            )
        return SearchParam(name=name, key=key, kind=kind, choices=choices)
    low, high, log, step = spec.get("low"), spec.get("high"), bool(spec.get("log", False)), spec.get("step")
    _check_range(where, kind, low, high, log, step)
    return SearchParam(name=name, key=key, kind=kind, low=low, high=high, log=log, step=step)


def _check_range(where: str, kind: str, low: Any, high: Any, log: bool, step: Any) -> None:
    if not all(is_number(v) and math.isfinite(v) for v in (low, high)):
        raise ConfigError(f"{where}: low={low} and high={high} must both be finite numbers for type {kind}")
    if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
        raise ConfigError(f"{where}: low={low} and high={high} must be integers for type int")
    if low > high:
        raise ConfigError(f"{where}: low={low} > high={high}, an inverted range; swap them")
    if low == high:  # int too: every trial would run the same value
        raise ConfigError(
            f"{where}: low = high = {low}, an empty range; widen it, or fix the value in the config "
            f"instead of searching it"
        )
    if log and low <= 0:
        raise ConfigError(f"{where}: log=true needs low > 0 (got low={low}); raise low or set log=false")
    if step is not None and (not (is_number(step) and math.isfinite(step)) or step <= 0 or log):
        raise ConfigError(f"{where}: step={step} must be a positive number, and log=false with a step")


def _check_key(where: str, key: str, cfg: DictConfig, method: str) -> None:
    """The key must be in the composed config, or a named argument of the ``_target_`` its parent configures."""
    if not key.startswith("method."):
        raise ConfigError(
            f"{where}.key={key!r}: a searched key lies under method. (e.g. method.explainer.lr)"
        )
    if OmegaConf.select(cfg, key, default="__missing__") != "__missing__":
        return
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, default=None)
    target = node.get("_target_") if isinstance(node, DictConfig) else None
    accepted = _arguments(str(target)) if target else []
    if leaf in accepted:
        return
    hint = f"; {str(target).rsplit('.', 1)[-1]} takes {', '.join(accepted)}" if accepted else ""
    raise ConfigError(
        f"{where}.key={key}: not a parameter of method={method} (no such key in its config){hint}; "
        f"fix the key in conf/search/{method}.yaml or on the command line"
    )


def _arguments(target: str) -> list[str]:
    module, _, name = target.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module), name)
        return declared_parameters(obj)
    except (ImportError, AttributeError, ValueError, TypeError):
        return []


def job_config(cfg: DictConfig, values: Mapping[str, Any], space: tuple[SearchParam, ...]) -> DictConfig:
    """The config of one job: ``cfg`` without its ``tune``/``search`` blocks, the trial's values set. Equal to what
    ``python -m train`` composes with the same overrides, so both share a job identity (and resume)."""
    container = OmegaConf.to_container(cfg, resolve=False)
    container.pop("tune", None)
    container.pop("search", None)
    job = OmegaConf.create(container)
    for param in space:
        if param.name in values:
            OmegaConf.update(job, param.key, values[param.name], merge=False, force_add=True)
    return job
