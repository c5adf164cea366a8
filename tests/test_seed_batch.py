"""Seed batching: a sweep's jobs that differ only in the seed train their networks together, bit-identical to the
jobs run alone; seeds whose data follow the seed, FINISHED jobs and methods that do not train together stay apart."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from helpers import run_train, store_uri
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import train  # noqa: F401 - registers the config schema
from lenbench.callbacks import L1Regularization
from lenbench.callbacks.base import training_networks
from lenbench.data.synthetic import make_dnf
from lenbench.explainers.relu_net import ReluNetExplainer
from lenbench.fold_runner import iter_folds
from lenbench.folds import Companion, CVConfig, FoldPlan, FoldResult
from lenbench.logic.formula import Formula
from lenbench.nn.weights import linear_layers
from lenbench.seed_batch import (
    SeedBatch,
    batch_scope,
    current_batch,
    differs_only_in_seed,
    plan_seed_batch,
    seed_groups,
    trained_seed_tags,
)
from lenbench.tracking.mlflow import MlflowTracker

CONF = Path(__file__).resolve().parents[1] / "conf"
# Pruned to fan-in 2 at epoch 100: a short training whose read-out stays small (unpruned, it would cost more than
# the training).
PSI = (
    "method=psi",
    "data=xor",
    "method.explainer.epochs=200",
    "method.explainer.callbacks.1.epoch=100",
    "cv.n_splits=3",
)


def resolved(*overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return OmegaConf.to_container(compose(config_name="train", overrides=list(overrides)), resolve=True)


def test_jobs_equal_but_for_the_seed_form_one_group_in_job_order() -> None:
    configs = [
        {"method": {"name": "psi", "explainer": {"seed": "${seed}"}}, "seed": 0},
        {"method": {"name": "tree", "explainer": {"seed": "${seed}"}}, "seed": 0},
        {"method": {"name": "psi", "explainer": {"seed": "${seed}"}}, "seed": 1},
        {"method": {"name": "tree", "explainer": {"seed": "${seed}"}}, "seed": 1},
        {"method": {"name": "psi", "explainer": {"seed": "${seed}"}}, "seed": 2, "cv": {"n_splits": 5}},
    ]
    assert seed_groups(configs) == [[0, 2], [1, 3], [4]]
    repeated = [{"seed": 3, "method": "psi"}, {"seed": 3, "method": "psi"}]
    assert seed_groups(repeated) == [[0], [1]]  # the same job twice is not two seeds


def test_a_data_set_that_follows_the_seed_is_not_shared() -> None:
    assert differs_only_in_seed(resolved(*PSI, "seed=0"), resolved(*PSI, "seed=1"))
    assert not differs_only_in_seed(resolved(*PSI, "seed=0"), resolved(*PSI, "seed=1", "cv.n_splits=4"))
    trig = ("method=psi", "data=trig")  # its concept encoder is seeded with the job's seed
    assert not differs_only_in_seed(resolved(*trig, "seed=0"), resolved(*trig, "seed=1"))


def test_the_batch_is_the_current_one_only_inside_its_scope() -> None:
    batch = SeedBatch((0, 1))
    assert current_batch() is None
    with batch_scope(batch):
        assert current_batch() is batch
    assert current_batch() is None
    batch.leave(1, ["fold results"], "psi-s0")
    assert batch.take(1) == (["fold results"], "psi-s0")
    assert batch.take(1) is None  # once: a rerun of the job trains again


def _results(folder: Path) -> pd.DataFrame:
    table = pd.read_csv(folder / "results.csv")
    return table[[c for c in table.columns if "time" not in c]]


def _job_tags(tmp_path: Path) -> dict[str, dict[str, str]]:
    from mlflow import MlflowClient

    client = MlflowClient(store_uri(tmp_path))
    runs = client.search_runs([client.get_experiment_by_name("xor").experiment_id], max_results=1000)
    return {
        r.data.tags["mlflow.runName"]: r.data.tags for r in runs if "mlflow.parentRunId" not in r.data.tags
    }


def _fold_metrics(tmp_path: Path) -> dict[str, dict[str, float]]:
    from mlflow import MlflowClient

    client = MlflowClient(store_uri(tmp_path))
    runs = client.search_runs([client.get_experiment_by_name("xor").experiment_id], max_results=1000)
    return {
        r.data.tags["mlflow.runName"]: r.data.metrics for r in runs if "mlflow.parentRunId" in r.data.tags
    }


@pytest.mark.e2e
def test_a_seed_sweep_trains_together_and_equals_the_jobs_alone(tmp_path: Path) -> None:
    proc = run_train(tmp_path / "sweep", *PSI, "seed=0,1,2", multirun=True, uri=store_uri(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "psi-s0: trains seed(s) 1, 2 of this sweep with its folds" in proc.stderr
    assert "psi-s2: 3 fold(s) trained by psi-s0 (seed batching)" in proc.stderr
    assert (
        "epoch 199 loss" in proc.stderr and "(trained by psi-s0):" in proc.stderr
    )  # each fold's line says so
    tags = _job_tags(tmp_path)
    assert tags["psi-s0"]["seed_batch"] == "0,1,2"
    assert tags["psi-s1"]["seed_batch_trained_by"] == "psi-s0"
    assert tags["psi-s2"]["seed_batch_trained_by"] == "psi-s0"
    # What happened, as the UI shows it: psi-s0's fold runs hold the time that trained the three seeds' networks
    # (tagged seed_batch), the later seeds' fold runs none, and each parent's description says so first.
    folds = _fold_metrics(tmp_path)
    assert all(folds[f"psi-s0-fold{k}"]["training_time"] > 0 for k in range(3))
    assert not [n for n, m in folds.items() if "training_time" in m and not n.startswith("psi-s0-")]
    assert "trained the networks of seeds 0, 1, 2 together" in tags["psi-s0"]["mlflow.note.content"]
    assert "**psi-s0** trained this seed's networks" in tags["psi-s2"]["mlflow.note.content"].split("\n- ")[0]
    later = pd.read_csv(tmp_path / "sweep" / "sweep" / "1-psi-s1" / "results.csv")
    assert later["training_time"].isna().all()  # also in results.csv: not a copy of psi-s0's
    for seed in (1, 2):
        alone = run_train(tmp_path / f"alone{seed}", *PSI, f"seed={seed}", "tracking.enabled=false")
        assert alone.returncode == 0, alone.stderr[-3000:]
        batched = _results(tmp_path / "sweep" / "sweep" / f"{seed}-psi-s{seed}")
        pd.testing.assert_frame_equal(batched, _results(tmp_path / f"alone{seed}" / "job"))


@pytest.mark.e2e
def test_a_finished_seed_is_not_trained_again_and_a_tree_sweep_is_not_batched(tmp_path: Path) -> None:
    uri = store_uri(tmp_path)
    first = run_train(tmp_path / "s1", *PSI, "seed=1", uri=uri)
    assert first.returncode == 0, first.stderr[-3000:]
    proc = run_train(tmp_path / "sweep", *PSI, "seed=0,1", multirun=True, uri=uri)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "trains seed(s)" not in proc.stderr  # seed 1 is FINISHED: seed 0 trains alone, seed 1 is skipped
    assert "already FINISHED" in proc.stderr
    assert "seed_batch" not in _job_tags(tmp_path)["psi-s0"]
    trees = run_train(
        tmp_path / "trees", "method=tree", "data=xor", "cv.n_splits=3", "seed=0,1", multirun=True, uri=uri
    )
    assert trees.returncode == 0, trees.stderr[-3000:]
    assert "seed batching" not in trees.stderr and "trains seed(s)" not in trees.stderr


class _PoisonWhenTogether(pl.Callback):
    """NaN into the last network's first bias at epoch 3, only when the module trains several networks."""

    def on_train_epoch_end(self, trainer, module) -> None:  # noqa: ANN001
        networks = training_networks(module)
        if trainer.current_epoch == 3 and len(networks) > 1:
            with torch.no_grad():
                linear_layers(networks[-1])[0].bias[0] = float("nan")


