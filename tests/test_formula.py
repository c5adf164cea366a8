"""Formula: printing, parsing, evaluation, sympy conversion; simplify: exactness, constants, bounds, fall-back."""

from __future__ import annotations

import itertools
import pickle
import random

import numpy as np
import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st
from sympy.logic.boolalg import _sop_form, simplify_logic
from sympy.utilities.iterables import ibin

from lenbench.logic import Formula, SimplifyResult, UnknownConceptError, simplify
from lenbench.logic.absorb import absorb_terms
from lenbench.logic.simplify import _rem_redundancy, _simplified_pairs

ALPHABET = ["a", "b", "c", "d", "e", "f"]

literals = st.tuples(st.sampled_from(ALPHABET), st.booleans())
terms = st.lists(literals, min_size=0, max_size=4).map(tuple)
formulas = st.lists(terms, min_size=0, max_size=6).map(lambda ts: Formula(tuple(ts)))


def assignments(names: list[str]) -> np.ndarray:
    """Every 0/1 assignment of ``names``, one row each."""
    return np.array(list(itertools.product([0, 1], repeat=len(names))), dtype=float).reshape(-1, len(names))


def truth_table(formula: Formula, names: list[str] = ALPHABET) -> np.ndarray:
    return formula.evaluate(assignments(names), names)


# -- construction and printing ------------------------------------------------------------------------------------


def test_printing_matches_reference_notebook() -> None:
    f = Formula.conjunction([("stroke_flg", False), ("age_HIGH", False)])
    assert str(f) == "stroke_flg & age_HIGH"
    g = Formula.disjunction([f, Formula.conjunction([("age_HIGH", False), ("bun_first_LOW", True)])])
    assert str(g) == "(stroke_flg & age_HIGH) | (age_HIGH & ~bun_first_LOW)"
    h = Formula.literal("age_HIGH") | Formula.literal("stroke_flg", negated=True)
    assert str(h) == "age_HIGH | ~stroke_flg"
    assert str(Formula.true()) == "True"
    assert str(Formula.false()) == "False"
    assert str(Formula.parse("a | (b & c & ~d)")) == "a | (b & c & ~d)"


def test_constants() -> None:
    assert Formula.true().terms == ((),)
    assert Formula.false().terms == ()
    assert Formula.true().is_true and not Formula.true().is_false
    assert Formula.false().is_false and not Formula.false().is_true
    assert Formula.true().complexity == 0 and Formula.false().complexity == 0
    assert Formula.conjunction([]) == Formula.true()
    assert Formula.disjunction([]) == Formula.false()


def test_normalisation_inside_terms_keeps_order() -> None:
    f = Formula.conjunction([("b", False), ("a", True), ("b", False), ("c", False)])
    assert f.terms == ((("b", False), ("a", True), ("c", False)),)
    assert Formula.conjunction([("a", False), ("b", False), ("a", True)]) == Formula.false()
    # contradictory terms are dropped, the others stay in order
    g = Formula(((("z", False), ("z", True)), (("y", False),), (("x", True),)))
    assert str(g) == "y | ~x"
    # exact duplicate terms dropped, first kept
    h = Formula.disjunction([Formula.parse("b & a"), Formula.parse("c"), Formula.parse("b & a")])
    assert str(h) == "(b & a) | c"
    # an empty term makes the whole formula True
    assert Formula(((("a", False),), ())) == Formula.true()


def test_formula_is_hashable_immutable_and_picklable() -> None:
    f = Formula.parse("(a & b) | ~c")
    assert hash(f) == hash(Formula.parse("(a & b) | ~c"))
    assert len({f, Formula.parse("(a & b) | ~c"), Formula.parse("a")}) == 2
    with pytest.raises(AttributeError):
        f.terms = ()  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(f)) == f
    assert eval(repr(f), {"Formula": Formula}) == f


