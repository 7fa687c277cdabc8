"""Run `archspec verify --train` over the whole zoo, all four targets, at the inputs
of tests/conftest.py's ``train_input`` (the cheap input, larger where a batch norm
would see 1x1 maps): per spec the time, the result, the worst difference from the
reference relative to its tolerance, and (where a target failed) how far float32
rounding alone moves the reference.

    .venv/bin/python benchmarks/train_zoo.py [--steps N] [--batch N] [SPEC ...]

Figures, not assertions (tests/test_zoo_train.py asserts).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("specs", nargs="*", help="spec names (default: every spec of specs/)")
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from archspec.pipeline import compile_spec
    from archspec.summary import shape_str
    from archspec.training.core import TrainingError
    from archspec.training.equivalence import verify_training
    from tests.conftest import SPEC_NAMES, SPECS, train_input

    names = args.specs or SPEC_NAMES
    start = time.perf_counter()
    failed = []
    print(f"{'spec':<20} {'input':<10} {'time':>6}  result  worst |diff| / tol per target (tensorflow, keras, chainer)")
    for name in names:
        shape = train_input(name)
        compiled = compile_spec(SPECS / f"{name}.yaml", {"num_classes": "5"}, input_shape=shape)
        began = time.perf_counter()
        try:
            report = verify_training(compiled, steps=args.steps, batch=args.batch)
        except TrainingError as exc:
            failed.append(name)
            print(f"{name:<20} {shape_str(shape):<10} {time.perf_counter() - began:5.1f}s  refused: {exc}")
            continue
        ratios = []
        for t in report.targets[1:]:
            worst = max((c.max_abs_diff / c.tolerance for c in t.comparisons), default=float("nan"))
            ratios.append(f"{worst:.2f}" if t.comparisons else "error")
        rounding = f"  (float32 rounding: {report.rounding:.1e})" if report.rounding is not None else ""
        result = "pass" if report.ok else "FAIL"
        print(f"{name:<20} {shape_str(shape):<10} {report.seconds:5.1f}s  {result:<6}  {', '.join(ratios)}{rounding}")
        if not report.ok:
            failed.append(name)
    print(f"\n{len(names)} specs in {time.perf_counter() - start:.1f} s")
    print("all passed" if not failed else f"FAILED or refused: {', '.join(failed)}")


if __name__ == "__main__":
    main()
