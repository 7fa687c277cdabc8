"""Property-based fuzzing of the whole compiler with mutated zoo specs.

Every case starts from a real spec of ``specs/`` and mutates it: values
swapped for 0, -1, huge numbers, floats, strings, booleans, lists; keys renamed
or deleted; nodes duplicated, dropped or moved; ``in`` references, ops, block
names, repeat counts, padding words and expressions changed (operators
inserted, unknown names, division by zero); or the raw text itself edited
(characters deleted or inserted, indentation broken). Whatever the mutation,
the compiler must end in one of two ways:

* diagnostics (:class:`~archspec.diagnostics.SpecError`), every one of them a
  single ``file:line:col: error[CODE]: message`` line, or
* generated code that parses (``ast.parse``) for every target of
  :data:`archspec.codegen.EMITTERS`.

Never another exception, never a hang (each example runs under an alarm). A
:class:`~archspec.codegen.model.CodegenError` after validate's target checks
passed is a bug: what the code model or an emitter cannot write (a real limit,
such as padding that differs between a block's instances) is one of those
checks' located diagnostics.

The runs are bounded and reproducible: the ``fuzz-ci`` settings profile is
derandomized (the same examples on every run) with a fixed number of examples.
For a longer, random hunt (``ARCHSPEC_FUZZ_RUFF=1`` also formats and checks
every generated file with ruff, as ``archspec build`` does, which is slower)::

    ARCHSPEC_FUZZ=deep ARCHSPEC_FUZZ_EXAMPLES=5000 .venv/bin/python -m pytest tests/test_fuzz.py
"""

from __future__ import annotations

import ast
import contextlib
import copy
import os
import re
import signal
import threading
import time
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from archspec import ops
from archspec.build import render_all
from archspec.codegen import EMITTERS
from archspec.codegen.model import CodegenError, build
from archspec.diagnostics import CODES, SpecError
from archspec.passes.targets import check_targets
from archspec.pipeline import compile_spec
from tests.conftest import SPECS

FILE = "fuzz/spec.yaml"
SECONDS_PER_EXAMPLE = 10  # a hang, not a slow example: the deadline below is the slow one