def _pruning(seed: int) -> Callable[[], ReluNetExplainer]:
    callbacks = [L1Regularization(1e-3, include_bias=True), _PoisonWhenTogether()]
    return lambda: ReluNetExplainer(seed=seed, epochs=60, lr=1e-2, callbacks=callbacks)


def test_when_another_seed_fails_the_job_trains_its_folds_alone(caplog: pytest.LogCaptureFixture) -> None:
    data = make_dnf(n_samples=300, seed=0)
    cv = CVConfig(n_splits=3, folds=[0])
    with caplog.at_level(logging.WARNING):
        plan = FoldPlan(_pruning(1), cv, together=True, companions=[Companion(2, _pruning(2))])
        together = list(iter_folds(data, plan))
    assert "training with the sweep's other seeds failed (TrainingDiverged" in caplog.text
    assert [r.member for r in together] == [0]  # none for the seed that failed: its own job trains it
    alone = list(iter_folds(data, FoldPlan.alone(_pruning(1), cv)))  # one network: never poisoned
    for a, b in zip(together, alone, strict=True):
        assert str(a.formula) == str(b.formula) and a.metrics["model_accuracy"] == b.metrics["model_accuracy"]


def test_the_jobs_own_fold_holds_the_training_time_of_every_seed_once() -> None:
    def plain(seed: int) -> Callable[[], ReluNetExplainer]:
        return lambda: ReluNetExplainer(seed=seed, epochs=30, lr=1e-2)

    cv = CVConfig(n_splits=3, folds=[0, 1], n_jobs=1)
    plan = FoldPlan(plain(1), cv, together=True, companions=[Companion(2, plain(2)), Companion(3, plain(3))])
    results = list(iter_folds(make_dnf(n_samples=300, seed=0), plan))
    own, theirs = [r for r in results if not r.member], [r for r in results if r.member]
    assert [r.fold for r in own] == [0, 1] and len(theirs) == 4
    assert all(r.info["networks_trained_together"] == 6 for r in results)
    assert all(r.metrics["training_time"] > 0 for r in own)  # the fold's time, its three seeds' networks
    assert all(
        r.metrics["training_time"] != r.metrics["training_time"] for r in theirs
    )  # NaN: not trained alone
    assert all("training_time" not in r.info for r in results)  # one figure, the metric


