"""The typed schema of ``conf/tune.yaml``: train's schema plus the ``tune`` budget and the ``search`` space; and
:class:`StudySpec`, the study's settings as checked from a composed config.

Registered as ``tune_schema`` by the entry point (``python -m lenbench.tune``); a wrong type or an unknown key in
``tune.*`` fails at composition with a message naming the key, as ``python -m train`` does for its own keys.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields, make_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, get_type_hints  # noqa: UP035 - OmegaConf schemas need typing forms

from omegaconf import MISSING, DictConfig, OmegaConf

from lenbench.config import TrainSchema, config_hash
from lenbench.errors import ConfigError
from lenbench.tune.space import SearchParam

if TYPE_CHECKING:  # the registry imports sympy: the entry point registers this module's schema at start-up
    from lenbench.scoring import MetricSet


@dataclass
class TuneSettings:
    n_trials: int = 20  # completed trials the study should hold (a resumed study runs only the missing ones)
    timeout: Optional[float] = None  # noqa: UP045 - seconds of searching per command; null = no limit
    seed: int = 0  # the sampler's seed (worker w of n_jobs uses seed + w)
    n_jobs: int = 1  # trial processes sharing the study's storage
    sampler: str = "tpe"  # tpe, nsga2 or random
    objectives: List[str] = field(  # noqa: UP006
        default_factory=lambda: ["explanation_accuracy", "explanation_complexity"]
    )
    recorded: List[str] = field(default_factory=lambda: ["model_accuracy"])  # noqa: UP006
    reference: Dict[str, float] = field(  # noqa: UP006 - the fixed hypervolume reference point
        default_factory=lambda: {"explanation_accuracy": 0.5, "explanation_complexity": 100.0}
    )
    study_name: Optional[str] = None  # noqa: UP045 - null: <method>-<data>-<digest of the config and space>
    storage: Optional[str] = None  # noqa: UP045 - null: optuna.db beside the SQLite MLflow store
    score_test: bool = True  # run the Pareto members as jobs on the outer test folds


# Train's schema extended by ``tune`` and ``search``. It is merged after train's config (``conf/tune.yaml`` lists it
# after ``train``), so every field train declares is MISSING here: a MISSING value never overrides a composed one
# (``tracking.uri`` from conf/tracking, the cv settings ...), whatever fields TrainSchema gains later.
TuneSchema = make_dataclass(
    "TuneSchema",
    [(f.name, get_type_hints(TrainSchema)[f.name], field(default=MISSING)) for f in fields(TrainSchema)]
    + [
        ("tune", TuneSettings, field(default_factory=TuneSettings)),
        ("search", Dict[str, Any], field(default_factory=dict)),  # noqa: UP006
    ],
    bases=(TrainSchema,),
)
TuneSchema.__module__ = __name__  # picklable by name (configs travel to spawned trial processes)


# Keys that change no trial's outcome: a study keeps its name when only these differ.
BUDGET_KEYS = ("n_trials", "timeout", "n_jobs", "seed", "sampler", "score_test", "study_name", "storage")
SAMPLERS = ("tpe", "nsga2", "random")


@dataclass(frozen=True)
class StudySpec:
    """What a study is (name, storage, objectives and their directions, reference point) and its budget."""

    name: str
    storage: str
    objectives: tuple[str, ...]
    directions: tuple[str, ...]
    recorded: tuple[str, ...]
    reference: tuple[float, ...]
    n_trials: int
    timeout: float | None
    seed: int
    n_jobs: int
    sampler: str


def study_spec(
    cfg: DictConfig, space: tuple[SearchParam, ...], uri: str, project_dir: Path, metrics: MetricSet
) -> StudySpec:
    """The checked study settings; every problem is one :class:`ConfigError` naming its ``tune.*`` key."""
    tune = cfg.tune
    if int(tune.n_trials) < 1:
        raise ConfigError(f"tune.n_trials={tune.n_trials}: give a positive number of trials")
    if int(tune.n_jobs) < 1:
        raise ConfigError(f"tune.n_jobs={tune.n_jobs}: give a positive number of trial processes")
    if tune.timeout is not None and not float(tune.timeout) > 0:
        raise ConfigError(f"tune.timeout={tune.timeout}: give seconds > 0, or null for no limit")
    if str(tune.sampler) not in SAMPLERS:
        raise ConfigError(f"tune.sampler={tune.sampler}: use one of {', '.join(SAMPLERS)}")
    objectives = tuple(str(o) for o in tune.objectives)
    directions = tuple(_direction(name, metrics) for name in objectives)
    if len(objectives) < 1 or len(set(objectives)) != len(objectives):
        raise ConfigError(
            f"tune.objectives={list(objectives)}: give distinct metric names, e.g. "
            "[explanation_accuracy,explanation_complexity]"
        )
    missing = [o for o in objectives if o not in tune.reference]
    if missing:
        raise ConfigError(
            f"tune.reference has no value for {', '.join(missing)}: the hypervolume's reference point needs one "
            f"per objective, e.g. tune.reference.{missing[0]}=0"
        )
    recorded = tuple(dict.fromkeys([*tune.recorded, "majority_accuracy"]))
    for name in recorded:
        if name not in metrics.fold_names:
            raise ConfigError(
                f"tune.recorded: {name} is not a fold metric; use one of {', '.join(metrics.fold_names)}"
            )
    return StudySpec(
        name=str(tune.study_name or default_study_name(cfg, space, objectives)),
        storage=optuna_storage_url(tune.storage, uri, project_dir),
        objectives=objectives,
        directions=directions,
        recorded=tuple(r for r in recorded if r not in objectives),
        reference=tuple(float(tune.reference[o]) for o in objectives),
        n_trials=int(tune.n_trials),
        timeout=None if tune.timeout is None else float(tune.timeout),
        seed=int(tune.seed),
        n_jobs=int(tune.n_jobs),
        sampler=str(tune.sampler),
    )


def _direction(name: str, metrics: MetricSet) -> str:
    if name not in metrics.fold_names or metrics[name].higher_is_better is None:
        scores = [m.name for m in metrics.at("fold") if m.higher_is_better is not None]
        raise ConfigError(
            f"tune.objectives: {name} is not a score to optimise; use some of {', '.join(scores)}"
        )
    return "maximize" if metrics[name].higher_is_better else "minimize"


def default_study_name(cfg: DictConfig, space: tuple[SearchParam, ...], objectives: tuple[str, ...]) -> str:
    """``<method>-<data>-<digest>``: the same command (config, space, objectives) finds its study again; a changed
    configuration starts a new one. The budget (trials, timeout, processes, seed) is not part of it."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    tune = {k: v for k, v in resolved.get("tune", {}).items() if k not in BUDGET_KEYS}
    job = {k: v for k, v in resolved.items() if k not in ("tune", "search")}
    payload = json.dumps(
        {"job": config_hash(job), "tune": tune, "space": [repr(p) for p in space], "objectives": objectives},
        sort_keys=True,
        default=str,
    )
    data = str(cfg.data.get("name") or Path(str(cfg.data.get("path") or "data")).stem)
    return f"{cfg.method.name}-{data}-{hashlib.sha256(payload.encode()).hexdigest()[:8]}"


def optuna_storage_url(storage: str | None, uri: str, project_dir: Path) -> str:
    """``tune.storage``, else ``optuna.db`` beside a SQLite MLflow store (``mlruns/optuna.db`` by default), else
    (a tracking server) ``<project>/mlruns/optuna.db``."""
    if storage:
        return str(storage)
    folder = Path(uri[len("sqlite:///") :]).parent if uri.startswith("sqlite:///") else project_dir / "mlruns"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'optuna.db'}"
