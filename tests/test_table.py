"""``data=csv``: any table as boolean concepts (lenbench.data.table, lenbench.data.table_file).

Generated tables check the encoding's invariants and that ``fit_scope=train`` fits nothing on rows outside a fold's
training rows; explicit tables check each kind of column, the recorded bin edges and every DataError.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lenbench.data import DataError
from lenbench.data.base import ConceptDataset, Refitted
from lenbench.data.split import split_fold
from lenbench.data.table import TableOptions
from lenbench.data.table_file import load_table, table_dataset
from lenbench.errors import ConfigError
from lenbench.logic.formula import Formula

KINDS = ("binary", "number", "category", "boolean")
WORDS = ("red", "green", "light blue", "x/y")


# -- generated tables ------------------------------------------------------------------------------------------------


@st.composite
def tables(draw: st.DrawFn) -> pd.DataFrame:
    """3-4 to 30 rows, 1-4 columns of mixed kinds with missing cells (never in rows 0 and 1), a 0/1 label with
    both classes, and one column ``v`` that always varies (so a concept is always left)."""
    n = draw(st.integers(6, 30))
    frame = {"v": [i % 2 for i in range(n)]}
    for j, kind in enumerate(draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=4))):
        if kind == "number":
            cells = st.floats(-1e3, 1e3, allow_nan=False, allow_subnormal=False).map(lambda v: round(v, 3))
        elif kind == "binary":
            cells = st.sampled_from((0, 1))
        elif kind == "boolean":
            cells = st.booleans()
        else:
            cells = st.sampled_from(WORDS)
        values = draw(st.lists(cells, min_size=n, max_size=n))
        holes = draw(st.lists(st.booleans(), min_size=n, max_size=n))
        frame[f"{kind}{j}"] = [
            None if hole and i >= 2 else v for i, (v, hole) in enumerate(zip(values, holes, strict=True))
        ]
    label = draw(st.lists(st.sampled_from((0, 1)), min_size=n - 2, max_size=n - 2))
    frame["outcome"] = [0, 1, *label]
    return pd.DataFrame(frame)


def _dataset(frame: pd.DataFrame, **kwargs) -> ConceptDataset:  # noqa: ANN003
    options = replace(kwargs.pop("options", TableOptions()), fit_scope=kwargs.pop("fit_scope", "train"))
    return table_dataset(frame, "generated.csv", label="outcome", options=options, **kwargs)


def _blocks(data: ConceptDataset, frame: pd.DataFrame) -> dict[str, list[int]]:
    """Concept positions per source column that one-hot encodes (binned numbers, categories)."""
    blocks: dict[str, list[int]] = {}
    for column in frame.columns:
        if column.startswith(("number", "category")):
            prefix = column + "_"
            blocks[column] = [i for i, name in enumerate(data.concept_names) if name.startswith(prefix)]
    return blocks


@settings(max_examples=40)
@given(frame=tables(), binarize=st.sampled_from(("uniform", "quantile")), bins=st.integers(2, 5))
def test_generated_tables_encode_into_valid_one_hot_concepts(
    frame: pd.DataFrame, binarize: str, bins: int
) -> None:
    data = _dataset(frame, options=TableOptions(binarize=binarize, bins=bins))
    assert data.x.dtype == np.float32 and data.x.shape == (len(frame), len(data.concept_names))
    assert set(np.unique(data.x)) <= {0.0, 1.0}
    assert len(set(data.concept_names)) == len(data.concept_names)
    assert Formula.parse(" | ".join(data.concept_names)).concepts == set(data.concept_names)  # valid names
    np.testing.assert_array_equal(data.y, frame["outcome"].to_numpy())
    for column, positions in _blocks(data, frame).items():
        if positions:  # not dropped as constant
            np.testing.assert_array_equal(data.x[:, positions].sum(axis=1), 1.0, err_msg=column)


@settings(max_examples=40)
@given(frame=tables(), binarize=st.sampled_from(("uniform", "quantile")), seed=st.integers(0, 2**16))
def test_fit_scope_train_fits_nothing_on_other_rows(frame: pd.DataFrame, binarize: str, seed: int) -> None:
    """Changing every value outside the fitting rows changes neither the fitting rows' concepts nor what was fitted
    (bin edges, imputed values): nothing leaks from test rows into the preprocessing."""
    rng = np.random.default_rng(seed)
    n = len(frame)
    fit = np.sort(np.concatenate([[0, 1], 2 + rng.permutation(n - 2)[: (n - 2) // 2]]))
    others = np.setdiff1d(np.arange(n), fit)
    changed = frame.copy()
    for column in frame.columns:
        if not column.startswith("number"):
            continue
        values = changed[column].to_numpy(dtype=float, na_value=np.nan).copy()
        present = set(np.unique(values[~np.isnan(values)]).tolist())
        if len(present) >= 2 and not present <= {0.0, 1.0}:  # binned before and after the change
            kept = others[
                ~np.isnan(values[others])
            ]  # missing cells stay missing: what is imputed is recorded
            values[kept] = rng.uniform(-1e4, 1e4, kept.size)
            changed[column] = values
    options = TableOptions(binarize=binarize)
    first, second = _dataset(frame, options=options), _dataset(changed, options=options)
    assert first.concept_names == second.concept_names
    a, b = first.refit(fit), second.refit(fit)
    assert isinstance(a, Refitted) and a.preprocessing == b.preprocessing
    np.testing.assert_array_equal(a.x[fit], b.x[fit])
    for column, edges in a.preprocessing["bin_edges"].items():
        values = frame[column].to_numpy(dtype=float, na_value=np.nan)[fit]
        values = np.where(np.isnan(values), np.nanmean(values), values)
        expected = (
            np.quantile(values, np.linspace(0, 1, 4))
            if binarize == "quantile"
            else np.linspace(values.min(), values.max(), 4)
        )
        np.testing.assert_allclose(edges, expected)


@settings(max_examples=15)
@given(frame=tables())
def test_generated_tables_read_back_from_csv(
    frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp("csv") / "generated.csv"
    frame.to_csv(path, index=False)
    from_file = load_table(path, label="outcome", fit_scope="all")
    in_memory = _dataset(pd.read_csv(path), fit_scope="all")
    assert from_file.concept_names == in_memory.concept_names
    np.testing.assert_array_equal(from_file.x, in_memory.x)
    assert from_file.name == "generated" and from_file.refit is None
    assert from_file.preprocessing == in_memory.preprocessing


# -- each kind of column -------------------------------------------------------------------------------------------


def _mixed() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [20.0, 30.0, 40.0, 50.0, 60.0, None, 80.0, 90.0],
            "smoker": [0, 1, 0, 1, None, 1, 0, 0],
            "sex": ["f", "m", "m", None, "f", "m", "m", "f"],
            "insured": [True, False, True, True, False, True, False, True],
            "site": ["A", "A", "A", "A", "A", "A", "A", "A"],
            "outcome": ["yes", "no", "no", "yes", "no", "yes", "no", "yes"],
        }
    )


def test_each_kind_of_column_becomes_its_concepts(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="lenbench.data.table"):
        data = _dataset(_mixed(), positive="yes", fit_scope="all")
    assert data.concept_names == [
        "age_LOW",
        "age_NORMAL",
        "age_HIGH",
        "smoker",
        "sex_f",
        "sex_m",
        "insured",
    ]
    assert "site" in caplog.text and "dropped" in caplog.text  # constant: a warning, not an error
    np.testing.assert_array_equal(data.y, [1, 0, 0, 1, 0, 1, 0, 1])
    x = dict(zip(data.concept_names, data.x.T, strict=True))
    np.testing.assert_array_equal(x["smoker"], [0, 1, 0, 1, 0, 1, 0, 0])  # row 4 imputed: mean 3/7 -> 0
    np.testing.assert_array_equal(x["sex_m"], [0, 1, 1, 1, 0, 1, 1, 0])  # row 3 imputed: most frequent "m"
    np.testing.assert_array_equal(x["insured"], [1, 0, 1, 1, 0, 1, 0, 1])
    mean_age = np.mean([20, 30, 40, 50, 60, 80, 90])
    assert data.preprocessing["imputed"] == {"age": pytest.approx(mean_age), "smoker": 0.0, "sex": "m"}
    edges = np.quantile([20, 30, 40, 50, 60, mean_age, 80, 90], [0, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(data.preprocessing["bin_edges"]["age"], edges)


def test_bins_thresholds_and_uniform_edges() -> None:
    frame = pd.DataFrame(
        {"a": [0.0, 1.0, 2.0, 3.0, 4.0, 10.0], "b": [5, 6, 7, 8, 9, 10], "outcome": [0, 1] * 3}
    )
    four = _dataset(
        frame, options=TableOptions(binarize="uniform", bins=4, thresholds={"b": 8}), fit_scope="all"
    )
    assert four.concept_names == ["a_B0", "a_B1", "a_B2", "a_B3", "b_HIGH"]
    assert four.preprocessing["bin_edges"] == {"a": [0.0, 2.5, 5.0, 7.5, 10.0]}
    assert four.preprocessing["thresholds"] == {"b": 8.0}
    np.testing.assert_array_equal(four.x[:, :4].argmax(axis=1), [0, 0, 0, 1, 1, 3])
    np.testing.assert_array_equal(four.x[:, 4], [0, 0, 0, 1, 1, 1])  # b >= 8
    only = _dataset(frame, options=TableOptions(binarize="threshold", thresholds={"a": 2.5, "b": 8}))
    assert only.concept_names == ["a_HIGH", "b_HIGH"]


def test_categorical_numbers_and_odd_names_become_valid_concept_names() -> None:
    frame = pd.DataFrame(
        {"ward no.": [1, 2, 3, 1, 2, 3], "colour": ["dark red", "x/y", "x/y", "dark red", "x/y", "é"]}
    )
    frame["outcome"] = [True, False, True, False, True, False]
    data = _dataset(frame, options=TableOptions(categorical=["ward no."]))
    assert data.concept_names == [
        "ward_no._1",
        "ward_no._2",
        "ward_no._3",
        "colour_dark_red",
        "colour_x_y",
        "colour__",
    ]
    np.testing.assert_array_equal(data.y, [1, 0, 1, 0, 1, 0])  # true/false labels need no data.positive


def test_label_values_match_data_positive_as_they_read() -> None:
    frame = pd.DataFrame({"a": [0, 1, 0, 1], "grade": [2, 3, 3, 2]})
    np.testing.assert_array_equal(table_dataset(frame, "t.csv", label="grade", positive=3).y, [0, 1, 1, 0])
    np.testing.assert_array_equal(table_dataset(frame, "t.csv", label="grade", positive="2").y, [1, 0, 0, 1])


def test_each_fold_records_the_edges_fitted_on_its_own_rows() -> None:
    frame = pd.DataFrame({"a": np.arange(30.0) ** 2, "outcome": [0, 1, 1] * 10})
    data = _dataset(frame)  # fit_scope=train, the default
    fold = split_fold(data, 1, n_splits=3)
    rows = frame["a"].to_numpy()[fold.trainval_index]
    assert fold.preprocessing["fitted_on_rows"] == rows.size == 20
    np.testing.assert_allclose(fold.preprocessing["bin_edges"]["a"], np.quantile(rows, np.linspace(0, 1, 4)))
    assert fold.preprocessing != data.preprocessing  # the data set's describes all 30 rows
    scoped = _dataset(frame, fit_scope="all")
    assert (
        split_fold(scoped, 1, n_splits=3).preprocessing == scoped.preprocessing
        and scoped.preprocessing["fitted_on_rows"] == 30
    )


def test_parquet_reads_like_csv(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    frame = _mixed()
    frame.to_parquet(tmp_path / "t.parquet")
    frame.to_csv(tmp_path / "t.csv", index=False)
    parquet = load_table(tmp_path / "t.parquet", label="outcome", positive="yes")
    csv = load_table(tmp_path / "t.csv", label="outcome", positive="yes")
    assert parquet.concept_names == csv.concept_names and parquet.name == "t"
    np.testing.assert_array_equal(parquet.x, csv.x)


# -- every problem is one DataError line naming the file, the column and the fix ----------------------------------


def _error(frame: pd.DataFrame | None, tmp_path: Path, raw: bytes | None = None, **kwargs) -> str:  # noqa: ANN003
    path = tmp_path / kwargs.pop("filename", "bad.csv")
    if raw is not None:
        path.write_bytes(raw)
    elif frame is not None:
        frame.to_csv(path, index=False)
    with pytest.raises(DataError) as caught:
        load_table(path, **{"label": "outcome", **kwargs})
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and "fix:" in message, message
    return message


def test_label_problems(tmp_path: Path) -> None:
    frame = _mixed()
    assert "'target'" in _error(frame, tmp_path, label="target") and "outcome" in _error(
        frame, tmp_path, label="target"
    )
    assert "data.label is not set" in _error(frame, tmp_path, label=None)
    assert "data.positive" in _error(frame, tmp_path)  # yes/no: which one is class 1?
    assert "'maybe'" in _error(frame, tmp_path, positive="maybe")
    assert "one class" in _error(frame.assign(outcome="yes"), tmp_path, positive="yes")
    three = frame.assign(outcome=["a", "b", "c", "a", "b", "c", "a", "b"])
    assert "3 classes" in _error(three, tmp_path, positive="a")
    holes = frame.assign(outcome=[1, 0, None, 1, 0, 1, 0, 1])
    assert "data row 3" in _error(holes, tmp_path)


def test_column_problems(tmp_path: Path) -> None:
    frame = _mixed()
    constant = frame[["site", "outcome"]]
    assert "no concept left" in _error(constant, tmp_path, positive="yes") and "site" in _error(
        constant, tmp_path, positive="yes"
    )
    junk = frame.assign(age=["20", "30", "forty", "50", "60", "70", "80", "90"])
    message = _error(junk, tmp_path, positive="yes")
    assert "'age'" in message and "'forty'" in message and "data row 3" in message
    assert "'age'" in _error(frame, tmp_path, positive="yes", binarize="none")
    message = _error(frame, tmp_path, positive="yes", binarize="threshold")
    assert "'age'" in message and "data.thresholds" in message
    assert "'weight'" in _error(frame, tmp_path, positive="yes", thresholds={"weight": 70})
    assert "'bmi'" in _error(frame, tmp_path, positive="yes", concepts=["age", "bmi"])
    assert "label column 'outcome'" in _error(frame, tmp_path, positive="yes", concepts=["age", "outcome"])
    message = _error(frame, tmp_path, positive="yes", max_concepts=5)
    assert "7 concepts" in message and "data.max_concepts=5" in message
    clash = frame.assign(**{"sex f": [0, 1, 0, 1, 0, 1, 0, 1]})
    message = _error(clash, tmp_path, positive="yes")
    assert "'sex_f'" in message and "'sex f'" in message


def test_duplicate_column_names(tmp_path: Path) -> None:
    raw = b"a,b,a,outcome\n1,2,3,0\n4,5,6,1\n"
    assert "'a'" in _error(None, tmp_path, raw=raw)
    frame = pd.DataFrame([[1, 2, 0], [3, 4, 1]], columns=["a", "a", "outcome"])
    with pytest.raises(DataError, match="'a' appear more than once"):
        table_dataset(frame, "in memory", label="outcome")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", "is empty"),
        (b"a,outcome\n", "no data rows"),
        (b"a,outcome\n1,0\n2,1,3,4\n", "not a readable CSV"),
        (b"\xff\xfe\x00\x81a,\x00\x9f\n\x80\x80,\xc3\x28\n", "not a readable CSV"),
    ],
)
def test_unreadable_files(tmp_path: Path, raw: bytes, expected: str) -> None:
    assert expected in _error(None, tmp_path, raw=raw)


def test_missing_files_and_folders(tmp_path: Path) -> None:
    assert "no such file" in _error(None, tmp_path, filename="absent.csv")
    (tmp_path / "folder.csv").mkdir()
    assert "is a folder" in _error(None, tmp_path, filename="folder.csv")
    with pytest.raises(DataError, match="data.path is not set"):
        load_table(None, label="outcome")


def test_parquet_without_pyarrow_says_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    message = _error(None, tmp_path, raw=b"PAR1", filename="t.parquet")
    assert "pip install pyarrow" in message


def test_no_values_on_a_folds_training_rows(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [None, None, None, 1.0, 2.0, 3.0], "b": [0, 1] * 3, "outcome": [0, 1] * 3})
    data = _dataset(frame)
    with pytest.raises(DataError, match="'a' has no values in the 3 rows") as caught:
        data.refit(np.array([0, 1, 2]))
    assert "data.fit_scope=all" in str(caught.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"binarize": "bogus"},
        {"bins": 1},
        {"max_concepts": 0},
        {"fit_scope": "test"},
        {"thresholds": {"age": "old"}},
        {"categorical": "sex"},
    ],
)
def test_bad_settings_name_their_key(tmp_path: Path, kwargs: dict) -> None:
    key = next(iter(kwargs))
    with pytest.raises(ConfigError, match=f"data.{key}"):
        load_table(tmp_path / "never_read.csv", label="outcome", **kwargs)


@pytest.mark.parametrize(("bom", "sep"), [(b"\xef\xbb\xbf", ";"), (b"", ";"), (b"", "\t")])
def test_a_table_with_another_separator_suggests_data_sep(tmp_path: Path, bom: bytes, sep: str) -> None:
    """A spreadsheet's export (a UTF-8 BOM, ';' between fields) names the data.sep that reads it."""
    path = tmp_path / "export.csv"
    rows = [["a", "b", "label"], *([str(i % 2), str(i // 2 % 2), str(i % 2)] for i in range(20))]
    path.write_bytes(bom + "\n".join(sep.join(r) for r in rows).encode() + b"\n")
    with pytest.raises(DataError) as raised:
        load_table(path, label="label")
    assert str(raised.value).endswith(f"holds {sep!r}; fix: set data.sep={sep!r}.")
    assert load_table(path, label="label", sep=sep).concept_names == ["a", "b"]
