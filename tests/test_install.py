"""``pip install archspec`` from a wheel, in a clean venv: the light install.

The wheel is built from a copy of the sources (so that no build/ or egg-info
is left in the repository) with the venv's setuptools; the venv gets only the
core dependencies, from the package index pip is configured with here,
constrained to requirements/lock.txt. Specs, tables and code work there;
nothing that runs a network is installed, and ``archspec verify`` says which
extra to install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


# Without PYTHONPATH: the tests run with the repository on it, and there pip would find
# archspec installed already and the venv's archspec would import the repository's.
ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def run(*command: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in command], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600)


def ok(*command: str | Path, cwd: Path = ROOT) -> str:
    done = run(*command, cwd=cwd)
    assert done.returncode == 0, f"{' '.join(map(str, command))}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def light_install(tmp: Path) -> Path:
    """A fresh venv with archspec's wheel and nothing else; its bin/ folder."""
    src = tmp / "src"
    shutil.copytree(ROOT / "archspec", src / "archspec", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src)
    ok(sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", tmp / "dist", src)
    (wheel,) = (tmp / "dist").glob("archspec-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for target in ("pytorch", "tensorflow", "keras", "chainer"):
        assert f"archspec/templates/{target}.py.j2" in names
    assert "archspec/extras.py" in names
    assert not [n for n in names if n.startswith(("tests/", "specs/", "generated/"))]

    ok(sys.executable, "-m", "venv", tmp / "venv")
    bin_dir = tmp / "venv" / "bin"
    ok(bin_dir / "pip", "install", "--quiet", "-c", ROOT / "requirements" / "lock.txt", wheel)
    return bin_dir


def test_the_wheel_compiles_specs_and_verify_asks_for_the_extra(tmp_path):
    venv = light_install(tmp_path)
    assert ok(venv / "archspec", "--version") == "archspec, version 0.1.0\n"

    table = ok(venv / "archspec", "summary", "specs/lenet.yaml")
    assert table.startswith("lenet  (specs/lenet.yaml)\n")
    assert "Total params:         58,866" in table

    out = ok(venv / "archspec", "compile", "specs/lenet.yaml", "--target", "pytorch", "-o", tmp_path / "out")
    assert out == f"wrote {tmp_path}/out/lenet/lenet_pytorch.py\n"
    written = (tmp_path / "out" / "lenet" / "lenet_pytorch.py").read_text()
    # the pinned ruff formats it; the header's second line names the command that wrote it
    assert written.splitlines()[2:] == (ROOT / "generated" / "lenet" / "lenet_pytorch.py").read_text().splitlines()[2:]

    probe = "import importlib.util as u; print([m for m in ('numpy', 'torch') if u.find_spec(m)])"
    assert ok(venv / "python", "-c", probe) == "[]\n"

    done = run(venv / "archspec", "verify", "specs/lenet.yaml", "--targets", "pytorch")
    assert done.returncode == 2
    assert done.stderr == (
        "Error: archspec verify needs PyTorch: pip install 'archspec[pytorch]' (not installed: numpy, torch)\n"
    )
