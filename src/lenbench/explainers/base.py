"""The one contract every method keeps, network or not, in tree or in a plugin: :class:`Explainer`.

A method is one class (and its ``conf/method/<name>.yaml``, with ``conf/search/<name>.yaml`` for tuning). What it
implements, and what lenbench does with it:

- ``__init__(*, seed, ...)`` with keyword parameters stored under their own names (those of a base class it hands
  ``**kwargs`` on to count as its own, :func:`declared_parameters`): the config's
  ``method.explainer`` block builds it (``_target_``), :meth:`Explainer.get_params` reads them back (the job record,
  checks that folds may train together);
- ``fit(fold)`` on the fold's train+validation rows, ``predict(x)`` labels, ``scores(x)`` class-1 probabilities
  (None: no AUROC), ``explain(fold, target_class)`` the class's formula over concept names: scored by every metric
  of :mod:`lenbench.scoring`, tracked in ``results.csv`` and MLflow, compared in the report;
- ``info()``: extra per-fold figures (training time, fall-backs, ...), recorded beside the metrics;
- ``exported()``: the fitted model that is logged to MLflow and predicts and explains new rows
  (``lenbench.explain``, ``mlflow models predict``). It keeps :class:`FittedModel`: ``predict_and_score(x)`` and
  ``explain_local(x, labels, names)`` (each row's local explanation as ``(concept, negated)`` literals, or None).
  By default it is the fitted explainer itself, pickled (fine for a scikit-learn estimator and a few settings);
  network methods export their weights as plain data
  (:class:`~lenbench.models.network.NetworkModel`); None: the method cannot be saved.
  ``requires`` names the distributions the model needs beside lenbench's own (pinned in the logged model).

What it is given: a :class:`~lenbench.data.base.Fold` holds the fold's concept rows ``x_*`` (float32 in [0, 1], a
concept is true where > 0.5) with labels ``y_*`` and ``concept_names``: ``fit`` uses ``x_trainval``/``y_trainval``
(or ``x_train``/``x_val``), ``explain`` the validation rows ``x_val``/``y_val``; the test rows are lenbench's, for
scoring. ``explain_local`` is given rows, the labels the model predicted for them, and the concept names. A formula
is a :class:`~lenbench.logic.formula.Formula` in DNF: ``Formula.conjunction([(name, negated), ...])``,
``Formula.disjunction([...])``, ``Formula.true()``/``false()``, minimised by
:func:`lenbench.logic.simplify.simplify` (``.formula``). Class attributes: ``name`` (the method's name in tables and
models; the config's ``name:`` names the job), ``provides_explanations`` (False: an accuracy reference, its
explanation metrics NaN), ``requires`` (the distribution defining the model's class is pinned without it),
``uses_torch`` (False: the job never imports torch). ``info()`` values are numbers, strings or lists of them
(JSON). Settings are checked with :mod:`lenbench.validation` (``check_int``, ``check_positive``, ``check_choice``,
``check_seed``, ...): a bad value is one line, exit 2.

Methods on raw inputs (concept models: CBM, ...; a black box): a class with ``reads_inputs = True`` is given the
fold of the data set's *true* concepts beside its raw inputs (``Fold.inputs_*``, float32 [n, d];
:func:`lenbench.data.encoded.raw_input_dataset`: no concept encoder runs, whatever ``data.concepts_from`` says, and a
data set without raw inputs is one line, exit 2, before training). It fits on ``inputs_trainval`` with the true
concepts ``x_trainval`` and labels ``y_trainval``; ``predict``, ``scores`` and ``concept_probabilities`` take raw
input rows; ``explain`` reads ``fold.inputs_val`` (its formula is still over concept names). A concept model says
what concepts it predicts with ``concept_probabilities(inputs)`` ([n, k] in [0, 1]; None: it has none, as a black
box): lenbench thresholds them at 0.5 (:meth:`Explainer.predict_concepts`) and scores the formula and the concept
accuracy on the test rows' *predicted* concepts against the true ones, as for a LEN on an encoder's concepts.
``predict_with_concepts(inputs, concepts, mask)`` gives the task labels when the concepts where ``mask`` is True are
replaced by ``concepts`` (a concept intervention; None: the method cannot be intervened on). Its model is not
exported yet (``exported()`` is None: a logged model reads concept columns).

Network methods subclass :class:`~lenbench.explainers.network.NetworkExplainer`, which implements all of the above
from a network, a loss and a head; networks on raw inputs subclass
:class:`~lenbench.explainers.raw_inputs.RawInputsExplainer`. ``examples/plugin/`` is a complete method in one file, outside this package.
"""

from __future__ import annotations

import inspect
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from lenbench.data.base import Fold
from lenbench.logic.formula import Formula

if TYPE_CHECKING:
    from lenbench.progress import ProgressSink


