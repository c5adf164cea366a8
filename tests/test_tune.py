"""Tuning's parts, in process: fronts and hypervolumes, search spaces and their errors, the inner folds (no test or
validation row reaches the fitted model), the Optuna study's tables and its objectives check on resume."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from omegaconf import DictConfig, OmegaConf

from lenbench.data.synthetic import make_xor
from lenbench.errors import ConfigError
from lenbench.explainers.tree import TreeExplainer
from lenbench.folds import CVConfig
from lenbench.tune.front import hypervolume, pareto_mask
from lenbench.tune.inner import inner_fold, mean_scores, score_on_validation
from lenbench.tune.space import job_config, parse_space

MAX_MIN = ["maximize", "minimize"]


# -- fronts and hypervolume ------------------------------------------------------------------------------------------


def test_pareto_mask_keeps_exactly_the_non_dominated_points() -> None:
    points = np.array([[0.9, 5], [0.8, 2], [0.85, 6], [0.95, 10], [0.4, 1], [0.8, 2], [np.nan, 0]])
    assert pareto_mask(points, MAX_MIN).tolist() == [True, True, False, True, True, True, False]


def _grid_hypervolume(points: np.ndarray, reference: tuple[float, float]) -> float:
    """Brute force: the share of a fine grid over the box [reference acc, 1] x [0, reference complexity] that some
    point dominates (higher accuracy, lower complexity)."""
    xs = np.linspace(reference[0], 1.0, 401)[:-1] + (1.0 - reference[0]) / 800
    ys = np.linspace(0.0, reference[1], 401)[:-1] + reference[1] / 800
    gx, gy = np.meshgrid(xs, ys)
    covered = np.zeros_like(gx, dtype=bool)
    for acc, comp in points:
        covered |= (acc >= gx) & (comp <= gy)
    return covered.mean() * (1.0 - reference[0]) * reference[1]


@given(st.lists(st.tuples(st.floats(0.3, 1.0), st.floats(0.0, 60.0)), min_size=1, max_size=8))
def test_hypervolume_equals_the_dominated_area(raw: list[tuple[float, float]]) -> None:
    points = np.array(raw)
    exact = hypervolume(points, MAX_MIN, (0.5, 50.0))
    assert exact == pytest.approx(_grid_hypervolume(points, (0.5, 50.0)), abs=0.5 * 50 * 0.006)


def test_hypervolume_of_points_worse_than_the_reference_is_zero() -> None:
    assert hypervolume(np.array([[0.4, 10.0], [0.9, 80.0]]), MAX_MIN, (0.5, 50.0)) == 0.0
    assert hypervolume(np.array([[1.0, 0.0]]), MAX_MIN, (0.5, 50.0)) == pytest.approx(25.0)


def test_hypervolume_in_three_objectives_counts_overlaps_once() -> None:
    points = np.array([[1.0, 1.0, 1.0], [0.5, 0.5, 2.0]])
    # boxes to the reference (2, 2, 2) when minimising: 1x1x1 and 1.5x1.5x0 = 1.
    assert hypervolume(points, ["minimize"] * 3, (2.0, 2.0, 2.0)) == pytest.approx(1.0)
    points = np.array([[1.0, 1.0, 1.0], [0.0, 1.0, 1.0]])
    assert hypervolume(points, ["minimize"] * 3, (2.0, 2.0, 2.0)) == pytest.approx(2.0)


# -- search spaces --------------------------------------------------------------------------------------------------


def _method_config(method: str) -> DictConfig:
    """conf/method/<method>.yaml over the method configs its defaults list extends (cbm_sequential: cbm)."""
    own = OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "method" / f"{method}.yaml")
    bases = [_method_config(base) for base in own.pop("defaults", []) if base != "_self_"]
    return OmegaConf.merge(*bases, own)


def _cfg(method: str = "tree") -> OmegaConf:
    return OmegaConf.create(
        {
            "method": _method_config(method),
            "seed": 0,
            "trainer": {},
            "target_class": 1,
        }
    )


def test_every_network_and_rule_method_declares_a_valid_space() -> None:
    conf = Path(__file__).resolve().parents[1] / "conf"
    for method in (
        "pruning",
        "weights",
        "psi",
        "entropy",
        "tree",
        "brl",
        "rulelist",
        "cbm",
        "cbm_sequential",
        "cem",
        "dcr",
        "blackbox",
    ):
        space = parse_space(
            OmegaConf.to_container(OmegaConf.load(conf / "search" / f"{method}.yaml")), _cfg(method), method
        )
        assert space, method
    assert not (conf / "search" / "rf.yaml").exists()


@pytest.mark.parametrize(
    ("search", "message"),
    [
        ({}, "method=tree has no search space"),
        (
            {"d": {"key": "method.explainer.depth", "type": "int", "low": 1, "high": 3}},
            "not a parameter of method=tree",
        ),
        ({"d": {"key": "method.explainer.max_depth", "type": "int", "low": 5, "high": 2}}, "inverted range"),
        (
            {"d": {"key": "method.explainer.max_depth", "type": "float", "low": 2, "high": 2}},
            "an empty range",
        ),
        (
            {"d": {"key": "method.explainer.max_depth", "type": "int", "low": 3, "high": 3}},
            "low = high = 3, an empty range",
        ),
        (
            {"d": {"key": "method.explainer.max_depth", "type": "categorical", "choices": []}},
            "empty list of choices",
        ),
        (
            {"d": {"key": "method.explainer.max_depth", "type": "float", "low": 0, "high": 2, "log": True}},
            "log=true",
        ),
        ({"d": {"key": "method.explainer.max_depth", "lo": 1}}, "unknown field(s) lo"),
        (
            {"d": {"key": "method.explainer.max_depth", "type": "int", "low": 1.5, "high": 3}},
            "must be integers",
        ),
        ({"d": {"key": "seed", "type": "int", "low": 1, "high": 3}}, "lies under method."),
    ],
)
def test_bad_search_spaces_are_one_line_errors(search: dict, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_space(search, _cfg(), "tree")
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_rf_has_no_front_and_says_why() -> None:
    with pytest.raises(ConfigError, match="gives no explanations"):
        parse_space({}, _cfg("rf"), "rf")


def test_a_trial_config_is_the_job_config_with_the_values_set() -> None:
    cfg = _cfg("entropy")
    cfg.tune = {"n_trials": 3}
    cfg.search = {}
    space = parse_space(
        {
            "penalty": {
                "key": "method.explainer.callbacks.0.strength",
                "low": 1e-5,
                "high": 1e-1,
                "log": True,
            },
            "topk": {"key": "method.explainer.topk", "type": "int", "low": 1, "high": 10},
        },
        cfg,
        "entropy",
    )
    job = job_config(cfg, {"penalty": 0.5, "topk": 4}, space)
    assert "tune" not in job and "search" not in job
    assert job.method.explainer.callbacks[0].strength == 0.5
    assert job.method.explainer.topk == 4
    assert job.method.explainer.temperature == cfg.method.explainer.temperature


# -- inner folds ----------------------------------------------------------------------------------------------------


def test_inner_folds_never_touch_test_rows_and_hold_out_the_validation_rows() -> None:
    dataset = make_xor(n_samples=300)
    cv = CVConfig(n_splits=5)
    for k in range(5):
        outer = cv.fold(dataset, k)
        inner = inner_fold(dataset, cv, k)
        test = set(outer.test_index)
        assert np.array_equal(np.sort(inner.test_index), np.sort(outer.val_index))
        assert set(inner.trainval_index) == set(outer.train_index)
        assert set(inner.train_index) | set(inner.val_index) == set(outer.train_index)
        assert not test & (set(inner.trainval_index) | set(inner.test_index))
        assert not set(inner.test_index) & set(inner.trainval_index)


def test_a_learnt_preprocessing_is_refitted_on_the_train_rows_only() -> None:
    base = make_xor(n_samples=200)
    seen: list[np.ndarray] = []

    def refit(rows: np.ndarray) -> np.ndarray:
        seen.append(np.sort(rows))
        return base.x

    dataset = dataclasses.replace(base, refit=refit)
    cv = CVConfig(n_splits=4)
    inner = inner_fold(dataset, cv, 2)
    assert np.array_equal(seen[-1], np.sort(inner.trainval_index))
    assert not set(seen[-1]) & set(inner.test_index)


def test_validation_scores_are_those_of_a_model_fitted_without_the_validation_rows() -> None:
    dataset = make_xor(n_samples=400)
    fold = inner_fold(dataset, CVConfig(n_splits=4), 1)
    scores = score_on_validation(fold, lambda: TreeExplainer(seed=0, max_depth=3))
    tree = TreeExplainer(seed=0, max_depth=3).fit(fold)
    expected = float(np.mean(tree.predict(fold.x_test) == fold.y_test))
    assert scores["model_accuracy"] == pytest.approx(expected)
    assert scores["majority_accuracy"] == pytest.approx(max(np.mean(fold.y_test), 1 - np.mean(fold.y_test)))
    assert np.isfinite(scores["explanation_complexity"])


def test_mean_scores_ignore_folds_without_a_value() -> None:
    assert mean_scores([{"a": 1.0, "b": np.nan}, {"a": 3.0, "b": np.nan}]) == {
        "a": 2.0,
        "b": pytest.approx(np.nan, nan_ok=True),
    }


# -- the Optuna study ---------------------------------------------------------------------------------------------------


def _spec(tmp_path: Path, **changes: object):  # noqa: ANN202
    from lenbench.tune.settings import StudySpec

    spec = StudySpec(
        name="s",
        storage=f"sqlite:///{tmp_path / 'optuna.db'}",
        objectives=("explanation_accuracy", "explanation_complexity"),
        directions=("maximize", "minimize"),
        recorded=("majority_accuracy",),
        reference=(0.5, 50.0),
        n_trials=12,
        timeout=None,
        seed=3,
        n_jobs=1,
        sampler="tpe",
    )
    return dataclasses.replace(spec, **changes)


def test_the_front_table_is_optunas_pareto_set(tmp_path: Path) -> None:
    from lenbench.tune import optuna_study
    from lenbench.tune.space import SearchParam

    spec = _spec(tmp_path)
    study = optuna_study.open_study(spec)
    space = (SearchParam(name="x", key="method.explainer.x", kind="float", low=0.0, high=1.0),)

    def objective(trial) -> list[float]:  # noqa: ANN001
        x = trial.suggest_float("x", 0.0, 1.0)
        trial.set_user_attr("val_majority_accuracy", 0.5)
        return [round(x, 1), round(40 * x**2, 1)]

    optuna_study.run_trials(study, objective, spec, spec.n_trials)
    trials, front = optuna_study.tables(study, spec, space)
    assert len(trials) == 12 and set(trials["state"]) == {"COMPLETE"}
    best = {tuple(t.values) for t in study.best_trials}
    assert {(r.val_explanation_accuracy, r.val_explanation_complexity) for r in front.itertuples()} == best
    again = optuna_study.open_study(spec)  # resumed: the same trials, nothing more to run
    optuna_study.run_trials(again, objective, spec, spec.n_trials)
    assert len(again.trials) == 12


def test_a_study_name_taken_by_other_objectives_is_refused(tmp_path: Path) -> None:
    from lenbench.tune import optuna_study

    optuna_study.open_study(_spec(tmp_path))
    other = _spec(tmp_path, objectives=("model_accuracy", "explanation_complexity"))
    with pytest.raises(ConfigError, match="optimises \\[maximize explanation_accuracy"):
        optuna_study.open_study(other)
    flipped = _spec(tmp_path, directions=("maximize", "maximize"))
    with pytest.raises(ConfigError, match="pick another tune.study_name"):
        optuna_study.open_study(flipped)


def test_the_default_study_name_follows_the_config_and_space_not_the_budget() -> None:
    from lenbench.tune.settings import default_study_name

    cfg = _cfg()
    cfg.data = {"name": "xor", "n_samples": 100}
    cfg.tune = {"n_trials": 6, "seed": 0, "objectives": ["explanation_accuracy"]}
    space = parse_space(
        {"d": {"key": "method.explainer.max_depth", "type": "int", "low": 1, "high": 8}}, cfg, "tree"
    )
    name = default_study_name(cfg, space, ("explanation_accuracy",))
    assert name.startswith("tree-xor-")
    cfg.tune.n_trials, cfg.tune.seed = 50, 7
    assert default_study_name(cfg, space, ("explanation_accuracy",)) == name
    wider = parse_space(
        {"d": {"key": "method.explainer.max_depth", "type": "int", "low": 1, "high": 9}}, cfg, "tree"
    )
    assert default_study_name(cfg, wider, ("explanation_accuracy",)) != name
    cfg.data.n_samples = 200
    assert default_study_name(cfg, space, ("explanation_accuracy",)) != name


def test_a_journal_file_storage_holds_the_study_too(tmp_path: Path) -> None:
    from lenbench.tune import optuna_study

    spec = _spec(tmp_path, storage=f"journal:{tmp_path / 'optuna.log'}", n_trials=3)
    study = optuna_study.open_study(spec)
    optuna_study.run_trials(study, lambda t: [t.suggest_float("x", 0, 1), 1.0], spec, 3)
    assert len(optuna_study.load(spec, worker=1).trials) == 3
    assert (tmp_path / "optuna.log").stat().st_size > 0


def test_a_tuning_sweep_summary_names_each_study(tmp_path: Path) -> None:
    import json

    from lenbench.tune.files import studies_summary

    done, failed = tmp_path / "0-tree-xor", tmp_path / "1-rulelist-xor"
    for folder in (done, failed):
        (folder / ".hydra").mkdir(parents=True)
    meta = {
        "study": "tree-xor-1",
        "n_complete": 6,
        "n_pareto": 3,
        "hypervolume_val": 9.0,
        "hypervolume_test": 5.0,
    }
    (done / "study.json").write_text(json.dumps(meta))
    text = studies_summary(tmp_path, "xor")
    assert "0-tree-xor: tree-xor-1, 6 completed trial(s), 3 on the front" in text
    assert "1-rulelist-xor: no study.json" in text and "--experiment xor" in text


def test_no_trial_starts_once_the_timeout_has_passed(tmp_path: Path) -> None:
    import time

    from lenbench.tune import optuna_study

    spec = _spec(tmp_path, timeout=1e-6, n_trials=50)
    study = optuna_study.open_study(spec)

    def objective(trial) -> list[float]:  # noqa: ANN001
        time.sleep(0.01)  # longer than the timeout: no trial after this one may start
        return [trial.suggest_float("x", 0, 1), 1.0]

    optuna_study.run_trials(study, objective, spec, spec.n_trials)
    assert len(study.trials) <= 1  # 50 were asked for


class FlakyTree(TreeExplainer):
    """A tree whose training fails at depth 2, as a diverging network would (``_target_`` of the test below)."""

    def fit(self, fold):  # noqa: ANN001, ANN201
        if self.max_depth == 2:
            raise RuntimeError("training diverged at epoch 1")
        return super().fit(fold)


class _Recorder:
    def __init__(self) -> None:
        self.finished: list[int] = []
        self.failed: list[str] = []

    def start_trial(self, parent: str, number: int, params: dict) -> str:
        return str(number)

    def finish_trial(self, run_id: str, means: dict, per_fold: list) -> None:
        self.finished.append(int(run_id))

    def fail_trial(self, run_id: str, error: str) -> None:
        self.failed.append(error)


def test_a_failing_fold_fails_its_trial_and_the_study_goes_on(tmp_path: Path) -> None:
    import optuna

    from lenbench.tune import optuna_study
    from lenbench.tune.space import SearchParam
    from lenbench.tune.study import Search

    spec = _spec(tmp_path, n_trials=2, recorded=())
    cfg = OmegaConf.create(
        {"method": {"explainer": {"_target_": "test_tune.FlakyTree", "seed": 0}}, "target_class": 1}
    )
    space = (SearchParam(name="d", key="method.explainer.max_depth", kind="categorical", choices=(1, 2, 3)),)
    folds = [inner_fold(make_xor(n_samples=200), CVConfig(n_splits=3), k) for k in range(3)]
    search = Search(job_cfg=cfg, space=space, folds=folds, spec=spec, uri="", parent="p", experiment="xor")
    study = optuna_study.open_study(spec)
    for depth in (2, 1, 3):
        study.enqueue_trial({"d": depth})
    recorder = _Recorder()
    optuna_study.run_trials(study, lambda trial: search.objective(recorder, trial), spec, 5)
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.FAIL, *[optuna.trial.TrialState.COMPLETE] * 2]
    assert (
        recorder.finished == [1, 2] and "fold 0 failed: RuntimeError: training diverged" in recorder.failed[0]
    )
