"""archspec train --nproc: data-parallel training on each framework's engine (issue 16, points 3 and 5).

The proof of the averaging: from the same weights, on the same global
batches, N replicas and one process reach the same weights (float rounding
apart). PyTorch runs 2 processes under torchrun, Chainer 2 under mpirun,
TensorFlow and Keras 2 replicas of MirroredStrategy in one process (Keras'
custom loop, which MultiWorkerMirroredStrategy uses, too); with --sync-bn,
Chainer's and Keras' batch-norm statistics match as well.

Run as a script, this file is one process of that proof:
``python tests/test_distributed.py CASES.json`` (see :func:`run_cases`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script by torchrun or mpirun
    sys.path.insert(0, str(ROOT))

from archspec.cli import main  # noqa: E402
from archspec.training import distributed  # noqa: E402
from archspec.training.core import Interrupted, TrainingError  # noqa: E402

LENET = str(ROOT / "specs" / "lenet.yaml")
ARCHSPEC = str(Path(sys.executable).parent / "archspec")
TINY_BN = """\
name: tinybn
source: one convolution with batch norm, for the tests of distributed training
input: [3, 8, 8]
params:
  num_classes: 3
layers:
  - conv1: {op: conv2d, out: 4, kernel: 3}
  - bn1: {op: batch_norm}
  - act1: {op: relu}
  - flatten: {op: flatten}
  - fc: {op: dense, out: num_classes}
"""
STEPS, BATCH = 3, 8


def run_cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


# ----------------------------------------------------------------------------
# The proof's steps, in whichever world this process is in


class Steps:
    """A stand-in for the monitor: the losses the trainer reports."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def step(self, step: int, loss: float, correct: int, n: int) -> None:
        self.losses.append(loss)


def take_steps(case: dict, world: distributed.World) -> tuple[dict, dict]:
    """Build the case's model in ``world``, load its initial weights (when given)
    and take its steps: ``train_step`` on the global batches of the case's seed,
    or ``fit`` on the digits (``"fit": true``). (initial weights, final weights)."""
    from archspec import weights as W
    from archspec.codegen.model import has_logits_switch
    from archspec.pipeline import compile_spec
    from archspec.training import data as D
    from archspec.training.core import Setup
    from archspec.training.run import generate, trainer_for

    compiled = compile_spec(case["spec"], {"num_classes": "10"})  # the digits' classes
    classes = int(compiled.graph.params["num_classes"])
    setup = Setup(
        num_classes=classes,
        logits=has_logits_switch(compiled.graph),
        outputs=1,
        optimizer="momentum",
        lr=0.05,
        dropout=False,
        world=world,
    )
    with tempfile.TemporaryDirectory() as tmp:
        module = generate(compiled, case["target"], Path(tmp))
    with world.scope():
        trainer = trainer_for(case["target"], module, compiled, setup)
    if isinstance(case.get("init"), str):
        trainer.load(W.load(case["init"], compiled))
    elif case.get("init"):
        trainer.load(case["init"])
    initial = trainer.export()
    if case.get("fit"):
        data = D.load("digits", compiled.graph.input_shape, split="train")
        trainer.fit(data, BATCH, 0, STEPS, Steps())
    else:
        rng = np.random.default_rng(case.get("seed", 0))
        for _ in range(STEPS):
            x = rng.random((BATCH, *compiled.graph.input_shape), dtype=np.float32)
            trainer.train_step(x, rng.integers(0, classes, BATCH))
    return initial, trainer.export()


def run_cases(path: str) -> None:
    """Worker side: every case of the JSON file in this process's world (``nproc``
    replicas; ``"launched"``: one process of a launcher's or TF_CONFIG's job);
    rank 0 writes each case's final weights to its ``out``. With ``"reference":
    OUT``, every process first takes the steps alone (rank 0 writes them to OUT,
    their start to OUT.init.npz) and starts the case from there."""
    cases = json.loads(Path(path).read_text())
    for case in cases:
        world = distributed.world(
            case["target"], case["nproc"], case.get("launched", False), case.get("sync_bn", False), BATCH
        )
        if case.get("custom_loop"):
            world.custom_loop = True  # what MultiWorkerMirroredStrategy takes, under MirroredStrategy
        if case.get("reference"):
            case["init"], final = take_steps(case, distributed.World())
            if world.main:
                np.savez(case["reference"], **final)
                np.savez(case["reference"] + ".init.npz", **case["init"])
        _, final = take_steps(case, world)
        if world.main:
            np.savez(case["out"], **final)


