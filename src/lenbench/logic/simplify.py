"""Bounded DNF simplification.

The reference simplified global explanations with ``sympy.simplify_logic(expr, form="dnf", force=True)``. That call
enumerates the truth table symbolically and runs sympy's Quine-McCluskey in pure Python lists; on MIMIC-II it took
43 s on one fold and hung for more than 20 minutes on another. lenbench keeps the *result* of that call (the published
numbers depend on which minimal DNF sympy picks) but not its cost:

* within the bounds (at most ``max_variables`` concepts and ``max_terms`` terms) the truth table is computed with
  numpy and minimised by a port of sympy's own Quine-McCluskey (``_simplified_pairs`` then ``_rem_redundancy``, same
  order of operations, same tie-breaking, on bit masks and sparse sets), so the result is the formula sympy's
  ``simplify_logic`` returns, term order included, in milliseconds instead of minutes;
* above the bounds only cheap exact reductions run (duplicate and contradictory terms, absorption) plus a budgeted
  tautology check, and the result says ``exact=False, method="fallback"`` so callers can record the fall-back.

One deliberate difference: ``simplify_logic`` returns an OR of single literals unchanged, so it leaves ``a | ~a`` as
is; lenbench returns ``True`` for every tautology and ``False`` for every unsatisfiable formula.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import sympy

from lenbench.logic.absorb import absorb_terms
from lenbench.logic.formula import Formula
from lenbench.validation import check_int, refuse

MAX_EXACT_VARIABLES = 20
"""Hard ceiling for ``max_variables``: the truth table has 2**n rows."""


def check_budget(owner: str, max_variables: object, max_terms: object) -> tuple[int, int]:
    """A method's ``max_simplify_variables``/``max_simplify_terms``, checked: integers >= 0, the variables at most
    :data:`MAX_EXACT_VARIABLES`."""
    variables = check_int(owner, "max_simplify_variables", max_variables, 0)
    if variables > MAX_EXACT_VARIABLES:
        refuse(owner, "max_simplify_variables", max_variables, f"<= {MAX_EXACT_VARIABLES}")
    return variables, check_int(owner, "max_simplify_terms", max_terms, 0)


_TAUTOLOGY_BUDGET = 2_000_000
"""Work budget (literal visits) of the fall-back tautology check; about a second at worst."""


@dataclass(frozen=True)
class SimplifyResult:
    """A simplified formula and how it was obtained.

    ``formula`` is always logically equivalent to the input. ``exact`` is True when it is the minimal DNF sympy's
    ``simplify_logic`` would return (or a constant); ``method`` is one of ``"constant"`` (the result is True or
    False), ``"quine-mccluskey"`` (the bounded exact path, a port that reproduces sympy's output) or ``"fallback"``
    (above the bounds: only dedupe, contradiction removal and absorption, ``exact=False``).
    """

    formula: Formula
    exact: bool
    method: str


def simplify(formula: Formula, max_variables: int = 10, max_terms: int = 64) -> SimplifyResult:
    """Minimal DNF of ``formula``, as sympy's ``simplify_logic(form="dnf", force=True)`` returns it, within bounds.

    Exact when the formula has at most ``max_terms`` terms (after absorption) and either at most ``max_variables`` concepts (truth
    table of 2**max_variables rows) or terms that cover at most 2**max_variables assignments of its concepts in
    all (e.g. an OR of a few long conjunctions over many concepts, the ``weights`` method's case: Quine-McCluskey's
    cost grows with the number of true assignments, not with the number of variables). Otherwise the result is the
    input reduced by absorption, flagged ``exact=False, method="fallback"``. Results are cached (bounded LRU)
    because explainers simplify the same candidate formulas repeatedly.
    """
    if not isinstance(formula, Formula):
        raise TypeError(f"simplify takes a Formula, got {type(formula).__name__}")
    if not 0 <= max_variables <= MAX_EXACT_VARIABLES:
        raise ValueError(f"max_variables must be in [0, {MAX_EXACT_VARIABLES}] (truth table of 2**n rows)")
    if max_terms < 0:
        raise ValueError("max_terms must be >= 0")
    return _simplify_cached(formula, int(max_variables), int(max_terms))


@lru_cache(maxsize=1024)
def _simplify_cached(formula: Formula, max_variables: int, max_terms: int) -> SimplifyResult:
    if formula.is_true or formula.is_false:
        return SimplifyResult(formula, True, "constant")
    reduced = Formula(absorb_terms(formula.terms))
    # The variables are those of the input, as simplify_logic would enumerate them (absorbed ones included).
    # simplify_logic orders them with sympy's ``ordered``; the first one is the most significant bit.
    symbols = list(sympy.ordered([sympy.Symbol(name) for name in formula.concepts]))
    n = len(symbols)
    if len(reduced.terms) <= max_terms:
        if n <= max_variables:
            return _exact(_minterms_by_table(reduced, [s.name for s in symbols]), symbols)
        covered = sum(2 ** (n - len(term)) for term in reduced.terms)
        if covered <= 2**max_variables:
            return _exact(_minterms_by_terms(reduced, [s.name for s in symbols]), symbols)
    if _is_tautology(reduced.terms):
        return SimplifyResult(Formula.true(), True, "constant")
    return SimplifyResult(reduced, False, "fallback")


def _minterms_by_table(formula: Formula, names: list[str]) -> list[int]:
    """True rows of the truth table, vectorised; row m sets variable p to bit (n-1-p) of m (sympy's order)."""
    return [int(m) for m in np.flatnonzero(formula.evaluate(assignments(len(names)), names))]


def assignments(n: int) -> np.ndarray:
    """[2^n, n] every 0/1 assignment in ``itertools.product`` order (first column most significant)."""
    rows = np.arange(2**n, dtype=np.int64)
    return ((rows[:, None] >> np.arange(n - 1, -1, -1)[None, :]) & 1).astype(bool)


def _minterms_by_terms(formula: Formula, names: list[str]) -> list[int]:
    """The same list, built from the terms' own assignments (cheap when the terms are long)."""
    n = len(names)
    position = {name: n - 1 - p for p, name in enumerate(names)}
    full = (1 << n) - 1
    found: set[int] = set()
    for term in formula.terms:
        fixed = ones = 0
        for name, negated in term:
            bit = 1 << position[name]
            fixed |= bit
            if not negated:
                ones |= bit
        found.update(_covered_minterms(ones, full & ~fixed))
    return sorted(found)


def _exact(minterms: list[int], symbols: list[sympy.Symbol]) -> SimplifyResult:
    n = len(symbols)
    if len(minterms) == 2**n:
        return SimplifyResult(Formula.true(), True, "constant")
    if not minterms:
        return SimplifyResult(Formula.false(), True, "constant")
    primes = _simplified_pairs([(m, 0) for m in minterms], n)
    chosen = _rem_redundancy(primes, minterms)
    terms = []
    for ones, dontcare in chosen:
        literals = []
        for position, symbol in enumerate(symbols):
            bit = 1 << (n - 1 - position)
            if not dontcare & bit:
                literals.append(symbol if ones & bit else sympy.Not(symbol))
        terms.append(sympy.And(*literals))
    return SimplifyResult(Formula.from_sympy(sympy.Or(*terms)), True, "quine-mccluskey")


# -- port of sympy.logic.boolalg._simplified_pairs / _rem_redundancy ---------------------------------------------
# A term is (ones, dontcare): bit (n-1-p) of ``dontcare`` marks position p as sympy's 3, else bit (n-1-p) of
# ``ones`` is its 0/1. The loops visit terms in exactly sympy's order, which decides ties between equal covers.


def _simplified_pairs(terms: list[tuple[int, int]], n: int) -> list[tuple[int, int]]:
    """Prime implicants, in the order sympy's ``_simplified_pairs`` returns them.

    sympy compares every term with k ones against every term with k + 1 ones. All terms of one round have the same
    don't-care count, so a pair differs in exactly one position only if the second term is the first with one 0
    turned into a 1: a hash lookup per 0 bit finds the same pairs, which are then taken in sympy's (i, j) order.
    """
    if not terms:
        return []
    index = {term: i for i, term in enumerate(terms)}
    by_ones: dict[int, list[int]] = {}
    for i, (ones, _) in enumerate(terms):
        by_ones.setdefault(ones.bit_count(), []).append(i)
    full = (1 << n) - 1
    merged = [False] * len(terms)
    new_terms: dict[tuple[int, int], None] = {}  # insertion-ordered set
    for k in range(n):
        if not by_ones.get(k + 1):
            continue
        for i in by_ones.get(k, ()):
            ones, dontcare = terms[i]
            zeros = full & ~ones & ~dontcare
            partners = []
            while zeros:
                bit = zeros & -zeros
                zeros ^= bit
                j = index.get((ones | bit, dontcare))
                if j is not None:
                    partners.append((j, bit))
            if not partners:
                continue
            merged[i] = True
            partners.sort()
            for j, bit in partners:
                merged[j] = True
                new_terms.setdefault((ones, dontcare | bit), None)
    result = _simplified_pairs(list(new_terms), n) if new_terms else []
    result.extend(term for term, done in zip(terms, merged, strict=True) if not done)
    return result


def _covered_minterms(ones: int, dontcare: int) -> list[int]:
    out = []
    sub = dontcare
    while True:
        out.append(ones | sub)
        if sub == 0:
            return out
        sub = (sub - 1) & dontcare


class _CoverTable:
    """The prime implicant chart of :func:`_rem_redundancy`: ``rows[t]`` the primes covering term ``t``,
    ``cols[p]`` the terms prime ``p`` covers; both only ever shrink.

    Bookkeeping that only skips work, never changes the outcome: a row unchanged since it was last checked cannot
    newly be contained in another row, and a column unchanged since it was last checked can only newly contain
    columns that shrank in the meantime (``change_log``, in clock order).
    """

    def __init__(self, primes: list[tuple[int, int]], minterms: list[int]) -> None:
        row_of = {m: i for i, m in enumerate(minterms)}
        self.rows: list[set[int]] = [set() for _ in minterms]
        self.cols: list[set[int]] = []
        for p, (ones, dontcare) in enumerate(primes):
            covered = {row_of[m] for m in _covered_minterms(ones, dontcare) if m in row_of}
            self.cols.append(covered)
            for t in covered:
                self.rows[t].add(p)
        self.row_dirty = [True] * len(self.rows)
        self.clock = 0
        self.col_checked = [-1] * len(self.cols)  # clock value when the column was last checked (-1: never)
        self.col_changed = [0] * len(self.cols)  # clock value of the column's last change
        self.change_log: list[tuple[int, int]] = []  # (clock, column)

    def _touch_column(self, c: int) -> None:
        self.clock += 1
        self.col_changed[c] = self.clock
        self.change_log.append((self.clock, c))

    def _drop_column_entries(self, c: int, terms: Iterable[int]) -> None:
        self._touch_column(c)
        for t in terms:
            self.rows[t].discard(c)
            self.row_dirty[t] = True

    def drop_dominating_rows(self) -> bool:
        """A row whose primes include all of another row's primes is redundant (the smaller one forces it)."""
        rows, cols, changed = self.rows, self.cols, False
        for r in range(len(rows)):
            row = rows[r]
            if not row or not self.row_dirty[r]:
                continue
            self.row_dirty[r] = False
            size = len(row)
            pivot = min(row, key=lambda p: len(cols[p]))
            for r2 in list(cols[pivot]):
                other = rows[r2]
                if r2 != r and len(other) >= size and row <= other:
                    rows[r2] = set()
                    for p in other:
                        cols[p].discard(r2)
                        self._touch_column(p)
                    changed = True
        return changed

    def _candidates(self, c: int) -> set[int]:
        since = self.col_checked[c]
        if since >= 0 and self.col_changed[c] <= since:
            start = bisect.bisect_right(self.change_log, (since, len(self.cols)))
            return {c2 for _, c2 in self.change_log[start:]}
        return set().union(*(self.rows[t] for t in self.cols[c]))

    def drop_dominated_columns(self) -> bool:
        """A prime covering a subset of another prime's terms is dropped."""
        cols, changed = self.cols, False
        for c in range(len(cols)):
            col = cols[c]
            if not col:
                continue
            size = len(col)
            for c2 in self._candidates(c):
                other = cols[c2]
                if c2 != c and other and len(other) <= size and other <= col:
                    cols[c2] = set()
                    self._drop_column_entries(c2, other)
                    changed = True
            self.col_checked[c] = self.clock
        return changed

    def greedy_step(self) -> bool:
        """sympy's heuristic: the first prime covering most terms takes those terms from every other prime."""
        best, most = -1, 0
        for c in range(len(self.cols)):
            if len(self.cols[c]) > most:
                best, most = c, len(self.cols[c])
        if best == -1 or most <= 1:
            return False
        changed = False
        for t in self.cols[best]:
            for p in list(self.rows[t]):
                if p != best:
                    self.cols[p].discard(t)
                    self._drop_column_entries(p, ())
                    self.rows[t].discard(p)
                    self.row_dirty[t] = True
                    changed = True
        return changed


def _rem_redundancy(primes: list[tuple[int, int]], minterms: list[int]) -> list[tuple[int, int]]:
    """The primes sympy's ``_rem_redundancy`` keeps: row/column dominance, then its greedy choice, repeated."""
    if not minterms:
        return []
    table = _CoverTable(primes, minterms)
    changed = True
    while changed:
        changed = table.drop_dominating_rows()
        changed = table.drop_dominated_columns() or changed
        if not changed:
            changed = table.greedy_step()
    return [primes[p] for p in range(len(table.cols)) if table.cols[p]]


# -- fall-back tautology check -----------------------------------------------------------------------------------


def _is_tautology(terms: tuple[tuple[tuple[str, bool], ...], ...], budget: int = _TAUTOLOGY_BUDGET) -> bool:
    """Whether a DNF is always true, by the unate recursive paradigm (Shannon expansion on a binate variable).

    A cover that is unate in every variable is a tautology only if it holds the empty term, which ends most
    branches early. Returns False when the work budget runs out (the formula is then kept as it is, still exact).
    """
    index: dict[str, int] = {}
    cubes: list[tuple[int, int]] = []
    for term in terms:
        pos = neg = 0
        for name, negated in term:
            bit = 1 << index.setdefault(name, len(index))
            if negated:
                neg |= bit
            else:
                pos |= bit
        cubes.append((pos, neg))
    stack = [cubes]
    work = 0
    while stack:
        cover = stack.pop()
        work += len(cover) + 1
        if work > budget:
            return False
        if any(p == 0 and q == 0 for p, q in cover):
            continue
        pos_any = neg_any = 0
        for p, q in cover:
            pos_any |= p
            neg_any |= q
        binate = pos_any & neg_any
        if not binate:
            return False
        counts: dict[int, int] = {}
        for p, q in cover:
            mask = (p | q) & binate
            work += mask.bit_count()
            while mask:
                low = mask & -mask
                counts[low] = counts.get(low, 0) + 1
                mask ^= low
        bit = max(counts, key=lambda b: (counts[b], -b.bit_length()))
        stack.append([(p, q & ~bit) for p, q in cover if not p & bit])  # variable false
        stack.append([(p & ~bit, q) for p, q in cover if not q & bit])  # variable true
    return True
