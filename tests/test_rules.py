"""Rule lists (brl, rulelist) and the random forest: a rule list's formula predicts exactly what the list does."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from helpers import fold_of
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from hypothesis import given, settings
from hypothesis import strategies as st

from lenbench.data.synthetic import make_dnf, make_xor
from lenbench.explainers.rules import (
    BayesianRuleListExplainer,
    GreedyRuleListExplainer,
    RandomForestExplainer,
)
from lenbench.folds import CVConfig, run_fold
from lenbench.logic.extract.rules import Rule, RuleList, RuleListTooLarge, rule_list_to_formula
from lenbench.logic.formula import Formula

CONF = Path(__file__).resolve().parents[1] / "conf"
NAMES = ["a", "b", "c", "d", "e"]


def truth_table(n: int) -> np.ndarray:
    return np.array(list(itertools.product([0.0, 1.0], repeat=n)), dtype=np.float32)


def assert_formula_is_rule_list(rule_list: RuleList, names: list[str], x: np.ndarray) -> None:
    predictions = rule_list.predict(x, names)
    for target in (0, 1):
        result = rule_list_to_formula(rule_list, target, max_variables=len(names))
        np.testing.assert_array_equal(result.formula.evaluate(x, names), predictions == target)
        np.testing.assert_array_equal(result.dnf.evaluate(x, names), predictions == target)


# -- the pure conversion -----------------------------------------------------------------------------------------


def test_hand_built_rule_list_converts_exactly() -> None:
    # if a & b then 1 elif c then 0 elif d then 1 else 0
    rules = RuleList(
        (Rule((("a", False), ("b", False)), 1), Rule((("c", False),), 0), Rule((("d", False),), 1)), default=0
    )
    result = rule_list_to_formula(rules, 1)
    assert result.exact
    assert result.formula.evaluate(truth_table(4), NAMES[:4]).tolist() == [
        bool(r[0] and r[1]) or (not r[2] and bool(r[3])) for r in truth_table(4)
    ]
    # The earlier rule predicting 1 is not negated in the later one: (a & b) | (d & ~c), 4 literals.
    assert result.formula.complexity == 4
    assert_formula_is_rule_list(rules, NAMES[:4], truth_table(4))


def test_default_of_the_target_class_and_dead_rules() -> None:
    # if a then 0 elif (b & ~b) then 1 elif True then 1 elif c then 0 else 0: rows without a are class 1.
    rules = RuleList(
        (
            Rule((("a", False),), 0),
            Rule((("b", False), ("b", True)), 1),
            Rule((), 1),
            Rule((("c", False),), 0),
        ),
        default=0,
    )
    assert rules.reduced() == RuleList((Rule((("a", False),), 0),), 1)
    assert rule_list_to_formula(rules, 1).formula == Formula.parse("~a")
    assert rule_list_to_formula(rules, 0).formula == Formula.parse("a")
    assert_formula_is_rule_list(rules, NAMES[:3], truth_table(3))


def test_constant_rule_lists() -> None:
    empty = RuleList((), default=1)
    assert rule_list_to_formula(empty, 1).formula.is_true
    assert rule_list_to_formula(empty, 0).formula.is_false
    same = RuleList((Rule((("a", False),), 1),), default=1)
    assert rule_list_to_formula(same, 1).formula.is_true


def test_dnf_budget_is_enforced() -> None:
    # Four rules of class 0 with 3 literals each: the default's term multiplies out to 3^4 = 81 terms.
    rules = RuleList(
        tuple(Rule(tuple((f"c{3 * i + j}", False) for j in range(3)), 0) for i in range(4)), default=1
    )
    with pytest.raises(RuleListTooLarge, match="max_dnf_terms"):
        rule_list_to_formula(rules, 1, max_dnf_terms=50)
    result = rule_list_to_formula(rules, 1, max_dnf_terms=100)
    assert len(result.dnf.terms) == 81
    assert (
        not result.exact
    )  # 12 variables > max_variables: the absorbed DNF is kept, still exact as a function
    names = [f"c{i}" for i in range(12)]
    x = np.random.default_rng(0).integers(0, 2, size=(500, 12)).astype(np.float32)
    np.testing.assert_array_equal(result.formula.evaluate(x, names), rules.predict(x, names) == 1)


literal = st.tuples(st.sampled_from(NAMES), st.booleans())
rule = st.builds(Rule, st.lists(literal, max_size=3).map(tuple), st.integers(0, 1))


@settings(max_examples=150, deadline=None)
@given(rules=st.lists(rule, max_size=6), default=st.integers(0, 1))
def test_any_rule_list_converts_exactly(rules: list[Rule], default: int) -> None:
    assert_formula_is_rule_list(RuleList(tuple(rules), default), NAMES, truth_table(len(NAMES)))


# -- imodels' fitted rule lists ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "factory",
    [
        lambda: GreedyRuleListExplainer(seed=0, max_depth=4),
        lambda: BayesianRuleListExplainer(seed=0, max_iter=300, n_chains=2),
        lambda: BayesianRuleListExplainer(seed=0, max_iter=300, n_chains=2, negations=True),
    ],
    ids=["rulelist", "brl", "brl-negations"],
)
def test_fitted_rule_lists_formula_equals_the_model_on_every_row(factory) -> None:  # noqa: ANN001
    dataset = make_dnf(n_samples=400, n_concepts=6, noise=0.1, seed=1)
    fold = fold_of(dataset, n_splits=3)
    explainer = factory().fit(fold)
    names = fold.concept_names
    rows = np.vstack([truth_table(len(names)), dataset.x])
    model = explainer.predict(rows)
    np.testing.assert_array_equal(explainer.rule_list().predict(rows, names), model)
    for target in (0, 1):
        formula = explainer.explain(fold, target)
        np.testing.assert_array_equal(formula.evaluate(rows, names), model == target)
    scores = explainer.scores(rows)
    assert scores.shape == (len(rows),) and np.all((scores >= 0) & (scores <= 1))
    info = explainer.info()
    assert info["training_time"] > 0 and info["rule_list_rules"] >= 0 and "rule_list" in info


def test_brl_recovers_the_dnf_and_is_deterministic() -> None:
    dataset = make_dnf(n_samples=600, n_concepts=8, noise=0.0, seed=0)
    fold = fold_of(dataset, n_splits=3)
    first = BayesianRuleListExplainer(seed=3, max_iter=1000).fit(fold)
    second = BayesianRuleListExplainer(seed=3, max_iter=1000).fit(fold)
    assert str(first.rule_list()) == str(second.rule_list())
    formula = first.explain(fold, 1)
    table = truth_table(8)
    truth = Formula.parse(dataset.ground_truth).evaluate(table, fold.concept_names)
    np.testing.assert_array_equal(formula.evaluate(table, fold.concept_names), truth)
    assert first.info()["brl_max_iter"] == 1000


def test_random_forest_is_an_accuracy_reference_without_explanation_metrics() -> None:
    result = run_fold(
        make_xor(n_samples=300, n_concepts=5, seed=0),
        0,
        CVConfig(n_splits=3),
        lambda: RandomForestExplainer(seed=0, n_estimators=20),
    )
    m = result.metrics
    assert m["model_accuracy"] > 0.9 and 0.9 < m["model_auroc"] <= 1.0
    assert m["model_balanced_accuracy"] > 0.9 and m["model_f1"] > 0.9
    for name in (
        "explanation_accuracy",
        "explanation_fidelity",
        "explanation_balanced_accuracy",
        "explanation_f1",
        "explanation_auroc",
    ):
        assert math.isnan(m[name]), name
    assert (
        math.isnan(m["explanation_complexity"]) and result.formula.is_false
    )  # no explanation, no complexity


def test_rule_list_run_fold_has_the_new_metrics() -> None:
    result = run_fold(
        make_dnf(n_samples=400, n_concepts=6, seed=0),
        1,
        CVConfig(n_splits=3),
        lambda: GreedyRuleListExplainer(seed=0),
    )
    m = result.metrics
    assert m["explanation_fidelity"] == 1.0  # the formula is the rule list
    assert m["explanation_accuracy"] == m["model_accuracy"]
    assert m["explanation_auroc"] == pytest.approx(m["explanation_balanced_accuracy"])
    assert 0.5 < m["model_auroc"] <= 1.0 and 0.0 < m["model_f1"] <= 1.0


@pytest.mark.parametrize(
    "factory, match",
    [
        (lambda: BayesianRuleListExplainer(seed=0, max_iter=0), "max_iter=0"),
        (lambda: BayesianRuleListExplainer(seed=0, n_chains=-1), "n_chains=-1"),
        (
            lambda: BayesianRuleListExplainer(seed=0, min_support=1.5),
            r"min_support=1.5: must be a number in \(0, 1\)",
        ),
        (lambda: BayesianRuleListExplainer(seed=0, max_cardinality=0), "max_cardinality=0"),
        (lambda: BayesianRuleListExplainer(seed=0, list_length_prior=0), "list_length_prior=0"),
        (lambda: BayesianRuleListExplainer(seed=0, negations="yes"), "negations='yes'"),
        (lambda: BayesianRuleListExplainer(seed=0, max_simplify_variables=30), "max_simplify_variables=30"),
        (lambda: GreedyRuleListExplainer(seed=0, max_depth=0), "max_depth=0: must be an integer >= 1"),
        (lambda: GreedyRuleListExplainer(seed=0, criterion="mse"), "criterion='mse'"),
        (lambda: GreedyRuleListExplainer(seed=1.5), "seed=1.5"),
        (lambda: RandomForestExplainer(seed=0, n_estimators=0), "n_estimators=0"),
        (lambda: RandomForestExplainer(seed=0, max_depth=0), "max_depth=0"),
    ],
)
def test_nonsense_settings_are_refused(factory, match: str) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match=match):
        factory()


def test_arguments_are_keyword_only() -> None:
    for cls in (BayesianRuleListExplainer, GreedyRuleListExplainer, RandomForestExplainer):
        with pytest.raises(TypeError):
            cls(0)


def test_single_class_training_rows_are_refused() -> None:
    x = np.zeros((10, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="both classes"):
        GreedyRuleListExplainer(seed=0).train(x, np.zeros(10, dtype=np.int64), ["a", "b", "c"])


@pytest.mark.parametrize("method", ["brl", "rulelist", "rf"])
def test_method_configs_build(method: str) -> None:
    import train  # noqa: F401  (registers the train_schema config that train.yaml starts from)

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"method={method}", "seed=7"])
    explainer = instantiate(cfg.method.explainer)
    assert cfg.method.name == method == explainer.name
    assert explainer.seed == 7
    if method == "brl":
        assert explainer.max_iter == 10000 and explainer.n_chains == 3


def test_mimic_extended_lists_every_method() -> None:
    import train  # noqa: F401

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["experiment=mimic_extended"], return_hydra_config=True)
    methods = cfg.hydra.sweeper.params.method.split(",")
    assert methods == ["pruning", "weights", "psi", "tree", "entropy", "brl", "rulelist", "rf"]
    assert cfg.data.label == "day_28_flg" and cfg.cv.n_splits == 10 and cfg.tracking.experiment == "mimic"


def test_greedy_rule_list_is_deterministic_for_a_seed_when_concepts_tie() -> None:
    # Four identical copies of the concept that decides the label: every stump ties, and imodels' unseeded
    # scikit-learn stumps used to pick one of them at random on each fit (P(8 equal fits) = 4**-7 unseeded).
    from lenbench.data.base import ConceptDataset

    rng = np.random.default_rng(0)
    decisive = rng.integers(0, 2, size=400)
    x = np.column_stack([decisive] * 4 + [rng.integers(0, 2, size=(400, 3))]).astype(np.float32)
    names = [f"copy{i}" for i in range(4)] + ["d0", "d1", "d2"]
    dataset = ConceptDataset(name="ties", x=x, y=decisive.astype(np.int64), concept_names=names)
    fold = fold_of(dataset)
    formulas = set()
    for state in range(
        8
    ):  # whatever numpy's global generator holds when the fit starts (another process, ...)
        np.random.seed(state)
        formulas.add(str(GreedyRuleListExplainer(seed=5).fit(fold).explain(fold)))
        assert np.random.randint(1000) == np.random.RandomState(state).randint(1000)  # left as it was
    assert len(formulas) == 1, formulas
    assert next(iter(formulas)).startswith("copy")
