"""The metric registry: every metric lenbench reports is declared here once, and every output reads it.

A :class:`Metric` says what a number is (name, human label, unit), how it is computed from what a fold offers
(:class:`FoldEvidence`) or from the whole job (:class:`JobEvidence`), what it needs to exist (a formula, class-1
scores), which direction is better and how many digits a table shows. The fold loop (:func:`lenbench.folds.run_fold`),
``results.csv``/``summary.json``, MLflow, ``import_results``, the report and the console summary all iterate a
:class:`MetricSet` (by default :data:`METRICS`), so a metric added here reaches every output, and a metric left out
reaches none: never only some.

The functions themselves are pure and live in :mod:`lenbench.logic.metrics`; this module only wires them to names.
Order matters where the notebook's ``results.csv`` columns do: the first five are the notebook's, in its order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from lenbench.logic import metrics as m
from lenbench.logic import truth
from lenbench.logic.formula import Formula

Need = Literal["formula", "scores", "truth", "concepts", "interventions"]
Level = Literal["fold", "job"]
NAN = float("nan")


@dataclass(frozen=True)
class Interventions:
    """What a fold offers to the intervention metrics of a method that reads predicted concepts: the predicted
    probabilities of the test rows' concepts ([n, k], which order the uncertainty-first interventions), the labels
    the model gives when the concepts where a mask [n, k] is True take their true values (``labels(mask)``; None: it
    cannot be intervened on), and
    the seed of the random order (the method's)."""

    probabilities: np.ndarray
    labels: Callable[[np.ndarray], np.ndarray | None]
    seed: int

    def accuracy(self, y_true: np.ndarray, percent: int, order: str) -> float:
        """Task accuracy with ``percent`` % of each row's concepts, in ``order``, set to their true values; NaN when
        the model gives no labels under interventions (``labels`` returns None)."""
        labels = self.labels(m.intervention_mask(self.probabilities, percent, order, self.seed))
        return NAN if labels is None else m.model_accuracy(y_true, labels)


@dataclass(frozen=True)
class FoldEvidence:
    """What one scored fold offers to its metrics: test labels, the model's predictions and class-1 scores, the
    explanation (None for a method that gives none, e.g. ``rf``), the test concepts and the timings.

    ``ground_truth`` is the true formula of the target class when the data set knows it (``truth``);
    ``concepts_true`` the true concepts of the test rows when ``x`` holds concepts a concept encoder predicted
    (``concepts``), else None; ``interventions`` what concept interventions need when the method reads predicted
    concepts and can be intervened on (``interventions``), else None."""

    y_true: np.ndarray
    y_pred: np.ndarray
    x: np.ndarray
    concept_names: Sequence[str]
    target_class: int
    formula: Formula | None
    scores: np.ndarray | None
    timings: Mapping[str, float] = field(default_factory=dict)
    ground_truth: Formula | None = None
    concepts_true: np.ndarray | None = None
    interventions: Interventions | None = None

    def has(self, need: Need) -> bool:
        # "formula" and "scores" are fields of that name.
        name = {"truth": "ground_truth", "concepts": "concepts_true"}.get(need, need)
        return getattr(self, name) is not None


@dataclass(frozen=True)
class JobEvidence:
    """What a finished job offers to its job-level metrics: the explained folds' formulas (folds of a method
    without explanations are not in it)."""

    formulas: Sequence[Formula]

    def has(self, need: Need) -> bool:
        return need != "formula" or len(self.formulas) > 0


@dataclass(frozen=True)
class Metric:
    """One reported number. ``compute`` takes :class:`FoldEvidence` (``level="fold"``) or :class:`JobEvidence`
    (``level="job"``) and is only called when every item of ``needs`` is there; otherwise the value is NaN.

    ``higher_is_better`` is None for numbers that are no score of the method (a baseline, a wall-clock time);
    ``compared`` says whether methods are compared on it by paired tests; ``headline`` puts it in the console
    summary; ``baseline`` names the fold metric it is read against (an accuracy against the majority-class
    accuracy): figures draw that baseline wherever they draw this metric."""

    name: str
    label: str
    compute: Callable[..., float]
    higher_is_better: bool | None = True
    digits: int = 3
    needs: frozenset[str] = frozenset()
    level: Level = "fold"
    compared: bool = True
    headline: bool = False
    unit: str = ""
    baseline: str | None = None

    def value(self, evidence: FoldEvidence | JobEvidence) -> float:
        if not all(evidence.has(need) for need in self.needs):  # type: ignore[arg-type]
            return NAN
        return float(self.compute(evidence))

    def format(self, value: float) -> str:
        return "n/a" if value != value else f"{value:.{self.digits}f}"


class MetricSet:
    """An ordered, immutable collection of metrics; :meth:`with_metric` returns a new set with one more."""

    def __init__(self, metrics: Sequence[Metric]) -> None:
        names = [metric.name for metric in metrics]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"metric names must be unique: {', '.join(duplicates)} declared twice")
        self._metrics = tuple(metrics)

    def __iter__(self) -> Iterator[Metric]:
        return iter(self._metrics)

    def __len__(self) -> int:
        return len(self._metrics)

    def __getitem__(self, name: str) -> Metric:
        for metric in self._metrics:
            if metric.name == name:
                return metric
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return any(metric.name == name for metric in self._metrics)

    def with_metric(self, metric: Metric) -> MetricSet:
        """A new set with ``metric`` added at the end (as an installed plugin's metric is)."""
        return MetricSet([*self._metrics, metric])

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(metric.name for metric in self._metrics)

    def at(self, level: Level) -> tuple[Metric, ...]:
        return tuple(metric for metric in self._metrics if metric.level == level)

    @property
    def fold_names(self) -> tuple[str, ...]:
        return tuple(metric.name for metric in self.at("fold"))

    @property
    def compared_names(self) -> tuple[str, ...]:
        return tuple(metric.name for metric in self.at("fold") if metric.compared)

    @property
    def lower_is_better(self) -> frozenset[str]:
        return frozenset(metric.name for metric in self._metrics if metric.higher_is_better is False)

    def score_fold(self, evidence: FoldEvidence) -> dict[str, float]:
        """Every fold-level metric of one fold, NaN where its needs are not met."""
        return {metric.name: metric.value(evidence) for metric in self.at("fold")}

    def score_job(self, evidence: JobEvidence) -> dict[str, float]:
        """Every job-level metric of a finished job."""
        return {metric.name: metric.value(evidence) for metric in self.at("job")}


