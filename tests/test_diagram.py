"""Diagrams: DOT text (golden files, determinism, structure), rendering, CLI.

The golden files under ``tests/golden/`` are the exact DOT text of small
networks. After an intended change of the diagrams, regenerate them and review
the diff (render them with ``dot -Tsvg`` to look)::

    .venv/bin/python -m pytest tests/test_diagram.py --update-golden
"""

from __future__ import annotations

import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from archspec import ops
from archspec.cli import diagram_command, main
from archspec.diagram import (
    LIGHT,
    DiagramError,
    GraphvizNotFound,
    box_count,
    render,
    to_dot,
)
from archspec.ir import INPUT
from archspec.pipeline import compile_spec

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
GOLDEN = ROOT / "tests" / "golden"
GOLDEN_SPECS = {"lenet": SPECS / "lenet.yaml", "tiny_resnet": GOLDEN / "tiny_resnet.yaml"}

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz' dot is not installed")

_NODE = re.compile(r'^\s*"((?:[^"\\]|\\.)*)" \[(.*)\];$')
_EDGE = re.compile(r'^\s*"((?:[^"\\]|\\.)*)" -> "((?:[^"\\]|\\.)*)" \[label=" ([^"]*)"\];$')


def _compile(name: str, **kw):
    return compile_spec(SPECS / f"{name}.yaml", **kw)


def _members(dot: str) -> dict[str, str]:
    """Node path -> id of the op box that draws it (from the boxes' tooltips)."""
    out: dict[str, str] = {}
    for line in dot.splitlines():
        m = _NODE.match(line)
        if m and "<TABLE" in m.group(2) and m.group(1) != "@legend":
            tip = re.search(r'tooltip="([^"]*)"', m.group(2)).group(1)
            for path in tip.split(", "):
                assert path not in out, f"{path} drawn twice"
                out[path] = m.group(1)
    return out


def _edges(dot: str) -> list[tuple[str, str, str]]:
    return [m.groups() for line in dot.splitlines() if (m := _EDGE.match(line))]


# ----------------------------------------------------------------------------
# Golden files and determinism


@pytest.mark.parametrize("name", sorted(GOLDEN_SPECS))
def test_golden(name, request):
    text = to_dot(compile_spec(GOLDEN_SPECS[name]))
    path = GOLDEN / f"{name}.dot"
    if request.config.getoption("--update-golden"):
        path.write_text(text)
    assert path.exists(), f"{path} is missing; run pytest with --update-golden"
    assert text == path.read_text(), f"{path} differs; if intended, rerun with --update-golden and review the diff"


@pytest.mark.parametrize("spec", sorted(p.stem for p in SPECS.glob("*.yaml")))
def test_deterministic(spec):
    options = [{}, {"expand": True}, {"depth": 1, "direction": "LR"}]
    for kw in options:
        first = to_dot(_compile(spec), **kw)
        assert first == to_dot(_compile(spec), **kw)


# ----------------------------------------------------------------------------
# Content


def test_labels_name_ops_and_attributes():
    dot = to_dot(_compile("resnet50"))
    for text in ("conv 7x7, 64, /2", "max_pool 3x3 /2", "dense 1000", "conv 3x3, 64<", ">add<", ">BN<", ">ReLU<"):
        assert text in dot, text
    assert "conv 3x3, 128, /2<" in to_dot(_compile("resnet50"), expand=True)
    seen = next(line for line in dot.splitlines() if line.lstrip().startswith('"block:layer2.0" ['))
    assert "layer2.0: bottleneck(width=128, stride=2," in seen and "drawn in full at layer1.0" in seen
    assert '"64x56x56"' not in dot and 'label=" 64x56x56"' in dot  # shapes on edges
    assert '"@input" [label="input\\n3x224x224"' in dot
    assert '"@output:fc" [label="output fc\\n1000"' in dot
    assert "layer2: bottleneck x4\\l" in dot
    assert "layer1.0: bottleneck(width=64, project=true)\\l" in dot
    assert 'label="layer2.2-3: bottleneck(width=128) x2"' in dot


def test_concat_and_skip_edges_come_from_their_sources(write_spec):
    path = write_spec(
        """
name: branches
source: test
input: [3, 16, 16]
layers:
  - stem: {op: conv2d, out: 8, kernel: 3, padding: 1}
  - a: {op: conv2d, in: stem, out: 4, kernel: 1}
  - b: {op: max_pool2d, in: stem, kernel: 3, stride: 1, padding: 1}
  - cat: {op: concat, in: [a, b, stem]}
  - input_proj: {op: conv2d, in: input, out: 20, kernel: 1}
  - skip: {op: add, in: [cat, input_proj]}
"""
    )
    dot = to_dot(compile_spec(path))
    edges = {(s, d) for s, d, _ in _edges(dot)}
    assert {("stem", "cat"), ("a", "cat"), ("b", "cat"), ("cat", "skip"), ("input_proj", "skip")} <= edges
    assert ("@input", "input_proj") in edges and ("@input", "stem") in edges
    assert ">concat<" in dot and "merge" in dot


