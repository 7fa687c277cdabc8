"""No injection: nothing from a spec, or from the command line, runs.

Spec text reaches generated code in a few places only, each made safe:

* names (the spec's, blocks', nodes', parameters') must be identifiers that
  are no Python keyword (E105), so they are written as they are: class,
  function, attribute and argument names, and inside ``name="..."`` strings;
* free text (``source``, ``description``, block and node ``doc``) is only ever
  written into docstrings, escaped (backslashes, triple quotes, characters
  that are not printable);
* string values (str parameters, ``--set`` values, string literals of
  expressions) are written with ``repr``;
* expressions are parsed into archspec's own expression tree and printed from
  it: names must be parameters in scope, functions archspec's own;
* the spec's path (from the command line) is written into the header comment
  and the module docstring with every character that is not printable escaped;
* the Jinja templates are files of the package: spec text is only ever a value
  rendered into them, never a template, so ``{{ 7*7 }}`` stays as it is.

The tests below try hostile text in each place and check that either a
diagnostic refuses it or the code generated for every target parses, calls
nothing it should not, has the top-level statements of the same spec without
the hostile text, and holds the text as data (docstrings, string constants).
Loading a spec runs nothing either: YAML's Python tags are refused.
"""

from __future__ import annotations

import ast
import copy
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from archspec.cli import main
from archspec.codegen import EMITTERS
from archspec.codegen.model import build
from archspec.diagnostics import SpecError
from archspec.pipeline import compile_spec
from tests.conftest import SPECS

HOSTILE = [
    '"; __import__("os").system("echo pwned"); "',
    "'; __import__('os').system('echo pwned'); '",
    '"""\nimport os\nos.system("echo pwned")\n"""',
    '""" + __import__("os").system("echo pwned") + """',
    "'''\nimport os\n'''",
    '""""',
    'ends with a quote "',
    "ends with a backslash \\",
    'a backslash and a quote \\"',
    'two backslashes and a quote \\\\"',
    "\\",
    '\\"""',
    "\\N{BULLET} \\x41 \\u0041 \\n",
    "a" * 150 + "\\",  # a word longer than a docstring line, ending in a backslash
    "{{ 7*7 }}",
    "{% for x in range(3) %}loop{% endfor %}",
    "{# a comment #}{{ self.__init__.__globals__ }}",
    "line\nbreak\nimport os",
    "carriage\rreturn",
    "line\u2028separator\u2029paragraph",
    "next\x85line",
    "tab\there",
    "nul\x00byte",
    "escape\x1b[31mred",
    "zero\u200bwidth \ufeffbom \u202eoverride",
    "__import__('os').system('echo pwned')",
    "exec('import os')",
    "\nclass Evil:\n    pass\n",
    "# comment\nimport os",
    "x = 1",
    "$(echo pwned) `echo pwned`",
]

# Calls and names no generated file has any business with.
DANGEROUS = {"__import__", "eval", "exec", "compile", "system", "popen", "open", "breakpoint", "input", "globals"}
FORBIDDEN_NAMES = {"os", "sys", "subprocess", "builtins", "__builtins__", "Evil", "pwned"}
IMPORTS = {
    "__future__",
    "math",
    "numpy",
    "torch",
    "torch.nn.functional",
    "tensorflow",
    "keras",
    "chainer",
    "chainer.functions",
    "chainer.links",
}
# chainer 7.8.1 reads numpy.sctypes, which numpy 2 removed: the file restores it.
CHAINER_SHIM = "if not hasattr(np, 'sctypes'):"