def assert_same(reference: dict, found: dict, initial: dict) -> None:
    """The same weights up to float32 rounding, and steps that moved them well beyond it.
    Running variances to 1e-3: ChainerMN's MultiNodeBatchNormalization sums x and x^2
    across processes and takes E[x^2] - E[x]^2, which rounds apart from a two-pass
    variance (1e-4 relative on tinybn)."""
    assert reference.keys() == found.keys()
    for key in reference:
        a, b = np.asarray(reference[key], np.float64), np.asarray(found[key], np.float64)
        tolerance = (1e-3 if key.endswith("running_var") else 1e-5) * np.abs(a).max() + 1e-6
        assert np.abs(a - b).max() <= tolerance, (key, np.abs(a - b).max(), tolerance)
    moved = max(np.abs(np.asarray(reference[k]) - np.asarray(initial[k])).max() for k in reference)
    assert moved > 1e-3


def launched(target: str, cases: list[dict], tmp_path: Path) -> None:
    """Run the cases in 2 processes under the target's launcher."""
    path = tmp_path / "cases.json"
    path.write_text(json.dumps([{**c, "launched": True} for c in cases]))
    command = distributed.launcher_command(target, 2)[:-2] + [__file__, str(path)]  # this file, not -m archspec...
    env = distributed.launcher_env(dict(os.environ), 2, [], str(tmp_path))
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


# ----------------------------------------------------------------------------
# Options and worlds (fast)


@pytest.mark.parametrize(
    "target, nproc, batch, sync_bn, message",
    [
        ("pytorch", 0, 32, False, "--nproc 0 is out of range"),
        ("keras", 3, 32, False, "--batch-size 32 does not split into --nproc 3 equal parts"),
        ("pytorch", 2, 32, True, "SyncBatchNorm runs on GPUs only"),
        ("tensorflow", 2, 32, True, "tf.distribute does not synchronize"),
    ],
)
def test_options_no_engine_can_take_are_refused(target, nproc, batch, sync_bn, message):
    with pytest.raises(TrainingError, match=message):
        distributed.check(target, nproc, batch, sync_bn)


def test_sync_bn_is_accepted_where_the_engine_has_it_and_with_one_process():
    for target, nproc in (("chainer", 2), ("keras", 2), ("pytorch", 1), ("tensorflow", 1)):
        distributed.check(target, nproc, 32, True)


def test_the_command_line_refuses_a_batch_that_does_not_split_before_starting_anything():
    result = run_cli("train", LENET, "-t", "pytorch", "--nproc", "3", "--batch-size", "32")
    assert result.exit_code == 1
    assert "--batch-size 32 does not split into --nproc 3 equal parts" in result.output


def test_a_grid_is_not_spread_over_launched_processes():
    result = run_cli("train", LENET, "-t", "chainer", "--nproc", "2", "--lr", "0.1,0.2")
    assert result.exit_code == 2 and "a grid runs in one process" in result.output


def test_pytorch_and_chainer_need_their_launcher():
    for target, launcher in (("pytorch", "torchrun"), ("chainer", "mpirun")):
        with pytest.raises(TrainingError, match=f"runs under {launcher}"):
            distributed.world(target, 2, False, False, 32)


def test_a_worker_outside_torchrun_or_without_tf_config_is_told_so(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "TF_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(TrainingError, match="not started by torchrun"):
        distributed.world("pytorch", 1, True, False, 32)
    with pytest.raises(TrainingError, match="reads the cluster from TF_CONFIG, which is not set"):
        distributed.world("keras", 1, True, False, 32)
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}')
    with pytest.raises(TrainingError, match="TF_CONFIG is not a cluster description with this task"):
        distributed.world("tensorflow", 1, True, False, 32)


def test_one_process_is_the_ordinary_run():
    world = distributed.world("pytorch", 1, False, False, 32)
    assert type(world) is distributed.World and world.main and world.size == 1
    assert world.gather(0.5, 3, 8) == (0.5, 3, 8) and world.agree(4, None) is None
    assert world.describe() == {"engine": "none", "nproc": 1, "sync_bn": False}


def test_each_process_takes_its_own_part_of_a_global_batch():
    x, y = np.arange(8), np.arange(8) * 10
    parts = [distributed.TorchWorld(rank, 2, "gloo").shard(x, y) for rank in (0, 1)]
    assert [list(p[0]) for p in parts] == [[0, 1, 2, 3], [4, 5, 6, 7]] and list(parts[1][1]) == [40, 50, 60, 70]
    whole = distributed.World().shard(x, y)  # one process
    assert whole[0] is x and whole[1] is y


