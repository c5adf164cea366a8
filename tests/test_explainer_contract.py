"""The explainer contract's settings rule: every ``__init__`` keyword reads back by name (``get_params``), for every
built-in method and for callbacks, and a method that breaks it is told so when its job starts, before training."""

from __future__ import annotations

import inspect

import pytest

from lenbench.callbacks.entropy import EntropyPenalty
from lenbench.callbacks.l1 import L1Regularization
from lenbench.callbacks.pruning import FanInPruning, FeaturePruning
from lenbench.errors import ConfigError
from lenbench.explainers.base import declared_settings
from lenbench.explainers.blackbox import BlackBoxExplainer
from lenbench.explainers.cbm import ConceptBottleneckExplainer
from lenbench.explainers.cem import ConceptEmbeddingExplainer
from lenbench.explainers.dcr import DeepConceptReasonerExplainer
from lenbench.explainers.entropy_net import EntropyNetExplainer
from lenbench.explainers.psi_net import PsiNetExplainer
from lenbench.explainers.relu_net import ReluNetExplainer
from lenbench.explainers.rules import (
    BayesianRuleListExplainer,
    GreedyRuleListExplainer,
    RandomForestExplainer,
)
from lenbench.explainers.tree import TreeExplainer
from lenbench.folds import CVConfig, FoldPlan

METHODS = [
    ReluNetExplainer,
    EntropyNetExplainer,
    PsiNetExplainer,
    TreeExplainer,
    GreedyRuleListExplainer,
    BayesianRuleListExplainer,
    RandomForestExplainer,
    ConceptBottleneckExplainer,
    ConceptEmbeddingExplainer,
    DeepConceptReasonerExplainer,
    BlackBoxExplainer,
]


@pytest.mark.parametrize("cls", METHODS, ids=lambda c: c.__name__)
def test_every_method_reads_its_settings_back_by_name(cls: type) -> None:
    explainer = cls(seed=3, callbacks=[FanInPruning()]) if cls is PsiNetExplainer else cls(seed=3)
    params = explainer.get_params()
    own = inspect.signature(cls.__init__).parameters.values()
    declared = [p.name for p in own if p.kind is inspect.Parameter.KEYWORD_ONLY]
    assert set(declared) <= set(params) and params["seed"] == 3
    if hasattr(explainer, "training"):  # network methods add the shared training settings
        assert {"epochs", "lr", "optimizer", "weight_decay", "trainer", "callbacks"} <= set(params)


@pytest.mark.parametrize(
    ("cls", "shared"),
    [
        (ReluNetExplainer, {"topk": 3, "simplify_local": False}),
        (EntropyNetExplainer, {"topk": 10, "simplify_local": True}),
        (PsiNetExplainer, {}),
        (GreedyRuleListExplainer, {}),
        (BayesianRuleListExplainer, {}),
        (ConceptEmbeddingExplainer, {"hidden": [32], "training_intervention_prob": 0.25}),
        (DeepConceptReasonerExplainer, {"hidden": [32], "training_intervention_prob": 0.0}),
    ],
    ids=lambda c: getattr(c, "__name__", ""),
)
def test_settings_declared_by_a_base_read_back_as_the_methods_own(cls: type, shared: dict) -> None:
    """The simplification budget (and the local-rule settings) are declared once, in a base class the method hands
    ``**kwargs`` on to: they read back, with the method's own defaults, and are checked there."""
    extra = {"callbacks": [FanInPruning()]} if cls is PsiNetExplainer else {}
    params = cls(seed=3, max_simplify_terms=5, **extra).get_params()
    assert params["max_simplify_terms"] == 5 and params["max_simplify_variables"] == 10
    assert {key: params[key] for key in shared} == shared
    with pytest.raises(ConfigError, match="max_simplify_variables=21"):
        cls(seed=3, max_simplify_variables=21, **extra)


@pytest.mark.parametrize(
    "callback",
    [L1Regularization(1e-4), FeaturePruning(), FanInPruning(fan_in=3), EntropyPenalty(1e-4)],
    ids=lambda c: type(c).__name__,
)
def test_callbacks_read_their_settings_back_by_name(callback: object) -> None:
    settings = declared_settings(callback)
    assert settings and all(getattr(callback, name) == value for name, value in settings.items())


class _Renamed(TreeExplainer):
    """Keeps ``max_depth`` under another name: breaks the contract."""

    def __init__(self, *, seed: int, max_depth: int | None = None) -> None:
        super().__init__(seed=seed)
        del self.max_depth
        self.depth_limit = max_depth


def test_a_method_that_breaks_the_settings_rule_is_told_before_training() -> None:
    with pytest.raises(
        TypeError, match=r"_Renamed keeps its __init__ argument\(s\) max_depth under no attribute"
    ):
        FoldPlan.alone(lambda: _Renamed(seed=0, max_depth=2), CVConfig(n_splits=3))
