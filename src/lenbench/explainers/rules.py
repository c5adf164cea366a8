"""Rule-list baselines from ``imodels`` (methods ``brl`` and ``rulelist``) and a random forest (``rf``).

Bayesian rule lists were the strongest baseline of the entropy-LEN paper on MIMIC-II; a greedy rule list is their
cheap cousin; a random forest is the accuracy a black box reaches on the same concepts (no explanation). The rule
lists are read into a :class:`~lenbench.logic.extract.rules.RuleList` and turned into a DNF formula per class by
:func:`~lenbench.logic.extract.rules.rule_list_to_formula`, so they are scored by the same metrics code as every
other method, and the formula predicts exactly what the rule list predicts on every row (tested).

Inputs are binarised (``x > 0.5``) before fitting and predicting, as for the tree: BRL refuses anything but 0/1,
and on binarised concepts every rule condition is a literal.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from lenbench.data.base import Fold
from lenbench.explainers.base import Explainer
from lenbench.logic.extract.rules import Rule, RuleList, rule_list_to_formula
from lenbench.logic.formula import Formula
from lenbench.logic.simplify import check_budget
from lenbench.validation import (
    check_bool,
    check_choice,
    check_int,
    check_positive,
    check_seed,
    check_unit,
    refuse,
)

logger = logging.getLogger(__name__)


def _binary(x: np.ndarray) -> np.ndarray:
    return (np.asarray(x) > 0.5).astype(np.float64)


class RuleListExplainer(Explainer):
    """Shared part of the rule-list methods: fit on binarised concepts, read the rule list, explain it as a DNF.

    Subclasses fit their model (:meth:`_fit_model`) and read it (:meth:`_read_rule_list`); predictions and scores
    are the model's own, and :meth:`rule_list` gives the list in lenbench's form.
    """

    name = "rule_list"
    uses_torch = False
    requires: ClassVar[tuple[str, ...]] = ("imodels",)  # the fitted rule list is imodels' estimator

    def __init__(self, *, seed: int, max_simplify_variables: int = 10, max_simplify_terms: int = 64) -> None:
        owner = type(self).__name__
        self.seed = check_seed(owner, seed)
        self.max_simplify_variables, self.max_simplify_terms = check_budget(
            owner, max_simplify_variables, max_simplify_terms
        )
        self._model: Any = None
        self._rule_list: RuleList | None = None
        self._names: list[str] = []
        self._info: dict[str, Any] = {}

    # -- what subclasses define ----------------------------------------------------------------------------------

    def _fit_model(self, x: np.ndarray, y: np.ndarray, names: list[str]) -> Any:
        raise NotImplementedError

    def _read_rule_list(self, model: Any, names: list[str]) -> RuleList:
        raise NotImplementedError

    # -- Explainer -----------------------------------------------------------------------------------------------

    def fit(self, fold: Fold) -> RuleListExplainer:
        return self.train(fold.x_trainval, fold.y_trainval, list(fold.concept_names))

    def train(self, x: np.ndarray, y: np.ndarray, concept_names: list[str]) -> RuleListExplainer:
        """Fit on the rows ``x`` [n, k] (binarised here) and labels ``y`` [n] (two classes)."""
        y = np.asarray(y).astype(np.int64)
        if set(np.unique(y).tolist()) - {0, 1} or len(np.unique(y)) != 2:
            raise ValueError(
                f"{type(self).__name__} needs labels of both classes 0 and 1, got {np.unique(y)}"
            )
        self._names = [str(n) for n in concept_names]
        start = time.perf_counter()
        self._model = self._fit_model(_binary(x), y, self._names)
        training_time = time.perf_counter() - start
        self._rule_list = self._read_rule_list(self._model, self._names)
        self._info = {
            "training_time": training_time,
            "rule_list": str(self._rule_list),
            "rule_list_rules": len(self._rule_list.rules),
            "rule_list_literals": self._rule_list.complexity,
            "seed": self.seed,
        }
        logger.info(
            "%s: %d rules, %d literals, fitted in %.1f s",
            self.name,
            len(self._rule_list.rules),
            self._rule_list.complexity,
            training_time,
        )
        return self

    @property
    def model(self) -> Any:
        if self._model is None:
            raise RuntimeError(f"{type(self).__name__}.fit must be called before predict or explain")
        return self._model

    def rule_list(self) -> RuleList:
        if self._rule_list is None:
            raise RuntimeError(f"{type(self).__name__}.fit must be called before rule_list")
        return self._rule_list

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict(_binary(x))).astype(np.int64)

    def scores(self, x: np.ndarray) -> np.ndarray | None:
        return np.asarray(self.model.predict_proba(_binary(x)))[:, 1]

    def explain(self, fold: Fold, target_class: int = 1) -> Formula:
        start = time.perf_counter()
        result = rule_list_to_formula(
            self.rule_list(),
            target_class,
            max_variables=self.max_simplify_variables,
            max_terms=self.max_simplify_terms,
        )
        if not result.exact:
            logger.warning("%s: formula too large to simplify exactly; kept the absorbed DNF", self.name)
        self._info.update(
            extraction_time=time.perf_counter() - start,
            simplify_exact=result.exact,
            simplify_method=result.simplify.method,
            unsimplified_complexity=result.dnf.complexity,
        )
        return result.formula

    def info(self) -> dict[str, Any]:
        return dict(self._info)

    def explain_local(
        self, x: np.ndarray, labels: np.ndarray, names: Sequence[str]
    ) -> list[list[tuple[str, bool]]]:
        """The literals of the first rule that fires on each row (the default rule: none, i.e. True)."""
        truth = _binary(x) > 0.5
        index = {name: j for j, name in enumerate(names)}
        chosen: list[list[tuple[str, bool]] | None] = [None] * truth.shape[0]
        for rule in self.rule_list().rules:
            literals = [(str(name), bool(negated)) for name, negated in rule.condition]
            fires = np.ones(truth.shape[0], dtype=bool)
            for name, negated in literals:
                fires &= truth[:, index[name]] != negated
            for row in np.flatnonzero(fires):
                if chosen[row] is None:
                    chosen[row] = literals
        return [c if c is not None else [] for c in chosen]


class GreedyRuleListExplainer(RuleListExplainer):
    """``imodels.GreedyRuleListClassifier``: splits on one concept at a time along a single path (method
    ``rulelist``). Each rule is one literal, so its DNF never blows up. Deterministic for a fixed ``seed``: the stumps
    break ties between equally good concepts at random, from numpy's generator seeded with it."""

    name = "rulelist"

    def __init__(
        self, *, max_depth: int = 5, criterion: str = "gini", class_weight: str | None = None, **shared: Any
    ) -> None:
        owner = type(self).__name__
        self.max_depth = check_int(owner, "max_depth", max_depth, 1)
        check_choice(owner, "criterion", criterion, ("gini", "entropy", "log_loss"))
        if class_weight not in (None, "balanced"):
            refuse(owner, "class_weight", class_weight, "null or 'balanced'")
        self.criterion = criterion
        self.class_weight = class_weight
        super().__init__(**shared)

    def _fit_model(self, x: np.ndarray, y: np.ndarray, names: list[str]) -> Any:
        from imodels import GreedyRuleListClassifier

        # class_weight only when set: older imodels releases do not take it.
        extra = {} if self.class_weight is None else {"class_weight": self.class_weight}
        model = GreedyRuleListClassifier(max_depth=self.max_depth, criterion=self.criterion, **extra)
        # imodels' stumps are DecisionTreeClassifier(random_state=None): ties between equally good concepts are
        # broken by numpy's global generator, so the list changed from run to run. Seeded here, restored after.
        state = np.random.get_state()
        np.random.seed(self.seed)
        try:
            return model.fit(x, y, feature_names=names)
        finally:
            np.random.set_state(state)

    def _read_rule_list(self, model: Any, names: list[str]) -> RuleList:
        return greedy_rule_list(model, names)


