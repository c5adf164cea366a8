"""MIMIC-II (PhysioNet ``mimic2-iaccd`` 1.0) as boolean concepts, preprocessed exactly as the reference notebook.

The notebook (``../shared/seed/mimic_notebook.txt``, cell In [1]) mean-imputes 12 binary flags, and mean-imputes,
min-max scales and cuts into 3 uniform bins every other column except a fixed exclusion list. Reproducing its
numbers needs one detail that current scikit-learn no longer has: up to 1.0, ``KBinsDiscretizer.transform`` added a
tolerance (``1e-8 + 1e-5 * |v|``) before looking up the bin, so values a hair below an edge went to the upper bin;
1.1 dropped it (scikit-learn PR #22526). On this file that moves 73 cells (e.g. sodium 145 mEq/L from HIGH to
NORMAL), and a decision tree on the current binning no longer matches the notebook (accuracy 0.7899 / complexity
1363.5 instead of its 0.7956 / 1342.6). :func:`_bin_uniform` therefore implements the notebook-era rule itself.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import MinMaxScaler

from lenbench.config import DATA_DIR_ENV
from lenbench.data.base import ConceptDataset, Refitted, row_positions
from lenbench.data.download import download
from lenbench.data.errors import DataError
from lenbench.data.table import FIT_SCOPES, shown_names

logger = logging.getLogger(__name__)

MIMIC_URL = "https://physionet.org/files/mimic2-iaccd/1.0/full_cohort_data.csv"
MIMIC_SHA256 = "c8c5ee99cb2e00a5e3c5e65a21024fd324c2966d4746e5a058f5d1dde988a770"
# Where the file lives below the data root (the Hydra config's data.root: lenbench.config.default_data_root).
RELATIVE_PATH = Path("mimic-ii") / "full_cohort_data.csv"

# The notebook's binary flags, in its order (they become the first 12 concepts, imputed but not binned).
FLAG_COLUMNS = (
    "aline_flg",
    "gender_num",
    "sepsis_flg",
    "chf_flg",
    "afib_flg",
    "renal_flg",
    "liver_flg",
    "copd_flg",
    "cad_flg",
    "stroke_flg",
    "mal_flg",
    "resp_flg",
)
# Never concepts: text columns, outcomes and their proxies (the notebook's f2 additions).
EXCLUDED_COLUMNS = (
    "day_icu_intime",
    "service_unit",
    "day_28_flg",
    "hospital_los_day",
    "icu_exp_flg",
    "hosp_exp_flg",
    "censor_flg",
    "mort_day_censored",
)
# The columns of the published file that get binned (data.columns.difference(...) order); checked on load.
BINNED_COLUMNS = (
    "abg_count",
    "age",
    "bmi",
    "bun_first",
    "chloride_first",
    "creatinine_first",
    "day_icu_intime_num",
    "hgb_first",
    "hour_icu_intime",
    "hr_1st",
    "icu_los_day",
    "iv_day_1",
    "map_1st",
    "pco2_first",
    "platelet_first",
    "po2_first",
    "potassium_first",
    "sapsi_first",
    "service_num",
    "sodium_first",
    "sofa_first",
    "spo2_1st",
    "tco2_first",
    "temp_1st",
    "wbc_first",
    "weight_first",
)
BIN_SUFFIXES = ("_LOW", "_NORMAL", "_HIGH")
LABELS = ("day_28_flg", "any_death")
# The 0/1 columns each label is computed from.
_LABEL_SOURCES = {
    "day_28_flg": ("day_28_flg",),
    "any_death": ("day_28_flg", "hosp_exp_flg", "icu_exp_flg", "censor_flg"),
}
# scikit-learn <= 1.0's KBinsDiscretizer tolerance (numpy.isclose's defaults), see the module docstring.
_BIN_RTOL = 1.0e-5
_BIN_ATOL = 1.0e-8


def mimic_path(root: str | Path) -> Path:
    """Where :func:`load_mimic` looks for the CSV under ``root``, so callers and messages agree on one place."""
    return Path(root).expanduser().absolute() / RELATIVE_PATH


def _how_to_fix(path: Path, url: str) -> str:
    """The lower-case remedy clause every message ends with: where the file must be and how to get it there."""
    return (
        f"download {url} and save it as {path}, or set the environment variable {DATA_DIR_ENV} "
        f"(the data.root setting) to a folder that holds {RELATIVE_PATH.as_posix()}."
    )


def load_mimic(
    root: str | Path = "data",
    label: str = "day_28_flg",
    fit_scope: str = "all",
    download: bool = True,
    url: str = MIMIC_URL,
    sha256: str | None = MIMIC_SHA256,
    timeout: float = 30.0,
    name: str = "mimic",
) -> ConceptDataset:
    """Load MIMIC-II as the notebook's 90 concepts: x float32 [1776, 90], y int64 (283 deaths within 28 days).

    ``label="any_death"`` widens the outcome to any recorded death (28 days, in hospital, in the ICU, or not
    censored). ``fit_scope="all"`` fits imputers, scaler and bins on all rows, as the notebook did; ``"train"``
    keeps that x but sets ``refit`` so a fold can refit the preprocessing on its own training rows. The file is
    downloaded when missing (if ``download``) and its SHA-256 checked against ``sha256`` (``None`` skips the check,
    for hand-made test files). Every problem raises :class:`DataError` with a message that says how to fix it.
    """
    if label not in LABELS:
        raise DataError(f"Unknown MIMIC-II label {label!r}: choose one of {', '.join(LABELS)} (data.label).")
    if fit_scope not in FIT_SCOPES:
        raise DataError(
            f"Unknown MIMIC-II fit_scope {fit_scope!r}: choose one of {', '.join(FIT_SCOPES)} (data.fit_scope)."
        )
    path = mimic_path(root)
    raw, digest = _checked_bytes(path, url, sha256, download, timeout)
    frame = _parse(raw, path, url)
    flags, numeric, numeric_names, y = _validate(frame, path, url, label)
    x = _preprocess(flags, numeric, numeric_names)
    concept_names = list(FLAG_COLUMNS) + [
        f"{name}{suffix}" for name in numeric_names for suffix in BIN_SUFFIXES
    ]
    refit = partial(_refit, flags, numeric, numeric_names) if fit_scope == "train" else None
    logger.info(
        "Loaded MIMIC-II from %s: %d rows, %d concepts, label %s with %d positives, preprocessing fitted on all "
        "rows%s",
        path,
        x.shape[0],
        x.shape[1],
        label,
        int(y.sum()),
        "" if refit is None else " (each fold refits it on its own training rows)",
    )
    return ConceptDataset(
        name=name,
        x=x,
        y=y,
        concept_names=concept_names,
        label=label,
        checksum=digest,
        refit=refit,
        preprocessing=preprocessing_record(flags, numeric, numeric_names),
    )


def preprocessing_record(
    flags: np.ndarray, numeric: np.ndarray, numeric_names: list[str], fit_rows: np.ndarray | None = None
) -> dict[str, Any]:
    """What :func:`_preprocess` fits on ``fit_rows``, as plain values in the table record's layout
    (:meth:`lenbench.data.table.TablePlan.encode`): flags are ``binary`` columns filled with their mean; every other
    column is ``scaled_uniform``: filled with its mean, scaled by ``scale``/``offset`` (MinMaxScaler's), and cut into
    3 bins between ``low`` and ``high`` with the notebook-era tolerance; ``range`` is a column's [min, max] training
    value. A trained model applies it to raw rows."""
    fit = slice(None) if fit_rows is None else fit_rows
    flag_fill = SimpleImputer(missing_values=np.nan, strategy="mean").fit(flags[fit]).statistics_
    imputer = SimpleImputer(missing_values=np.nan, strategy="mean").fit(numeric[fit])
    scaler = MinMaxScaler((0, 1)).fit(imputer.transform(numeric)[fit])
    scaled = scaler.transform(imputer.transform(numeric))[fit]
    low, high = scaled.min(axis=0), scaled.max(axis=0)
    columns = [
        {"source": n, "kind": "binary", "concepts": [n], "categories": [], "fill": float(v)}
        for n, v in zip(FLAG_COLUMNS, flag_fill, strict=True)
    ]
    columns += [
        {
            "source": name,
            "kind": "scaled_uniform",
            "concepts": [name + s for s in BIN_SUFFIXES],
            "categories": [],
            "fill": float(imputer.statistics_[j]),
            "scale": float(scaler.scale_[j]),
            "offset": float(scaler.min_[j]),
            "low": float(low[j]),
            "high": float(high[j]),
        }
        for j, name in enumerate(numeric_names)
    ]
    seen = np.hstack([flags[fit], numeric[fit]])  # the raw values of the training rows, column by column
    for spec, lowest, highest in zip(columns, np.nanmin(seen, axis=0), np.nanmax(seen, axis=0), strict=True):
        spec["range"] = [float(lowest), float(highest)]  # new rows outside it are flagged
    n_fit = flags.shape[0] if fit_rows is None else len(fit_rows)
    return {"fitted_on_rows": int(n_fit), "columns": columns, "ignored": list(EXCLUDED_COLUMNS)}


def bin_scaled(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """One column's 3-bin one-hot as :func:`_bin_uniform` makes it, from its fitted ``low``/``high``."""
    return _bin_uniform(values[:, None], np.array([[low], [high]]), ["column"])


def _checked_bytes(
    path: Path, url: str, sha256: str | None, download: bool, timeout: float
) -> tuple[bytes, str]:
    """The file's bytes and SHA-256, downloaded first when missing (if allowed) and checked against ``sha256``."""
    if not path.is_file():
        if not download:
            raise DataError(
                f"MIMIC-II data file not found: {path} (downloading is off). To fix it, {_how_to_fix(path, url)}"
            )
        download_mimic(path, url=url, sha256=sha256, timeout=timeout)
    raw = _read_bytes(path, url)
    digest = hashlib.sha256(raw).hexdigest()
    if sha256 is not None and digest != sha256.lower():
        raise DataError(
            f"MIMIC-II data file {path} is not the expected file: its SHA-256 is {digest}, expected {sha256.lower()}. "
            f"It is damaged or a different version: delete it and run again to download it afresh "
            f"(with downloading on), or {_how_to_fix(path, url)}"
        )
    return raw, digest


def download_mimic(
    dest: str | Path, url: str = MIMIC_URL, sha256: str | None = MIMIC_SHA256, timeout: float = 30.0
) -> Path:
    """Download the CSV to ``dest`` atomically (see :func:`lenbench.data.download.download`)."""
    dest = Path(dest).expanduser().absolute()
    return download(dest, url, sha256, timeout, what="MIMIC-II", hint=_how_to_fix(dest, url))


def _read_bytes(path: Path, url: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(
            f"Cannot read MIMIC-II data file {path}: {exc.strerror or exc}. Fix its permissions, or "
            f"{_how_to_fix(path, url)}"
        ) from None


def _parse(raw: bytes, path: Path, url: str) -> pd.DataFrame:
    """Parse the CSV (CR line endings in the published file), turning pandas' errors into one DataError."""
    fix = f"Delete it and run again to download it afresh, or {_how_to_fix(path, url)}"
    try:
        frame = pd.read_csv(io.BytesIO(raw))
    except pd.errors.EmptyDataError:
        raise DataError(f"MIMIC-II data file {path} is empty ({len(raw)} bytes). {fix}") from None
    except ValueError as exc:  # pandas' ParserError and UnicodeDecodeError are ValueErrors
        message = " ".join(str(exc).split())
        raise DataError(f"MIMIC-II data file {path} is not a readable CSV file ({message}). {fix}") from None
    if frame.empty:
        raise DataError(f"MIMIC-II data file {path} has a header but no data rows: it is truncated. {fix}")
    # pandas pads a short last row with NaN instead of failing, so a file cut mid-row needs an explicit check.
    last_line = next((line for line in reversed(raw.splitlines()) if line.strip()), b"")
    n_fields = len(next(csv.reader([last_line.decode("utf-8", errors="replace")]), []))
    if n_fields < frame.shape[1]:
        raise DataError(
            f"MIMIC-II data file {path} is truncated: its last row has {n_fields} of {frame.shape[1]} fields. {fix}"
        )
    return frame


def _validate(
    frame: pd.DataFrame, path: Path, url: str, label: str
) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Check the columns the notebook uses; return flags, the columns to bin, their names and the labels."""
    fix = f"Replace it with the published file: {_how_to_fix(path, url)}"
    columns = [str(c) for c in frame.columns]
    label_sources = _LABEL_SOURCES[label]
    required = (
        list(FLAG_COLUMNS) + list(BINNED_COLUMNS) + [c for c in label_sources if c not in BINNED_COLUMNS]
    )
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(
            f"MIMIC-II data file {path} lacks {len(missing)} required column(s): {', '.join(missing)}. "
            f"It has {len(columns)} columns ({shown_names(columns)}). {fix}"
        )
    # The notebook bins every column that is neither a flag nor excluded, in sorted order.
    numeric_names = [str(c) for c in frame.columns.difference(list(FLAG_COLUMNS) + list(EXCLUDED_COLUMNS))]
    extra = [c for c in numeric_names if c not in BINNED_COLUMNS]
    if extra:
        # The notebook bins "every other column", so an unknown or renamed column would silently become 3 more
        # concepts and change the study: refuse it instead.
        raise DataError(
            f"MIMIC-II data file {path} has {len(extra)} unexpected column(s): {', '.join(extra)}; the notebook's "
            f"preprocessing would turn them into extra concepts (a renamed column?). {fix}"
        )

    values = {name: _numeric_column(frame, name, path, fix) for name in (*FLAG_COLUMNS, *numeric_names)}
    for name, column in values.items():
        if np.isnan(column).all():
            raise DataError(
                f"MIMIC-II data file {path}: column {name!r} has no values at all (every row empty). {fix}"
            )
    for name in FLAG_COLUMNS:
        _check_binary(values[name], name, path, fix, allow_missing=True)
    sources = {}
    for name in label_sources:
        sources[name] = _numeric_column(frame, name, path, fix)
        _check_binary(sources[name], name, path, fix, allow_missing=False)

    if label == "day_28_flg":
        y = sources["day_28_flg"]
    else:
        y = (
            (sources["day_28_flg"] == 1)
            | (sources["hosp_exp_flg"] == 1)
            | (sources["icu_exp_flg"] == 1)
            | (sources["censor_flg"] == 0)
        )
    flags = np.column_stack([values[name] for name in FLAG_COLUMNS])
    numeric = np.column_stack([values[name] for name in numeric_names])
    return flags, numeric, numeric_names, np.asarray(y, dtype=np.int64)


def _numeric_column(frame: pd.DataFrame, name: str, path: Path, fix: str) -> np.ndarray:
    column = frame[name]
    if not pd.api.types.is_numeric_dtype(column):
        coerced = pd.to_numeric(column, errors="coerce")
        bad = np.flatnonzero(column.notna().to_numpy() & coerced.isna().to_numpy())
        if bad.size:
            raise DataError(
                f"MIMIC-II data file {path}: column {name!r} must be numeric, but data row {bad[0] + 1} holds "
                f"{column.iloc[bad[0]]!r} ({bad.size} non-numeric value(s) in that column). {fix}"
            )
        column = coerced
    return column.to_numpy(dtype=np.float64, na_value=np.nan)


def _check_binary(column: np.ndarray, name: str, path: Path, fix: str, allow_missing: bool) -> None:
    ok = (column == 0) | (column == 1)
    if allow_missing:
        ok |= np.isnan(column)
    bad = np.flatnonzero(~ok)
    if bad.size:
        allowed = "0, 1 or empty" if allow_missing else "0 or 1"
        raise DataError(
            f"MIMIC-II data file {path}: column {name!r} must be {allowed}, but data row {bad[0] + 1} holds "
            f"{column[bad[0]]:g} ({bad.size} such row(s)). {fix}"
        )


def _preprocess(
    flags: np.ndarray, numeric: np.ndarray, numeric_names: list[str], fit_rows: np.ndarray | None = None
) -> np.ndarray:
    """The notebook's cell In [1], with every estimator fitted on ``fit_rows`` (all rows when None)."""
    fit = slice(None) if fit_rows is None else fit_rows
    empty = [
        name for name, gone in zip(numeric_names, np.isnan(numeric[fit]).all(axis=0), strict=True) if gone
    ]
    empty += [name for name, gone in zip(FLAG_COLUMNS, np.isnan(flags[fit]).all(axis=0), strict=True) if gone]
    if empty:
        # SimpleImputer would silently drop such columns and shift every concept after them.
        raise DataError(
            f"MIMIC-II preprocessing cannot be fitted: column(s) {', '.join(empty)} have no values in the "
            f"{numeric[fit].shape[0]} rows used for fitting. Use data.fit_scope=all or larger training folds."
        )
    flags_x = SimpleImputer(missing_values=np.nan, strategy="mean").fit(flags[fit]).transform(flags)
    imputed = SimpleImputer(missing_values=np.nan, strategy="mean").fit(numeric[fit]).transform(numeric)
    scaled = MinMaxScaler((0, 1)).fit(imputed[fit]).transform(imputed)
    binned = _bin_uniform(scaled, scaled[fit], numeric_names)
    return np.hstack((flags_x, binned)).astype(np.float32)


def _bin_uniform(values: np.ndarray, fit_values: np.ndarray, names: list[str], n_bins: int = 3) -> np.ndarray:
    """One-hot of 3 equal-width bins per column, as scikit-learn <= 1.0's KBinsDiscretizer(strategy='uniform').

    Edges are ``linspace(min, max, n_bins + 1)`` of ``fit_values``; a value goes to the bin of ``value + 1e-8 +
    1e-5 * |value|`` (the old tolerance, see the module docstring), clipped to the outer bins. A column constant on
    the fitting rows gets the lowest bin everywhere (scikit-learn then keeps a single bin, which would change the
    number of concepts).
    """
    low, high = fit_values.min(axis=0), fit_values.max(axis=0)
    codes = np.zeros(values.shape, dtype=np.intp)
    for j in range(values.shape[1]):
        if high[j] == low[j]:
            logger.warning("Column %s is constant on the fitting rows: all rows go to its LOW bin", names[j])
            continue
        edges = np.linspace(low[j], high[j], n_bins + 1)
        column = values[:, j]
        shifted = column + (_BIN_ATOL + _BIN_RTOL * np.abs(column))
        codes[:, j] = np.clip(np.digitize(shifted, edges[1:]), 0, n_bins - 1)
    return np.eye(n_bins)[codes].reshape(values.shape[0], -1)


def _refit(
    flags: np.ndarray, numeric: np.ndarray, numeric_names: list[str], train_index: np.ndarray
) -> Refitted:
    """ConceptDataset.refit for fit_scope=train: x of all rows, preprocessing fitted on ``train_index`` only."""
    rows = row_positions(train_index, flags.shape[0])
    x = _preprocess(flags, numeric, numeric_names, rows)
    return Refitted(x, preprocessing_record(flags, numeric, numeric_names, rows))
