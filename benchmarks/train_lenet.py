"""Train LeNet on the built-in digits in every framework, as `archspec train` does,
and print time, speed and accuracy side by side with the references.

    .venv/bin/python benchmarks/train_lenet.py [--iters N] [--lr X] [--optimizer NAME]
                                               [--threads N] [--seed N] [--targets LIST] [--spec SPEC]

References, in the same run: PyTorch for time and speed (the ratio column is
time / PyTorch's time), and the issue's target of 90% test accuracy (the
ratio column is accuracy / 0.90). Figures, not assertions: the run
directories are written to a temporary folder and removed.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_ACCURACY = 0.90


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default="specs/lenet.yaml")
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--lr", type=float, default=0.003)
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="framework threads (1 is steady on a busy machine)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--targets", default="pytorch,tensorflow,keras,chainer")
    args = parser.parse_args()
    os.chdir(ROOT)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from archspec.training.run import Options, train

    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    print(
        f"{args.spec} on digits: {args.iters} steps, batch {args.batch_size}, {args.optimizer} at lr {args.lr:g}, "
        f"{args.threads} thread(s), seed {args.seed}"
    )
    print(
        f"{'target':<11} {'seconds':>8} {'vs torch':>9} {'steps/s':>8} {'test acc':>9} {'vs 0.90':>8} {'train acc':>10}"
    )
    reference = None
    with tempfile.TemporaryDirectory(prefix="archspec-bench-") as tmp:
        for target in targets:
            options = Options(
                spec=args.spec,
                target=target,
                lr=args.lr,
                iters=args.iters,
                batch_size=args.batch_size,
                optimizer=args.optimizer,
                seed=args.seed,
                threads=args.threads,
                out=str(Path(tmp) / target),
                quiet=True,
            )
            began = time.perf_counter()
            result = train(options, echo=lambda m: None)
            wall = time.perf_counter() - began
            info = result.summary
            seconds = info["seconds"]  # the training loop, evaluations included
            reference = reference or seconds
            accuracy = info.get("test_accuracy", float("nan"))
            print(
                f"{target:<11} {seconds:9.1f} {seconds / reference:8.2f}x {result.step / seconds:9.1f} "
                f"{accuracy:9.4f} {accuracy / TARGET_ACCURACY:8.3f}x {info.get('train_accuracy', float('nan')):10.4f}"
                f"   ({wall:.1f} s with code generation and start-up; {result.status})"
            )


if __name__ == "__main__":
    main()
