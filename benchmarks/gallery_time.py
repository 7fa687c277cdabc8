"""Print how long `archspec gallery` takes for the whole zoo, against `archspec build`.

    .venv/bin/python benchmarks/gallery_time.py [--repeat N]

Figures, not assertions: the target is under 30 s for the whole zoo. The
gallery is written to a temporary folder; the build is done in memory.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from archspec.build import render_all
from archspec.codegen import EMITTERS
from archspec.gallery import build_gallery
from archspec.pipeline import compile_spec

ROOT = Path(__file__).resolve().parent.parent


def once(specs: list[Path]) -> tuple[float, float]:
    """(seconds for the build's outputs in memory, seconds for the gallery)."""
    start = time.perf_counter()
    render_all([compile_spec(p) for p in specs], list(EMITTERS), table=True, diagram=True)
    build = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        build_gallery(specs, Path(tmp) / "site")
        return build, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    specs = sorted((ROOT / "specs").glob("*.yaml"))
    runs = [once(specs) for _ in range(args.repeat)]
    build = statistics.median(b for b, _ in runs)
    gallery = statistics.median(g for _, g in runs)
    print(f"whole zoo, {len(specs)} specs, median of {args.repeat} runs:")
    print(f"  archspec build (in memory)  {build:6.2f} s")
    print(f"  archspec gallery            {gallery:6.2f} s  ({gallery / build:.1f}x the build)")


if __name__ == "__main__":
    main()
