"""Folds as the notebook makes them: StratifiedKFold outer split, unstratified 70/30 inner split, tensors as batches."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from sklearn.model_selection import StratifiedKFold, train_test_split

from lenbench.data import fold_indices, load_mimic, make_dnf, split_fold
from lenbench.data.base import ConceptDataset, Fold


@pytest.fixture(scope="module")
def dnf() -> ConceptDataset:
    return make_dnf(n_samples=400, seed=0)


def _assert_same_folds(data: ConceptDataset, n_splits: int, split_seed: int) -> None:
    expected = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=split_seed).split(data.x, data.y)
    got = fold_indices(data.y, n_splits, split_seed)
    assert len(got) == n_splits
    for (trainval, test), (exp_trainval, exp_test) in zip(got, expected, strict=True):
        np.testing.assert_array_equal(trainval, exp_trainval)
        np.testing.assert_array_equal(test, exp_test)
    np.testing.assert_array_equal(np.sort(np.concatenate([test for _, test in got])), np.arange(len(data.y)))


@pytest.mark.parametrize(("n_splits", "split_seed"), [(10, 42), (5, 0), (3, 7)])
def test_fold_indices_match_sklearn_on_synthetic(dnf: ConceptDataset, n_splits: int, split_seed: int) -> None:
    _assert_same_folds(dnf, n_splits, split_seed)


def test_fold_indices_match_sklearn_on_mimic(mimic: ConceptDataset) -> None:
    _assert_same_folds(mimic, 10, 42)


def _check_fold(data: ConceptDataset, fold: int, n_splits: int = 10) -> Fold:
    f = split_fold(data, fold, n_splits)
    assert f.index == fold and f.concept_names == data.concept_names
    n = len(data.y)
    trainval, test = fold_indices(data.y, n_splits, 42)[fold]
    np.testing.assert_array_equal(f.trainval_index, trainval)
    np.testing.assert_array_equal(f.test_index, test)
    # The notebook: train_test_split(x_trainval, y_trainval, test_size=0.3, random_state=42).
    x_train, x_val, y_train, y_val = train_test_split(
        data.x[trainval], data.y[trainval], test_size=0.3, random_state=42
    )
    np.testing.assert_array_equal(f.x_train, x_train)
    np.testing.assert_array_equal(f.x_val, x_val)
    np.testing.assert_array_equal(f.y_train, y_train)
    np.testing.assert_array_equal(f.y_val, y_val)
    np.testing.assert_array_equal(f.x_test, data.x[test])
    np.testing.assert_array_equal(f.x_train, data.x[f.train_index])
    np.testing.assert_array_equal(f.y_val, data.y[f.val_index])
    # Disjoint, covering every row, validation ~30% of train+validation.
    everything = np.concatenate([f.train_index, f.val_index, f.test_index])
    np.testing.assert_array_equal(np.sort(everything), np.arange(n))
    assert len(f.val_index) == math.ceil(0.3 * len(trainval))
    return f


def test_every_mimic_fold_is_the_notebooks(mimic: ConceptDataset) -> None:
    for fold in range(10):
        _check_fold(mimic, fold)


def test_the_fold_keeps_the_notebooks_row_order(dnf: ConceptDataset) -> None:
    f = _check_fold(dnf, fold=3)
    assert f.x_trainval.dtype == np.float32 and f.y_trainval.dtype == np.int64
    # Train+validation in the notebook's order x[trainval_index], which full-batch sums depend on.
    np.testing.assert_array_equal(f.x_trainval, dnf.x[f.trainval_index])
    np.testing.assert_array_equal(f.y_trainval, dnf.y[f.trainval_index])
    assert set(f.trainval_index) == set(f.train_index) | set(f.val_index)
    np.testing.assert_array_equal(f.x_val, dnf.x[f.val_index])
    np.testing.assert_array_equal(f.y_test, dnf.y[f.test_index])


def test_refit_sees_only_train_and_validation_rows(dnf: ConceptDataset) -> None:
    calls = []

    def refit(rows: np.ndarray) -> np.ndarray:
        calls.append(rows)
        return 1.0 - dnf.x

    data = ConceptDataset(name="dnf", x=dnf.x, y=dnf.y, concept_names=dnf.concept_names, refit=refit)
    f = split_fold(data, 2)
    assert len(calls) == 1
    np.testing.assert_array_equal(calls[0], f.trainval_index)
    np.testing.assert_array_equal(f.x_test, 1.0 - dnf.x[f.test_index])
    np.testing.assert_array_equal(f.x_trainval, 1.0 - dnf.x[f.trainval_index])


def test_mimic_fit_scope_train(mimic_root: Path, mimic: ConceptDataset) -> None:
    scoped = load_mimic(mimic_root, fit_scope="train", download=False)
    f = split_fold(scoped, 0)
    np.testing.assert_array_equal(f.test_index, fold_indices(mimic.y, 10, 42)[0][1])
    assert f.x_test.shape == (len(f.test_index), 90)
    assert not np.array_equal(f.x_test, mimic.x[f.test_index])  # fitted without the test rows
    np.testing.assert_array_equal(f.x_test, scoped.refit(f.trainval_index).x[f.test_index])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fold": 0, "n_splits": 1}, r"n_splits must be an integer in \[2, \d+\].*got 1"),
        ({"fold": 0, "n_splits": 1000}, r"n_splits must be an integer in \[2, \d+\].*got 1000"),
        ({"fold": 10}, r"fold must be an integer in \[0, 9\].*got 10"),
        ({"fold": -1}, r"fold must be an integer in \[0, 9\].*got -1"),
        ({"fold": 0, "val_size": 0.0}, r"val_size must be a fraction in \(0, 1\).*got 0.0"),
    ],
)
def test_rejects_bad_split_settings(dnf: ConceptDataset, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        split_fold(dnf, **kwargs)


def test_fold_indices_rejects_too_many_splits() -> None:
    y = np.array([0] * 20 + [1] * 4)
    with pytest.raises(
        ValueError, match=r"n_splits must be an integer in \[2, 4\].*smallest class has 4 rows"
    ):
        fold_indices(y, n_splits=5, split_seed=0)
