"""Training on GPUs, for a machine that has them: one ``ok`` or ``FAIL`` line per check.

    .venv/bin/python benchmarks/gpu_check.py [--iters N] [--targets LIST] [--device cuda]

Install the GPU builds first (docs/training.md, "GPUs"). For each target: what
its framework sees (archspec.training.device.seen); where it sees a GPU, the
commands as a user runs them, on LeNet and the built-in digits:

- ``train --device cuda --iters N``: run.json must say it ran on ``cuda:K``;
- ``test --device cuda`` of that run (weights.npz read onto the GPU);
- ``train --resume RUN --device cpu --iters 2N``: the GPU run's optimizer state
  read back on the CPU, run.json then at step 2N on ``cpu``;
- where it sees two GPUs, ``--nproc 2`` (torchrun with nccl, MirroredStrategy
  over /GPU:0 and /GPU:1, mpirun with ChainerMN's pure_nccl communicator), and
  for PyTorch ``--nproc 2 --sync-bn`` on MobileNet v1 at 32x32 (SyncBatchNorm).

A target whose framework sees no GPU is ``skipped`` with the reason and how to
install its GPU build; on this project's CPU builds every target is skipped.
A failed check prints the command and the last lines of its output. The exit
status is 1 when any check failed, 2 when none ran, else 0. Every run goes to
a temporary folder that is removed.
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
SPEC = "specs/lenet.yaml"
BN_SPEC = "specs/mobilenet_v1.yaml"  # batch norm, for --sync-bn


def seen(target: str) -> tuple[int, str]:
    """(GPUs, why none) as the framework reports them, in a fresh process (TensorFlow fixes its devices once)."""
    code = (
        "import json, sys; from archspec.training.device import seen; "
        f"s = seen({target!r}); print(json.dumps([s.gpus, s.why]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        return 0, "asking it failed: " + ((done.stdout + done.stderr).strip().splitlines() or ["no output"])[-1]
    gpus, why = json.loads(done.stdout.strip().splitlines()[-1])
    return gpus, why


class Checks:
    """Runs archspec commands and prints one line per check; counts the failures."""

    def __init__(self) -> None:
        self.ran = self.failed = 0

    def run(self, name: str, args: list[str], expect) -> bool:
        """``archspec ARGS``; ``expect(stdout)`` returns what went wrong (or "") and the line's figures."""
        self.ran += 1
        began = time.perf_counter()
        done = subprocess.run([ARCHSPEC, *args], capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - began
        output = (done.stdout + done.stderr).strip()
        try:
            wrong, figures = (f"exit status {done.returncode}", "") if done.returncode else expect(done.stdout)
        except (OSError, ValueError, KeyError, TypeError) as exc:  # no run.json, or not what it should be
            wrong, figures = f"{type(exc).__name__}: {exc}", ""
        if wrong:
            self.failed += 1
            print(f"  FAIL {name}: {wrong} ({wall:.1f} s)\n    $ archspec {' '.join(args)}", flush=True)
            for line in output.splitlines()[-8:]:
                print(f"    | {line}")
            return False
        print(f"  ok   {name}: {figures} ({wall:.1f} s)", flush=True)
        return True

    def train(self, name: str, out: Path, args: list[str], device: str, step: int) -> bool:
        """A training run that must end at ``step`` on ``device`` ("cuda": any GPU)."""

        def expect(stdout: str) -> tuple[str, str]:
            info = json.loads((out / "run.json").read_text())
            used, engine = info["device"], info["distributed"]["engine"]
            on_it = used.startswith("cuda") if device == "cuda" else used == device
            wrong = "" if on_it else f"ran on {used}, not {device}"
            wrong = wrong or ("" if info["step"] == step else f"stopped at step {info['step']}, not {step}")
            figures = f"on {used} ({engine}), {info['step']} steps, test accuracy {info['test_accuracy']:.4f}"
            return wrong, figures

        return self.run(name, ["train", *args, "-o", str(out), "-q"], expect)

    def test(self, target: str, out: Path, device: str) -> None:
        def expect(stdout: str) -> tuple[str, str]:
            report = json.loads(stdout)
            return ("" if report["n"] else "tested no image"), f"accuracy {report['accuracy']:.4f} of {report['n']}"

        args = ["test", SPEC, "-t", target, "--weights", str(out), "--device", device, "--json"]
        self.run(f"test --device {device}", args, expect)


def check_target(checks: Checks, target: str, device: str, iters: int, tmp: Path) -> None:
    gpus, why = seen(target)
    print(f"{target}: sees {gpus} GPU(s)" + (f" ({why})" if why else ""), flush=True)
    if not gpus:
        print("  skipped: no GPU (docs/training.md, 'GPUs', says how to install the GPU build)")
        return
    out = tmp / target
    common = ["-t", target, "--iters", str(iters), "--eval-every", str(iters)]
    if checks.train(f"train --device {device}", out, [SPEC, *common, "--device", device], "cuda", iters):
        checks.test(target, out, device)
        resume = ["--resume", str(out), "--iters", str(2 * iters), "--device", "cpu"]
        checks.train("train --resume on the CPU", out, resume, "cpu", 2 * iters)
    if gpus < 2:
        print("  skipped: --nproc 2 (one GPU)")
        return
    parallel = [SPEC, *common, "--device", "cuda", "--nproc", "2", "--batch-size", "32"]
    if checks.train("train --nproc 2", tmp / f"{target}-2", parallel, "cuda", iters):
        checks.test(target, tmp / f"{target}-2", "cuda")
    if target == "pytorch":  # LeNet has no batch norm: MobileNet v1's become SyncBatchNorm
        sync = [BN_SPEC, *parallel[1:], "--input", "3x32x32", "--sync-bn"]
        checks.train("train --nproc 2 --sync-bn (mobilenet_v1)", tmp / f"{target}-sync", sync, "cuda", iters)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--device", default="cuda", help="cuda, or cuda:N for the one-process runs")
    args = parser.parse_args()
    checks = Checks()
    with tempfile.TemporaryDirectory(prefix="archspec-gpu-") as tmp:
        for target in args.targets.split(","):
            check_target(checks, target, args.device, args.iters, Path(tmp))
    if not checks.ran:
        print("no check ran: no framework sees a GPU")
        return 2
    failed = f", {checks.failed} FAILED" if checks.failed else ""
    print(f"{checks.ran - checks.failed} of {checks.ran} checks ok{failed}")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
