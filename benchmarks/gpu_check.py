"""Training on GPUs, for a machine that has them: what ran where.

    .venv/bin/python benchmarks/gpu_check.py [--iters N] [--targets LIST] [--device cuda]

For each target, what its framework sees (archspec.training.device.seen), then
``archspec train specs/lenet.yaml --device cuda --iters N`` (the command as a
user runs it) where it sees a GPU, and ``--nproc 2`` where it sees two
(torchrun with nccl, MirroredStrategy over /GPU:0 and /GPU:1, mpirun with
ChainerMN's pure_nccl communicator), then ``archspec test --device cuda`` of
the run. Each line says the device run.json recorded, the engine, the seconds
and the test accuracy; a target whose framework sees no GPU says why and how
to install its GPU build (docs/training.md, "GPUs"). The lock installs CPU
builds: on those this script only prints the reasons.

Figures, not assertions (tests/test_device.py asserts the choice on fakes);
every run goes to a temporary folder that is removed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARCHSPEC = str(Path(sys.executable).parent / "archspec")
TARGETS = ("pytorch", "tensorflow", "keras", "chainer")


def seen(target: str) -> tuple[int, str]:
    """(GPUs, why none) as the framework reports them, in a fresh process (TensorFlow fixes its devices once)."""
    code = (
        "import json, sys; from archspec.training.device import seen; "
        f"s = seen({target!r}); print(json.dumps([s.gpus, s.why]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        return 0, (done.stdout + done.stderr).strip().splitlines()[-1]
    gpus, why = json.loads(done.stdout.strip().splitlines()[-1])
    return gpus, why


def train(target: str, device: str, nproc: int, iters: int, out: Path) -> str:
    """One run and its test, as a line of the report."""
    began = time.perf_counter()
    command = [ARCHSPEC, "train", "specs/lenet.yaml", "-t", target, "--device", device, "--iters", str(iters)]
    command += ["--nproc", str(nproc), "--eval-every", str(iters), "-o", str(out), "-q"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - began
    if done.returncode:
        return f"failed (exit {done.returncode}): {(done.stdout + done.stderr).strip().splitlines()[-1]}"
    info = json.loads((out / "run.json").read_text())
    tested = subprocess.run(
        [ARCHSPEC, "test", "specs/lenet.yaml", "-t", target, "--weights", str(out), "--device", device, "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    test = f"test on {device}: " + (
        f"accuracy {json.loads(tested.stdout)['accuracy']:.4f}" if tested.returncode == 0 else "failed"
    )
    return (
        f"on {info['device']} ({info['distributed']['engine']}, {info['distributed']['nproc']} replica(s)): "
        f"{info['step']} steps, {info['seconds']:.1f} s training, {wall:.1f} s wall, "
        f"test accuracy {info['test_accuracy']:.4f}; {test}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--device", default="cuda", help="cuda, or cuda:N for the one-process runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="archspec-gpu-") as tmp:
        for target in args.targets.split(","):
            gpus, why = seen(target)
            print(f"{target}: sees {gpus} GPU(s)" + (f" ({why})" if why else ""), flush=True)
            if not gpus:
                continue
            print(f"  --device {args.device}: {train(target, args.device, 1, args.iters, Path(tmp, target))}")
            if gpus >= 2:
                print(f"  --nproc 2: {train(target, 'cuda', 2, args.iters, Path(tmp, target + '-2'))}", flush=True)


if __name__ == "__main__":
    main()
