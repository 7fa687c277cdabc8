"""Reference twins: weights in from, and out to, torchvision, timm and keras.applications.

A twin (``twins:`` in a spec, docs/twins.md) is a published model that the
spec reproduces. :func:`import_weights` turns a twin's weights into
canonical weights; :func:`export_to_twin` writes canonical weights back into
the twin. The mapping is structural, never by names: of the twin and of the spec's
generated model of the same framework (PyTorch for torchvision and timm,
Keras for keras.applications), the dataflow graph is read (PyTorch: one
forward pass recorded; Keras: the functional model's graph), its layers that
hold weights are listed in a canonical order that depends on the graph alone
(:func:`canonical`), and the two lists are paired one to one, each pair
checked for its kind (convolution, dense, batch norm) and every tensor's
shape. The generated model then holds the twin's tensors, and the runtime
(:mod:`archspec.runtime`) reads them out in canonical layout, which converts
HWIO kernels, depthwise kernels and the rest. Two Keras departures are
converted on the way: a batch norm without gamma (``scale=False``) is
imported as ones, and a dense layer after a flatten of an NHWC map has its
rows reordered to the canonical (C, H, W) order.

Twins are built with random weights (``weights=None``): nothing is ever
downloaded. Keras twins are built without their final softmax
(``classifier_activation=None``) and for the spec's input size.
"""

from __future__ import annotations

import re
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from archspec import reference, runtime
from archspec.codegen.model import class_name
from archspec.pipeline import Compiled
from archspec.schema.spec import TWIN_LIBRARIES, Twin
from archspec.weights import Weights, listing

FRAMEWORK = {"torchvision": "pytorch", "timm": "pytorch", "keras": "keras"}
# Keras layers of a twin that hold weights but are preprocessing, not network.
KERAS_PREPROCESSING = ("Normalization", "Rescaling")
TORCH_FILES = (".pt", ".pth", ".safetensors")
KERAS_FILES = (".weights.h5", ".keras", ".h5")


class TwinError(Exception):
    """The twin cannot be built, read or paired with the spec; the message says why."""


@dataclass(frozen=True)
class Source:
    """What ``archspec weights import`` reads: a library's model with its constructor arguments."""

    library: str
    model: str
    config: dict[str, Any] = field(default_factory=dict)
    sets: dict[str, str] = field(default_factory=dict)  # the declared twin's --set values

    @property
    def name(self) -> str:
        return f"{self.library}:{self.model}"


def parse_source(text: str, twins: list[Twin]) -> Source:
    """``torchvision:resnet50`` -> a Source, with the config and --set values of
    the spec's declared twin of that name when there is one."""
    library, sep, model = text.partition(":")
    if not sep or library not in TWIN_LIBRARIES or not model.isidentifier():
        raise TwinError(f"{text!r}: a twin is LIBRARY:MODEL with LIBRARY one of {', '.join(TWIN_LIBRARIES)}")
    for twin in twins:
        if twin.library == library and twin.model == model:
            return Source(library, model, dict(twin.config), dict(twin.sets))
    return Source(library, model)


# ----------------------------------------------------------------------------
# Building the twin