settings.register_profile(
    "fuzz-ci",
    max_examples=150,
    derandomize=True,
    deadline=5000,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
settings.register_profile(
    "fuzz-deep",
    settings.get_profile("fuzz-ci"),
    max_examples=int(os.environ.get("ARCHSPEC_FUZZ_EXAMPLES", "2000")),
    derandomize=False,
)
FUZZ = settings.get_profile("fuzz-deep" if os.environ.get("ARCHSPEC_FUZZ") == "deep" else "fuzz-ci")
RUFF = os.environ.get("ARCHSPEC_FUZZ_RUFF") == "1"

# Code-model refusals that are legitimate limits, matched against the message.
# Each says what cannot be written and, mostly, what to write instead. Anything
# else (an expression that disagrees with the IR, a missing rule) is a finding.
DIAGNOSTIC = re.compile(rf"^{re.escape(FILE)}(?::[1-9]\d*:[1-9]\d*)?: error\[(E\d{{3}})\]: \S[^\n\r]*$")

SPEC_TEXTS: dict[str, str] = {p.stem: p.read_text() for p in sorted(SPECS.glob("*.yaml"))}
SPEC_DOCS: dict[str, Any] = {name: yaml.safe_load(text) for name, text in SPEC_TEXTS.items()}


# ----------------------------------------------------------------------------
# The property


@contextlib.contextmanager
def alarm(seconds: int):
    """Fail an example that runs for ``seconds`` (a hang) instead of waiting forever."""
    if not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def hang(signum, frame):
        raise TimeoutError(f"an example ran for more than {seconds} s: a hang")

    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def outcome(text: str) -> str:
    """Compile ``text`` to every target; returns "refused" or "generated", and
    fails on anything else."""
    with alarm(SECONDS_PER_EXAMPLE):
        try:
            compiled = compile_spec(FILE, text=text)
            problems = check_targets(compiled, EMITTERS)
            if problems:
                raise SpecError(problems)
        except SpecError as err:
            assert err.diagnostics, "a SpecError without diagnostics"
            for d in err.diagnostics:
                line = str(d)
                m = DIAGNOSTIC.match(line)
                assert m is not None, f"not a one-line file:line:col diagnostic: {line!r}"
                assert m.group(1) in CODES
            return "refused"
        try:
            model = build(compiled)
        except CodegenError as exc:
            pytest.fail(f"validate passed, then the code model refused the spec: {exc}")
        for target, emit in EMITTERS.items():
            try:
                source = emit(model)
            except CodegenError as exc:
                pytest.fail(f"validate passed, then {target} refused the spec: {exc}")
            try:
                ast.parse(source)
            except SyntaxError as exc:  # pragma: no cover - the failure itself
                pytest.fail(f"{target}: generated code does not parse: {exc}\n{source}")
        if RUFF:
            render_all([compiled], list(EMITTERS))  # FormatError: ruff refused the code
        return "generated"


# ----------------------------------------------------------------------------
# Strategies: values


EXPRESSIONS = [
    "1 / 0",
    "1 // 0",
    "3 % 0",
    "0 ** -1",
    "2 ** 99",
    "10 ** 20",
    "1e308 * 10",
    "-1",
    "unknown * 2",
    "i",
    "in_channels",
    "in_channels // 0",
    "__import__('os').system('true')",
    "open('x')",
    "min()",
    "max(1)",
    "make_divisible(0, 0)",
    "make_divisible(8, -8)",
    "sqrt(-1)",
    "(-8) ** 0.5",
    "int('a')",
    "int(1e300)",
    "round(1.5, 400)",
    "'same' if true else 'valid'",
    "'a' + 'b'",
    "'a' * 3",
    "1 if x else",
    "((((1",
    "1 +",
    "not",
    "1 < 2 < 3",
    "true and 0",
    "3 if 1 / 0 else 4",
    "3 if true else 1 // 0",
    "64 if true else 1 / 0",
    "float('nan')",
    "abs(-2 ** 70)",
    "ceil(1e16)",
    "floor(-0.5)",
    "(" * 60 + "1" + ")" * 60,
    "-" * 80 + "1",
    "not " * 60 + "true",
    "1" + " + 1" * 150,
    "--8",
    "not not true",
    "true == true",
    "not 1 == 2",
    "true if 1 > 0 else false",
]

OPERATORS = ["+", "-", "*", "/", "//", "%", "**", "(", ")", ",", " and ", " or ", " not ", " if ", " else ", "==", "<"]

ATOMS = st.sampled_from(
    [
        0,
        -1,
        1,
        2,
        3,
        7,
        10**6,
        10**6 + 1,
        2**31,
        10**15,
        10**16,
        10**400,
        0.5,
        1.5,
        -0.0,
        1e-300,
        1e308,
        float("inf"),
        float("nan"),
        "",
        " ",
        "abc",
        "same",
        "valid",
        "causal",
        "SAME",
        "input",
        "\n",
        "\u2028",
        '"""',
        "{{ 7*7 }}",
        True,
        False,
        None,
    ]
)

VALUES = st.one_of(
    ATOMS,
    st.sampled_from(EXPRESSIONS),
    st.integers(min_value=-10, max_value=2000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.one_of(ATOMS, st.integers(-3, 300)), max_size=5),
    st.dictionaries(st.sampled_from(["a", "op", "in", "out", "kernel", "type", "default"]), ATOMS, max_size=3),
)

IDENTS = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,10}", fullmatch=True)

KEY_WORDS = sorted(
    {
        "name",
        "source",
        "description",
        "input",
        "params",
        "blocks",
        "layers",
        "outputs",
        "nodes",
        "output",
        "doc",
        "op",
        "block",
        "in",
        "when",
        "repeat",
        "first",
        "type",
        "default",
        "self",
        "forward",
        "i",
        "in_channels",
        "x",
        "F",
        "nn",
        "tf",
        "math",
        "keras",
        "layers_",
        "make_stage",
        "make_divisible",
        "training",
        "class",
        "None",
        "__init__",
        *ops.OPS,
        *(a for op in ops.OPS.values() for a in op.attrs),
    }
)

KEYS = st.one_of(
    st.sampled_from(KEY_WORDS), IDENTS, st.text(max_size=8), st.integers(-2, 2), st.sampled_from([True, None])
)


# ----------------------------------------------------------------------------
# Strategies: mutations of a parsed spec


def locations(doc: Any) -> list[tuple[Any, Any]]:
    """Every (container, key-or-index) of the document, depth first."""
    out: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k in list(node):
                out.append((node, k))
                walk(node[k])
        elif isinstance(node, list):
            for i, item in enumerate(node):
                out.append((node, i))
                walk(item)

    walk(doc)
    return out