def test_a_stop_on_one_process_stops_the_others_at_the_same_step():
    mine = Interrupted(7, "interrupted at step 7")
    assert distributed._agreed(7, mine, 1) is mine  # its own reason
    other = distributed._agreed(7, None, 1)
    assert isinstance(other, Interrupted) and other.step == 7
    assert distributed._agreed(7, None, 0) is None


def test_the_launchers_run_the_workers_on_this_machine():
    torchrun = distributed.launcher_command("pytorch", 4, python="py")
    assert torchrun == [
        "py", "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc-per-node", "4",
        "-m", "archspec.training.distributed",
    ]  # fmt: skip
    mpirun = distributed.launcher_command("chainer", 2, python="py")
    assert mpirun[0] == "mpirun" and mpirun[mpirun.index("-np") + 1] == "2"
    assert mpirun[mpirun.index("btl") + 1] == "self,vader" and mpirun[-3:] == ["py", "-m", distributed.WORKER_MODULE]
    env = distributed.launcher_env({"GLOO_SOCKET_IFNAME": "eth1"}, 2, ["train", "x.yaml", "--nproc", "2"], "/s")
    assert json.loads(env[distributed.ARGV_ENV]) == ["train", "x.yaml", "--nproc", "2", "--distributed"]
    assert env["GLOO_SOCKET_IFNAME"] == "eth1" and int(env["OMP_NUM_THREADS"]) >= 1
    assert distributed.launcher_env({}, 2, [], "/s")["GLOO_SOCKET_IFNAME"] == "lo"


def test_launch_leaves_one_process_and_tensorflow_to_this_process():
    assert distributed.launch("pytorch", 1, False, ["train"]) is None
    assert distributed.launch("keras", 2, False, ["train"]) is None  # MirroredStrategy, here
    assert distributed.launch("chainer", 2, True, ["train"]) is None  # already a worker
    with pytest.raises(TrainingError, match="run it as archspec train"):
        distributed.launch("pytorch", 2, False, ["-x"])


# ----------------------------------------------------------------------------
# The proof of the averaging (slow: 2 processes each)


def reference(case: dict, tmp_path: Path) -> tuple[dict, dict]:
    """The case in this process alone; its initial weights become the case's."""
    initial, final = take_steps(case, distributed.World())
    case["init"] = str(tmp_path / f"{Path(case['out']).stem}.init.npz")
    np.savez(case["init"], **initial)
    return initial, final


@pytest.mark.slow
def test_pytorch_two_processes_take_one_process_steps(tmp_path):
    case = {"target": "pytorch", "spec": LENET, "nproc": 2, "out": str(tmp_path / "torch.npz")}
    initial, final = reference(case, tmp_path)
    launched("pytorch", [case], tmp_path)
    assert_same(final, dict(np.load(case["out"])), initial)


@pytest.mark.slow
def test_chainer_two_processes_take_one_process_steps_and_sync_bn_keeps_the_statistics(tmp_path):
    pytest.importorskip("mpi4py")
    tiny = tmp_path / "tinybn.yaml"
    tiny.write_text(TINY_BN)
    cases = [
        {"target": "chainer", "spec": LENET, "nproc": 2, "out": str(tmp_path / "lenet.npz")},
        {"target": "chainer", "spec": str(tiny), "nproc": 2, "sync_bn": True, "out": str(tmp_path / "bn.npz")},
    ]
    expected = [reference(case, tmp_path) for case in cases]
    launched("chainer", cases, tmp_path)
    for case, (initial, final) in zip(cases, expected):
        assert_same(final, dict(np.load(case["out"])), initial)
    assert "bn1.running_var" in expected[1][1]


