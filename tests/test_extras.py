"""A light install: which extra each command needs, and the message when it is missing.

A package is made "not installed" by putting None in ``sys.modules`` under its
name: ``import`` then raises ModuleNotFoundError and ``importlib.util.find_spec``
finds nothing, as in an environment without it. The commands that need no extra
run in a fresh interpreter where every optional package is missing that way
(tests/test_install.py does the same in a real venv from the wheel).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from archspec import extras
from archspec.cli import main
from tests.conftest import ROOT, SPECS

OPTIONAL = sorted({m for e in extras.EXTRAS.values() for m in e.modules} - {"pkg_resources"})


def missing(monkeypatch, *modules: str) -> None:
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def test_every_module_the_extras_name_is_importable_here():
    """scripts/setup installs every extra: a misspelt module name would make a command refuse to run."""
    assert [m for m in OPTIONAL if not extras.installed(m)] == []
    extras.require("archspec verify", *extras.EXTRAS)


def test_the_message_names_the_extra_and_the_command_to_install_it(monkeypatch):
    missing(monkeypatch, "torch")
    with pytest.raises(extras.MissingExtra) as err:
        extras.require("archspec verify", "pytorch", "keras")
    assert str(err.value) == "archspec verify needs PyTorch: pip install 'archspec[pytorch]' (not installed: torch)"
    assert err.value.extras == ["pytorch"]


def test_several_missing_extras_are_one_message_and_one_pip_command(monkeypatch):
    missing(monkeypatch, "numpy", "chainer", "tqdm")
    with pytest.raises(extras.MissingExtra) as err:
        extras.require("archspec test", "chainer", "train", "chainer")
    assert str(err.value) == (
        "archspec test needs Chainer and the training tools: pip install 'archspec[chainer,train]' "
        "(not installed: numpy, chainer, tqdm)"
    )


def test_an_import_error_names_the_first_extra_that_provides_the_module(monkeypatch):
    missing(monkeypatch, "tensorflow")
    found = extras.from_import_error("archspec train", ModuleNotFoundError("no", name="tensorflow.keras"))
    assert str(found) == (
        "archspec train needs TensorFlow: pip install 'archspec[tensorflow]' (not installed: tensorflow)"
    )


def test_an_import_error_of_another_or_an_installed_module_is_not_an_extra():
    assert extras.from_import_error("archspec x", ModuleNotFoundError("no", name="not_a_module_here")) is None
    # numpy is installed: a missing submodule of it is a bug, not a missing extra
    assert extras.from_import_error("archspec x", ModuleNotFoundError("no", name="numpy.nowhere")) is None


def cli(*args: str):
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output
    return result


@pytest.mark.parametrize(
    ("blocked", "args", "message"),
    [
        (
            ["tensorflow"],
            ["verify", "specs/lenet.yaml", "--targets", "keras,chainer"],
            "archspec verify needs Keras: pip install 'archspec[keras]' (not installed: tensorflow)",
        ),
        (  # the reference always runs
            ["torch"],
            ["verify", "specs/lenet.yaml", "--targets", "chainer"],
            "archspec verify needs PyTorch: pip install 'archspec[pytorch]' (not installed: torch)",
        ),
        (
            ["sklearn"],
            ["train", "specs/lenet.yaml", "--target", "pytorch"],
            "archspec train needs the training tools: pip install 'archspec[train]' (not installed: sklearn)",
        ),
        (
            ["keras"],
            ["train", "specs/lenet.yaml", "--target", "keras", "--iters", "1"],
            "archspec train needs Keras: pip install 'archspec[keras]' (not installed: keras)",
        ),
        (
            ["mpi4py"],
            ["train", "specs/lenet.yaml", "--target", "chainer", "--nproc", "2"],
            "archspec train needs mpi4py: pip install 'archspec[distributed]' (not installed: mpi4py)",
        ),
        (
            ["chainer", "matplotlib"],
            ["test", "specs/lenet.yaml", "--target", "chainer", "--weights", "nowhere.npz"],
            "archspec test needs Chainer and the training tools: pip install 'archspec[chainer,train]' "
            "(not installed: chainer, matplotlib)",
        ),
        (
            ["PIL"],
            ["report", "nowhere"],
            "archspec report needs the training tools: pip install 'archspec[train]' (not installed: PIL)",
        ),
        (
            ["torch"],
            ["weights", "export", "w.npz", "--spec", "specs/lenet.yaml", "--target", "pytorch", "-o", "w.pt"],
            "archspec weights export needs PyTorch: pip install 'archspec[pytorch]' (not installed: torch)",
        ),
    ],
)
def test_a_command_without_its_extra_says_what_to_install(monkeypatch, tmp_path, blocked, args, message):
    monkeypatch.chdir(ROOT)
    missing(monkeypatch, *blocked)
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert result.output == f"Error: {message}\n"


def test_an_import_of_a_missing_extra_anywhere_in_a_command_is_the_same_message(monkeypatch):
    """The safety net: a command that imports a missing extra without checking first."""

    def needs_torch() -> None:
        import torch  # noqa: F401

    monkeypatch.setitem(main.commands, "probe", click.Command("probe", callback=needs_torch))
    missing(monkeypatch, "torch")
    result = cli("probe")
    assert result.exit_code == 2
    assert result.output.startswith("Error: archspec probe needs PyTorch: pip install 'archspec[pytorch]'")


def test_train_help_needs_no_extra(monkeypatch):
    missing(monkeypatch, *OPTIONAL)
    result = cli("train", "--help")
    assert result.exit_code == 0
    assert "--target" in result.output


# ----------------------------------------------------------------------------
# The commands of a light install, in an interpreter without any optional package

LIGHT = (
    "import sys\n"
    f"for name in {OPTIONAL!r}:\n"
    "    sys.modules[name] = None\n"
    "from archspec.cli import main\n"
    "main(sys.argv[1:], prog_name='archspec')\n"
)


def light(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", LIGHT, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_light_commands_import_no_optional_package(tmp_path):
    lenet = "specs/lenet.yaml"  # relative: the header of the generated files names it
    for args in (
        ["validate", lenet],
        ["summary", lenet, "--format", "json"],
        ["ops"],
        ["compile", lenet, "--target", "all", "-o", str(tmp_path)],
        ["diagram", lenet, "--format", "dot", "-o", str(tmp_path / "lenet.dot")],
        ["--version"],
    ):
        done = light(*args)
        assert done.returncode == 0, f"archspec {' '.join(args)}:\n{done.stderr}"
    for target in ("pytorch", "tensorflow", "keras", "chainer"):
        written = tmp_path / "lenet" / f"lenet_{target}.py"
        # the same code but for the header's second line, which names the command that wrote it
        want = (ROOT / "generated" / "lenet" / f"lenet_{target}.py").read_text().splitlines()
        got = written.read_text().splitlines()
        assert got[2:] == want[2:] and "archspec compile specs/lenet.yaml" in got[1]
    assert 'digraph "lenet"' in (tmp_path / "lenet.dot").read_text()


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz' dot is not installed")
def test_build_and_check_import_no_optional_package(tmp_path):
    (tmp_path / "specs").mkdir()
    shutil.copy(SPECS / "lenet.yaml", tmp_path / "specs")
    built = light("build", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "generated" / "lenet" / "lenet.svg").is_file()
    checked = light("check", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "generated/ is current" in checked.stdout


def test_verify_without_any_extra_names_every_target(tmp_path):
    done = light("verify", str(SPECS / "lenet.yaml"))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "pip install 'archspec[pytorch,tensorflow,keras,chainer]'" in done.stderr
