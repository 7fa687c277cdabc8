"""``--device auto|cpu|cuda[:N]`` of archspec train and test (archspec/training/device.py).

This machine has no GPU: the choice is a pure function of what the framework
reports, so the GPU cases run here on fakes (:class:`Seen`, a monkeypatched
``seen``); the CPU cases and the errors run end to end. benchmarks/gpu_check.py
runs the GPU cases for real on a machine with GPUs.
"""

from __future__ import annotations

import json
import sys
import types

import pytest
from click.testing import CliRunner

from archspec import runtime
from archspec.cli import main
from archspec.training import device as D
from archspec.training import distributed
from archspec.training.core import TrainingError
from archspec.training.run import Options
from tests.conftest import SPECS

LENET = str(SPECS / "lenet.yaml")
NONE = D.Seen(0, "torch 2.13.0+cpu is a CPU build")
TWO = D.Seen(2)


def run_cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


# ----------------------------------------------------------------------------
# The choice (pure)


@pytest.mark.parametrize("text, value", [("auto", "auto"), ("CPU", "cpu"), (" cuda ", "cuda"), ("cuda:01", "cuda:1")])
def test_parse_normalizes_the_four_forms(text, value):
    assert D.parse(text) == value


@pytest.mark.parametrize("text", ["gpu", "cuda:", "cuda:-1", "cuda:x", "mps", "", "cpu:0"])
def test_parse_refuses_anything_else_with_the_choices(text):
    with pytest.raises(ValueError, match="give auto, cpu, cuda or cuda:N"):
        D.parse(text)


def test_cpu_is_the_cpu_even_with_gpus():
    assert D.choose("pytorch", "cpu", TWO) == ("cpu",)


def test_auto_takes_a_gpu_when_the_framework_sees_one_and_the_cpu_otherwise():
    assert D.choose("pytorch", "auto", TWO) == ("cuda:0",)
    assert D.choose("pytorch", "auto", NONE) == ("cpu",)
    assert D.choose("chainer", "auto", D.Seen(0, "CuPy is not installed")) == ("cpu",)


def test_auto_takes_gpus_only_when_every_replica_gets_one():
    assert D.choose("keras", "auto", TWO, replicas=2) == ("cuda:0", "cuda:1")  # MirroredStrategy
    assert D.choose("keras", "auto", TWO, replicas=4) == ("cpu",)  # logical CPU devices, as before
    assert D.choose("pytorch", "auto", TWO, local_rank=1, local_size=2) == ("cuda:1",)  # torchrun
    assert D.choose("pytorch", "auto", D.Seen(1), local_rank=1, local_size=2) == ("cpu",)


def test_cuda_gives_each_process_its_local_rank():
    assert D.choose("pytorch", "cuda", TWO) == ("cuda:0",)
    assert D.choose("pytorch", "cuda", TWO, local_rank=1, local_size=2) == ("cuda:1",)
    assert D.choose("chainer", "cuda", D.Seen(8), local_rank=3, local_size=4) == ("cuda:3",)  # intra_rank
    assert D.choose("tensorflow", "cuda", TWO, replicas=2) == ("cuda:0", "cuda:1")
    assert D.choose("pytorch", "cuda:1", TWO) == ("cuda:1",)


@pytest.mark.parametrize(
    "target, seen, message",
    [
        ("pytorch", NONE, "PyTorch sees no GPU (torch 2.13.0+cpu is a CPU build); install PyTorch's CUDA build"),
        ("tensorflow", D.Seen(0, "tensorflow-cpu is a CPU build"), "tensorflow[and-cuda]"),
        ("keras", D.Seen(0), "TensorFlow (Keras' backend) sees no GPU; install TensorFlow's CUDA build"),
        ("chainer", D.Seen(0, "CuPy is not installed"), "Chainer sees no GPU (CuPy is not installed); install CuPy"),
    ],
)
def test_cuda_without_a_gpu_names_the_framework_and_its_gpu_build(target, seen, message):
    with pytest.raises(TrainingError, match="--device cpu") as err:
        D.choose(target, "cuda", seen)
    assert message in str(err.value)