class BayesianRuleListExplainer(RuleListExplainer):
    """``imodels.BayesianRuleListClassifier`` (Letham et al. 2015; method ``brl``): MCMC over rule lists built
    from frequent itemsets of the concepts.

    Its run time grows with ``max_iter`` (MCMC iterations per chain) times ``n_chains``; the LEN paper's runs took
    about 500 s per fold, so the budget is set in the method config and the fitting time is recorded
    (``training_time``). ``negations``: imodels mines itemsets of true concepts only; with it, ``~c`` columns are
    added so rules can also test a concept being false (twice the items, slower). Deterministic for a fixed
    ``seed`` (imodels seeds Python's and numpy's global generators with it).
    """

    name = "brl"

    def __init__(
        self,
        *,
        max_iter: int = 10_000,
        n_chains: int = 3,
        list_length_prior: float = 3.0,
        list_width_prior: float = 1.0,
        max_cardinality: int = 2,
        min_support: float = 0.1,
        negations: bool = False,
        **shared: Any,
    ) -> None:
        owner = type(self).__name__
        self.max_iter = check_int(owner, "max_iter", max_iter, 1)
        self.n_chains = check_int(owner, "n_chains", n_chains, 1)
        for key, value in (("list_length_prior", list_length_prior), ("list_width_prior", list_width_prior)):
            check_positive(owner, key, value)
        self.list_length_prior = float(list_length_prior)
        self.list_width_prior = float(list_width_prior)
        self.max_cardinality = check_int(owner, "max_cardinality", max_cardinality, 1)
        self.min_support = check_unit(owner, "min_support", min_support)
        self.negations = check_bool(owner, "negations", negations)
        super().__init__(**shared)

    def _columns(self, x: np.ndarray) -> np.ndarray:
        return np.hstack([x, 1.0 - x]) if self.negations else x

    def _fit_model(self, x: np.ndarray, y: np.ndarray, names: list[str]) -> Any:
        from imodels import BayesianRuleListClassifier

        model = BayesianRuleListClassifier(
            listlengthprior=self.list_length_prior,
            listwidthprior=self.list_width_prior,
            maxcardinality=self.max_cardinality,
            minsupport=self.min_support,
            n_chains=self.n_chains,
            max_iter=self.max_iter,
            random_state=self.seed,
        )
        return model.fit(self._columns(x), y)

    def _read_rule_list(self, model: Any, names: list[str]) -> RuleList:
        return bayesian_rule_list(model, names, negations=self.negations)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict(self._columns(_binary(x)))).astype(np.int64)

    def scores(self, x: np.ndarray) -> np.ndarray | None:
        return np.asarray(self.model.predict_proba(self._columns(_binary(x))))[:, 1]

    def train(self, x: np.ndarray, y: np.ndarray, concept_names: list[str]) -> BayesianRuleListExplainer:
        super().train(x, y, concept_names)
        self._info.update({"brl_max_iter": self.max_iter, "brl_n_chains": self.n_chains})
        return self


