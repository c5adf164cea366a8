"""Stock Lightning callbacks work with the network explainers: one Lightning epoch is one protocol epoch (issue 15).

EarlyStopping stops at the epoch its own rule says, a progress bar counts protocol epochs, the pruning schedules act
in the standard ``on_train_epoch_end`` of the epoch they name, and ``conf/trainer/early_stopping.yaml`` works from
the command line.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
from helpers import boolean_rows, train_in_process
from pytorch_lightning.callbacks import EarlyStopping

from lenbench.callbacks import FanInPruning, FeaturePruning, L1Regularization
from lenbench.data.synthetic import make_dnf
from lenbench.explainers.entropy_net import EntropyNetExplainer
from lenbench.explainers.network import train_together
from lenbench.explainers.psi_net import PsiNetExplainer
from lenbench.explainers.relu_net import ReluNetExplainer
from lenbench.folds import CVConfig, run_fold

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py: one thread, as the protocol


class _Watch(pl.Callback):
    """Records, per epoch, the val_loss the validation loop logged and the epochs the train hooks saw."""

    def __init__(self) -> None:
        self.val_losses: list[float] = []
        self.epochs: list[int] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.epochs.append(int(trainer.current_epoch))

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.val_losses.append(float(trainer.callback_metrics["val_loss"]))


def _expected_stop(losses: list[float], patience: int, min_delta: float) -> int | None:
    """The epoch EarlyStopping(mode="min") stops after: ``patience`` checks in a row without an improvement of more
    than ``min_delta`` on the best value so far."""
    best, wait = math.inf, 0
    for epoch, value in enumerate(losses):
        if value < best - min_delta:
            best, wait = value, 0
        else:
            wait += 1
            if wait >= patience:
                return epoch
    return None


def test_early_stopping_on_val_loss_stops_at_the_right_epoch() -> None:
    data = make_dnf(n_samples=400, seed=1)
    watch = _Watch()
    stopper = EarlyStopping(monitor="val_loss", mode="min", patience=4, min_delta=0.02)
    explainer = PsiNetExplainer(
        seed=0,
        epochs=300,
        lr=1e-2,
        trainer={"validate": True, "callbacks": [stopper, watch]},
        callbacks=[L1Regularization(1e-5, "all")],
    )
    result = run_fold(data, 0, CVConfig(n_splits=3), lambda: explainer)
    watched = explainer.training.stock_callbacks[1]  # the configured instance is never used itself
    assert watched.val_losses == [] and result.info["epochs_trained"] < 300  # it really stopped early
    trained = result.info["epochs_trained"]
    # The fold's own copy of the watcher saw one validation per protocol epoch, and the rule stops where it stopped.
    fitted = _fitted_watch(explainer)
    assert fitted.epochs == list(range(trained))
    assert len(fitted.val_losses) == trained
    assert _expected_stop(fitted.val_losses, patience=4, min_delta=0.02) == trained - 1
    assert result.loss_curve[-1][0] == trained - 1  # the curve ends at the last epoch trained


def _fitted_watch(explainer: PsiNetExplainer) -> _Watch:
    watch = explainer.fitted_callbacks[-1]
    assert isinstance(watch, _Watch)
    return watch


def test_a_progress_bar_counts_protocol_epochs(capfd: pytest.CaptureFixture[str]) -> None:
    x, y = boolean_rows(120, 6)
    ReluNetExplainer(seed=0, epochs=25, lr=1e-2, trainer={"enable_progress_bar": True}).train(x, y)
    captured = capfd.readouterr()
    bar = captured.out + captured.err
    assert "Epoch 24" in bar and "Epoch 25" not in bar  # epochs 0..24: one per protocol epoch


def test_pruning_acts_in_the_standard_epoch_end_hook_of_the_epoch_it_names() -> None:
    x, y = boolean_rows(200, 8, rule="dnf")
    watch = _Watch()
    explainer = ReluNetExplainer(
        seed=1,
        epochs=40,
        lr=1e-2,
        trainer={"callbacks": [watch]},
        callbacks=[
            L1Regularization(1e-2, include_bias=True),
            FeaturePruning(start_epoch=10, period=10, offset=3),
        ],
    ).train(x, y)
    assert [e for e, _ in explainer.info()["feature_pruning"]] == [13, 23, 33]
    assert _fitted_watch(explainer).epochs == list(range(40))


def test_stock_callbacks_train_one_network_per_module() -> None:
    x, y = boolean_rows(120, 6)
    explainers = [
        ReluNetExplainer(seed=s, epochs=5, trainer={"callbacks": [EarlyStopping(monitor="train_loss")]})
        for s in (0, 1)
    ]
    assert not explainers[0].trains_together
    with pytest.raises(ValueError, match="one network per module"):
        train_together(explainers, [(x, y), (x, y)])


def test_trainer_callbacks_must_be_callbacks() -> None:
    with pytest.raises(ValueError, match="trainer.callbacks: 'EarlyStopping' is not a Lightning Callback"):
        EntropyNetExplainer(seed=0, trainer={"callbacks": ["EarlyStopping"]})


@pytest.mark.e2e
def test_the_early_stopping_trainer_runs_from_the_command_line(tmp_path: Path) -> None:
    proc = train_in_process(
        tmp_path,
        *("data=dnf", "method=entropy", "trainer=early_stopping", "cv.n_splits=3", "cv.folds=[0,1]"),
        *("trainer.callbacks.0.patience=3", "trainer.callbacks.0.min_delta=0.01"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    folds = sorted((tmp_path / "job").rglob("explanations.json"))
    assert folds, "the job wrote no explanations"
    record = json.loads(folds[0].read_text())
    trained = [f["info"]["epochs_trained"] for f in record["folds"]]
    assert len(trained) == 2 and all(0 < t < 200 for t in trained), trained


def test_psi_stopped_before_its_pruning_says_so() -> None:
    data = make_dnf(n_samples=300, seed=1)
    stopper = EarlyStopping(monitor="val_loss", patience=1, min_delta=10.0)  # stops after two epochs
    explainer = PsiNetExplainer(
        seed=0,
        epochs=300,
        trainer={"validate": True, "callbacks": [stopper]},
        callbacks=[L1Regularization(1e-5, "all"), FanInPruning(fan_in=2, epoch=100)],
    )
    with pytest.raises(
        ValueError, match="psi: training stopped early after 2 epochs, before its fan-in pruning"
    ):
        run_fold(data, 0, CVConfig(n_splits=3), lambda: explainer)