def _formula_args(e: FoldEvidence, y: np.ndarray) -> tuple:
    return (e.formula, e.x, y, e.concept_names, e.target_class)


FORMULA = frozenset({"formula"})
TRUTH = frozenset({"formula", "truth"})

#: How much of the concepts the intervention metrics set to their true values, in percent of them.
INTERVENTION_PERCENTS = (0, 10, 25, 50, 100)


def intervention_metric_name(order: str, percent: int) -> str:
    """The metric of ``percent`` % interventions in ``order`` (:data:`lenbench.logic.metrics.INTERVENTION_ORDERS`):
    ``intervention_accuracy_<order>_<percent>``; 0 % and 100 % are the same in every order, so they have one
    metric each, ``intervention_accuracy_0`` and ``intervention_accuracy_100``."""
    return (
        f"intervention_accuracy_{percent}"
        if percent in (0, 100)
        else f"intervention_accuracy_{order}_{percent}"
    )


def intervention_points(metrics: MetricSet) -> dict[str, list[tuple[int, str]]]:
    """Per order, the points (percent, metric name) of its intervention curve that ``metrics`` holds, 0 % and 100 %
    in both orders' curves; {} for a set without the family. What the report's intervention figure draws."""
    curves = {
        order: [
            (p, intervention_metric_name(order, p))
            for p in INTERVENTION_PERCENTS
            if intervention_metric_name(order, p) in metrics
        ]
        for order in m.INTERVENTION_ORDERS
    }
    return {order: points for order, points in curves.items() if points}


def _intervention_metrics() -> list[Metric]:
    """The intervention family, declared once: task accuracy on the test rows with each share of the concepts set
    to their true values, in each order (NaN for a method that reads no predicted concepts). Read as a curve, not
    tested pairwise (at 0 % it is the model accuracy, which is)."""
    points = {
        intervention_metric_name(order, percent): (order, percent)
        for percent in INTERVENTION_PERCENTS
        for order in m.INTERVENTION_ORDERS
    }
    names = {"random": "random order", "uncertain": "uncertain first"}
    return [
        Metric(
            name,
            f"accuracy, {percent} % of concepts intervened"
            + ("" if percent in (0, 100) else f" ({names[order]})"),
            lambda e, order=order, percent=percent: e.interventions.accuracy(e.y_true, percent, order),
            needs=frozenset({"interventions"}),
            compared=False,
            baseline="majority_accuracy",
        )
        for name, (order, percent) in points.items()
    ]


