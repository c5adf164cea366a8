"""``trainer=ddp``: each fold trained by two CPU processes (gloo) gives the single-process result within float
tolerance, inside a real ``python -m train`` job and inside this test process (ranks are forked, see lenbench/nn/ddp.py)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from helpers import CONF, boolean_rows, run_train, train_in_process
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from lenbench.callbacks import FanInPruning, FeaturePruning, L1Regularization
from lenbench.explainers.psi_net import PsiNetExplainer
from lenbench.explainers.relu_net import ReluNetExplainer
from lenbench.folds import CVConfig, run_fold
from lenbench.nn.module import TrainingDiverged
from lenbench.nn.weights import effective_weight, linear_layers

DDP = {
    "strategy": "ddp",
    "accelerator": "cpu",
    "devices": 2,
    "process_group_backend": "gloo",
}
# A short pruning schedule on the synthetic DNF: prunes after epochs 101 and 201 of 300.
PRUNING_JOB = (
    "data=dnf",
    "method=pruning",
    "cv.n_splits=3",
    "cv.folds=[0,1]",
    "method.explainer.epochs=300",
    "method.explainer.callbacks.1.start_epoch=100",
    "method.explainer.callbacks.1.period=100",
)
TIMING = ("elapsed_time", "training_time")


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py: one thread, as the protocol


def _rows() -> tuple[np.ndarray, np.ndarray]:
    """An odd number of rows, so the two ranks get unequal shards (151 and 150)."""
    return boolean_rows(301, 8, rule="dnf")


def _psi(trainer: dict, callbacks: list | None = None) -> PsiNetExplainer:
    callbacks = callbacks if callbacks is not None else [L1Regularization(1e-5, "all"), FanInPruning(2, 100)]
    return PsiNetExplainer(seed=42, trainer=trainer, epochs=300, lr=1e-2, callbacks=callbacks)


@pytest.mark.e2e
def test_ddp_job_gives_the_single_process_results(tmp_path: Path) -> None:
    """The real command with trainer=ddp against the same folds trained in one process."""
    proc = run_train(tmp_path, *PRUNING_JOB, "trainer=ddp")
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = pd.read_csv(tmp_path / "job" / "results.csv").sort_values("split").reset_index(drop=True)

    import train  # noqa: F401  (registers the train_schema config that train.yaml starts from)

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[*PRUNING_JOB, "trainer=cpu"])
    dataset = instantiate(cfg.data)
    cv = CVConfig(n_splits=3)
    made: list[ReluNetExplainer] = []

    def make() -> ReluNetExplainer:
        made.append(instantiate(cfg.method.explainer))
        return made[-1]

    single = [run_fold(dataset, fold, cv, make) for fold in (0, 1)]
    assert list(ddp["split"]) == [0, 1]
    for row, result in zip(ddp.itertuples(), single, strict=True):
        assert row.explanation == str(result.formula)
        for name, value in result.metrics.items():
            if name in TIMING:
                continue
            # Labels and formulas agree exactly. AUROC ranks the scores, and rows with the same concepts have
            # the same score: rounding differences of ~1e-3 in the scores reorder such ties.
            tolerance = 1e-2 if name == "model_auroc" else 1e-12
            assert getattr(row, name) == pytest.approx(value, abs=tolerance, nan_ok=True), name
    # the job recorded that each fold trained on two processes
    assert "trainer=ddp" in (tmp_path / "job" / ".hydra" / "overrides.yaml").read_text()


@pytest.mark.parametrize("precision", ["32-true", "64-true"])
def test_ddp_weights_equal_full_batch_training_with_unequal_shards(precision: str) -> None:
    x, y = _rows()
    single = _psi({"precision": precision}).train(x, y)
    ddp = _psi({**DDP, "precision": precision}).train(x, y)
    a, b = single.network.state_dict(), ddp.network.state_dict()
    assert sorted(a) == sorted(b)  # the pruning reparametrisation came back from rank 0
    dtype = torch.float64 if precision == "64-true" else torch.float32
    assert {t.dtype for t in [*a.values(), *b.values()]} == {dtype}  # rank 0's weights came back in it
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5)
    for la, lb in zip(linear_layers(single.network), linear_layers(ddp.network), strict=True):
        assert torch.equal(la.weight_mask, lb.weight_mask)
    info_a, info_b = single.info(), ddp.info()
    assert info_b["world_size"] == 2 and info_a["world_size"] == 1
    assert info_b["fan_in_pruned_at"] == info_a["fan_in_pruned_at"] == 101
    assert [e for e, _ in info_b["loss_curve"]] == [e for e, _ in info_a["loss_curve"]]
    assert np.allclose([v for _, v in info_b["loss_curve"]], [v for _, v in info_a["loss_curve"]], atol=1e-5)
    assert info_b["final_loss"] == pytest.approx(info_a["final_loss"], abs=1e-5)
    assert np.array_equal(single.predict(x), ddp.predict(x))
    # nothing of the launcher leaks into this process
    assert "MASTER_PORT" not in os.environ and torch.get_num_threads() == 1


def test_ddp_pruning_history_and_l1_come_back() -> None:
    x, y = _rows()
    callbacks = [L1Regularization(1e-3, "first", True), FeaturePruning(start_epoch=100, period=100, offset=1)]
    single = ReluNetExplainer(seed=42, trainer={}, epochs=300, lr=1e-2, callbacks=callbacks)
    ddp = ReluNetExplainer(seed=42, trainer=DDP, epochs=300, lr=1e-2, callbacks=callbacks)
    single.train(x, y)
    ddp.train(x, y)
    assert ddp.info()["feature_pruning"] == single.info()["feature_pruning"] == [[101, 4], [201, 4]]
    first_a, first_b = linear_layers(single.network)[0], linear_layers(ddp.network)[0]
    assert torch.equal(first_a.weight_mask, first_b.weight_mask)
    assert torch.equal(effective_weight(first_a) != 0, effective_weight(first_b) != 0)
    # The double softmax flattens the gradients and Adam normalises them, so rounding differences move single
    # weights by up to ~lr; the function the network computes stays the same.
    torch.testing.assert_close(ddp.network_output(x), single.network_output(x), rtol=0, atol=5e-3)
    assert np.array_equal(single.predict(x), ddp.predict(x))


class _Poison(pl.Callback):
    """Sets a weight to NaN after the optimiser step of ``epoch``: the loss of ``epoch + 1`` is the first NaN."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, module) -> None:  # noqa: ANN001
        if trainer.current_epoch == self.epoch:
            with torch.no_grad():
                linear_layers(module.networks()[0])[0].bias[0] = float("nan")


def test_ddp_divergence_names_the_first_bad_epoch() -> None:
    x, y = _rows()
    with pytest.raises(TrainingDiverged, match="psi: training diverged at epoch 138") as caught:
        _psi(DDP, callbacks=[_Poison(137)]).train(x, y)
    assert caught.value.epoch == 138


@pytest.mark.parametrize(
    ("trainer", "match"),
    [
        ({"strategy": "ddp_spawn", "devices": 2}, "start_method='spawn'"),
        ({"strategy": "ddp", "devices": 2, "start_method": "popen"}, "start_method='popen'"),
    ],
)
def test_launchers_that_cannot_work_inside_a_job_are_refused(trainer: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _psi(trainer)


@pytest.mark.e2e
@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_gpu_trainer_without_a_gpu_says_so(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no CUDA GPU is available"):
        _psi({"accelerator": "gpu", "devices": 1})
    proc = train_in_process(tmp_path, "data=dnf", "method=psi", "trainer=gpu")
    assert proc.returncode == 2 and "no CUDA GPU is available" in proc.stderr, proc.stderr[-2000:]