class RandomForestExplainer(Explainer):
    """``sklearn.ensemble.RandomForestClassifier``: an accuracy reference only (method ``rf``).

    It has no formula: ``explain`` returns False and the CV loop records its explanation metrics as NaN
    (``provides_explanations = False``).
    """

    name = "rf"
    uses_torch = False
    provides_explanations = False

    def __init__(
        self,
        *,
        seed: int,
        n_estimators: int = 100,
        max_depth: int | None = None,
        binarize_inputs: bool = False,
    ) -> None:
        owner = type(self).__name__
        self.seed = check_seed(owner, seed)
        self.n_estimators = check_int(owner, "n_estimators", n_estimators, 1)
        self.max_depth = None if max_depth is None else check_int(owner, "max_depth", max_depth, 1)
        self.binarize_inputs = bool(binarize_inputs)
        self._forest: Any = None
        self._info: dict[str, Any] = {}

    def _inputs(self, x: np.ndarray) -> np.ndarray:
        return _binary(x) if self.binarize_inputs else np.asarray(x)

    def fit(self, fold: Fold) -> RandomForestExplainer:
        from sklearn.ensemble import RandomForestClassifier

        start = time.perf_counter()
        self._forest = RandomForestClassifier(
            n_estimators=self.n_estimators, max_depth=self.max_depth, random_state=self.seed, n_jobs=1
        ).fit(self._inputs(fold.x_trainval), fold.y_trainval)
        self._info = {"training_time": time.perf_counter() - start}
        return self

    @property
    def forest(self) -> Any:
        if self._forest is None:
            raise RuntimeError("RandomForestExplainer.fit must be called before predict")
        return self._forest

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.forest.predict(self._inputs(x))).astype(np.int64)

    def scores(self, x: np.ndarray) -> np.ndarray | None:
        classes = list(self.forest.classes_)
        if 1 not in classes:
            return np.zeros(len(x))
        return self.forest.predict_proba(self._inputs(x))[:, classes.index(1)]

    def explain(self, fold: Fold, target_class: int = 1) -> Formula:
        return Formula.false()

    def info(self) -> dict[str, Any]:
        return dict(self._info)


