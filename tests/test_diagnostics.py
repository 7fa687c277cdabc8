"""The mechanics of diagnostics: format, order, de-duplication, hints and positions.

The messages themselves are pinned by the golden corpus (tests/test_corpus.py);
these tests check the machinery every message goes through.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from archspec.cli import main
from archspec.diagnostics import CODES, Collector, Diagnostic, Pos, SpecError, did_you_mean, one_of, show
from archspec.passes.expand import expand
from archspec.pipeline import compile_spec
from archspec.schema.spec import parse_spec
from archspec.schema.yamlload import load_yaml

HEAD = "name: net\nsource: test\ninput: [3, 32, 32]\n"


def errors(text: str, overrides: dict[str, str] | None = None) -> list[Diagnostic]:
    """The diagnostics of a spec text (parsed and expanded), in report order."""
    with pytest.raises(SpecError) as info:
        expand(parse_spec("spec.yaml", text), overrides)
    return info.value.diagnostics


def where(d: Diagnostic) -> tuple[int, int]:
    return d.pos.line, d.pos.col


def column_of(text: str, line: int, needle: str) -> int:
    """1-based column of ``needle`` on 1-based ``line`` of ``text``."""
    return text.splitlines()[line - 1].index(needle) + 1


# -- Pos and Diagnostic ---------------------------------------------------------


def test_pos_formats_as_file_line_col():
    assert str(Pos("a.yaml", 3, 7)) == "a.yaml:3:7"


def test_pos_without_a_line_is_the_file_alone():
    assert str(Pos("a.yaml")) == "a.yaml"
    assert str(Pos("--set alpha=x")) == "--set alpha=x"


def test_diagnostic_format():
    d = Diagnostic(Pos("a.yaml", 3, 7), "E201", "unknown op 'conv'")
    assert str(d) == "a.yaml:3:7: error[E201]: unknown op 'conv'"


def test_diagnostic_rejects_an_unregistered_code():
    with pytest.raises(ValueError, match="unregistered"):
        Diagnostic(Pos("a.yaml", 1, 1), "E999", "nope")


def test_codes_are_well_formed():
    assert CODES
    for code, title in CODES.items():
        assert len(code) == 4 and code[0] == "E" and code[1:].isdigit()
        assert title and title == title.strip()


# -- SpecError and Collector ----------------------------------------------------


def test_spec_error_sorts_by_file_line_column_then_code():
    ds = [
        Diagnostic(Pos("b.yaml", 1, 1), "E101", "b"),
        Diagnostic(Pos("a.yaml", 10, 2), "E101", "x"),
        Diagnostic(Pos("a.yaml", 2, 30), "E203", "y"),
        Diagnostic(Pos("a.yaml", 2, 30), "E201", "z"),
        Diagnostic(Pos("a.yaml", 2, 5), "E101", "w"),
    ]
    err = SpecError(ds)
    assert [(d.pos.file, d.pos.line, d.pos.col, d.code) for d in err.diagnostics] == [
        ("a.yaml", 2, 5, "E101"),
        ("a.yaml", 2, 30, "E201"),
        ("a.yaml", 2, 30, "E203"),
        ("a.yaml", 10, 2, "E101"),
        ("b.yaml", 1, 1, "E101"),
    ]


def test_spec_error_sorts_numerically_not_as_text():
    err = SpecError([Diagnostic(Pos("a", 10, 1), "E101", "m"), Diagnostic(Pos("a", 9, 1), "E101", "m")])
    assert [d.pos.line for d in err.diagnostics] == [9, 10]


def test_spec_error_drops_exact_duplicates_only():
    same = Diagnostic(Pos("a.yaml", 1, 1), "E101", "m")
    other = Diagnostic(Pos("a.yaml", 1, 1), "E101", "another message")
    err = SpecError([same, same, Diagnostic(Pos("a.yaml", 1, 1), "E101", "m"), other])
    assert err.diagnostics == [other, same]


def test_spec_error_message_is_one_line_per_diagnostic():
    err = SpecError([Diagnostic(Pos("a", 2, 1), "E101", "two"), Diagnostic(Pos("a", 1, 1), "E102", "one")])
    assert str(err) == "a:1:1: error[E102]: one\na:2:1: error[E101]: two"


def test_collector_raises_only_when_it_has_errors():
    c = Collector()
    assert not c
    c.raise_if_any()  # nothing to raise
    c.error(Pos("a", 1, 1), "E101", "m")
    assert c
    with pytest.raises(SpecError) as info:
        c.raise_if_any()
    assert len(info.value.diagnostics) == 1


# -- hints ------------------------------------------------------------------------


def test_did_you_mean_suggests_the_closest_candidate():
    assert did_you_mean("conv2", ["conv1d", "conv2d", "dense"]) == " (did you mean 'conv2d'?)"
    assert did_you_mean("kernal", ["out", "kernel", "stride"]) == " (did you mean 'kernel'?)"


def test_did_you_mean_is_empty_without_a_close_candidate():
    assert did_you_mean("zzz", ["conv2d", "dense"]) == ""
    assert did_you_mean("x", []) == ""


def test_did_you_mean_is_deterministic_with_duplicates_and_non_strings():
    assert did_you_mean("widht", ["width", "width", "depth"]) == " (did you mean 'width'?)"
    assert did_you_mean(12, ["12a"]) == " (did you mean '12a'?)"


def test_one_of_lists_sorted_unique_choices():
    assert one_of(["int", "bool", "int", "float"]) == "one of: bool, float, int"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (True, "true"),
        (False, "false"),
        (None, "null"),
        (3, "3"),
        (2.5, "2.5"),
        ("abc", "'abc'"),
        ([3, True, "a"], "[3, true, 'a']"),
        ((1, 2), "[1, 2]"),
    ],
)
def test_show_writes_values_as_in_a_spec(value, shown):
    assert show(value) == shown


def test_show_cuts_long_values():
    assert show("x" * 100) == repr("x" * 35 + "...")
    assert len(show(list(range(100)))) <= 40
    huge = show(10**400)
    assert huge.endswith("(401 digits)") and len(huge) < 60


# -- every error of a file at once --------------------------------------------------


def test_three_independent_errors_are_reported_at_once_in_line_order():
    text = HEAD + (
        "layers:\n"
        "  - conv: {op: conv2d, out: 8, kernal: 3}\n"  # line 5: unknown attribute (and no kernel)
        "  - act: {op: rleu}\n"  # line 6: unknown op
        "  - fc: {op: dense, out: classes}\n"  # line 7: unknown parameter
    )
    with pytest.raises(SpecError) as info:
        parse_spec("spec.yaml", text)
    ds = info.value.diagnostics
    by_code = {d.code: d for d in ds}
    assert {"E202", "E201", "E203"} <= set(by_code)
    assert where(by_code["E202"]) == (5, column_of(text, 5, "kernal"))
    assert where(by_code["E201"]) == (6, column_of(text, 6, "rleu"))
    assert where(by_code["E203"]) == (7, column_of(text, 7, "classes"))
    assert ds == sorted(ds)
    assert [d.pos.line for d in ds] == sorted(d.pos.line for d in ds)


def test_three_independent_errors_exactly():
    text = HEAD + (
        "layers:\n"
        "  - conv: {op: conv2d, out: 8, kernel: 3}\n"
        "  - act: {op: rleu}\n"
        "  - pool: {op: max_pool2d, kernel: 2, strid: 2}\n"
        "  - fc: {op: dense, out: classes}\n"
    )
    with pytest.raises(SpecError) as info:
        parse_spec("spec.yaml", text)
    assert [(d.pos.line, d.code) for d in info.value.diagnostics] == [(6, "E201"), (7, "E202"), (8, "E203")]


def test_errors_of_expansion_are_all_reported_too():
    text = HEAD + (
        "layers:\n"
        "  - conv1: {op: conv2d, out: 0, kernel: 3}\n"
        "  - conv2: {op: conv2d, out: 8, kernel: 99, in: input}\n"
        "  - conv3: {op: conv2d, out: 8, kernel: 3, groups: 2, in: input}\n"
    )
    assert [(d.pos.line, d.code) for d in errors(text)] == [(5, "E303"), (6, "E402"), (7, "E403")]


def test_an_error_inside_a_block_is_reported_once_for_all_its_instances():
    text = HEAD + (
        "params:\n  zero: 0\n"
        "blocks:\n"
        "  unit:\n"
        "    nodes:\n"
        "      - conv: {op: conv2d, out: 8 // zero, kernel: 1}\n"
        "layers:\n"
        "  - a: {block: unit}\n"
        "  - b: {block: unit, in: input}\n"
        "  - stage: {block: unit, repeat: 4, in: input}\n"
    )
    ds = errors(text)
    assert len(ds) == 1
    assert ds[0].code == "E302" and "division by zero" in ds[0].message
    assert where(ds[0]) == (9, column_of(text, 9, "//"))


def test_set_errors_have_the_override_as_position():
    text = HEAD + "params:\n  width: 8\nlayers:\n  - conv: {op: conv2d, out: width, kernel: 3}\n"
    ds = errors(text, {"width": "0.5", "widht": "3"})
    assert [(str(d.pos), d.code) for d in ds] == [("--set widht=3", "E203"), ("--set width=0.5", "E304")]
    assert "did you mean 'width'" in ds[0].message


def test_cli_prints_every_diagnostic_and_a_count(write_spec):
    path = write_spec(HEAD + "layers:\n  - a: {op: rleu}\n  - b: {op: sigmoyd}\n")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[-1] == "2 errors"
    assert lines[0].startswith(f"{path}:5:") and lines[1].startswith(f"{path}:6:")
    assert result.stdout == ""


def test_cli_says_1_error_in_the_singular(write_spec):
    path = write_spec(HEAD + "layers:\n  - a: {op: rleu}\n")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.stderr.splitlines()[-1] == "1 error"


def test_cli_reports_each_file_and_fails_if_any_fails(write_spec):
    good = write_spec(HEAD + "layers:\n  - a: {op: relu}\n", "good.yaml")
    bad = write_spec(HEAD + "layers:\n  - a: {op: rleu}\n", "bad.yaml")
    result = CliRunner().invoke(main, ["validate", str(good), str(bad)])
    assert result.exit_code == 1
    assert f"{good}: ok" in result.stdout
    assert f"{bad}:5:" in result.stderr


# -- positions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ('"width * * 2"', "* 2"),  # double-quoted
        ("'width * * 2'", "* 2"),  # single-quoted
        ("width * * 2", "* 2"),  # plain
    ],
)
def test_syntax_error_column_points_inside_the_expression(value, needle):
    text = HEAD + f"params:\n  width: 8\nlayers:\n  - conv: {{op: conv2d, out: {value}, kernel: 3}}\n"
    (d,) = errors(text)
    assert d.code == "E301"
    assert where(d) == (7, column_of(text, 7, needle))


@pytest.mark.parametrize("quote", ['"', "'", ""])
def test_unknown_name_column_points_at_the_name(quote):
    value = f"{quote}width + widht{quote}"
    text = HEAD + f"params:\n  width: 8\nlayers:\n  - conv: {{op: conv2d, out: {value}, kernel: 3}}\n"
    (d,) = errors(text)
    assert d.code == "E203"
    assert where(d) == (7, column_of(text, 7, "widht"))


def test_evaluation_error_column_points_at_the_operator():
    text = HEAD + 'params:\n  zero: 0\nlayers:\n  - conv: {op: conv2d, out: "64 + 8 // zero", kernel: 3}\n'
    (d,) = errors(text)
    assert d.code == "E302"
    assert where(d) == (7, column_of(text, 7, "//"))


def test_function_errors_point_at_the_function():
    text = HEAD + 'layers:\n  - conv: {op: conv2d, out: "8 + max(16)", kernel: 3}\n'
    (d,) = errors(text)
    assert where(d) == (5, column_of(text, 5, "max"))


def test_positions_in_a_block_style_mapping_and_a_list():
    text = HEAD + ('layers:\n  - conv:\n      op: conv2d\n      out: 8\n      kernel: [3, "3 +* 1"]\n')
    (d,) = errors(text)
    assert where(d) == (8, column_of(text, 8, "* 1"))


def test_a_folded_expression_points_at_its_start_not_at_a_wrong_column():
    # A quoted string over two lines is folded: no column in it maps to the
    # source by an offset, so the diagnostic points at the start of the text.
    text = HEAD + 'params:\n  width: 8\nlayers:\n  - conv:\n      op: conv2d\n      out: "width +\n        widht"\n'
    text += "      kernel: 3\n"
    (d,) = errors(text)
    assert where(d) == (9, column_of(text, 9, "width"))


def test_an_escaped_expression_points_at_its_start():
    text = HEAD + "params:\n  w: 8\nlayers:\n  - conv: {op: conv2d, out: 'w * ''x'' + wdth', kernel: 3}\n"
    (d,) = errors(text)
    assert where(d) == (7, column_of(text, 7, "w *"))


def test_yaml_syntax_errors_point_at_the_problem():
    with pytest.raises(SpecError) as info:
        load_yaml("s.yaml", "a: 1\nlayers:\n  - x: 1\n   - y: 2\n")
    (d,) = info.value.diagnostics
    assert (d.code, where(d)) == ("E004", (4, 4))
    assert "indented" in d.message


# -- robustness (regressions) -----------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "a: " + "[" * 5000 + "]" * 5000,  # recursion in the YAML composer
        "a: " + "1" * 5000,  # an int Python refuses to convert
        "a: !!python/object/apply:os.system [echo]",
        "a: !!binary aGVsbG8=",
        "a: !custom 3",
    ],
)
def test_hostile_yaml_is_a_diagnostic_not_a_crash(text):
    with pytest.raises(SpecError) as info:
        load_yaml("s.yaml", text)
    assert info.value.diagnostics[0].code in ("E004", "E305")


def test_a_date_is_read_as_text():
    doc, _ = load_yaml("s.yaml", "source: 2015-12-10\n")
    assert doc["source"] == "2015-12-10"


def test_set_accepts_exponent_notation():
    text = HEAD + "params:\n  alpha: 1.0\nlayers:\n  - conv: {op: conv2d, out: int(8 * alpha), kernel: 3}\n"
    c = compile_spec("spec.yaml", {"alpha": "2e0"}, text=text)
    assert c.graph.params["alpha"] == 2.0


@pytest.mark.parametrize("value", [".inf", "nan", "1e400"])
def test_set_refuses_non_finite_numbers(value):
    text = HEAD + "params:\n  alpha: 1.0\nlayers:\n  - conv: {op: conv2d, out: int(8 * alpha), kernel: 3}\n"
    (d,) = errors(text, {"alpha": value})
    assert d.code == "E304" and "finite" in d.message