def build_twin(
    source: Source, input_shape: tuple[int, ...], from_file: Path | None = None, num_classes: int | None = None
):
    """The twin with random weights (or the weights of ``from_file``), ready for inference;
    with ``num_classes`` classes (the spec's) unless its config says otherwise."""
    try:
        if source.library == "keras":
            import keras

            constructor = getattr(keras.applications, source.model, None)
            kwargs = {"weights": None, "classifier_activation": None, **source.config}
            kwargs["input_shape"] = (*input_shape[1:], input_shape[0])
        else:
            tv = reference.torchvision()
            if source.library == "timm":
                import timm

                def constructor(**kw):
                    return timm.create_model(source.model, pretrained=False, **kw)

                if source.model not in timm.list_models():
                    constructor = None
                kwargs = dict(source.config)
            else:
                constructor = getattr(tv.models, source.model, None)
                kwargs = {"weights": None, **source.config}
    except (ImportError, reference.ReferenceUnavailable) as exc:
        raise TwinError(f"{source.name}: {source.library} cannot be imported here ({exc})") from None
    if constructor is None:
        raise TwinError(f"{source.name}: {source.library} has no model {source.model!r}")
    if num_classes is not None:
        kwargs.setdefault("classes" if source.library == "keras" else "num_classes", num_classes)
    try:
        model = constructor(**kwargs)
    except (TypeError, ValueError) as exc:
        raise TwinError(f"{source.name}: cannot build it with {kwargs}: {exc}") from None
    if from_file is not None:
        _read_file(source, model, Path(from_file), num_classes)
    if source.library != "keras":
        model.eval()
    return model


def sniff(path: Path) -> str:
    """What a file holds, from its first bytes: what an error message says was found."""
    import zipfile

    with path.open("rb") as f:
        head = f.read(16)
    if not head:
        return "an empty file"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "an HDF5 file (Keras weights?)"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError):
            return "a damaged or truncated zip archive"
        if names and all(n.endswith(".npy") for n in names):
            return "a numpy .npz archive (canonical weights of archspec need no import)"
        if any(n.endswith("data.pkl") for n in names):
            return "a PyTorch file"
        if "model.weights.h5" in names:
            return "a .keras model archive"
        return "a zip archive of other files"
    if head[:1] == b"\x80":
        return "a Python pickle"
    if len(head) >= 9 and head[8:9] == b"{":
        return "a safetensors file"
    if all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return "a text file"
    return "a binary file of unknown kind"


def _classes_hint(differ: list[tuple[tuple[int, ...], tuple[int, ...]]], num_classes: int | None) -> str:
    """``--set num_classes=K`` when every (file's shape, twin's shape) pair differs in one
    dimension only, the twin's class count, and the file holds K there."""
    held = set()
    for got, want in differ:
        dims = [i for i, (a, b) in enumerate(zip(got, want)) if a != b] if len(got) == len(want) else []
        if len(dims) != 1 or want[dims[0]] != num_classes:
            return ""
        held.add(got[dims[0]])
    if len(held) != 1:
        return ""
    k = held.pop()
    return f"; the file holds {k} classes: give --set num_classes={k}"


def _read_file(source: Source, model, path: Path, num_classes: int | None = None) -> None:
    """Load a twin's own weight file into it (a state_dict, or Keras weights); TwinError
    saying what the file holds and what to give instead when it does not fit."""
    if not path.is_file():
        raise TwinError(f"{path}: no such file")
    if source.library == "keras":
        if not path.name.endswith(KERAS_FILES):
            raise TwinError(f"{path}: a Keras twin reads {', '.join(KERAS_FILES)} files")
        _read_keras(source, model, path, num_classes)
        return
    if not path.name.endswith(TORCH_FILES):
        raise TwinError(f"{path}: a PyTorch twin reads a state_dict: {', '.join(TORCH_FILES)}")
    state = read_state_dict(path)
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in want if k not in state]
    unexpected = [k for k in state if k not in want]
    differ = {k: (tuple(state[k].shape), want[k]) for k in want if k in state and tuple(state[k].shape) != want[k]}
    problems = [f"missing {len(missing)}: {listing(missing)}"] if missing else []
    problems += [f"unexpected {len(unexpected)}: {listing(unexpected)}"] if unexpected else []
    problems += [f"{k}: {got} in the file, {twin} in the twin" for k, (got, twin) in list(differ.items())[:8]]
    if problems:
        hint = "" if missing or unexpected else _classes_hint(list(differ.values()), num_classes)
        raise TwinError(
            f"{path} is a state_dict, but not of {source.name} ({'; '.join(problems)}): it holds the weights of "
            f"another network or configuration; give a state_dict of {source.name}{hint}"
        )
    model.load_state_dict(state)


