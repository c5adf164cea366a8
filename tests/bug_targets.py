"""Constructors that fail on purpose, as ``_target_``s of jobs run by tests (importable as ``tests.bug_targets``)."""

from __future__ import annotations


def value_error(**kwargs: object) -> None:
    raise ValueError("depth=-1: must be at least 1")


def bug(**kwargs: object) -> None:
    raise ZeroDivisionError("a bug in lenbench")


def tree_with_a_bug_in_explain(**kwargs: object) -> object:
    """A tree explainer whose ``explain`` has a bug (as a new method's own code may): its fold fails."""
    from lenbench.explainers.tree import TreeExplainer

    class BuggyTree(TreeExplainer):
        def explain(self, fold: object, target_class: int = 1) -> object:
            return 1 / 0

    return BuggyTree(**kwargs)