def test_invalid_literals_rejected() -> None:
    with pytest.raises(ValueError, match="invalid concept name"):
        Formula.literal("age HIGH")
    with pytest.raises(ValueError, match="invalid concept name"):
        Formula.literal("True")
    with pytest.raises(TypeError):
        Formula.literal(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Formula(((("a", "yes"),),))


def test_and_distributes_or_keeps_order() -> None:
    f = Formula.parse("a | b") & Formula.parse("c | ~a")
    assert str(f) == "(a & c) | (b & c) | (b & ~a)"
    assert (Formula.parse("a") | Formula.parse("b & c")) == Formula.parse("a | (b & c)")
    assert (Formula.true() & Formula.parse("a")) == Formula.parse("a")
    assert (Formula.false() & Formula.parse("a")) == Formula.false()
    assert (Formula.true() | Formula.parse("a")) == Formula.true()


def test_concepts_and_complexity() -> None:
    f = Formula.parse("(a & b) | (a & ~c) | d")
    assert f.concepts == frozenset({"a", "b", "c", "d"})
    assert f.complexity == 5
    assert Formula.parse("(stroke_flg | bun_first_NORMAL)").complexity == 2


def test_rename() -> None:
    f = Formula.parse("(feature0 & ~feature1) | feature2")
    g = f.rename({"feature0": "age_HIGH", "feature1": "stroke_flg"})
    assert str(g) == "(age_HIGH & ~stroke_flg) | feature2"
    assert str(f.rename(str.upper)) == "(FEATURE0 & ~FEATURE1) | FEATURE2"


# -- parsing ------------------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(formulas)
def test_parse_round_trip(f: Formula) -> None:
    assert Formula.parse(str(f)) == f


def test_parse_reference_forms() -> None:
    assert Formula.parse("(stroke_flg | bun_first_NORMAL)") == Formula.parse("stroke_flg | bun_first_NORMAL")
    assert Formula.parse("  ((a)) & ((~b))  ") == Formula.conjunction([("a", False), ("b", True)])
    assert Formula.parse("True") == Formula.true()
    assert Formula.parse("False") == Formula.false()
    assert Formula.parse("a | True") == Formula.true()
    assert Formula.parse("a & False") == Formula.false()
    assert Formula.parse("a.b-c_1 & 2x") == Formula.conjunction([("a.b-c_1", False), ("2x", False)])


def test_parse_empty_is_false() -> None:
    assert Formula.parse("") == Formula.false()
    assert Formula.parse("   ") == Formula.false()


def test_parse_precedence() -> None:
    # ~ binds tighter than &, which binds tighter than |
    assert Formula.parse("a | b & ~c") == Formula.parse("a | (b & (~c))")
    assert Formula.parse("~a & b") == Formula.conjunction([("a", True), ("b", False)])


NESTED = [
    ("a & (b | ~c)", lambda a, b, c, d: a and (b or not c)),
    ("~(a & b) | (c & ~(d | a))", lambda a, b, c, d: (not (a and b)) or (c and not (d or a))),
    ("~~a & ~(~b)", lambda a, b, c, d: a and b),
    ("(a | b) & (c | d) & ~(a & c)", lambda a, b, c, d: (a or b) and (c or d) and not (a and c)),
    ("~((a | ~b) & (~c | d)) | True & a", lambda a, b, c, d: (not ((a or not b) and (not c or d))) or a),
    ("((((a))))", lambda a, b, c, d: a),
    ("~(True)", lambda a, b, c, d: False),
]


@pytest.mark.parametrize("text,fn", NESTED)
def test_parse_nested_truth_table(text: str, fn) -> None:  # noqa: ANN001
    names = ["a", "b", "c", "d"]
    x = assignments(names)
    expected = np.array([fn(*map(bool, row)) for row in x])
    np.testing.assert_array_equal(Formula.parse(text).evaluate(x, names), expected)


@pytest.mark.parametrize(
    "text,position",
    [
        ("a &", 3),
        ("(a | b", 6),
        ("a b", 2),
        ("a $ b", 2),
        (")", 0),
        ("~", 1),
        ("a | | b", 4),
        ("()", 1),
        ("a & (b | c))", 11),
        ("a <= 0.50", 2),
    ],
)
def test_parse_errors_name_the_position(text: str, position: int) -> None:
    with pytest.raises(ValueError, match=f"position {position}"):
        Formula.parse(text)


# -- evaluation ---------------------------------------------------------------------------------------------------


def test_evaluate_threshold() -> None:
    names = ["a", "b"]
    x = np.array([[0.5, 0.0], [0.58, 0.0], [1.0, 0.5], [0.51, 0.9], [0.0, 1.0]])
    np.testing.assert_array_equal(Formula.parse("a").evaluate(x, names), [False, True, True, True, False])
    np.testing.assert_array_equal(Formula.parse("~b").evaluate(x, names), [True, True, True, False, False])
    np.testing.assert_array_equal(
        Formula.parse("a & b").evaluate(x, names), [False, False, False, True, False]
    )
    np.testing.assert_array_equal(
        Formula.parse("(a & ~b) | b").evaluate(x, names), [False, True, True, True, True]
    )
    np.testing.assert_array_equal(Formula.true().evaluate(x, names), [True] * 5)
    np.testing.assert_array_equal(Formula.false().evaluate(x, names), [False] * 5)


def test_evaluate_uses_names_not_positions() -> None:
    x = np.array([[1, 0, 0], [0, 1, 1]])
    np.testing.assert_array_equal(Formula.parse("c & ~a").evaluate(x, ["a", "b", "c"]), [False, True])
    np.testing.assert_array_equal(Formula.parse("c & ~a").evaluate(x, ["c", "b", "a"]), [True, False])
    assert Formula.parse("a").evaluate(np.zeros((0, 3)), ["a", "b", "c"]).shape == (0,)


def test_evaluate_unknown_concept() -> None:
    names = [f"concept{i}" for i in range(10)]
    with pytest.raises(UnknownConceptError) as info:
        Formula.parse("concept1 & ghost | ~phantom").evaluate(np.zeros((2, 10)), names)
    message = str(info.value)
    assert "'ghost'" in message and "'phantom'" in message
    assert "'concept0'" in message and "(10)" in message
    assert isinstance(info.value, ValueError)
    assert info.value.unknown == ("ghost", "phantom")
    again = pickle.loads(pickle.dumps(info.value))
    assert str(again) == message


def test_evaluate_checks_shape() -> None:
    with pytest.raises(ValueError, match="2-D"):
        Formula.parse("a").evaluate(np.zeros(3), ["a", "b", "c"])
    with pytest.raises(ValueError, match="one column per concept"):
        Formula.parse("a").evaluate(np.zeros((3, 2)), ["a", "b", "c"])


# -- sympy --------------------------------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(formulas)
def test_sympy_round_trip_keeps_truth_table(f: Formula) -> None:
    g = Formula.from_sympy(f.to_sympy())
    np.testing.assert_array_equal(truth_table(g), truth_table(f))


def test_from_sympy_any_boolean_expression() -> None:
    a, b, c = sympy.symbols("a b c")
    names = ["a", "b", "c"]
    for expr in [
        sympy.Xor(a, b),
        sympy.Implies(a, b & ~c),
        sympy.Equivalent(a, c),
        sympy.ITE(a, b, c),
        ~(a | b),
    ]:
        f = Formula.from_sympy(expr)
        x = assignments(names)
        expected = [bool(expr.subs(dict(zip((a, b, c), map(bool, row), strict=True)))) for row in x]
        np.testing.assert_array_equal(f.evaluate(x, names), expected)
    assert Formula.from_sympy(sympy.true) == Formula.true()
    assert Formula.from_sympy(False) == Formula.false()
    with pytest.raises(TypeError):
        Formula.from_sympy(a + 1)


def test_from_sympy_follows_sympy_printing() -> None:
    a, b, c = sympy.symbols("stroke_flg age_HIGH bun_first_LOW")
    expr = (a & b) | (b & ~c) | ~a
    assert str(Formula.from_sympy(expr)) == str(expr)


# -- simplify -----------------------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(formulas)
def test_simplify_keeps_truth_table(f: Formula) -> None:
    result = simplify(f)
    assert result.exact
    np.testing.assert_array_equal(truth_table(result.formula), truth_table(f))
    assert result.formula.complexity <= f.complexity or f.is_true or f.is_false
    if not (result.formula.is_true or result.formula.is_false):
        assert result.method == "quine-mccluskey"


@settings(max_examples=150, deadline=None)
@given(formulas)
def test_simplify_equals_sympy_simplify_logic(f: Formula) -> None:
    """The port gives sympy's result, term order included, except for the tautologies sympy leaves alone."""
    result = simplify(f).formula
    if f.is_true or f.is_false:
        assert result == f
        return
    expected = simplify_logic(f.to_sympy(), form="dnf", force=True)
    if truth_table(f).all():
        assert result == Formula.true()  # sympy returns e.g. `a | ~a` unchanged
    else:
        assert str(result) == str(expected)


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 7).flatmap(lambda n: st.tuples(st.just(n), st.sets(st.integers(0, 2**n - 1), min_size=1)))
)
def test_quine_mccluskey_port_equals_sympy(case: tuple[int, set[int]]) -> None:
    n, minterm_set = case
    minterms = sorted(minterm_set)
    symbols = sympy.symbols(f"v0:{n}")
    expected = _sop_form(symbols, [ibin(m, n) for m in minterms], [])
    chosen = _rem_redundancy(_simplified_pairs([(m, 0) for m in minterms], n), minterms)
    got = sympy.Or(
        *(
            sympy.And(
                *(
                    s if ones >> (n - 1 - p) & 1 else ~s
                    for p, s in enumerate(symbols)
                    if not dontcare >> (n - 1 - p) & 1
                )
            )
            for ones, dontcare in chosen
        )
    )
    assert str(got) == str(expected)


