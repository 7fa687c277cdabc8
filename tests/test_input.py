"""`--input CxHxW` / `CxL`: another input size than the spec's, in every command
that compiles a spec; shapes, dense sizes, counts and generated code follow it,
and a size the network cannot take is a located diagnostic, never a traceback."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil

import pytest
from click.testing import CliRunner

from archspec.cli import input_option, load, main
from archspec.diagnostics import SpecError
from archspec.passes.expand import MAX_SIZE, parse_input
from archspec.pipeline import compile_spec
from tests.conftest import ROOT, SPECS

ZFNET = str(SPECS / "zfnet.yaml")


def run(*args: str):
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


# -- the parser ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shape"),
    [
        ("3x112x112", (3, 112, 112)),
        ("1x16000", (1, 16000)),
        ("4096", (4096,)),
        (" 3 X 32 x 32 ", (3, 32, 32)),
        (f"1x{MAX_SIZE}", (1, MAX_SIZE)),
    ],
)
def test_parse_input(text: str, shape: tuple[int, ...]) -> None:
    assert parse_input(text) == shape


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "got nothing"),
        ("  ", "got nothing"),
        ("3x", "an empty size"),
        ("3xx32", "an empty size"),
        ("axbxc", "'a' is not a whole number"),
        ("3x32.5x32", "'32.5' is not a whole number"),
        ("3,32,32", "is not a whole number"),
        ("3x²x2", "is not a whole number"),
        ("0x32x32", "from 1 to 1000000, got '0x32x32' (0)"),
        ("3x-32x32", "(-32)"),
        (f"3x{MAX_SIZE + 1}x1", f"({MAX_SIZE + 1})"),
        ("3x" + "9" * 5000 + "x1", "from 1 to 1000000"),
        ("1x2x3x4", "(4 sizes)"),
    ],
)
def test_parse_input_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        parse_input(text)
    assert "CxHxW" in str(info.value) or "whole numbers from 1" in str(info.value)


# -- the pipeline ---------------------------------------------------------------


def test_zfnet_at_112() -> None:
    # conv1 7/2: (112 - 7) // 2 + 1 = 53; pool1 3/2: (53 - 3) // 2 + 1 = 26;
    # conv2 5/2 pad 1: (26 + 2 - 5) // 2 + 1 = 12; pool2: (12 - 3) // 2 + 1 = 5;
    # conv3-5 (3, pad 1) keep 5; pool5: (5 - 3) // 2 + 1 = 2; flatten 256 x 2 x 2 = 1024.
    # Parameters: convs as at 224 (weights do not depend on the size):
    #   96*3*7*7+96 = 14,208; 256*96*5*5+256 = 614,656; 384*256*9+384 = 885,120;
    #   384*384*9+384 = 1,327,488; 256*384*9+256 = 884,992  -> 3,726,464
    # dense: 1024*4096+4096 = 4,198,400; 4096*4096+4096 = 16,781,312; 4096*2+2 = 8,194
    #   -> 20,987,906; total 24,714,370 (at 224: pool5 5x5 -> 6400 features, 46,734,466).
    c = compile_spec(ZFNET, input_shape=(3, 112, 112))
    g = c.graph
    assert g.input_shape == (3, 112, 112)
    assert g.node("conv1.conv").shape == (96, 53, 53)
    assert g.node("pool2").shape == (256, 5, 5)
    assert g.node("pool5").shape == (256, 2, 2)
    assert g.node("flatten").shape == (1024,)
    assert g.node("classifier.0.fc").in_shapes == ((1024,),)
    assert c.counts.total.trainable == 24_714_370
    assert compile_spec(ZFNET).counts.total.trainable == 46_734_466


def test_the_channel_count_follows_too() -> None:
    grey = compile_spec(ZFNET, input_shape=(1, 112, 112))
    assert grey.graph.node("conv1.conv").in_shapes == ((1, 112, 112),)
    # conv1 loses 2 * 96 * 7 * 7 weights
    assert grey.counts.total.trainable == 24_714_370 - 2 * 96 * 49


def test_the_spec_is_not_changed() -> None:
    c = compile_spec(ZFNET, input_shape=(3, 112, 112))
    assert [v.raw for v in c.spec.input] == [3, 224, 224]
    assert compile_spec(ZFNET).graph.input_shape == (3, 224, 224)


def test_a_1d_spec_takes_cxl() -> None:
    # WaveNet's convolutions are causal: any length works, and the shapes follow it.
    c = compile_spec(SPECS / "wavenet.yaml", input_shape=(1, 4000))
    assert c.graph.input_shape == (1, 4000)
    assert c.graph.output_shapes == [(256, 4000)]
    assert c.graph.node("causal").shape == (32, 4000)
    # only the first convolution's weights change: 256 in-channels -> 1
    full = compile_spec(SPECS / "wavenet.yaml")
    assert full.counts.total.trainable - c.counts.total.trainable == 255 * 32 * 2


def errors(path, shape: tuple[int, ...]) -> list[str]:
    with pytest.raises(SpecError) as info:
        compile_spec(path, input_shape=shape)
    return [str(d) for d in info.value.diagnostics]


def test_a_rank_that_is_not_the_specs_is_E404() -> None:
    assert errors(ZFNET, (3, 112)) == [
        "--input 3x112: error[E404]: zfnet's input is 3x224x224, CxHxW, but --input gives 2 sizes; "
        "give --input CxHxW, e.g. --input 3x224x224"
    ]
    (wavenet,) = errors(SPECS / "wavenet.yaml", (1, 64, 64))
    assert "E404" in wavenet and "256x16000, CxL" in wavenet and "give --input CxL" in wavenet


@pytest.mark.parametrize(
    ("name", "shape", "where", "node", "reached"),
    [
        # vgg16: 16 -> 8 -> 4 -> 2 -> 1 after four 2x2 pools; pool5 gets 1x1
        ("vgg16", (3, 16, 16), "specs/vgg16.yaml:45:5", "pool5", "stage5.2.relu (512, 1, 1)"),
        # lenet: conv1 5x5: 8 -> 4; pool1: 2; conv2 5x5 cannot take 2x2
        ("lenet", (3, 8, 8), "specs/lenet.yaml:20:5", "conv2", "act1 (6, 2, 2)"),
        # zfnet: conv1 7/2: 15 -> 5; pool1 3/2: 2; conv2's 5x5 window > 2 + 2 padding; the
        # node is the block's conv line, named by its path
        ("zfnet", (3, 15, 15), "specs/zfnet.yaml:30:9", "conv2.conv", "pool1 (96, 2, 2)"),
    ],
)
def test_too_small_is_a_located_diagnostic(name, shape, where, node, reached) -> None:
    (message,) = errors(SPECS / f"{name}.yaml", shape)
    size = "x".join(map(str, shape))
    assert message.startswith(f"{ROOT / where}: error[E402]: {node}: ")
    assert f"[input: {reached}]" in message
    assert f"the network's input, {size}, came from --input" in message
    assert message.endswith("give a larger --input")


def test_without_input_the_message_does_not_mention_it(write_spec) -> None:
    text = (SPECS / "lenet.yaml").read_text().replace("input: [3, 32, 32]", "input: [3, 8, 8]")
    (message,) = [str(d) for d in pytest.raises(SpecError, compile_spec, write_spec(text)).value.diagnostics]
    assert "error[E402]: conv2:" in message and "--input" not in message


def test_too_large_is_refused() -> None:
    (message,) = errors(ZFNET, (3, 100_000, 100_000))
    assert message.startswith("--input 3x100000x100000: error[E305]: the input 3x100000x100000 has more than")
    # vgg16 at 4000x4000: 512 x 125 x 125 = 8,000,000 features into fc1, a weight of 32.8G elements
    (message,) = errors(SPECS / "vgg16.yaml", (3, 4000, 4000))
    assert "error[E305]: classifier.0.fc: its weight (4096, 8000000) has more than" in message
    assert message.endswith("give a smaller --input")


# -- the command line -----------------------------------------------------------


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "specs").mkdir()
    for name in ("lenet", "zfnet", "vgg16", "wavenet"):
        shutil.copy(SPECS / f"{name}.yaml", tmp_path / "specs")
    monkeypatch.chdir(tmp_path)
    return tmp_path


COMMANDS = [
    ["validate", "specs/zfnet.yaml"],
    ["summary", "specs/zfnet.yaml"],
    ["compile", "specs/zfnet.yaml", "-t", "pytorch", "-o", "out"],
    ["diagram", "specs/zfnet.yaml", "--format", "dot", "-o", "zfnet.dot"],
    ["verify", "specs/zfnet.yaml"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=[a[0] for a in COMMANDS])
@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("axbxc", "expected CxHxW (e.g. 3x112x112) or CxL (e.g. 1x16000), got 'axbxc'"),
        ("0x32x32", "sizes must be whole numbers from 1 to 1000000, got '0x32x32' (0)"),
        ("", "expected CxHxW (e.g. 3x112x112) or CxL (e.g. 1x16000), got nothing"),
        ("1x2x3x4", "(4 sizes)"),
    ],
)
def test_every_command_refuses_a_bad_input_with_exit_2(project, args, value, says) -> None:
    result = run(*args, "--input", value)
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--input'" in result.output and says in result.output


def test_a_rank_mismatch_is_a_diagnostic_and_exit_1(project) -> None:
    for args in COMMANDS[:-1]:  # verify: tests below
        result = run(*args, "--input", "3x112")
        assert result.exit_code == 1, (args, result.output)
        assert "--input 3x112: error[E404]: zfnet's input is 3x224x224" in result.output


@pytest.mark.parametrize("args", COMMANDS[:-1], ids=[a[0] for a in COMMANDS[:-1]])
def test_every_command_takes_input(project, args) -> None:
    result = run(*args, "--input", "3x112x112")
    assert result.exit_code == 0, result.output


def test_summary_shows_the_overridden_size(project) -> None:
    table = run("summary", "specs/zfnet.yaml", "--input", "3x112x112").output
    assert "input 3x112x112 -> prob 2" in table
    assert re.search(r"^flatten +flatten +1024 ", table, re.M)
    assert "Trainable params:     24,714,370" in table
    doc = json.loads(run("summary", "specs/zfnet.yaml", "--input", "3x112x112", "--format", "json").output)
    assert doc["input_shape"] == [3, 112, 112]
    assert doc["params"]["trainable"] == 24_714_370
    markdown = run("summary", "specs/zfnet.yaml", "--input", "3x112x112", "--format", "markdown").output
    assert "- Input: `3x112x112`" in markdown


def test_diagram_shows_the_overridden_size(project) -> None:
    assert run("diagram", "specs/zfnet.yaml", "--input", "3x112x112", "--format", "dot", "-o", "z.dot").exit_code == 0
    dot = (project / "z.dot").read_text()
    assert "input\\n3x112x112" in dot and "1024" in dot and "224" not in dot


def test_compile_follows_the_input_in_every_target(project) -> None:
    assert run("compile", "specs/zfnet.yaml", "-t", "all", "--input", "3x112x112", "-o", "out").exit_code == 0
    files = {t: (project / "out" / "zfnet" / f"zfnet_{t}.py").read_text() for t in ("pytorch", "tensorflow", "keras")}
    files["chainer"] = (project / "out" / "zfnet" / "zfnet_chainer.py").read_text()
    for target, text in files.items():
        layout = "(N, 112, 112, 3)" if target in ("tensorflow", "keras") else "(N, 3, 112, 112)"
        assert f"Input {layout}" in text, target
        assert "24,714,370 parameters" in text, target
    assert "keras.Input(shape=(112, 112, 3)" in files["keras"]
    # dense in-features: 256 * 2 * 2 (256 * 5 * 5 at 224) wherever the target writes them
    for target in ("pytorch", "tensorflow", "chainer"):
        assert "ClassifierUnit, 256 * 2 * 2," in files[target], target
    assert "6400" not in "".join(files.values())


@pytest.mark.parametrize(
    ("spec", "value", "node"),
    [("specs/vgg16.yaml", "3x16x16", "pool5"), ("specs/lenet.yaml", "3x8x8", "conv2")],
)
@pytest.mark.parametrize("command", ["validate", "summary", "compile", "diagram"])
def test_too_small_exits_1_with_a_located_diagnostic(project, spec, value, node, command) -> None:
    extra = {"compile": ["-t", "keras", "-o", "out"], "diagram": ["--format", "dot", "-o", "x.dot"]}.get(command, [])
    result = run(command, spec, "--input", value, *extra)
    assert result.exit_code == 1
    assert re.search(rf"^{re.escape(spec)}:\d+:\d+: error\[E402\]: {node}: .*came from --input", result.output, re.M)
    assert not (project / "out").exists() and not (project / "x.dot").exists()


def test_wavenet_takes_cxl_on_the_command_line(project) -> None:
    result = run("summary", "specs/wavenet.yaml", "--input", "1x4000")
    assert result.exit_code == 0 and "input 1x4000 -> prob 256x4000" in result.output


def test_load_takes_an_input_shape(project) -> None:
    assert load("specs/zfnet.yaml", (), (3, 112, 112)).graph.input_shape == (3, 112, 112)
    lenet = load("specs/lenet.yaml", ("num_classes=5",), (1, 64, 64))
    assert lenet.graph.input_shape == (1, 64, 64) and lenet.graph.output_shapes == [(5,)]
    assert callable(input_option)


# -- verify: runs the four frameworks ------------------------------------------------

needs_frameworks = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("torch", "tensorflow", "keras", "chainer")),
    reason="verify needs all four frameworks",
)


@pytest.mark.slow
@needs_frameworks
def test_verify_zfnet_at_112_in_all_four_targets(project) -> None:
    result = run("verify", "specs/zfnet.yaml", "--input", "3x112x112", "--json")
    assert result.exit_code == 0, result.output
    (doc,) = json.loads(result.output)["specs"]
    assert doc["input_shape"] == [3, 112, 112]
    assert [t["target"] for t in doc["targets"]] == ["pytorch", "tensorflow", "keras", "chainer"]
    assert all(t["trainable"] == 24_714_370 for t in doc["targets"])


@pytest.mark.slow
@needs_frameworks
def test_verify_gives_every_spec_the_input(project) -> None:
    result = run("verify", "specs/lenet.yaml", "specs/zfnet.yaml", "--input", "3x64x64", "--targets", "pytorch")
    # lenet runs at 64x64; zfnet is refused (pool5 gets 2x2) with a located diagnostic
    assert result.exit_code == 1
    assert "lenet, input 3x64x64" in result.output
    assert re.search(r"specs/zfnet.yaml:\d+:\d+: error\[E402\]: pool5: .*came from --input", result.output)


@pytest.mark.slow
@needs_frameworks
def test_verify_wavenet_at_1x1000(project) -> None:
    result = run("verify", "specs/wavenet.yaml", "--input", "1x1000", "--json")
    assert result.exit_code == 0, result.output
    (doc,) = json.loads(result.output)["specs"]
    assert doc["input_shape"] == [1, 1000]
