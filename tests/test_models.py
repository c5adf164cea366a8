"""Every method's fitted explainer, logged as an MLflow model and loaded back, predicts exactly what the explainer
predicted on its fold's test rows (bit for bit, CPU), scores the same, fires its formula where the formula is true,
and reads local explanations that hold on their rows; a table model takes raw rows through the fold's own
preprocessing."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient

from lenbench.data import load_breast_cancer, make_xor
from lenbench.errors import UserError
from lenbench.folds import CVConfig, run_fold
from lenbench.logic.formula import Formula
from lenbench.models.export import ModelExport
from lenbench.models.frames import concept_rows
from lenbench.models.preprocess import encode_raw, raw_encoding
from lenbench.models.store import log_model, requirements
from lenbench.tracking.store import check_store

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TRAINER = {
    "accelerator": "cpu",
    "devices": 1,
    "strategy": "auto",
    "precision": "32-true",
    "log_every_n_epochs": 10,
}


def _explainer(method: str, precision: str = "32-true"):  # noqa: ANN202
    from lenbench.callbacks.entropy import EntropyPenalty
    from lenbench.callbacks.l1 import L1Regularization
    from lenbench.callbacks.pruning import FanInPruning, FeaturePruning
    from lenbench.explainers import entropy_net, psi_net, relu_net, rules, tree

    net = {"seed": 1, "trainer": {**TRAINER, "precision": precision}, "epochs": 40}
    if method == "pruning":
        l1 = L1Regularization(strength=1e-3, layers="first", include_bias=True)
        pruning = FeaturePruning(start_epoch=20, period=10, offset=1, threshold=0.5, layer=0)
        return relu_net.ReluNetExplainer(hidden=[8, 4], callbacks=[l1, pruning], **net)
    if method == "weights":
        return relu_net.ReluNetExplainer(feature_selection="weights", activation="relu", hidden=[8, 4], **net)
    if method == "psi":
        l1 = L1Regularization(strength=1e-5, layers="all", include_bias=False)
        return psi_net.PsiNetExplainer(hidden=[6, 3], callbacks=[l1, FanInPruning(fan_in=2, epoch=20)], **net)
    if method == "entropy":
        return entropy_net.EntropyNetExplainer(hidden=[8], callbacks=[EntropyPenalty(strength=1e-3)], **net)
    if method == "tree":
        return tree.TreeExplainer(seed=1)
    if method == "brl":
        return rules.BayesianRuleListExplainer(seed=1, max_iter=300, n_chains=1)
    if method == "rulelist":
        return rules.GreedyRuleListExplainer(seed=1)
    return rules.RandomForestExplainer(seed=1, n_estimators=10)


METHODS = ("tree", "pruning", "weights", "psi", "entropy", "brl", "rulelist", "rf")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[MlflowClient, str]:
    folder = tmp_path_factory.mktemp("models")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    check_store(uri)
    client = MlflowClient(uri)
    return client, client.create_experiment("models", artifact_location=str(folder / "artifacts"))


def _fit(dataset, method: str, precision: str = "32-true"):  # noqa: ANN001, ANN202
    """Fold 0 of ``dataset`` scored by run_fold with its model exported, and the explainer that fitted it."""
    made = []

    def make():  # noqa: ANN202
        made.append(_explainer(method, precision))
        return made[-1]

    result = run_fold(dataset, 0, CVConfig(n_splits=3), make, export_model=True)
    return result, made[0]


def _reload(store: tuple[MlflowClient, str], export):  # noqa: ANN001, ANN202
    import mlflow.pyfunc

    client, experiment = store
    run = client.create_run(experiment).info.run_id
    uri = log_model(client, experiment, run, export)
    assert uri.startswith("models:/")
    assert [m.model_id for m in client.search_logged_models([experiment]) if m.source_run_id == run] == [
        uri.removeprefix("models:/")
    ]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", client.tracking_uri)
        return mlflow.pyfunc.load_model(f"runs:/{run}/model")


@pytest.mark.parametrize("method", METHODS)
def test_reloaded_model_predicts_exactly_what_the_explainer_did(method: str, store) -> None:  # noqa: ANN001
    dataset = make_xor(n_samples=240, n_concepts=6, seed=3)
    result, explainer = _fit(dataset, method)
    test = result.splits["test"]
    x_test = dataset.x[test]
    model = _reload(store, result.model)
    answer = model.predict(pd.DataFrame(x_test, columns=dataset.concept_names))

    assert list(answer.columns) == ["predicted_class", "score", "formula_fires", "local_explanation"]
    assert np.array_equal(answer["predicted_class"].to_numpy(), explainer.predict(x_test))
    scores = explainer.scores(x_test)
    assert np.array_equal(answer["score"].to_numpy(), np.asarray(scores, dtype=np.float64), equal_nan=True)
    if method == "rf":
        assert answer["formula_fires"].isna().all() and (answer["local_explanation"] == "").all()
    else:
        expected = Formula.parse(str(result.formula)).evaluate(x_test, dataset.concept_names)
        assert np.array_equal(answer["formula_fires"].to_numpy(dtype=bool), expected)
    if method not in ("psi", "rf"):  # a local explanation is the row's own values of the concepts behind it
        for row, text in zip(x_test, answer["local_explanation"], strict=True):
            assert Formula.parse(text).evaluate(row[None, :], dataset.concept_names)[0]


@pytest.mark.parametrize("method", ("pruning", "weights", "psi", "entropy"))
def test_a_float64_network_is_logged_in_float64_and_predicts_as_the_explainer(method: str, store) -> None:  # noqa: ANN001
    """trainer.precision=64-true: the exported layers keep float64 tensors, the reloaded network computes in float64
    (float32 rows cast up), and its labels and scores are the explainer's bit for bit."""
    dataset = make_xor(n_samples=240, n_concepts=6, seed=3)
    result, explainer = _fit(dataset, method, precision="64-true")
    assert {p.dtype for p in explainer.network.parameters()} == {torch.float64}
    assert explainer.network_output(dataset.x[:5]).dtype == torch.float64
    network = result.model.model  # the NetworkModel the logged model predicts with
    assert {t.dtype for layer in network.layers for t in layer["tensors"].values()} == {np.dtype("float64")}
    x_test = dataset.x[result.splits["test"]]
    labels, scores = network.predict_and_score(x_test)
    assert np.array_equal(labels, explainer.predict(x_test)) and np.array_equal(
        scores, explainer.scores(x_test)
    )
    assert {p.dtype for p in network.network.parameters()} == {torch.float64}
    answer = _reload(store, result.model).predict(pd.DataFrame(x_test, columns=dataset.concept_names))
    assert np.array_equal(answer["predicted_class"].to_numpy(), explainer.predict(x_test))
    assert np.array_equal(answer["score"].to_numpy(), explainer.scores(x_test))
    expected = Formula.parse(str(result.formula)).evaluate(x_test, dataset.concept_names)
    assert np.array_equal(answer["formula_fires"].to_numpy(dtype=bool), expected)


