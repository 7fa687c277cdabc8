"""What a valid network cannot be written as in a target: spec problems that
code generation would otherwise meet, found before it, with positions.

A pure function of the compiled spec and the chosen targets. ``validate``
checks every target, ``compile`` the ones it writes; a failure of code
generation after these checks is a bug in archspec.
"""

from __future__ import annotations

from collections.abc import Iterable

from archspec.codegen import code_model, generate
from archspec.codegen.chainer import _MODULE_NAMES as CHAINER_NAMES
from archspec.codegen.model import CodegenError, class_name
from archspec.codegen.tensorflow import _LAYER_CLASSES as TENSORFLOW_LAYERS
from archspec.diagnostics import Diagnostic, Pos
from archspec.ir import Instance, Node
from archspec.pipeline import Compiled

# Classes and modules a generated file may bind at the top level, by target
# (the emitters' own lists where they keep one): a block or network class of
# the same name would hide it. TensorFlow renames a block that takes a layer
# class's name (DenseBlock), but not the network.
TAKEN_CLASS_NAMES = {
    "pytorch": frozenset({"F", "SeparableConv2d", "ChannelLayerNorm"}),
    "chainer": CHAINER_NAMES,
    "keras": frozenset({"NegInfPadding2D", "LocalResponseNormalization", "ChannelShuffle"}),
}
IMPORTED = {  # the modules among them, by target
    "pytorch": {"F": "torch.nn.functional"},
    "chainer": {"F": "chainer.functions", "L": "chainer.links", "np": "numpy"},
}

# Convolutions whose stride and dilation cannot both exceed 1 in a target:
# TensorFlow's depthwise, separable and 1-D convolutions compute other values
# (other sizes), Keras' Conv2D and Conv1D refuse it when the model is built.
STRIDED_DILATION = {
    "tensorflow": frozenset({"depthwise_conv2d", "separable_conv2d", "conv1d"}),
    "keras": frozenset({"conv2d", "conv1d"}),
}
TARGET_TITLES = {"pytorch": "PyTorch", "tensorflow": "TensorFlow", "keras": "Keras", "chainer": "Chainer"}


def check_targets(compiled: Compiled, targets: Iterable[str]) -> list[Diagnostic]:
    """Every problem that keeps ``compiled`` from being written in ``targets``."""
    targets = list(targets)
    out = _class_names(compiled, targets) + _stage_counts(compiled) + _sequential_padding(compiled, targets)
    out += _code_limits(compiled, targets) if targets else []
    for node in compiled.graph.nodes:
        for target in targets:
            message = _node_problem(node, target)
            if message:
                out.append(Diagnostic(node.pos, "E501", f"{target}: {message}"))
    return sorted(set(out))


def _node_problem(node: Node, target: str) -> str:
    """Why ``node`` cannot be written in ``target`` ("" when it can)."""
    title = TARGET_TITLES[target]
    if node.op in STRIDED_DILATION.get(target, ()):
        stride, dilation = _axes(node.attrs["stride"]), _axes(node.attrs["dilation"])
        if max(stride) > 1 and max(dilation) > 1:
            return (
                f"{node.op} with stride > 1 and dilation > 1: {title} cannot compute it "
                f"({'the model fails to build' if target == 'keras' else 'it gives other values'}); "
                "use stride 1 and subsample after it (a 1x1 pooling with that stride), or dilation 1"
            )
    return ""


def _axes(value: int | tuple[int, ...]) -> tuple[int, ...]:
    return value if isinstance(value, tuple) else (value,)


def _class_names(compiled: Compiled, targets: list[str]) -> list[Diagnostic]:
    """Blocks and the network whose generated class names collide with each
    other (``conv_bn`` and ``conv_b_n`` are both ``ConvBN``) or with a name a
    target's file needs (a network named ``l`` is class ``L``, Chainer's links)."""
    spec = compiled.spec
    used = dict.fromkeys(inst.block for inst in compiled.graph.instances)
    owners: list[tuple[str, str, Pos]] = [(f"block '{b}'", class_name(b), spec.blocks[b].pos) for b in used]
    owners.append((f"the network '{spec.name}'", class_name(spec.name), spec.name_pos or spec.pos))
    out: list[Diagnostic] = []
    first: dict[str, tuple[str, Pos]] = {}
    for what, cls, pos in sorted(owners, key=lambda o: o[2]):
        if cls in first:
            other, at = first[cls]
            out.append(
                Diagnostic(
                    pos,
                    "E106",
                    f"{what} and {other} (line {at.line}) would both be the class {cls} in the generated code; "
                    "rename one",
                )
            )
            continue
        first[cls] = (what, pos)
        for target in targets:
            taken = TAKEN_CLASS_NAMES.get(target, frozenset())
            if target == "tensorflow" and what.startswith("the network"):
                taken = TENSORFLOW_LAYERS
            if cls in taken:
                module = IMPORTED.get(target, {}).get(cls)
                held = f"{module}, imported as {cls}" if module else f"its own {cls}"
                out.append(
                    Diagnostic(
                        pos,
                        "E501",
                        f"{target}: {what} would be the class {cls}, which would hide {held} in the "
                        f"{TARGET_TITLES[target]} file; rename it",
                    )
                )
    return out


