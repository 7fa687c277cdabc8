"""`archspec summary`: the JSON, table and Markdown formats, the reference
parameter and MAC counts of the bundled specs, and the exit codes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from archspec.cli import main
from archspec.pipeline import compile_spec
from archspec.summary import human

SPECS = Path(__file__).resolve().parent.parent / "specs"


def run(*args: str) -> Result:
    return CliRunner().invoke(main, ["summary", *args])


def ok(*args: str) -> Result:
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    return result


def summary_json(*args: str) -> dict:
    return json.loads(ok(*args, "--format", "json").stdout)


def spec(name: str) -> str:
    return str(SPECS / f"{name}.yaml")


# ----------------------------------------------------------------------------
# Reference figures (torchvision / Keras counts)

REFERENCE = [
    pytest.param("lenet", [], {"total": 58866, "trainable": 58866, "non_trainable": 0, "macs": 648608}, id="lenet"),
    pytest.param(
        "resnet50",
        ["--set", "num_classes=1000"],
        {"trainable": 25557032, "non_trainable": 53120, "macs": 4_089_184_256},
        id="resnet50",
    ),
    pytest.param(
        "mobilenet_v2",
        ["--set", "alpha=0.5", "--set", "num_classes=5"],
        {"total": 712629, "trainable": 694085},
        id="mobilenet_v2-alpha0.5-5classes",
    ),
    pytest.param("mobilenet_v2", [], {"total": 3538984, "trainable": 3504872}, id="mobilenet_v2-default"),
    pytest.param("vgg16", ["--set", "num_classes=1000"], {"total": 138357544, "trainable": 138357544}, id="vgg16"),
    pytest.param("xception", ["--set", "num_classes=1000"], {"total": 22910480, "trainable": 22855952}, id="xception"),
]


@pytest.mark.parametrize(("name", "args", "expected"), REFERENCE)
def test_reference_counts(name, args, expected):
    data = summary_json(spec(name), *args)
    got = {**data["params"], "macs": data["macs"]}
    assert {k: got[k] for k in expected} == expected


def test_vgg16_macs_match_the_published_figure():
    macs = summary_json(spec("vgg16"), "--set", "num_classes=1000")["macs"]
    assert abs(macs - 15.470e9) / 15.470e9 < 0.005


def test_set_changes_the_network():
    default = summary_json(spec("lenet"))
    ten = summary_json(spec("lenet"), "--set", "num_classes=10")
    assert default["output_shape"] == [2]
    assert ten["output_shape"] == [10]
    fc3 = {layer["path"]: layer for layer in ten["layers"]}["fc3"]
    assert fc3["params"]["total"] == 64 * 10 + 10
    assert ten["params"]["total"] - default["params"]["total"] == (64 * 10 + 10) - (64 * 2 + 2)


def test_alpha_scales_mobilenet_widths():
    half = summary_json(spec("mobilenet_v2"), "--set", "alpha=0.5")
    layers = {layer["path"]: layer for layer in half["layers"]}
    assert layers["stem.conv"]["output_shape"] == [16, 112, 112]  # make_divisible(32 * 0.5, 8)
    assert layers["head.conv"]["output_shape"] == [1280, 7, 7]  # stays 1280 for alpha <= 1


# ----------------------------------------------------------------------------
# JSON format

ALL_SPECS = ["lenet", "resnet50", "mobilenet_v2", "vgg16", "xception"]


@pytest.mark.parametrize("name", ALL_SPECS)
def test_json_has_every_node_and_consistent_totals(name):
    data = summary_json(spec(name))
    compiled = compile_spec(spec(name))
    graph = compiled.graph

    assert data["name"] == graph.name == name
    assert data["input_shape"] == list(graph.input_shape)
    assert data["output_shape"] == list(graph.shape_of(graph.outputs[0]))
    assert set(data["params"]) >= {"trainable", "non_trainable", "total"}
    assert data["params"]["total"] == data["params"]["trainable"] + data["params"]["non_trainable"]

    layers = data["layers"]
    assert [layer["path"] for layer in layers] == [n.path for n in graph.nodes]
    for layer, node in zip(layers, graph.nodes, strict=True):
        assert layer["op"] == node.op
        assert layer["output_shape"] == list(node.shape)
        count = compiled.counts.nodes[node.path]
        assert layer["params"] == {
            "trainable": count.trainable,
            "non_trainable": count.non_trainable,
            "total": count.total,
        }
        assert layer["macs"] == count.macs
    for key in ("trainable", "non_trainable", "total"):
        assert sum(layer["params"][key] for layer in layers) == data["params"][key]
    assert sum(layer["macs"] for layer in layers) == data["macs"]


def test_json_layer_rows_for_lenet():
    layers = summary_json(spec("lenet"))["layers"]
    rows = [(la["path"], la["op"], la["output_shape"], la["params"]["total"], la["macs"]) for la in layers]
    assert rows == [
        ("conv1", "conv2d", [6, 28, 28], 6 * 3 * 5 * 5 + 6, 6 * 28 * 28 * 3 * 5 * 5),
        ("pool1", "max_pool2d", [6, 14, 14], 0, 0),
        ("act1", "sigmoid", [6, 14, 14], 0, 0),
        ("conv2", "conv2d", [16, 10, 10], 16 * 6 * 5 * 5 + 16, 16 * 10 * 10 * 6 * 5 * 5),
        ("pool2", "max_pool2d", [16, 5, 5], 0, 0),
        ("act2", "sigmoid", [16, 5, 5], 0, 0),
        ("flatten", "flatten", [400], 0, 0),
        ("fc1", "dense", [120], 400 * 120 + 120, 400 * 120),
        ("fc2", "dense", [64], 120 * 64 + 64, 120 * 64),
        ("fc3", "dense", [2], 64 * 2 + 2, 64 * 2),
        ("prob", "softmax", [2], 0, 0),
    ]


def test_json_blocks_sum_their_nodes():
    data = summary_json(spec("resnet50"))
    layers = data["layers"]
    blocks = {b["path"]: b for b in data["blocks"]}
    assert blocks["layer1"]["units"] == 3
    assert blocks["layer3"]["units"] == 6
    for path, block in blocks.items():
        inside = [la for la in layers if la["path"].startswith(path + ".")]
        assert inside, path
        assert block["params"]["total"] == sum(la["params"]["total"] for la in inside)
        assert block["macs"] == sum(la["macs"] for la in inside)


def test_json_is_byte_identical_between_runs():
    assert ok(spec("mobilenet_v2"), "--format", "json").stdout == ok(spec("mobilenet_v2"), "--format", "json").stdout


# ----------------------------------------------------------------------------
# Table format


@dataclass(frozen=True)
class Table:
    header: list[str]  # the lines above the column titles
    columns: str  # the column titles
    rule: str
    rows: list[str]
    totals: list[str]  # the lines below the closing rule


def parse_table(text: str) -> Table:
    lines = text.rstrip("\n").split("\n")
    rules = [i for i, line in enumerate(lines) if line and set(line) == {"-"}]
    assert len(rules) == 2, text
    first, second = rules
    assert lines[first] == lines[second]
    return Table(lines[: first - 1], lines[first - 1], lines[first], lines[first + 1 : second], lines[second + 1 :])


LENET_ROWS = """\
conv1    conv2d      6x28x28          456  352.80K
pool1    max_pool2d  6x14x14            -        -
act1     sigmoid     6x14x14            -        -
conv2    conv2d      16x10x10       2,416  240.00K
pool2    max_pool2d  16x5x5             -        -
act2     sigmoid     16x5x5             -        -
flatten  flatten     400                -        -
fc1      dense       120           48,120   48.00K
fc2      dense       64             7,744    7.68K
fc3      dense       2                130      128
prob     softmax     2                  -        -"""


def test_table_for_lenet():
    table = parse_table(ok(spec("lenet")).stdout)
    assert table.header[0].startswith("lenet  (")
    assert table.header[1:] == ["input 3x32x32 -> prob 2", "params: num_classes=2", ""]
    assert table.columns == "Layer    Op          Output shape  Params     MACs"
    assert "\n".join(table.rows) == LENET_ROWS
    assert table.totals == [
        "Trainable params:     58,866",
        "Non-trainable params: 0",
        "Total params:         58,866",
        "MACs:                 648,608 (648.61K)",
    ]


@pytest.mark.parametrize("name", ALL_SPECS)
def test_table_columns_are_aligned(name):
    table = parse_table(ok(spec(name)).stdout)
    columns, rows = table.columns, table.rows
    # the last column is right-aligned: every line ends at the rule's end
    assert len(columns) == len(table.rule)
    assert all(len(row) == len(table.rule) for row in rows)
    # left-aligned columns start where their header starts, right-aligned ones end where theirs ends
    starts = {h: columns.index(h) for h in ("Op", "Output shape")}
    ends = {h: columns.index(h) + len(h) for h in ("Params", "MACs")}
    for row in rows:
        for start in starts.values():
            assert row[start - 2 : start] == "  " and row[start] != " ", row
        for end in ends.values():
            assert row[end - 1] != " " and row[end : end + 2] in ("  ", ""), row


def test_table_totals_are_at_the_bottom():
    text = ok(spec("resnet50")).stdout
    totals = parse_table(text).totals
    assert totals == [
        "Trainable params:     25,557,032",
        "Non-trainable params: 53,120",
        "Total params:         25,610,152",
        "MACs:                 4,089,184,256 (4.09G)",
    ]
    assert text.endswith(totals[-1] + "\n")


def test_table_without_depth_has_a_row_per_node_and_block():
    graph = compile_spec(spec("resnet50")).graph
    rows = parse_table(ok(spec("resnet50")).stdout).rows
    assert len(rows) == len(graph.nodes) + len(graph.instances)


def test_depth_folds_blocks():
    counts = {}
    for depth in (0, 1, 2, None):
        args = [] if depth is None else ["--depth", str(depth)]
        table = parse_table(ok(spec("resnet50"), *args).stdout)
        counts[depth] = len(table.rows)
        assert table.totals[2] == "Total params:         25,610,152"  # folding never changes totals
    assert counts[0] < counts[1] < counts[2] <= counts[None]
    assert counts[1] == 10 + 3 + 4 + 6 + 3  # the top level plus one row per unit


def test_depth_zero_shows_the_top_level_with_block_sums():
    rows = parse_table(ok(spec("resnet50"), "--depth", "0").stdout).rows
    assert [row.split()[0] for row in rows] == [
        "conv1",
        "bn1",
        "relu",
        "maxpool",
        "layer1",
        "layer2",
        "layer3",
        "layer4",
        "avgpool",
        "fc",
    ]
    layer1 = next(row for row in rows if row.startswith("layer1"))
    assert "bottleneck x3" in layer1
    assert "256x56x56" in layer1
    assert "218,624" in layer1


def test_nested_rows_are_indented():
    rows = parse_table(ok(spec("resnet50"), "--depth", "2").stdout).rows
    assert any(row.startswith("  layer1.0 ") for row in rows)
    assert any(row.startswith("    layer1.0.conv1 ") for row in rows)  # its path: conv1 is in every unit
    assert not any(row.strip().startswith("conv1 ") and row.startswith("    ") for row in rows)


def test_nodes_of_a_block_at_the_top_level_are_named_by_name():
    rows = parse_table(ok(spec("googlenet"), "--depth", "1").stdout).rows
    assert any(row.startswith("  branch4_pool ") for row in rows)


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0"), (999, "999"), (1000, "1.00K"), (352800, "352.80K"), (1234567, "1.23M"), (4089184256, "4.09G")],
)
def test_human(n, text):
    assert human(n) == text


# ----------------------------------------------------------------------------
# Markdown format


def test_markdown_has_a_table():
    text = ok(spec("lenet"), "--format", "markdown").stdout
    lines = text.split("\n")
    assert lines[0] == "# lenet"
    head = lines.index("| Layer | Op | Output shape | Params | MACs |")
    assert lines[head + 1] == "|---|---|---|---:|---:|"
    body = [line for line in lines[head + 2 :] if line.startswith("|")]
    assert len(body) == 11  # one per LeNet node
    assert body[0] == "| `conv1` | conv2d | 6x28x28 | 456 | 352,800 |"
    assert all(line.count("|") == 6 for line in body)
    assert "- Total params: 58,866" in lines
    assert "- Input: `3x32x32`" in lines


def test_markdown_depth_folds_blocks():
    text = ok(spec("resnet50"), "--format", "markdown", "--depth", "0").stdout
    body = [line for line in text.split("\n") if line.startswith("| ") and not line.startswith("| Layer")]
    assert len(body) == 10
    assert "| **`layer1`** | bottleneck x3 | 256x56x56 | 218,624 | 667,942,912 |" in body


# ----------------------------------------------------------------------------
# Exit codes

BAD_SPEC = """\
name: bad
source: test
input: [3, 8, 8]
layers:
  - a: {op: conv2d, out: 4, kernel: 3}
  - b: {op: conv2dd, out: 4, kernel: 3}
  - c: {op: dense, out: num_clases}
