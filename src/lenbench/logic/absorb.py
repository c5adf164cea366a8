"""Absorption, the cheap exact reduction of a DNF: ``a | (a & b)`` is ``a``.

Its own module because explainers call it on formulas of every size, from a rule list's few terms to the thousands
of minterms of an untrained psi network's read-out, so it is written for speed (terms as bit masks). The DNF's
building blocks, :data:`Literal` and :data:`Term`, are defined here, below :mod:`lenbench.logic.formula`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Literal = tuple[str, bool]
"""A literal: (concept name, negated). ``("age_HIGH", True)`` prints as ``~age_HIGH``."""

Term = tuple[Literal, ...]


def absorb_terms(terms: Sequence[Term]) -> tuple[Term, ...]:
    """Drop every term that contains (as a set of literals) another term: ``a | (a & b)`` is ``a``.

    Exact (the function does not change) and cheap, so it is safe on formulas of any size. Order is kept; among
    terms with the same literal set the first one stays. Each literal is one bit, so a term is a mask and "contains
    a kept term" is ``kept & term == kept``, checked against all kept terms at once in numpy when there are at most
    64 literals (an untrained network's read-out has thousands of long terms over a dozen concepts).
    """
    bits: dict[Literal, int] = {}
    masks = [_mask(term, bits) for term in terms]
    order = sorted(range(len(terms)), key=lambda k: (masks[k].bit_count(), k))
    keep = _kept_masks([masks[i] for i in order], wide=len(bits) > 64)
    out = []
    for term, mask in zip(terms, masks, strict=True):
        if mask in keep:  # the first term of each kept literal set, in the input's order
            keep.discard(mask)
            out.append(term)
    return tuple(out)


def _mask(term: Term, bits: dict[Literal, int]) -> int:
    mask = 0
    for literal in term:
        mask |= 1 << bits.setdefault(literal, len(bits))
    return mask


def _kept_masks(masks: list[int], wide: bool) -> set[int]:
    """The masks, shortest first, that contain no mask kept before them."""
    kept: set[int] = set()
    if wide:  # more than 64 literals: Python ints
        kept_shortest_first: list[int] = []
        for mask in masks:
            if mask not in kept and not any(k & mask == k for k in kept_shortest_first):
                kept.add(mask)
                kept_shortest_first.append(mask)
        return kept
    table, n = np.zeros(len(masks), dtype=np.uint64), 0
    for mask in masks:
        if mask in kept:
            continue
        if n:
            head = table[:n]
            if ((head & np.uint64(mask)) == head).any():
                continue
        table[n], n = mask, n + 1
        kept.add(mask)
    return kept