def test_tree_local_explanation_is_the_leaf_it_decides_in() -> None:
    dataset = make_xor(n_samples=240, n_concepts=6, seed=3)
    result, explainer = _fit(dataset, "tree")
    from lenbench.models.frames import explain_frame
    from lenbench.models.predict import Predictor

    predictor = Predictor(result.model)
    rows = concept_rows(result.model, pd.DataFrame(dataset.x, columns=dataset.concept_names))
    answer = explain_frame(predictor, rows)
    predicted = explainer.predict(dataset.x)
    assert np.array_equal(answer["predicted_class"].to_numpy(), predicted)
    for text in answer["local_explanation"].unique():  # every row on a path ends in that path's leaf
        region = Formula.parse(text).evaluate(dataset.x, dataset.concept_names)
        assert region.any() and (predicted[region] == predicted[region][0]).all()


def test_pruning_local_explanation_uses_the_concepts_still_connected() -> None:
    dataset = make_xor(n_samples=240, n_concepts=6, seed=3)
    result, explainer = _fit(dataset, "pruning")
    from lenbench.models.predict import Predictor

    connected = {
        dataset.concept_names[j] for j in np.flatnonzero(np.abs(explainer.layer_arrays()[0][0]).sum(axis=0))
    }
    texts = Predictor(result.model).local_explanations(dataset.x[:20], explainer.predict(dataset.x[:20]))
    assert all(Formula.parse(t).concepts == connected for t in texts)


@pytest.mark.parametrize("method", ("tree", "entropy"))
def test_a_table_model_takes_raw_rows_through_the_folds_own_preprocessing(method: str, store) -> None:  # noqa: ANN001
    from lenbench.data.bundled import breast_cancer_frame

    dataset = load_breast_cancer(fit_scope="train")
    result, explainer = _fit(dataset, method)
    raw = breast_cancer_frame()
    encoding = result.model.preprocessing
    assert encoding is not None
    fold_x = dataset.refit(np.concatenate([result.splits["train"], result.splits["validation"]])).x
    assert np.array_equal(encode_raw(encoding, raw.drop(columns=["diagnosis"])), fold_x)

    test = result.splits["test"]
    model = _reload(store, result.model)
    answer = model.predict(raw.iloc[test].drop(columns=["diagnosis"]))
    assert np.array_equal(answer["predicted_class"].to_numpy(), explainer.predict(fold_x[test]))
    assert np.array_equal(answer["score"].to_numpy(), explainer.scores(fold_x[test]))


