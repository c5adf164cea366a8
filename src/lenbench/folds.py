"""One fold of a job: which folds a job runs (:class:`CVConfig`), how they train (:class:`FoldPlan`), and fitting,
explaining and scoring one of them.

:func:`run_fold` is the same for every method: fit the explainer on the fold's train+validation rows (its training
progress going to an optional sink), predict the test rows, explain the target class (timed apart from training),
and score model and formula on the test rows with every metric of the registry (:mod:`lenbench.scoring`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from lenbench.data.base import ConceptDataset, Fold
from lenbench.data.encoded import raw_input_dataset
from lenbench.data.split import check_split, split_fold
from lenbench.errors import ConfigError
from lenbench.explainers.base import Explainer
from lenbench.logic.formula import Formula
from lenbench.logic.metrics import concept_accuracies
from lenbench.logic.truth import concept_differences
from lenbench.models import export
from lenbench.progress import ProgressSink
from lenbench.scoring import METRICS, FoldEvidence, Interventions, MetricSet


@dataclass(frozen=True)
class CVConfig:
    """Which folds a job runs; ``split_seed`` stays fixed across model seeds so every seed sees the same folds."""

    n_splits: int = 10
    split_seed: int = 42
    folds: Sequence[int] | None = None
    val_size: float = 0.3
    inner_split_seed: int = 42
    n_jobs: int = 1

    def fold(self, dataset: ConceptDataset, fold_index: int) -> Fold:
        """Fold ``fold_index`` of ``dataset`` under these settings (:func:`~lenbench.data.split.split_fold`)."""
        return split_fold(
            dataset, fold_index, self.n_splits, self.split_seed, self.val_size, self.inner_split_seed
        )

    def fold_indices(self) -> list[int]:
        if self.folds is None:
            return list(range(self.n_splits))
        if isinstance(self.folds, (str, bytes)) or not hasattr(self.folds, "__iter__"):
            raise ConfigError(
                f"cv.folds={self.folds!r}: must be null or a list of fold numbers such as [0,1]"
            )
        folds = [int(f) for f in self.folds]
        if not folds or len(set(folds)) != len(folds):
            raise ConfigError(
                f"cv.folds={folds}: give each fold once, e.g. [0,1], or null for all {self.n_splits} folds"
            )
        if any(not 0 <= f < self.n_splits for f in folds):
            raise ConfigError(f"cv.folds={folds}: folds must lie in 0..{self.n_splits - 1} (cv.n_splits)")
        return folds


def check_cv(dataset: ConceptDataset, cv: CVConfig) -> None:
    """Validate the CV settings against the data before any training; messages name the ``cv.*`` key."""
    for fold_index in cv.fold_indices():
        try:
            check_split(dataset, fold_index, cv.n_splits, cv.val_size)
        except ValueError as exc:
            raise ConfigError(f"cv.{exc}") from None


@dataclass
class FoldResult:
    fold: int
    formula: Formula
    metrics: dict[str, float]
    loss_curve: list[tuple[int, float]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    explained: bool = True  # False: the method gives no explanation (rf), its formula metrics are NaN
    # a run id: this fold was not trained again, its result comes from that run
    reused_from: str | None = None
    splits: dict[str, Any] = field(default_factory=dict)  # train/validation/test rows' positions in the data
    model: Any = None  # the fitted explainer as a lenbench.models.ModelExport, when the job logs models
    member: int = 0  # the position in FoldPlan.members of the explainer that made it: 0 is the job's own


@dataclass(frozen=True)
class Companion:
    """Another seed of the sweep whose networks this job trains with its own (``make_explainer`` builds its
    explainer exactly as that seed's job would)."""

    seed: int
    make_explainer: Callable[[], Any]


@dataclass(frozen=True)
class FoldPlan:
    """How a job's folds train, decided once per job: ``make_explainer`` builds the explainer of each fold, ``cv``
    says which folds and in how many processes; ``together``: the explainer's networks train together (the folds
    of a process in one module: :func:`lenbench.fold_runner.fold_groups`); ``kept``: folds recorded without
    training them (reused from an interrupted earlier run, or trained for this job by an earlier job of its seed
    batch); ``companions``: the other seeds of its seed batch whose networks train with each of its folds
    (:mod:`lenbench.seed_batch`)."""

    make_explainer: Callable[[], Explainer]
    cv: CVConfig
    together: bool
    kept: Mapping[int, FoldResult] = field(default_factory=dict)
    companions: Sequence[Companion] = ()

    @classmethod
    def alone(cls, make_explainer: Callable[[], Explainer], cv: CVConfig) -> FoldPlan:
        """Every fold of ``cv`` trained by this job alone. One explainer is built before any training: it says if
        the folds train together, and its settings must read back by name (the contract's ``get_params``)."""
        explainer = make_explainer()
        explainer.get_params()
        return cls(make_explainer, cv, explainer.trains_together)

    def keeping(self, results: Mapping[int, FoldResult]) -> FoldPlan:
        """This plan, also recording ``results`` of its folds not kept already instead of training them."""
        indices = self.cv.fold_indices()
        new = {f: r for f, r in results.items() if f in indices and f not in self.kept}
        return replace(self, kept={**self.kept, **new})

    @property
    def members(self) -> list[Callable[[], Explainer]]:
        """The explainer factory of each member of a group's training: the job's own, then its companions'."""
        return [self.make_explainer, *(c.make_explainer for c in self.companions)]


def run_fold(
    dataset: ConceptDataset,
    fold_index: int,
    cv: CVConfig,
    make_explainer: Callable[[], Explainer],
    target_class: int = 1,
    metrics: MetricSet = METRICS,
    progress: ProgressSink | None = None,
    export_model: bool = False,
) -> FoldResult:
    """Fit, predict, explain and score one fold. Pure of side effects but for the explainer's own training and
    the progress it reports to ``progress``. ``export_model``: the result carries the fitted model as plain data
    (:func:`lenbench.models.export.export_model`), for the job's process to log."""
    return run_folds(
        dataset, [fold_index], cv, [make_explainer], target_class, metrics, [progress], export_model
    )[0]


def run_folds(
    dataset: ConceptDataset,
    fold_indices: Sequence[int],
    cv: CVConfig,
    members: Sequence[Callable[[], Explainer]],
    target_class: int = 1,
    metrics: MetricSet = METRICS,
    progress: Sequence[ProgressSink | None] | None = None,
    export_model: bool = False,
) -> list[FoldResult]:
    """:func:`run_fold` for several folds whose explainers are fitted together (``Explainer.fit_many``: the
    networks of the folds train in one module), then predicted, explained and scored one by one. ``members``: one
    explainer factory per member (:attr:`FoldPlan.members`: the job's own, then other seeds of a sweep) whose
    networks of every fold train in that module; results come member after member, ``member`` numbering them
    (only the first member's training reports to ``progress``); the job's own fold records the training time of
    every member's network of that fold, the others' folds none (NaN: their jobs did not train)."""
    sinks = list(progress) if progress is not None else [None] * len(fold_indices)
    explainers = [make().observe(None if m else sink) for m, make in enumerate(members) for sink in sinks]
    if explainers[
        0
    ].reads_inputs:  # the true concepts and raw inputs, no concept encoder (lenbench.data.encoded)
        dataset = raw_input_dataset(dataset, explainers[0].name)
    folds = [cv.fold(dataset, fold_index) for fold_index in fold_indices]
    copies = len(members)
    seconds = type(explainers[0]).fit_many(explainers, folds * copies)
    seconds = [e.info().get("training_time", s) for e, s in zip(explainers, seconds, strict=True)]
    # Other seeds trained with each fold: the job's own fold holds their time once, theirs has none.
    if copies > 1:
        seconds = [sum(seconds[i :: len(folds)]) if i < len(folds) else np.nan for i in range(len(seconds))]
    numbers = [m for m in range(copies) for _ in folds]
    return [
        replace(
            _evaluate(dataset, index, fold, explainer, training, target_class, metrics, export_model),
            member=m,
        )
        for index, fold, explainer, training, m in zip(
            list(fold_indices) * copies, folds * copies, explainers, seconds, numbers, strict=True
        )
    ]


def _evaluate(
    dataset: ConceptDataset,
    fold_index: int,
    fold: Fold,
    explainer: Explainer,
    training_time: float,
    target_class: int,
    metrics: MetricSet,
    export_model: bool,
) -> FoldResult:
    """Predict, explain and score one fold with its fitted explainer (on the test rows' raw inputs when it reads
    them: its formula is then scored on the concepts it predicts there)."""
    rows, predicted = scored_rows(explainer, fold)
    y_pred = explainer.predict(rows)
    start = time.perf_counter()
    formula = explainer.explain(fold, target_class)
    extraction_time = time.perf_counter() - start

    info = {k: v for k, v in explainer.info().items() if k != "training_time"}  # run_folds read it
    if getattr(
        fold, "preprocessing", None
    ):  # what was fitted on this fold's rows (bin edges, imputed values)
        info["preprocessing"] = fold.preprocessing
    loss_curve = [(int(e), float(v)) for e, v in info.pop("loss_curve", [])]
    explained = explainer.provides_explanations
    truth, concepts_true, recovery = recovery_evidence(
        dataset, fold, formula if explained else None, target_class, predicted
    )
    info.update(recovery)  # concepts wrongly used / missed, accuracy per predicted concept
    evidence = FoldEvidence(
        y_true=fold.y_test,
        y_pred=y_pred,
        x=fold.x_test if predicted is None else predicted,
        concept_names=fold.concept_names,
        target_class=target_class,
        formula=formula if explained else None,
        scores=explainer.scores(rows),
        timings={"training": float(training_time), "extraction": extraction_time},
        ground_truth=truth,
        concepts_true=concepts_true,
        interventions=intervention_evidence(explainer, fold, rows, concepts_true),
    )
    return FoldResult(
        fold=fold_index,
        formula=formula,
        metrics=metrics.score_fold(evidence),
        loss_curve=loss_curve,
        info=info,
        explained=explained,
        splits={"train": fold.train_index, "validation": fold.val_index, "test": fold.test_index},
        model=export.export_model(explainer, fold, formula, target_class, dataset) if export_model else None,
    )


def scored_rows(explainer: Explainer, fold: Fold) -> tuple[np.ndarray, np.ndarray | None]:
    """(the test rows a fitted explainer reads: raw inputs when it reads them, else concepts; the concepts it
    predicts for them, on which its formula is scored: None for a method on concept rows, which are scored)."""
    if not explainer.reads_inputs:
        return fold.x_test, None
    return fold.inputs_test, explainer.predict_concepts(fold.inputs_test)


def intervention_evidence(
    explainer: Explainer, fold: Fold, rows: np.ndarray, concepts_true: np.ndarray | None
) -> Interventions | None:
    """What the intervention metrics read for a fitted explainer scored on ``rows`` (:func:`scored_rows`) whose
    true concepts are ``concepts_true``; None (their values NaN) when it reads no predicted concepts (true concepts,
    a black box); a method that cannot be intervened on scores NaN. A method on raw inputs intervenes itself (``predict_with_concepts``,
    ordered by its ``concept_probabilities``); a method on an encoder's concepts predicts its scored rows again with
    the intervened columns set to the true concepts, ordered by the encoder's probabilities. The random order's
    seed is the method's (``seed``, 0 for a method without one)."""
    if concepts_true is None:
        return None
    truth = (np.asarray(concepts_true) > 0.5).astype(np.float32)
    seed = int(explainer.get_params().get("seed") or 0)
    if not explainer.reads_inputs:
        if fold.concept_probabilities_test is None:
            return None
        return Interventions(
            fold.concept_probabilities_test, lambda mask: explainer.predict(np.where(mask, truth, rows)), seed
        )
    probabilities = explainer.concept_probabilities(rows)
    if probabilities is None:
        return None
    return Interventions(probabilities, lambda mask: explainer.predict_with_concepts(rows, truth, mask), seed)


def target_truth(dataset: ConceptDataset, target_class: int) -> Formula | None:
    """The true formula of ``target_class``: the data set's ``ground_truth`` (class 1), its negation for class 0 of
    a two-class set, None when the data set knows none."""
    if dataset.ground_truth is None:
        return None
    truth = Formula.parse(dataset.ground_truth)
    if target_class == 1:
        return truth
    return ~truth if target_class == 0 and dataset.n_classes == 2 else None


def recovery_evidence(
    dataset: ConceptDataset,
    fold: Fold,
    formula: Formula | None,
    target_class: int,
    predicted: np.ndarray | None = None,
) -> tuple[Formula | None, np.ndarray | None, dict[str, Any]]:
    """(the true formula of the target class, the true concepts of the test rows when the concepts scored were
    predicted, what the fold's record says about both): the concepts the formula wrongly uses and misses, and the
    accuracy of each predicted concept on the test rows (``concept_accuracy.<name>``). ``predicted``: the test rows'
    concepts a concept model predicted (its fold's ``x_test`` are then the true ones); None: the fold's ``x_test``
    are the concepts scored, predicted by a concept encoder when ``dataset.concepts_predicted``."""
    truth = target_truth(dataset, target_class)
    info: dict[str, Any] = {}
    if truth is not None and formula is not None:
        wrong, missed = concept_differences(formula, truth)
        info |= {"truth_wrongly_used": wrong, "truth_missed": missed}
        info |= {"truth_wrongly_used_count": len(wrong), "truth_missed_count": len(missed)}
    if predicted is not None:
        concepts_true, scored = fold.x_test, predicted
    else:
        concepts_true, scored = (
            (dataset.x[fold.test_index] if dataset.concepts_predicted else None),
            fold.x_test,
        )
    if concepts_true is not None:
        accuracies = concept_accuracies(concepts_true, scored)
        info |= {
            f"concept_accuracy.{n}": float(a) for n, a in zip(fold.concept_names, accuracies, strict=True)
        }
    return truth, concepts_true, info


class FoldFailed(RuntimeError):
    """A fold raised: names the fold so the user knows where, keeps the original as ``__cause__``."""

    def __init__(self, fold: int, error: BaseException) -> None:
        super().__init__(f"fold {fold} failed: {type(error).__name__}: {error}")
        self.fold = fold

    @classmethod
    def of_group(cls, folds: Sequence[int], error: BaseException) -> FoldFailed:
        """The failure of folds trained together: the fold of the network that diverged, else the first (network
        ``i`` trains fold ``folds[i % len(folds)]``: a sweep's other seeds follow the job's own folds)."""
        network = getattr(error, "network", 0)
        return cls(
            folds[network % len(folds)] if isinstance(network, int) and network >= 0 else folds[0], error
        )
