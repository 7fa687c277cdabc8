"""Data-parallel training on this machine: ``archspec train --nproc N`` in every
framework, and the proof of the averaging across TF_CONFIG workers.

    .venv/bin/python benchmarks/distributed.py [--iters N] [--nproc N] [--targets LIST] [--no-multi-worker]

1. For each target, ``archspec train specs/lenet.yaml --iters N`` with
   ``--nproc 1`` and ``--nproc N`` (the command as a user runs it: torchrun,
   MirroredStrategy, mpirun): wall time, training seconds, test accuracy.
2. TensorFlow and Keras under MultiWorkerMirroredStrategy: 2 worker processes
   on localhost with TF_CONFIG take the steps of tests/test_distributed.py
   (Keras in its custom loop) from the same weights as one process; the
   largest difference of a weight, relative to the largest weight.
3. Ctrl-C under each launcher (torchrun, mpirun): SIGINT to the command's
   process group after the first evaluation; the exit status (130), the
   run's status and step, and the seconds until every process was gone.

Figures, not assertions (tests/test_distributed.py asserts); every run goes to
a temporary folder that is removed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
ARCHSPEC = str(Path(sys.executable).parent / "archspec")
PROOF = ROOT / "tests" / "test_distributed.py"


def train(target: str, nproc: int, iters: int, out: Path) -> dict:
    began = time.perf_counter()
    command = [ARCHSPEC, "train", "specs/lenet.yaml", "-t", target, "--iters", str(iters)]
    done = subprocess.run([*command, "--nproc", str(nproc), "-o", str(out), "-q"], capture_output=True, text=True)
    wall = time.perf_counter() - began
    if done.returncode:
        return {"error": (done.stdout + done.stderr).strip().splitlines()[-1]}
    info = json.loads((out / "run.json").read_text())
    return {"wall": wall, "seconds": info["seconds"], "accuracy": info["test_accuracy"], "engine": info["distributed"]}


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def multi_worker(target: str, folder: Path) -> str:
    """The proof's cases in 2 TF_CONFIG workers; the largest relative difference to one process."""
    cases = [
        {"target": target, "spec": str(ROOT / "specs" / "lenet.yaml"), "nproc": 2, "launched": True}
        | {"out": str(folder / f"{target}.npz"), "reference": str(folder / f"{target}.ref.npz")}
    ]
    path = folder / f"{target}.json"
    path.write_text(json.dumps(cases))
    hosts = [f"localhost:{p}" for p in free_ports(2)]
    workers = []
    for i in range(2):
        config = {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": i}}
        env = {**os.environ, "TF_CONFIG": json.dumps(config), "TF_CPP_MIN_LOG_LEVEL": "2"}
        workers.append(subprocess.Popen([sys.executable, str(PROOF), str(path)], env=env, stderr=subprocess.PIPE))
    errors = [w.communicate(timeout=600)[1] for w in workers]
    if any(w.returncode for w in workers):
        return "failed: " + next(e for e, w in zip(errors, workers) if w.returncode).decode()[-300:]
    ref, found = np.load(cases[0]["reference"]), np.load(cases[0]["out"])
    scale = max(np.abs(ref[k]).max() for k in ref.files)
    return f"{max(np.abs(ref[k] - found[k]).max() for k in ref.files) / scale:.1e}"


def ctrl_c(target: str, out: Path) -> tuple:
    command = [ARCHSPEC, "train", "specs/lenet.yaml", "-t", target, "--nproc", "2", "--iters", "100000"]
    proc = subprocess.Popen(
        [*command, "--eval-every", "20", "-o", str(out), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    metrics = out / "metrics.csv"
    while proc.poll() is None and not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 2):
        time.sleep(0.2)
    sent = time.perf_counter()
    os.killpg(proc.pid, signal.SIGINT)
    code = proc.wait(timeout=300)
    info = json.loads((out / "run.json").read_text())
    return target, code, info["status"], info["step"], f"{time.perf_counter() - sent:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--targets", default="pytorch,tensorflow,keras,chainer")
    parser.add_argument("--no-multi-worker", action="store_true", help="skip part 2")
    parser.add_argument("--no-ctrl-c", action="store_true", help="skip part 3")
    args = parser.parse_args()
    os.chdir(ROOT)
    targets = args.targets.split(",")
    print(f"archspec train specs/lenet.yaml --iters {args.iters}, --nproc 1 and {args.nproc}\n")
    print("| target | nproc | engine | wall s | training s | test accuracy |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="archspec-bench-") as tmp:
        for target in targets:
            for nproc in (1, args.nproc):
                r = train(target, nproc, args.iters, Path(tmp) / f"{target}-{nproc}")
                if "error" in r:
                    print(f"| {target} | {nproc} | error: {r['error']} | | | |")
                    continue
                engine = r["engine"]["engine"]
                print(f"| {target} | {nproc} | {engine} | {r['wall']:.1f} | {r['seconds']:.1f} | {r['accuracy']:.4f} |")
        if not args.no_multi_worker:
            print("\nMultiWorkerMirroredStrategy, 2 TF_CONFIG workers on localhost vs one process (3 steps):\n")
            print("| target | max weight difference / max weight |")
            print("|---|---|")
            for target in [t for t in targets if t in ("tensorflow", "keras")]:
                print(f"| {target} | {multi_worker(target, Path(tmp))} |")
        if not args.no_ctrl_c:
            print("\nCtrl-C after the first evaluation (--nproc 2, --eval-every 20):\n")
            print("| target | exit status | run status | step | seconds to stop |")
            print("|---|---|---|---|---|")
            for target in [t for t in targets if t in ("pytorch", "chainer")]:
                print("| " + " | ".join(str(v) for v in ctrl_c(target, Path(tmp) / f"{target}-ctrl-c")) + " |")


if __name__ == "__main__":
    main()