def read_state_dict(path: Path) -> dict:
    """The state_dict (name -> tensor) of a .pt/.pth/.safetensors file, read without
    unpickling any object (``weights_only=True``); TwinError saying what the file
    holds otherwise. Never advise ``weights_only=False``: the file's origin is unknown."""
    import torch

    found = sniff(path)
    unreadable = f"{path} is not a PyTorch state_dict that archspec can read: it is {found}"
    give = "give a state_dict saved with torch.save(model.state_dict(), FILE), or a .safetensors file"
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            with warnings.catch_warnings():  # torch's note on pickle protocols: the error below says it all
                warnings.simplefilter("ignore")
                state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch, zipfile, pickle and safetensors raise many kinds for a file they cannot read
        objects = re.findall(r"GLOBAL ([\w.]+)", str(exc))
        if objects:
            raise TwinError(
                f"{unreadable} that holds pickled Python objects ({objects[0]}; a whole model saved with "
                "torch.save(model)?), and archspec unpickles no objects from a file (loading them can run code); "
                f"{give}"
            ) from None
        raise TwinError(
            f"{unreadable}, which torch cannot read (truncated, damaged, or not PyTorch's); {give}"
        ) from None
    if not isinstance(state, dict):
        raise TwinError(f"{unreadable} holding a {type(state).__name__}, not a state_dict (name -> tensor); {give}")
    others = [str(k) for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if others:
        inner = [
            str(k)
            for k, v in state.items()
            if isinstance(v, dict) and v and all(isinstance(t, torch.Tensor) for t in v.values())
        ]
        where = f"; its entry {inner[0]!r} may be the state_dict: save that alone" if inner else ""
        raise TwinError(
            f"{unreadable} holding a dict whose entries {listing(others)} are not tensors (a training "
            f"checkpoint?){where}; {give}"
        )
    return state


KERAS_SHAPES = re.compile(r"variable\.shape=(\([\d, ]*\)), Received: value\.shape=(\([\d, ]*\))")


def _read_keras(source: Source, model, path: Path, num_classes: int | None) -> None:
    """Keras weights (.weights.h5, .keras, legacy .h5) into the twin; TwinError saying what differs."""
    found = sniff(path)
    give = f"give the weights of {source.name} saved with model.save_weights(FILE.weights.h5) or model.save"
    try:
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            model.load_weights(str(path))
    except Exception as exc:  # h5py, zipfile and Keras raise many kinds for a file that does not fit
        text = str(exc)
        count = re.search(r"A total of (\d+) objects could not be loaded", text)
        if count is None:
            reason = " ".join(text.split())[:200]
            raise TwinError(
                f"{path} is not Keras weights that archspec can read: it is {found} ({reason}); {give}"
            ) from None
        layer = re.search(r"for object <\w+ name=([^,>]+)", text)
        shapes = KERAS_SHAPES.search(text)
        first = f", the first {layer.group(1)}" if layer else ""
        hint = ""
        if shapes:
            twin, got = (tuple(int(d) for d in s.strip("()").split(",") if d.strip()) for s in shapes.groups())
            first += f": {got} in the file, {twin} in the twin"
            if count.group(1) == "1":
                hint = _classes_hint([(got, twin)], num_classes)
        raise TwinError(
            f"{path} holds Keras weights, but not of {source.name}: {count.group(1)} of its layers do not fit"
            f"{first}; they are the weights of another network or configuration; {give}{hint}"
        ) from None
    skipped = [str(w.message) for w in said if "freshly-initialized" in str(w.message)]
    if skipped:
        raise TwinError(f"{path}: Keras left layers of {source.name} without weights from the file; {give}")


# ----------------------------------------------------------------------------
# Layers with weights, in the dataflow graph's canonical order


@dataclass
class Layer:
    """A layer that holds weights: its name, kind and tensors (name -> shape)."""

    name: str
    kind: str
    tensors: dict[str, tuple[int, ...]]
    obj: Any
    flattened_nhwc: tuple[int, ...] | None = None  # Keras dense after a flatten of (H, W, C)

    def describe(self) -> str:
        shapes = ", ".join(f"{k} {v}" for k, v in self.tensors.items())
        return f"{self.name} ({self.kind}: {shapes})"

    def signature(self) -> tuple:
        """Kind and distinct tensor shapes: what orders the operands of an add
        (a batch norm without gamma has the same signature as one with it)."""
        return (self.kind, tuple(sorted(set(self.tensors.values()))))


@dataclass
class Graph:
    """A network's dataflow: every op call a node (numbered as recorded), with
    the nodes that produced its tensor inputs, in argument order."""

    inputs: dict[int, tuple[int, ...]] = field(default_factory=dict)
    layers: dict[int, Layer] = field(default_factory=dict)  # the nodes that are layers with weights
    commutative: set[int] = field(default_factory=set)  # add, multiply: their operands have no order
    outputs: tuple[int, ...] = ()

    def add(self, inputs, layer: Layer | None = None, commutative: bool = False) -> int:
        node = len(self.inputs)
        self.inputs[node] = tuple(inputs)
        if layer is not None:
            self.layers[node] = layer
        if commutative:
            self.commutative.add(node)
        return node


def _ancestors(graph: Graph, nodes) -> set[int]:
    """The nodes and every node they depend on."""
    seen, todo = set(), list(nodes)
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph.inputs[node])
    return seen