def test_the_first_job_plans_the_later_seeds_and_the_later_jobs_take_their_folds() -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        first, second = (compose(config_name="train", overrides=[*PSI, f"seed={s}"]) for s in (0, 1))
    batch = SeedBatch((0, 1, 2, 3))
    together = FoldPlan(lambda: None, CVConfig(n_splits=5), together=True)
    plan = partial(plan_seed_batch, explainer_factory=lambda config: config.seed)
    planned, tags = plan(batch, first, "psi-s0", together, apart=lambda _, resolved: resolved["seed"] == 2)
    assert [(c.seed, c.make_explainer) for c in planned.companions] == [(1, 1), (3, 3)]  # 2 is FINISHED
    assert tags == {"seed_batch": "0,1,3"}
    alone = replace(together, together=False)  # a tree
    assert plan(batch, first, "psi-s0", alone, apart=lambda *_: False) == (alone, {})
    resumed = together.keeping({0: FoldResult(fold=0, formula=Formula.false(), metrics={})})
    assert plan(batch, first, "psi-s0", resumed, apart=lambda *_: False) == (resumed, {})
    batch.leave(1, [FoldResult(fold=4, formula=Formula.false(), metrics={})], "psi-s0")
    planned, tags = plan(batch, second, "psi-s1", together, apart=lambda *_: False)
    assert (
        list(planned.kept) == [4] and tags == {"seed_batch_trained_by": "psi-s0"} and not planned.companions
    )
    assert planned.kept[4].info == {"trained_by": "psi-s0"}  # in explanations.json and the fold's log line


def test_tags_name_the_seeds_really_trained_with_each_fold() -> None:
    companions = [Companion(1, lambda: None), Companion(2, lambda: None)]

    def fold(index: int) -> FoldResult:
        return FoldResult(fold=index, formula=Formula.false(), metrics={})

    as_planned = {0: [fold(0), fold(1)], 1: [fold(0), fold(1)]}
    assert trained_seed_tags(0, companions, as_planned, [0, 1]) is None
    # fold 1's group failed with the others and trained alone; seed 2 got no fold at all
    job, folds = trained_seed_tags(0, companions, {0: [fold(0)]}, [0, 1])
    assert job == {"seed_batch": "0,1"} and folds == {0: {"seed_batch": "0,1"}, 1: {"seed_batch": "0"}}


def test_the_tracker_corrects_tags_on_the_job_and_its_fold_runs(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MlflowTracker(uri, "tags")
    tracker.start_job("psi-s0", {"seed_batch": "0,1,2"}, {})
    tracker.start_fold(0, time.time())
    tracker.start_fold(1, time.time())
    tracker.set_tags({"seed_batch": "0,1"}, {0: {"seed_batch": "0,1"}, 1: {"seed_batch": "0"}})
    tracker.start_fold(2, time.time())  # a fold run created afterwards carries the corrected job tag
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("tags").experiment_id])
    seen = {r.data.tags.get("mlflow.runName"): r.data.tags["seed_batch"] for r in runs}
    assert seen == {"psi-s0": "0,1", "psi-s0-fold0": "0,1", "psi-s0-fold1": "0", "psi-s0-fold2": "0,1"}
