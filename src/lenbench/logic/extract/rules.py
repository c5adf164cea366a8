"""Read a rule list ("if A then p1 elif B then p2 ... else p0") as a DNF formula over concept names.

A row gets the prediction of the first rule whose condition holds, else the default. So the rows of class t are
those whose first firing rule predicts t, or on which no rule fires when the default is t. Written naively each
rule predicting t contributes ``rule_i & ~rule_1 & ... & ~rule_{i-1}``; the negations of earlier rules that also
predict t can be left out (if such an earlier rule fires, the first firing rule is before it and, since no rule
predicting another class fired before rule i, it predicts t too), which keeps the formula small:

    F_t = OR_{i: p_i = t} (rule_i & AND_{j < i, p_j != t} ~rule_j)  [| AND_{j: p_j != t} ~rule_j  when p0 = t]

``~rule_j`` of a conjunction is an OR of negated literals, so the DNF can grow as the product of the negated
rules' lengths; the construction absorbs after every step and refuses to build more than ``max_dnf_terms``
terms. The result is then simplified with :func:`lenbench.logic.simplify.simplify` within its bounds (above them
the absorbed DNF is kept, which is still exact). Pure: no scikit-learn or imodels import; the explainers turn
their fitted models into a :class:`RuleList`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lenbench.logic.absorb import absorb_terms
from lenbench.logic.formula import Formula, Literal
from lenbench.logic.simplify import SimplifyResult, simplify

MAX_DNF_TERMS = 20_000
"""Default ceiling on the terms of the unsimplified DNF (the negations of long rules multiply out)."""


@dataclass(frozen=True)
class Rule:
    """``if AND(condition) then prediction``; an empty condition always fires."""

    condition: tuple[Literal, ...]
    prediction: int

    def __post_init__(self) -> None:
        # Formula validates names and the (name, negated) shape of every literal.
        Formula((tuple(self.condition),))
        object.__setattr__(self, "condition", tuple((str(n), bool(neg)) for n, neg in self.condition))
        object.__setattr__(self, "prediction", int(self.prediction))

    @property
    def never_fires(self) -> bool:
        """A condition holding ``c`` and ``~c`` can never be true."""
        return Formula.conjunction(self.condition).is_false

    def __str__(self) -> str:
        return f"{Formula.conjunction(self.condition)} -> {self.prediction}"


@dataclass(frozen=True)
class RuleList:
    """An ordered list of rules and the default prediction when none fires."""

    rules: tuple[Rule, ...]
    default: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "rules", tuple(self.rules))
        object.__setattr__(self, "default", int(self.default))
        for rule in self.rules:
            if not isinstance(rule, Rule):
                raise TypeError(f"RuleList.rules holds Rule objects, got {type(rule).__name__}")

    @property
    def complexity(self) -> int:
        """Literals in the conditions, the rule list's own size (the formula may be longer or shorter)."""
        return sum(len(rule.condition) for rule in self.rules)

    def reduced(self) -> RuleList:
        """The same function without dead rules: those that can never fire and everything after an always-firing
        rule (which becomes the default)."""
        kept: list[Rule] = []
        default = self.default
        for rule in self.rules:
            if rule.never_fires:
                continue
            if not rule.condition:
                default = rule.prediction
                break
            kept.append(rule)
        return RuleList(tuple(kept), default)

    def predict(self, x: np.ndarray, concept_names: Sequence[str]) -> np.ndarray:
        """The rule list's own predictions (a concept is true where its value is > 0.5), vectorised over rows."""
        x = np.asarray(x)
        out = np.full(x.shape[0], self.default, dtype=np.int64)
        undecided = np.ones(x.shape[0], dtype=bool)
        for rule in self.rules:
            fires = Formula((rule.condition,)).evaluate(x, concept_names) & undecided
            out[fires] = rule.prediction
            undecided &= ~fires
        return out

    def __str__(self) -> str:
        lines = [
            f"{'if' if i == 0 else 'elif'} {Formula.conjunction(r.condition)} then {r.prediction}"
            for i, r in enumerate(self.rules)
        ]
        return "\n".join([*lines, f"else {self.default}"])


@dataclass(frozen=True)
class RuleListFormula:
    """The formula of one class, the unsimplified DNF it came from, and how it was simplified."""

    formula: Formula
    dnf: Formula
    simplify: SimplifyResult

    @property
    def exact(self) -> bool:
        return self.simplify.exact


class RuleListTooLarge(ValueError):
    """The DNF of a rule list would exceed the term budget (its negated rules multiply out)."""


def rule_list_to_formula(
    rule_list: RuleList,
    target_class: int = 1,
    *,
    max_variables: int = 10,
    max_terms: int = 64,
    max_dnf_terms: int = MAX_DNF_TERMS,
) -> RuleListFormula:
    """The formula true exactly on the rows the rule list assigns to ``target_class`` (see the module docstring).

    ``max_variables``/``max_terms`` bound the final simplification; ``max_dnf_terms`` bounds the construction
    (:class:`RuleListTooLarge` above it).
    """
    if not isinstance(rule_list, RuleList):
        raise TypeError(f"rule_list_to_formula takes a RuleList, got {type(rule_list).__name__}")
    if max_dnf_terms < 1:
        raise ValueError(f"max_dnf_terms={max_dnf_terms}: must be >= 1")
    reduced = rule_list.reduced()
    target = int(target_class)
    others = Formula.true()  # AND of ~rule_j over the rules so far that predict another class
    terms: list[tuple[Literal, ...]] = []
    for rule in reduced.rules:
        condition = Formula.conjunction(rule.condition)
        if rule.prediction == target:
            terms.extend((condition & others).terms)
        else:
            others = _bounded(others & ~condition, max_dnf_terms)
        if len(terms) > max_dnf_terms:
            raise RuleListTooLarge(_too_large(len(terms), max_dnf_terms))
    if reduced.default == target:
        terms.extend(others.terms)
    dnf = _bounded(Formula(tuple(terms)), max_dnf_terms)
    result = simplify(dnf, max_variables=max_variables, max_terms=max_terms)
    return RuleListFormula(formula=result.formula, dnf=dnf, simplify=result)


def _bounded(formula: Formula, max_dnf_terms: int) -> Formula:
    reduced = Formula(absorb_terms(formula.terms))
    if len(reduced.terms) > max_dnf_terms:
        raise RuleListTooLarge(_too_large(len(reduced.terms), max_dnf_terms))
    return reduced


def _too_large(n: int, limit: int) -> str:
    return (
        f"the rule list's DNF has {n} terms, more than max_dnf_terms={limit}: the negations of its earlier rules "
        "multiply out; use shorter rules (smaller maxcardinality) or raise the bound"
    )
