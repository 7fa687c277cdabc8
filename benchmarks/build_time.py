"""Print how long `archspec build` takes for the whole zoo, stage by stage.

    .venv/bin/python benchmarks/build_time.py [--repeat N]

Figures, not assertions: the project's target is "a few seconds at most".
Nothing is written to generated/; the outputs are built in memory.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from archspec.build import diagrams, outputs
from archspec.codegen import EMITTERS
from archspec.codegen.writer import format_many
from archspec.pipeline import compile_spec

ROOT = Path(__file__).resolve().parent.parent


def once() -> dict[str, float]:
    t = {}
    start = time.perf_counter()
    compiled = [compile_spec(p.relative_to(ROOT)) for p in sorted((ROOT / "specs").glob("*.yaml"))]
    t["parse, expand, count"] = time.perf_counter() - start
    mark = time.perf_counter()
    raw: dict[str, str] = {}
    for c in compiled:
        raw.update(outputs(c, EMITTERS, table=True))
    t["code model and emitters"] = time.perf_counter() - mark
    mark = time.perf_counter()
    format_many({k: v for k, v in raw.items() if k.endswith(".py")})
    t["ruff format and check"] = time.perf_counter() - mark
    mark = time.perf_counter()
    diagrams(compiled)
    t["diagrams (dot)"] = time.perf_counter() - mark
    t["total"] = time.perf_counter() - start
    t["specs"] = len(compiled)
    t["files"] = len(raw) + len(compiled)
    return t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    import os

    os.chdir(ROOT)
    runs = [once() for _ in range(args.repeat)]
    print(
        f"archspec build, whole zoo: {int(runs[0]['specs'])} specs, {int(runs[0]['files'])} files "
        f"(median of {args.repeat} runs)"
    )
    for key in runs[0]:
        if key in ("specs", "files"):
            continue
        print(f"  {key:<26} {statistics.median(r[key] for r in runs):6.2f} s")


if __name__ == "__main__":
    main()