class FittedModel(Protocol):
    """What an exported model does with new concept rows ``x`` [n, k]."""

    def predict_and_score(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def explain_local(
        self, x: np.ndarray, labels: np.ndarray, names: Sequence[str]
    ) -> list[list[tuple[str, bool]]] | None: ...


class Explainer(ABC):
    """fit on a fold's train+validation rows, predict labels, explain a class as a formula over concept names.

    ``info()`` returns extra per-fold figures worth tracking (training time, simplification fall-backs, ...).
    """

    name: str = "explainer"
    # False for accuracy-only references (e.g. a random forest): their explanation metrics are recorded as NaN.
    provides_explanations: bool = True
    # Distributions an exported model needs besides lenbench, torch, scikit-learn, numpy and pandas.
    requires: ClassVar[tuple[str, ...]] = ()
    # False for methods that never compute with torch: their jobs set no torch threads and do not import it.
    uses_torch: ClassVar[bool] = True
    # True for methods on raw inputs (concept models, a black box): given the fold of the true concepts with its raw
    # inputs (``Fold.inputs_*``), they predict, score and explain from raw input rows (module docstring).
    reads_inputs: ClassVar[bool] = False
    # Where training progress goes while ``fit`` runs (set by the fold loop with :meth:`observe`); methods that do
    # not train in epochs ignore it.
    progress: ProgressSink | None = None

    def observe(self, progress: ProgressSink | None) -> Explainer:
        """Send training progress to ``progress`` during the next fits (None: nowhere)."""
        self.progress = progress
        return self

    @abstractmethod
    def fit(self, fold: Fold) -> Explainer: ...

    @property
    def trains_together(self) -> bool:
        """Whether several folds' explainers of this configuration fit together (:meth:`fit_many` batches them)."""
        return False

    @classmethod
    def fit_many(cls, explainers: Sequence[Explainer], folds: Sequence[Fold]) -> list[float]:
        """Fit explainer ``i`` on fold ``i``; returns each one's training seconds. One after another here; network
        explainers train together in one module."""
        seconds = []
        for explainer, fold in zip(explainers, folds, strict=True):
            start = time.perf_counter()
            explainer.fit(fold)
            seconds.append(time.perf_counter() - start)
        return seconds

    @abstractmethod
    def predict(self, x: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def explain(self, fold: Fold, target_class: int = 1) -> Formula: ...

    def scores(self, x: np.ndarray) -> np.ndarray | None:
        """Score (probability) of class 1 per row, for the model's AUROC; None when the method has none (NaN).

        Not abstract so that methods without scores keep working; ``predict`` stays the source of labels.
        """
        return None

    def concept_probabilities(self, x: np.ndarray) -> np.ndarray | None:
        """The probability of each concept per row of raw inputs ``x`` ([n, k]); None when the method predicts no
        concepts of its own (it reads concept rows, or it is a black box)."""
        return None

    def predict_concepts(self, x: np.ndarray) -> np.ndarray | None:
        """The concepts the method predicts for raw input rows ``x``: :meth:`concept_probabilities` above 0.5, as
        float32 0/1 [n, k] (what its formula and concept accuracy are scored on); None when it predicts none."""
        probabilities = self.concept_probabilities(x)
        return None if probabilities is None else (np.asarray(probabilities) > 0.5).astype(np.float32)

    def predict_with_concepts(
        self, x: np.ndarray, concepts: np.ndarray, mask: np.ndarray
    ) -> np.ndarray | None:
        """Labels of raw input rows ``x`` when the concepts where ``mask`` [n, k] is True take the values of
        ``concepts`` [n, k] instead of the predicted ones (a concept intervention); None: no intervention."""
        return None

    def info(self) -> dict[str, Any]:
        return {}

    def check_inputs(self, n_inputs: int) -> None:
        """Raise ConfigError, before any training, for settings that cannot work on ``n_inputs`` concepts (the
        job calls it once the data set is loaded); nothing to check by default."""
        return None

    def get_params(self) -> dict[str, Any]:
        """The settings the explainer was built with, by name: each keyword of ``__init__`` read from the attribute
        of the same name (scikit-learn's accessor)."""
        return declared_settings(self)

    def exported(self) -> FittedModel | None:
        """The fitted model to log and to predict and explain new rows with (see the module docstring); None for
        a method on raw inputs: a logged model reads concept columns."""
        return None if self.reads_inputs else self

    def predict_and_score(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(labels int64 [n], class-1 scores float64 [n], 0 where the method has none): the exported model's face."""
        scores = self.scores(x)
        return (
            np.asarray(self.predict(x)).astype(np.int64),
            np.zeros(len(x)) if scores is None else np.asarray(scores).astype(np.float64),
        )

    def explain_local(
        self, x: np.ndarray, labels: np.ndarray, names: Sequence[str]
    ) -> list[list[tuple[str, bool]]] | None:
        """Each row's local explanation as ``(concept, negated)`` literals; None when the method has none."""
        return None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "progress": None}  # a progress sink belongs to the process that trained


def declared_parameters(target: Callable[..., Any]) -> list[str]:
    """The named parameters of a function, or of a class's ``__init__`` and of each base's ``__init__`` that it
    hands ``**kwargs`` on to: a setting several methods share (the simplification budget) is declared once."""
    inits = (
        [vars(c)["__init__"] for c in target.__mro__[:-1] if "__init__" in vars(c)]
        if isinstance(target, type)
        else [target]
    )
    named = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    names: list[str] = []
    for init in inits:
        parameters = inspect.signature(init).parameters.values()
        names += [p.name for p in parameters if p.kind in named and p.name != "self" and p.name not in names]
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
            break
    return names


def declared_settings(obj: object) -> dict[str, Any]:
    """Each parameter of :func:`declared_parameters` read from the attribute of the same name: how an explainer's or
    a callback's settings are read back."""
    names = declared_parameters(type(obj))
    missing = [name for name in names if not hasattr(obj, name)]
    if missing:
        raise TypeError(
            f"{type(obj).__qualname__} keeps its __init__ argument(s) {', '.join(missing)} under no attribute of the "
            "same name: store each setting as self.<name> (lenbench reads settings back by name)"
        )
    return {name: getattr(obj, name) for name in names}
