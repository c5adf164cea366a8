"""The model's input and output tables: which columns a model takes (concepts, or a table's raw columns), their
checks, and the per-row answer (:func:`explain_frame`). Pure pandas/numpy; every input problem is one
:class:`~lenbench.errors.UserError` line naming the column, the row and the fix.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lenbench.errors import UserError
from lenbench.models.export import ModelExport
from lenbench.models.predict import Predictor
from lenbench.models.preprocess import encode_raw, out_of_range, raw_columns

log = logging.getLogger(__name__)

OUTPUT_COLUMNS = ("predicted_class", "score", "formula_fires", "local_explanation")


@dataclass(frozen=True)
class Rows:
    """Concept rows ready for a model: x float32 [n, k], how they came in (``concepts`` or ``raw``), and the
    labels when the table held the data set's label column (0/1 values), else None; ``outside``: by raw column, a
    line naming its values outside the training range (:func:`lenbench.models.preprocess.out_of_range`)."""

    x: np.ndarray
    kind: str
    labels: np.ndarray | None = None
    outside: dict[str, str] = field(default_factory=dict)


def concept_rows(
    export: ModelExport, frame: pd.DataFrame, where: str = "input", strict_range: bool = False
) -> Rows:
    """The rows of ``frame`` as the model's concepts: raw columns go through the fold's preprocessing, concept
    columns are checked (numbers in [0, 1], no gaps); the label column, when present, is set aside. A raw value
    outside the training range is refused when ``strict_range``, else named in ``Rows.outside``."""
    if not isinstance(frame, pd.DataFrame):
        frame = pd.DataFrame(frame)
    frame = frame.set_axis([str(c) for c in frame.columns], axis=1)
    labels = _labels(frame, export.label)
    features = frame.drop(columns=[export.label]) if export.label in frame.columns else frame
    concepts = list(export.concept_names)
    raw = raw_columns(export.preprocessing) if export.preprocessing else None
    use_raw = raw is not None and not set(concepts) <= set(features.columns)
    expected = raw if use_raw else concepts
    if use_raw:
        ignored = set(export.preprocessing.get("ignored", []))
        features = features[[c for c in features.columns if c not in ignored]]
    _check_columns(list(features.columns), expected, "raw" if use_raw else "concept", where)
    if not use_raw:
        return Rows(x=_concept_values(features[concepts], where), kind="concepts", labels=labels)
    x = encode_raw(export.preprocessing, features, where)
    outside = out_of_range(export.preprocessing, features, where)
    if outside and strict_range:
        raise UserError(
            f"{next(iter(outside.values()))}; fix: correct the value, or leave out strict_range=true to predict "
            f"it with a warning"
        )
    return Rows(x=x, kind="raw", labels=labels, outside=outside)


def warn_outside(outside: dict[str, str]) -> None:
    """One warning per raw column with values outside the training range (the model extrapolates there)."""
    for line in outside.values():
        log.warning("%s; the model extrapolates there (strict_range=true refuses such rows)", line)


def explain_frame(predictor: Predictor, rows: Rows, index: pd.Index | None = None) -> pd.DataFrame:
    """Per row: ``predicted_class``, ``score`` (class-1 score, NaN when the method has none),
    ``formula_fires`` (None when the method has no formula) and ``local_explanation`` (formula text)."""
    labels, scores = predictor.predict_and_score(rows.x)
    fires = predictor.formula_fires(rows.x)
    out = pd.DataFrame(
        {
            "predicted_class": labels.astype(np.int64),
            "score": np.asarray(scores, dtype=np.float64),
            "formula_fires": pd.Series(fires, dtype=bool) if fires is not None else [None] * len(labels),
            "local_explanation": predictor.local_explanations(rows.x, labels),
        }
    )
    return out.set_axis(index, axis=0) if index is not None and len(index) == len(out) else out


def _check_columns(present: list[str], expected: list[str], kind: str, where: str) -> None:
    missing = [c for c in expected if c not in present]
    extra = [c for c in present if c not in expected]
    if missing:
        raise UserError(
            f"{where}: {len(missing)} {kind} column(s) missing ({_shown(missing)}); fix: give the columns the "
            f"model was trained on ({_shown(expected)})"
        )
    if extra:
        raise UserError(
            f"{where}: {len(extra)} column(s) the model does not know ({_shown(extra)}); fix: drop them, the model "
            f"takes exactly its {len(expected)} {kind} columns"
        )


def _concept_values(frame: pd.DataFrame, where: str) -> np.ndarray:
    """float32 concept matrix; every value a number in [0, 1] (a concept is true where > 0.5)."""
    values = frame.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values) | (values < 0.0) | (values > 1.0)
    if bad.any():
        row, col = (int(i[0]) for i in np.nonzero(bad))
        raise UserError(
            f"{where}: concept {frame.columns[col]!r} in row {row + 1} is {_cell(frame.iat[row, col])}, not a number in "
            f"[0, 1]; fix: concepts are 0/1 (or degrees of truth in [0, 1]), give raw columns to a model of a table"
        )
    return values.astype(np.float32)


def _cell(value: object) -> str:
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        return f"{float(value):g}"
    return repr(value if value is None else str(value))


def _labels(frame: pd.DataFrame, label: str) -> np.ndarray | None:
    if label not in frame.columns:
        return None
    values = pd.to_numeric(frame[label], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return values.astype(np.int64) if np.isin(values, (0.0, 1.0)).all() else None


def _shown(names: list[str], limit: int = 6) -> str:
    return ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")
