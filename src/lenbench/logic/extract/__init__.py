"""Formula extraction from fitted models (decision trees here; psi and ReLU networks live beside it)."""

from lenbench.logic.extract.tree import tree_to_formula

__all__ = ["tree_to_formula"]