@pytest.mark.parametrize("spec", ["resnet50", "xception", "mobilenet_v2", "lenet"])
def test_expanded_boxes_are_truthful(spec):
    """With expand, every node is in exactly one op box; a box is a chain of
    ops (each the only consumer of the one before) with at most one op that
    is not a norm, activation or dropout; every edge of the graph is drawn."""
    c = _compile(spec)
    dot = to_dot(c, expand=True)
    members = _members(dot)
    g = c.graph
    assert set(members) == {n.path for n in g.nodes}
    boxes: dict[str, list[str]] = {}
    for path, box in members.items():
        boxes.setdefault(box, []).append(path)
    for box, paths in boxes.items():
        nodes = [g.node(p) for p in paths]
        assert sum(ops.OPS[n.op].family not in LIGHT for n in nodes) <= 1, box
        for prev, n in zip(nodes, nodes[1:], strict=False):
            assert n.inputs == (prev.path,), box
    edges = {(s, d) for s, d, _ in _edges(dot)}
    for n in g.nodes:
        for ref in n.inputs:
            src = "@input" if ref == INPUT else members[ref]
            if src != members[n.path]:
                assert (src, members[n.path]) in edges, (ref, n.path)
    for o in g.outputs:
        assert (members[o], f"@output:{o}") in edges


def test_folded_stage_draws_the_residual_unit_too():
    """MobileNetV2's first unit of a stage has no residual; the first unit
    with one is drawn as well, so the skip connection stays visible."""
    dot = to_dot(_compile("mobilenet_v2"))
    assert "stage2.1: inverted_residual(expand_ratio=6, out=24)" in dot.replace("\\l", " ")  # a long label wraps
    members = _members(dot)
    assert members["stage2.1.add"] == "stage2.1.add"
    edges = {(s, d) for s, d, _ in _edges(dot)}
    assert (members["stage2.0.project_bn"], "stage2.1.add") in edges


def test_legend_lists_the_families_drawn():
    lenet = to_dot(_compile("lenet"))
    legend = next(line for line in lenet.splitlines() if line.lstrip().startswith('"@legend"'))
    for family in ("conv", "dense", "pool", "activation", "reshape"):
        assert f">{family}<" in legend
    assert ">norm<" not in legend and ">merge<" not in legend


# ----------------------------------------------------------------------------
# Scale: folding and depth


def test_resnet50_folded_is_bounded_and_smaller_than_expanded():
    c = _compile("resnet50")
    folded = box_count(to_dot(c))
    expanded = box_count(to_dot(c, expand=True))
    assert folded < 60
    assert expanded > folded
    assert expanded >= len([n for n in c.graph.nodes if n.op == "conv2d"])


@pytest.mark.parametrize("deep", ["resnet152", "densenet264"])
def test_deeper_nets_fold_to_a_bounded_diagram(deep):
    if not (SPECS / f"{deep}.yaml").exists():
        pytest.skip(f"specs/{deep}.yaml is not there yet")
    assert box_count(to_dot(_compile(deep))) < 60


def test_depth():
    c = _compile("resnet50")
    d0, d1, full = (to_dot(c, depth=d) for d in (0, 1, None))
    assert "subgraph" not in d0
    assert '"block:layer2"' in d0 and "layer2: bottleneck x4" in d0
    assert 'subgraph "cluster_layer2"' in d1 and '"block:layer2.0"' in d1
    assert "cluster_layer2.0" not in d1
    assert box_count(d0) < box_count(d1) < box_count(full)
    # Depth also bounds the expanded drawing.
    assert box_count(to_dot(c, depth=1, expand=True)) < box_count(to_dot(c, expand=True))


def test_box_count_ignores_legend_and_edges():
    dot = to_dot(_compile("lenet"))
    # input, 7 op boxes (two pool + sigmoid, dense + softmax merged), output
    assert box_count(dot) == 10


def test_options_are_checked():
    c = _compile("lenet")
    assert 'rankdir="LR"' in to_dot(c, direction="LR")
    with pytest.raises(ValueError, match="direction"):
        to_dot(c, direction="BT")
    with pytest.raises(ValueError, match="depth"):
        to_dot(c, depth=-1)


# ----------------------------------------------------------------------------
# Rendering


