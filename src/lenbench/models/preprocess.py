"""Raw table rows to concepts, with what a fold fitted: the model's own copy of ``data=csv``'s preprocessing.

A table's fold record (:meth:`lenbench.data.table.TablePlan.encode`, and MIMIC-II's
:func:`lenbench.data.mimic.preprocessing_record`) lists every column's kind, the concepts it gives, its categories
and its fill value, with the bin edges, thresholds or scaling fitted on the fold's training rows, and the columns
the data set never uses (``ignored``: MIMIC-II's outcomes and text columns).
:func:`encode_raw` applies exactly that to new rows (same parsing, same binning rule: a value equal to an edge goes
to the upper bin), so the training table's own rows give the fold's concept matrix again (tested). Problems with
the new rows (a missing column, text or infinity in a numeric column, an unknown category) raise
:class:`~lenbench.errors.UserError` naming the column and the fix; :func:`out_of_range` names the values outside
those seen in training.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from lenbench.errors import UserError


def raw_encoding(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """The part of a fold's preprocessing record that encodes raw rows; None when it does not describe columns."""
    if not record or not record.get("columns"):
        return None
    encoding = {key: record.get(key, {}) for key in ("columns", "bin_edges", "thresholds")}
    return {**encoding, "ignored": list(record.get("ignored", []))}


def raw_columns(encoding: dict[str, Any]) -> list[str]:
    """The raw columns the encoding reads, in order."""
    return [str(c["source"]) for c in encoding["columns"]]


def encode_raw(encoding: dict[str, Any], frame: pd.DataFrame, where: str = "input") -> np.ndarray:
    """float32 [n, k] concepts of the raw rows of ``frame`` (every column of :func:`raw_columns` needed)."""
    missing = [c for c in raw_columns(encoding) if c not in frame.columns]
    if missing:
        raise UserError(
            f"{where}: column(s) {', '.join(repr(c) for c in missing)} missing; fix: give every column the model "
            f"was trained on ({', '.join(raw_columns(encoding))})"
        )
    blocks = [_encode_column(spec, frame[spec["source"]], encoding, where) for spec in encoding["columns"]]
    return np.hstack(blocks).astype(np.float32) if blocks else np.zeros((len(frame), 0), np.float32)


def _encode_column(
    spec: dict[str, Any], series: pd.Series, encoding: dict[str, Any], where: str
) -> np.ndarray:
    source, kind = spec["source"], spec["kind"]
    if kind == "categorical":
        values = np.array([spec["fill"] if pd.isna(v) else _text(v) for v in series], dtype=object)
        unknown = sorted({str(v) for v in values} - set(spec["categories"]))
        if unknown:
            raise UserError(
                f"{where}: column {source!r} holds {unknown[0]!r}, a value the model never saw; fix: use one of "
                f"{', '.join(spec['categories'])} (or leave the cell empty)"
            )
        return np.column_stack([values == c for c in spec["categories"]])
    values = _numbers(series, source, where)
    values = np.where(np.isnan(values), float(spec["fill"]), values)
    if kind == "binary":
        return values[:, None]
    if kind == "scaled_uniform":  # MIMIC-II's notebook binning (lenbench.data.mimic)
        from lenbench.data.mimic import bin_scaled  # deferred: the data package imports scikit-learn

        scaled = values * spec["scale"] + spec["offset"]
        if spec["low"] == spec["high"]:
            return np.eye(3)[np.zeros(values.shape[0], dtype=np.intp)]
        return bin_scaled(scaled, spec["low"], spec["high"])
    if source in encoding["thresholds"]:
        return (values >= float(encoding["thresholds"][source]))[:, None]
    edges = np.asarray(encoding["bin_edges"][source], dtype=np.float64)
    bins = len(edges) - 1
    if edges[0] == edges[-1]:
        return np.eye(bins)[np.zeros(values.shape[0], dtype=np.intp)]
    return np.eye(bins)[np.digitize(values, edges[1:-1])]


def out_of_range(encoding: dict[str, Any], frame: pd.DataFrame, where: str = "input") -> dict[str, str]:
    """For each numeric raw column with values outside the range its fold was trained on, a line naming the first
    such row: the model extrapolates there (every column of :func:`raw_columns` needed)."""
    found = {}
    for spec in (s for s in encoding["columns"] if "range" in s):
        values = _numbers(frame[spec["source"]], spec["source"], where)
        low, high = spec["range"]
        rows = np.flatnonzero((values < low) | (values > high))
        if rows.size:
            found[spec["source"]] = (
                f"{where}: column {spec['source']!r} in row {rows[0] + 1} is {values[rows[0]]:g}, outside the "
                f"range seen in training [{low:g}, {high:g}] ({rows.size} row(s) of that column)"
            )
    return found


def _numbers(series: pd.Series, source: str, where: str) -> np.ndarray:
    """float64 with NaN (a gap, imputed); booleans and true/false text as 0/1; other text or infinity is an error."""
    if pd.api.types.is_numeric_dtype(series.dtype):  # booleans included
        values = series.astype("float64").to_numpy(na_value=np.nan)
    else:
        text = series.map(lambda v: v if pd.isna(v) else str(v).strip().lower())
        flags = text.map({"true": 1.0, "false": 0.0})
        numbers = pd.to_numeric(text.where(flags.isna()), errors="coerce")
        values = flags.fillna(numbers).astype("float64").to_numpy(na_value=np.nan)
    bad = np.flatnonzero((series.notna().to_numpy() & np.isnan(values)) | np.isinf(values))
    if bad.size:
        row = int(bad[0])
        raise UserError(
            f"{where}: column {source!r} must hold finite numbers, but row {row + 1} holds {str(series.iloc[row])!r}; "
            f"fix: correct that cell (an empty cell is imputed)"
        )
    return values


def _text(value: Any) -> str:
    """A category as the table's encoder spells it (1.0 -> "1")."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()
