"""Seed batching: the jobs of a sweep that differ only in their seed train their networks together.

``python -m train method=psi -m seed=0,1,2`` is three jobs on the same folds (``cv.split_seed`` does not follow the
seed). Hydra's launcher runs them one after another in one process; lenbench's launcher
(``hydra/launcher=seed_batching``, the default) first groups them (:func:`seed_groups`) and hands each job its
group's :class:`SeedBatch` (:func:`batch_scope`). The first job of a group that trains together fits every seed's
networks in its fold modules, records its own folds and leaves the others' fold results in the batch; each later
job of the group records the results left for its seed, trained with exactly its configuration, instead of
training again. In ``exact`` batching every network is bit-identical to its job trained alone, so a sweep's records
do not depend on whether it was batched.

A job only trains a seed with it when their resolved configurations differ in nothing but the seed (a data set
whose concepts follow the seed, such as an encoder's, is not shared), when that seed's job is not FINISHED in the
store already, and when the method trains networks together (not a tree, nor stock callbacks).
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from lenbench.config import flatten

if TYPE_CHECKING:
    from lenbench.folds import Companion, FoldPlan

log = logging.getLogger(__name__)

# Keys that hold the seed itself: a sweep's jobs that differ only there are one group.
SEED_KEYS = frozenset({"seed", "method.explainer.seed"})


@dataclass
class SeedBatch:
    """The seeds of one group of a sweep's jobs, in job order, and the fold results trained for seeds whose job
    has not run yet (``left[seed]``), with the run name of the job that trained them."""

    seeds: tuple[int, ...]
    left: dict[int, tuple[list[Any], str]] = field(default_factory=dict)

    def leave(self, seed: int, results: Sequence[Any], trained_by: str) -> None:
        """Keep ``results`` for the job of ``seed``."""
        self.left[seed] = (list(results), trained_by)

    def take(self, seed: int) -> tuple[list[Any], str] | None:
        """The results left for ``seed`` (and who trained them), once: a rerun of the job trains again."""
        return self.left.pop(seed, None)


_CURRENT: contextvars.ContextVar[SeedBatch | None] = contextvars.ContextVar(
    "lenbench_seed_batch", default=None
)


def current_batch() -> SeedBatch | None:
    """The batch of the job running now (set by the seed-batching launcher), None outside one."""
    return _CURRENT.get()


@contextmanager
def batch_scope(batch: SeedBatch | None) -> Iterator[None]:
    """Run a job with ``batch`` as its :func:`current_batch`."""
    token = _CURRENT.set(batch)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def seed_groups(configs: Sequence[Mapping[str, Any]]) -> list[list[int]]:
    """Indices of the jobs whose (unresolved) configurations are equal but for ``seed``, in job order; jobs
    alone in their group, or whose seed repeats another's, form groups of one."""
    groups: dict[str, list[int]] = {}
    for index, config in enumerate(configs):
        key = repr(sorted((k, repr(v)) for k, v in flatten(dict(config)).items() if k != "seed"))
        groups.setdefault(key, []).append(index)
    result = []
    for members in groups.values():
        seeds = [configs[i].get("seed") for i in members]
        result += [members] if len(set(map(repr, seeds))) == len(seeds) else [[i] for i in members]
    return sorted(result)


def differs_only_in_seed(resolved: Mapping[str, Any], other: Mapping[str, Any]) -> bool:
    """Whether two resolved job configurations differ in nothing but their seed keys (:data:`SEED_KEYS`)."""
    a, b = flatten(dict(resolved)), flatten(dict(other))
    return all(a.get(k) == b.get(k) for k in set(a) | set(b) if k not in SEED_KEYS)


def plan_seed_batch(
    batch: SeedBatch | None,
    cfg: Any,
    run_name: str,
    plan: FoldPlan,
    apart: Callable[[Any, dict[str, Any]], bool],
    explainer_factory: Callable[[Any], Callable[[], Any]],
) -> tuple[FoldPlan, dict[str, str]]:
    """A job's ``plan`` with what its seed batch gives it, and the job's tags saying so: the folds an earlier job of
    the batch trained for it, kept (``seed_batch_trained_by``: that job's run); else, when it is the first of its
    batch to train, the later seeds it trains with it as companions (``seed_batch``: the seeds trained together):
    same resolved configuration but for the seed, not ``apart(config, resolved)`` (the job's own rules: settings it
    refuses, FINISHED in the store), folds that train together and none kept from an interrupted run.
    ``explainer_factory(config)``: the explainer factory of another seed's config."""
    seed = int(cfg.seed)
    taken = batch.take(seed) if batch is not None else None
    if taken is not None:
        log.info("%s: %d fold(s) trained by %s (seed batching)", run_name, len(taken[0]), taken[1])
        marked = {r.fold: replace(r, info={**r.info, "trained_by": taken[1]}) for r in taken[0]}
        return plan.keeping(marked), {"seed_batch_trained_by": taken[1]}
    if batch is None or seed not in batch.seeds or not plan.together or plan.kept:
        return plan, {}
    # deferred: the launcher imports this module at start-up, folds the methods
    from omegaconf import OmegaConf

    from lenbench.folds import Companion

    own = OmegaConf.to_container(cfg, resolve=True)
    companions = []
    for other_seed in batch.seeds[batch.seeds.index(seed) + 1 :]:
        other = cfg.copy()
        other.seed = other_seed
        resolved = OmegaConf.to_container(other, resolve=True)
        if differs_only_in_seed(own, resolved) and not apart(other, resolved):
            companions.append(Companion(other_seed, explainer_factory(other)))
    if not companions:
        return plan, {}
    seeds = [seed, *(c.seed for c in companions)]
    log.info(
        "%s: trains seed(s) %s of this sweep with its folds (seed batching; their jobs record them)",
        run_name,
        ", ".join(str(s) for s in seeds[1:]),
    )
    return replace(plan, companions=tuple(companions)), {"seed_batch": ",".join(str(s) for s in seeds)}


def trained_seed_tags(
    seed: int,
    companions: Sequence[Companion],
    companion_folds: Mapping[int, Sequence[Any]],
    folds: Sequence[int],
) -> tuple[dict[str, str], dict[int, dict[str, str]]] | None:
    """The ``seed_batch`` tags as the training went, when it did not go as planned: a group of folds whose training
    with the other seeds failed trained alone (:func:`lenbench.fold_runner.iter_folds`), so those folds, and the
    job when a seed got none, name only the seeds really trained with them. ``companion_folds``: per companion
    (by position) the fold results trained for it; ``folds``: the job's folds. None when all went as planned."""
    trained = [{r.fold for r in companion_folds.get(i, ())} for i in range(len(companions))]

    def seeds(included: list[bool]) -> str:
        return ",".join(
            str(s) for s in [seed, *(c.seed for c, keep in zip(companions, included, strict=True) if keep)]
        )

    job = seeds([bool(t) for t in trained])
    per_fold = {f: seeds([f in t for t in trained]) for f in folds}
    planned = seeds([True] * len(companions))
    if job == planned and all(v == planned for v in per_fold.values()):
        return None
    return {"seed_batch": job}, {f: {"seed_batch": v} for f, v in per_fold.items()}
