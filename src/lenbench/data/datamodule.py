"""One cross-validation fold of a concept data set, split exactly as the reference notebook splits it.

The notebook's loop: ``StratifiedKFold(10, shuffle=True, random_state=42).split(x, y)`` gives (trainval, test) per
fold; ``train_test_split(x_trainval, y_trainval, test_size=0.3, random_state=42)`` (not stratified) cuts trainval
into train and validation. Networks train full-batch on all of trainval, explanations are built on validation and
everything is scored on test.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import pytorch_lightning as pl
import torch
from sklearn.model_selection import StratifiedKFold, train_test_split

from lenbench.data.base import ConceptDataset, Fold, Refitted
from lenbench.validation import is_int, is_number, refuse

logger = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor]


class FullBatch:
    """An iterable over exactly one batch, the whole split: what the data module's dataloaders return.

    Not a list: Lightning flattens lists, tuples and dicts returned by ``*_dataloader`` into *several* dataloaders
    (``[(x, y)]`` would become two loaders iterating x's rows and y's labels), while any other iterable is used as
    one loader as it is. Not a ``DataLoader`` either: full-batch training through one measured 5.5x slower.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.batch: Batch = (x, y)

    def __iter__(self) -> Iterator[Batch]:
        return iter((self.batch,))

    def __len__(self) -> int:
        return 1


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
    if not is_int(n_splits) or not 2 <= n_splits <= smallest:  # type: ignore[operator]
        refuse(
            None,
            "n_splits",
            n_splits,
            f"an integer in [2, {smallest}] (each fold needs a row of every class; the smallest class has "
            f"{smallest} rows)",
        )


class ConceptDataModule(pl.LightningDataModule):
    """Fold ``fold`` of ``dataset`` as in-memory tensors: one full batch each for trainval, validation and test.

    After :meth:`setup`, ``self.fold`` is the :class:`Fold` (indices are positions in the full data set, in the
    order of the notebook's arrays) and ``self.trainval_index`` the rows the networks train on, in the notebook's
    order. ``Fold.x_trainval`` and :meth:`train_dataloader` keep the notebook's order ``x[trainval_index]``, because
    the order of rows changes floating-point sums and so the training trajectory.

    When ``dataset.refit`` is set (MIMIC-II with ``data.fit_scope=train``), the preprocessing is refitted on the
    fold's train+validation rows, i.e. on every row the model may see, and never on the test fold. (The notebook
    fits it on all rows, test included, which is MIMIC-II's default.) When the refit returns
    :class:`~lenbench.data.base.Refitted`, what it fitted (bin edges, imputed values) becomes ``fold.preprocessing``;
    without a refit the fold carries ``dataset.preprocessing`` (fitted on all rows).

    Each dataloader is a :class:`FullBatch`, an iterable over one batch of in-memory tensors made once in setup.
    """

    def __init__(
        self,
        dataset: ConceptDataset,
        fold: int,
        n_splits: int = 10,
        split_seed: int = 42,
        val_size: float = 0.3,
        inner_split_seed: int = 42,
    ) -> None:
        super().__init__()
        _check_n_splits(dataset.y, n_splits)
        if not is_int(fold) or not 0 <= fold < n_splits:
            refuse(None, "fold", fold, f"an integer in [0, {n_splits - 1}] for n_splits={n_splits}")
        if not is_number(val_size) or not 0.0 < val_size < 1.0:
            refuse(None, "val_size", val_size, "a fraction in (0, 1) of the train+validation rows")
        self.dataset = dataset
        self.fold_number = int(fold)
        self.n_splits = int(n_splits)
        self.split_seed = split_seed
        self.val_size = float(val_size)
        self.inner_split_seed = inner_split_seed
        self.fold: Fold | None = None
        self.trainval_index: np.ndarray | None = None
        self._trainval: FullBatch | None = None
        self._val: FullBatch | None = None
        self._test: FullBatch | None = None

    def setup(self, stage: str | None = None) -> None:
        """Build the fold and its tensors once; Lightning calls this for every stage, later calls do nothing."""
        if self.fold is not None:
            return
        trainval_index, test_index = fold_indices(self.dataset.y, self.n_splits, self.split_seed)[
            self.fold_number
        ]
        self.trainval_index = trainval_index
        self.fold = build_fold(
            self.dataset, self.fold_number, trainval_index, test_index, self.val_size, self.inner_split_seed
        )
        self._trainval = _tensors(self.fold.x_trainval, self.fold.y_trainval)
        self._val = _tensors(self.fold.x_val, self.fold.y_val)
        self._test = _tensors(self.fold.x_test, self.fold.y_test)
        logger.debug(
            "%s fold %d/%d: %d train + %d validation rows, %d test rows; preprocessing fitted on %s",
            self.dataset.name,
            self.fold_number,
            self.n_splits,
            self.fold.train_index.shape[0],
            self.fold.val_index.shape[0],
            test_index.shape[0],
            "all rows" if self.dataset.refit is None else "the fold's train+validation rows",
        )

    def train_dataloader(self) -> FullBatch:
        """One full batch of the train+validation rows, as the notebook trains its networks."""
        self.setup()
        assert self._trainval is not None
        return self._trainval

    def val_dataloader(self) -> FullBatch:
        """One batch of the validation rows (the rows explanations are built from)."""
        self.setup()
        assert self._val is not None
        return self._val

    def test_dataloader(self) -> FullBatch:
        """One batch of the test fold (the rows every metric is scored on)."""
        self.setup()
        assert self._test is not None
        return self._test


def _tensors(x: np.ndarray, y: np.ndarray) -> FullBatch:
    # from_numpy shares memory with the arrays; Fold's arrays are never modified in place, so sharing is safe.
    return FullBatch(
        torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
        torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)),
    )


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
    refit (imputer, binner, encoder) fitted on the model rows only."""
    train_pos, val_pos = train_test_split(
        np.arange(trainval_index.shape[0]), test_size=val_size, random_state=inner_split_seed
    )
    train_index, val_index = trainval_index[train_pos], trainval_index[val_pos]
    x, preprocessing = dataset.x, dataset.preprocessing or {}
    if dataset.refit is not None:
        refitted = dataset.refit(trainval_index)
        refitted, preprocessing = refitted if isinstance(refitted, Refitted) else (refitted, {})
        x = np.asarray(refitted, dtype=np.float32)
    y = dataset.y
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
        preprocessing=dict(preprocessing),
    )