"""


def test_invalid_spec_exits_1_with_diagnostics_on_stderr(write_spec):
    path = write_spec(BAD_SPEC)
    result = run(str(path))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().split("\n")
    assert lines[-1] == "2 errors"
    # sorted by position, each with file:line:col, a code and a hint
    assert lines[0].startswith(f"{path}:6:") and "error[E201]" in lines[0] and "did you mean 'conv2d'" in lines[0]
    assert lines[1].startswith(f"{path}:7:") and "error[E203]" in lines[1]


def test_shape_error_exits_1(write_spec):
    path = write_spec("name: bad\nsource: test\ninput: [3, 4, 4]\nlayers:\n  - a: {op: conv2d, out: 4, kernel: 5}\n")
    result = run(str(path))
    assert result.exit_code == 1
    assert "error[E402]" in result.stderr
    assert result.stderr.strip().endswith("1 error")


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["/no/such/spec.yaml"], "E001", "no such file"),
        ([spec("lenet"), "--set", "num_clases=3"], "E203", "did you mean 'num_classes'"),
        ([spec("mobilenet_v2"), "--set", "alpha=abc"], "E304", "bad value 'abc' for 'alpha'"),
        ([spec("lenet"), "--set", "num_classes=2.5"], "E304", "expected an integer"),
    ],
)
def test_bad_input_exits_1(args, code, fragment):
    result = run(*args)
    assert result.exit_code == 1
    assert f"error[{code}]" in result.stderr
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ([spec("lenet"), "--set", "num_classes"], "--set takes KEY=VALUE, got 'num_classes'"),
        ([spec("lenet"), "--set", "=3"], "--set takes KEY=VALUE"),
        ([spec("lenet"), "--format", "xml"], "Invalid value for '--format'"),
        ([spec("lenet"), "--depth", "-1"], "Invalid value for '--depth'"),
        ([spec("lenet"), "--depth", "x"], "Invalid value for '--depth'"),
        ([spec("lenet"), "--no-such-option"], "No such option"),
        ([], "Missing argument 'SPEC'"),
    ],
)
def test_usage_errors_exit_2(args, fragment):
    result = run(*args)
    assert result.exit_code == 2
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_valid_spec_exits_0_for_every_format():
    for fmt in ("table", "markdown", "json"):
        result = ok(spec("lenet"), "--format", fmt)
        assert result.stdout.strip()


@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v2", "xception"])
def test_depthwise_separable_savings_follow_the_papers_formula(name):
    """Seeds 001, 002 and 004: a depthwise separable layer costs 1/N + 1/Dk^2 of
    a standard convolution; the tables say so, layer by layer."""
    from archspec.summary import format_markdown, separable_convolutions

    c = compile_spec(SPECS / f"{name}.yaml")
    seps = separable_convolutions(c)
    assert seps
    for s in seps:
        df2 = s.size[0] * s.size[1]
        k2 = s.kernel * s.kernel
        assert s.macs == k2 * s.channels_in * df2 + s.channels_in * s.channels_out * df2
        assert s.standard_macs == k2 * s.channels_in * s.channels_out * df2
        assert s.ratio == pytest.approx(1 / s.channels_out + 1 / k2)
    assert "## Depthwise separable convolutions" in format_markdown(c)


def test_mobilenet_v1_separable_layers():
    from archspec.summary import separable_convolutions

    seps = separable_convolutions(compile_spec(SPECS / "mobilenet_v1.yaml"))
    assert len(seps) == 13  # the paper's Table 1: 13 depthwise separable layers
    assert (seps[0].kernel, seps[0].channels_in, seps[0].channels_out, seps[0].size) == (3, 32, 64, (112, 112))
    # together they cost about 1/8.7 of standard convolutions
    ratio = sum(s.macs for s in seps) / sum(s.standard_macs for s in seps)
    assert 0.11 < ratio < 0.12


def test_networks_without_depthwise_convolutions_have_no_such_section():
    from archspec.summary import format_markdown

    assert "Depthwise separable" not in format_markdown(compile_spec(SPECS / "resnet50.yaml"))