def test_bad_rows_are_one_line_naming_the_column() -> None:
    dataset = make_xor(n_samples=240, n_concepts=6, seed=3)
    result, _ = _fit(dataset, "tree")
    good = pd.DataFrame(dataset.x[:5], columns=dataset.concept_names)
    cases = {
        "missing": (good.drop(columns=["c2"]), r"1 concept column\(s\) missing \(c2\)"),
        "extra": (good.assign(age=1.0), r"1 column\(s\) the model does not know \(age\)"),
        "range": (
            good.assign(c3=[0, 1, 2.5, 0, 1]),
            r"concept 'c3' in row 3 is 2\.5, not a number in \[0, 1\]",
        ),
        "text": (good.assign(c0=["1", "0", "yes", "1", "0"]), r"concept 'c0' in row 3 is 'yes'"),
    }
    for frame, message in cases.values():
        with pytest.raises(UserError, match=message) as caught:
            concept_rows(result.model, frame)
        assert "\n" not in str(caught.value) and "fix:" in str(caught.value)
    with_label = concept_rows(result.model, good.assign(y=dataset.y[:5]))
    assert np.array_equal(with_label.labels, dataset.y[:5])


def test_a_model_of_another_lenbench_version_is_refused(store) -> None:  # noqa: ANN001
    import mlflow.pyfunc

    from lenbench.models.runs import FoundModels, load_models

    dataset = make_xor(n_samples=240, n_concepts=6, seed=3)
    result, _ = _fit(dataset, "tree")
    client, experiment = store
    old = dataclasses.replace(result.model, lenbench_version="0.0.1")
    run = client.create_run(experiment).info.run_id
    uri = log_model(client, experiment, run, old)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", client.tracking_uri)
        with pytest.raises(UserError, match=r"was logged by lenbench 0\.0\.1 .* fix: use lenbench 0\.0\.1"):
            load_models(FoundModels(run, "old", True, {0: uri}))
        with pytest.raises(Exception, match="logged by lenbench 0.0.1"):
            mlflow.pyfunc.load_model(uri)
        # A model of this version logged before its files' hashes were recorded (format 2) cannot be checked.
        unhashed = log_model(client, experiment, run, dataclasses.replace(result.model, format_version=2))
        with pytest.raises(
            UserError, match=r"\(model format 2\), .* \(format 3\); fix: train the model again"
        ):
            load_models(FoundModels(run, "old", True, {0: unhashed}))


def test_mimic_raw_rows_give_the_notebooks_concepts(mimic_root, mimic, mimic_csv) -> None:  # noqa: ANN001
    """The notebook's imputation, scaling and tolerant binning, replayed on the raw file, bit for bit; also with
    the preprocessing fitted on some rows only (data.fit_scope=train)."""
    from lenbench.data import load_mimic

    raw = pd.read_csv(mimic_csv)
    assert np.array_equal(encode_raw(raw_encoding(mimic.preprocessing), raw), mimic.x)
    refitted = load_mimic(mimic_root, fit_scope="train", download=False).refit(np.arange(0, 1776, 3))
    assert np.array_equal(encode_raw(raw_encoding(refitted.preprocessing), raw), refitted.x)

    result, explainer = _fit(mimic, "tree")
    rows = concept_rows(result.model, raw)  # the file as published: outcomes and text columns are ignored
    assert rows.kind == "raw" and np.array_equal(rows.labels, mimic.y)
    assert np.array_equal(rows.x, mimic.x)


