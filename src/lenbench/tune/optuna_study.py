"""Optuna at the edge: the study's storage, its objectives checked on resume, samplers, the trial loop, tables.

Optuna is used directly (``create_study(directions=...)``): ``hydra-optuna-sweeper`` pins ``optuna<3``. The study
records its objective names as a user attribute, so a resumed study (same name, same storage) with other
objectives or directions is refused with one line instead of mixing incomparable trials.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lenbench.errors import ConfigError
from lenbench.folds import FoldFailed
from lenbench.tune.front import pareto_mask

if TYPE_CHECKING:
    from lenbench.tune.settings import StudySpec
    from lenbench.tune.space import SearchParam

log = logging.getLogger("lenbench")

OBJECTIVES_ATTR = "lenbench.objectives"


def storage(spec: StudySpec) -> Any:
    """The Optuna storage of ``spec.storage``: an RDB URL (SQLite with a long lock timeout, so parallel trial
    processes wait instead of failing), or ``journal:<file>`` (Optuna's journal file, safe on NFS)."""
    import optuna

    url = spec.storage
    try:
        if url.startswith("journal:"):
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            return JournalStorage(JournalFileBackend(url[len("journal:") :].removeprefix("//")))
        kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except Exception as exc:  # noqa: BLE001 - any storage problem is the user's to fix
        raise ConfigError(
            f"tune.storage={url}: cannot open the Optuna storage ({type(exc).__name__}: {exc}); use "
            "sqlite:////abs/path/optuna.db, a database URL, or journal:/abs/path/optuna.log"
        ) from None


def sampler(spec: StudySpec, worker: int = 0) -> Any:
    import optuna

    seed = spec.seed + worker
    if spec.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, multivariate=True)


def open_study(spec: StudySpec) -> Any:
    """Create the study, or load it after checking it optimises the same objectives in the same directions."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failed trials: logged by the objective
    store = storage(spec)
    existing = {s.study_name: s for s in optuna.get_all_study_summaries(store, include_best_trial=False)}
    if spec.name in existing:
        found = existing[spec.name]
        names = tuple(found.user_attrs.get(OBJECTIVES_ATTR, ()))
        directions = tuple(d.name.lower() for d in found.directions)
        if names != spec.objectives or directions != spec.directions:
            raise ConfigError(
                f"tune.study_name={spec.name}: that study in {spec.storage} optimises "
                f"{_pairs(names, directions)}, not {_pairs(spec.objectives, spec.directions)}; pick another "
                "tune.study_name (or leave it null for one named after the configuration)"
            )
        log.info("resuming study %s: %d trial(s) stored", spec.name, found.n_trials)
    study = optuna.create_study(
        study_name=spec.name,
        storage=store,
        directions=list(spec.directions),
        sampler=sampler(spec),
        load_if_exists=True,
    )
    study.set_user_attr(OBJECTIVES_ATTR, list(spec.objectives))
    return study


def _pairs(names: tuple[str, ...], directions: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"{d} {n}" for n, d in zip(names, directions, strict=False)) + "]"


def load(spec: StudySpec, worker: int) -> Any:
    """The study as a trial process opens it: its own storage connection and sampler seed."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failed trials: logged by the objective
    return optuna.load_study(study_name=spec.name, storage=storage(spec), sampler=sampler(spec, worker))


def completed(study: Any) -> int:
    import optuna

    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))


def run_trials(study: Any, objective: Any, spec: StudySpec, n_trials: int) -> None:
    """Trials until the study holds ``spec.n_trials`` completed ones (counted in the shared storage, so parallel
    processes stop together), ``n_trials`` were started here, or ``spec.timeout`` passed. A fold that fails
    (diverged training) fails its trial, not the study."""
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    if completed(study) >= spec.n_trials:
        return
    study.optimize(
        objective,
        n_trials=n_trials,
        timeout=spec.timeout,
        catch=(FoldFailed,),
        callbacks=[MaxTrialsCallback(spec.n_trials, states=(TrialState.COMPLETE,))],
        gc_after_trial=False,
    )


def tables(study: Any, spec: StudySpec, space: tuple[SearchParam, ...]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(every trial: number, state, params, validation values; the completed non-dominated ones, ``pareto``)."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {"trial": trial.number, "state": trial.state.name}
        row.update({f"param_{p.name}": trial.params.get(p.name) for p in space})
        values = trial.values or [np.nan] * len(spec.objectives)
        row.update({f"val_{o}": float(v) for o, v in zip(spec.objectives, values, strict=True)})
        row.update({f"val_{r}": trial.user_attrs.get(f"val_{r}", np.nan) for r in spec.recorded})
        rows.append(row)
    trials = pd.DataFrame(rows)
    if trials.empty:
        return trials, trials
    done = trials["state"] == "COMPLETE"
    points = trials[[f"val_{o}" for o in spec.objectives]].to_numpy(dtype=float)
    trials["pareto"] = pareto_mask(points, spec.directions) & done.to_numpy()
    front = trials[trials["pareto"]].drop(columns=["pareto", "state"])
    front = front.drop_duplicates(subset=[c for c in front.columns if c.startswith("param_")])
    front = front.sort_values(f"val_{spec.objectives[0]}", ascending=spec.directions[0] == "minimize")
    return trials, front.reset_index(drop=True)
