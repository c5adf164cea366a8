"""The MLflow face of a fold's model: :class:`LenbenchModel`, an ``mlflow.pyfunc.PythonModel``, and its signature.

``mlflow.pyfunc.load_model("runs:/<fold run>/<its name>").predict(frame)`` (or ``mlflow models predict``/``serve``) returns
the columns of :func:`lenbench.models.frames.explain_frame`. The model object holds the
:class:`~lenbench.models.export.ModelExport` only (plain data); the network or estimator is rebuilt in
:meth:`LenbenchModel.load_context`, after the lenbench version that logged it has been checked.
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import pandas as pd

from lenbench.errors import UserError
from lenbench.models.ensemble import ensemble_frame
from lenbench.models.export import FORMAT_VERSION, ModelExport, lenbench_version
from lenbench.models.frames import OUTPUT_COLUMNS, concept_rows, explain_frame, warn_outside
from lenbench.models.predict import Predictor


class ModelVersionError(UserError):
    """The model was logged by another lenbench version (or model format) than the one loading it."""


def check_version(logged_version: str, logged_format: int, where: str = "model") -> None:
    """Refuse a model another lenbench version logged: its weights and preprocessing may mean something else."""
    here = lenbench_version()
    if str(logged_version) != here or int(logged_format) != FORMAT_VERSION:
        other = f"use lenbench {logged_version} to load it, or " if str(logged_version) != here else ""
        raise ModelVersionError(
            f"{where} was logged by lenbench {logged_version} (model format {logged_format}), this is lenbench "
            f"{here} (format {FORMAT_VERSION}); fix: {other}train the model again with this version"
        )


class LenbenchModel(mlflow.pyfunc.PythonModel):
    """A fold's fitted explainer: predicts, scores and explains rows of concepts (or of a table's raw columns)."""

    def __init__(self, export: ModelExport) -> None:
        self.export = export
        self._predictor: Predictor | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"export": self.export}  # the rebuilt network is not pickled, only its weights

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.export = state["export"]
        self._predictor = None

    def load_context(self, context: Any) -> None:
        check_version(self.export.lenbench_version, self.export.format_version)
        self._predictor = Predictor(self.export)

    @property
    def predictor(self) -> Predictor:
        if self._predictor is None:
            self.load_context(None)
        assert self._predictor is not None
        return self._predictor

    def answer(
        self, model_input: pd.DataFrame, strict_range: bool = False
    ) -> tuple[pd.DataFrame, dict[str, str]]:
        """The answer table, and by raw column a line naming its values outside the training range."""
        from mlflow.exceptions import MlflowException

        try:
            rows = concept_rows(self.export, model_input, strict_range=strict_range)
        except (
            UserError
        ) as exc:  # MLflow's own kind of bad input: mlflow models serve answers 400 with the message
            raise MlflowException.invalid_parameter_value(str(exc)) from None
        return explain_frame(self.predictor, rows, getattr(model_input, "index", None)), rows.outside

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        answer, outside = self.answer(model_input, bool((params or {}).get("strict_range")))
        warn_outside(outside)
        return answer


class LenbenchEnsemble(mlflow.pyfunc.PythonModel):
    """A job's fold models voting (the parent run's model): :func:`lenbench.models.ensemble.ensemble_frame`."""

    def __init__(self, exports: dict[int, ModelExport]) -> None:
        self.folds = {fold: LenbenchModel(export) for fold, export in sorted(exports.items())}

    def load_context(self, context: Any) -> None:
        for model in self.folds.values():
            model.load_context(context)

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        answers, outside = {}, {}
        for fold, model in self.folds.items():
            answers[fold], seen = model.answer(model_input, bool((params or {}).get("strict_range")))
            outside = seen | outside  # one line per column: the first fold's
        warn_outside(outside)
        return ensemble_frame(answers, next(iter(self.folds.values())).export.target_class)


def signature(export: ModelExport, ensemble: bool = False) -> Any:
    """Input: the raw columns of a table model (numbers, text for categorical columns) or the concepts (numbers);
    output: the four answer columns (an ensemble's six); parameter ``strict_range``: refuse raw values outside the
    training range (default: a warning)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    if export.preprocessing:
        inputs = [
            ColSpec("string" if c["kind"] == "categorical" else "double", str(c["source"]))
            for c in export.preprocessing["columns"]
        ]
    else:
        inputs = [ColSpec("double", name) for name in export.concept_names]
    types = {
        "predicted_class": "long",
        "score": "double",
        "formula_fires": "boolean",
        "local_explanation": "string",
    }
    columns = list(OUTPUT_COLUMNS)
    if ensemble:
        types |= {"votes": "long", "formulas_agreeing": "long"}
        columns = [
            "predicted_class",
            "score",
            "votes",
            "formula_fires",
            "formulas_agreeing",
            "local_explanation",
        ]
    outputs = [ColSpec(types[c], c, required=c != "formula_fires") for c in columns]
    params = ParamSchema([ParamSpec("strict_range", "boolean", False)])
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs), params=params)