def test_simplify_examples() -> None:
    r = simplify(Formula.parse("a | (a & b) | (~a & b)"))
    assert r == SimplifyResult(Formula.parse("a | b"), True, "quine-mccluskey")
    r = simplify(Formula.parse("(a & b & c) | (a & b & ~c) | (a & ~b)"))
    assert r.formula == Formula.parse("a")


@pytest.mark.parametrize(
    "text",
    ["a | ~a", "(a & b) | (a & ~b) | (~a & b) | (~a & ~b)", "a | b | ~(a | b)", "True", "(c & d) | ~c | ~d"],
)
def test_simplify_tautology(text: str) -> None:
    r = simplify(Formula.parse(text))
    assert r.formula == Formula.true() and r.exact and r.method == "constant"


@pytest.mark.parametrize("text", ["a & ~a", "False", "", "(a | b) & ~a & ~b", "a & b & ~(a & b)"])
def test_simplify_contradiction(text: str) -> None:
    r = simplify(Formula.parse(text))
    assert r.formula == Formula.false() and r.exact and r.method == "constant"


def test_simplify_sympy_term_order() -> None:
    # simplify_logic orders by sympy's sort key, over the names it is given
    f = Formula.parse("(zz & ~bb) | (aa & bb) | (aa & zz)")
    assert str(simplify(f).formula) == str(simplify_logic(f.to_sympy(), form="dnf", force=True))


