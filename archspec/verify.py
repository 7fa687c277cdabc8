"""Same weights, same outputs: run a spec's generated code in every target and compare.

For one compiled spec, :func:`verify`

1. generates the code of every requested target in memory (the emitters and
   ruff, exactly what ``archspec build`` writes) into a temporary directory and
   imports it, so that what is checked is what the compiler produces now,
   ``--set`` overrides included, whether or not ``generated/`` is current;
2. builds each model and loads the SAME canonical weights into it
   (:func:`archspec.weights.random_weights`: random, batch-norm statistics
   included, at a scale that keeps activations of order one);
3. runs the same random batch (channels-first for PyTorch and Chainer,
   transposed to channels-last for TensorFlow and Keras, and back) in
   inference mode;
4. checks every target's output shapes and parameter counts against the spec,
   and its outputs against the reference target (PyTorch): the largest
   absolute difference must be at most ``RTOL x max|reference| + ATOL``.

Softmax. The softmax of a random network's logits is close to uniform (every
probability near 1 / classes), so a difference in the logits of several
percent moves the probabilities by less than any sensible tolerance: a wrong
layout in the classifier can hide behind it. When the network has a softmax,
each target therefore runs twice: as generated (the real outputs, compared),
and with every softmax of the framework replaced by the identity
(``softmax_bypassed`` in each runtime), which gives the pre-softmax values of
the same outputs; those are compared too, at the same relative tolerance. A
target passes only if both agree. (A check makes sure the bypass changed the
softmax outputs, so that a framework whose softmax was not bypassed cannot
pass silently.)

ONNX. The ``onnx`` target (:mod:`archspec.runtime.onnx`) runs the generated
PyTorch code exported to ONNX, in onnxruntime: the same weights (loaded before
the export), the same input. It has no parameter counts of its own (the
exporter folds batch norm into the convolutions) and records no intermediate
values for the trace; its softmax bypass makes every Softmax node an Identity.

Trace. With ``trace``, every target also records the output of each module,
layer or link named by an IR path (PyTorch forward hooks, Keras layers by
name, TensorFlow modules and Chainer links; block and stage outputs in all
four), and the report names, per target, the first node in network order
whose value differs from the reference's beyond the same tolerance.
"""

from __future__ import annotations

import gc
import importlib.util
import itertools
import math
import os
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np

from archspec import runtime
from archspec.codegen import EMITTERS
from archspec.codegen.model import CodegenError, class_name
from archspec.codegen.model import build as build_model
from archspec.codegen.writer import FormatError, format_many
from archspec.ir import Graph
from archspec.pipeline import Compiled
from archspec.runtime import DERIVED, TARGETS
from archspec.summary import shape_str
from archspec.weights import random_weights

REFERENCE = "pytorch"
RTOL = 1e-4  # of the largest absolute reference value
ATOL = 1e-6  # floor, for outputs that are (nearly) zero
BATCH = 2

_counter = itertools.count()


def tolerance(reference: np.ndarray) -> float:
    scale = float(np.abs(reference).max()) if reference.size else 0.0
    return RTOL * scale + ATOL


@dataclass
class Comparison:
    """One output of a target against the reference's."""

    output: str  # the IR node that produces it
    kind: str  # "output" (as generated) or "pre-softmax" (softmax bypassed)
    max_abs_diff: float
    scale: float  # max |reference|
    tolerance: float
    ok: bool


@dataclass
class Divergence:
    """Where a target first differs from the reference (trace)."""

    node: str | None  # None: no divergence
    op: str | None
    max_abs_diff: float | None
    tolerance: float | None
    compared: int  # nodes compared in all
    agreed_before: int  # nodes that agreed before the first divergence
    detail: str = ""


@dataclass
class TargetReport:
    target: str
    ok: bool = False
    output_shapes: list[list[int]] = field(default_factory=list)
    trainable: int | None = None
    non_trainable: int | None = None
    max_abs_diff: float | None = None  # over the outputs as generated
    max_abs_diff_pre_softmax: float | None = None
    comparisons: list[Comparison] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    trace: Divergence | None = None

    def worst(self, kind: str) -> Comparison | None:
        """The comparison of this kind furthest from agreement, relative to its tolerance."""
        cs = [c for c in self.comparisons if c.kind == kind]
        return max(cs, key=lambda c: c.max_abs_diff / c.tolerance, default=None)


