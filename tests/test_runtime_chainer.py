"""The Chainer runtime's trace (`archspec verify --trace`) reads its values through the same
device-to-host conversion as the outputs, so that it works with CuPy arrays on a GPU."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from archspec.pipeline import compile_spec
from archspec.verify import verify
from tests.conftest import ROOT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        any(importlib.util.find_spec(m) is None for m in ("torch", "chainer")), reason="needs PyTorch and Chainer"
    ),
]


def test_the_chainer_trace_copies_every_recorded_value_to_the_host(monkeypatch):
    from archspec.runtime import chainer as chainer_rt

    host, seen = chainer_rt._host, []

    def recorded(array):
        seen.append(array)
        return host(array)

    monkeypatch.setattr(chainer_rt, "_host", recorded)
    traced = {}
    intermediates = chainer_rt.intermediates

    def keep(model, x):
        traced.update(intermediates(model, x))
        return traced

    monkeypatch.setattr(chainer_rt, "intermediates", keep)
    report = verify(
        compile_spec(ROOT / "tests" / "converter_cases" / "flatten_nonsquare.yaml"), ["chainer"], trace=True
    )
    assert report.ok and report.targets[1].trace.node is None
    assert traced and all(type(v) is np.ndarray for v in traced.values())
    # every traced value came through _host (with np.array(args.out.array) only the outputs did)
    assert all(any(v.shape == a.shape and np.array_equal(v, host(a)) for a in seen) for v in traced.values())
