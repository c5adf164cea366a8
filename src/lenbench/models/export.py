"""What a fold's fitted explainer leaves behind to predict and explain new rows: :class:`ModelExport`.

Built in the fold's worker process right after the fold is scored (:func:`export_model`), carried back to the job's
process inside the :class:`~lenbench.folds.FoldResult` (so it must pickle small: numpy weights, a fitted
scikit-learn/imodels estimator, strings), and logged there as an MLflow model (:mod:`lenbench.models.store`).
Every explainer gives its fitted model with ``exported()`` (:class:`~lenbench.explainers.base.FittedModel`: it
predicts, scores and explains rows); the rest (concept names, global formula, the preprocessing from raw columns to
concepts, versions) is the same for every method and added here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lenbench.data.base import ConceptDataset, Fold
    from lenbench.explainers.base import Explainer
    from lenbench.logic.formula import Formula

# Bumped when the layout of ModelExport (or of the logged model) changes; a model of another format is refused on
# load. 3: the MLmodel records the SHA-256 of the model's files, raw columns their training range.
FORMAT_VERSION = 3


def lenbench_version() -> str:
    try:
        return version("lenbench")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


@dataclass(frozen=True)
class ModelExport:
    """A fitted explainer as plain data: enough to predict, score and explain rows without the explainer.

    ``model``: the explainer's fitted model (``predict_and_score``, ``explain_local``); ``requires``: the
    distributions it needs besides lenbench's own; ``formula``: the global explanation of ``target_class`` (None
    when the method gives none);
    ``preprocessing``: how raw table columns become the concepts (None: the data set is concepts already).
    """

    method: str
    concept_names: tuple[str, ...]
    target_class: int
    formula: str | None
    model: Any = field(repr=False)
    requires: tuple[str, ...] = ()
    preprocessing: dict[str, Any] | None = field(default=None, repr=False)
    label: str = "y"
    data: dict[str, Any] = field(default_factory=dict)
    fold: int | None = None
    lenbench_version: str = field(default_factory=lenbench_version)
    format_version: int = FORMAT_VERSION

    def metadata(self) -> dict[str, Any]:
        """What the MLmodel file records about the model (read before loading it, e.g. to check the version)."""
        return {
            "lenbench_version": self.lenbench_version,
            "lenbench_format": self.format_version,
            "method": self.method,
            "target_class": self.target_class,
            "formula": self.formula if self.formula is not None else "",
            "data": self.data.get("name", ""),
            "label": self.label,
            "fold": -1 if self.fold is None else self.fold,
            "input": "raw" if self.preprocessing else "concepts",
        }


def export_model(
    explainer: Explainer, fold: Fold, formula: Formula, target_class: int, dataset: ConceptDataset
) -> ModelExport | None:
    """The fold's fitted ``explainer`` as a :class:`ModelExport` (None when the method cannot be exported)."""
    from lenbench.models.preprocess import raw_encoding  # deferred: it imports pandas

    model = explainer.exported()
    if model is None:
        return None
    return ModelExport(
        method=explainer.name,
        concept_names=tuple(str(n) for n in fold.concept_names),
        target_class=int(target_class),
        formula=str(formula) if explainer.provides_explanations else None,
        model=model,
        requires=tuple(explainer.requires),
        preprocessing=raw_encoding(fold.preprocessing),
        label=dataset.label,
        data={"name": dataset.name, "checksum": dataset.checksum or ""},
        fold=int(fold.index),
    )