@dataclass
class SpecReport:
    spec: str
    name: str
    input_shape: list[int]
    batch: int
    seed: int
    reference: str
    expected_output_shapes: list[list[int]]
    expected_trainable: int
    expected_non_trainable: int
    softmax: bool
    targets: list[TargetReport]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.targets)

    def to_json(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        return d


# ----------------------------------------------------------------------------
# Code


def generate(
    compiled: Compiled, targets: Iterable[str], directory: Path, notes: list[str] | None = None
) -> dict[str, ModuleType | str]:
    """Emit, format and import the code of each target; a target that cannot be
    generated or imported maps to the error message instead of a module. If ruff
    refuses the code (an archspec bug, which `archspec compile` reports too), the
    code runs as emitted, which means the same, and ``notes`` says so."""
    name = compiled.graph.name
    raw: dict[str, str] = {}
    result: dict[str, ModuleType | str] = {}
    try:
        model = build_model(compiled)
    except CodegenError as exc:  # no target can be written
        return {t: f"cannot generate {t} code: {exc}" for t in targets}
    for target in targets:
        try:
            raw[target] = EMITTERS[target](model)
        except CodegenError as exc:
            result[target] = f"cannot generate {target} code: {exc}"
    try:
        files = format_many({f"{name}_{t}.py": text for t, text in raw.items()})
    except FormatError as exc:
        if notes is not None:
            notes.append(f"ran the code unformatted: {' '.join(str(exc).split())}")
        files = {f"{name}_{t}.py": text for t, text in raw.items()}
    _quiet()
    for target in raw:
        path = directory / f"{name}_{target}.py"
        path.write_text(files[f"{name}_{target}.py"])
        module_name = f"_archspec_verify_{name}_{target}_{next(_counter)}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # chainer's own import warnings
                spec.loader.exec_module(module)
        except Exception as exc:  # the framework is missing, or the code is broken
            result[target] = f"cannot import the {target} code: {type(exc).__name__}: {exc}"
            continue
        finally:
            sys.modules.pop(module_name, None)
        result[target] = module
    return result


def _quiet() -> None:
    """TensorFlow's C++ start-up messages off (unless the user chose a level)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# ----------------------------------------------------------------------------
# Comparison


def _node_values(graph: Graph, captured: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Captured values by IR node: a node's own module, layer or link, or a
    block (or stage) whose output the node is."""
    nodes = {n.path for n in graph.nodes}
    values = {p: v for p, v in captured.items() if p in nodes}
    for inst in graph.instances:
        if inst.path in captured and inst.output not in values:
            values[inst.output] = captured[inst.path]
    return values


def _diverge(graph: Graph, reference: dict[str, np.ndarray], values: dict[str, np.ndarray]) -> Divergence:
    compared = agreed = 0
    first: Divergence | None = None
    for node in graph.nodes:
        want, got = reference.get(node.path), values.get(node.path)
        if want is None or got is None or want.shape != (want.shape[0], *node.shape):
            continue
        compared += 1
        if first is not None:
            continue
        tol = tolerance(want)
        if got.shape != want.shape:
            first = Divergence(
                node.path, node.op, None, tol, 0, agreed, f"shape {got.shape[1:]}, the spec says {node.shape}"
            )
            continue
        diff = float(np.abs(got - want).max()) if want.size else 0.0
        if not diff <= tol:  # NaN included
            first = Divergence(node.path, node.op, diff, tol, 0, agreed)
        else:
            agreed += 1
    if first is None:
        return Divergence(None, None, None, None, compared, agreed)
    first.compared = compared
    return first


def _compare(
    graph: Graph, kind: str, reference: list[np.ndarray], outputs: list[np.ndarray], report: TargetReport
) -> float:
    worst = 0.0
    for path, want, got in zip(graph.outputs, reference, outputs):
        if got.shape != want.shape:
            continue  # reported as a shape problem
        diff = float(np.abs(got - want).max()) if want.size else 0.0
        tol = tolerance(want)
        ok = diff <= tol
        scale = float(np.abs(want).max()) if want.size else 0.0
        report.comparisons.append(Comparison(path, kind, diff, scale, tol, ok))
        worst = diff if math.isnan(diff) else max(worst, diff)
        if not ok:
            report.problems.append(
                f"{kind} {path}: max |diff| {diff:.3g} is above the tolerance {tol:.3g} (max |reference| {scale:.3g})"
            )
    return worst


# ----------------------------------------------------------------------------
# The check


@dataclass
class _Run:
    outputs: list[np.ndarray]
    pre_softmax: list[np.ndarray] | None
    values: dict[str, np.ndarray] | None


def _run_target(
    target: str, module: ModuleType, compiled: Compiled, weights, x: np.ndarray, softmax: bool, trace: bool
) -> tuple[TargetReport, _Run | None]:
    graph = compiled.graph
    report = TargetReport(target)
    start = time.perf_counter()
    try:
        rt = runtime.get(target)
        model = rt.build(module, class_name(graph.name))
        report.trainable, report.non_trainable = rt.param_counts(model)
        rt.load_weights(model, weights)
        outputs = rt.run(model, x)
        pre = None
        if softmax:
            with rt.softmax_bypassed():
                pre = rt.run(model, x)
        values = _node_values(graph, rt.intermediates(model, x)) if trace else None
        del model
        gc.collect()  # framework objects hold cycles: free a big model before the next is built
    except Exception as exc:
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        report.error = f"{type(exc).__name__}: {exc} (at {Path(frame.filename).name}:{frame.lineno})"
        report.problems.append(report.error)
        report.seconds = time.perf_counter() - start
        return report, None
    report.seconds = time.perf_counter() - start
    report.output_shapes = [list(o.shape) for o in outputs]
    want = [[x.shape[0], *s] for s in graph.output_shapes]
    if report.output_shapes != want:
        report.problems.append(f"output shapes {report.output_shapes}, the spec says {want}")
    counts = compiled.counts.total
    expected = (counts.trainable, counts.non_trainable)
    if report.trainable is not None and (report.trainable, report.non_trainable) != expected:  # onnx counts none
        report.problems.append(
            f"parameters {report.trainable:,} trainable + {report.non_trainable:,} non-trainable, "
            f"the spec says {counts.trainable:,} + {counts.non_trainable:,}"
        )
    for path, o in zip(graph.outputs, outputs):
        if not np.isfinite(o).all():
            report.problems.append(f"output {path} has values that are not finite")
    if pre is not None:
        for path, o, p in zip(graph.outputs, outputs, pre):
            if graph.node(path).op == "softmax" and o.shape == p.shape and np.array_equal(o, p):
                report.problems.append(f"output {path}: bypassing the softmax changed nothing")
    return report, _Run(outputs, pre, values)


def verify(
    compiled: Compiled,
    targets: Iterable[str] = TARGETS,
    seed: int = 0,
    trace: bool = False,
    batch: int = BATCH,
    modules: dict[str, ModuleType] | None = None,
) -> SpecReport:
    """Build every target of the spec with the same random weights and input,
    and compare; see the module's documentation. ``modules`` may supply
    already imported generated modules (by target) instead of generating them
    (onnx runs the pytorch one). The reference (PyTorch) always runs."""
    start = time.perf_counter()
    graph = compiled.graph
    targets = [REFERENCE, *(t for t in dict.fromkeys(targets) if t != REFERENCE)]
    unknown = [t for t in targets if t not in TARGETS and t not in DERIVED]
    if unknown:
        raise ValueError(f"unknown target {unknown[0]!r}; choose from {', '.join([*TARGETS, *DERIVED])}")
    weights = random_weights(compiled, seed)
    x = np.random.default_rng([seed, 1]).standard_normal((batch, *graph.input_shape)).astype(np.float32)
    softmax = any(n.op == "softmax" for n in graph.nodes)
    reports: list[TargetReport] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="archspec-verify-") as tmp:
        given = dict(modules or {})
        sources = {t: DERIVED.get(t, t) for t in targets}
        missing = [s for s in dict.fromkeys(sources.values()) if s not in given]
        code = {**generate(compiled, missing, Path(tmp), notes), **given}
        reference: _Run | None = None
        for target in targets:
            module = code[sources[target]]
            if isinstance(module, str):
                reports.append(TargetReport(target, error=module, problems=[module]))
                continue
            report, run = _run_target(target, module, compiled, weights, x, softmax, trace)
            reports.append(report)
            if target == REFERENCE:
                reference = run
            elif run is not None and reference is not None:
                report.max_abs_diff = _compare(graph, "output", reference.outputs, run.outputs, report)
                if run.pre_softmax is not None and reference.pre_softmax is not None:
                    report.max_abs_diff_pre_softmax = _compare(
                        graph, "pre-softmax", reference.pre_softmax, run.pre_softmax, report
                    )
                if trace and reference.values is not None and run.values != {}:  # onnx records none
                    report.trace = _diverge(graph, reference.values, run.values or {})
            elif run is not None:
                report.problems.append(f"no reference to compare with: {REFERENCE} failed")
            report.ok = not report.problems
    return SpecReport(
        spec=str(graph.file),
        name=graph.name,
        input_shape=list(graph.input_shape),
        batch=batch,
        seed=seed,
        reference=REFERENCE,
        expected_output_shapes=[[batch, *s] for s in graph.output_shapes],
        expected_trainable=compiled.counts.total.trainable,
        expected_non_trainable=compiled.counts.total.non_trainable,
        softmax=softmax,
        targets=reports,
        notes=notes,
        seconds=time.perf_counter() - start,
    )