def node_lists(doc: Any) -> list[list]:
    """The node lists of the document: layers and each block's nodes."""
    if not isinstance(doc, dict):
        return []
    lists = [doc.get("layers")]
    blocks = doc.get("blocks")
    if isinstance(blocks, dict):
        lists += [b.get("nodes") for b in blocks.values() if isinstance(b, dict)]
    return [nodes for nodes in lists if isinstance(nodes, list)]


def node_bodies(doc: Any) -> list[dict]:
    """The bodies of the nodes (``{op: ..., ...}``) of layers and blocks."""
    out: list[dict] = []
    for nodes in node_lists(doc):
        for item in nodes:
            if isinstance(item, dict) and len(item) == 1:
                body = next(iter(item.values()))
                if isinstance(body, dict):
                    out.append(body)
    return out


def node_names(doc: Any) -> list[str]:
    return [str(next(iter(item))) for nodes in node_lists(doc) for item in nodes if isinstance(item, dict) and item]


def block_names(doc: Any) -> list[str]:
    blocks = doc.get("blocks") if isinstance(doc, dict) else None
    return [str(b) for b in blocks] if isinstance(blocks, dict) else []


def param_names(doc: Any) -> list[str]:
    """Parameter names of the spec and its blocks: what expressions can read."""
    names = ["i", "in_channels"]
    if isinstance(doc, dict):
        if isinstance(doc.get("params"), dict):
            names += [str(k) for k in doc["params"]]
        if isinstance(doc.get("blocks"), dict):
            for b in doc["blocks"].values():
                if isinstance(b, dict) and isinstance(b.get("params"), dict):
                    names += [str(k) for k in b["params"]]
    return names


def mutate_expression(draw: st.DrawFn, value: Any, names: list[str]) -> Any:
    text = value if isinstance(value, str) else str(value)
    name = st.sampled_from(names + ["x", "self", "__class__"])
    other = st.one_of(st.sampled_from(EXPRESSIONS), name, st.integers(-2, 64))
    how = draw(st.sampled_from(["insert", "append", "replace", "wrap", "name", "branch"]))
    if how == "insert":
        k = draw(st.integers(0, len(text)))
        return text[:k] + draw(st.sampled_from(OPERATORS)) + text[k:]
    if how == "append":
        return text + draw(st.sampled_from([" / 0", " // 0", " % 0", " ** 99", " * 1e300", " - 10**7", " + x"]))
    if how == "replace":
        return draw(st.sampled_from(EXPRESSIONS))
    if how == "wrap":
        cond = draw(st.sampled_from(["true", "false", "i == 0", "in_channels > 8", "x", "{} > 1", "{} == 0"]))
        return f"({text}) if {cond.format(draw(name))} else {draw(other)}"
    if how == "branch":
        return f"{draw(name)} {draw(st.sampled_from(['+', '*', '//', '%', '-']))} ({draw(other)})"
    k = draw(st.integers(0, len(text)))
    return text[:k] + draw(name) + text[k:]


def mutate_node(draw: st.DrawFn, doc: Any) -> None:
    names = param_names(doc)
    bodies = node_bodies(doc)
    if not bodies:
        return
    body = bodies[draw(st.integers(0, len(bodies) - 1))]
    names = node_names(doc) or ["x"]
    blocks = block_names(doc) or ["nope"]
    key = draw(st.sampled_from(["in", "op", "block", "repeat", "padding", "when", "first", "out", "kernel"]))
    if key == "in":
        ref = st.one_of(st.sampled_from([*names, "input", "nowhere", ""]), IDENTS)
        body["in"] = draw(st.one_of(ref, st.lists(ref, max_size=4)))
    elif key == "op":
        body.pop("block", None)
        body["op"] = draw(st.one_of(st.sampled_from(sorted(ops.OPS)), st.sampled_from(blocks), IDENTS))
    elif key == "block":
        body.pop("op", None)
        body["block"] = draw(st.one_of(st.sampled_from(blocks), st.sampled_from(sorted(ops.OPS)), IDENTS))
    elif key == "repeat":
        body["repeat"] = draw(
            st.one_of(st.sampled_from([0, -1, 1, 2, 300, 1000, 1001, 2.5, "i", "2 ** 12", True, "3", [2]]), VALUES)
        )
    elif key == "padding":
        body["padding"] = draw(
            st.one_of(
                st.sampled_from(["same", "valid", "causal", "full", "SAME", -1, 10**6]),
                st.lists(st.integers(-1, 9), max_size=5),
                VALUES,
            )
        )
    elif key == "when":
        when = st.sampled_from(["false", "true", "i == 1", "in_channels == 3", "{} > 1", "{} != 0", "not {}"])
        body["when"] = draw(st.one_of(when.map(lambda w: w.format(draw(st.sampled_from(names)))), VALUES))
    elif key == "first":
        body["first"] = draw(
            st.one_of(
                st.dictionaries(
                    st.one_of(st.sampled_from(["stride", "project", "out", "t"]), IDENTS), VALUES, max_size=3
                ),
                VALUES,
            )
        )
    else:
        body[key] = mutate_expression(draw, body.get(key, 1), names) if draw(st.booleans()) else draw(VALUES)


