"""A small, safe expression language for spec parameters.

Specs compute sizes from parameters (``planes * 4``,
``make_divisible(32 * alpha, 8)``, ``2 ** i``). Nothing in a spec is ever
handed to Python's ``eval``: this module tokenizes and parses a fixed subset
of Python's expression syntax into plain data classes and evaluates them with
a fixed set of functions.

Grammar (Python precedence)::

    expr    := or ["if" or "else" expr]
    or      := and ("or" and)*
    and     := not ("and" not)*
    not     := "not" not | compare
    compare := arith (("=="|"!="|"<"|"<="|">"|">=") arith)*
    arith   := term (("+"|"-") term)*
    term    := unary (("*"|"/"|"//"|"%") unary)*
    unary   := ("-"|"+") unary | power
    power   := atom ["**" unary]
    atom    := NUMBER | STRING | NAME | NAME "(" [expr ("," expr)*] ")" | "(" expr ")"
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

Value = int | float | bool | str

MAX_MAGNITUDE = 10**15
MAX_LENGTH = 500
MAX_NESTING = 50  # parentheses, calls, unary operators, powers and if-else chains, one inside another


class ExprError(Exception):
    """An error in an expression; ``col`` is a 0-based offset into its text."""

    def __init__(self, message: str, col: int = 0, code: str = "E302") -> None:
        super().__init__(message)
        self.message = message
        self.col = col
        self.code = code


# ----------------------------------------------------------------------------
# AST


@dataclass(frozen=True)
class Num:
    value: int | float
    col: int


@dataclass(frozen=True)
class Str:
    value: str
    col: int


@dataclass(frozen=True)
class Name:
    id: str
    col: int


@dataclass(frozen=True)
class Unary:
    op: str  # "-", "+", "not"
    operand: Expr
    col: int


@dataclass(frozen=True)
class Binary:
    op: str
    left: Expr
    right: Expr
    col: int


@dataclass(frozen=True)
class Compare:
    first: Expr
    rest: tuple[tuple[str, Expr], ...]
    col: int


@dataclass(frozen=True)
class IfElse:
    cond: Expr
    then: Expr
    other: Expr
    col: int


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple[Expr, ...]
    col: int


Expr = Num | Str | Name | Unary | Binary | Compare | IfElse | Call


# ----------------------------------------------------------------------------
# Functions


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to a multiple of ``divisor``, never going down by more
    than 10% (the rule of MobileNet v2 in Keras and torchvision)."""
    if divisor <= 0:
        raise ExprError("make_divisible: the divisor must be positive")
    if min_value is None:
        min_value = divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


def _int(x: Value) -> int:
    if isinstance(x, str):
        raise ExprError("int() takes a number")
    return int(x)


def _sqrt(x: float) -> float:
    if x < 0:
        raise ExprError("sqrt() of a negative number")
    return math.sqrt(x)


@dataclass(frozen=True)
class Function:
    impl: Callable[..., Value]
    min_args: int
    max_args: int
    doc: str


FUNCTIONS: dict[str, Function] = {
    "min": Function(min, 2, 16, "smallest argument"),
    "max": Function(max, 2, 16, "largest argument"),
    "abs": Function(abs, 1, 1, "absolute value"),
    "int": Function(_int, 1, 1, "truncate toward zero"),
    "float": Function(float, 1, 1, "convert to float"),
    "round": Function(lambda x, n=None: round(x, n) if n is not None else round(x), 1, 2, "round half to even"),
    "floor": Function(math.floor, 1, 1, "round down"),
    "ceil": Function(math.ceil, 1, 1, "round up"),
    "sqrt": Function(_sqrt, 1, 1, "square root"),
    "make_divisible": Function(make_divisible, 1, 3, "MobileNet's rounding to a multiple"),
}

KEYWORDS = {"and", "or", "not", "if", "else", "true", "false", "True", "False"}


