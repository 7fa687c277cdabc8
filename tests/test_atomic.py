"""Nothing half-written: interrupted or failed builds leave whole files.

``archspec build`` and ``compile`` produce every output in memory, format it,
and only then write, file by file, each through a temporary file and
``os.replace``. So an interruption in the middle of writing (Ctrl-C, a full
disk) leaves every file either as it was or complete and new, and removes its
temporary file; a spec that fails (diagnostics, code generation, formatting)
has its files left as they were.

The interruption is simulated where it hurts most: ``os.replace`` of the
writer raises after N files (the N+1st temporary file is written, not yet in
place), or a write fails half way (a full disk). Diagrams are stubbed (no
``dot`` needed): what is checked is the writing, not the drawing.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from archspec import build as build_module
from archspec.cli import main
from archspec.codegen import EMITTERS, writer
from archspec.codegen.model import CodegenError
from archspec.codegen.writer import FormatError, write_atomic
from tests.conftest import SPECS


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def project(tmp_path, monkeypatch):
    """Two specs, built once into generated/ (diagrams stubbed)."""
    (tmp_path / "specs").mkdir()
    for name in ("lenet", "nin"):
        shutil.copy(SPECS / f"{name}.yaml", tmp_path / "specs")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        build_module, "diagrams", lambda compiled: {f"{c.graph.name}/{c.graph.name}.svg": "<svg/>" for c in compiled}
    )
    result = run("build")
    assert result.exit_code == 0, result.output
    return tmp_path


def change_specs(root: Path) -> None:
    """An edit that changes the code and the table of both specs."""
    for path in (root / "specs").glob("*.yaml"):
        text = path.read_text()
        assert "  num_classes: 2\n" in text
        path.write_text(text.replace("  num_classes: 2\n", "  num_classes: 7\n"))


class Interrupted(KeyboardInterrupt):
    pass


def interrupt_replace_after(monkeypatch, n: int) -> list[str]:
    """``os.replace`` in the writer raises after ``n`` calls; returns the
    temporary files it was called with."""
    seen: list[str] = []
    real = os.replace

    class OsWithFlakyReplace:
        def __getattr__(self, name):
            return getattr(os, name)

        @staticmethod
        def replace(src, dst):
            seen.append(src)
            if len(seen) > n:
                assert Path(src).exists(), "the temporary file is written before the rename"
                raise Interrupted
            return real(src, dst)

    monkeypatch.setattr(writer, "os", OsWithFlakyReplace())
    return seen


def assert_old_or_new(root: Path, old: dict[str, bytes], new: dict[str, bytes]) -> tuple[int, int]:
    """Every file under ``root`` is its old or its new content; no temporary
    file is left. Returns how many are new and how many old."""
    now = snapshot(root)
    assert not [p for p in now if Path(p).name.startswith(".") or p.endswith(".tmp")], "a temporary file is left"
    assert set(now) <= set(old) | set(new)
    fresh = stale = 0
    for rel, content in now.items():
        assert content in (old.get(rel), new.get(rel)), f"{rel} is neither its old nor its new content"
        fresh += content == new.get(rel) != old.get(rel)
        stale += content == old.get(rel) != new.get(rel)
    return fresh, stale


@pytest.mark.parametrize("n", [0, 1, 4, 8])
def test_an_interrupted_build_leaves_old_or_new_files(project, monkeypatch, n):
    gen = project / "generated"
    old = snapshot(gen)
    change_specs(project)
    assert run("build", "-o", "expected").exit_code == 0
    new = snapshot(project / "expected")
    changing = sum(new[rel] != old.get(rel) for rel in new)
    assert changing > n + 1

    seen = interrupt_replace_after(monkeypatch, n)
    result = run("build")
    assert result.exit_code == 1 and "Aborted!" in result.output  # click's answer to Ctrl-C
    assert len(seen) == n + 1
    fresh, stale = assert_old_or_new(gen, old, new)
    assert fresh == n and stale == changing - n

    monkeypatch.undo()  # the next build finishes the job
    monkeypatch.chdir(project)
    monkeypatch.setattr(
        build_module, "diagrams", lambda compiled: {f"{c.graph.name}/{c.graph.name}.svg": "<svg/>" for c in compiled}
    )
    assert run("build").exit_code == 0
    assert snapshot(gen) == new


@pytest.mark.parametrize("n", [0, 3])
def test_an_interrupted_compile_leaves_old_or_new_files(project, monkeypatch, n):
    assert run("compile", "specs/lenet.yaml", "specs/nin.yaml", "-t", "all", "-o", "out").exit_code == 0
    old = snapshot(project / "out")
    change_specs(project)
    # The new files, written where they go (their header names the -o), then the old ones put back.
    assert run("compile", "specs/lenet.yaml", "specs/nin.yaml", "-t", "all", "-o", "out").exit_code == 0
    new = snapshot(project / "out")
    for rel, content in old.items():
        (project / "out" / rel).write_bytes(content)

    seen = interrupt_replace_after(monkeypatch, n)
    result = run("compile", "specs/lenet.yaml", "specs/nin.yaml", "-t", "all", "-o", "out")
    assert result.exit_code == 1 and "Aborted!" in result.output and len(seen) == n + 1
    fresh, stale = assert_old_or_new(project / "out", old, new)
    assert fresh == n and stale == 2 * len(EMITTERS) - n


def test_a_full_disk_in_the_middle_of_a_file_leaves_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "net.py"
    target.write_text("old\n")
    real_fdopen = os.fdopen

    class HalfWritten:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

    class OsWithFullDisk:
        def __getattr__(self, name):
            return getattr(os, name)

        @staticmethod
        def fdopen(fd, mode):
            return HalfWritten(real_fdopen(fd, mode))

    monkeypatch.setattr(writer, "os", OsWithFullDisk())
    with pytest.raises(OSError, match="No space"):
        write_atomic(target, "new content\n" * 1000)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["net.py"]


def test_write_atomic_keeps_permissions_and_gives_new_files_the_umasks(tmp_path):
    kept = tmp_path / "kept.py"
    kept.write_text("old\n")
    kept.chmod(0o640)
    assert write_atomic(kept, "new\n")
    assert stat.S_IMODE(kept.stat().st_mode) == 0o640
    umask = os.umask(0o022)
    try:
        assert write_atomic(tmp_path / "sub" / "fresh.py", "new\n")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "sub" / "fresh.py").stat().st_mode) == 0o644  # not mkstemp's 0600
    assert not write_atomic(kept, "new\n")  # unchanged content: not rewritten


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(CodegenError("nin: cannot write this"), id="codegen"),
        pytest.param(FormatError("ruff check failed on generated code"), id="format"),
    ],
)
def test_a_spec_that_fails_generation_leaves_every_file_alone(project, monkeypatch, failure):
    gen = project / "generated"
    old = snapshot(gen)
    change_specs(project)
    if isinstance(failure, CodegenError):
        real = EMITTERS["keras"]

        def emit(model):
            if model.compiled.graph.name == "nin":
                raise failure
            return real(model)

        monkeypatch.setitem(EMITTERS, "keras", emit)
    else:

        def format_many(sources):
            raise failure

        monkeypatch.setattr(build_module, "format_many", format_many)
    for args in (["build"], ["compile", "specs/lenet.yaml", "specs/nin.yaml", "-t", "all", "-o", "generated"]):
        result = run(*args)
        assert result.exit_code == 1, result.output
        assert "could not generate code" in result.output and "Traceback" not in result.output
        assert snapshot(gen) == old


def test_a_spec_with_errors_leaves_its_files_alone_and_the_others_are_written(project):
    gen = project / "generated"
    old = snapshot(gen)
    change_specs(project)
    nin = project / "specs" / "nin.yaml"
    nin.write_text(nin.read_text().replace("input: [", "input: [-", 1))
    result = run("build")
    assert result.exit_code == 1
    assert "nin.yaml:" in result.output and "1 spec failed; their files were left as they were" in result.output
    now = snapshot(gen)
    assert {rel: now[rel] for rel in now if rel.startswith("nin/")} == {r: old[r] for r in old if r.startswith("nin/")}
    assert all(now[rel] != old[rel] for rel in now if rel.startswith("lenet/") and not rel.endswith(".svg"))