def mutate_location(draw: st.DrawFn, doc: Any) -> None:
    locs = locations(doc)
    if not locs:
        return
    container, key = locs[draw(st.integers(0, len(locs) - 1))]
    how = draw(st.sampled_from(["value", "delete", "rename", "duplicate", "move", "expression"]))
    if how == "value":
        container[key] = draw(VALUES)
    elif how == "delete":
        del container[key]
    elif how == "rename" and isinstance(container, dict):
        new = draw(KEYS)
        value = container.pop(key)
        container[new] = value
    elif how == "duplicate" and isinstance(container, list):
        container.insert(draw(st.integers(0, len(container))), copy.deepcopy(container[key]))
    elif how == "move" and isinstance(container, list):
        item = container.pop(key)
        container.insert(draw(st.integers(0, len(container))), item)
    elif how == "expression" and isinstance(container[key], (str, int, float)) and not isinstance(container[key], bool):
        container[key] = mutate_expression(draw, container[key], param_names(doc))


def dump(doc: Any, flow: bool) -> str:
    return yaml.safe_dump(
        doc, sort_keys=False, allow_unicode=True, default_flow_style=None if flow else False, width=100
    )


@st.composite
def mutated_specs(draw: st.DrawFn) -> str:
    """A zoo spec, parsed, mutated one to four times, written back as YAML."""
    doc = copy.deepcopy(SPEC_DOCS[draw(st.sampled_from(sorted(SPEC_DOCS)))])
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            mutate_node(draw, doc)
        else:
            mutate_location(draw, doc)
    return dump(doc, draw(st.booleans()))


# ----------------------------------------------------------------------------
# Strategies: mutations of the text


FRAGMENTS = [
    ":",
    ": ",
    "-",
    "- ",
    " ",
    "  ",
    "\t",
    "\n",
    "[",
    "]",
    "{",
    "}",
    ",",
    "'",
    '"',
    "#",
    "&a ",
    "*a",
    "!!python/object:os.system ",
    "!!binary ",
    "? ",
    "|",
    ">",
    "---\n",
    "...\n",
    "\\",
    "%",
    "@",
    "`",
    "\u2028",
    "\ufeff",
    "\x00",
    "\x1b[31m",
    "0",
    "99999999999",
    "-1",
    "x",
    "in: ",
    "op: ",
    "repeat: 1000",
    "when: ",
]


@st.composite
def edited_texts(draw: st.DrawFn) -> str:
    """A zoo spec's text with one to three raw edits."""
    text = SPEC_TEXTS[draw(st.sampled_from(sorted(SPEC_TEXTS)))]
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["delete", "insert", "indent", "dedent", "duplicate_line", "drop_line"]))
        lines = text.split("\n")
        if how == "delete":
            i = draw(st.integers(0, len(text)))
            text = text[:i] + text[i + draw(st.integers(1, 8)) :]
        elif how == "insert":
            i = draw(st.integers(0, len(text)))
            text = text[:i] + draw(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=4))) + text[i:]
        else:
            k = draw(st.integers(0, len(lines) - 1))
            if how == "indent":
                lines[k] = " " * draw(st.integers(1, 3)) + lines[k]
            elif how == "dedent":
                lines[k] = lines[k][draw(st.integers(1, 3)) :] if lines[k].startswith(" ") else lines[k]
            elif how == "duplicate_line":
                lines.insert(k, lines[k])
            else:
                del lines[k]
            text = "\n".join(lines)
    return text


# ----------------------------------------------------------------------------
# Tests


def test_the_zoo_itself_generates():
    """The unmutated specs are the baseline: each one generates for every target."""
    for name, text in SPEC_TEXTS.items():
        assert outcome(text) == "generated", name


