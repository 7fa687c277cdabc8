"""Run `archspec verify` over the whole zoo: time per spec and in all, and the
largest difference from the reference (PyTorch) seen per target.

    .venv/bin/python benchmarks/verify_time.py [--seed N] [--trace] [SPEC ...]

Figures, not assertions. Differences are absolute, on outputs as generated and
on the pre-softmax values (see archspec/verify.py); "relative" divides by the
largest absolute reference value of the same output.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("specs", nargs="*", help="specs to verify (default: specs/*.yaml)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trace", action="store_true", help="also record and compare every node (slower)")
    args = parser.parse_args()
    os.chdir(ROOT)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from archspec.pipeline import compile_spec
    from archspec.runtime import TARGETS
    from archspec.verify import verify

    paths = args.specs or [str(p.relative_to(ROOT)) for p in sorted((ROOT / "specs").glob("*.yaml"))]
    start = time.perf_counter()
    worst: dict[str, tuple[float, str]] = {}  # target -> (largest absolute difference, where)
    worst_rel: dict[str, tuple[float, str]] = {}  # target -> (largest difference / max|reference|, where)
    seconds: dict[str, float] = dict.fromkeys(TARGETS, 0.0)
    failed = []
    traced: dict[str, int] = {}
    print(f"{'spec':<18} {'time':>6}  " + "  ".join(f"{t:>10}" for t in TARGETS[1:]) + "   (max |diff|, all outputs)")
    for path in paths:
        report = verify(compile_spec(path), TARGETS, seed=args.seed, trace=args.trace)
        cells = []
        for t in report.targets:
            seconds[t.target] += t.seconds
            for c in t.comparisons:
                rel = c.max_abs_diff / c.scale if c.scale else 0.0
                where = f"{report.name} {c.kind} {c.output}"
                if c.max_abs_diff >= worst.get(t.target, (-1.0, ""))[0]:
                    worst[t.target] = (c.max_abs_diff, where)
                if rel >= worst_rel.get(t.target, (-1.0, ""))[0]:
                    worst_rel[t.target] = (rel, where)
            if t.target != report.reference:
                diffs = [c.max_abs_diff for c in t.comparisons]
                cells.append(f"{max(diffs):10.2e}" if diffs else f"{'error':>10}")
        if not report.ok:
            failed.append(report.name)
        print(f"{report.name:<18} {report.seconds:5.1f}s  " + "  ".join(cells) + ("" if report.ok else "   FAILED"))
        for t in report.targets:
            if t.trace is not None:
                traced[t.target] = traced.get(t.target, 0) + t.trace.compared
                if t.trace.node is not None:
                    print(f"    {t.target}: first differs at {t.trace.node} ({t.trace.op})")
    total = time.perf_counter() - start
    print(f"\n{len(paths)} specs verified in {total:.1f} s ({', '.join(f'{t} {s:.1f} s' for t, s in seconds.items())})")
    print("largest difference from the reference per target:")
    for t in TARGETS[1:]:
        if t in worst:
            (d, where), (rel, where_rel) = worst[t], worst_rel[t]
            print(f"  {t:<11} {d:.2e} absolute ({where}); {rel:.1e} of max|reference| ({where_rel})")
    if traced:
        print("nodes compared by --trace: " + ", ".join(f"{t} {n}" for t, n in traced.items()))
    print("all passed" if not failed else f"FAILED: {', '.join(failed)}")


if __name__ == "__main__":
    main()
