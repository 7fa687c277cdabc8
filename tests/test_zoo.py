"""The model zoo: every spec in specs/ compiles, says where it comes from, and
counts what its reference says.

Each spec has a row in EXPECTED (a new spec without one fails). A row is a list
of checks, each with the overrides it is compiled with. Counts are exact: a
published figure (references.md, torchvision's or Keras' own models, the seed
tables) where there is one, otherwise the arithmetic written out below. MACs
are exact where the arithmetic is written out or the reference model was
counted, and within 0.5% of a published GMACs figure. Published figures that
references.md does not list were checked at their source: torchvision's
weights metadata (num_params of squeezenet1_0/1_1, inception_v3,
wide_resnet50_2, efficientnet_b0/b1/b3, efficientnet_v2_s,
convnext_tiny, regnet_y_400mf, vgg11_bn, mnasnet0_5-1_3,
shufflenet_v2_x1_0, mobilenet_v3_small/large; GFLOPS) and imgclsmob's
per-model weight-count asserts (resnext101_32x4d, shufflenet_g3_w1,
seresnet50). torchvision 0.28's own models were counted once, with random
weights (the tests do not import torchvision): mobilenet_v3 at other
width_mult values, and the exact MACs of squeezenet1_1, vgg11_bn, mnasnet1_0,
shufflenet_v2_x1_0 and mobilenet_v3_small/large (torch.utils.flop_counter's
FLOPs halved; the GFLOPS figures round them, mobilenet_v3_small's 0.057 by
0.9%).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

from archspec.pipeline import compile_spec

SPECS_DIR = Path(__file__).resolve().parent.parent / "specs"
SPECS = sorted(SPECS_DIR.glob("*.yaml"))
MAC_TOLERANCE = 0.005


@cache
def compiled(name: str, overrides: tuple[tuple[str, str], ...] = ()):
    return compile_spec(SPECS_DIR / f"{name}.yaml", dict(overrides))


# -- arithmetic --------------------------------------------------------------


def conv(cin: int, cout: int, k: int = 1, bias: bool = False, groups: int = 1, kw: int | None = None) -> int:
    """Weights of a k x kw convolution (kw = 1 for a 1-D one), plus its bias."""
    return cin // groups * cout * k * (k if kw is None else kw) + (cout if bias else 0)


def dense(i: int, o: int) -> int:
    return i * o + o


def bn(c: int) -> int:
    """Trainable parameters of a batch norm (gamma, beta); it also keeps 2c statistics."""
    return 2 * c


def conv_macs(cin: int, cout: int, k: int, size: int) -> int:
    """MACs of a k x k convolution with a size x size output."""
    return cout * size * size * cin * k * k


# Seed 000's tables (2 classes). AlexNet: 227 -> 55 -> 27 -> 25 (5x5, pad 1) -> 12 -> 12 -> 5.
ALEXNET = (
    conv(3, 96, 11, True)
    + conv(96, 256, 5, True)
    + conv(256, 384, 3, True)
    + conv(384, 384, 3, True)
    + conv(384, 256, 3, True)
    + dense(256 * 5 * 5, 4096)
    + dense(4096, 4096)
    + dense(4096, 2)
)
ALEXNET_MACS = (
    conv_macs(3, 96, 11, 55)
    + conv_macs(96, 256, 5, 25)
    + conv_macs(256, 384, 3, 12)
    + conv_macs(384, 384, 3, 12)
    + conv_macs(384, 256, 3, 12)
    + 6400 * 4096
    + 4096 * 4096
    + 4096 * 2
)
# ZFNet: 224 -> 109 (7x7/2) -> 54 -> 26 (5x5/2, pad 1) -> 12 -> 12 -> 5.
ZFNET_CONVS = (
    conv(3, 96, 7, True)
    + conv(96, 256, 5, True)
    + conv(256, 384, 3, True)
    + conv(384, 384, 3, True)
    + conv(384, 256, 3, True)
)
ZFNET_CONV_MACS = (
    conv_macs(3, 96, 7, 109)
    + conv_macs(96, 256, 5, 26)
    + conv_macs(256, 384, 3, 12)
    + conv_macs(384, 384, 3, 12)
    + conv_macs(384, 256, 3, 12)
)
ZFNET = ZFNET_CONVS + dense(6400, 4096) + dense(4096, 4096) + dense(4096, 2)
ZFNET_MACS = ZFNET_CONV_MACS + 6400 * 4096 + 4096 * 4096 + 4096 * 2
ZFNET_GAP = ZFNET_CONVS + conv(256, 2, 1, True)
ZFNET_GAP_MACS = ZFNET_CONV_MACS + conv_macs(256, 2, 1, 5)
# NIN: 128 -> 63 -> 31.
NIN_MACS = (
    128 * 128 * (3 * 25 * 192 + 192 * 160 + 160 * 96)
    + 63 * 63 * (96 * 25 * 192 + 2 * 192 * 192)
    + 31 * 31 * (192 * 9 * 192 + 192 * 192 + 192 * 2)
)
# VGG19 = VGG16 plus a 256-wide and two 512-wide 3x3 convolutions; VGG16-BN adds BN to VGG16's 13 convs.
VGG19_EXTRA = conv(256, 256, 3, True) + 2 * conv(512, 512, 3, True)
VGG16_BN_CHANNELS = 2 * 64 + 2 * 128 + 3 * 256 + 6 * 512


def inception_v1(cin: int, c1: int, r3: int, c3: int, r5: int, c5: int, pp: int) -> int:
    return (
        conv(cin, c1, 1, True)
        + conv(cin, r3, 1, True)
        + conv(r3, c3, 3, True)
        + conv(cin, r5, 1, True)
        + conv(r5, c5, 5, True)
        + conv(cin, pp, 1, True)
    )


GOOGLENET = (
    conv(3, 64, 7, True)
    + conv(64, 64, 1, True)
    + conv(64, 192, 3, True)
    + inception_v1(192, 64, 96, 128, 16, 32, 32)
    + inception_v1(256, 128, 128, 192, 32, 96, 64)
    + inception_v1(480, 192, 96, 208, 16, 48, 64)
    + inception_v1(512, 160, 112, 224, 24, 64, 64)
    + inception_v1(512, 128, 128, 256, 24, 64, 64)
    + inception_v1(512, 112, 144, 288, 32, 64, 64)
    + inception_v1(528, 256, 160, 320, 32, 128, 128)
    + inception_v1(832, 256, 160, 320, 32, 128, 128)
    + inception_v1(832, 384, 192, 384, 48, 128, 128)
    + dense(1024, 1000)
)


def googlenet_aux(cin: int) -> int:
    return conv(cin, 128, 1, True) + dense(128 * 4 * 4, 1024) + dense(1024, 1000)


# Inception v3's auxiliary head: 1x1 conv 128 + BN, 5x5 conv 768 + BN, dense.
INCEPTION_V3_AUX = conv(768, 128, 1) + bn(128) + conv(128, 768, 5) + bn(768) + dense(768, 1000)


def bottleneck_resnet(depths, width=lambda planes: planes, groups: int = 1, se: int = 0) -> int:
    """Trainable parameters of a bottleneck ResNet (ResNeXt, wide, SE) on 1000 classes."""
    total, cin = conv(3, 64, 7) + bn(64), 64
    for planes, units in zip((64, 128, 256, 512), depths, strict=True):
        w, cout = width(planes), planes * 4
        for u in range(units):
            total += conv(cin, w, 1) + bn(w) + conv(w, w, 3, groups=groups) + bn(w) + conv(w, cout, 1) + bn(cout)
            if u == 0:
                total += conv(cin, cout, 1) + bn(cout)
            if se:
                total += conv(cout, cout // se, 1, True) + conv(cout // se, cout, 1, True)
            cin = cout
    return total + dense(2048, 1000)


def densenet(blocks, k: int = 32) -> int:
    total, c = conv(3, 2 * k, 7) + bn(2 * k), 2 * k
    for i, layers in enumerate(blocks):
        for _ in range(layers):
            total += bn(c) + conv(c, 4 * k, 1) + bn(4 * k) + conv(4 * k, k, 3)
            c += k
        if i < len(blocks) - 1:
            total += bn(c) + conv(c, c // 2, 1)
            c //= 2
    return total + bn(c) + dense(c, 1000)


def preact_resnet18(widths: tuple[int, ...] = (64, 128, 256, 512), units: int = 2, classes: int = 1000) -> int:
    """Trainable parameters of a pre-activation basic-block ResNet (He et al.
    2016): 3x3 convolutions without bias, 1x1 projections without BN on the
    first unit of stages 2-4, a BN on every unit's input but the first (the
    stem's BN-ReLU serves it) and on each unit's middle, a final BN."""
    convs, bn_channels, cin = 3 * 64 * 7 * 7, 64 + widths[-1], 64
    for s, w in enumerate(widths):
        for u in range(units):
            convs += (cin + w) * w * 9 + (cin * w if s and not u else 0)
            bn_channels += (cin if s or u else 0) + w
            cin = w
    return convs + 2 * bn_channels + widths[-1] * classes + classes


def shufflenet_g3() -> int:
    """ShuffleNet 1x, g = 3: units (in, out, stride, groups of the first 1x1)."""
    total, cin = conv(3, 24, 3) + bn(24), 24
    for out, units in ((240, 4), (480, 8), (960, 4)):
        for u in range(units):
            mid, stride = out // 4, 2 if u == 0 else 1
            cout = out - cin if stride == 2 else out
            g1 = 1 if cin == 24 else 3
            total += conv(cin, mid, 1, groups=g1) + bn(mid) + 9 * mid + bn(mid)  # 1x1, depthwise 3x3
            total += conv(mid, cout, 1, groups=3) + bn(cout)
            cin = out
    return total + dense(960, 1000)


# WaveNet: causal conv 256 -> 32 (k 2); 20 layers of filter + gate (32 -> 32, k 2) and a skip 1x1
# (32 -> 256); 19 residual 1x1s (32 -> 32); head 1x1 256 -> 256 twice. All with bias, length 16000.
WAVENET = (
    conv(256, 32, 2, True, kw=1)
    + 20 * (2 * conv(32, 32, 2, True, kw=1) + conv(32, 256, 1, True))
    + 19 * conv(32, 32, 1, True)
    + 2 * conv(256, 256, 1, True)
)
WAVENET_MACS = 16000 * (256 * 32 * 2 + 20 * (2 * 32 * 32 * 2 + 32 * 256) + 19 * 32 * 32 + 2 * 256 * 256)


def unet(widths=(16, 32, 64, 128, 256), size: int = 64, classes: int = 2) -> tuple[int, int]:
    """The small U-Net's (trainable parameters, MACs): per level two 3x3 convolutions
    with BN; a 2x2 stride-2 transposed convolution (with bias) per level up, whose MACs
    are its input's positions x in x out x 4; a 1x1 head with bias."""
    params = macs = 0
    cin = 3
    for level, c in enumerate(widths):  # the contracting path and the bottom
        n = size >> level
        params += conv(cin, c, 3) + bn(c) + conv(c, c, 3) + bn(c)
        macs += conv_macs(cin, c, 3, n) + conv_macs(c, c, 3, n)
        cin = c
    for level in reversed(range(len(widths) - 1)):  # the expanding path
        c, n = widths[level], size >> level
        params += conv(cin, c, 2, True) + conv(2 * c, c, 3) + bn(c) + conv(c, c, 3) + bn(c)
        macs += conv_macs(cin, c, 2, n // 2) + conv_macs(2 * c, c, 3, n) + conv_macs(c, c, 3, n)
        cin = c
    return params + conv(cin, classes, 1, True), macs + conv_macs(cin, classes, 1, size)


UNET, UNET_MACS = unet()


# -- the table -----------------------------------------------------------------
# name -> [(overrides, {trainable, total, macs (exact), gmacs (published, 0.5%)}, reference)]

C1000 = {"num_classes": "1000"}

EXPECTED: dict[str, list[tuple[dict[str, str], dict[str, float], str]]] = {
    "lenet": [
        (
            {},
            {"trainable": 456 + 2416 + 48120 + 7744 + 130, "total": 58_866, "macs": 648_608},
            "references.md: seed 000 table arithmetic",
        )
    ],
    "alexnet": [({}, {"trainable": ALEXNET, "total": ALEXNET, "macs": ALEXNET_MACS}, "arithmetic on seed 000's table")],
    "zfnet": [({}, {"trainable": ZFNET, "total": ZFNET, "macs": ZFNET_MACS}, "arithmetic on seed 000's table")],
    "zfnet_gap": [
        (
            {},
            {"trainable": ZFNET_GAP, "total": ZFNET_GAP, "macs": ZFNET_GAP_MACS},
            "arithmetic on seed 000's ZFNet table + 1x1 class conv",
        )
    ],
    "nin": [({}, {"trainable": 965_442, "total": 965_442, "macs": NIN_MACS}, "references.md: seed 000 table")],
    "vgg16": [
        ({}, {"trainable": 134_268_738, "total": 134_268_738}, "references.md: seed 000 table"),
        (C1000, {"trainable": 138_357_544, "gmacs": 15.470}, "references.md: torchvision vgg16"),
    ],
    "vgg19": [
        (
            {},
            {"trainable": 134_268_738 + VGG19_EXTRA, "total": 134_268_738 + VGG19_EXTRA},
            "seed table: VGG16's 134,268,738 + 3 convs",
        ),
        (C1000, {"trainable": 143_667_240, "total": 143_667_240, "gmacs": 19.632}, "references.md: torchvision vgg19"),
    ],
    "vgg16_bn": [
        (
            {},
            {"trainable": 134_268_738 + bn(VGG16_BN_CHANNELS), "total": 134_268_738 + 2 * bn(VGG16_BN_CHANNELS)},
            "seed table VGG16 + BN after 13 convs",
        ),
        (C1000, {"trainable": 138_365_992, "gmacs": 15.470}, "references.md: torchvision vgg16_bn"),
    ],
    "googlenet": [
        ({}, {"trainable": GOOGLENET + googlenet_aux(512) + googlenet_aux(528)}, "arithmetic on the paper's Table 1"),
        ({"aux_logits": "false"}, {"trainable": GOOGLENET, "total": GOOGLENET}, "arithmetic, no aux heads"),
    ],
    "inception_v3": [
        ({}, {"trainable": 23_834_568, "gmacs": 5.71}, "torchvision inception_v3(aux_logits=False); 5.71 GFLOPS"),
        (
            {"aux_logits": "true"},
            {"trainable": 27_161_264, "total": 23_869_000 + INCEPTION_V3_AUX + 2 * (128 + 768)},
            "torchvision inception_v3 (aux head: 3,326,696)",
        ),
    ],
    "resnet18": [({}, {"trainable": 11_689_512, "gmacs": 1.814}, "references.md: torchvision")],
    "preact_resnet18": [
        (
            {},
            {"trainable": preact_resnet18(), "total": preact_resnet18() + 7_808, "macs": 1_814_073_344},
            "arithmetic (no torchvision model); MACs as resnet18's (same convolutions)",
        )
    ],
    "resnet34": [({}, {"trainable": 21_797_672, "gmacs": 3.664}, "references.md: torchvision")],
    "resnet50": [({}, {"trainable": 25_557_032, "gmacs": 4.089}, "references.md: torchvision")],
    "resnet101": [({}, {"trainable": 44_549_160, "gmacs": 7.801}, "references.md: torchvision")],
    "resnet152": [({}, {"trainable": 60_192_808, "gmacs": 11.514}, "references.md: torchvision")],
    "resnext50": [({}, {"trainable": 25_028_904, "gmacs": 4.230}, "references.md: torchvision resnext50_32x4d")],
    "resnext101": [
        (
            {},
            {"trainable": 44_177_704, "gmacs": 8.0},
            "imgclsmob resnext101_32x4d's weight count (mmpretrain 44.18M); timm 8.0 GMACs",
        )
    ],
    "wide_resnet50": [({}, {"trainable": 68_883_240, "gmacs": 11.4}, "torchvision wide_resnet50_2 (11.4 GFLOPS)")],
    "se_resnet50": [
        (
            {},
            {"trainable": 25_557_032 + 2_530_992, "gmacs": 3.87},
            "ResNet-50 + SE arithmetic (see below); paper 3.87 GFLOPs",
        )
    ],
    "densenet121": [
        (
            {},
            {"trainable": 7_978_856, "total": 8_062_504, "gmacs": 2.834},
            "references.md: torchvision densenet121, Keras DenseNet121",
        )
    ],
    "densenet169": [({}, {"trainable": 14_149_480, "gmacs": 3.360}, "references.md: torchvision")],
    "densenet201": [({}, {"trainable": 20_013_928, "gmacs": 4.291}, "references.md: torchvision")],
    "densenet264": [({}, {"trainable": densenet((6, 12, 64, 48))}, "arithmetic (gives torchvision's 121/169/201 too)")],
    "mobilenet_v1": [
        (
            {},
            {"trainable": 4_231_976, "total": 4_253_864, "gmacs": 0.569},
            "references.md: Keras MobileNet; paper 569M mult-adds",
        )
    ],
    "mobilenet_v2": [
        ({}, {"trainable": 3_504_872, "total": 3_538_984, "gmacs": 0.301}, "references.md: Keras / torchvision"),
        ({"alpha": "0.5", "num_classes": "5"}, {"trainable": 694_085, "total": 712_629}, "references.md: seed 001"),
    ],
    "xception": [({}, {"trainable": 22_855_952, "total": 22_910_480}, "references.md: Keras Xception")],
    "shufflenet_v1": [({}, {"trainable": shufflenet_g3(), "gmacs": 0.137}, "arithmetic; paper Table 1: 137 MFLOPs")],
    "unet": [({}, {"trainable": UNET, "macs": UNET_MACS}, "arithmetic (no torchvision model)")],
    "squeezenet": [
        ({}, {"trainable": 1_248_424, "total": 1_248_424, "gmacs": 0.82}, "torchvision squeezenet1_0 (0.82 GFLOPS)")
    ],
    "efficientnet_b0": [
        (
            {},
            {"trainable": 5_288_548, "total": 5_330_571 - 7},
            "torchvision/Keras B0; Keras' total less its 7 input-normalization statistics",
        ),
        ({"depth_mult": "1.1", "resolution": "240"}, {"trainable": 7_794_184}, "torchvision efficientnet_b1"),
        (
            {"width_mult": "1.2", "depth_mult": "1.4", "resolution": "300"},
            {"trainable": 12_233_232},
            "torchvision efficientnet_b3",
        ),
    ],
    "convnext_tiny": [
        ({}, {"trainable": 28_589_128, "total": 28_589_128, "gmacs": 4.456}, "torchvision convnext_tiny (4.456 GFLOPS)")
    ],
    "efficientnet_v2_s": [
        (
            {},
            {"trainable": 21_458_488, "total": 21_458_488 + 153_872, "gmacs": 8.366},
            "torchvision efficientnet_v2_s at 384 (8.366 GFLOPS; 153,872 BN statistics)",
        )
    ],
    "regnet_y_400mf": [
        (
            {},
            {"trainable": 4_344_144, "total": 4_344_144 + 27_152, "gmacs": 0.402},
            "torchvision regnet_y_400mf (0.402 GFLOPS; 27,152 BN statistics)",
        )
    ],
    "squeezenet1_1": [
        (
            {},
            {"trainable": 1_235_496, "total": 1_235_496, "macs": 349_151_936},
            "torchvision squeezenet1_1 (0.349 GFLOPS)",
        )
    ],
    "vgg11_bn": [({}, {"trainable": 132_868_840, "macs": 7_609_090_048}, "torchvision vgg11_bn (7.609 GFLOPS)")],
    "mnasnet1_0": [
        ({}, {"trainable": 4_383_312, "macs": 314_415_872}, "torchvision mnasnet1_0 (0.314 GFLOPS)"),
        ({"alpha": "0.5"}, {"trainable": 2_218_512, "gmacs": 0.104}, "torchvision mnasnet0_5 (0.104 GFLOPS)"),
        ({"alpha": "0.75"}, {"trainable": 3_170_208, "gmacs": 0.215}, "torchvision mnasnet0_75 (0.215 GFLOPS)"),
        ({"alpha": "1.3"}, {"trainable": 6_282_256, "gmacs": 0.526}, "torchvision mnasnet1_3 (0.526 GFLOPS)"),
    ],
    "shufflenet_v2_x1_0": [
        ({}, {"trainable": 2_278_604, "macs": 144_907_992}, "torchvision shufflenet_v2_x1_0 (0.145 GFLOPS)")
    ],
    "mobilenet_v3_small": [
        ({}, {"trainable": 2_542_856, "macs": 56_510_400}, "torchvision mobilenet_v3_small (0.057 GFLOPS)"),
        ({"width_mult": "0.5"}, {"trainable": 917_264}, "torchvision mobilenet_v3_small(width_mult=0.5)"),
        ({"width_mult": "1.25"}, {"trainable": 3_644_912}, "torchvision mobilenet_v3_small(width_mult=1.25)"),
    ],
    "mobilenet_v3_large": [
        ({}, {"trainable": 5_483_032, "macs": 216_589_760}, "torchvision mobilenet_v3_large (0.217 GFLOPS)"),
        ({"width_mult": "0.75"}, {"trainable": 3_377_576}, "torchvision mobilenet_v3_large(width_mult=0.75)"),
    ],
    "wavenet": [
        (
            {},
            {"trainable": WAVENET, "total": WAVENET, "macs": WAVENET_MACS},
            "arithmetic on the documented configuration",
        )
    ],
}


# -- tests -----------------------------------------------------------------------


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_spec_compiles_and_has_a_source(path: Path) -> None:
    c = compiled(path.stem)
    assert c.graph.nodes
    assert c.spec.source.strip(), f"{path.name}: empty 'source'"
    assert c.spec.name == path.stem, f"{path.name}: name should be {path.stem!r}"


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_spec_has_expected_counts(path: Path) -> None:
    assert path.stem in EXPECTED, f"{path.name} has no row in tests/test_zoo.py EXPECTED"


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_every_node_reaches_an_output(path: Path) -> None:
    """No dangling branch: a 'when' that leaves the wrong node standing shows up here."""
    for overrides, _, _ in EXPECTED.get(path.stem, [({}, {}, "")]):
        graph = compiled(path.stem, tuple(sorted(overrides.items()))).graph
        used = {i for n in graph.nodes for i in n.inputs} | set(graph.outputs)
        dead = [n.path for n in graph.nodes if n.path not in used]
        assert not dead, f"{path.stem} {overrides}: outputs never used: {dead}"


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_spec_is_data_not_rows(path: Path) -> None:
    """Specs stay short: repeated structure is a block and a stage, never rows
    written out (the network list of the longest, GoogLeNet's, is its 25-row table)."""
    spec = compiled(path.stem).spec
    assert len(spec.layers) <= 30, f"{path.name}: {len(spec.layers)} rows in 'layers'"
    assert len(path.read_text().splitlines()) <= 150, f"{path.name}: more than 150 lines"
    # Rows that differ in their arguments are a table (SqueezeNet's fires, the
    # Mixed_6b-6e of Inception v3); the same rows written out again and again
    # (a unit of up to 6 rows, 4 times or more) should be a stage.
    rows = [(nd.op or nd.block, sorted((k, repr(v.raw)) for k, v in nd.attrs.items())) for nd in spec.layers]
    for period in range(1, 7):
        for start in range(len(rows)):
            unit = rows[start : start + period]
            times = 1
            while rows[start + times * period : start + (times + 1) * period] == unit:
                times += 1
            assert times < 4, (
                f"{path.name}: rows from {spec.layers[start].name} repeat {times} times; make them a stage"
            )


def test_wavenet_layers_are_one_stage_with_summed_skips() -> None:
    c = compiled("wavenet")
    stage = next(i for i in c.graph.instances if i.path == "stack")
    assert stage.units == 20
    skips = c.graph.node("skips")
    assert skips.op == "add"
    assert skips.inputs == tuple(f"stack.{u}.skip" for u in range(20))
    # Dilations 1..512 twice; the last layer has no residual 1x1.
    dilations = [c.graph.node(f"stack.{u}.filter").attrs["dilation"] for u in range(20)]
    assert dilations == [2**k for k in range(10)] * 2
    assert "stack.19.dense" not in {n.path for n in c.graph.nodes}


CASES = [(name, overrides, want, ref) for name, rows in EXPECTED.items() for overrides, want, ref in rows]


@pytest.mark.parametrize(
    ("name", "overrides", "want", "ref"),
    CASES,
    ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items()) or 'default'}" for n, o, _, _ in CASES],
)
def test_counts(name: str, overrides: dict[str, str], want: dict[str, float], ref: str) -> None:
    if not (SPECS_DIR / f"{name}.yaml").exists():
        pytest.fail(f"EXPECTED has a row for {name}, but specs/{name}.yaml does not exist")
    total = compiled(name, tuple(sorted(overrides.items()))).counts.total
    got = {"trainable": total.trainable, "total": total.total, "macs": total.macs}
    for key in ("trainable", "total", "macs"):
        if key in want:
            assert got[key] == want[key], f"{name} {overrides}: {key} {got[key]:,} != {want[key]:,} ({ref})"
    if "gmacs" in want:
        ratio = total.macs / (want["gmacs"] * 1e9)
        assert abs(ratio - 1) <= MAC_TOLERANCE, (
            f"{name} {overrides}: {total.macs / 1e9:.3f} GMACs, reference {want['gmacs']} ({ref})"
        )