@FUZZ
@given(mutated_specs())
def test_mutated_specs_end_in_code_or_diagnostics(text: str):
    event(outcome(text))


@FUZZ
@given(edited_texts())
def test_edited_texts_end_in_code_or_diagnostics(text: str):
    event(outcome(text))


# ----------------------------------------------------------------------------
# Regressions: what the fuzzer, and the hunt around its findings, found


def _spec(layers: str, blocks: str = "", params: str = "  p: 1\n") -> str:
    return (
        f"name: net\nsource: test\ninput: [3, 16, 16]\nparams:\n{params}blocks:\n{blocks or '  {}'}\nlayers:\n{layers}"
    )


def test_a_constant_that_fails_in_a_branch_no_instance_takes_is_left_unfolded():
    # The code model folded `1 // 0` and crashed with an ExprError, not a SpecError or a CodegenError.
    blocks = (
        "  unit:\n    params: {width: int}\n    nodes:\n"
        '      - conv: {op: conv2d, out: "width if p > 0 else 1 // 0", kernel: 1}'
    )
    assert outcome(_spec("  - stage: {block: unit, repeat: 3, width: 8}\n", blocks)) == "generated"


def test_a_long_stage_whose_channels_add_up_builds_quickly():
    # DenseNet's stages add growth_rate per unit: folding the channel count was cubic
    # in the units (minutes for 200), then too deep for Python's stack (1000).
    text = SPEC_TEXTS["densenet121"].replace("repeat: 24", "repeat: 1000")
    start = time.perf_counter()
    assert outcome(text) == "generated"
    assert time.perf_counter() - start < 5


def test_a_conditional_expression_as_a_condition_parses():
    # `X if COND else None` took an unparenthesized conditional expression as COND.
    blocks = (
        "  unit:\n    params: {k: int}\n    nodes:\n"
        '      - conv: {op: conv2d, out: 4, kernel: 1, when: "(k > 1) if p else (k < 1)"}'
    )
    layers = "  - a: {block: unit, k: 0}\n  - b: {block: unit, k: 2}\n"
    assert outcome(_spec(layers, blocks)) == "generated"


def test_a_long_concatenation_in_a_block_is_written_as_its_value():
    n = 200
    nodes = "".join(f"      - r{i}: {{op: relu, in: input}}\n" for i in range(n))
    nodes += f"      - cat: {{op: concat, in: [{', '.join(f'r{i}' for i in range(n))}]}}\n"
    nodes += "      - conv: {op: conv2d, out: 4, kernel: 1}"
    blocks = f"  wide:\n    nodes:\n{nodes}"
    assert outcome(
        _spec("  - a: {block: wide}\n  - b: {op: conv2d, out: 3, kernel: 1}\n  - c: {block: wide}\n", blocks)
    ) == ("generated")


def test_expressions_are_printed_in_forms_ruff_accepts():
    """`archspec compile` formats and checks the code with ruff; these valid
    expressions used to come out as --8, flag == True, 1 == k, not k == 3 or
    int(8), which ruff refuses (B002, E712, SIM300, SIM201, UP018)."""
    blocks = (
        "  unit:\n    params: {k: int, use: {type: bool, default: true}}\n    nodes:\n"
        '      - c: {op: conv2d, out: "--8 + k", kernel: 1}\n'
        '      - d: {op: conv2d, out: "int(8) + float(2.0) * 0", kernel: 1, when: "use == true"}\n'
        '      - e: {op: conv2d, out: "8 if 1 == k else 4", kernel: 1, when: "not k == 3"}\n'
        '      - f: {op: conv2d, out: "8 if 3 < k else (0 - 2) ** 2", kernel: 1, bias: "not (k > 1 or use)"}\n'
        '      - g: {op: conv2d, out: 4, kernel: 1, when: "(k > 1 if use else k < 1) if use else false"}'
    )
    layers = (
        "  - a: {block: unit, k: 1, use: false}\n  - b: {block: unit, k: 4}\n"
        '  - s: {block: unit, repeat: 2, k: 2, first: {k: "3 if p == 1 else 1"}}\n'
        '  - h: {op: conv2d, out: 4, kernel: 1, when: "p != false"}\n'
    )
    compiled = compile_spec(FILE, text=_spec(layers, blocks))
    for source in render_all([compiled], list(EMITTERS), table=False).values():
        ast.parse(source)