def test_raw_values_not_finite_are_refused_and_those_outside_training_are_named(store, caplog) -> None:  # noqa: ANN001
    """Infinity is refused naming its row and column; a value outside the range seen in training is a warning
    naming them (the model extrapolates), or refused with strict_range; MLflow's model takes the same flag."""
    import logging

    from mlflow.exceptions import MlflowException

    from lenbench.data.bundled import breast_cancer_frame

    result, _ = _fit(load_breast_cancer(fit_scope="train"), "tree")
    rows = breast_cancer_frame().drop(columns=["diagnosis"]).head(5)
    assert concept_rows(result.model, rows).outside == {}
    for value in (np.inf, -np.inf):
        with pytest.raises(
            UserError, match=r"column 'mean_area' must hold finite numbers, but row 3 holds '-?inf'"
        ):
            concept_rows(result.model, rows.assign(mean_area=[500.0, 600.0, value, 700.0, 800.0]))
    far = rows.assign(mean_texture=[20.0, 1e300, 20.0, -5.0, 20.0])
    outside = concept_rows(result.model, far).outside
    assert list(outside) == ["mean_texture"]
    assert re.search(
        r"column 'mean_texture' in row 2 is 1e\+300, outside the range seen in training \[.*\] \(2 row",
        outside["mean_texture"],
    )
    with pytest.raises(
        UserError, match=r"column 'mean_texture' in row 2 is 1e\+300, outside .* fix: correct"
    ):
        concept_rows(result.model, far, strict_range=True)

    model = _reload(store, result.model)
    with caplog.at_level(logging.WARNING, logger="lenbench.models.frames"):
        answer = model.predict(far)
    assert len(answer) == 5
    warned = [r.getMessage() for r in caplog.records if "outside the range" in r.getMessage()]
    assert len(warned) == 1 and "row 2" in warned[0] and "strict_range=true refuses" in warned[0]
    with pytest.raises(MlflowException, match="mean_texture' in row 2 is 1e\\+300"):
        model.predict(far, params={"strict_range": True})


def _damaged(store, export, damage) -> tuple[str, Path]:  # noqa: ANN001
    """A fold run named ``damaged`` whose logged model had ``damage(folder)`` done to its files; (URI, marker):
    the model's pickle is one that creates ``marker`` when unpickled, so a check that comes too late shows."""
    import os
    import pickle
    from urllib.parse import urlparse

    client, experiment = store
    run = client.create_run(experiment, run_name="damaged").info.run_id
    uri = log_model(client, experiment, run, export)
    folder = Path(urlparse(client.get_logged_model(uri.removeprefix("models:/")).artifact_location).path)
    marker = folder.parent / "unpickled"

    class Planted:
        def __reduce__(self):  # noqa: ANN204
            return (os.system, (f"touch {marker}",))

    pkl = folder / "python_model.pkl"
    pkl.write_bytes(
        pickle.dumps(Planted()) + b"\0" * max(0, pkl.stat().st_size - len(pickle.dumps(Planted())))
    )
    damage(folder)
    return uri, marker


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda folder: None, "its file python_model.pkl differs from the file logged (SHA-256)"),
        (lambda folder: (folder / "python_model.pkl").unlink(), "its file python_model.pkl is missing"),
        (
            lambda folder: (folder / "python_model.pkl").write_bytes(b"\x80\x05"),
            "its file python_model.pkl differs from the file logged",
        ),
        (
            lambda folder: (folder / "code").mkdir() or (folder / "code" / "x.py").write_text(""),
            "code/x.py was not",
        ),
    ],
    ids=["replaced", "missing", "truncated", "added"],
)
def test_a_damaged_model_is_refused_before_it_is_unpickled(store, damage, message: str) -> None:  # noqa: ANN001
    from lenbench.models.runs import FoundModels, load_models

    result, _ = _fit(make_xor(n_samples=240, n_concepts=6, seed=3), "tree")
    uri, marker = _damaged(store, result.model, damage)
    client = store[0]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", client.tracking_uri)
        with pytest.raises(UserError) as refused:
            load_models(FoundModels("0" * 32, "damaged", True, {0: uri}))
    text = str(refused.value)
    assert text.startswith(f"run damaged: the model {uri}") and message in text, text
    assert "\n" not in text and "fix: train the run again" in text
    assert not marker.exists(), "the planted pickle ran"


def test_a_model_pins_lenbench_its_libraries_and_the_distribution_defining_its_class() -> None:
    """lenbench's own model classes need no search of the installed distributions; a class from another one (a
    plugin's, here PyYAML's ``yaml.YAMLObject``) pins the distribution that installs its module."""
    import yaml

    def export(model: object) -> ModelExport:
        return ModelExport(method="m", concept_names=("a",), target_class=1, formula=None, model=model)

    own = [r.split("==")[0] for r in requirements(export(Formula.true()))]
    assert own == ["lenbench", "mlflow", "numpy", "pandas", "scikit-learn", "torch"]
    assert requirements(export(yaml.YAMLObject()))[-1] == f"PyYAML=={yaml.__version__}"