# Targets whose layers take only symmetric explicit padding themselves: they pad
# asymmetric padding in the forward, which a sequential container has not.
PADS_IN_FORWARD = ("pytorch", "chainer")


def _sequential_padding(compiled: Compiled, targets: list[str]) -> list[Diagnostic]:
    """A layer of a sequential block (``sequential: true``) with asymmetric explicit
    padding (``[0, 1, 0, 1]``): PyTorch and Chainer would pad it in a forward of
    its own, so it is not one module of the container. ('same' is: a padding
    module.)"""
    chosen = [t for t in targets if t in PADS_IN_FORWARD]
    blocks = {name: b for name, b in compiled.spec.blocks.items() if b.sequential}
    if not chosen or not blocks:
        return []
    owner = {i.path: blocks[i.block] for i in compiled.graph.instances if i.block in blocks and not i.units}
    out: list[Diagnostic] = []
    for node in compiled.graph.nodes:
        parent, _, index = node.path.rpartition(".")
        if parent not in owner or "padding" not in node.attrs:
            continue
        written = owner[parent].nodes[int(index)].attrs.get("padding")
        if written is None or written.items is None:
            continue  # a number pads every side alike; a keyword ('same') is a padding module
        sides = node.attrs["padding"]
        if any(sides[k] != sides[k + 1] for k in range(0, len(sides), 2)):
            for target in chosen:
                message = (
                    f"{target}: asymmetric padding {list(sides)} in sequential block '{owner[parent].name}': "
                    f"{TARGET_TITLES[target]} pads it in a forward of its own, so the layer is not one module of "
                    "the container; write the block without 'sequential', or pad symmetrically"
                )
                out.append(Diagnostic(written.pos, "E501", message))
    return out


def _code_limits(compiled: Compiled, targets: list[str]) -> list[Diagnostic]:
    """What the code model (every target) or a target's emitter refuses at a
    place in the spec: a flatten in a block whose input size varies, zero
    padding that varies between instances, and the like. Their other failures
    are bugs in archspec, which compile reports. The code is built here once
    and kept for the writers (:func:`archspec.codegen.generate`)."""
    try:
        code_model(compiled)
    except CodegenError as exc:
        return [Diagnostic(e.pos, "E501", f"every target: {e}") for e in exc.located]
    out = []
    for target in targets:
        try:
            generate(compiled, target)
        except CodegenError as exc:
            out += [Diagnostic(e.pos, "E501", f"{target}: {e}") for e in exc.located]
    return out


def _stage_counts(compiled: Compiled) -> list[Diagnostic]:
    """A stage inside a block whose repeat count differs between the block's
    instances is one ``make_stage(Block, in_channels, n, ...)`` call in every
    target: its units after the first must keep their channel count, or the
    stage's output width would depend on the count."""
    g = compiled.graph
    by_node: dict[tuple[str, int, int], list[Instance]] = {}  # (block, line, col) of the stage node
    for inst in g.instances:
        if inst.units and "." in inst.path:  # a stage inside a block
            by_node.setdefault((inst.block, inst.pos.line, inst.pos.col), []).append(inst)
    units = {i.path: i for i in g.instances if i.index is not None}
    out = []
    for stages in by_node.values():
        if len({s.units for s in stages}) < 2:
            continue
        for s in stages:
            changing = [u for k in range(1, s.units) if (u := units[f"{s.path}.{k}"]).in_shape[0] != u.shape[0]]
            if changing:
                u = changing[0]
                counts = ", ".join(str(n) for n in sorted({x.units for x in stages}))
                out.append(
                    Diagnostic(
                        s.pos,
                        "E501",
                        f"{s.path}: this stage repeats {counts} times in different instances of its block, and its "
                        f"unit {u.index} changes the channel count ({u.in_shape[0]} -> {u.shape[0]}), so its output "
                        "width depends on the count, which one generated class cannot write; give the count as a "
                        "constant, or let units after the first keep their width",
                    )
                )
                break
    return out
