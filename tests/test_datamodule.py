"""Folds as the notebook makes them: StratifiedKFold outer split, unstratified 70/30 inner split, tensors as batches."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from sklearn.model_selection import StratifiedKFold, train_test_split

from lenbench.data import ConceptDataModule, fold_indices, load_mimic, make_dnf
from lenbench.data.base import ConceptDataset


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


def _check_fold(data: ConceptDataset, fold: int, n_splits: int = 10) -> ConceptDataModule:
    module = ConceptDataModule(data, fold=fold, n_splits=n_splits)
    module.setup("fit")
    f = module.fold
    assert f is not None and f.index == fold and f.concept_names == data.concept_names
    n = len(data.y)
    trainval, test = fold_indices(data.y, n_splits, 42)[fold]
    np.testing.assert_array_equal(module.trainval_index, trainval)
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
    return module


def test_every_mimic_fold_is_the_notebooks(mimic: ConceptDataset) -> None:
    for fold in range(10):
        _check_fold(mimic, fold)


def test_dataloaders_yield_the_fold_as_tensors(dnf: ConceptDataset) -> None:
    module = _check_fold(dnf, fold=3)
    f = module.fold
    [(x, y)] = module.train_dataloader()
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    # Train+validation in the notebook's order x[trainval_index], also in the Fold itself.
    np.testing.assert_array_equal(x.numpy(), dnf.x[module.trainval_index])
    np.testing.assert_array_equal(y.numpy(), dnf.y[module.trainval_index])
    np.testing.assert_array_equal(f.x_trainval, dnf.x[f.trainval_index])
    np.testing.assert_array_equal(f.trainval_index, module.trainval_index)
    assert set(f.trainval_index) == set(f.train_index) | set(f.val_index)
    [(x, y)] = module.val_dataloader()
    np.testing.assert_array_equal(x.numpy(), f.x_val)
    np.testing.assert_array_equal(y.numpy(), f.y_val)
    [(x, y)] = module.test_dataloader()
    np.testing.assert_array_equal(x.numpy(), f.x_test)
    np.testing.assert_array_equal(y.numpy(), f.y_test)
    # setup is idempotent: the same fold and the same tensors.
    batch = module.train_dataloader().batch
    module.setup("test")
    assert module.fold is f and module.train_dataloader().batch is batch
    assert len(module.train_dataloader()) == 1 and list(module.train_dataloader()) == [batch]


def test_dataloaders_set_up_on_first_use(dnf: ConceptDataset) -> None:
    module = ConceptDataModule(dnf, fold=0)
    assert module.fold is None
    [(x, _)] = module.test_dataloader()
    assert module.fold is not None and x.shape[0] == len(module.fold.test_index)


def test_refit_sees_only_train_and_validation_rows(dnf: ConceptDataset) -> None:
    calls = []

    def refit(rows: np.ndarray) -> np.ndarray:
        calls.append(rows)
        return 1.0 - dnf.x

    data = ConceptDataset(name="dnf", x=dnf.x, y=dnf.y, concept_names=dnf.concept_names, refit=refit)
    module = ConceptDataModule(data, fold=2)
    module.setup()
    module.setup()
    assert len(calls) == 1
    np.testing.assert_array_equal(calls[0], module.trainval_index)
    np.testing.assert_array_equal(module.fold.x_test, 1.0 - dnf.x[module.fold.test_index])
    np.testing.assert_array_equal(
        module.train_dataloader().batch[0].numpy(), 1.0 - dnf.x[module.trainval_index]
    )


def test_mimic_fit_scope_train(mimic_root: Path, mimic: ConceptDataset) -> None:
    scoped = load_mimic(mimic_root, fit_scope="train", download=False)
    module = ConceptDataModule(scoped, fold=0)
    module.setup()
    f = module.fold
    np.testing.assert_array_equal(f.test_index, fold_indices(mimic.y, 10, 42)[0][1])
    assert f.x_test.shape == (len(f.test_index), 90)
    assert not np.array_equal(f.x_test, mimic.x[f.test_index])  # fitted without the test rows
    np.testing.assert_array_equal(f.x_test, scoped.refit(module.trainval_index).x[f.test_index])


def test_lightning_accepts_the_dataloaders(dnf: ConceptDataset) -> None:
    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(dnf.n_concepts, 2)
            self.seen: list[tuple[str, int]] = []

        def training_step(self, batch, batch_idx):
            x, y = batch
            self.seen.append(("train", x.shape[0]))
            return torch.nn.functional.cross_entropy(self.layer(x), y)

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.seen.append(("val", x.shape[0]))

        def test_step(self, batch, batch_idx):
            x, y = batch
            self.log("acc", (self.layer(x).argmax(1) == y).float().mean())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    module = ConceptDataModule(dnf, fold=1)
    model = Tiny()
    trainer = pl.Trainer(
        max_epochs=3,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=module)
    n_trainval, n_val = len(module.trainval_index), len(module.fold.val_index)
    assert model.seen == [("train", n_trainval), ("val", n_val)] * 3
    [result] = trainer.test(model, datamodule=module, verbose=False)
    assert 0.0 <= result["acc"] <= 1.0


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
        ConceptDataModule(dnf, **kwargs)


def test_fold_indices_rejects_too_many_splits() -> None:
    y = np.array([0] * 20 + [1] * 4)
    with pytest.raises(
        ValueError, match=r"n_splits must be an integer in \[2, 4\].*smallest class has 4 rows"
    ):
        fold_indices(y, n_splits=5, split_seed=0)
