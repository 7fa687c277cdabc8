"""Time generated models against their twins: PyTorch against torchvision, and
(with --keras) Keras against keras.applications.

    .venv/bin/python benchmarks/vs_reference.py [--nets resnet18,mobilenet_v2] [--threads 1]
        [--rounds 5] [--batch 8] [--size 160] [--no-train] [--keras]

Per pair: inference (eval, no_grad) and one training step (SGD, cross-entropy
on the logits: the generated model is built with logits=True where it ends in
a softmax), in milliseconds per batch, the median over interleaved rounds after
a warm-up, and the ratio generated / twin. Both sides hold random weights; no
weights are copied or downloaded. Both run in this one process on the same
input, one after the other in each round (the order alternates between
rounds), with a fixed number of threads. The generated code is compiled from
specs/ at the input size asked for (--size changes the spec's input, as
`archspec compile --input` does). Figures, not assertions.

mobilenet_v2 and efficientnet_b0 follow Keras by default: their stride-2
layers pad 'same' by TensorFlow's rule, one pixel more at the bottom and right,
which PyTorch's layers cannot say (Conv2dSame pads a copy of the input there).
Against torchvision they are compiled with --set convention=torchvision, the
same function torchvision computes (symmetric padding, its batch-norm
epsilon); --keras-convention times the Keras form against torchvision instead.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Spec name -> (torchvision constructor, its keyword arguments, the spec's input size).
PAIRS: dict[str, tuple[str, dict, int]] = {
    "resnet18": ("resnet18", {}, 224),
    "resnet50": ("resnet50", {}, 224),
    "vgg16": ("vgg16", {}, 224),
    "densenet121": ("densenet121", {}, 224),
    "mobilenet_v2": ("mobilenet_v2", {}, 224),
    "efficientnet_b0": ("efficientnet_b0", {}, 224),
    "inception_v3": ("inception_v3", {"aux_logits": False, "init_weights": False}, 299),
}
# The spec's --set values that make it its torchvision twin (see the spec's twins:).
TORCHVISION_SETS = {"mobilenet_v2": {"convention": "torchvision"}, "efficientnet_b0": {"convention": "torchvision"}}
# Spec name -> keras.applications constructor, for --keras.
KERAS_PAIRS = {"xception": "Xception", "mobilenet_v2": "MobileNetV2", "densenet121": "DenseNet121"}


def generated_model(name: str, size: int, workdir: Path, sets: dict[str, str] | None = None):
    """The generated PyTorch network of specs/<name>.yaml (with ``sets``) for a
    size x size input, 1000 classes, returning logits."""
    from archspec.codegen import pytorch
    from archspec.codegen.model import build, class_name
    from archspec.pipeline import compile_spec

    compiled = compile_spec(ROOT / "specs" / f"{name}.yaml", sets, input_shape=(3, size, size))
    path = workdir / f"{name}_pytorch.py"
    path.write_text(pytorch.emit(build(compiled)))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    cls = getattr(module, class_name(name))
    params = inspect.signature(cls).parameters
    kwargs = {"num_classes": 1000, **({"logits": True} if "logits" in params else {})}
    return cls(**kwargs)


def generated_keras_model(name: str, size: int, workdir: Path):
    """The generated Keras network for a size x size input, 1000 classes, returning logits."""
    from archspec.codegen import keras as keras_emitter
    from archspec.codegen.model import build, class_name
    from archspec.pipeline import compile_spec

    compiled = compile_spec(ROOT / "specs" / f"{name}.yaml", input_shape=(3, size, size))
    path = workdir / f"{name}_keras.py"
    path.write_text(keras_emitter.emit(build(compiled)))
    spec = importlib.util.spec_from_file_location(f"bench_{name}_keras", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    fn = getattr(module, class_name(name))
    params = inspect.signature(fn).parameters
    return fn(num_classes=1000, **({"logits": True} if "logits" in params else {}))


def keras_twin(name: str, size: int):
    import keras

    ctor = getattr(keras.applications, KERAS_PAIRS[name])
    return ctor(weights=None, input_shape=(size, size, 3), classes=1000, classifier_activation=None)


def keras_modes(ours, twin, x, y, train: bool) -> list[tuple[str, Callable[[], None], Callable[[], None]]]:
    """Inference (``predict_on_batch``) and one SGD step (``train_on_batch``, cross-entropy on logits)."""
    import keras

    modes = [("infer", lambda: ours.predict_on_batch(x), lambda: twin.predict_on_batch(x))]
    if train:
        for model in (ours, twin):
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            model.compile(optimizer=keras.optimizers.SGD(0.01), loss=loss)
        modes.append(("train", lambda: ours.train_on_batch(x, y), lambda: twin.train_on_batch(x, y)))
    return modes


def twin_model(name: str):
    from archspec.reference import torchvision

    ctor, kwargs, _ = PAIRS[name]
    return getattr(torchvision().models, ctor)(weights=None, num_classes=1000, **kwargs)


def inference(model, x) -> Callable[[], None]:
    import torch

    def run() -> None:
        model.eval()
        with torch.no_grad():
            model(x)

    return run


def train_step(model, x, y) -> Callable[[], None]:
    import torch

    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = torch.nn.CrossEntropyLoss()

    def run() -> None:
        model.train()
        optimizer.zero_grad()
        out = model(x)
        if isinstance(out, tuple):  # the network's outputs (a head switched off is None): train the first
            out = out[0]
        loss_fn(out, y).backward()
        optimizer.step()

    return run


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def compare(pair: tuple[Callable[[], None], Callable[[], None]], rounds: int) -> tuple[float, float]:
    """Median milliseconds of (generated, twin): one warm-up each, then rounds that
    alternate which of the two runs first."""
    for fn in pair:
        fn()
    times: tuple[list[float], list[float]] = ([], [])
    for r in range(rounds):
        order = (0, 1) if r % 2 == 0 else (1, 0)
        for k in order:
            times[k].append(timed(pair[k]))
    return statistics.median(times[0]), statistics.median(times[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nets", default="", help=f"comma-separated (default: all), of: {', '.join(PAIRS)}")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: steady on a busy machine)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per measurement (default 5)")
    parser.add_argument("--batch", type=int, default=8, help="batch size (default 8)")
    parser.add_argument("--size", type=int, default=0, help="input height and width (default: each spec's own)")
    parser.add_argument("--no-train", action="store_true", help="time inference only")
    parser.add_argument("--keras", action="store_true", help=f"Keras pairs instead: {', '.join(KERAS_PAIRS)}")
    parser.add_argument(
        "--keras-convention",
        action="store_true",
        help="time mobilenet_v2 and efficientnet_b0 in their default (Keras) form against torchvision",
    )
    args = parser.parse_args()
    pairs = KERAS_PAIRS if args.keras else PAIRS
    nets = [n.strip() for n in (args.nets or ",".join(pairs)).split(",") if n.strip()]
    unknown = [n for n in nets if n not in pairs]
    if unknown or not nets:
        parser.error(f"--nets: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(pairs)}")
    for flag in ("threads", "rounds", "batch"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be at least 1")
    if args.size < 0:
        parser.error("--size must be positive (0: each spec's own)")
    if args.keras:
        keras_main(nets, args)
        return

    import torch

    from archspec.codegen.model import CodegenError
    from archspec.diagnostics import SpecError
    from archspec.reference import ReferenceUnavailable

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch}, median of {args.rounds} rounds")
    print(f"{'net':<16} {'mode':<6} {'size':>4} {'generated ms':>13} {'twin ms':>9} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in nets:
            size = args.size or PAIRS[name][2]
            try:
                sets = {} if args.keras_convention else TORCHVISION_SETS.get(name, {})
                ours, twin = generated_model(name, size, Path(tmp), sets), twin_model(name)
            except (ReferenceUnavailable, SpecError, CodegenError) as exc:
                sys.exit(f"vs_reference: {name} at {size}x{size}: {exc}")
            gen = torch.Generator().manual_seed(0)
            x = torch.randn(args.batch, 3, size, size, generator=gen)
            y = torch.randint(0, 1000, (args.batch,), generator=gen)
            modes = [("infer", inference(ours, x), inference(twin, x))]
            if not args.no_train:
                modes.append(("train", train_step(ours, x, y), train_step(twin, x, y)))
            for mode, a, b in modes:
                ms_ours, ms_twin = compare((a, b), args.rounds)
                print(f"{name:<16} {mode:<6} {size:>4} {ms_ours:13.1f} {ms_twin:9.1f} {ms_ours / ms_twin:6.3f}")
                sys.stdout.flush()


def keras_main(nets: list[str], args: argparse.Namespace) -> None:
    """The Keras pairs, on the TensorFlow backend with fixed threads."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import numpy as np

    try:
        import tensorflow as tf
    except ImportError as exc:
        sys.exit(f"vs_reference: --keras needs tensorflow and keras ({exc}); pip install archspec[keras]")

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    print(f"tensorflow {tf.__version__}, {args.threads} thread(s), batch {args.batch}, median of {args.rounds} rounds")
    print(f"{'net':<16} {'mode':<6} {'size':>4} {'generated ms':>13} {'twin ms':>9} {'ratio':>6}")
    from archspec.codegen.model import CodegenError
    from archspec.diagnostics import SpecError

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for name in nets:
            size = args.size or (299 if name == "xception" else 224)
            try:
                ours, twin = generated_keras_model(name, size, Path(tmp)), keras_twin(name, size)
            except (SpecError, CodegenError, ValueError) as exc:  # ValueError: keras.applications' size checks
                sys.exit(f"vs_reference: {name} at {size}x{size}: {exc}")
            x = rng.standard_normal((args.batch, size, size, 3), dtype=np.float32)
            y = rng.integers(0, 1000, args.batch)
            for mode, a, b in keras_modes(ours, twin, x, y, not args.no_train):
                ms_ours, ms_twin = compare((a, b), args.rounds)
                print(f"{name:<16} {mode:<6} {size:>4} {ms_ours:13.1f} {ms_twin:9.1f} {ms_ours / ms_twin:6.3f}")
                sys.stdout.flush()


if __name__ == "__main__":
    main()