@pytest.mark.parametrize(
    "requested, where, message",
    [
        ("cuda:2", {}, "sees 2 GPU(s), cuda:0 to cuda:1"),
        ("cuda:0", {"local_size": 2}, "names one GPU, but this run has 2 replicas"),
        ("cuda", {"replicas": 3}, "3 replicas on this machine need 3 GPUs and TensorFlow sees 2"),
        ("cuda", {"local_rank": 2, "local_size": 4}, "give --nproc 2 or fewer"),
    ],
)
def test_cuda_refuses_gpus_that_are_not_there(requested, where, message):
    with pytest.raises(TrainingError) as err:
        D.choose("tensorflow", requested, TWO, **where)
    assert message in str(err.value)


def test_the_gpu_index_and_the_chainermn_communicator_follow_the_device():
    assert D.index("cuda:3") == 3 and D.index("cpu") is None
    assert distributed._communicator_name(("cpu",)) == "naive"
    assert distributed._communicator_name(("cuda:1",)) == "pure_nccl"


def test_sync_bn_in_pytorch_is_refused_on_the_cpu_only():
    with pytest.raises(TrainingError, match="give --device cuda"):
        distributed.check("pytorch", 2, 32, sync_bn=True, device="auto")
    distributed.check("pytorch", 2, 32, sync_bn=True, device="cuda")  # SyncBatchNorm on GPUs


def test_options_refuse_a_device_that_is_none():
    with pytest.raises(TrainingError, match="--device 'gpu' is not a device"):
        Options(spec=LENET, target="pytorch", device="gpu").check()


# ----------------------------------------------------------------------------
# The command line


def test_a_bad_device_is_a_usage_error():
    for command in ("train", "test"):
        args = ["-t", "pytorch", "--device", "gpu:0"] + (["--weights", "w.npz"] if command == "test" else [])
        result = run_cli(command, LENET, *args)
        assert result.exit_code == 2, result.output
        assert "'gpu:0' is not a device: give auto, cpu, cuda or cuda:N" in result.output


def test_train_on_cuda_where_pytorch_sees_no_gpu_exits_1_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "seen", lambda target: NONE)
    out = tmp_path / "run"
    result = run_cli("train", LENET, "-t", "pytorch", "--device", "cuda", "-o", str(out), "--quiet")
    assert result.exit_code == 1, result.output
    assert "error: --device cuda: PyTorch sees no GPU" in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_a_torchrun_worker_with_gpus_takes_nccl_and_its_local_rank(monkeypatch):
    """torchrun's second process on a machine with two GPUs (the group and CUDA faked)."""
    import torch
    import torch.distributed as dist

    env = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "x"}
    for key, value in {**env, "MASTER_PORT": "1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(D, "seen", lambda target: TWO)
    started, current = [], []
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", started.append)
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    world = distributed.world("pytorch", 1, True, False, 32, device="cuda")
    assert world.devices == ("cuda:1",) and current == [1]
    assert started == ["cpu:gloo,cuda:nccl"] and "nccl" in world.engine


# ----------------------------------------------------------------------------
# End to end on the CPU (slow)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["pytorch", "keras"])
def test_cpu_and_auto_train_and_test_on_the_cpu_and_say_so(tmp_path, target):
    for device in ("cpu", "auto"):
        out = tmp_path / device
        args = ["--iters", "3", "--batch-size", "8", "--eval-every", "3", "--threads", "1", "--quiet"]
        result = run_cli("train", LENET, "-t", target, "--device", device, "-o", str(out), *args)
        assert result.exit_code == 0, result.output
        assert ", on cpu\n" in result.output
        info = json.loads((out / "run.json").read_text())
        assert info["device"] == "cpu" and info["options"]["device"] == device
        result = run_cli("test", LENET, "-t", target, "--weights", str(out), "--device", device, "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["n"] == 359


@pytest.mark.slow
@pytest.mark.parametrize("target", ["tensorflow", "chainer"])
def test_cuda_where_the_framework_sees_no_gpu_is_a_clear_error(tmp_path, target):
    out = tmp_path / "run"
    result = run_cli("train", LENET, "-t", target, "--device", "cuda:0", "-o", str(out), "--quiet")
    assert result.exit_code == 1, result.output
    assert "sees no GPU" in result.output and "--device cpu" in result.output and "Traceback" not in result.output
    assert not out.exists()
    result = run_cli("test", LENET, "-t", target, "--weights", str(tmp_path / "w.npz"), "--device", "cuda")
    assert result.exit_code == 1 and "sees no GPU" in result.output, result.output


# ----------------------------------------------------------------------------
# Reading back what a GPU wrote, and the frameworks' GPU calls (faked)


def test_a_pytorch_gpu_runs_optimizer_state_resumes_on_the_cpu(tmp_path, monkeypatch):
    """optimizer.pt as a GPU run writes it (every tensor tagged cuda:0) is read onto this run's device:
    without ``map_location`` torch.load refuses it where CUDA is not available."""
    import torch

    from archspec.training import pytorch

    weight = torch.nn.Parameter(torch.ones(3))
    gpu_run = torch.optim.SGD([weight], lr=0.1, momentum=0.9)
    weight.grad = torch.ones(3)
    gpu_run.step()  # a momentum buffer to save
    with monkeypatch.context() as m:
        m.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        torch.save(gpu_run.state_dict(), tmp_path / "optimizer.pt")
    trainer = pytorch.Trainer.__new__(pytorch.Trainer)  # only what restore reads
    trainer.device = torch.device("cpu")
    trainer.optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(3))], lr=0.1, momentum=0.9)
    trainer.restore(tmp_path)
    buffer = next(iter(trainer.optimizer.state.values()))["momentum_buffer"]
    assert buffer.device.type == "cpu" and buffer.tolist() == [1.0, 1.0, 1.0]


