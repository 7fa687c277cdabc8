"""How `archspec verify` scales with the number of nodes: the figures behind
the node limit (archspec.passes.expand.MAX_NODES).

    .venv/bin/python benchmarks/node_limit.py [--targets keras] [N ...]

Each N is a chain of N cheap nodes (a stage of 10-node blocks, as a deep
network writes it) on a 4x4 input; the script prints the time of verify for
each, the ratio to the smallest N and the outcome (a Keras RecursionError
shows as a failure). Figures, not assertions.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def chain_spec(nodes: int) -> str:
    """A spec of ``nodes`` nodes (a multiple of 10), a chain of ReLUs."""
    units = nodes // 10
    outer, inner = (units // 100, 100) if units > 1000 else (1, units)
    body = "".join(f"      - r{k}: {{op: relu}}\n" for k in range(10))
    return (
        f"name: chain{nodes}\nsource: benchmark\ninput: [2, 4, 4]\nblocks:\n  ten:\n    nodes:\n{body}"
        f"  stack:\n    nodes:\n      - s: {{block: ten, repeat: {inner}}}\n"
        f"layers:\n  - t: {{block: stack, repeat: {outer}}}\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sizes", nargs="*", type=int, default=[1000, 2000, 5000, 10000])
    parser.add_argument("--targets", default="keras")
    args = parser.parse_args()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    first = None
    print(f"{'nodes':>7}  {'seconds':>8}  {'ratio':>6}  outcome")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            spec = Path(tmp) / f"chain{n}.yaml"
            spec.write_text(chain_spec(n))
            cmd = [sys.executable, "-m", "archspec", "verify", str(spec), "--targets", args.targets]
            start = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            seconds = time.perf_counter() - start
            first = first or seconds
            tail = (done.stdout + done.stderr).strip().splitlines()
            outcome = "pass" if done.returncode == 0 else f"exit {done.returncode}: {tail[-1][:80] if tail else ''}"
            print(f"{n:>7}  {seconds:>8.1f}  {seconds / first:>6.1f}  {outcome}", flush=True)


if __name__ == "__main__":
    main()
