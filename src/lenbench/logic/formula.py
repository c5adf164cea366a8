"""Boolean formulas in disjunctive normal form over concept names.

Every explainer hands back a :class:`Formula`, and every metric reads one, so the representation is kept small and
exact: an OR of terms, each term an AND of literals ``(name, negated)``. Formulas are immutable and hashable so they
can be cached, compared, counted and used as dictionary keys (e.g. when counting identical local explanations).

Printing follows the reference notebook (``(a & b) | (c & ~d)``), and ``Formula.parse(str(f)) == f`` always holds,
so a formula survives a round trip through MLflow params, CSV files and JSON.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import sympy
from sympy.logic.boolalg import BooleanFalse, BooleanFunction, BooleanTrue

from lenbench.logic.absorb import Literal, Term, absorb_terms

_NAME_CHARS = r"[A-Za-z0-9_.\-]"
_NAME_RE = re.compile(rf"{_NAME_CHARS}+")
_RESERVED = frozenset({"True", "False"})
_TOKEN_RE = re.compile(rf"\s*(?:(?P<op>[~&|()])|(?P<name>{_NAME_CHARS}+))")


class UnknownConceptError(ValueError):
    """A formula names a concept that the data does not have.

    Raised before any work so that a mismatch between an explainer's names and a data set's names (a renamed column,
    a formula evaluated on another data set) fails loudly instead of scoring a wrong column.
    """

    def __init__(self, unknown: Iterable[str] | str, known: Sequence[str] = ()) -> None:
        self.unknown = (unknown,) if isinstance(unknown, str) else tuple(sorted(unknown))
        self.known = tuple(str(k) for k in known)
        shown = ", ".join(repr(k) for k in self.known[:6])
        more = ", ..." if len(self.known) > 6 else ""
        super().__init__(
            f"unknown concept(s) {', '.join(repr(u) for u in self.unknown)}; "
            f"known concepts ({len(self.known)}): {shown}{more}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions pickle as cls(*args); ours takes two arguments, so spell them out (joblib workers pickle errors).
        return (type(self), (self.unknown, self.known))


@lru_cache(maxsize=4096)
def _check_name(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"concept name must be a str, got {type(name).__name__}: {name!r}")
    if not _NAME_RE.fullmatch(name) or name in _RESERVED:
        raise ValueError(
            f"invalid concept name {name!r}: names use letters, digits, '_', '.', '-' only and cannot be "
            "'True' or 'False' (so that every formula prints and parses back unchanged)"
        )
    return name


def _check_literal(literal: Any) -> Literal:
    """Literals repeat across the thousands of terms of a read-out: each distinct (hashable) one is checked once."""
    try:
        return _check_hashable_literal(literal)
    except TypeError:  # unhashable (a list), or not a literal: the checks say which
        return _check_any_literal(literal)


def _check_any_literal(literal: Any) -> Literal:
    try:
        name, negated = literal
    except (TypeError, ValueError):
        raise TypeError(f"a literal is a (name, negated) pair, got {literal!r}") from None
    if isinstance(negated, (bool, np.bool_)) or (
        isinstance(negated, (int, np.integer)) and negated in (0, 1)
    ):
        return _check_name(str(name) if isinstance(name, str) else name), bool(negated)
    raise TypeError(f"the 'negated' flag of a literal must be a bool, got {negated!r}")


_check_hashable_literal = lru_cache(maxsize=65536)(_check_any_literal)


def _normalise(terms: Any) -> tuple[Term, ...]:
    """Canonical, order-preserving DNF: dedupe literals and terms, drop contradictory terms, collapse to True.

    Order is kept (not sorted) so a formula prints the way its builder wrote it. A term holding both ``c`` and
    ``~c`` can never be true, so it is dropped; an empty term is the constant True and absorbs every other term.
    """
    if isinstance(terms, (str, bytes)):
        raise TypeError("Formula(terms=...) takes literal tuples; use Formula.parse for text")
    out: list[Term] = []
    seen_terms: set[Term] = set()
    has_true = False
    for term in terms:
        if isinstance(term, (str, bytes)):
            raise TypeError(f"a term is a sequence of (name, negated) literals, got {term!r}")
        polarity: dict[str, bool] = {}
        literals: list[Literal] = []
        contradictory = False
        for raw in term:
            name, negated = _check_literal(raw)
            previous = polarity.get(name)
            if previous is None:
                polarity[name] = negated
                literals.append((name, negated))
            elif previous != negated:
                contradictory = True
        if contradictory:
            continue
        normalised = tuple(literals)
        if not normalised:
            has_true = True
        elif normalised not in seen_terms:
            seen_terms.add(normalised)
            out.append(normalised)
    if has_true:
        return ((),)
    return tuple(out)


@dataclass(frozen=True)
class Formula:
    """A DNF formula: OR of terms, each term an AND of literals ``(concept name, negated)``.

    ``terms == ()`` is the constant False and ``terms == ((),)`` (one empty term) the constant True. The
    constructor normalises its input (see ``_normalise``): duplicate literals and terms go, contradictory terms go,
    and any empty term makes the formula True. Otherwise the order of terms and literals is kept as given.
    """

    terms: tuple[Term, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "terms", _normalise(self.terms))

    # -- construction -------------------------------------------------------------------------------------------

    @classmethod
    def true(cls) -> Formula:
        """The constant True (one empty term)."""
        return cls(((),))

    @classmethod
    def false(cls) -> Formula:
        """The constant False (no terms)."""
        return cls(())

    @classmethod
    def literal(cls, name: str, negated: bool = False) -> Formula:
        """A single literal: ``name`` or ``~name``."""
        return cls((((name, negated),),))

    @classmethod
    def conjunction(cls, literals: Iterable[Literal]) -> Formula:
        """One term: the AND of ``literals`` (True when empty, False when it holds ``c`` and ``~c``)."""
        return cls((tuple(literals),))

    @classmethod
    def disjunction(cls, formulas: Iterable[Formula]) -> Formula:
        """The OR of ``formulas``: their terms in order, exact duplicate terms dropped (False when empty)."""
        terms: list[Term] = []
        for f in formulas:
            if not isinstance(f, Formula):
                raise TypeError(f"disjunction takes Formulas, got {type(f).__name__}")
            terms.extend(f.terms)
        return cls(tuple(terms))

    @classmethod
    def parse(cls, text: str) -> Formula:
        """Parse ``~ & |`` expressions (precedence ``~`` > ``&`` > ``|``), parentheses, ``True`` and ``False``.

        Any well-parenthesised expression is accepted and converted to DNF (``&`` distributes over ``|``).
        The empty (or all-blank) string parses to the constant False: the reference scored an empty explanation
        as accuracy 0, and lenbench treats it as the formula False, which scores the same on all-negative rows
        and is otherwise well defined. Bad text raises ``ValueError`` naming the position.
        """
        if not isinstance(text, str):
            raise TypeError(f"Formula.parse takes a str, got {type(text).__name__}")
        if not text.strip():
            return cls.false()
        try:
            return _Parser(text).parse()
        except RecursionError:
            raise ValueError("formula is nested too deeply to parse") from None

    # -- printing -----------------------------------------------------------------------------------------------

    def __str__(self) -> str:
        if self.is_true:
            return "True"
        if self.is_false:
            return "False"
        wrap = len(self.terms) > 1
        parts = []
        for term in self.terms:
            text = " & ".join(f"~{name}" if negated else name for name, negated in term)
            parts.append(f"({text})" if wrap and len(term) > 1 else text)
        return " | ".join(parts)

    def __repr__(self) -> str:
        return f"Formula.parse({str(self)!r})"

    # -- algebra ------------------------------------------------------------------------------------------------

    def __or__(self, other: object) -> Formula:
        if not isinstance(other, Formula):
            return NotImplemented
        return Formula.disjunction((self, other))

    def __and__(self, other: object) -> Formula:
        """AND, distributed into DNF: every term of ``self`` joined with every term of ``other`` (in that order)."""
        if not isinstance(other, Formula):
            return NotImplemented
        return Formula(tuple(t1 + t2 for t1 in self.terms for t2 in other.terms))

    def __invert__(self) -> Formula:
        """NOT, back in DNF by De Morgan and distribution; absorption after each step keeps it from blowing up."""
        result = Formula.true()
        for term in self.terms:
            clause = Formula(tuple(((name, not negated),) for name, negated in term))
            result = Formula(absorb_terms((result & clause).terms))
        return result

    def rename(self, mapping: Mapping[str, str] | Callable[[str], str]) -> Formula:
        """The same formula over other names (names missing from a mapping are kept).

        Useful to simplify over index names such as ``feature0000000010`` (which fixes sympy's term order as the
        reference had it) and then print with concept names.
        """
        if callable(mapping) and not isinstance(mapping, Mapping):
            fn = mapping
        else:
            table = dict(mapping)

            def fn(name: str) -> str:
                return table.get(name, name)

        return Formula(tuple(tuple((fn(name), negated) for name, negated in term) for term in self.terms))

    # -- properties ---------------------------------------------------------------------------------------------

    @property
    def concepts(self) -> frozenset[str]:
        """The concept names the formula mentions (negated or not)."""
        return frozenset(name for term in self.terms for name, _ in term)

    @property
    def complexity(self) -> int:
        """Number of literal occurrences over all terms; 0 for True and False.

        The reference counted literals by splitting the printed string on `` | `` and `` & ``, which gives the same
        number for every non-empty formula, but 1 for the empty string; lenbench counts 0 for the constants.
        """
        return sum(len(term) for term in self.terms)

    @property
    def is_true(self) -> bool:
        """Whether this is the constant True (a formula with an empty term is normalised to it)."""
        return self.terms == ((),)

    @property
    def is_false(self) -> bool:
        """Whether this is the constant False (no term)."""
        return self.terms == ()

    # -- evaluation ---------------------------------------------------------------------------------------------

    def evaluate(self, x: np.ndarray, concept_names: Sequence[str]) -> np.ndarray:
        """Truth value per row of the concept matrix ``x`` [n, k]; a concept is true where its value is > 0.5.

        Vectorised over rows. Names are looked up in ``concept_names`` (first occurrence wins); an unknown name
        raises :class:`UnknownConceptError` before anything is computed.
        """
        names = [str(n) for n in concept_names]
        index: dict[str, int] = {}
        for i, name in enumerate(names):
            index.setdefault(name, i)
        unknown = self.concepts - index.keys()
        if unknown:
            raise UnknownConceptError(unknown, names)
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != len(names):
            raise ValueError(
                f"x must be a 2-D array with one column per concept name ({len(names)}), got shape {x.shape}"
            )
        n = x.shape[0]
        if self.is_true:
            return np.ones(n, dtype=bool)
        used = sorted({index[name] for name in self.concepts})
        truth = x[:, used] > 0.5
        column = {names[j]: k for k, j in enumerate(used)}
        out = np.zeros(n, dtype=bool)
        for term in self.terms:
            value = np.ones(n, dtype=bool)
            for name, negated in term:
                col = truth[:, column[name]]
                value &= ~col if negated else col
            out |= value
        return out

    # -- sympy --------------------------------------------------------------------------------------------------

    def to_sympy(self) -> sympy.Basic:
        """The formula as a sympy boolean expression over ``Symbol(name)`` (sympy orders the arguments itself)."""
        if self.is_true:
            return sympy.true
        if self.is_false:
            return sympy.false
        return sympy.Or(
            *(
                sympy.And(*(sympy.Not(sympy.Symbol(n)) if neg else sympy.Symbol(n) for n, neg in term))
                for term in self.terms
            )
        )

    @classmethod
    def from_sympy(cls, expr: Any) -> Formula:
        """Convert any sympy boolean expression (Xor, Implies, ITE, ... included) to a DNF Formula.

        And/Or keep the order of sympy's ``args`` (its canonical order, which is also how sympy prints them), so a
        simplified expression prints as ``str(expr)`` would.
        """
        if isinstance(expr, (bool, np.bool_)):
            return cls.true() if expr else cls.false()
        if isinstance(expr, BooleanTrue):
            return cls.true()
        if isinstance(expr, BooleanFalse):
            return cls.false()
        if isinstance(expr, sympy.Symbol):
            return cls.literal(expr.name)
        if isinstance(expr, sympy.Not):
            (arg,) = expr.args
            if isinstance(arg, sympy.Symbol):
                return cls.literal(arg.name, negated=True)
            return ~cls.from_sympy(arg)
        if isinstance(expr, sympy.Or):
            return cls.disjunction(cls.from_sympy(a) for a in expr.args)
        if isinstance(expr, sympy.And):
            literals = [_sympy_literal(a) for a in expr.args]
            if all(literal is not None for literal in literals):  # the usual case: one term, built at once
                return cls.conjunction(literals)
            result = cls.true()
            for a in expr.args:
                result = result & cls.from_sympy(a)
            return result
        if isinstance(expr, BooleanFunction):
            return cls.from_sympy(sympy.logic.boolalg.to_nnf(expr, simplify=False))
        raise TypeError(f"not a boolean sympy expression: {expr!r} ({type(expr).__name__})")


def _sympy_literal(expr: Any) -> Literal | None:
    """``x`` -> ``("x", False)``, ``~x`` -> ``("x", True)``; None for anything else."""
    if isinstance(expr, sympy.Symbol):
        return expr.name, False
    if isinstance(expr, sympy.Not) and isinstance(expr.args[0], sympy.Symbol):
        return expr.args[0].name, True
    return None


class _Parser:
    """Recursive descent over ``or := and ('|' and)*; and := unary ('&' unary)*; unary := '~' unary | atom``."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str, int]] = []  # (kind, value, position)
        pos = 0
        while pos < len(text):
            match = _TOKEN_RE.match(text, pos)
            if match is None:
                if not text[pos:].strip():
                    break
                bad = pos + len(text[pos:]) - len(text[pos:].lstrip())
                raise ValueError(f"unexpected character {text[bad]!r} at position {bad} in {text!r}")
            kind = "op" if match.group("op") else "name"
            self.tokens.append((kind, match.group(kind), match.start(kind)))
            pos = match.end()
        self.i = 0

    def _peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _error(self, expected: str) -> ValueError:
        token = self._peek()
        if token is None:
            return ValueError(
                f"expected {expected} at end of input (position {len(self.text)}) in {self.text!r}"
            )
        return ValueError(f"expected {expected}, found {token[1]!r} at position {token[2]} in {self.text!r}")

    def parse(self) -> Formula:
        result = self._or()
        if self._peek() is not None:
            raise self._error("'&', '|' or end of input")
        return result

    def _or(self) -> Formula:
        operands = [self._and()]
        while (token := self._peek()) is not None and token[:2] == ("op", "|"):
            self.i += 1
            operands.append(self._and())
        return operands[0] if len(operands) == 1 else Formula.disjunction(operands)

    def _and(self) -> Formula:
        result = self._unary()
        while (token := self._peek()) is not None and token[:2] == ("op", "&"):
            self.i += 1
            result = result & self._unary()
        return result

    def _unary(self) -> Formula:
        token = self._peek()
        if token is not None and token[:2] == ("op", "~"):
            self.i += 1
            operand = self._unary()
            if len(operand.terms) == 1 and len(operand.terms[0]) == 1:  # fast path for ~name
                ((name, negated),) = operand.terms[0]
                return Formula.literal(name, not negated)
            return ~operand
        return self._atom()

    def _atom(self) -> Formula:
        token = self._peek()
        if token is None:
            raise self._error("a concept name, 'True', 'False', '~' or '('")
        kind, value, position = token
        if kind == "name":
            self.i += 1
            if value == "True":
                return Formula.true()
            if value == "False":
                return Formula.false()
            return Formula.literal(value)
        if value == "(":
            self.i += 1
            inner = self._or()
            closing = self._peek()
            if closing is None or closing[:2] != ("op", ")"):
                raise self._error(f"')' to close the '(' at position {position}")
            self.i += 1
            return inner
        raise self._error("a concept name, 'True', 'False', '~' or '('")