@pytest.mark.slow
def test_tensorflow_and_keras_replicas_take_one_process_steps(tmp_path):
    """MirroredStrategy over 2 logical CPUs in one fresh process: the TF trainer's
    steps and fit, Keras' fit and its custom loop, Keras with synchronized batch norm."""
    tiny = tmp_path / "tinybn.yaml"
    tiny.write_text(TINY_BN)
    cases = [
        {"target": "tensorflow", "spec": LENET},
        {"target": "tensorflow", "spec": LENET, "fit": True},
        {"target": "keras", "spec": LENET, "fit": True},
        {"target": "keras", "spec": LENET, "custom_loop": True},
        {"target": "keras", "spec": str(tiny), "fit": True, "sync_bn": True},
    ]
    for i, case in enumerate(cases):
        case |= {"nproc": 2, "out": str(tmp_path / f"{i}.npz"), "reference": str(tmp_path / f"{i}.ref.npz")}
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    done = subprocess.run(
        [sys.executable, __file__, str(tmp_path / "cases.json")], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for case in cases:
        initial = dict(np.load(case["reference"] + ".init.npz"))
        assert_same(dict(np.load(case["reference"])), dict(np.load(case["out"])), initial)


@pytest.mark.slow
def test_sync_bn_replaces_every_chainer_batch_norm_and_keeps_its_values():
    """ResNet-18's 20 batch norms, in blocks nested in stages (ChainLists), in one MPI process."""
    pytest.importorskip("mpi4py")
    from archspec import runtime
    from archspec.pipeline import compile_spec
    from archspec.training.run import generate

    chainer = runtime.get("chainer")._chainer()
    compiled = compile_spec(str(ROOT / "specs" / "resnet18.yaml"), {"num_classes": "3"}, input_shape=(3, 32, 32))
    with tempfile.TemporaryDirectory() as tmp:
        model = generate(compiled, "chainer", Path(tmp)).ResNet18(num_classes=3)
    before = runtime.get("chainer").export_weights(model)
    assert distributed.sync_batch_norm(model, distributed._communicator("naive")) == 20
    kinds = {type(link).__name__ for _, link in model.namedlinks()}
    assert "MultiNodeBatchNormalization" in kinds and "BatchNormalization" not in kinds
    after = runtime.get("chainer").export_weights(model)
    assert after.keys() == before.keys() and all(np.array_equal(after[k], before[k]) for k in before)
    with chainer.using_config("train", True):
        assert model(np.zeros((2, 3, 32, 32), np.float32)).shape == (2, 3)


# ----------------------------------------------------------------------------
# archspec train --nproc 2 (slow: real runs)


def train_nproc(target: str, out: Path, *args: str, **popen) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [ARCHSPEC, "train", LENET, "-t", target, "--nproc", "2", "-o", str(out), "-q", *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, **popen)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["pytorch", "tensorflow", "keras", "chainer"])
def test_train_with_two_processes_writes_one_run(target, tmp_path):
    out = tmp_path / "run"
    proc = train_nproc(target, out, "--iters", "50", "--eval-every", "25")
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output
    assert output.count(f"lenet in {target}: 50 steps") == 1  # rank 0 alone reports
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "done" and info["step"] == 50 and info["options"]["nproc"] == 2
    assert info["distributed"]["nproc"] == 2 and info["batch_size"] == 32
    engine = {"pytorch": "torch.distributed", "chainer": "ChainerMN"}.get(target, "tf.distribute.MirroredStrategy")
    assert info["distributed"]["engine"].startswith(engine)
    assert [r["step"] for r in _rows(out)] == [25, 50]
    assert 0.0 <= info["test_accuracy"] <= 1.0


def _rows(run: Path) -> list[dict]:
    from archspec.training.core import Metrics

    return Metrics.read(run / "metrics.csv").rows


@pytest.mark.slow
def test_ctrl_c_stops_every_worker_after_the_step_and_resume_continues(tmp_path):
    """Ctrl-C reaches the terminal's process group (here: the command's own session);
    mpirun's workers are reached the same way (benchmarks/distributed.py checks both)."""
    out = tmp_path / "run"
    proc = train_nproc("pytorch", out, "--iters", "100000", "--eval-every", "20", start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (
            (out / "metrics.csv").is_file() and len((out / "metrics.csv").read_text().splitlines()) >= 2
        ):
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)
        output, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, output
    assert output.count("interrupted at step") == 1 and "--resume" in output
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "interrupted" and 20 <= info["step"] < 100000
    step = info["step"]
    proc = subprocess.run(
        [ARCHSPEC, "train", "--resume", str(out), "--nproc", "2", "--iters", str(step + 6), "-q"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "done" and info["step"] == step + 6


@pytest.mark.slow
def test_the_several_machines_form_of_torchrun_on_localhost(tmp_path):
    """docs/distributed.md's command for 2 machines, both here: one torchrun per node."""
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    out = tmp_path / "run"
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo"}
    nodes = [
        subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1"]
            + ["--node-rank", str(rank), "--rdzv-endpoint", f"localhost:{port}", "-m", "archspec", "train", LENET]
            + ["-t", "pytorch", "--iters", "10", "--eval-every", "5", "-o", str(out), "-q", "--distributed"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for rank in (0, 1)
    ]
    outputs = [node.communicate(timeout=300)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs
    assert "lenet in pytorch: 10 steps" in outputs[0] and "lenet in pytorch" not in outputs[1]
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "done" and info["distributed"]["nproc"] == 2


if __name__ == "__main__":
    run_cases(sys.argv[1])