def test_render_dot_only_writes_atomically(tmp_path):
    written = render(to_dot(_compile("lenet")), tmp_path / "out" / "lenet.dot", "dot")
    assert written == [tmp_path / "out" / "lenet.dot"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["lenet.dot"]


def test_render_refuses_a_drawing_named_dot(tmp_path):
    with pytest.raises(ValueError, match="name it .svg"):
        render(to_dot(_compile("lenet")), tmp_path / "lenet.dot", "svg")
    with pytest.raises(ValueError, match="format"):
        render(to_dot(_compile("lenet")), tmp_path / "lenet.gif", "gif")
    assert list(tmp_path.iterdir()) == []


def test_missing_dot_writes_the_dot_file_and_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert shutil.which("dot") is None
    with pytest.raises(GraphvizNotFound) as exc:
        render(to_dot(_compile("lenet")), tmp_path / "lenet.svg", "svg")
    message = str(exc.value)
    assert "apt-get install graphviz" in message and "brew install graphviz" in message
    assert (tmp_path / "lenet.dot").read_text().startswith("// lenet")
    assert not (tmp_path / "lenet.svg").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lenet.dot"]


@needs_dot
def test_dot_failure_is_reported(tmp_path):
    with pytest.raises(DiagramError, match="dot failed"):
        render("digraph { this is not dot", tmp_path / "bad.svg", "svg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.dot"]  # the source is kept to debug


@pytest.mark.slow
@needs_dot
@pytest.mark.parametrize("spec", ["tiny_resnet", "resnet50"])
def test_render_svg_with_dot(tmp_path, spec):
    c = compile_spec(GOLDEN_SPECS.get(spec, SPECS / f"{spec}.yaml"))
    written = render(to_dot(c), tmp_path / f"{spec}.svg", "svg")
    assert written == [tmp_path / f"{spec}.svg"]
    root = ET.parse(tmp_path / f"{spec}.svg").getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = {t.text for t in root.iter("{http://www.w3.org/2000/svg}text")}
    assert "conv 3x3, 16" in texts or "conv 7x7, 64, /2" in texts
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{spec}.svg"]


# ----------------------------------------------------------------------------
# Command line


def test_cli_is_registered():
    assert main.commands["diagram"] is diagram_command


def test_cli_one_spec(tmp_path):
    out = tmp_path / "d" / "lenet.dot"
    result = CliRunner().invoke(main, ["diagram", str(SPECS / "lenet.yaml"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text() == to_dot(_compile("lenet"))
    assert "10 boxes" in result.output


def test_cli_options_reach_to_dot(tmp_path):
    out = tmp_path / "r.dot"
    args = ["diagram", str(SPECS / "resnet50.yaml"), "-o", str(out), "--depth", "1", "--direction", "LR"]
    assert CliRunner().invoke(main, args).exit_code == 0
    assert out.read_text() == to_dot(_compile("resnet50"), depth=1, direction="LR")
    args = ["diagram", str(SPECS / "mobilenet_v2.yaml"), "-o", str(out), "--expand", "--set", "alpha=0.5"]
    assert CliRunner().invoke(main, args).exit_code == 0
    assert out.read_text() == to_dot(compile_spec(SPECS / "mobilenet_v2.yaml", {"alpha": "0.5"}), expand=True)


def test_cli_all_specs_into_generated(tmp_path, monkeypatch):
    (tmp_path / "specs").mkdir()
    for name in ("lenet", "vgg16"):
        shutil.copy(SPECS / f"{name}.yaml", tmp_path / "specs")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["diagram", "--format", "dot"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "generated" / "lenet" / "lenet.dot").exists()
    assert (tmp_path / "generated" / "vgg16" / "vgg16.dot").exists()


def test_cli_invalid_spec_exits_1(write_spec, tmp_path):
    bad = write_spec("name: bad\nsource: test\ninput: [3, 8, 8]\nlayers:\n  - fc: {op: dense, out: 2}\n")
    result = CliRunner().invoke(main, ["diagram", str(bad), "-o", str(tmp_path / "bad.dot")])
    assert result.exit_code == 1
    assert "E404" in result.output
    assert not (tmp_path / "bad.dot").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--expand", "--depth", "1"],
        ["--direction", "BT"],
        ["--format", "gif"],
        ["--depth", "-1"],
        ["--set", "novalue"],
        [str(SPECS / "vgg16.yaml"), "-o", "x.dot"],  # -o with two specs
        ["-o", "x.dot", "--format", "svg"],
    ],
)
def test_cli_usage_errors_exit_2(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["diagram", str(SPECS / "lenet.yaml"), *args])
    assert result.exit_code == 2, result.output


def test_cli_no_spec_and_no_specs_dir_exits_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["diagram"])
    assert result.exit_code == 2
    assert "no SPEC" in result.output


def test_cli_missing_dot_exits_1_and_keeps_the_dot_file(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    out = tmp_path / "lenet.svg"
    result = CliRunner().invoke(main, ["diagram", str(SPECS / "lenet.yaml"), "-o", str(out)])
    assert result.exit_code == 1
    assert "apt-get install graphviz" in result.output and "brew install graphviz" in result.output
    assert (tmp_path / "lenet.dot").exists() and not out.exists()


def test_cli_format_from_output_suffix(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no rendering: only the .dot is written
    result = CliRunner().invoke(main, ["diagram", str(SPECS / "lenet.yaml"), "-o", str(tmp_path / "l.png")])
    assert result.exit_code == 1
    assert "dot -Tpng" in result.output