def test_simplify_fallback_above_bounds_keeps_truth_table() -> None:
    rng = np.random.default_rng(0)
    names = [f"c{i}" for i in range(12)]
    terms = [
        tuple((names[j], bool(rng.random() < 0.5)) for j in rng.choice(12, size=5, replace=False))
        for _ in range(12)
    ]
    terms.append(terms[0] + ((names[11], False),))  # absorbed by terms[0]
    f = Formula(tuple(terms))
    r = simplify(f)  # 12 variables > 10 and terms too short to enumerate cheaply
    assert not r.exact and r.method == "fallback"
    assert len(r.formula.terms) == len(f.terms) - 1
    x = assignments(names)
    np.testing.assert_array_equal(r.formula.evaluate(x, names), f.evaluate(x, names))
    # too many terms falls back too
    r = simplify(f, max_variables=12, max_terms=5)
    assert r.method == "fallback" and not r.exact
    # the same formula within raised bounds is exact and still equivalent
    r = simplify(f, max_variables=12)
    assert r.exact and r.method == "quine-mccluskey"
    np.testing.assert_array_equal(r.formula.evaluate(x, names), f.evaluate(x, names))


def test_simplify_fallback_detects_tautology() -> None:
    names = [f"c{i}" for i in range(30)]
    big = Formula.conjunction((n, False) for n in names)
    f = (
        big
        | ~Formula.literal("c0")
        | Formula.conjunction([("c0", False), ("c1", True)])
        | Formula.parse("c0 & c1")
    )
    r = simplify(f)
    assert r.formula == Formula.true() and r.method == "constant"