BASE: dict = {
    "name": "net",
    "source": "A test network.",
    "description": "A small network.",
    "input": [3, 16, 16],
    "params": {"num_classes": 10, "mode": {"type": "str", "default": "same", "doc": "a switch"}},
    "blocks": {
        "unit": {
            "doc": "A convolution and a ReLU.",
            "params": {"width": "int", "tag": {"type": "str", "default": "on"}},
            "nodes": [
                {"conv": {"op": "conv2d", "out": "width", "kernel": 3, "padding": 1, "doc": "the convolution"}},
                {"relu": {"op": "relu", "when": "tag != 'off'"}},
            ],
        }
    },
    "layers": [
        {"stem": {"block": "unit", "width": 8}},
        {"stage": {"block": "unit", "repeat": 2, "width": 8, "tag": "'on'"}},
        {"pool": {"op": "global_avg_pool"}},
        {"fc": {"op": "dense", "out": "num_classes"}},
        {"drop": {"op": "dropout", "when": "mode != 'off'"}},
    ],
}


def spec_text(doc: dict) -> str:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=1000)


def generate(doc: dict, path: str = "net.yaml", overrides: dict | None = None) -> dict[str, str]:
    """Every target's code for a spec document; raises SpecError."""
    model = build(compile_spec(path, overrides, text=spec_text(doc)))
    return {target: emit(model) for target, emit in EMITTERS.items()}


def shape(tree: ast.Module) -> list[str]:
    """The module's top-level statements, by kind and what they bind."""
    out = []
    for k, stmt in enumerate(tree.body):
        if isinstance(stmt, ast.Expr) and k == 0 and isinstance(stmt.value, ast.Constant):
            out.append("docstring")
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            out.append(ast.unparse(stmt))
        elif isinstance(stmt, (ast.FunctionDef, ast.ClassDef)):
            out.append(f"{type(stmt).__name__} {stmt.name}")
        else:
            out.append(ast.unparse(stmt).splitlines()[0])
    return out


def assert_safe(source: str, target: str) -> ast.Module:
    """The generated module parses, imports only what a target needs, has
    only docstring, imports, definitions (and chainer's numpy shim) at top
    level, and calls or names nothing dangerous anywhere."""
    tree = ast.parse(source)
    for k, stmt in enumerate(tree.body):
        if isinstance(stmt, ast.Import):
            assert {a.name for a in stmt.names} <= IMPORTS, ast.unparse(stmt)
        elif isinstance(stmt, ast.ImportFrom):
            assert stmt.module in IMPORTS | {"keras", "torch"}, ast.unparse(stmt)
        elif isinstance(stmt, ast.If):
            assert target == "chainer" and ast.unparse(stmt).startswith(CHAINER_SHIM), ast.unparse(stmt)
        else:
            docstring = k == 0 and isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
            assert docstring or isinstance(stmt, (ast.FunctionDef, ast.ClassDef)), ast.unparse(stmt)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            called = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            assert called not in DANGEROUS, ast.unparse(node)
        if isinstance(node, ast.Name):
            assert node.id not in FORBIDDEN_NAMES, node.id
        if isinstance(node, ast.Attribute):
            assert node.attr not in FORBIDDEN_NAMES, ast.unparse(node)
    return tree


