"""The typed schema of ``conf/tune.yaml``: train's schema plus the ``tune`` budget and the ``search`` space.

Registered as ``tune_schema`` by the entry point (``python -m lenbench.tune``); a wrong type or an unknown key in
``tune.*`` fails at composition with a message naming the key, as ``python -m train`` does for its own keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any, Dict, List, Optional, get_type_hints  # noqa: UP035 - OmegaConf schemas need typing forms

from omegaconf import MISSING

from lenbench.config import TrainSchema


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