def _operands(graph: Graph, node: int) -> list[int]:
    """A node's inputs in canonical order: as called, except that a commutative
    op's operands are sorted by the signatures of the layers only they depend on
    (an add's residual branch and its shortcut); ties keep the call's order."""
    operands = list(graph.inputs[node])
    if node not in graph.commutative or len(operands) < 2:
        return operands

    def key(i: int) -> tuple:
        others = _ancestors(graph, operands[:i] + operands[i + 1 :])
        own = _ancestors(graph, [operands[i]]) - others
        return tuple(graph.layers[n].signature() for n in _walk(graph, [operands[i]], own) if n in graph.layers)

    keys = [key(i) for i in range(len(operands))]
    return [operands[i] for i in sorted(range(len(operands)), key=keys.__getitem__)]


def _walk(graph: Graph, roots, within: set[int] | None = None) -> list[int]:
    """The nodes reached from ``roots`` (inside ``within``), each after the nodes
    it depends on: a depth-first walk over :func:`_operands`, so that the order
    depends on the graph's structure only, not on the order its ops ran."""
    order: list[int] = []
    seen: set[int] = set()
    for root in roots:
        if root in seen or (within is not None and root not in within):
            continue
        seen.add(root)
        stack = [(root, iter(_operands(graph, root)))]
        while stack:
            node, rest = stack[-1]
            nxt = next((n for n in rest if n not in seen and (within is None or n in within)), None)
            if nxt is None:
                stack.pop()
                order.append(node)
            else:
                seen.add(nxt)
                stack.append((nxt, iter(_operands(graph, nxt))))
    return order


def canonical(graph: Graph) -> list[Layer]:
    """The layers with weights that reach the outputs, in canonical order (each once)."""
    order, seen = [], set()
    for node in _walk(graph, graph.outputs):
        layer = graph.layers.get(node)
        if layer is not None and id(layer) not in seen:  # a layer called twice is one layer
            seen.add(id(layer))
            order.append(layer)
    return order


def _torch_kind(m) -> str:
    from torch import nn

    if isinstance(m, nn.modules.conv._ConvNd):
        return f"conv{'-depthwise' if m.groups == m.in_channels and m.groups > 1 else ''}"
    if isinstance(m, nn.Linear):
        return "dense"
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        return "batch_norm"
    return type(m).__name__


