"""Bad inputs of issue 14 that are not one broken spec (those are in
``tests/corpus/``): files that are not regular, YAML merge keys, options and
output paths. Each ends in a clear message and exit 1 or 2, never a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from archspec.cli import main
from archspec.schema.yamlload import load_yaml

SPEC = "name: net\nsource: test\ninput: [3, 8, 8]\nlayers:\n  - conv: {op: conv2d, out: 4, kernel: 3}\n"


def run(*args: str) -> tuple[int, str]:
    """Exit code and stdout + stderr of an archspec command; fails on a traceback."""
    result = CliRunner().invoke(main, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout + result.stderr


# ---------------------------------------------------------------------------
# Reading spec files


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this OS")
def test_a_fifo_is_refused_without_blocking(tmp_path: Path):
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    code, out = run("validate", str(fifo))
    assert code == 1
    assert "E001" in out and "FIFO" in out and "not a regular file" in out


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_an_endless_device_is_refused():
    code, out = run("validate", "/dev/zero")
    assert code == 1
    assert "/dev/zero: error[E001]: is a device or socket, not a regular file" in out


def test_a_file_growing_past_the_cap_is_read_no_further(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The size is checked on what is read, not only on what stat() says."""
    from archspec.schema import yamlload

    path = tmp_path / "spec.yaml"
    path.write_text(SPEC + "# padding\n" * 20)
    monkeypatch.setattr(yamlload, "MAX_FILE_BYTES", len(SPEC))
    code, out = run("validate", str(path))
    assert code == 1
    assert f"larger than {len(SPEC):,} bytes" in out


# ---------------------------------------------------------------------------
# YAML merge keys (YAML 1.1): keys written beside '<<' override merged ones


def test_merge_key_with_an_override(tmp_path: Path):
    path = tmp_path / "spec.yaml"
    path.write_text(
        "name: net\nsource: test\ninput: [3, 32, 32]\nlayers:\n"
        "  - conv1: &c {op: conv2d, out: 8, kernel: 3}\n"
        "  - conv2: {<<: *c, out: 16}\n"
        "  - conv3: &s {op: conv2d, out: 4, kernel: 5, stride: 2}\n"
        "  - conv4: {<<: [*c, *s], padding: 1}\n"
    )
    doc, _ = load_yaml(path)
    layers = [dict(item) for item in doc["layers"]]
    assert dict(layers[1]["conv2"]) == {"op": "conv2d", "kernel": 3, "out": 16}
    # Of two merged mappings the first wins (kernel 3, out 8); stride only the second has.
    assert dict(layers[3]["conv4"]) == {"op": "conv2d", "out": 8, "kernel": 3, "stride": 2, "padding": 1}
    code, out = run("validate", str(path))
    assert code == 0, out


def test_a_key_written_twice_beside_a_merge_is_still_a_duplicate(tmp_path: Path):
    path = tmp_path / "spec.yaml"
    path.write_text(
        "name: net\nsource: test\ninput: [3, 32, 32]\nlayers:\n"
        "  - conv1: &c {op: conv2d, out: 8, kernel: 3}\n"
        "  - conv2: {<<: *c, out: 16, out: 4}\n"
    )
    code, out = run("validate", str(path))
    assert code == 1
    assert ":6:30: error[E104]: duplicate key 'out' (first at line 6, column 21)" in out
