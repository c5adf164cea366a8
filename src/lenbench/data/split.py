"""One cross-validation fold of a concept data set, split exactly as the reference notebook splits it.

The notebook's loop: ``StratifiedKFold(10, shuffle=True, random_state=42).split(x, y)`` gives (trainval, test) per
fold; ``train_test_split(x_trainval, y_trainval, test_size=0.3, random_state=42)`` (not stratified) cuts trainval
into train and validation. Networks train full-batch on all of trainval, explanations are built on validation and
everything is scored on test.
"""

from __future__ import annotations

import logging

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split

from lenbench.data.base import ConceptDataset, Fold, Refitted
from lenbench.validation import is_int, is_number, refuse

logger = logging.getLogger(__name__)


def fold_indices(
    y: np.ndarray, n_splits: int = 10, split_seed: int = 42
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(trainval_index, test_index) of every outer fold, identical to the notebook's ``skf.split(x, y)``.

    StratifiedKFold only uses the number of rows of x, so the folds depend on y, n_splits and the seed alone; the
    seed stays fixed across model seeds so every method is scored on the same folds.
    """
    labels = np.asarray(y)
    _check_n_splits(labels, n_splits)
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=split_seed)
    return list(splitter.split(np.zeros((labels.shape[0], 1)), labels))


def _check_n_splits(y: np.ndarray, n_splits: object) -> None:
    # StratifiedKFold only warns when a class is smaller than n_splits, and then some test folds lack that class.
    counts = np.unique(y, return_counts=True)[1]
    smallest = int(counts.min()) if counts.size else 0
    if not is_int(n_splits) or not 2 <= n_splits <= smallest:
        refuse(
            None,
            "n_splits",
            n_splits,
            f"an integer in [2, {smallest}] (each fold needs a row of every class; the smallest class has "
            f"{smallest} rows)",
        )


def check_split(dataset: ConceptDataset, fold: object, n_splits: object, val_size: object) -> None:
    """ValueError naming the setting unless fold ``fold`` of ``n_splits`` with ``val_size`` can be cut from
    ``dataset`` (checked before any fold is built, e.g. for every fold of a job before training)."""
    _check_n_splits(dataset.y, n_splits)
    if not is_int(fold) or not 0 <= fold < n_splits:
        refuse(None, "fold", fold, f"an integer in [0, {n_splits - 1}] for n_splits={n_splits}")
    if not is_number(val_size) or not 0.0 < val_size < 1.0:
        refuse(None, "val_size", val_size, "a fraction in (0, 1) of the train+validation rows")


def split_fold(
    dataset: ConceptDataset,
    fold: int,
    n_splits: int = 10,
    split_seed: int = 42,
    val_size: float = 0.3,
    inner_split_seed: int = 42,
) -> Fold:
    """Fold ``fold`` of ``dataset``: its test rows from the notebook's outer split, its train+validation rows in
    the notebook's order ``x[trainval_index]`` (the order of rows changes floating-point sums and so the training
    trajectory), cut into train and validation as the notebook cuts them; indices are positions in the data set.

    When ``dataset.refit`` is set (MIMIC-II with ``data.fit_scope=train``), the preprocessing is refitted on the
    fold's train+validation rows, i.e. on every row the model may see, and never on the test fold. (The notebook
    fits it on all rows, test included, which is MIMIC-II's default.) When the refit returns
    :class:`~lenbench.data.base.Refitted`, what it fitted (bin edges, imputed values) becomes ``fold.preprocessing``;
    without a refit the fold carries ``dataset.preprocessing`` (fitted on all rows).
    """
    check_split(dataset, fold, n_splits, val_size)
    trainval_index, test_index = fold_indices(dataset.y, n_splits, split_seed)[fold]
    built = build_fold(dataset, int(fold), trainval_index, test_index, float(val_size), inner_split_seed)
    logger.debug(
        "%s fold %d/%d: %d train + %d validation rows, %d test rows; preprocessing fitted on %s",
        dataset.name,
        fold,
        n_splits,
        built.train_index.shape[0],
        built.val_index.shape[0],
        test_index.shape[0],
        "all rows" if dataset.refit is None else "the fold's train+validation rows",
    )
    return built


def build_fold(
    dataset: ConceptDataset,
    index: int,
    trainval_index: np.ndarray,
    test_index: np.ndarray,
    val_size: float,
    inner_split_seed: int,
) -> Fold:
    """The :class:`Fold` whose model rows are ``trainval_index`` (split into train/validation as the notebook
    splits ``x_trainval``: over positions within it) and whose scored rows are ``test_index``, with the data set's
    refit (imputer, binner, encoder) fitted on the model rows only, the raw inputs of each split when the data
    set has them, and an encoder's probabilities of the scored rows' concepts."""
    train_pos, val_pos = train_test_split(
        np.arange(trainval_index.shape[0]), test_size=val_size, random_state=inner_split_seed
    )
    train_index, val_index = trainval_index[train_pos], trainval_index[val_pos]
    refitted = Refitted(dataset.x, dataset.preprocessing or {})
    if dataset.refit is not None:
        refit = dataset.refit(trainval_index)
        refit = refit if isinstance(refit, Refitted) else Refitted(refit, {})
        refitted = refit._replace(x=np.asarray(refit.x, dtype=np.float32))
    x, probabilities = refitted.x, refitted.probabilities
    y, inputs = dataset.y, dataset.input_rows
    splits = {"trainval": trainval_index, "train": train_index, "val": val_index, "test": test_index}
    raw = {} if inputs is None else {f"inputs_{name}": inputs[rows] for name, rows in splits.items()}
    return Fold(
        index=index,
        concept_names=list(dataset.concept_names),
        x_trainval=x[trainval_index],
        y_trainval=y[trainval_index],
        trainval_index=trainval_index,
        x_train=x[train_index],
        y_train=y[train_index],
        x_val=x[val_index],
        y_val=y[val_index],
        x_test=x[test_index],
        y_test=y[test_index],
        train_index=train_index,
        val_index=val_index,
        test_index=test_index,
        preprocessing=dict(refitted.preprocessing),
        concept_probabilities_test=None if probabilities is None else probabilities[test_index],
        **raw,
    )