# ----------------------------------------------------------------------------
# Tokenizer and parser

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<num>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<str>'[^'\\\n]*'|"[^"\\\n]*")
  | (?P<op>\*\*|//|==|!=|<=|>=|[-+*/%<>(),])
    """,
    re.VERBOSE,
)


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    tokens: list[tuple[str, str, int]] = []
    i = 0
    while i < len(text):
        m = _TOKEN.match(text, i)
        if not m:
            ch = text[i]
            hint = " (only numbers, names, + - * / // % **, comparisons, and/or/not, if-else and function calls)"
            raise ExprError(f"unexpected character {ch!r}{hint}", i, "E301")
        kind = m.lastgroup or ""
        if kind != "ws":
            tokens.append((kind, m.group(), i))
        i = m.end()
    tokens.append(("end", "", len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0

    @contextmanager
    def nested(self, col: int) -> Iterator[None]:
        """One level deeper (the parser recurses): bounded, so that no
        expression can exhaust Python's stack here or wherever it is walked."""
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise ExprError(f"expression nested more than {MAX_NESTING} levels deep; write it flatter", col, "E305")
        try:
            yield
        finally:
            self.depth -= 1

    def peek(self) -> tuple[str, str, int]:
        return self.tokens[self.i]

    def take(self) -> tuple[str, str, int]:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def at(self, value: str) -> bool:
        kind, text, _ = self.peek()
        return text == value and kind in ("op", "name")

    def expect(self, value: str) -> None:
        kind, text, col = self.peek()
        if text != value:
            found = "the end of the expression" if kind == "end" else repr(text)
            raise ExprError(f"expected {value!r}, found {found}", col, "E301")
        self.take()

    def parse(self) -> Expr:
        node = self.expr()
        kind, text, col = self.peek()
        if kind != "end":
            raise ExprError(f"unexpected {text!r} after a complete expression", col, "E301")
        return node

    def expr(self) -> Expr:
        node = self.or_()
        if self.at("if"):
            col = self.take()[2]
            cond = self.or_()
            self.expect("else")
            with self.nested(col):
                node = IfElse(cond, node, self.expr(), col)
        return node

    def or_(self) -> Expr:
        node = self.and_()
        while self.at("or"):
            col = self.take()[2]
            node = Binary("or", node, self.and_(), col)
        return node

    def and_(self) -> Expr:
        node = self.not_()
        while self.at("and"):
            col = self.take()[2]
            node = Binary("and", node, self.not_(), col)
        return node

    def not_(self) -> Expr:
        if self.at("not"):
            col = self.take()[2]
            with self.nested(col):
                return Unary("not", self.not_(), col)
        return self.compare()

    def compare(self) -> Expr:
        first = self.arith()
        rest = []
        while self.peek()[1] in ("==", "!=", "<", "<=", ">", ">="):
            op = self.take()[1]
            rest.append((op, self.arith()))
        return Compare(first, tuple(rest), _col(first)) if rest else first

    def arith(self) -> Expr:
        node = self.term()
        while self.peek()[1] in ("+", "-"):
            op, col = self.take()[1:]
            node = Binary(op, node, self.term(), col)
        return node

    def term(self) -> Expr:
        node = self.unary()
        while self.peek()[1] in ("*", "/", "//", "%"):
            op, col = self.take()[1:]
            node = Binary(op, node, self.unary(), col)
        return node

    def unary(self) -> Expr:
        if self.peek()[1] in ("-", "+") and self.peek()[0] == "op":
            op, col = self.take()[1:]
            with self.nested(col):
                return Unary(op, self.unary(), col)
        return self.power()

    def power(self) -> Expr:
        node = self.atom()
        if self.peek()[1] == "**":
            col = self.take()[2]
            with self.nested(col):
                node = Binary("**", node, self.unary(), col)
        return node

    def atom(self) -> Expr:
        kind, text, col = self.take()
        if kind == "num":
            value = float(text) if any(c in text for c in ".eE") else int(text)
            if isinstance(value, float) and not math.isfinite(value):
                raise ExprError(f"the number {text} is not a finite number (beyond 1.8e308)", col)
            return Num(value, col)
        if kind == "str":
            return Str(text[1:-1], col)
        if kind == "name":
            if text in ("true", "True"):
                return Num(True, col)
            if text in ("false", "False"):
                return Num(False, col)
            if text in KEYWORDS:
                raise ExprError(f"unexpected keyword {text!r}", col, "E301")
            if self.peek()[1] == "(":
                self.take()
                args: list[Expr] = []
                with self.nested(col):
                    if self.peek()[1] != ")":
                        args.append(self.expr())
                        while self.peek()[1] == ",":
                            self.take()
                            args.append(self.expr())
                self.expect(")")
                return Call(text, tuple(args), col)
            return Name(text, col)
        if text == "(":
            with self.nested(col):
                node = self.expr()
            self.expect(")")
            return node
        found = "the end of the expression" if kind == "end" else repr(text)
        raise ExprError(f"expected a value, found {found}", col, "E301")


def _col(node: Expr) -> int:
    if isinstance(node, (Binary,)):
        return _col(node.left)
    if isinstance(node, Compare):
        return _col(node.first)
    return node.col


def parse(text: str) -> Expr:
    """Parse an expression; raises :class:`ExprError` with a column."""
    if len(text) > MAX_LENGTH:
        raise ExprError(f"expression longer than {MAX_LENGTH} characters", 0, "E305")
    if not text.strip():
        raise ExprError("empty expression", 0, "E301")
    return _Parser(text).parse()


def walk(node: Expr) -> Iterator[Expr]:
    """Every node of the expression, parents first, in source order."""
    yield node
    if isinstance(node, Unary):
        children: tuple[Expr, ...] = (node.operand,)
    elif isinstance(node, Binary):
        children = (node.left, node.right)
    elif isinstance(node, Compare):
        children = (node.first, *(r for _, r in node.rest))
    elif isinstance(node, IfElse):
        children = (node.cond, node.then, node.other)
    elif isinstance(node, Call):
        children = node.args
    else:
        children = ()
    for child in children:
        yield from walk(child)


def free_names(node: Expr) -> list[Name]:
    """Every variable the expression reads."""
    return [n for n in walk(node) if isinstance(n, Name)]


def calls(node: Expr) -> list[Call]:
    """Every function call in the expression."""
    return [n for n in walk(node) if isinstance(n, Call)]


# ----------------------------------------------------------------------------
# Evaluation


def _check(value: Value, col: int) -> Value:
    if isinstance(value, float) and not math.isfinite(value):
        raise ExprError("the result is not a finite number", col)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) > MAX_MAGNITUDE:
        shown = f"{value:.3g}" if abs(value) < 1e300 else f"with {len(str(int(abs(value))))} digits"
        raise ExprError(f"the result {shown} is larger than {MAX_MAGNITUDE:.0e}", col, "E305")
    return value