# -- reading imodels' fitted models ------------------------------------------------------------------------------


def greedy_rule_list(model: Any, names: list[str]) -> RuleList:
    """The rule list of a fitted ``GreedyRuleListClassifier`` on binarised concepts.

    imodels predicts, row by row: the first split ``x[col] >= cutoff`` (``< cutoff`` when flipped) that holds
    gives ``val_right``; the last entry's ``val`` is the default; class 1 when that probability is > 0.5 (the
    argmax of ``[1 - p, p]``, ties to class 0). On 0/1 inputs ``x >= cutoff`` with 0 < cutoff <= 1 is the concept.
    """
    rules_ = list(model.rules_)
    if not rules_:
        raise ValueError("the greedy rule list has no rules (was it fitted?)")
    classes = np.asarray(model.classes_)

    def label(p: float) -> int:
        return int(classes[1 if p > 0.5 else 0])

    rules: list[Rule] = []
    for node in rules_[:-1]:
        cutoff = float(node["cutoff"])
        if not 0.0 < cutoff <= 1.0:
            raise ValueError(
                f"greedy rule list split on {names[int(node['index_col'])]!r} at {cutoff}: only splits between "
                "0 and 1 of binarised concepts can be read as literals"
            )
        literal = (names[int(node["index_col"])], bool(node["flip"]))
        rules.append(Rule((literal,), label(float(node["val_right"]))))
    return RuleList(tuple(rules), label(float(rules_[-1]["val"])))


def bayesian_rule_list(model: Any, names: list[str], negations: bool = False) -> RuleList:
    """The rule list of a fitted ``BayesianRuleListClassifier``: its point estimate ``d_star`` in order.

    Rule i is the itemset ``itemsets[d_star[i]]`` (an AND of true columns; ``"null"`` always fires) with class 1
    when ``theta[i] >= 0.5`` (imodels' ``predict`` threshold). With ``negations`` column ``k + n`` is ``~c_k``.
    """
    d_star = list(model.d_star or [])
    if not d_star:
        raise ValueError("the Bayesian rule list has no point estimate (was it fitted?)")
    classes = np.asarray(model.classes_)
    column = {str(p): i for i, p in enumerate(model.feature_placeholders)}
    n = len(names)
    rules: list[Rule] = []
    for position, index in enumerate(d_star):
        itemset = model.itemsets[index]
        prediction = int(classes[1 if float(model.theta[position]) >= 0.5 else 0])
        if isinstance(itemset, str):  # "null": the default rule
            rules.append(Rule((), prediction))
            continue
        literals = []
        for item in itemset:
            k = column[str(item)]
            literals.append((names[k - n], True) if negations and k >= n else (names[k], False))
        rules.append(Rule(tuple(literals), prediction))
    # The list ends with the null rule; ``reduced`` makes it the default (and drops anything after it).
    return RuleList(tuple(rules), rules[-1].prediction).reduced()
