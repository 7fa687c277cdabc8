"""Exit codes of every command, as README.md's table documents them.

``0`` success; ``1`` invalid input (diagnostics on stderr), stale output
(``check``), a missing Graphviz (``build``, ``diagram``), a failed
generation (reported as a bug in archspec) or an interruption; ``2`` a usage
error (unknown command, option or target, bad option value, ``--set``
without ``=``, no specs found). Every command is run in each of its outcomes,
and none prints a traceback. Diagrams are stubbed where only the exit code
matters, so the file runs without Graphviz.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from archspec import build as build_module
from archspec.cli import main
from archspec.codegen import EMITTERS
from tests.conftest import ROOT, SPECS

BROKEN = "name: net\nsource: test\ninput: [3, 8, 8]\nlayers:\n  - a: {op: conv2, out: 4, kernel: 1}\n"


@pytest.fixture
def project(tmp_path, monkeypatch):
    """specs/lenet.yaml, a broken spec beside it (not in specs/), no Graphviz needed."""
    (tmp_path / "specs").mkdir()
    shutil.copy(SPECS / "lenet.yaml", tmp_path / "specs")
    (tmp_path / "broken.yaml").write_text(BROKEN)
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        build_module, "diagrams", lambda compiled: {f"{c.graph.name}/{c.graph.name}.svg": "<svg/>" for c in compiled}
    )
    return tmp_path


def run(*args: str):
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


CASES = [
    # validate
    (0, ["validate", "specs/lenet.yaml"]),
    (1, ["validate", "broken.yaml"]),
    (1, ["validate", "specs/lenet.yaml", "broken.yaml"]),  # any invalid spec
    (1, ["validate", "nowhere.yaml"]),  # a missing file is a diagnostic (E001)
    (1, ["validate", "specs/lenet.yaml", "--set", "nope=1"]),  # an unknown parameter (E203)
    (1, ["validate", "specs/lenet.yaml", "--set", "num_classes=many"]),  # a bad value (E304)
    (2, ["validate"]),
    (2, ["validate", "specs/lenet.yaml", "--set", "num_classes"]),
    (2, ["validate", "specs/lenet.yaml", "--set", "num_classes=2", "--set", "num_classes=3"]),  # which one?
    (2, ["validate", "specs"]),  # a directory
    (2, ["validate", "--strict", "specs/lenet.yaml"]),
    # summary
    (0, ["summary", "specs/lenet.yaml"]),
    (0, ["summary", "specs/lenet.yaml", "--format", "json", "--set", "num_classes=5"]),
    (1, ["summary", "broken.yaml"]),
    (2, ["summary"]),
    (2, ["summary", "specs/lenet.yaml", "--format", "xml"]),
    (2, ["summary", "specs/lenet.yaml", "--depth", "-1"]),
    (2, ["summary", "specs/lenet.yaml", "broken.yaml"]),  # one SPEC only
    # compile
    (0, ["compile", "specs/lenet.yaml", "--target", "all", "-o", "out"]),
    (0, ["compile", "specs/lenet.yaml", "-t", "keras", "-t", "pytorch", "-o", "out"]),
    (1, ["compile", "broken.yaml", "-t", "all", "-o", "out"]),
    (1, ["compile", "specs/lenet.yaml", "broken.yaml", "-t", "pytorch", "-o", "out"]),  # writes lenet's, exits 1
    (2, ["compile", "specs/lenet.yaml"]),  # no --target
    (2, ["compile", "specs/lenet.yaml", "-t", "caffe"]),
    (2, ["compile", "-t", "all"]),  # no SPEC
    (2, ["compile", "specs/lenet.yaml", "-t", "all", "--set", "num_classes"]),
    # build
    (0, ["build", "-o", "out"]),
    (1, ["build", "--specs", ".", "-o", "out"]),  # broken.yaml is among the specs
    (2, ["build", "--specs", "empty"]),  # no specs
    (2, ["build", "--specs", "nowhere"]),
    (2, ["build", "--target", "pytorch"]),
    # check
    (1, ["check", "-o", "out"]),  # nothing built yet: missing files
    (1, ["check", "--specs", ".", "-o", "out"]),  # an invalid spec
    (2, ["check", "--specs", "empty"]),
    (2, ["check", "--stale"]),
    # diagram (--format dot needs no Graphviz)
    (0, ["diagram", "specs/lenet.yaml", "--format", "dot", "-o", "lenet.dot"]),
    (1, ["diagram", "broken.yaml", "--format", "dot", "-o", "broken.dot"]),
    (2, ["diagram", "specs/lenet.yaml", "--expand", "--depth", "1"]),
    (2, ["diagram", "specs/lenet.yaml", "broken.yaml", "-o", "x.svg"]),  # -o takes one SPEC
    (2, ["diagram", "specs/lenet.yaml", "-o", "x.dot", "--format", "svg"]),
    (2, ["diagram", "specs/lenet.yaml", "--direction", "RL"]),
    # gallery (real sites: tests/test_gallery.py)
    (0, ["gallery", "specs/lenet.yaml", "-o", "site"]),
    (0, ["gallery"]),  # every specs/*.yaml, to site/
    (1, ["gallery", "specs/lenet.yaml", "broken.yaml", "-o", "site"]),
    (1, ["gallery", "specs/lenet.yaml", "-o", "specs"]),  # a folder that is not a gallery
    (2, ["gallery", "specs"]),  # a directory
    (2, ["gallery", "--format", "pdf"]),
    # train and test (real runs: tests/test_train.py)
    (0, ["train", "--list-data"]),
    (1, ["train", "broken.yaml", "-t", "pytorch"]),
    (1, ["train", "specs/lenet.yaml", "-t", "pytorch", "--iters", "0"]),
    (1, ["train", "specs/lenet.yaml", "-t", "pytorch", "--data", "nowhere"]),
    (1, ["train", "--resume", "empty"]),  # not a run directory
    (2, ["train", "specs/lenet.yaml"]),  # no --target
    (2, ["train", "specs/lenet.yaml", "-t", "caffe"]),
    (2, ["train", "specs/lenet.yaml", "-t", "pytorch", "--input", "3x0x32"]),
    (1, ["train", "specs/lenet.yaml", "-t", "pytorch", "--lr", "0.01,0", "--iters", "1"]),  # a grid's value
    (2, ["train", "specs/lenet.yaml", "-t", "pytorch", "--lr", "0.01,,0.1"]),
    (0, ["test", "--help"]),
    (1, ["test", "specs/lenet.yaml", "-t", "pytorch", "--weights", "nowhere.npz"]),
    (2, ["test", "specs/lenet.yaml", "-t", "pytorch"]),  # no --weights
    # report (real reports: tests/test_grid_report.py)
    (0, ["report", "--help"]),
    (1, ["report", "nowhere"]),
    (2, ["report"]),
    # weights (real exports: tests/test_export_native.py)
    (0, ["weights", "--help"]),
    (1, ["weights", "export", "nowhere.npz", "--spec", "specs/lenet.yaml", "-t", "pytorch", "-o", "x.pt"]),
    (1, ["weights", "export", "x.npz", "--spec", "broken.yaml", "-t", "pytorch", "-o", "x.pt"]),
    (2, ["weights", "export", "x.npz", "-t", "pytorch", "-o", "x.pt"]),  # no --spec
    (2, ["weights", "nope"]),
    # export (real exports: tests/test_onnx.py)
    (0, ["export", "--help"]),
    (1, ["export", "broken.yaml", "--format", "onnx"]),
    (2, ["export", "specs/lenet.yaml"]),  # no --format
    (2, ["export", "specs/lenet.yaml", "--format", "onnx", "--opset", "7"]),
    # ops
    (0, ["ops"]),
    (2, ["ops", "conv2d"]),
    # the group
    (0, ["--help"]),
    (0, ["--version"]),
    (2, ["nope"]),
    (2, []),
]


@pytest.mark.parametrize(("code", "args"), CASES, ids=[" ".join(a) or "(none)" for _, a in CASES])
def test_exit_code(project, code, args):
    result = run(*args)
    assert result.exit_code == code, result.output
    if code == 1 and ("broken.yaml" in args or args[:3] == ["build", "--specs", "."]):
        assert re.search(r"broken\.yaml:\d+:\d+: error\[E201\]", result.output), result.output
    if code == 2 and args:
        assert "Usage:" in result.output or "Error:" in result.output


def test_every_command_has_cases():
    commands = set(main.commands) - {"verify"}  # verify runs the frameworks: tests/test_verify.py
    covered = {args[0] for _, args in CASES if args and args[0] in main.commands}
    assert commands <= covered
    for command in commands:
        codes = {code for code, args in CASES if args and args[0] == command}
        assert 0 in codes or command == "check", command
        assert 2 in codes, command


def test_check_exits_0_when_current_and_1_when_stale(project):
    assert run("build", "-o", "out").exit_code == 0
    assert run("check", "-o", "out").exit_code == 0
    (project / "out" / "lenet" / "lenet_keras.py").write_text("# edited\n")
    result = run("check", "-o", "out")
    assert result.exit_code == 1 and "stale: out/lenet/lenet_keras.py" in result.output


def test_build_and_diagram_without_graphviz_exit_1(project, monkeypatch):
    monkeypatch.undo()
    monkeypatch.chdir(project)
    monkeypatch.setenv("PATH", str(project / "no-such-bin"))
    build = run("build", "-o", "out")
    assert build.exit_code == 1 and "graphviz" in build.output.lower()
    assert (project / "out" / "lenet" / "lenet.dot").exists()
    diagram = run("diagram", "specs/lenet.yaml", "-o", "lenet.svg")
    assert diagram.exit_code == 1 and (project / "lenet.dot").exists()


def test_a_failed_generation_exits_1_and_says_it_is_a_bug(project, monkeypatch):
    from archspec.codegen.model import CodegenError

    def emit(model):
        raise CodegenError("cannot")

    monkeypatch.setitem(EMITTERS, "keras", emit)
    for args in (["compile", "specs/lenet.yaml", "-t", "keras", "-o", "out"], ["build", "-o", "out"]):
        result = run(*args)
        assert result.exit_code == 1 and "This is a bug in archspec" in result.output
    assert not (project / "out").exists()


def test_the_readme_documents_every_exit_code():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Commands") : readme.index("## Diagnostics")]
    for command in main.commands:
        assert f"`{command}`" in section or f"archspec {command}" in section, command
    for code in ("`0`", "`1`", "`2`"):
        assert code in section
    assert Path(ROOT / "README.md").exists()
