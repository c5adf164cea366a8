"""A NaN/inf loss stops the fold with an error naming the method, the first non-finite epoch and the loss, never a
formula read from garbage weights; the experiment loop names the fold (issue 7)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from helpers import boolean_rows, train_in_process

from lenbench.callbacks import FanInPruning, FeaturePruning, L1Regularization
from lenbench.callbacks.base import training_networks
from lenbench.data.synthetic import make_dnf
from lenbench.explainers.network import train_together
from lenbench.explainers.psi_net import PsiNetExplainer
from lenbench.explainers.relu_net import ReluNetExplainer
from lenbench.fold_runner import iter_folds
from lenbench.folds import CVConfig, FoldFailed, FoldPlan
from lenbench.nn.module import TrainingDiverged
from lenbench.nn.weights import linear_layers

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py: one thread, as the protocol


def _pruning(lr: float = 1e-2, extra: list | None = None, seed: int = 42) -> ReluNetExplainer:
    callbacks = [*(extra or []), L1Regularization(1e-3, include_bias=True), FeaturePruning(50, 50)]
    return ReluNetExplainer(seed=seed, epochs=200, lr=lr, callbacks=callbacks)


def _psi(extra: list | None = None) -> PsiNetExplainer:
    callbacks = [*(extra or []), L1Regularization(1e-5, "all"), FanInPruning(2, 50)]
    return PsiNetExplainer(seed=42, epochs=200, lr=1e-2, callbacks=callbacks)


class _Poison(pl.Callback):
    """Puts ``value`` into a first-layer bias of the last network after the optimiser step of ``epoch``."""

    def __init__(self, epoch: int, value: float = float("nan")) -> None:
        self.epoch, self.value = epoch, value

    def on_train_epoch_end(self, trainer, module) -> None:  # noqa: ANN001
        if trainer.current_epoch == self.epoch:
            with torch.no_grad():
                linear_layers(training_networks(module)[-1])[0].bias[0] = self.value


def test_a_huge_learning_rate_stops_training_with_a_clear_error() -> None:
    x, y = boolean_rows(200, 8)
    with pytest.raises(TrainingDiverged) as caught:
        _pruning(lr=1e30).train(x, y)
    error = caught.value
    assert error.method == "pruning" and error.epoch == 1 and not np.isfinite(error.loss)
    assert str(error).startswith("pruning: training diverged at epoch 1: the loss is nan")


@pytest.mark.parametrize("together", [1, 3])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_the_first_non_finite_epoch_and_network_are_reported(together: int, value: float) -> None:
    x, y = boolean_rows(200, 8)
    # poisoned after the step of epoch 77: the forward of epoch 78 is the first to see it
    explainers = [_pruning(extra=[_Poison(77, value)], seed=seed) for seed in range(together)]
    with pytest.raises(TrainingDiverged, match="pruning: training diverged at epoch 78") as caught:
        train_together(explainers, [(x, y)] * together)
    assert caught.value.epoch == 78 and caught.value.network == together - 1


def test_a_loss_that_refuses_nan_inputs_is_reported_as_divergence() -> None:
    # BCELoss raises on NaN probabilities instead of returning NaN: still a divergence, at the epoch it happened.
    x, y = boolean_rows(200, 8)
    with pytest.raises(TrainingDiverged, match="psi: training diverged at epoch 31") as caught:
        _psi(extra=[_Poison(30)]).train(x, y)
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_non_finite_data_is_caught_at_the_first_epoch() -> None:
    x, y = boolean_rows(200, 8)
    x[3, 2] = np.inf
    with pytest.raises(TrainingDiverged, match="epoch 0"):
        _pruning().train(x, y)


def test_the_error_survives_pickling() -> None:
    error = pickle.loads(pickle.dumps(TrainingDiverged("psi", 12, float("inf"), 3)))
    assert (error.method, error.epoch, error.loss, error.network) == ("psi", 12, float("inf"), 3)
    assert "epoch 12" in str(error)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_the_fold_loop_names_the_fold(n_jobs: int) -> None:
    data = make_dnf(n_samples=300, seed=0)
    cv = CVConfig(n_splits=3, folds=[0, 1], n_jobs=n_jobs)
    with pytest.raises(
        FoldFailed, match=r"fold \d failed: TrainingDiverged: pruning: training diverged at epoch 1"
    ):
        list(iter_folds(data, FoldPlan.alone(lambda: _pruning(lr=1e30), cv)))


@pytest.mark.e2e
def test_the_command_line_reports_the_diverged_fold(tmp_path: Path) -> None:
    proc = train_in_process(
        tmp_path,
        *("data=dnf", "method=pruning", "cv.n_splits=3", "cv.folds=[0]"),
        *("method.explainer.lr=1e30", "method.explainer.epochs=50"),
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "fold 0 failed: TrainingDiverged: pruning: training diverged at epoch 1" in proc.stderr
