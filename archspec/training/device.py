"""Where a run computes: ``--device auto|cpu|cuda[:N]`` of ``archspec train`` and ``test``.

The decision is :func:`choose`, a pure function of what ``--device`` asks and
what the framework reports (:class:`Seen`: how many GPUs it can compute on,
and why none if so), so that the GPU cases are tested without a GPU;
:func:`seen` asks the framework.

- ``cpu``: the CPU, even where the framework sees a GPU.
- ``auto`` (the default): one GPU per replica when the framework sees enough
  of them, else the CPU.
- ``cuda``: GPUs, or an error saying which framework sees none and how to
  install its GPU build. Replica i on a machine takes ``cuda:i``: under
  torchrun the process of local rank r takes ``cuda:r``, under mpirun
  ChainerMN's ``intra_rank``, under MirroredStrategy ``/GPU:0`` to ``/GPU:N-1``.
- ``cuda:N``: GPU N, for a run of one replica per machine.

Each framework in its own idiom: PyTorch moves the model and every batch
(``.to(device, non_blocking=True)``, a pinned DataLoader), DDP over nccl;
TensorFlow and Keras see only the chosen GPU (or none), which TensorFlow then
places every op on (``/GPU:0``); Chainer moves the model to ``@cupy:N``
(``model.to_device``) and the updater's batches with it.
"""

from __future__ import annotations

import contextlib
import importlib
from dataclasses import dataclass

from archspec.training.core import TrainingError

CHOICES = "auto, cpu, cuda or cuda:N"
NAMES = {"pytorch": "PyTorch", "tensorflow": "TensorFlow", "keras": "TensorFlow (Keras' backend)", "chainer": "Chainer"}
GPU_BUILDS = {  # how to get each framework's GPU build (docs/training.md, "GPUs")
    "pytorch": "install PyTorch's CUDA build: pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128",
    "tensorflow": "install TensorFlow's CUDA build in place of tensorflow-cpu: "
    "pip uninstall tensorflow-cpu && pip install 'tensorflow[and-cuda]==2.21.*' (Linux)",
    "chainer": "install CuPy for your CUDA (CuPy 7, Chainer 7.8.1's own pin, has no wheel for Python 3.11 or numpy 2): "
    "pip install 'cupy-cuda12x>=13.3,<14' (CUDA 12)",
}
GPU_BUILDS["keras"] = GPU_BUILDS["tensorflow"]


@dataclass(frozen=True)
class Seen:
    """What a framework reports: the GPUs it can compute on, and why none if so."""

    gpus: int
    why: str = ""  # e.g. "torch 2.13.0+cpu is a CPU build"


def parse(text: str) -> str:
    """``--device`` normalized: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``; ValueError if it is none of them."""
    value = text.strip().lower()
    kind, colon, index = value.partition(":")
    if value in ("auto", "cpu", "cuda") or (kind == "cuda" and colon and index.isdigit()):
        return value if not colon else f"cuda:{int(index)}"
    raise ValueError(f"{text!r} is not a device: give {CHOICES} (N: a GPU's index, 0 for the first)")


def choose(
    target: str, requested: str, seen: Seen, *, replicas: int = 1, local_rank: int = 0, local_size: int = 1
) -> tuple[str, ...]:
    """The devices of this process's replicas: ``("cpu",)`` or one ``cuda:K`` per replica.

    ``replicas``: the replicas this process computes (MirroredStrategy's N, else 1);
    ``local_rank`` and ``local_size``: this process among the run's processes on
    this machine (torchrun's LOCAL_RANK and LOCAL_WORLD_SIZE, MPI's intra rank and size).
    Raises TrainingError when ``cuda`` cannot be had."""
    needed = replicas * local_size
    if requested == "cpu" or (requested == "auto" and seen.gpus < needed):
        return ("cpu",)
    name = NAMES[target]
    if seen.gpus == 0:
        why = f" ({seen.why})" if seen.why else ""
        raise TrainingError(
            f"--device {requested}: {name} sees no GPU{why}; {GPU_BUILDS[target]} (or train on the CPU: --device cpu)"
        )
    if requested.startswith("cuda:"):
        index = int(requested.split(":")[1])
        if needed > 1:
            raise TrainingError(
                f"--device {requested} names one GPU, but this run has {needed} replicas on this machine: "
                "give --device cuda (replica i takes cuda:i)"
            )
        if index >= seen.gpus:
            raise TrainingError(
                f"--device {requested}: {name} sees {seen.gpus} GPU(s), cuda:0 to cuda:{seen.gpus - 1}; "
                "give one of them"
            )
        return (requested,)
    if seen.gpus < needed:
        raise TrainingError(
            f"--device cuda: {needed} replicas on this machine need {needed} GPUs and {name} sees {seen.gpus}; "
            f"give --nproc {seen.gpus} or fewer, or --device cpu"
        )
    first = local_rank * replicas
    return tuple(f"cuda:{i}" for i in range(first, first + replicas))


