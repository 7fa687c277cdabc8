"""archspec.reference: torchvision imports beside the CPU torch, with no download."""

from __future__ import annotations

import pytest

from archspec.pipeline import compile_spec
from tests.conftest import SPECS


@pytest.mark.slow
def test_torchvision_imports_twice_and_builds_a_twin() -> None:
    pytest.importorskip("torch")
    from archspec import reference

    try:
        torchvision = reference.torchvision()
    except reference.ReferenceUnavailable as exc:
        pytest.skip(str(exc))
    assert reference.torchvision() is torchvision  # the schemas are declared once
    twin = torchvision.models.mobilenet_v2(weights=None)
    trainable = compile_spec(SPECS / "mobilenet_v2.yaml").counts.total.trainable
    assert sum(p.numel() for p in twin.parameters()) == trainable