def _number(value: Value, col: int, what: str) -> int | float:
    if isinstance(value, str):
        raise ExprError(f"{what} needs a number, got the string {value!r}", col)
    return value


def _shown(value: Value) -> str:
    """A value in a message: 'the number 3', 'true'."""
    if isinstance(value, bool):
        return "the boolean " + ("true" if value else "false")
    return f"the number {value!r}"


_COMPARE = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def evaluate(node: Expr, env: Mapping[str, Value]) -> Value:
    """Evaluate a parsed expression with variables from ``env``."""
    if isinstance(node, Num):
        return _check(node.value, node.col)
    if isinstance(node, Str):
        return node.value
    if isinstance(node, Name):
        if node.id not in env:
            from archspec.diagnostics import did_you_mean

            raise ExprError(f"unknown name '{node.id}'{did_you_mean(node.id, env)}", node.col, "E203")
        return env[node.id]
    if isinstance(node, Unary):
        v = evaluate(node.operand, env)
        if node.op == "not":
            return not v
        v = _number(v, node.col, f"unary {node.op}")
        return _check(-v if node.op == "-" else +v, node.col)
    if isinstance(node, Binary):
        if node.op == "and":
            left = evaluate(node.left, env)
            return evaluate(node.right, env) if left else left
        if node.op == "or":
            left = evaluate(node.left, env)
            return left if left else evaluate(node.right, env)
        a = evaluate(node.left, env)
        b = evaluate(node.right, env)
        if node.op == "+" and isinstance(a, str) and isinstance(b, str):
            return a + b
        a = _number(a, node.col, f"'{node.op}'")
        b = _number(b, node.col, f"'{node.op}'")
        try:
            if node.op == "+":
                r = a + b
            elif node.op == "-":
                r = a - b
            elif node.op == "*":
                r = a * b
            elif node.op == "/":
                r = a / b
            elif node.op == "//":
                r = a // b
            elif node.op == "%":
                r = a % b
            else:  # "**"
                if abs(b) > 64 or (abs(a) > 1 and abs(b) * math.log2(abs(a)) > 60):
                    raise ExprError("the power is too large; results beyond 10^15 are refused", node.col, "E305")
                r = a**b
                if isinstance(r, complex):
                    raise ExprError("power of a negative number gives a complex number", node.col)
        except ZeroDivisionError:
            raise ExprError("division by zero", node.col) from None
        except OverflowError:
            raise ExprError(f"the result is larger than {MAX_MAGNITUDE:.0e}", node.col, "E305") from None
        return _check(r, node.col)
    if isinstance(node, Compare):
        left = evaluate(node.first, env)
        for op, rnode in node.rest:
            right = evaluate(rnode, env)
            if isinstance(left, str) != isinstance(right, str):  # "relu" == 3 is false whatever the value
                text, other = (left, right) if isinstance(left, str) else (right, left)
                raise ExprError(
                    f"cannot compare the string {text!r} with {_shown(other)} ({op}); "
                    "compare a string parameter with a quoted string ('relu'), a number with a number",
                    node.col,
                )
            try:
                ok = _COMPARE[op](left, right)
            except TypeError:
                raise ExprError(f"cannot compare {left!r} and {right!r} with {op}", node.col) from None
            if not ok:
                return False
            left = right
        return True
    if isinstance(node, IfElse):
        return evaluate(node.then if evaluate(node.cond, env) else node.other, env)
    if isinstance(node, Call):
        fn = FUNCTIONS.get(node.func)
        if fn is None:
            from archspec.diagnostics import did_you_mean

            raise ExprError(
                f"unknown function '{node.func}'{did_you_mean(node.func, FUNCTIONS)}; "
                f"available: {', '.join(sorted(FUNCTIONS))}",
                node.col,
            )
        n = len(node.args)
        if not fn.min_args <= n <= fn.max_args:
            want = str(fn.min_args) if fn.min_args == fn.max_args else f"{fn.min_args} to {fn.max_args}"
            raise ExprError(f"{node.func}() takes {want} arguments, got {n}", node.col)
        args = [evaluate(a, env) for a in node.args]
        try:
            return _check(fn.impl(*args), node.col)
        except ExprError as exc:
            raise ExprError(exc.message, node.col, exc.code) from None
        except (TypeError, ValueError, OverflowError) as exc:
            text = [a for a in args if isinstance(a, str)]
            if isinstance(exc, TypeError) and text:  # not Python's "'>' not supported between 'str' and 'int'"
                raise ExprError(f"{node.func}() takes numbers, got the string {text[0]!r}", node.col) from None
            raise ExprError(f"{node.func}(): {exc}", node.col) from None
    raise AssertionError(f"unknown expression node {node!r}")  # pragma: no cover


