"""Bad inputs of issue 14 that are not one broken spec (those are in
``tests/corpus/``): files that are not regular, YAML merge keys, options and
output paths. Each ends in a clear message and exit 1 or 2, never a traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from archspec.cli import main
from archspec.schema.yamlload import load_yaml
from tests.conftest import SPECS

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


# ---------------------------------------------------------------------------
# Output paths and option values


@pytest.fixture
def spec_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A valid spec in a fresh working directory, beside a file named ``afile``."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.yaml").write_text(SPEC)
    (tmp_path / "afile").write_text("not a folder")
    return "net.yaml"


@pytest.mark.parametrize(
    "args",
    [
        ["compile", "net.yaml", "-t", "pytorch", "-o", "afile/sub"],
        ["build", "--specs", ".", "-o", "afile/sub"],
        ["diagram", "net.yaml", "--format", "dot", "-o", "afile/x.dot"],
        ["export", "net.yaml", "--format", "onnx", "-o", "afile/x.onnx"],
    ],
)
def test_an_output_under_a_file_is_a_usage_error(spec_file: str, args: list[str]):
    code, out = run(*args)
    assert code == 2
    assert "afile is a file, not a folder" in out
    assert Path("afile").read_text() == "not a folder"


def test_a_gallery_under_a_file_is_refused(spec_file: str):
    code, out = run("gallery", "net.yaml", "-o", "afile/site")
    assert code == 1
    assert "error: -o afile/site: afile is a file, not a folder; give a path in a folder" in out
    assert Path("afile").read_text() == "not a folder"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux' /proc")
def test_an_output_that_cannot_be_created_is_one_line(spec_file: str):
    code, out = run("compile", "net.yaml", "-t", "pytorch", "-o", "/proc/x")
    assert code == 1
    assert out.strip().splitlines()[-1].startswith("error: cannot write /proc/x: ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-o", "x.jpg"], "-o x.jpg: archspec draws svg, png, pdf, dot"),
        (["-o", "x.svg", "--format", "png"], "-o x.svg names a .svg file but --format is png; name it .png"),
        (["-o", "x", "--format", "dot"], "-o x: archspec draws"),
    ],
)
def test_a_drawing_format_follows_its_suffix(spec_file: str, args: list[str], message: str):
    code, out = run("diagram", "net.yaml", *args)
    assert code == 2
    assert message in out
    assert not list(Path().glob("x*"))


def test_the_format_is_taken_from_the_suffix(spec_file: str):
    code, out = run("diagram", "net.yaml", "-o", "drawing.dot")
    assert code == 0, out
    assert "\ndigraph " in Path("drawing.dot").read_text()


def test_a_negative_seed_is_a_usage_error(spec_file: str):
    code, out = run("verify", "net.yaml", "--seed", "-1")
    assert code == 2
    assert "'--seed': -1 is not in the range 0<=x<=4294967295" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["validate", "net.yaml", "--set", "a=1", "--set", "a=2"], "--set a is given twice; give each parameter once"),
        (["verify", "net.yaml", "--max-memory", "nan"], "nan is not a size; give a number of GiB (inf: no limit)"),
        (["export", "net.yaml", "--format", "onnx", "--max-memory", "nan"], "nan is not a size"),
        (["verify", "net.yaml", "--targets", "all,onnx"], "--targets: 'all' stands alone; give all, or a list of"),
    ],
)
def test_odd_option_values_are_usage_errors(spec_file: str, args: list[str], message: str):
    code, out = run(*args)
    assert code == 2
    assert message in out


@pytest.mark.parametrize("command", [["compile", "-t", "pytorch", "-o", "out"], ["build", "-o", "out"]])
def test_two_specs_with_one_name_are_refused(spec_file: str, command: list[str]):
    Path("specs").mkdir()
    Path("specs/a.yaml").write_text(SPEC)
    Path("specs/b.yaml").write_text(SPEC)
    args = [*command, "specs/a.yaml", "specs/b.yaml"] if command[0] == "compile" else [*command, "--specs", "specs"]
    code, out = run(*args)
    assert code == 1
    assert "specs/a.yaml:1:7: error[E106]: specs/b.yaml is also named 'net'" in out
    assert "specs/b.yaml:1:7: error[E106]: specs/a.yaml is also named 'net'" in out
    assert not Path("out/net").exists()


def test_check_refuses_two_specs_with_one_name(spec_file: str):
    Path("specs").mkdir()
    Path("specs/a.yaml").write_text(SPEC)
    assert run("build", "--specs", "specs", "-o", "out")[0] in (0, 1)  # 1 where Graphviz is missing
    Path("specs/b.yaml").write_text(SPEC)
    code, out = run("check", "--specs", "specs", "-o", "out")
    assert code == 1
    assert "is also named 'net'" in out


def test_a_spec_given_twice_is_compiled_once(spec_file: str):
    code, out = run("compile", "net.yaml", "net.yaml", "-t", "pytorch", "-o", "out")
    assert code == 0, out
    assert out.count("wrote out/net/net_pytorch.py") == 1


@pytest.mark.parametrize("name", ["chainer", "torch", "keras", "tensorflow", "numpy"])
def test_a_spec_named_like_a_framework_compiles(spec_file: str, name: str):
    """Its folder, generated/<name>/, must not make ruff sort the framework's import as the file's own."""
    Path("net.yaml").write_text(SPEC.replace("name: net", f"name: {name}"))
    code, out = run("compile", "net.yaml", "-t", "all", "-o", "out")
    assert code == 0, out
    assert len(list(Path("out", name).glob(f"{name}_*.py"))) == 4


def test_validate_prints_the_trainable_count(tmp_path: Path):
    path = tmp_path / "bn.yaml"
    path.write_text(SPEC + "  - bn: {op: batch_norm}\n")
    code, out = run("validate", str(path))
    assert code == 0
    assert "(net: 2 nodes, 120 trainable parameters, 8 non-trainable, 128 total)" in out


# ---------------------------------------------------------------------------
# Sizes: memory and depth


def test_verify_refuses_a_network_too_large_for_memory():
    code, out = run("verify", str(SPECS / "efficientnet_b0.yaml"), "--set", "width_mult=50")
    assert code == 1
    assert "efficientnet_b0.yaml:1:7: error[E305]: running efficientnet_b0 in 4 framework(s) needs about" in out
    assert "9,511,093,600 weights x 5 copies" in out
    assert "over the limit of 8 GiB" in out and "--max-memory" in out


def test_the_memory_limit_is_an_option(tmp_path: Path):
    path = tmp_path / "net.yaml"
    path.write_text(SPEC)
    code, out = run("verify", str(path), "--targets", "pytorch", "--max-memory", "1e-6")
    assert code == 1
    assert "112 weights x 2 copies + 144 activation values x batch 2, 4 bytes each; over the limit of 1e-06 GiB" in out


def test_export_refuses_a_network_too_large_for_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    pytest.importorskip("onnxscript")
    monkeypatch.chdir(tmp_path)
    code, out = run("export", str(SPECS / "efficientnet_b0.yaml"), "--format", "onnx", "--set", "width_mult=50")
    assert code == 1
    assert "error[E305]: exporting efficientnet_b0 to ONNX needs about" in out
    assert "9,511,093,600 weights x 3 copies" in out and "over the limit of 8 GiB" in out
    Path("net.yaml").write_text(SPEC)
    code, out = run("export", "net.yaml", "--format", "onnx", "--max-memory", "1e-6")
    assert code == 1
    assert "112 weights x 3 copies + 144 activation values x batch 2, 4 bytes each; over the limit of 1e-06 GiB" in out
    assert list(tmp_path.iterdir()) == [tmp_path / "net.yaml"]


def test_a_gallery_with_onnx_refuses_a_network_too_large_for_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    pytest.importorskip("onnxscript")
    pytest.importorskip("pygments")
    from archspec.passes import count

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(count, "MAX_MEMORY_GIB", 1e-6)
    Path("net.yaml").write_text(SPEC)
    code, out = run("gallery", "net.yaml", "--onnx", "-o", "site")
    assert code == 1
    assert "error: net: exporting it to ONNX needs about 0.0 GiB: 112 weights x 3 copies" in out
    assert "over 1e-06 GiB (archspec export --max-memory); no gallery written" in out
    assert not Path("site").exists()


@pytest.mark.slow
def test_keras_runs_a_chain_deeper_than_pythons_recursion_limit(tmp_path: Path):
    """Keras walks its functional graph recursively; the runtime makes room."""
    keras = pytest.importorskip("keras")
    import numpy as np

    from archspec.runtime import keras as runtime

    depth = 1500
    assert sys.getrecursionlimit() < depth
    module = type(sys)("deep")
    inputs = keras.Input((2, 2, 1))

    def deep() -> keras.Model:
        x = inputs
        for _ in range(depth):
            x = keras.layers.ReLU()(x)
        return keras.Model(inputs, x)

    module.Deep = deep
    model = runtime.build(module, "Deep")
    (out,) = runtime.run(model, -np.ones((1, 1, 2, 2), np.float32))
    assert out.shape == (1, 1, 2, 2) and not out.any()


# ---------------------------------------------------------------------------
# The header of a file written by compile


def test_the_header_names_the_command_that_wrote_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    Path("my specs").mkdir()
    Path("my specs/net.yaml").write_text(SPEC)
    code, out = run("compile", "my specs/net.yaml", "-t", "pytorch", "-o", "out dir", "--input", "3x9x9")
    assert code == 0, out
    second = Path("out dir/net/net_pytorch.py").read_text().splitlines()[1]
    assert second == "# and run `archspec compile 'my specs/net.yaml' --target pytorch -o 'out dir' --input 3x9x9`."


def test_the_header_of_a_built_file_names_build():
    second = (SPECS.parent / "generated" / "lenet" / "lenet_keras.py").read_text().splitlines()[1]
    assert second == "# and run `archspec build` (or `archspec compile specs/lenet.yaml --target keras`)."
