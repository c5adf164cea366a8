"""Bring your own table: ``python -m train data=csv data.path=my.csv data.label=outcome``.

:func:`load_table` reads a CSV (or Parquet, with pyarrow) file, makes its label column the 0/1 label and every other
column (or those in ``concepts``) boolean concepts through :mod:`lenbench.data.table`. With ``fit_scope="train"`` (the
default) the data set's ``refit`` refits every imputer and binner on each fold's train+validation rows only and
returns what it fitted (bin edges, imputed values) with x, so each fold records its own; ``"all"`` fits them once
on every row. :func:`table_dataset` does the same for a data frame already in memory (the bundled data sets).
Every problem raises one :class:`DataError` line naming the file, the column and the fix.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lenbench.data.base import ConceptDataset, Refitted, row_positions
from lenbench.data.errors import DataError
from lenbench.data.table import TableOptions, TablePlan, plan_table, shown_names

logger = logging.getLogger(__name__)

PARQUET_SUFFIXES = (".parquet", ".pq")
_TAB_SUFFIXES = (".tsv", ".tab")


def load_table(
    path: str | Path | None = None,
    label: str | None = None,
    concepts: Sequence[str] | None = None,
    positive: Any = None,
    name: str | None = None,
    sep: str | None = None,
    **encoding: Any,
) -> ConceptDataset:
    """The table at ``path`` as a concept data set named ``name`` (default: the file's stem); its checksum is the
    SHA-256 of the file's bytes. ``encoding``: the fields of :class:`~lenbench.data.table.TableOptions` (``binarize``,
    ``bins``, ...). See the module docstring and :mod:`lenbench.data.table` for the encoding."""
    options = TableOptions(**encoding)
    if path is None or not str(path).strip():
        raise DataError(
            "data.path is not set: name the table to read, e.g. data=csv data.path=my.csv data.label=outcome."
        )
    file = Path(path).expanduser()
    raw = _read_bytes(file)
    frame = _read_frame(raw, file, sep)
    return table_dataset(
        frame,
        str(file),
        label=label,
        positive=positive,
        concepts=concepts,
        options=options,
        name=name or file.stem,
        checksum=hashlib.sha256(raw).hexdigest(),
    )


def table_dataset(
    frame: pd.DataFrame,
    source: str,
    *,
    label: str | None,
    positive: Any = None,
    concepts: Sequence[str] | None = None,
    options: TableOptions | None = None,
    name: str = "table",
    checksum: str | None = None,
) -> ConceptDataset:
    """``frame`` as a concept data set; ``source`` names it in messages (a file path)."""
    options = options or TableOptions()
    frame = frame.set_axis([str(c) for c in frame.columns], axis=1)
    _check_header(list(frame.columns), source)
    y, positive_value = label_vector(frame, label, positive, source)
    columns = _concept_columns(frame, str(label), concepts, source)
    plan = plan_table(frame[columns], source, options)
    x, fitted = plan.encode()
    refit = partial(_refit, plan) if options.fit_scope == "train" else None
    logger.info(
        "Loaded %s from %s: %d rows, %d concepts from %d columns, label %s (class 1 = %s) with %d positives, "
        "preprocessing fitted on %s",
        name,
        source,
        x.shape[0],
        x.shape[1],
        len(plan.columns),
        label,
        positive_value,
        int(y.sum()),
        "each fold's training rows" if refit is not None else "all rows",
    )
    return ConceptDataset(
        name=name,
        x=x,
        y=y,
        concept_names=plan.concept_names,
        label=str(label),
        checksum=checksum,
        refit=refit,
        preprocessing=fitted,
    )


def label_vector(
    frame: pd.DataFrame, label: str | None, positive: Any, source: str
) -> tuple[np.ndarray, str]:
    """The 0/1 labels of column ``label`` (``positive`` is the value of class 1; it may be left out when the
    column holds 0/1 or true/false), and the value that became class 1, as text."""
    columns = [str(c) for c in frame.columns]
    if label is None or str(label) not in columns:
        what = "data.label is not set" if label is None else f"there is no label column {label!r}"
        raise DataError(
            f"{source}: {what}; fix: set data.label to one of its columns ({shown_names(columns, 40)})."
        )
    series = frame[str(label)]
    missing = np.flatnonzero(series.isna().to_numpy())
    if missing.size:
        raise DataError(
            f"{source}: label column {label!r} is empty in {missing.size} row(s) (first: data row {missing[0] + 1}); "
            f"fix: fill in those labels or remove those rows."
        )
    text = series.map(_canonical)
    values = sorted(set(text))
    if len(values) != 2:
        count = "one class" if len(values) == 1 else f"{len(values)} classes"
        raise DataError(
            f"{source}: label column {label!r} has {count} ({shown_names(values)}), a binary label needs exactly two; "
            f"fix: choose another data.label, or add a column with two values (e.g. outcome = yes/no) and use it."
        )
    if positive is None:
        if values not in (["0", "1"], ["false", "true"]):
            raise DataError(
                f"{source}: label column {label!r} holds {values[0]!r} and {values[1]!r}, not 0/1; fix: say which "
                f"one is class 1 with data.positive (e.g. data.positive={values[1]})."
            )
        positive = values[1]
    wanted = _canonical(positive)
    if wanted not in values:
        raise DataError(
            f"{source}: data.positive={positive!r} is not a value of label column {label!r}, which holds "
            f"{values[0]!r} and {values[1]!r}; fix: set data.positive to one of them."
        )
    return (text == wanted).to_numpy(dtype=np.int64), wanted


def _concept_columns(
    frame: pd.DataFrame, label: str, concepts: Sequence[str] | None, source: str
) -> list[str]:
    columns = [str(c) for c in frame.columns]
    if concepts is None:
        return [c for c in columns if c != label]
    chosen = [concepts] if isinstance(concepts, str) else [str(c) for c in concepts]
    unknown = [c for c in chosen if c not in columns]
    if unknown:
        raise DataError(
            f"{source}: data.concepts names column(s) {', '.join(repr(c) for c in unknown)} that the file lacks; "
            f"fix: use its columns ({shown_names(columns)})."
        )
    if label in chosen:
        raise DataError(
            f"{source}: data.concepts lists the label column {label!r}; fix: leave it out (a concept may not be "
            f"the label itself)."
        )
    if not chosen:
        raise DataError(
            f"{source}: data.concepts is empty; fix: list concept columns, or null for all others."
        )
    return list(dict.fromkeys(chosen))


def _refit(plan: TablePlan, train_index: np.ndarray) -> Refitted:
    """ConceptDataset.refit for fit_scope=train: x of all rows, imputers and binners fitted on ``train_index``."""
    x, fitted = plan.encode(row_positions(train_index, plan.n_rows))
    return Refitted(x, fitted)


def _read_bytes(file: Path) -> bytes:
    try:
        return file.read_bytes()
    except FileNotFoundError:
        raise DataError(
            f"{file}: no such file; fix: check data.path (a relative path starts from the folder you run the "
            f"command in, {Path.cwd()})."
        ) from None
    except IsADirectoryError:
        raise DataError(f"{file}: is a folder; fix: set data.path to a CSV or Parquet file.") from None
    except OSError as exc:
        raise DataError(
            f"{file}: cannot be read ({exc.strerror or exc}); fix: check its permissions."
        ) from None


def _read_frame(raw: bytes, file: Path, sep: str | None) -> pd.DataFrame:
    """The table, whose header must name each column once; one DataError for anything unreadable."""
    if file.suffix.lower() in PARQUET_SUFFIXES:
        frame = _read_parquet(raw, file)
    else:
        frame = _read_csv(raw, file, sep or ("\t" if file.suffix.lower() in _TAB_SUFFIXES else ","))
    if frame.empty:
        raise DataError(f"{file}: has a header but no data rows; fix: point data.path at the complete table.")
    return frame


def _check_header(names: list[str], source: object) -> None:
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise DataError(
            f"{source}: column name(s) {', '.join(repr(n) for n in duplicated)} appear more than once in the "
            f"header; fix: give every column its own name."
        )


def _read_csv(raw: bytes, file: Path, sep: str) -> pd.DataFrame:
    fix = "fix: save it as a comma-separated UTF-8 text file with one header row (or set data.sep)"
    try:
        header = pd.read_csv(io.BytesIO(raw), sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False)
        frame = pd.read_csv(io.BytesIO(raw), sep=sep)
    except pd.errors.EmptyDataError:
        raise DataError(f"{file}: is empty ({len(raw)} bytes); {fix}.") from None
    except ValueError as exc:  # pandas' ParserError and UnicodeDecodeError are ValueErrors
        message = " ".join(str(exc).split())
        raise DataError(f"{file}: is not a readable CSV file ({message}); {fix}.") from None
    _check_header([str(v).strip() for v in header.iloc[0]], file)  # pandas renames a repeated "a" to "a.1"
    other = next(
        (c for c in ";\t|," if c != sep and frame.shape[1] == 1 and c in str(frame.columns[0])), None
    )
    if (
        other is not None
    ):  # e.g. a spreadsheet's export with ';' between fields (and a UTF-8 BOM, which pandas drops)
        raise DataError(
            f"{file}: reads as one column {str(frame.columns[0])[:60]!r} with the separator {sep!r}, but its header "
            f"holds {other!r}; fix: set data.sep={other!r}."
        )
    return frame


def _read_parquet(raw: bytes, file: Path) -> pd.DataFrame:
    try:
        import pyarrow
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(
            f"{file}: reading Parquet needs pyarrow, which is not installed; fix: pip install pyarrow (or save "
            f"the table as CSV)."
        ) from None
    try:
        table = pq.read_table(io.BytesIO(raw))
    except (pyarrow.ArrowException, OSError, ValueError) as exc:
        message = " ".join(str(exc).split())
        raise DataError(
            f"{file}: is not a readable Parquet file ({message}); fix: write it again, or save it as CSV."
        ) from None
    _check_header([str(n) for n in table.column_names], file)
    return table.to_pandas()


def _canonical(value: Any) -> str:
    """A label value as text, so that 1, 1.0, "1" and true/True/"TRUE" compare as they read."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, float, np.integer, np.floating)) and float(value).is_integer():
        return str(int(value))
    text = str(value).strip()
    return text.lower() if text.lower() in ("true", "false") else text