# ----------------------------------------------------------------------------
# Reports


def _diff(report: TargetReport, kind: str) -> str:
    c = report.worst(kind)
    if c is None:
        return "-"
    return f"{c.max_abs_diff:.1e} / {c.tolerance:.1e}"


def format_table(report: SpecReport, trace: bool = False) -> str:
    """A report for people: one row per target, then the problems (and the trace)."""
    lines = [
        f"{report.spec}: {report.name}, input {shape_str(report.input_shape)}, batch {report.batch}, "
        f"seed {report.seed}; reference {report.reference}; tolerance {RTOL:g} x max|reference| + {ATOL:g}",
    ]
    header = ["target", "output shape", "trainable", "non-trainable", "max|diff| / tol"]
    if report.softmax:
        header.append("pre-softmax")
    header += ["time", "result"]
    rows = [header]
    for t in report.targets:
        row = [
            t.target,
            ", ".join(shape_str(s) for s in t.output_shapes) or "-",
            f"{t.trainable:,}" if t.trainable is not None else "-",
            f"{t.non_trainable:,}" if t.non_trainable is not None else "-",
            "reference" if t.target == report.reference else _diff(t, "output"),
        ]
        if report.softmax:
            row.append("reference" if t.target == report.reference else _diff(t, "pre-softmax"))
        row += [f"{t.seconds:.1f}s", "pass" if t.ok else "FAIL"]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    right = {2, 3}
    for r in rows:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))]
        lines.append("  " + "  ".join(cells).rstrip())
    lines.append(
        f"  spec: {', '.join(shape_str(s) for s in report.expected_output_shapes)}; "
        f"{report.expected_trainable:,} trainable + {report.expected_non_trainable:,} non-trainable parameters"
    )
    for t in report.targets:
        for p in t.problems:
            lines.append(f"  {t.target}: {p}")
    for note in report.notes:
        lines.append(f"  note: {note}")
    if trace:
        for t in report.targets:
            d = t.trace
            if d is None:
                continue
            if d.node is None:
                lines.append(f"  trace {t.target}: agrees with {report.reference} at all {d.compared} nodes compared")
            elif d.max_abs_diff is None:
                lines.append(
                    f"  trace {t.target}: first differs at {d.node} ({d.op}): {d.detail} "
                    f"({d.agreed_before} of {d.compared} nodes agree before it)"
                )
            else:
                lines.append(
                    f"  trace {t.target}: first differs at {d.node} ({d.op}): max |diff| {d.max_abs_diff:.3g}, "
                    f"tolerance {d.tolerance:.3g} ({d.agreed_before} of {d.compared} nodes agree before it)"
                )
    lines.append(f"  {'ok' if report.ok else 'FAILED'} ({report.seconds:.1f}s)")
    return "\n".join(lines) + "\n"