def test_arithmetic_helpers_match_published_figures() -> None:
    """The formulas used for unpublished figures reproduce the published ones."""
    assert bottleneck_resnet((3, 4, 6, 3)) == 25_557_032
    assert bottleneck_resnet((3, 4, 6, 3), lambda p: p * 4 // 64 * 32, groups=32) == 25_028_904
    assert bottleneck_resnet((3, 4, 6, 3), lambda p: p * 2) == 68_883_240
    assert bottleneck_resnet((3, 4, 6, 3), se=16) == 28_088_024
    assert densenet((6, 12, 24, 16)) == 7_978_856
    assert densenet((6, 12, 32, 32)) == 14_149_480
    assert densenet((6, 12, 48, 32)) == 20_013_928
    assert INCEPTION_V3_AUX == 27_161_264 - 23_834_568
    assert bottleneck_resnet((3, 4, 23, 3), lambda p: p * 4 // 64 * 32, groups=32) == 44_177_704
    assert preact_resnet18() == 11_687_720  # the spec's source: 11,166,912 + 513,000 + 7,808
    assert shufflenet_g3() == 1_865_728  # imgclsmob shufflenet_g3_w1 (paper: 1.9M)


def test_unet_scores_every_pixel() -> None:
    """The U-Net's output is one score per class and pixel, at the input's size."""
    graph = compiled("unet").graph
    assert graph.node("head").shape == (2, 64, 64)
    assert [n.op for n in graph.nodes if n.op == "conv_transpose2d"] == ["conv_transpose2d"] * 4