def test_simplify_long_terms_over_many_variables_is_exact() -> None:
    """An OR of a few long conjunctions (the weights method) is cheap however many concepts it mentions."""
    names = [f"feature{i:010}" for i in range(40)]
    t1 = [(n, i % 3 == 0) for i, n in enumerate(names[:36])]
    t2 = [*t1[:-1], (names[35], not t1[-1][1])]  # merges with t1 on the last literal
    t3 = [(n, i % 2 == 0) for i, n in enumerate(names[4:])]
    f = Formula((tuple(t1), tuple(t2), tuple(t3)))
    r = simplify(f)
    assert r.exact and r.method == "quine-mccluskey"
    assert r.formula.complexity == 35 + 36
    assert str(r.formula) == str(simplify_logic(f.to_sympy(), form="dnf", force=True))


def test_simplify_bounds_validated() -> None:
    with pytest.raises(ValueError):
        simplify(Formula.parse("a"), max_variables=21)
    with pytest.raises(TypeError):
        simplify("a")  # type: ignore[arg-type]


def _absorb_by_sets(terms: list) -> tuple:
    """The definition: keep a term unless a kept one (shortest first, then in order) is a subset of it."""
    sets = [frozenset(t) for t in terms]
    kept: list[int] = []
    for i in sorted(range(len(terms)), key=lambda k: (len(sets[k]), k)):
        if not any(sets[j] <= sets[i] for j in kept):
            kept.append(i)
    return tuple(t for i, t in enumerate(terms) if i in set(kept))


@pytest.mark.parametrize("n_names", [6, 40])  # 80 literals: more than the 64 bits of the vectorised path
def test_absorb_terms_matches_its_definition_on_random_term_lists(n_names: int) -> None:
    rng = random.Random(n_names)
    names = [f"c{i}" for i in range(n_names)]
    for _ in range(3000):
        terms = [
            tuple((rng.choice(names), rng.random() < 0.5) for _ in range(rng.randint(0, 5)))
            for _ in range(rng.randint(0, 25))
        ]
        assert absorb_terms(terms) == _absorb_by_sets(terms), terms
    minterms = [tuple((name, bool(m >> j & 1)) for j, name in enumerate(names[:6])) for m in range(64)]
    # c0 absorbs the 32 minterms with c0 true; order is kept, so it comes last
    kept = tuple(t for t in minterms if t[0] == ("c0", True)) + ((("c0", False),),)
    assert absorb_terms([*minterms, (("c0", False),)]) == kept