def docstrings(tree: ast.Module) -> list[str]:
    """Every docstring of the module, its classes and functions, whitespace collapsed."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                out.append(" ".join(doc.split()))
    return out


def constants(tree: ast.Module) -> set:
    return {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)}


def refused(exc: SpecError, *codes: str) -> None:
    assert exc.diagnostics
    for d in exc.diagnostics:
        line = str(d)
        assert "\n" not in line and "\r" not in line and line.isprintable(), repr(line)
    assert {d.code for d in exc.diagnostics} & set(codes), str(exc)


BASELINE = {target: shape(ast.parse(source)) for target, source in generate(BASE).items()}


def holds_control_character(text: str) -> bool:
    return any(yaml.reader.Reader.NON_PRINTABLE.match(c) for c in text)


# ----------------------------------------------------------------------------
# Free text: source, description, block and node doc


@pytest.mark.parametrize("text", HOSTILE)
def test_free_text_becomes_docstrings_and_nothing_else(text):
    doc = copy.deepcopy(BASE)
    doc["source"] = doc["description"] = text
    doc["blocks"]["unit"]["doc"] = text
    doc["blocks"]["unit"]["nodes"][0]["conv"]["doc"] = text
    try:
        sources = generate(doc)
    except SpecError as exc:  # a control character: YAML allows none, escaped or not
        assert holds_control_character(text)
        refused(exc, "E004")
        return
    assert not holds_control_character(text)
    wanted = " ".join(text.split())
    for target, source in sources.items():
        tree = assert_safe(source, target)
        assert shape(tree) == BASELINE[target], target
        if wanted:
            assert any(wanted in d for d in docstrings(tree)), f"{target}: the text is not a docstring's value"
        if "{{" in text or "{%" in text:
            assert wanted in " ".join(source.split()), f"{target}: template syntax was not written literally"


def test_template_syntax_in_text_is_written_literally():
    doc = copy.deepcopy(BASE)
    doc["description"] = "{{ 7*7 }} {% for x in range(3) %}loop{% endfor %}"
    for source in generate(doc).values():
        assert "{{ 7*7 }} {% for x in range(3) %}loop{% endfor %}" in source
        assert "49" not in source and "looplooploop" not in source


# ----------------------------------------------------------------------------
# Names


def _rename_spec(doc: dict, name: str) -> None:
    doc["name"] = name


def _rename_block(doc: dict, name: str) -> None:
    doc["blocks"] = {name: doc["blocks"]["unit"]}
    for item in doc["layers"]:
        body = next(iter(item.values()))
        if body.get("block") == "unit":
            body["block"] = name


def _rename_node(doc: dict, name: str) -> None:
    doc["layers"][3] = {name: doc["layers"][3]["fc"]}


def _rename_param(doc: dict, name: str) -> None:
    params = doc["blocks"]["unit"]["params"]
    del params["width"]
    params[name] = {"type": "int", "default": 8}
    doc["blocks"]["unit"]["nodes"][0]["conv"]["out"] = name
    for item in doc["layers"]:
        next(iter(item.values())).pop("width", None)


def _rename_spec_param(doc: dict, name: str) -> None:
    doc["params"][name] = doc["params"].pop("mode")
    doc["layers"][4]["drop"]["when"] = f"{name} != 'off'"


RENAMES = [_rename_spec, _rename_block, _rename_node, _rename_param, _rename_spec_param]
HOSTILE_NAMES = [*HOSTILE, "import", "None", "class", "a b", "a.b", "a-b", "_private", "__init__", "1st", ""]


@pytest.mark.parametrize("rename", RENAMES, ids=lambda f: f.__name__[1:])
@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_name_that_is_no_identifier_is_refused(rename, name):
    doc = copy.deepcopy(BASE)
    rename(doc, name)
    with pytest.raises(SpecError) as info:
        generate(doc)
    refused(info.value, "E105", "E101", "E004")


@pytest.mark.parametrize("rename", RENAMES, ids=lambda f: f.__name__[1:])
def test_identifiers_are_written_as_they_are(rename):
    doc = copy.deepcopy(BASE)
    rename(doc, "Evil_name_2")
    for target, source in generate(doc).items():
        tree = ast.parse(source)
        assert "Evil_name_2" in source or "EvilName2" in source or "Evil_name2" in source, target
        assert shape(tree)[:3] == BASELINE[target][:3]


@pytest.mark.parametrize("name", ["torch", "nn", "F", "keras", "tf", "np", "L", "max", "range", "super", "unit"])
def test_a_node_named_like_what_the_code_uses_does_not_hide_it(name):
    """Nodes name variables: one called ``torch`` (or ``max``, or like a
    block's function) gets a trailing underscore instead of hiding it."""
    doc = copy.deepcopy(BASE)
    doc["blocks"]["unit"]["nodes"] = [
        {name: {"op": "conv2d", "out": "width", "kernel": 3, "padding": 1}},
        {"relu": {"op": "relu"}},
        {"cat": {"op": "concat", "in": [name, "relu"]}},
    ]
    doc["layers"].insert(1, {name: {"op": "relu"}})
    doc["layers"].insert(2, {"twice": {"op": "concat", "in": [name, name]}})
    doc["layers"].insert(3, {"back": {"op": "conv2d", "in": "twice", "out": 16, "kernel": 1}})
    doc["layers"].insert(4, {"sum": {"op": "add", "in": [name, "back"]}})
    for target, source in generate(doc).items():
        tree = assert_safe(source, target)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assigned = {
                    t.id
                    for a in ast.walk(node)
                    if isinstance(a, ast.Assign)
                    for t in a.targets
                    if isinstance(t, ast.Name)
                }
                assert name not in assigned, f"{target}: {node.name} assigns {name}"


# ----------------------------------------------------------------------------
# String values and expressions


def _as_literal(text: str) -> str | None:
    """``text`` as a string literal of archspec's expression language, or None
    when the language cannot write it (no backslashes, no line breaks)."""
    if "\\" in text or "\n" in text or "\r" in text:
        return None
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    return None


@pytest.mark.parametrize("text", HOSTILE)
def test_string_values_are_written_as_string_constants(text):
    doc = copy.deepcopy(BASE)
    doc["blocks"]["unit"]["params"]["tag"]["default"] = text
    literal = _as_literal(text)
    if literal is not None:
        doc["layers"][1]["stage"]["tag"] = literal
    try:
        sources = generate(doc, overrides={"mode": text})
    except SpecError as exc:
        assert holds_control_character(text)
        refused(exc, "E004")
        return
    # What archspec read: YAML reads U+0085 as a line break, and a --set value as YAML.
    default = yaml.safe_load(spec_text({"value": text}))["value"]
    mode = compile_spec("net.yaml", {"mode": text}, text=spec_text(doc)).graph.params["mode"]
    for target, source in sources.items():
        tree = assert_safe(source, target)
        for value in (default, mode):  # the block parameter's default, the spec parameter's
            assert value in constants(tree), f"{target}: {value!r} is not a string constant of the code"
        assert shape(tree) == BASELINE[target], target


@pytest.mark.parametrize("text", HOSTILE)
def test_an_expression_is_never_written_as_its_text(text):
    doc = copy.deepcopy(BASE)
    doc["layers"][3]["fc"]["out"] = text
    with pytest.raises(SpecError) as info:
        generate(doc)
    refused(info.value, "E301", "E302", "E203", "E004", "E101")


@pytest.mark.parametrize(
    "expr",
    [
        "__import__('os').system('echo pwned')",
        "open('/etc/passwd')",
        "eval('1')",
        "num_classes.__class__",
        "num_classes; import os",
        "[num_classes]",
        "lambda: 1",
        "num_classes if __debug__ else 1",
        "getattr(num_classes, 'real')",
    ],
)
def test_python_in_an_expression_is_refused(expr):
    doc = copy.deepcopy(BASE)
    doc["layers"][3]["fc"]["out"] = expr
    with pytest.raises(SpecError) as info:
        generate(doc)
    refused(info.value, "E301", "E302", "E203")


def test_a_string_literal_in_an_expression_is_data():
    doc = copy.deepcopy(BASE)
    evil = '"); __import__("os").system("echo pwned"); ("'
    doc["layers"][4]["drop"]["when"] = f"mode != '{evil}'"
    for target, source in generate(doc).items():
        tree = assert_safe(source, target)
        assert evil in constants(tree), target


# ----------------------------------------------------------------------------
# The spec's path


HOSTILE_PATHS = [
    'evil\n"""\nimport os\nos.system("echo pwned")\n""".yaml',
    "evil\r\nimport os.yaml",
    'evil"""; import os; """.yaml',
    "evil\\x.yaml",
    "C:\\Users\\net\\spec.yaml",
    "evil\\",
    "evil {{ 7*7 }} {% raw %}.yaml",
    "evil\u2028import os.yaml",
    "evil\x00.yaml",
    "evil\x1b[31m.yaml",
    "evil\udcff.yaml",  # an undecodable byte of a file name, as Python reads it
    "evil '''.yaml",
]


@pytest.mark.parametrize("path", HOSTILE_PATHS)
def test_the_spec_path_is_written_as_data(path):
    for target, source in generate(BASE, path=path).items():
        tree = assert_safe(source, target)
        assert shape(tree) == BASELINE[target], target
        lines = source.split("\n")
        assert lines[0].startswith("# Generated by archspec from ") and lines[1].startswith("# and run")
        assert lines[2] == "" and lines[3].startswith('"""'), f"{target}: the header is not two comment lines"
        assert path in ast.get_docstring(tree, clean=False), f"{target}: the module docstring lost the path"
        source.encode("utf-8")  # writable as a file


@pytest.mark.parametrize("name", ['evil\n"""\nimport os\n""".yaml', "evil '{{ 7*7 }}' \\.yaml"])
def test_compile_from_a_hostile_file_name(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).write_text(spec_text(BASE))
    result = CliRunner().invoke(main, ["compile", name, "--target", "all", "-o", "out"])
    assert result.exit_code == 0, result.output
    for target in EMITTERS:
        source = (tmp_path / "out" / "net" / f"net_{target}.py").read_text()
        tree = assert_safe(source, target)
        assert shape(tree) == BASELINE[target]


# ----------------------------------------------------------------------------
# Loading runs nothing


PYTHON_TAGS = [
    "!!python/object/apply:os.system ['touch {marker}']",
    "!!python/object/apply:builtins.exec [\"open('{marker}', 'w')\"]",
    "!!python/object/new:subprocess.Popen [['touch', '{marker}']]",
    "!!python/name:os.system",
    "!!python/module:os",
]


PLACES = ["source: {}", "layers:\n  - relu:\n      op: relu\n      doc: {}", "params:\n  {}: 1"]


@pytest.mark.parametrize("tag", PYTHON_TAGS)
@pytest.mark.parametrize("where", PLACES)
def test_yaml_python_tags_are_refused_and_run_nothing(tmp_path, tag, where):
    marker = tmp_path / "pwned"
    value = tag.format(marker=marker)
    text = "name: net\ninput: [3, 8, 8]\n" + where.format(value) + "\n"
    if "layers" not in text:
        text += "layers:\n  - relu: {op: relu}\n"
    with pytest.raises(SpecError) as info:
        compile_spec(tmp_path / "spec.yaml", text=text)
    refused(info.value, "E004")
    assert any("is not allowed" in d.message for d in info.value.diagnostics)
    assert not marker.exists()


def test_specs_are_read_with_the_safe_loader_only(monkeypatch):
    """Every spec of the zoo loads with PyYAML's unsafe entry points disabled."""

    def refuse(*args, **kwargs):
        raise AssertionError("archspec called an unsafe YAML loader")

    for name in ("load", "unsafe_load", "full_load", "load_all", "unsafe_load_all", "full_load_all"):
        monkeypatch.setattr(yaml, name, refuse)
    monkeypatch.setattr(yaml, "Loader", None)
    monkeypatch.setattr(yaml, "UnsafeLoader", None)
    monkeypatch.setattr(yaml, "FullLoader", None)
    for path in sorted(SPECS.glob("*.yaml")):
        compile_spec(path)


def test_set_values_are_read_with_the_safe_loader(tmp_path):
    marker = tmp_path / "pwned"
    sources = generate(BASE, overrides={"mode": f"!!python/object/apply:os.system ['touch {marker}']"})
    assert not marker.exists()
    for target, source in sources.items():
        assert f"!!python/object/apply:os.system ['touch {marker}']" in constants(assert_safe(source, target))


def test_the_zoo_passes_the_same_checks():
    for path in sorted(SPECS.glob("*.yaml")):
        model = build(compile_spec(path))
        for target, emit in EMITTERS.items():
            assert_safe(emit(model), target)


def test_a_path_is_written_as_given(tmp_path):
    assert Path  # the plain path of the zoo appears as typed
    source = generate(BASE, path="specs/net.yaml")["pytorch"]
    assert source.startswith("# Generated by archspec from specs/net.yaml for pytorch.")
