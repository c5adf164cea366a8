"""The concept-bottleneck pipeline (issue 13 item 3): a concept encoder per fold, trained on the fold's training rows
only, whose thresholded concepts the explainer reads; concept accuracy recorded per concept and overall."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import fold_of, train_in_process

from lenbench.data.bundled import DIGIT_NAMES, DIGITS_PARITY_FORMULA, load_digits_parity
from lenbench.data.encoded import EncoderRefit, EncoderSettings, concepts_from, raw_input_dataset
from lenbench.data.synthetic import make_dot, make_trig, make_xor
from lenbench.errors import ConfigError
from lenbench.explainers.blackbox import BlackBoxExplainer
from lenbench.explainers.cbm import ConceptBottleneckExplainer
from lenbench.explainers.cem import ConceptEmbeddingExplainer
from lenbench.explainers.dcr import DeepConceptReasonerExplainer
from lenbench.explainers.psi_net import PsiNetExplainer
from lenbench.explainers.tree import TreeExplainer
from lenbench.folds import CVConfig, run_fold
from lenbench.logic.metrics import concept_accuracies
from lenbench.nn.encoder import predict_concepts, train_encoder
from lenbench.nn.trainer import TrainingConfig

QUICK = {"epochs": 60, "hidden": [16]}


def _trig(**encoder: object) -> object:
    return make_trig(n_samples=300, seed=1, concepts_from="encoder", encoder={**QUICK, **encoder})


# -- no leakage ------------------------------------------------------------------------------------------------------


def test_the_encoder_sees_only_the_folds_training_rows() -> None:
    """Scrambling the raw inputs and true concepts of a fold's test rows changes nothing the encoder learnt: the
    predicted concepts of the training rows and the fit record are identical. Scrambling one training row does."""
    data = _trig()
    fold = fold_of(data, fold=0, n_splits=5)
    rng = np.random.default_rng(0)

    def scrambled(rows: np.ndarray) -> object:
        inputs, x = data.inputs.copy(), data.x.copy()
        inputs[rows] = rng.normal(0, 50, size=inputs[rows].shape)
        x[rows] = 1.0 - x[rows]
        refit = EncoderRefit(inputs=inputs, concepts=x, settings=data.refit.settings)
        return replace(data, inputs=inputs, x=x, refit=refit)

    other = fold_of(scrambled(fold.test_index), fold=0, n_splits=5)
    assert np.array_equal(other.x_trainval, fold.x_trainval)
    mine, theirs = fold.preprocessing["concept_encoder"], other.preprocessing["concept_encoder"]
    assert mine["fit_rows"] == theirs["fit_rows"] == len(fold.trainval_index)
    assert mine["final_loss"] == theirs["final_loss"]
    leaked = fold_of(scrambled(fold.trainval_index[:1]), fold=0, n_splits=5)
    assert leaked.preprocessing["concept_encoder"]["final_loss"] != mine["final_loss"]


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize(
    "make",
    [
        lambda: ConceptBottleneckExplainer(seed=0, training="joint", epochs=40),
        lambda: ConceptBottleneckExplainer(seed=0, training="sequential", epochs=40),
        lambda: ConceptEmbeddingExplainer(seed=0, epochs=40),
        lambda: DeepConceptReasonerExplainer(seed=0, epochs=40),
        lambda: BlackBoxExplainer(seed=0, epochs=40),
    ],
    ids=["cbm-joint", "cbm-sequential", "cem", "dcr", "blackbox"],
)
def test_a_method_on_raw_inputs_sees_only_the_folds_training_rows(make: object) -> None:
    """The leakage check above for the methods that learn from raw inputs themselves: scrambling the test rows'
    inputs and concepts leaves their trained network identical; scrambling one training row does not. (cem trains
    on the true concepts too, for its random interventions: of the training rows only.)"""
    data = raw_input_dataset(_trig(), "test")
    assert data.refit is None and not data.concepts_predicted  # no concept encoder runs for them
    fold = fold_of(data, fold=0, n_splits=5)

    def trained(rows: np.ndarray) -> dict[str, torch.Tensor]:
        inputs, x = data.inputs.copy(), data.x.copy()
        inputs[rows] = np.random.default_rng(0).normal(0, 50, size=inputs[rows].shape)
        x[rows] = 1.0 - x[rows]
        return make().fit(fold_of(replace(data, inputs=inputs, x=x), fold=0, n_splits=5)).network.state_dict()

    mine, theirs = make().fit(fold).network.state_dict(), trained(fold.test_index)
    assert all(torch.equal(mine[key], theirs[key]) for key in mine)
    leaked = trained(fold.trainval_index[:1])
    assert not all(torch.equal(mine[key], leaked[key]) for key in mine)


def test_the_explainer_reads_the_predicted_concepts_and_the_truth_stays_for_scoring() -> None:
    data = _trig()
    assert data.concepts_predicted
    assert np.array_equal(
        data.x, make_trig(n_samples=300, seed=1).x
    )  # the true concepts stay on the data set
    fold = fold_of(data, fold=1, n_splits=5)
    assert set(np.unique(fold.x_test)) <= {0.0, 1.0}  # thresholded at 0.5
    # Inputs that carry nothing: the encoder gives every row the same concepts, while the true ones vary.
    blind = concepts_from(
        replace(make_trig(n_samples=300, seed=1), inputs=np.zeros((300, 7), np.float32)), "encoder", QUICK
    )
    fold = fold_of(blind, fold=1, n_splits=5)
    assert (fold.x_trainval == fold.x_trainval[0]).all() and (fold.x_test == fold.x_trainval[0]).all()
    assert len(np.unique(blind.x[fold.test_index], axis=0)) > 1


def test_the_encoder_is_deterministic_per_seed() -> None:
    first, again = fold_of(_trig(seed=3), n_splits=5), fold_of(_trig(seed=3), n_splits=5)
    assert np.array_equal(first.x_trainval, again.x_trainval)
    records = [dict(f.preprocessing["concept_encoder"]) for f in (first, again)]
    for record in records:
        record.pop("training_time")  # wall clock
    assert records[0] == records[1]


# -- concept accuracy ------------------------------------------------------------------------------------------------


@pytest.mark.slow  # trains the digits encoder for 300 epochs: about 25 s of CPU
def test_concept_accuracy_is_recorded_per_concept_and_overall_on_digits() -> None:
    data = load_digits_parity(concepts_from="encoder", encoder={"epochs": 300})
    result = run_fold(data, 0, CVConfig(n_splits=10), lambda: TreeExplainer(seed=0))
    fold = fold_of(data, fold=0)
    expected = concept_accuracies(data.x[fold.test_index], fold.x_test)
    per_concept = [result.info[f"concept_accuracy.{name}"] for name in DIGIT_NAMES]
    assert per_concept == pytest.approx(list(expected))
    assert result.metrics["concept_accuracy"] == pytest.approx(float(np.mean(per_concept)))
    assert result.metrics["concept_accuracy"] > 0.98  # measured 0.9967 on this fold
    assert result.info["preprocessing"]["concept_encoder"]["epochs"] == 300
    assert result.metrics["truth_exact"] == 1.0  # the tree finds zero | two | four | six | eight


def test_true_concepts_have_no_concept_accuracy() -> None:
    result = run_fold(make_trig(n_samples=300), 0, CVConfig(n_splits=5), lambda: TreeExplainer(seed=0))
    assert math.isnan(result.metrics["concept_accuracy"])
    assert not any(key.startswith("concept_accuracy.") for key in result.info)


def test_a_float64_encoder_trains_and_predicts_in_float64() -> None:
    """data.encoder.precision=64-true (the job's trainer.precision): float64 weights and statistics; its concepts
    agree with the float32 encoder's on nearly every row, and the explainer trains on them in float64."""
    data = _trig()
    kwargs = {"seed": 0, "epochs": 60, "lr": 0.01, "optimizer": "adam", "weight_decay": 0.0}
    encoders = {
        p: train_encoder(data.inputs, data.x, [16], TrainingConfig(**kwargs, trainer={"precision": p})).module
        for p in ("32-true", "64-true")
    }
    assert {t.dtype for t in encoders["64-true"].state_dict().values()} == {torch.float64}
    predicted = {p: predict_concepts(m, data.inputs) for p, m in encoders.items()}
    assert (
        predicted["64-true"].dtype == np.float32
        and (predicted["64-true"] == predicted["32-true"]).mean() > 0.99
    )
    fold = fold_of(_trig(precision="64-true"), fold=0, n_splits=5)
    assert fold.preprocessing["concept_encoder"]["precision"] == "64-true"
    psi = PsiNetExplainer(seed=0, epochs=30, trainer={"precision": "64-true"}).fit(fold)
    assert {p.dtype for p in psi.network.parameters()} == {torch.float64}


# -- bad settings: one ConfigError before training --------------------------------------------------------------------


@pytest.mark.parametrize(
    "source,encoder,match",
    [
        ("predicted", None, r"data.concepts_from='predicted': use truth .* or encoder"),
        ("encoder", {"epochs": 0}, r"encoder.epochs must be an integer > 0"),
        ("encoder", {"hidden": []}, r"encoder.hidden must be a non-empty list"),
        ("encoder", {"lr": -1}, r"encoder.lr must be a number > 0"),
        ("encoder", {"layers": 2}, r"data.encoder.layers: unknown setting; the encoder takes hidden, epochs"),
        ("encoder", {"precision": "16-mixed"}, r"encoder.precision='16-mixed': lenbench trains in 32-true"),
    ],
)
def test_bad_settings_are_config_errors(source: str, encoder: dict | None, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make_dot(n_samples=50, concepts_from=source, encoder=encoder)


def test_a_data_set_without_raw_inputs_cannot_use_an_encoder() -> None:
    with pytest.raises(ConfigError, match="xor has no raw inputs .* use data.concepts_from=truth"):
        concepts_from(make_xor(n_samples=50), "encoder")
    assert EncoderSettings.from_config({"hidden": 8}).hidden == (8,)


# -- python -m train -------------------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_digits_parity_runs_through_the_encoder_by_default(tmp_path: Path) -> None:
    result = train_in_process(tmp_path, "data=digits_parity", "method=tree", "cv.n_splits=3", "seed=0")
    assert result.returncode == 0, result.stderr[-3000:]
    results = pd.read_csv(tmp_path / "job" / "results.csv")
    assert results["concept_accuracy"].min() > 0.98
    explanations = json.loads((tmp_path / "job" / "explanations.json").read_text())
    assert explanations["target_formula"] == DIGITS_PARITY_FORMULA
    for fold in explanations["folds"]:
        record = fold["info"]["preprocessing"]["concept_encoder"]
        assert record["seed"] == 0 and record["epochs"] == 300  # the job's seed, the config's epochs
        assert set(DIGIT_NAMES) == {
            k.split(".", 1)[1] for k in fold["info"] if k.startswith("concept_accuracy.")
        }
    # Predicted concepts are not all exactly one-hot, so the model is below the true concepts' 1.0.
    assert 0.95 < results["model_accuracy"].mean() < 1.0


@pytest.mark.e2e
def test_a_bad_encoder_setting_is_one_line_before_training(tmp_path: Path) -> None:
    result = train_in_process(tmp_path, "data=trig", "method=tree", "data.encoder.epochs=0")
    assert result.returncode == 2
    assert "encoder.epochs must be an integer > 0, got 0" in result.stderr
    assert "Traceback" not in result.stderr
