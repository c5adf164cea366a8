"""Any table as boolean concepts: which column becomes which concepts (:func:`plan_table`, from all rows), and the
fitted part, imputation and binning, fitted on whichever rows a fold allows (:meth:`TablePlan.encode`).

A column is one of three kinds, decided once from every row so that all folds share the same concept names:

- *binary*: 0/1 numbers or booleans (``true``/``false`` text too): one concept, the column's name; a missing cell
  takes the mean of the fitting rows rounded to 0/1 (their most frequent value, 0 on a tie);
- *numeric*: any other numbers, mean-imputed, then binned: ``uniform`` (equal width between the fitting rows' min
  and max) or ``quantile`` (equal counts) into ``bins`` bins, named ``<col>_LOW/_NORMAL/_HIGH`` for 3 bins (as
  MIMIC-II) and ``<col>_B0..`` otherwise; a value equal to an edge goes to the upper bin. A column with a threshold
  (``thresholds``) becomes the one concept ``<col>_HIGH`` (value >= threshold) instead;
- *categorical*: text (or a column listed in ``categorical``): one concept ``<col>_<value>`` per value (the
  spelling of scikit-learn's OneHotEncoder: concept names may hold letters, digits, ``_``, ``.`` and ``-`` only,
  so every other character becomes ``_``), a missing cell takes the fitting rows' most frequent value.

A column with fewer than two distinct values is dropped with a warning. Every other problem raises
:class:`DataError` naming the source, the column and the fix.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from lenbench.data.errors import DataError
from lenbench.validation import check_choice, check_int, is_number, refuse

logger = logging.getLogger(__name__)

BINARIZE = ("none", "uniform", "quantile", "threshold")
THREE_BINS = ("_LOW", "_NORMAL", "_HIGH")
_BAD_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.\-]+")
_RESERVED_NAMES = ("True", "False")
FIT_SCOPES = ("all", "train")


@dataclass(frozen=True)
class TableOptions:
    """How numbers become concepts (see the module docstring); checked when built, messages name ``data.<key>``."""

    binarize: str = "quantile"
    bins: int = 3
    thresholds: Mapping[str, float] = field(default_factory=dict)
    categorical: Sequence[str] = ()
    max_concepts: int = 500
    fit_scope: str = "train"  # "train": refitted on the train+validation rows of each fold; "all": once

    def __post_init__(self) -> None:
        check_choice(None, "data.binarize", self.binarize, BINARIZE)
        check_int(None, "data.bins", self.bins, 2)
        check_int(None, "data.max_concepts", self.max_concepts, 1)
        check_choice(None, "data.fit_scope", self.fit_scope, FIT_SCOPES)
        thresholds = {} if self.thresholds is None else self.thresholds
        if not isinstance(thresholds, Mapping):
            refuse(None, "data.thresholds", thresholds, "a mapping {column: value}, e.g. {age: 65}")
        for column, value in thresholds.items():
            if not is_number(value) or not np.isfinite(value):
                refuse(None, f"data.thresholds.{column}", value, "a finite number")
        categorical = [] if self.categorical is None else self.categorical
        if isinstance(categorical, str) or not all(isinstance(c, str) for c in categorical):
            refuse(None, "data.categorical", categorical, "a list of column names, e.g. [service_num]")
        object.__setattr__(self, "thresholds", {str(k): float(v) for k, v in thresholds.items()})
        object.__setattr__(self, "categorical", tuple(categorical))


@dataclass(frozen=True)
class Column:
    """One source column's plan: its kind, its values (float64 with NaN; object text with None when
    categorical), the concepts it becomes, its categories (categorical) or threshold."""

    source: str
    kind: str
    values: np.ndarray = field(repr=False)
    concepts: tuple[str, ...]
    categories: tuple[str, ...] = ()
    threshold: float | None = None

    @property
    def missing(self) -> np.ndarray:
        return pd.isna(self.values) if self.kind == "categorical" else np.isnan(self.values)


@dataclass(frozen=True)
class TablePlan:
    """The concepts of a table, decided from all its rows; :meth:`encode` fits and applies the preprocessing."""

    source: str
    columns: tuple[Column, ...]
    options: TableOptions
    n_rows: int

    @property
    def concept_names(self) -> list[str]:
        return [name for column in self.columns for name in column.concepts]

    def encode(self, fit_rows: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """x (float32 0/1, every row) with imputers and binners fitted on ``fit_rows`` (all rows when None), and
        what was fitted: ``{"fitted_on_rows", "imputed": {col: value}, "bin_edges": {col: [edges]},
        "thresholds": {col: value}, "columns": [{source, kind, concepts, categories, fill, range}]}`` (plain values;
        ``range``: [min, max] of a numeric or binary column's training values)."""
        fit = np.arange(self.n_rows) if fit_rows is None else np.asarray(fit_rows)
        record: dict[str, Any] = {
            "fitted_on_rows": int(fit.size),
            "imputed": {},
            "bin_edges": {},
            "thresholds": {},
            "columns": [],  # every column's kind, concepts and fill value: what encodes new rows the same way
        }
        blocks = [self._encode_column(column, fit, record) for column in self.columns]
        return np.hstack(blocks).astype(np.float32), record

    def _encode_column(self, column: Column, fit: np.ndarray, record: dict[str, Any]) -> np.ndarray:
        missing = column.missing
        if missing[fit].all():
            raise DataError(
                f"{self.source}: column {column.source!r} has no values in the {fit.size} rows the preprocessing "
                f"is fitted on (a fold's training rows); fix: fill in more of that column, leave it out of "
                f"data.concepts, or use data.fit_scope=all."
            )
        if column.kind == "categorical":
            fill: Any = _most_frequent(column.values[fit][~missing[fit]])
            filled = np.where(missing, fill, column.values)
            block = np.column_stack([filled == category for category in column.categories])
        else:
            observed = column.values[fit][~missing[fit]]
            mean = float(observed.mean())
            fill = (1.0 if mean > 0.5 else 0.0) if column.kind == "binary" else mean
            filled = np.where(missing, fill, column.values)
            block = self._bin(column, filled, filled[fit], record)
        if missing.any():
            record["imputed"][column.source] = fill
        spec = {
            "source": column.source,
            "kind": column.kind,
            "concepts": list(column.concepts),
            "categories": list(column.categories),
            "fill": fill,
        }
        if column.kind != "categorical":  # the values seen in training: new rows outside it are flagged
            spec["range"] = [float(observed.min()), float(observed.max())]
        record["columns"].append(spec)
        return block.astype(np.float32)

    def _bin(self, column: Column, values: np.ndarray, fit_values: np.ndarray, record: dict) -> np.ndarray:
        if column.kind == "binary":
            return values[:, None]
        if column.threshold is not None:
            record["thresholds"][column.source] = column.threshold
            return (values >= column.threshold)[:, None]
        bins = self.options.bins
        if self.options.binarize == "uniform":
            edges = np.linspace(fit_values.min(), fit_values.max(), bins + 1)
        else:
            edges = np.quantile(fit_values, np.linspace(0.0, 1.0, bins + 1))
        record["bin_edges"][column.source] = [float(e) for e in edges]
        if edges[0] == edges[-1]:
            logger.warning(
                "%s: column %s is constant on the fitting rows: every row goes to its first bin",
                self.source,
                column.source,
            )
            return np.eye(bins)[np.zeros(values.shape[0], dtype=np.intp)]
        return np.eye(bins)[np.digitize(values, edges[1:-1])]


def plan_table(frame: pd.DataFrame, source: str, options: TableOptions) -> TablePlan:
    """Decide each column's kind and concepts from all rows of ``frame`` (every column a concept source; their
    names unique, as :func:`lenbench.data.table_file.table_dataset` checks first)."""
    names = [str(c) for c in frame.columns]
    unknown = [c for c in options.thresholds if c not in names]
    if unknown:
        raise DataError(
            f"{source}: data.thresholds names column(s) {', '.join(repr(c) for c in unknown)} that are not concept "
            f"columns; fix: use the column names of the file ({shown_names(names)})."
        )
    planned = (_plan_column(frame.iloc[:, i], name, source, options) for i, name in enumerate(names))
    columns = tuple(column for column in planned if column is not None)
    plan = TablePlan(source=source, columns=columns, options=options, n_rows=len(frame))
    _check_concepts(plan, names)
    return plan


def _plan_column(series: pd.Series, name: str, source: str, options: TableOptions) -> Column | None:
    base = _sanitize(name)
    if name in options.categorical:
        return _categorical(series, name, source, base)
    flags = _as_flags(series)
    if flags is not None and name not in options.thresholds:
        return _kept(Column(name, "binary", flags, (base,)), source)
    values = _as_numbers(series, name, source, options)
    if values is None:
        return _categorical(series, name, source, base)
    present = np.unique(values[~np.isnan(values)])
    if np.isin(present, (0.0, 1.0)).all() and name not in options.thresholds:
        return _kept(Column(name, "binary", values, (base,)), source)
    if name in options.thresholds:
        threshold = options.thresholds[name]
        return _kept(Column(name, "numeric", values, (f"{base}_HIGH",), threshold=threshold), source)
    if options.binarize in ("none", "threshold"):
        bad = int(np.flatnonzero(~np.isnan(values) & ~np.isin(values, (0.0, 1.0)))[0])
        fix = (
            f"give it a threshold (data.thresholds={{{name}: <value>}})"
            if options.binarize == "threshold"
            else "use data.binarize=quantile (or uniform, or threshold with data.thresholds)"
        )
        raise DataError(
            f"{source}: column {name!r} must be 0/1 or true/false with data.binarize={options.binarize}, but data "
            f"row {bad + 1} holds {values[bad]:g}; fix: {fix}, or leave it out of data.concepts."
        )
    bins = options.bins
    suffixes = THREE_BINS if bins == 3 else tuple(f"_B{i}" for i in range(bins))
    return _kept(Column(name, "numeric", values, tuple(base + s for s in suffixes)), source)


def _as_flags(series: pd.Series) -> np.ndarray | None:
    """Booleans (bool values or true/false text, any case) as float 0/1 with NaN, else None."""
    present = series.dropna()
    if present.empty:
        return None
    if pd.api.types.is_bool_dtype(series.dtype):
        return series.astype("float64").to_numpy(na_value=np.nan)
    if pd.api.types.is_numeric_dtype(series.dtype):
        return None
    text = present.astype(str).str.strip().str.lower()
    if not text.isin(("true", "false")).all():
        return None
    mapped = series.map(lambda v: v if pd.isna(v) else float(str(v).strip().lower() == "true"))
    return mapped.to_numpy(dtype=np.float64, na_value=np.nan)


def _as_numbers(series: pd.Series, name: str, source: str, options: TableOptions) -> np.ndarray | None:
    """The column as float64 with NaN; None when it is text (mostly non-numbers and no threshold); DataError when
    it is binned as numbers but holds some text or infinities."""
    coerced = pd.to_numeric(series, errors="coerce") if not pd.api.types.is_numeric_dtype(series) else series
    values = coerced.astype("float64").to_numpy(na_value=np.nan)
    notna = series.notna().to_numpy()
    text = notna & np.isnan(values)
    if text.sum() * 2 > notna.sum() and name not in options.thresholds:
        return None
    bad = np.flatnonzero(text | np.isinf(values))
    if bad.size:
        raise DataError(
            f"{source}: column {name!r} is binned as numbers, but data row {bad[0] + 1} holds "
            f"{series.iloc[bad[0]]!r} ({bad.size} such value(s)); fix: correct those cells (empty cells are "
            f"imputed), list the column in data.categorical to one-hot encode it, or leave it out of data.concepts."
        )
    return values


def _categorical(series: pd.Series, name: str, source: str, base: str) -> Column | None:
    """Text (numbers in data.categorical as integers where they are whole, 1.0 -> "1") and its sorted values."""
    values = np.array([None if pd.isna(v) else _text(v) for v in series], dtype=object)
    categories = tuple(sorted({v for v in values if v is not None}))
    concepts = tuple(f"{base}_{_sanitize(c)}" for c in categories)
    return _kept(Column(name, "categorical", values, concepts, categories=categories), source)


def _kept(column: Column, source: str) -> Column | None:
    """The column, or None (with a warning) when it has fewer than two distinct values: no concept to learn."""
    present = column.values[~column.missing]
    if len(set(present.tolist())) >= 2:
        return column
    shown = "no values" if present.size == 0 else f"the single value {present.tolist()[0]!r}"
    logger.warning("%s: column %s holds %s: dropped (a constant is no concept)", source, column.source, shown)
    return None


def _check_concepts(plan: TablePlan, names: list[str]) -> None:
    concepts = plan.concept_names
    if not concepts:
        raise DataError(
            f"{plan.source}: no concept left: the concept column(s) {shown_names(names)} are all constant or empty; "
            f"fix: choose columns that vary (data.concepts)."
        )
    if len(concepts) > plan.options.max_concepts:
        widest = max(plan.columns, key=lambda c: len(c.concepts))
        raise DataError(
            f"{plan.source}: {len(concepts)} concepts after encoding, more than data.max_concepts="
            f"{plan.options.max_concepts} (column {widest.source!r} alone gives {len(widest.concepts)}); fix: leave "
            f"such columns out of data.concepts, use fewer data.bins, or raise data.max_concepts."
        )
    owners: dict[str, str] = {}
    for column in plan.columns:
        for concept in column.concepts:
            clash = (
                f"column {owners[concept]!r} gives it too"
                if concept in owners
                else "True and False are reserved"
                if concept in _RESERVED_NAMES
                else ""
            )
            if clash:
                raise DataError(
                    f"{plan.source}: column {column.source!r} gives the concept name {concept!r}, but {clash}; "
                    f"fix: rename the column (concept names keep letters, digits, '_', '.' and '-', anything else "
                    f"becomes '_')."
                )
            owners[concept] = column.source


def _most_frequent(values: np.ndarray) -> str:
    counts = Counter(values.tolist())
    best = max(counts.values())
    return min(v for v, n in counts.items() if n == best)


def _text(value: Any) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def _sanitize(text: str) -> str:
    return _BAD_NAME_CHARS.sub("_", text.strip()) or "_"


def shown_names(names: Sequence[str], limit: int = 8) -> str:
    """The first ``limit`` names for a message, ``...`` when there are more."""
    return ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")
