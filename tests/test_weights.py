"""Canonical weights: random sets, the .npz format, and loading into and
exporting from every target (archspec.weights, archspec.runtime).

The round trips use each framework's own initial weights, not archspec's:
weights exported from PyTorch (and from Keras) are loaded into the other
targets, and the outputs must agree.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from archspec import weights as W
from archspec.codegen.model import class_name
from archspec.pipeline import compile_spec
from archspec.runtime import DEPTHWISE, HWIO, IO, TARGETS, WIO
from tests.conftest import ROOT, SPECS

CASES = ROOT / "tests" / "converter_cases"
needs_chainer = pytest.mark.skipif(importlib.util.find_spec("chainer") is None, reason="chainer is not installed")


@pytest.fixture(scope="module")
def small():
    return compile_spec(CASES / "depthwise_grouped.yaml")


# ----------------------------------------------------------------------------
# Random weights


@pytest.mark.parametrize("name", ["resnet50", "mobilenet_v2", "xception", "wavenet", "inception_v3"])
def test_random_weights_fit_the_spec(name: str) -> None:
    compiled = compile_spec(SPECS / f"{name}.yaml")
    weights = W.random_weights(compiled, seed=3)
    W.check(weights, compiled)
    assert list(weights) == list(W.expected(compiled))  # network order
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in weights.values())
    total = compiled.counts.total
    assert sum(v.size for v in weights.values()) == total.total
    assert sum(v.size for k, v in weights.items() if k in W.trainable_keys(compiled)) == total.trainable


def test_random_weights_are_reproducible_and_not_trivial() -> None:
    compiled = compile_spec(SPECS / "resnet18.yaml")
    a, b, c = (W.random_weights(compiled, seed) for seed in (0, 0, 1))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["conv1.weight"], c["conv1.weight"])
    for key, value in a.items():
        if key.endswith("running_var"):
            assert (value > 0).all() and not np.allclose(value, 1), key
        elif key.endswith("running_mean"):
            assert (value != 0).all(), key
        elif key.endswith("bn1.weight"):
            assert not np.allclose(value, 1), key
        elif key.endswith("bias"):
            assert np.abs(value).max() > 0, key
    # Fan-in scaling: a 3x3x64 kernel after ReLU and a 7x7x3 one on the input.
    assert 0.02 < a["layer1.0.conv1.weight"].std() < 0.1
    assert 0.05 < a["conv1.weight"].std() < 0.2


def test_moments_follow_the_signal() -> None:
    """The assumed scale stays of order one through the deepest network."""
    compiled = compile_spec(SPECS / "resnet152.yaml")
    assumed = W.moments(compiled)
    squares = [m.square for m in assumed.values()]
    assert min(squares) > 0.1 and max(squares) < 100


# ----------------------------------------------------------------------------
# Files


def test_save_load_round_trip(tmp_path: Path, small) -> None:
    weights = W.random_weights(small, seed=1)
    path = tmp_path / "sub" / "weights.npz"
    W.save(path, weights, small)
    assert [p.name for p in path.parent.iterdir()] == ["weights.npz"]  # no temporary left
    back = W.load(path, small)
    assert list(back) == list(weights)
    assert all(np.array_equal(back[k], weights[k]) and back[k].dtype == np.float32 for k in weights)
    # float64 input is stored as float32
    W.save(path, {k: v.astype(np.float64) for k, v in weights.items()})
    assert all(v.dtype == np.float32 for v in W.load(path).values())


def test_load_reports_missing_unexpected_and_wrong_shapes(tmp_path: Path, small) -> None:
    weights = W.random_weights(small)
    del weights["dw.bias"]
    weights["grouped.weight"] = np.zeros((12, 3, 3, 3), np.float32)
    weights["nowhere.weight"] = np.zeros(3, np.float32)
    path = tmp_path / "w.npz"
    W.save(path, weights)  # without the spec: no check
    with pytest.raises(W.WeightError) as info:
        W.load(path, small)
    message = str(info.value)
    assert str(path) in message and "depthwise_grouped" in message
    assert "missing 1 key: dw.bias" in message
    assert "unexpected 1 key" in message and "nowhere.weight" in message
    assert "grouped.weight: shape (12, 3, 3, 3) given" in message and "needs (12, 2, 3, 3)" in message
    with pytest.raises(W.WeightError, match="missing 1 key"):
        W.save(tmp_path / "x.npz", weights, small)
    assert not (tmp_path / "x.npz").exists()


def test_load_refuses_what_is_not_a_weight_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_text("not a zip")
    with pytest.raises(W.WeightError, match="not a weight file"):
        W.load(bad)
    ints = tmp_path / "ints.npz"
    np.savez(ints, **{"fc.weight": np.zeros((2, 2), np.int64)})
    with pytest.raises(W.WeightError, match="float32"):
        W.load(ints)
    with pytest.raises(FileNotFoundError):
        W.load(tmp_path / "missing.npz")


# ----------------------------------------------------------------------------
# Layouts


def test_layouts_invert_each_other() -> None:
    rng = np.random.default_rng(0)
    for layout, canonical, native in (
        (HWIO, (8, 3, 5, 3), (5, 3, 3, 8)),
        (WIO, (8, 3, 5), (5, 3, 8)),
        (IO, (8, 3), (3, 8)),
        (DEPTHWISE, (6, 1, 3, 5), (3, 5, 3, 2)),
    ):
        a = rng.standard_normal(canonical).astype(np.float32)
        n = layout.to_native(a, native)
        assert n.shape == native and layout.canonical_shape(native) == canonical
        assert np.array_equal(layout.to_canonical(n), a)
    # Depthwise: canonical output channel c * m + j is input channel c's j-th filter.
    a = np.arange(6, dtype=np.float32).reshape(6, 1, 1, 1)
    assert DEPTHWISE.to_native(a, (1, 1, 3, 2))[0, 0].tolist() == [[0, 1], [2, 3], [4, 5]]


# ----------------------------------------------------------------------------
# Loading into and exporting from the targets


def generated(name: str, target: str):
    from tests.conftest import load_generated

    return load_generated(name, target)


def case_modules(name: str, tmp_path: Path, monkeypatch) -> dict:
    """The four modules of a converter case, generated in memory."""
    from archspec.verify import generate

    monkeypatch.chdir(CASES)
    code = generate(compile_spec(f"{name}.yaml"), TARGETS, tmp_path)
    assert all(not isinstance(m, str) for m in code.values()), code
    return code


def runtime(target: str):
    from archspec.runtime import get

    return get(target)


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
def test_loading_fails_loudly_and_changes_nothing(target: str, tmp_path: Path, monkeypatch) -> None:
    if target == "chainer" and importlib.util.find_spec("chainer") is None:
        pytest.skip("chainer is not installed")
    module = case_modules("depthwise_grouped", tmp_path, monkeypatch)[target]
    rt = runtime(target)
    model = rt.build(module, class_name("depthwise_grouped"))
    compiled = compile_spec(CASES / "depthwise_grouped.yaml")
    before = rt.export_weights(model)
    assert {k: v.shape for k, v in before.items()} == W.expected(compiled)

    weights = W.random_weights(compiled)
    missing = {k: v for k, v in weights.items() if k != "sep.pointwise.weight"}
    with pytest.raises(W.WeightError, match=r"missing 1 key: sep\.pointwise\.weight"):
        rt.load_weights(model, missing)
    wrong = {**weights, "dw.weight": weights["dw.weight"].reshape(4, 2, 3, 3)}
    with pytest.raises(W.WeightError, match=r"dw\.weight: shape \(4, 2, 3, 3\) given, .* needs \(8, 1, 3, 3\)"):
        rt.load_weights(model, wrong)
    extra = {**weights, "fc.running_mean": np.zeros(4, np.float32)}
    with pytest.raises(W.WeightError, match=r"unexpected 1 key .*fc\.running_mean"):
        rt.load_weights(model, extra)
    after = rt.export_weights(model)
    assert all(np.array_equal(after[k], before[k]) for k in before)  # nothing was written

    rt.load_weights(model, weights)
    exported = rt.export_weights(model)
    assert all(np.array_equal(exported[k], weights[k]) for k in weights)


def outputs(target: str, model, x: np.ndarray) -> list[np.ndarray]:
    rt = runtime(target)
    with rt.softmax_bypassed():  # compare logits, not near-uniform probabilities
        return rt.run(model, x)


def assert_same(want: list[np.ndarray], got: list[np.ndarray], what: str) -> None:
    assert len(want) == len(got), what
    for w, g in zip(want, got):
        assert w.shape == g.shape, what
        assert np.abs(w - g).max() <= 1e-4 * np.abs(w).max() + 1e-6, what


ROUND_TRIP = ["resnet18", "mobilenet_v2", "xception", "shufflenet_v1"]


@pytest.mark.slow
@needs_chainer
@pytest.mark.parametrize("name", ROUND_TRIP)
def test_weights_exported_from_pytorch_give_the_same_outputs(name: str) -> None:
    """PyTorch's own initialization (batch-norm statistics perturbed so they
    matter), exported and loaded into Keras, TensorFlow and Chainer."""
    import torch

    compiled = compile_spec(SPECS / f"{name}.yaml")
    torch.manual_seed(0)
    tnet = runtime("pytorch").build(generated(name, "pytorch"), class_name(name))
    with torch.no_grad():
        for m in tnet.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    exported = runtime("pytorch").export_weights(tnet)
    W.check(exported, compiled)
    x = np.random.default_rng(0).standard_normal((2, *compiled.graph.input_shape)).astype(np.float32)
    want = outputs("pytorch", tnet, x)
    for target in ("keras", "tensorflow", "chainer"):
        rt = runtime(target)
        model = rt.build(generated(name, target), class_name(name))
        rt.load_weights(model, exported)
        assert_same(want, outputs(target, model, x), f"{name}: pytorch -> {target}")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenet_v2", "xception"])
def test_weights_exported_from_keras_give_the_same_outputs(name: str, tmp_path: Path) -> None:
    """Keras' own initialization (depthwise and separable kernels in Keras'
    layouts), exported, saved, loaded and run in PyTorch."""
    keras_rt = runtime("keras")
    compiled = compile_spec(SPECS / f"{name}.yaml")
    knet = keras_rt.build(generated(name, "keras"), class_name(name))
    rng = np.random.default_rng(1)
    for layer in knet.layers:  # non-trivial batch-norm statistics
        for w in layer.weights:
            if w.name in ("moving_mean", "beta"):
                w.assign(rng.uniform(-0.5, 0.5, w.shape).astype(np.float32))
            elif w.name in ("moving_variance", "gamma"):
                w.assign(rng.uniform(0.5, 2.0, w.shape).astype(np.float32))
    path = tmp_path / f"{name}.npz"
    W.save(path, keras_rt.export_weights(knet), compiled)
    x = rng.standard_normal((2, *compiled.graph.input_shape)).astype(np.float32)
    tnet = runtime("pytorch").build(generated(name, "pytorch"), class_name(name))
    runtime("pytorch").load_weights(tnet, W.load(path, compiled))
    assert_same(outputs("keras", knet, x), outputs("pytorch", tnet, x), f"{name}: keras -> pytorch")