#: The metrics of every job, in ``results.csv``'s column order (the notebook's first, then lenbench's).
BUILTIN_METRICS = MetricSet(
    [
        Metric(
            "model_accuracy",
            "model accuracy",
            lambda e: m.model_accuracy(e.y_true, e.y_pred),
            headline=True,
            baseline="majority_accuracy",
        ),
        Metric(
            "explanation_accuracy",
            "explanation accuracy",
            lambda e: m.explanation_accuracy(*_formula_args(e, e.y_true)),
            needs=FORMULA,
            headline=True,
            baseline="majority_accuracy",
        ),
        Metric(
            "explanation_fidelity",
            "fidelity",
            lambda e: m.explanation_fidelity(*_formula_args(e, e.y_pred)),
            needs=FORMULA,
            headline=True,
        ),
        Metric(
            "explanation_complexity",
            "complexity",
            lambda e: e.formula.complexity,
            higher_is_better=False,
            digits=1,
            needs=FORMULA,
            headline=True,
            unit="literals",
        ),
        Metric(
            "explanation_consistency",
            "consistency",
            lambda e: m.consistency(e.formulas),
            needs=FORMULA,
            level="job",
            compared=False,
            headline=True,
        ),
        Metric(
            "elapsed_time",
            "extraction time (s)",
            lambda e: e.timings["extraction"],
            higher_is_better=False,
            needs=FORMULA,
            compared=False,
            headline=True,
            unit="s",
        ),
        Metric(
            "training_time",
            "training time (s)",
            lambda e: e.timings["training"],
            higher_is_better=False,
            compared=False,
            headline=True,
            unit="s",
        ),
        Metric(
            "majority_accuracy",
            "majority-class accuracy",
            lambda e: m.majority_accuracy(e.y_true),
            higher_is_better=None,
            compared=False,
            headline=True,
        ),
        Metric(
            "model_balanced_accuracy",
            "model balanced accuracy",
            lambda e: m.balanced_accuracy(e.y_true, e.y_pred),
        ),
        Metric("model_f1", "model F1", lambda e: m.f1(e.y_true, e.y_pred, positive=e.target_class)),
        # AUROC of the class-1 score against class 1 (the same number as for class 0 with 1 - score).
        Metric(
            "model_auroc",
            "model AUROC",
            lambda e: m.auroc(e.y_true, e.scores, positive=1),
            needs=frozenset({"scores"}),
        ),
        Metric(
            "explanation_balanced_accuracy",
            "explanation balanced accuracy",
            lambda e: m.explanation_balanced_accuracy(*_formula_args(e, e.y_true)),
            needs=FORMULA,
        ),
        Metric(
            "explanation_f1",
            "explanation F1",
            lambda e: m.explanation_f1(*_formula_args(e, e.y_true)),
            needs=FORMULA,
        ),
        Metric(
            "explanation_auroc",
            "explanation AUROC",
            lambda e: m.explanation_auroc(*_formula_args(e, e.y_true)),
            needs=FORMULA,
        ),
        Metric(
            "truth_agreement",
            "agreement with the true formula",
            lambda e: truth.truth_agreement(e.formula, e.ground_truth),
            needs=TRUTH,
        ),
        Metric(
            "truth_exact",
            "true formula recovered",
            lambda e: truth.truth_exact(e.formula, e.ground_truth),
            digits=2,
            needs=TRUTH,
        ),
        Metric(
            "concept_accuracy",
            "concept accuracy",
            lambda e: m.concept_accuracy(e.concepts_true, e.x),
            higher_is_better=None,
            needs=frozenset({"concepts"}),
            compared=False,
        ),
        *_intervention_metrics(),
    ]
)


def installed_metrics(builtin: MetricSet) -> MetricSet:
    """``builtin`` and, after it, every :class:`Metric` an installed package declares under the entry-point group
    ``lenbench.metrics`` (in entry-point name order): how a metric outside lenbench becomes one registry entry."""
    from importlib.metadata import entry_points

    metrics = builtin
    for point in sorted(entry_points(group="lenbench.metrics"), key=lambda p: p.name):
        metric = point.load()
        if not isinstance(metric, Metric):
            raise TypeError(
                f"entry point lenbench.metrics:{point.name} ({point.value}) is not a lenbench Metric"
            )
        metrics = metrics.with_metric(metric)
    return metrics


METRICS = installed_metrics(BUILTIN_METRICS)