def index(device: str) -> int | None:
    """The GPU index of ``cuda:K``; None for the CPU."""
    return int(device.split(":")[1]) if device.startswith("cuda:") else None


# ----------------------------------------------------------------------------
# The frameworks' side (each imports its framework)


def place(target: str, requested: str, **where: int) -> tuple[str, ...]:
    """The devices ``--device`` resolves to for this process (``where``: see :func:`choose`);
    from then on TensorFlow sees only their GPUs. Call it before the framework computes."""
    devices = choose(target, requested, seen(target), **where)
    if target in ("tensorflow", "keras"):
        tensorflow_gpus(devices)
    return devices


def move(target: str, model, device: str):
    """The model on ``device``: PyTorch's ``.to``, Chainer's ``to_device("@cupy:K")`` (GPU K then
    CuPy's current device, where it allocates and runs the weights' copies); TensorFlow and Keras
    place it on the GPU they see (see :func:`place`)."""
    if device == "cpu" or target in ("tensorflow", "keras"):
        return model
    if target == "pytorch":
        return model.to(device)
    model.to_device(f"@cupy:{index(device)}")
    model.device.use()
    return model


def seen(target: str) -> Seen:
    """The GPUs ``target``'s framework can compute on."""
    if target == "pytorch":
        import torch

        if torch.cuda.is_available():
            return Seen(torch.cuda.device_count())
        build = f"torch {torch.__version__} is a CPU build" if torch.version.cuda is None else "no CUDA device visible"
        return Seen(0, build)
    if target in ("tensorflow", "keras"):
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        built = tf.test.is_built_with_cuda()
        return Seen(len(gpus), "" if gpus else "tensorflow-cpu is a CPU build" if not built else "no GPU visible")
    from archspec import runtime

    runtime.get("chainer")._chainer()  # numpy 2's shim before chainer
    cuda = importlib.import_module("chainer.backends.cuda")
    if not cuda.available:
        try:
            importlib.import_module("cupy")
        except ImportError:
            return Seen(0, "Chainer computes on GPUs through CuPy, which is not installed")
        return Seen(0, "CuPy is installed but Chainer cannot use it (chainer.print_runtime_info() says why)")
    return Seen(cuda.cupy.cuda.runtime.getDeviceCount())


def tensorflow_gpus(devices: tuple[str, ...]) -> None:
    """Make TensorFlow see the GPUs of ``devices`` only (none for the CPU), before it starts:
    MirroredStrategy's ``cuda:0`` to ``cuda:N-1`` become its ``/GPU:0`` to ``/GPU:N-1``, and the
    GPUs left out get none of its memory. Those it sees grow their memory as needed (TensorFlow
    otherwise takes nearly all of it at once), so that several processes can share a GPU."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    wanted = [] if devices == ("cpu",) else [gpus[index(d)] for d in devices]
    if tf.config.get_visible_devices("GPU") != wanted:
        try:
            tf.config.set_visible_devices(wanted, "GPU")
        except RuntimeError:  # TensorFlow already started in this process: its devices are fixed
            raise TrainingError(
                f"--device: TensorFlow already started in this process on other devices than {', '.join(devices)}; "
                "run it in a new process"
            ) from None
    for gpu in wanted:
        if not tf.config.experimental.get_memory_growth(gpu):
            with contextlib.suppress(RuntimeError):  # TensorFlow already started: it keeps what it took
                tf.config.experimental.set_memory_growth(gpu, True)