# torch functions whose tensor operands commute (the operators +, +=, *, *= reach
# a TorchFunctionMode under these names too).
TORCH_COMMUTATIVE = frozenset({"add", "add_", "mul", "mul_", "maximum", "minimum"})


def _torch_tensors(obj) -> list:
    """The tensors in a call's arguments or result, in order (nested tuples, lists, dicts)."""
    import torch

    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [t for item in obj for t in _torch_tensors(item)]
    if isinstance(obj, dict):
        return [t for item in obj.values() for t in _torch_tensors(item)]
    return []


def _torch_graph(model, input_shape: tuple[int, ...]) -> tuple[Graph, list]:
    """The dataflow graph of one forward pass, and the modules that hold weights.

    Every torch function called outside those modules is a node, and so is every
    call of such a module (what it does inside is not recorded). Tensors are told
    apart by identity (all are kept alive meanwhile); an in-place op makes its
    tensor the output of a new node."""
    import torch
    from torch.overrides import TorchFunctionMode

    names = {id(m): n for n, m in model.named_modules()}
    owners = [m for m in model.modules() if list(m.parameters(recurse=False)) or list(m.buffers(recurse=False))]
    layers = {
        id(m): Layer(
            names[id(m)],
            _torch_kind(m),
            {k: tuple(v.shape) for k, v in m.state_dict(keep_vars=True).items() if k != "num_batches_tracked"},
            m,
        )
        for m in owners
    }
    for m in owners:
        inner = next((c for c in m.modules() if c is not m and id(c) in layers), None)
        if inner is not None:
            raise TwinError(
                f"{type(model).__name__}: {names[id(m)] or 'the model'} holds weights of its own and in its submodule "
                f"{names[id(inner)]}: cannot pair its layers"
            )
    graph = Graph()
    producer: dict[int, int] = {}  # id(tensor) -> node
    alive: list = []  # every tensor seen, so that no id is reused
    calls: list[int] = []  # the node of the module with weights being called, if any

    def produced(node: int, result) -> None:
        for t in _torch_tensors(result):
            producer[id(t)] = node
            alive.append(t)

    def node(inputs, layer: Layer | None = None, commutative: bool = False) -> int:
        return graph.add([producer[id(t)] for t in _torch_tensors(inputs) if id(t) in producer], layer, commutative)

    class Tracer(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            result = func(*args, **kwargs)
            if not calls and _torch_tensors(result):
                commutative = getattr(func, "__name__", "") in TORCH_COMMUTATIVE and not kwargs
                produced(node((args, kwargs), commutative=commutative), result)
            return result

    def enter(module, args) -> None:
        calls.append(node(args, layers[id(module)]))

    def leave(module, args, result) -> None:
        produced(calls.pop(), result)

    handles = [h for m in owners for h in (m.register_forward_pre_hook(enter), m.register_forward_hook(leave))]
    try:
        with torch.no_grad(), Tracer():
            result = model.eval()(torch.zeros((1, *input_shape)))
    finally:
        for h in handles:
            h.remove()
    graph.outputs = tuple(producer[id(t)] for t in _torch_tensors(result) if id(t) in producer)
    return graph, [layers[id(m)] for m in owners]


# Keras operations (layers and keras.ops functions) whose tensor operands commute.
KERAS_COMMUTATIVE = frozenset({"Add", "Multiply", "Maximum", "Minimum", "Average"})


def _keras_layer(layer) -> Layer | None:
    """A Keras layer with weights as a Layer (None for one without, or for preprocessing)."""
    kind = type(layer).__name__
    if not getattr(layer, "weights", None) or kind in KERAS_PREPROCESSING:
        return None
    tensors = {w.name.rsplit("/", 1)[-1]: tuple(w.shape) for w in layer.weights}
    flat = None
    if kind == "Dense":
        parent = layer.input._keras_history.operation
        if type(parent).__name__ == "Flatten" and len(parent.input.shape) == 4:
            grand = parent.input._keras_history.operation
            if type(grand).__name__ != "Permute":  # the generated code permutes to channels first
                flat = tuple(parent.input.shape[1:])
    return Layer(layer.name, "batch_norm" if kind == "BatchNormalization" else kind, tensors, layer, flat)


def _keras_graph(model) -> tuple[Graph, list]:
    """The functional model's graph (a node per call of a layer or keras.ops
    function, its inputs the calls that produced its tensors), and its layers
    with weights."""

    def call_of(tensor):  # the Keras Node that produced a tensor; None for the model's input
        op, index, _ = tensor._keras_history
        return None if op is None or type(op).__name__ == "InputLayer" else op._inbound_nodes[index]

    layers = {id(layer): _keras_layer(layer) for layer in model.layers}
    graph, node_of = Graph(), {}
    todo = [c for c in map(call_of, model.outputs) if c is not None]
    while todo:  # depth first, each call after the calls it reads from
        call = todo[-1]
        if id(call) in node_of:
            todo.pop()
            continue
        parents = [c for c in map(call_of, call.arguments.keras_tensors) if c is not None]
        waiting = [c for c in parents if id(c) not in node_of]
        if waiting:
            todo.extend(waiting)
            continue
        todo.pop()
        op = call.operation
        commutative = type(op).__name__ in KERAS_COMMUTATIVE
        node_of[id(call)] = graph.add([node_of[id(c)] for c in parents], layers.get(id(op)), commutative)
    graph.outputs = tuple(node_of[id(c)] for c in map(call_of, model.outputs) if c is not None)
    return graph, [layer for layer in layers.values() if layer is not None]


def _ordered(model, graph: Graph, held: list[Layer]) -> list[Layer]:
    """The canonical order of a model's layers with weights; all must reach its outputs."""
    order = canonical(graph)
    reached = {id(layer) for layer in order}
    unused = [layer.name for layer in held if id(layer) not in reached]
    if unused:
        raise TwinError(f"{type(model).__name__} holds weights that never reach its outputs: {', '.join(unused)}")
    return order


_BN_GAMMA = "gamma"


def _fits(twin: Layer, ours: Layer) -> bool:
    if twin.kind != ours.kind:
        return False
    if twin.kind == "batch_norm" and _BN_GAMMA not in twin.tensors and _BN_GAMMA in ours.tensors:
        return twin.tensors == {k: v for k, v in ours.tensors.items() if k != _BN_GAMMA}
    return twin.tensors == ours.tensors


def pair(twin: list[Layer], ours: list[Layer], source: str, spec: str) -> list[tuple[Layer, Layer]]:
    """Pair the layers one to one in order; raise TwinError at the first that differs."""
    for i, (a, b) in enumerate(zip(twin, ours)):
        if not _fits(a, b):
            raise TwinError(
                f"{source} does not fit spec {spec}: its layer {i + 1} with weights, {a.describe()}, "
                f"meets {b.describe()} in the spec's generated model"
            )
    if len(twin) != len(ours):
        longer, name = (twin, source) if len(twin) > len(ours) else (ours, f"spec {spec}")
        raise TwinError(
            f"{source} does not fit spec {spec}: {name} has {len(longer) - min(len(twin), len(ours))} more layers "
            f"with weights, the first {longer[min(len(twin), len(ours))].describe()}"
        )
    return list(zip(twin, ours))


# ----------------------------------------------------------------------------
# Copying tensors between paired layers


def _nhwc_rows(kernel: np.ndarray, hwc: tuple[int, ...], to_nchw: bool) -> np.ndarray:
    """A dense kernel's input rows between the (H, W, C) and (C, H, W) flatten orders."""
    h, w, c = hwc
    if to_nchw:
        return kernel.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(h * w * c, -1)
    return kernel.reshape(c, h, w, -1).transpose(1, 2, 0, 3).reshape(h * w * c, -1)


def _copy_torch(src: Layer, dst: Layer) -> None:
    import torch

    state = dst.obj.state_dict(keep_vars=True)
    with torch.no_grad():
        for k, v in src.obj.state_dict(keep_vars=True).items():
            if k in dst.tensors:
                state[k].copy_(v)


def _copy_keras(src: Layer, dst: Layer, into_twin: bool) -> None:
    """Copy src's weights into dst by Keras weight name (gamma: ones when absent)."""
    values = {w.name.rsplit("/", 1)[-1]: np.asarray(w.numpy()) for w in src.obj.weights}
    flat = dst.flattened_nhwc if into_twin else src.flattened_nhwc
    if flat is not None:
        values["kernel"] = _nhwc_rows(values["kernel"], flat, to_nchw=not into_twin)
    for w in dst.obj.weights:
        name = w.name.rsplit("/", 1)[-1]
        w.assign(values[name] if name in values else np.ones(w.shape, np.float32))
    missing = set(values) - {w.name.rsplit("/", 1)[-1] for w in dst.obj.weights}
    for name in missing:  # only gamma can be missing (scale=False): it must be ones
        if name != _BN_GAMMA or not np.all(values[name] == 1):
            raise TwinError(f"{dst.name} has no {name}: the twin cannot hold {src.name}'s {name} (not all ones)")


# ----------------------------------------------------------------------------
# Entry points


def _generated(compiled: Compiled, framework: str, tmp: Path):
    from archspec.verify import generate

    module = generate(compiled, [framework], tmp)[framework]
    if isinstance(module, str):
        raise TwinError(module)
    params = compiled.graph.params
    kwargs = {"num_classes": params["num_classes"]} if "num_classes" in params else {}
    return runtime.get(framework).build(module, class_name(compiled.graph.name), **kwargs)


def _pairs(compiled: Compiled, source: Source, twin, ours) -> list[tuple[Layer, Layer]]:
    shape = tuple(compiled.graph.input_shape)
    if FRAMEWORK[source.library] == "keras":
        return pair(
            _ordered(twin, *_keras_graph(twin)), _ordered(ours, *_keras_graph(ours)), source.name, compiled.graph.name
        )
    twin_layers, our_layers = (_ordered(m, *_torch_graph(m, shape)) for m in (twin, ours))
    return pair(twin_layers, our_layers, source.name, compiled.graph.name)


def import_weights(compiled: Compiled, source: Source, twin=None, from_file: Path | None = None) -> Weights:
    """The canonical weights of ``twin`` (built from ``source`` when not given)."""
    framework = FRAMEWORK[source.library]
    if twin is None:
        twin = build_twin(
            source, tuple(compiled.graph.input_shape), from_file, compiled.graph.params.get("num_classes")
        )
    with tempfile.TemporaryDirectory(prefix="archspec-twin-") as tmp:
        ours = _generated(compiled, framework, Path(tmp))
        for a, b in _pairs(compiled, source, twin, ours):
            _copy_keras(a, b, into_twin=False) if framework == "keras" else _copy_torch(a, b)
        return runtime.get(framework).export_weights(ours)


def export_to_twin(compiled: Compiled, source: Source, weights: Weights, twin=None):
    """``twin`` (built from ``source`` when not given) holding the canonical ``weights``:
    a torch module (save its ``state_dict()``) or a Keras model (``save_weights``)."""
    framework = FRAMEWORK[source.library]
    if twin is None:
        twin = build_twin(
            source, tuple(compiled.graph.input_shape), num_classes=compiled.graph.params.get("num_classes")
        )
    with tempfile.TemporaryDirectory(prefix="archspec-twin-") as tmp:
        ours = _generated(compiled, framework, Path(tmp))
        runtime.get(framework).load_weights(ours, weights)
        for a, b in _pairs(compiled, source, twin, ours):
            _copy_keras(b, a, into_twin=True) if framework == "keras" else _copy_torch(b, a)
    return twin