def evaluate_text(text: str, env: Mapping[str, Value]) -> Value:
    return evaluate(parse(text), env)


_REVERSED = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


def _negative(n: Expr) -> bool:
    """A number literal written with a minus sign (folded constants can be)."""
    if not isinstance(n, Num):
        return False
    return n.value < 0 or (isinstance(n.value, float) and math.copysign(1.0, n.value) < 0)


def _constant(n: Expr) -> int:
    """How constant an operand looks to a linter: 2 a literal, 1 an
    UPPER_CASE name, 0 anything else (ruff's rule for Yoda conditions)."""
    if isinstance(n, (Num, Str)):
        return 2
    if isinstance(n, Name):
        return int(n.id.isupper())
    if isinstance(n, Unary) and n.op != "not":
        return _constant(n.operand)
    if isinstance(n, Binary):
        return min(_constant(n.left), _constant(n.right))
    return 0


def to_source(node: Expr, outer: int = 0, spell: Mapping[str, str] | None = None) -> str:
    """Write the expression back as Python source text with the same value.

    ``outer`` is the precedence of the place the text goes (0: wherever an
    expression can go; 1: the condition or first branch of a conditional
    expression, where a conditional expression needs parentheses); ``spell``
    says how to write function names (``{"floor": "math.floor"}``).

    A few forms are written as exact equivalents that linters accept (ruff's
    B002, E712, SIM201, SIM202, SIM300, UP018): chains of signs collapse
    (``- -a`` is ``+a``), a negated equality flips (``not a == b`` is
    ``a != b``), true and false compared with ``==`` or ``!=`` are written 1
    and 0 (equal to them in Python), the constant side of a single comparison
    goes to the right (``1 < a`` is ``a > 1``), and ``int(3)`` or
    ``float(2.0)`` of a literal of that type is the literal.
    """
    prec = {"or": 1, "and": 2, "not": 3, "cmp": 4, "+": 5, "-": 5, "*": 6, "/": 6, "//": 6, "%": 6, "neg": 7, "**": 8}
    spell = spell or {}

    def operand(n: Expr, p: int, equality: bool) -> str:
        if equality and isinstance(n, Num) and isinstance(n.value, bool):
            return "1" if n.value else "0"
        return go(n, p)

    def go(n: Expr, outer: int) -> str:
        if isinstance(n, Unary) and n.op != "not" or _negative(n):
            minus, inner = False, n
            while isinstance(inner, Unary) and inner.op != "not" or _negative(inner):
                if isinstance(inner, Num):
                    minus, inner = not minus, Num(-inner.value, inner.col)
                else:
                    minus, inner = minus != (inner.op == "-"), inner.operand
            p = prec["neg"]
            s = f"{'-' if minus else '+'}{go(inner, p)}"
        elif isinstance(n, (Num, Str)):
            s, p = repr(n.value), 9
        elif isinstance(n, Name):
            s, p = n.id, 9
        elif isinstance(n, Call):
            kind = {"int": int, "float": float}.get(n.func)
            arg = n.args[0] if len(n.args) == 1 else None
            while isinstance(arg, Unary) and arg.op != "not":
                arg = arg.operand
            if kind is not None and isinstance(arg, Num) and type(arg.value) is kind:
                return go(n.args[0], outer)
            s, p = f"{spell.get(n.func, n.func)}({', '.join(go(a, 0) for a in n.args)})", 9
        elif isinstance(n, Unary):  # not
            inner = n.operand
            if isinstance(inner, Compare) and len(inner.rest) == 1 and inner.rest[0][0] in ("==", "!="):
                flipped = "!=" if inner.rest[0][0] == "==" else "=="
                return go(Compare(inner.first, ((flipped, inner.rest[0][1]),), inner.col), outer)
            p = prec["not"]
            s = f"not {go(inner, p)}"
        elif isinstance(n, Binary):
            p = prec[n.op]
            if n.op == "**":
                s = f"{go(n.left, p + 1)} ** {go(n.right, p)}"
            else:
                s = f"{go(n.left, p)} {n.op} {go(n.right, p + 1)}"
        elif isinstance(n, Compare):
            p = prec["cmp"]
            first, rest = n.first, n.rest
            if len(rest) == 1 and _constant(first) > _constant(rest[0][1]):
                first, rest = rest[0][1], ((_REVERSED[rest[0][0]], first),)
            ops = [op for op, _ in rest]
            equality = [op in ("==", "!=") for op in ops]
            s = operand(first, p + 1, equality[0])
            for k, (op, r) in enumerate(rest):
                s += f" {op} {operand(r, p + 1, equality[k] or (k + 1 < len(ops) and equality[k + 1]))}"
        elif isinstance(n, IfElse):
            p = 0
            s = f"{go(n.then, 1)} if {go(n.cond, 1)} else {go(n.other, 0)}"
        else:  # pragma: no cover
            raise AssertionError(n)
        return f"({s})" if p < outer else s

    return go(node, outer)


def is_value(x: Any) -> bool:
    return isinstance(x, (int, float, bool, str))