class FakeTFConfig:
    """``tf.config`` on a machine with ``n`` GPUs, before TensorFlow starts: what archspec sets."""

    def __init__(self, n: int) -> None:
        self.gpus = [f"PhysicalDevice(/physical_device:GPU:{i})" for i in range(n)]
        self.visible, self.growth = list(self.gpus), {}
        self.experimental = types.SimpleNamespace(
            get_memory_growth=lambda gpu: self.growth.get(gpu, False), set_memory_growth=self.growth.__setitem__
        )

    def list_physical_devices(self, kind):
        return list(self.gpus)

    def get_visible_devices(self, kind):
        return list(self.visible)

    def set_visible_devices(self, devices, kind):
        self.visible = list(devices)


@pytest.mark.parametrize(
    "requested, replicas, visible",
    [("cuda", 2, [0, 1]), ("cuda:2", 1, [2]), ("cuda", 1, [0]), ("auto", 1, [0]), ("cpu", 1, [])],
)
def test_tensorflow_sees_only_the_chosen_gpus_and_grows_their_memory(monkeypatch, requested, replicas, visible):
    """MirroredStrategy over 2 of 4 GPUs leaves the other 2 alone; every GPU TensorFlow sees grows its memory
    as needed, so that several processes (TF_CONFIG workers, archspec test beside a run) can share one."""
    config = FakeTFConfig(4)
    monkeypatch.setitem(sys.modules, "tensorflow", types.SimpleNamespace(config=config))
    monkeypatch.setattr(D, "seen", lambda target: D.Seen(4))
    devices = D.place("tensorflow", requested, replicas=replicas)
    assert config.visible == [config.gpus[i] for i in visible]
    assert config.growth == dict.fromkeys(config.visible, True)
    assert len(devices) == max(1, len(visible))


def test_a_chainer_model_on_gpu_k_makes_k_cupys_current_device():
    """archspec test --device cuda:1 loads the weights into arrays on GPU 1: CuPy copies on its current device."""
    calls = []

    class Model:
        device = types.SimpleNamespace(use=lambda: calls.append("use"))

        def to_device(self, where):
            calls.append(where)

    model = Model()
    assert D.move("chainer", model, "cuda:1") is model
    assert calls == ["@cupy:1", "use"]
    assert D.move("chainer", model, "cpu") is model and calls == ["@cupy:1", "use"]


def test_chainermn_without_nccl_is_a_clear_error(monkeypatch):
    """create_communicator("pure_nccl") raises RuntimeError where CuPy has no NCCL (chainermn's own check)."""
    pytest.importorskip("mpi4py")
    runtime.get("chainer")._chainer()  # numpy 2's shim before chainer
    import chainermn

    def create_communicator(name):
        raise RuntimeError("PureNcclCommunicator requires NCCL 2.0+, but NCCL is not available.")

    monkeypatch.setattr(chainermn, "create_communicator", create_communicator)
    distributed._communicator.cache_clear()
    with pytest.raises(TrainingError, match="NCCL is not available.*--device cpu"):
        distributed._communicator("pure_nccl")
    distributed._communicator.cache_clear()
