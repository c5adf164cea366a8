"""Explainers: every method keeps the Explainer interface (fit, predict, explain)."""

from lenbench.explainers.base import Explainer

__all__ = ["Explainer"]
