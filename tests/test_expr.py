"""The spec expression language (archspec/schema/expr.py).

Covers precedence and associativity, every built-in function, the error
codes and 0-based columns of syntax and evaluation errors, the magnitude and
finiteness limits, strings, ``to_source`` round trips and ``free_names``,
plus property tests against Python's own arithmetic.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archspec.schema.expr import (
    FUNCTIONS,
    MAX_LENGTH,
    MAX_MAGNITUDE,
    MAX_NESTING,
    Call,
    ExprError,
    Name,
    calls,
    evaluate,
    evaluate_text,
    free_names,
    make_divisible,
    parse,
    to_source,
)

ENV = {"a": 10, "b": 3, "c": 2, "width": 64, "alpha": 0.5, "mode": "same", "flag": True, "zero": 0}


def ev(text: str, env: dict | None = None):
    return evaluate_text(text, ENV if env is None else env)


def error(text: str, env: dict | None = None) -> ExprError:
    with pytest.raises(ExprError) as info:
        ev(text, env)
    return info.value


def _kind(value) -> type:
    return bool if isinstance(value, bool) else type(value)


def same_value(x, y) -> bool:
    """Equal value *and* kind of value (1, 1.0 and True are three different results)."""
    if _kind(x) is not _kind(y):
        return False
    if isinstance(x, float):
        return math.isclose(x, y, rel_tol=1e-12, abs_tol=0.0) or x == y
    return x == y


# ----------------------------------------------------------------------------
# Precedence and associativity


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # ** is right-associative and binds tighter than unary minus on its left
        ("2 ** 3 ** 2", 512),
        ("(2 ** 3) ** 2", 64),
        ("-2 ** 2", -4),
        ("(-2) ** 2", 4),
        ("2 ** -1", 0.5),
        ("-2 ** -2", -0.25),
        ("2 * 3 ** 2", 18),
        # + - * / are left-associative
        ("a - b - c", 5),
        ("a - (b - c)", 9),
        ("100 / 10 / 5", 2.0),
        ("100 / (10 / 5)", 50.0),
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("a - b * c", 4),
        # // and % share the level of * and round toward -inf like Python
        ("7 // 2", 3),
        ("-7 // 2", -4),
        ("7 // -2", -4),
        ("-7 % 3", 2),
        ("7 % -3", -2),
        ("100 // 7 % 4", 2),
        ("100 % 7 // 2", 1),
        ("2 * 7 % 4", 2),
        ("2 * (7 % 4)", 6),
        ("7.5 // 2", 3.0),
        ("7.5 % 2", 1.5),
        ("7 / 2", 3.5),
        ("6 / 2", 3.0),
        # unary operators
        ("- -3", 3),
        ("+3", 3),
        ("-a", -10),
        ("--a", 10),
        # comparisons bind looser than arithmetic and chain
        ("1 + 1 == 2", True),
        ("1 < 2 < 3", True),
        ("1 < 3 < 2", False),
        ("3 > 2 > 2", False),
        ("3 >= 2 >= 2", True),
        ("1 < 2 == 2", True),
        ("1 == 1.0", True),
        ("2 != 3", True),
        ("2 != 2", False),
        ("(1 < 2) < 3", True),
        # not binds looser than comparison, and looser than arithmetic
        ("not 1 == 2", True),
        ("not 0", True),
        ("not a", False),
        ("not not 1", True),
        # and binds tighter than or; both return an operand, as Python
        ("1 or 0 and 0", 1),
        ("0 and 1 or 7", 7),
        ("(1 or 0) and 0", 0),
        ("0 or 5", 5),
        ("3 and 4", 4),
        ("0 and 4", 0),
        ("not 0 and 0", 0),  # (not 0) and 0
        ("not (0 and 0)", True),
        # if-else is the loosest and right-associative
        ("1 if 0 else 2", 2),
        ("1 if 1 else 2", 1),
        ("1 + 2 if 0 else 5", 5),
        ("1 + (2 if 0 else 5)", 6),
        ("1 if 0 else 2 if 1 else 3", 2),
        ("1 if 0 else 2 if 0 else 3", 3),
        ("(1 if 0 else 2) if 1 else 3", 2),
        ("10 if b < a else 20", 10),
        ("'x' if mode == 'same' else 'y'", "x"),
        # literals
        ("true", True),
        ("false", False),
        ("True", True),
        ("False", False),
        ("1.5e2", 150.0),
        (".5", 0.5),
        ("3.", 3.0),
        ("1E-3", 0.001),
        ("width * alpha", 32.0),
        ("True + 1", 2),
    ],
)
def test_evaluates_like_python(text, expected):
    result = ev(text)
    assert same_value(result, expected), f"{text!r} gave {result!r}, expected {expected!r}"


def test_chained_comparison_matches_pairwise_and():
    for x in range(-2, 3):
        for y in range(-2, 3):
            for z in range(-2, 3):
                env = {"x": x, "y": y, "z": z}
                assert ev("x < y <= z", env) == (x < y and y <= z)
                assert ev("x == y != z", env) == (x == y and y != z)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0 and 1 / 0", 0),  # the right side of a false 'and' is never evaluated
        ("zero and missing_name", 0),
        ("1 or 1 / 0", 1),  # nor the right side of a true 'or'
        ("flag or missing_name", True),
        ("1 if 1 else 1 / 0", 1),  # nor the branch not taken
        ("1 / 0 if 0 else 2", 2),
        ("1 > 2 < 1 / 0", False),  # a chain stops at the first false link
    ],
)
def test_short_circuit_does_not_evaluate_the_other_side(text, expected):
    assert same_value(ev(text), expected)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("1 and 1 / 0", "E302"),
        ("0 or 1 / 0", "E302"),
        ("flag and missing_name", "E203"),
        ("1 < 2 < 1 / 0", "E302"),
        ("1 if 0 else 1 / 0", "E302"),
    ],
)
def test_the_side_that_is_needed_is_evaluated(text, code):
    assert error(text).code == code


# ----------------------------------------------------------------------------
# Functions


FUNCTION_CASES = [
    ("min(3, 1, 2)", 1),
    ("min(2.5, 3)", 2.5),
    ("min(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0)", 0),
    ("max(1, 2)", 2),
    ("max(-1, -2, -3)", -1),
    ("abs(-3)", 3),
    ("abs(2.5)", 2.5),
    ("abs(-a)", 10),
    ("int(3.9)", 3),
    ("int(-3.9)", -3),
    ("int(7)", 7),
    ("int(24 * 0.35)", 8),
    ("float(3)", 3.0),
    ("float(a) / 4", 2.5),
    ("round(2.5)", 2),  # half to even
    ("round(3.5)", 4),
    ("round(-2.5)", -2),
    ("round(2.675, 2)", 2.67),
    ("round(1234, -2)", 1200),
    ("floor(-1.5)", -2),
    ("floor(2.9)", 2),
    ("ceil(1.2)", 2),
    ("ceil(-1.2)", -1),
    ("ceil(224 / 32)", 7),
    ("sqrt(16)", 4.0),
    ("sqrt(2)", math.sqrt(2)),
    ("make_divisible(32 * alpha, 8)", 16),
    ("make_divisible(32)", 32),
]


@pytest.mark.parametrize(("text", "expected"), FUNCTION_CASES)
def test_function(text, expected):
    result = ev(text)
    assert same_value(result, expected), f"{text!r} gave {result!r}, expected {expected!r}"


def test_every_function_is_covered():
    covered = {call.func for text, _ in FUNCTION_CASES for call in calls(parse(text))}
    assert covered == set(FUNCTIONS)


def test_functions_have_docs_and_sane_arity():
    for name, fn in FUNCTIONS.items():
        assert fn.doc, name
        assert 0 <= fn.min_args <= fn.max_args, name


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # MobileNet v2 widths (Keras applications / torchvision _make_divisible)
        ("make_divisible(32 * 0.5, 8)", 16),
        ("make_divisible(int(24 * 0.35), 8)", 8),
        ("make_divisible(11.2, 8)", 16),  # 8 would lose more than 10%
        ("make_divisible(32 * 0.35, 8)", 16),  # the 0.35 stem
        ("make_divisible(int(16 * 0.35), 8)", 8),
        ("make_divisible(int(24 * 0.75), 8)", 24),  # 16 < 0.9 * 18
        ("make_divisible(int(96 * 0.35), 8)", 32),
        ("make_divisible(int(320 * 0.35), 8)", 112),
        ("make_divisible(int(160 * 0.5), 8)", 80),
        ("make_divisible(int(64 * 1.3), 8)", 80),
        ("make_divisible(1280 * 1.4, 8)", 1792),
        ("make_divisible(32 * 1.0, 8)", 32),
        ("make_divisible(3, 8)", 8),  # never below the divisor
        ("make_divisible(12, 8)", 16),  # 12 + 4 rounds up
        ("make_divisible(11.9, 8)", 16),
        ("make_divisible(100, 8)", 104),
        ("make_divisible(5, 8, 16)", 16),  # explicit min_value
        ("make_divisible(100, 8, 64)", 104),
        ("make_divisible(30, 4)", 32),
    ],
)
def test_make_divisible_known_values(text, expected):
    result = ev(text)
    assert isinstance(result, int) and not isinstance(result, bool)
    assert result == expected


@settings(max_examples=300, deadline=None)
@given(
    value=st.floats(min_value=0.0, max_value=1e6, allow_nan=False),
    divisor=st.integers(min_value=1, max_value=64),
)
def test_make_divisible_invariants(value, divisor):
    result = make_divisible(value, divisor)
    assert result % divisor == 0
    assert result >= divisor  # min_value defaults to the divisor
    assert result >= 0.9 * value  # never more than 10% down
    assert result <= max(value + divisor / 2, 0.9 * value + divisor, divisor)


def test_make_divisible_refuses_a_non_positive_divisor():
    err = error("make_divisible(16, 0)")
    assert err.code == "E302"
    assert "divisor must be positive" in err.message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("min(1)", "min() takes 2 to 16 arguments, got 1"),
        ("max()", "max() takes 2 to 16 arguments, got 0"),
        ("min(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17)", "got 17"),
        ("abs(1, 2)", "abs() takes 1 arguments, got 2"),
        ("abs()", "abs() takes 1 arguments, got 0"),
        ("int()", "int() takes 1 arguments, got 0"),
        ("float(1, 2)", "float() takes 1 arguments, got 2"),
        ("round(1, 2, 3)", "round() takes 1 to 2 arguments, got 3"),
        ("floor(1, 2)", "floor() takes 1 arguments, got 2"),
        ("ceil()", "ceil() takes 1 arguments, got 0"),
        ("sqrt(4, 2)", "sqrt() takes 1 arguments, got 2"),
        ("make_divisible()", "make_divisible() takes 1 to 3 arguments, got 0"),
        ("make_divisible(1, 2, 3, 4)", "make_divisible() takes 1 to 3 arguments, got 4"),
    ],
)
def test_arity_errors(text, fragment):
    err = error(text)
    assert err.code == "E302"
    assert fragment in err.message
    assert err.col == 0  # the column of the function name


def test_arity_error_column_points_at_the_call():
    assert error("1 + abs(1, 2)").col == 4


def test_arity_is_checked_before_the_arguments_are_evaluated():
    # a wrong call is reported as such, not as an error in one of its arguments
    assert "takes 1 arguments" in error("abs(1 / 0, 2)").message


@pytest.mark.parametrize(
    ("text", "col", "suggestion"),
    [
        ("flor(2.5)", 0, "floor"),
        ("1 + mak_divisible(3)", 4, "make_divisible"),
        ("sqr(4)", 0, "sqrt"),
        ("maxx(1, 2)", 0, "max"),
    ],
)
def test_unknown_function_suggests_the_closest(text, col, suggestion):
    err = error(text)
    assert err.code == "E302"
    assert err.col == col
    assert f"(did you mean '{suggestion}'?)" in err.message
    assert "available: " + ", ".join(sorted(FUNCTIONS)) in err.message


def test_unknown_function_without_a_close_match_lists_the_functions():
    err = error("zzzzzz(1)")
    assert "did you mean" not in err.message
    assert "unknown function 'zzzzzz'" in err.message
    assert "make_divisible" in err.message


@pytest.mark.parametrize(
    ("text", "name", "col", "suggestion"),
    [
        ("widht * 2", "widht", 0, "width"),
        ("2 * widht", "widht", 4, "width"),
        ("alpah", "alpah", 0, "alpha"),
        ("max(1, wdth)", "wdth", 7, "width"),
    ],
)
def test_unknown_name_suggests_the_closest(text, name, col, suggestion):
    err = error(text)
    assert err.code == "E203"
    assert err.col == col
    assert err.message == f"unknown name '{name}' (did you mean '{suggestion}'?)"


def test_unknown_name_without_a_close_match():
    err = error("qqqqqq + 1")
    assert err.code == "E203"
    assert err.message == "unknown name 'qqqqqq'"


def test_variables_come_from_the_environment():
    assert ev("a * b", {"a": 6, "b": 7}) == 42
    assert error("a * b", {"a": 6}).code == "E203"


# ----------------------------------------------------------------------------
# Evaluation errors and limits


@pytest.mark.parametrize(
    ("text", "col"),
    [
        ("1 / 0", 2),
        ("1 // 0", 2),
        ("1 % 0", 2),
        ("1.0 / 0.0", 4),
        ("a / zero", 2),
        ("a // (b - 3)", 2),
        ("0 ** -1", 2),
        ("0.0 ** -1", 4),
    ],
)
def test_division_by_zero(text, col):
    err = error(text)
    assert err.code == "E302"
    assert err.message == "division by zero"
    assert err.col == col  # the operator


@pytest.mark.parametrize(
    "text",
    [
        "2 ** 100",
        "2 ** 65",
        "2 ** 64",
        "10 ** 20",
        "1.5 ** 200",
        "(-3) ** 50",
        "10 ** 10 ** 10",  # refused before Python would spend forever on it
        "9 ** 9 ** 9",
    ],
)
def test_huge_powers_are_refused(text):
    err = error(text)
    assert err.code == "E305"


@pytest.mark.parametrize(
    "text",
    [
        "10 ** 16",
        "10 ** 15 + 1",
        "-(10 ** 15) - 1",
        "10 ** 8 * 10 ** 8",
        "1e15 * 2",
        "-1e16",
        "max(1e300, 1)",
        "int(1e300)",
        "round(1e300)",
        "floor(1e300)",
        "make_divisible(1e16)",
    ],
)
def test_results_beyond_the_magnitude_limit_are_refused(text):
    err = error(text)
    assert err.code == "E305"
    assert "larger than" in err.message


def test_results_at_the_magnitude_limit_are_allowed():
    assert ev("10 ** 15") == MAX_MAGNITUDE
    assert ev("-(10 ** 15)") == -MAX_MAGNITUDE
    assert ev("2 ** 49") == 2**49


@pytest.mark.parametrize(
    "text",
    [
        "1e300 * 1e300",
        "1e308 * 10 - 1e308 * 10",
        "float('nan')",
        "float('inf')",
        "float('-inf')",
        "1e15 // 1e-300",
        "-1e400",
    ],
)
def test_non_finite_results_are_refused(text):
    err = error(text)
    # Either the result is not finite, or a literal is already beyond the limit.
    assert (err.code, "not a finite number" in err.message) == ("E302", True) or (
        err.code == "E305" and "larger than" in err.message
    )


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("(-8) ** 0.5", "complex"),
        ("sqrt(-1)", "sqrt() of a negative number"),
        ("sqrt(-b)", "sqrt() of a negative number"),
        ("float('abc')", "could not convert"),
        ("round(2.5, 0.5)", "round()"),
    ],
)
def test_math_domain_errors(text, fragment):
    err = error(text)
    assert err.code == "E302"
    assert fragment in err.message


def test_power_overflow_is_an_expression_error():
    # a tiny base to a negative power overflows a float: must be an ExprError, not a crash
    assert error("1e-300 ** -2").code in ("E302", "E305")


def test_true_division_of_a_huge_literal_is_an_expression_error():
    assert error("1" + "0" * 400 + " / 3").code in ("E302", "E305")


def test_an_infinite_literal_is_refused():
    assert error("1e400").code == "E302"


def test_too_long_expression_is_refused():
    text = "1 + " * (MAX_LENGTH // 4) + "1"
    assert len(text) > MAX_LENGTH
    with pytest.raises(ExprError) as info:
        parse(text)
    assert info.value.code == "E305"
    assert info.value.col == 0


def test_deeply_nested_but_short_expression_is_fine():
    text = "(" * 40 + "1" + ")" * 40
    assert ev(text) == 1


# ----------------------------------------------------------------------------
# Syntax errors: code E301 and the 0-based column of the offending token


@pytest.mark.parametrize(
    ("text", "col", "fragment"),
    [
        ("1 +", 3, "expected a value, found the end of the expression"),
        ("1 +* 2", 3, "expected a value, found '*'"),
        ("(1 + 2", 6, "expected ')', found the end of the expression"),
        ("max(1, 2", 8, "expected ')'"),
        ("max(1 2)", 6, "expected ')', found '2'"),
        ("1 2", 2, "unexpected '2' after a complete expression"),
        ("x y", 2, "unexpected 'y' after a complete expression"),
        ("(1))", 3, "unexpected ')'"),
        ("2 * $x", 4, "unexpected character '$'"),
        ("1 = 2", 2, "unexpected character '='"),
        ("a ! b", 2, "unexpected character '!'"),
        ("x[0]", 1, "unexpected character '['"),
        ("a.b", 1, "unexpected character '.'"),
        ("'abc", 0, 'unexpected character "\'"'),
        ("a if b", 6, "expected 'else'"),
        ("a if b else", 11, "expected a value"),
        ("1 + if", 4, "unexpected keyword 'if'"),
        ("if", 0, "unexpected keyword 'if'"),
        ("a and", 5, "expected a value"),
        ("not", 3, "expected a value"),
        (")", 0, "expected a value, found ')'"),
        ("", 0, "empty expression"),
        ("   ", 0, "empty expression"),
        ("max(,)", 4, "expected a value, found ','"),
        ("lambda: 1", 6, "unexpected character ':'"),
        ("a.__class__", 1, "unexpected character '.'"),
    ],
)
def test_syntax_errors(text, col, fragment):
    with pytest.raises(ExprError) as info:
        parse(text)
    err = info.value
    assert err.code == "E301"
    assert err.col == col, err.message
    assert fragment in err.message


def test_python_builtins_are_not_reachable():
    err = error("__import__('os')")  # parses as a call, but of no known function
    assert err.code == "E302"
    assert "unknown function '__import__'" in err.message


def test_unexpected_character_hint_lists_the_language():
    err = error("a @ b")
    assert "only numbers, names" in err.message
    assert "function calls" in err.message


# ----------------------------------------------------------------------------
# Strings


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("'abc'", "abc"),
        ('"abc"', "abc"),
        ("''", ""),
        ("'a' + 'b'", "ab"),
        ("'say \"hi\"'", 'say "hi"'),
        ('"it\'s"', "it's"),
        ("'a' == 'a'", True),
        ("'a' != 'b'", True),
        ("'a' < 'b'", True),
        ("mode == 'same'", True),
        ("mode == 'valid'", False),
        ("not ''", True),
        ("not 'x'", False),
        ("mode if flag else 'valid'", "same"),
        ("'1 + 1'", "1 + 1"),  # the content of a string is never evaluated
    ],
)
def test_strings(text, expected):
    assert same_value(ev(text), expected)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("'a' * 2", "'*' needs a number, got the string 'a'"),
        ("'a' + 1", "'+' needs a number, got the string 'a'"),
        ("1 - 'a'", "'-' needs a number, got the string 'a'"),
        ("-'a'", "unary - needs a number"),
        ("mode / 2", "needs a number, got the string 'same'"),
        ("'a' < 1", "cannot compare the string 'a' with the number 1 (<)"),
        ("1 < 'a' < 2", "cannot compare the string 'a' with the number 1 (<)"),
        ("mode == 3", "cannot compare the string 'same' with the number 3 (==)"),
        ("int('3')", "int() takes a number"),
        ("abs('x')", "abs()"),
        ("make_divisible('a')", "make_divisible()"),
        ("min('a', 1)", "min()"),
    ],
)
def test_string_type_errors(text, fragment):
    err = error(text)
    assert err.code == "E302"
    assert fragment in err.message


# ----------------------------------------------------------------------------
# to_source, free_names, calls

ROUND_TRIP = [
    "a - b - c",
    "a - (b - c)",
    "(a + b) * c",
    "a + b * c",
    "a / b / c",
    "a / (b / c)",
    "a // b % c",
    "a // (b % c)",
    "2 ** 3 ** 2",
    "(2 ** 3) ** 2",
    "-2 ** 2",
    "(-2) ** 2",
    "2 ** -1",
    "- -a",
    "+a",
    "-(a + b)",
    "not a == b",
    "(not a) == b",
    "1 + (not zero)",
    "a < b < c",
    "(a < b) < c",
    "a == b != c",
    "a and b or c",
    "a and (b or c)",
    "not (a and b)",
    "1 if a else 2 if b else 3",
    "(1 if a else 2) if b else 3",
    "1 if (a if b else c) else 2",
    "(1 if zero else 2) + 1",
    "make_divisible(int(24 * alpha), 8)",
    "max(a, b, c) - min(a, b)",
    "round(2.675, 2)",
    "1280 if alpha <= 1.0 else make_divisible(1280 * alpha, 8)",
    "mode == 'same' and flag",
    "'it' + \"'s\"",
    "1e-3 * a",
    "0.1 + 0.2",
    "true and not false",
    "width * alpha // 8 * 8",
]


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_to_source_round_trip(text):
    tree = parse(text)
    source = to_source(tree)
    again = parse(source)
    assert same_value(evaluate(again, ENV), evaluate(tree, ENV)), source
    assert to_source(again) == source  # a fixed point after one trip


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_to_source_is_python_with_the_same_value(text):
    # to_source promises Python-compatible text; in a test it is fine to check
    # that claim with Python itself
    source = to_source(parse(text))
    scope = {name: fn.impl for name, fn in FUNCTIONS.items()} | ENV | {"true": True, "false": False}
    assert same_value(eval(source, {"__builtins__": {}}, scope), ev(text)), source


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a - b - c", "a - b - c"),
        ("a - (b - c)", "a - (b - c)"),
        ("((a))", "a"),
        ("(a * b) + c", "a * b + c"),
        ("a * (b + c)", "a * (b + c)"),
        ("2 ** 3 ** 2", "2 ** 3 ** 2"),
        ("(2 ** 3) ** 2", "(2 ** 3) ** 2"),
        ("(-2) ** 2", "(-2) ** 2"),
        ("-2**2", "-2 ** 2"),
        ("max(a,b)", "max(a, b)"),
        ("1 if a else 2", "1 if a else 2"),
        ("1+(2 if a else 3)", "1 + (2 if a else 3)"),
        ("'x'", "'x'"),
        ("true", "True"),
    ],
)
def test_to_source_text(text, expected):
    assert to_source(parse(text)) == expected


def test_free_names_in_source_order_with_columns():
    names = free_names(parse("a * b + max(c, a) - widht"))
    assert [n.id for n in names] == ["a", "b", "c", "a", "widht"]
    assert [n.col for n in names] == [0, 4, 12, 15, 20]
    assert all(isinstance(n, Name) for n in names)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 + 2", []),
        ("max(1, 2)", []),  # function names are not variables
        ("'width'", []),  # nor is the content of a string
        ("true or false", []),
        ("not flag", ["flag"]),
        ("-a ** b", ["a", "b"]),
        ("a < b <= c", ["a", "b", "c"]),
        ("make_divisible(int(24 * alpha), divisor)", ["alpha", "divisor"]),
    ],
)
def test_free_names(text, expected):
    assert [n.id for n in free_names(parse(text))] == expected


def test_free_names_of_if_else_include_every_branch():
    names = free_names(parse("x if cond else y"))
    assert sorted((n.id, n.col) for n in names) == [("cond", 5), ("x", 0), ("y", 15)]


def test_calls_lists_nested_calls():
    found = calls(parse("max(a, make_divisible(int(b), 8)) + sqrt(c)"))
    assert [c.func for c in found] == ["max", "make_divisible", "int", "sqrt"]
    assert all(isinstance(c, Call) for c in found)
    assert found[0].col == 0 and found[-1].col == 36


def test_error_columns_point_into_the_text():
    text = "a + b * (c // zero)"
    err = error(text)
    assert text[err.col : err.col + 2] == "//"


# ----------------------------------------------------------------------------
# Property tests against Python's own arithmetic

_OPS = ["+", "-", "*", "//", "%"]


def _combine(children):
    return st.tuples(children, st.sampled_from(_OPS), children, st.booleans()).map(
        lambda t: f"({t[0]} {t[1]} {t[2]})" if t[3] else f"{t[0]} {t[1]} {t[2]}"
    )


_LEAF = st.integers(min_value=-20, max_value=20).map(str)
# at most 8 leaves of |x| <= 20: every intermediate value stays far below 10**15
INT_EXPRESSIONS = st.recursive(_LEAF, _combine, max_leaves=8)


@settings(max_examples=500, deadline=None)
@given(INT_EXPRESSIONS)
def test_integer_arithmetic_agrees_with_python(text):
    try:
        expected = eval(text, {"__builtins__": {}}, {})  # the test's own reference: Python
    except ZeroDivisionError:
        with pytest.raises(ExprError) as info:
            evaluate_text(text, {})
        assert info.value.message == "division by zero"
        return
    result = evaluate_text(text, {})
    assert type(result) is int
    assert result == expected, text


@settings(max_examples=300, deadline=None)
@given(INT_EXPRESSIONS)
def test_to_source_round_trip_property(text):
    tree = parse(text)
    source = to_source(tree)
    assert to_source(parse(source)) == source
    try:
        expected = evaluate(tree, {})
    except ExprError as exc:
        with pytest.raises(ExprError) as info:
            evaluate(parse(source), {})
        assert info.value.message == exc.message
        return
    assert evaluate(parse(source), {}) == expected


# ----------------------------------------------------------------------------
# Nesting limit, and the forms to_source writes for linters


def test_nesting_is_limited_before_python_recursion_is():
    assert evaluate_text("(" * MAX_NESTING + "1" + ")" * MAX_NESTING, {}) == 1
    for text in (
        "(" * 60 + "1" + ")" * 60,
        "-" * 60 + "1",
        "not " * 60 + "true",
        "2 ** " * 60 + "1",
        "min(" * 60 + "1" + ", 1)" * 60,
        "(-" * 30 + "1" + ")" * 30,
    ):
        with pytest.raises(ExprError) as info:
            parse(text)
        assert info.value.code == "E305" and "nested more than" in info.value.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- -a", "+a"),  # ruff B002: Python has no -- operator
        ("--a", "+a"),
        ("-+-a", "+a"),
        ("+ +a", "+a"),
        ("-(-(-a))", "-a"),
        ("not a == b", "a != b"),  # SIM201
        ("not a != b", "a == b"),  # SIM202
        ("flag == true", "flag == 1"),  # E712
        ("flag != false", "flag != 0"),
        ("a < true == b", "a < 1 == b"),
        ("1 == a", "a == 1"),  # SIM300
        ("1 < a", "a > 1"),
        ("'same' == mode", "mode == 'same'"),
        ("1 + 2 >= a", "a <= 1 + 2"),
        ("1 < a < 3", "1 < a < 3"),  # chained: as written
        ("int(3)", "3"),  # UP018
        ("int(-3)", "-3"),
        ("float(2.5)", "2.5"),
        ("float(3)", "float(3)"),  # an int made float: as written
        ("int(2.5)", "int(2.5)"),
    ],
)
def test_to_source_writes_forms_linters_accept(text, expected):
    source = to_source(parse(text))
    assert source == expected
    assert same_value(evaluate_text(source, ENV), ev(text))


def test_to_source_writes_negative_numbers_with_their_precedence():
    # Folded constants can be negative numbers: (-3) ** 2 is not -3 ** 2.
    from archspec.schema.expr import Binary, Num, Unary

    assert to_source(Binary("**", Num(-3, 0), Num(2, 0), 0)) == "(-3) ** 2"
    assert to_source(Unary("-", Num(-3, 0), 0)) == "+3"
    assert to_source(Binary("-", Num(1, 0), Num(-3, 0), 0)) == "1 - -3"
    assert to_source(Num(-0.0, 0)) == "-0.0"


def test_to_source_parenthesizes_for_its_place():
    assert to_source(parse("a if b else c"), outer=1) == "(a if b else c)"
    assert to_source(parse("a or b"), outer=1) == "a or b"
    assert to_source(parse("floor(a) + ceil(b)"), spell={"floor": "math.floor"}) == "math.floor(a) + ceil(b)"
    assert to_source(parse("'floor(' + mode"), spell={"floor": "math.floor"}) == "'floor(' + mode"
