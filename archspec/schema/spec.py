"""Parse and validate a spec document into plain data classes.

This stage checks everything that can be checked without evaluating the
network: the structure and types of the document, names, references between
nodes and blocks, op attributes, and the names used in expressions. It
collects every error of the file; :func:`parse_spec` raises one
:class:`~archspec.diagnostics.SpecError` with all of them, sorted.

The spec language is documented in ``docs/spec-language.md``.
"""

from __future__ import annotations

import keyword
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from archspec import ops
from archspec.diagnostics import Collector, Pos, did_you_mean, one_of, show
from archspec.names import GLOBAL_NAMES
from archspec.schema import expr as E
from archspec.schema.yamlload import YList, YMap, load_yaml

PARAM_TYPES = ("int", "float", "bool", "str")
YEARS = (1900, 2100)  # the range a spec's ``year`` may take
# A description is the network class's docstring: the paper, table and
# variant in about 3 lines.
DESCRIPTION_CHARS = 300
TOP_KEYS = (
    "name", "family", "year", "source", "description", "input", "params", "blocks", "layers", "outputs", "twins"
)  # fmt: skip
# A twin: a published model the spec reproduces (docs/twins.md).
TWIN_LIBRARIES = ("torchvision", "timm", "keras")
TWIN_KEYS = ("library", "model", "config", "set", "departs", "exact")
BLOCK_KEYS = ("params", "let", "nodes", "output", "doc", "sequential")
# Ops a sequential block may chain: layers that every target writes as one
# module, link or layer of its sequential container.
SEQUENTIAL_FAMILIES = ("conv", "dense")
SEQUENTIAL_OPS = ("batch_norm", "layer_norm")
NODE_KEYS = ("op", "block", "in", "when", "repeat", "first", "doc")
CHOICE_KEYS = ("if", "then", "else")
PAD_KEYWORDS = {"pad2d": ("same", "valid"), "pad1d": ("same", "valid", "causal")}
IDENT = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
# Names a node cannot take: they mean something already, in a spec or in the
# generated code (module attributes, Keras/TF/Chainer reserved members).
RESERVED = {
    "input",
    "i",
    "in_channels",
    "self",
    "forward",
    "training",
    "call",
    "build",
    "name",
    "params",
    "parameters",
    "children",
    "modules",
    "weights",
    "variables",
    "layers",
    "num_classes",
    "outputs",
    "trainable",
    "dtype",
    "config",
    "out_channels",  # what a stage's block records for make_stage
}
# Members of the frameworks' module classes (nn.Module, tf.Module, chainer.Link):
# a node of that name would become an attribute that hides the method.
RESERVED |= {
    "eval", "train", "to", "float", "double", "half", "bfloat16", "type", "cuda", "cpu", "apply",
    "state_dict", "load_state_dict", "zero_grad", "register_buffer", "register_module", "add_module",
    "named_modules", "named_parameters", "named_buffers", "named_children", "buffers", "requires_grad_",
    "extra_repr", "get_submodule", "share_memory", "to_empty", "submodules", "name_scope",
    "trainable_variables", "non_trainable_variables", "with_name_scope", "copy", "serialize", "links",
    "namedlinks", "namedparams", "cleargrads", "zerograds", "add_param", "add_link", "device", "xp",
    "init_scope", "within_init_scope", "to_cpu", "to_gpu", "to_device", "disable_update", "enable_update",
    "update_enabled", "count_params", "repeat", "register_persistent", "add_persistent",
}  # fmt: skip
# Parameter names that are also taken: the generated code's own argument names
# (make_stage's block, units and first; Keras functions' x and inputs; the
# networks' logits switch) and the names generated files use (framework
# modules, helpers, builtins).
RESERVED_PARAMS = (RESERVED - {"num_classes"}) | {"first", "units", "block", "x", "inputs", "logits"} | GLOBAL_NAMES
MAX_NODES_PER_SCOPE = 2000
# Node keys people write for the real ones, which difflib does not match.
KEY_HINTS = {"input": "in", "inputs": "in", "from": "in", "if": "when", "repeats": "repeat", "times": "repeat"}
BOOL_WORDS = {"yes", "no", "on", "off"}


def key_hint(key: str, candidates: list[str] | tuple[str, ...]) -> str:
    """did_you_mean, with the hints of :data:`KEY_HINTS` for keys it cannot match."""
    if key in KEY_HINTS:
        return f" (did you mean '{KEY_HINTS[key]}'?)"
    return did_you_mean(key, candidates)


@dataclass
class Value:
    """A value written in the spec: a literal, an expression, or a list."""

    raw: Any
    pos: Pos
    expr: E.Expr | None = None
    items: list[Value] | None = None
    key_pos: Pos | None = None  # where its key is, for a block argument
    exact: bool = True  # raw is pos's source text verbatim: column pos.col + i is raw[i]
    # A block argument that is one bare word naming nothing in scope: the
    # string itself when the parameter is a ``str`` (see _Parser.words).
    word: bool = False


@dataclass
class ParamDef:
    name: str
    type: str
    default: Any  # ops.REQUIRED when there is none
    pos: Pos
    doc: str = ""
    # A structural option (a spec parameter only): the generated network's
    # constructor takes it even where it sizes layers (a width multiplier).
    option: bool = False
    # The values a str parameter may take (``choices: [keras, torchvision]``); empty: any.
    choices: tuple[str, ...] = ()


@dataclass
class Twin:
    """A published model the spec reproduces: ``library``'s ``model`` built with
    ``config`` (constructor arguments), matched by the spec compiled with
    ``sets`` (``--set`` values). ``departs`` says in words where the spec
    departs from it; ``exact`` is false when no setting makes them equal."""

    library: str
    model: str
    pos: Pos
    config: dict[str, Any] = field(default_factory=dict)
    sets: dict[str, str] = field(default_factory=dict)
    departs: str = ""
    exact: bool = True

    @property
    def source(self) -> str:
        """``library:model``, as ``archspec weights import`` takes it."""
        return f"{self.library}:{self.model}"


@dataclass
class Choice:
    """A conditional input, ``{if: COND, then: A, else: B}``: the node reads
    ``A`` where COND holds, else ``B``. ``A`` is there exactly where COND holds
    (it has a ``when``; checked in every build), so that generated code writes
    ``a = self.a(...) if COND else b``."""

    cond: Value
    then: str
    other: str
    pos: Pos  # where the mapping is written
    then_pos: Pos
    other_pos: Pos


@dataclass
class NodeDef:
    name: str
    pos: Pos
    op: str | None = None  # canonical op name
    block: str | None = None
    inputs: list[tuple[str, Pos]] | None = None
    attrs: dict[str, Value] = field(default_factory=dict)
    first: dict[str, Value] = field(default_factory=dict)
    when: Value | None = None
    repeat: Value | None = None
    doc: str = ""
    # Conditional inputs by index in ``inputs`` (which holds their ``then`` node).
    choices: dict[int, Choice] = field(default_factory=dict)


@dataclass
class BlockDef:
    name: str
    pos: Pos
    params: dict[str, ParamDef]
    nodes: list[NodeDef]
    # Declared outputs: the first is the block's value (what the next node and
    # the next unit of a stage take); the others are read as ``node.name``.
    # Empty: the last node is the only output.
    outputs: list[tuple[str, Pos]] = field(default_factory=list)
    doc: str = ""
    # Sizes derived from the parameters, named once (``width: planes * 4``),
    # in order: each may read the parameters, in_channels and the ones before.
    lets: list[tuple[str, Value]] = field(default_factory=list)
    # A chain of unnamed layers (``sequential: true``): its nodes are named by
    # position, "0", "1", ..., as torchvision's ``nn.Sequential`` (``downsample.0``).
    sequential: bool = False

    @property
    def output(self) -> str:
        """The name of the node whose value the block returns."""
        return self.outputs[0][0] if self.outputs else self.nodes[-1].name

    def output_names(self) -> list[str]:
        return [n for n, _ in self.outputs] if self.outputs else [self.nodes[-1].name] if self.nodes else []


@dataclass
class Spec:
    name: str
    source: str
    file: str
    pos: Pos
    input: list[Value]
    params: dict[str, ParamDef]
    blocks: dict[str, BlockDef]
    layers: list[NodeDef]
    outputs: list[tuple[str, Pos]] | None = None
    description: str = ""
    family: str = ""  # what the gallery groups by ("ResNet"); "" when not given
    year: int | None = None  # the year the architecture was published
    name_pos: Pos | None = None  # where the value of 'name' is written
    twins: list[Twin] = field(default_factory=list)  # the published models it reproduces


def parse_spec(path: str | Path, text: str | bytes | None = None) -> Spec:
    """Load, parse and validate a spec file. Raises SpecError."""
    doc, name = load_yaml(path, text)
    return _Parser(name).spec(doc)


class _Parser:
    def __init__(self, file: str) -> None:
        self.file = file
        self.diag = Collector()
        # Parameters declared but refused (already reported): expressions that
        # use them are not reported again.
        self.rejected: set[str] = set()
        self.inexact: frozenset[Pos] = frozenset()
        # Block arguments written as a bare word that names nothing in scope,
        # with the scope they were written in: strings or errors, decided by
        # the parameter's type once every block is known (:meth:`words`).
        self.bare_words: list[tuple[NodeDef, str, Value, set[str]]] = []

    # -- helpers ------------------------------------------------------------

    def err(self, pos: Pos, code: str, message: str) -> None:
        self.diag.error(pos, code, message)

    def mapping(self, value: Any, pos: Pos, what: str) -> YMap | None:
        if isinstance(value, YMap):
            return value
        self.err(pos, "E101", f"{what} must be a mapping (key: value), found {_kind(value)}")
        return None

    def check_keys(self, m: YMap, allowed: tuple[str, ...], what: str) -> None:
        for key in m:
            if key not in allowed:
                self.err(
                    m.key_pos[key],
                    "E103",
                    f"unknown key '{key}' in {what}{did_you_mean(str(key), allowed)}; allowed: {', '.join(allowed)}",
                )

    def text(self, m: YMap, key: str, what: str, required: bool = True, hint: str = "") -> str:
        if key not in m:
            if required:
                self.err(m.pos, "E102", f"{what} needs a '{key}'{hint}")
            return ""
        v = m[key]
        if not isinstance(v, str) or not v.strip():
            self.err(m.val_pos[key], "E101", f"'{key}' must be a non-empty string, found {_kind(v)}")
            return ""
        return v

    def short(self, description: str, pos: Pos) -> None:
        """A description is the network class's docstring, rewrapped: its
        length, not its YAML line breaks, is what makes it 1-3 lines."""
        chars = len(" ".join(description.split()))
        if chars > DESCRIPTION_CHARS:
            self.err(
                pos,
                "E107",
                f"'description' has {chars} characters: it is the network class's docstring, at most "
                f"{DESCRIPTION_CHARS} (about 3 lines: paper, table, variant); move the rest to 'source'",
            )

    def name_ok(self, name: Any, pos: Pos, what: str) -> bool:
        if not isinstance(name, str) or not IDENT.match(name) or keyword.iskeyword(name):
            self.err(
                pos,
                "E105",
                f"invalid {what} name {show(name)}: use letters, digits and underscores, "
                "starting with a letter (not a Python keyword)",
            )
            return False
        if len(name) > 64:
            self.err(pos, "E105", f"{what} name '{name[:20]}...' is longer than 64 characters")
            return False
        return True

    def value(
        self, raw: Any, pos: Pos, scope: set[str], literal_words: tuple[str, ...] = (), key_pos: Pos | None = None
    ) -> Value:
        """Wrap a raw YAML value; strings become parsed expressions whose
        names are checked against ``scope``."""
        if isinstance(raw, YList):
            return Value(
                raw,
                pos,
                key_pos=key_pos,
                items=[self.value(v, p, scope, literal_words) for v, p in zip(raw, raw.item_pos, strict=True)],
            )
        if isinstance(raw, str):
            exact = pos not in self.inexact
            if raw in literal_words:
                return Value(raw, pos, key_pos=key_pos)
            try:
                tree = E.parse(raw)
            except E.ExprError as exc:
                hint = ""
                if raw.count("(") > raw.count(")"):
                    hint = (
                        "; in a flow mapping {...} a comma ends the value, so quote expressions "
                        'with commas: "make_divisible(x, 8)"'
                    )
                self.err(_shift(pos, exc.col, exact), exc.code, f"in expression {show(raw, 60)}: {exc.message}{hint}")
                return Value(raw, pos, key_pos=key_pos, exact=exact)
            if key_pos and isinstance(tree, E.Name) and tree.id not in scope | self.rejected | {"i"}:
                return Value(raw, pos, expr=tree, key_pos=key_pos, exact=exact, word=True)
            # An op attribute's words depend on its kind (padding: same, valid);
            # a block argument (with key_pos) may take any of them.
            self.check_names(tree, pos, scope, raw, () if key_pos else literal_words, exact)
            return Value(raw, pos, expr=tree, key_pos=key_pos, exact=exact)
        if raw is None or isinstance(raw, (YMap, bytes)) or not E.is_value(raw):
            self.err(pos, "E101", f"expected a number, boolean, string or list, found {_kind(raw)}")
        return Value(raw, pos, key_pos=key_pos)

    def check_names(
        self, tree: E.Expr, pos: Pos, scope: set[str], raw: str, literal_words: tuple[str, ...] = (), exact: bool = True
    ) -> None:
        for n in E.free_names(tree):
            if n.id in scope or n.id in self.rejected:
                continue
            if literal_words and isinstance(tree, E.Name):
                self.err(
                    _shift(pos, n.col, exact),
                    "E203",
                    f"'{n.id}' is neither a parameter nor one of: {', '.join(literal_words)}"
                    f"{did_you_mean(n.id, [*literal_words, *scope])}; use "
                    + ("a size, " if "same" in literal_words else "")
                    + "a parameter or one of those",
                )
                continue
            if n.id == "i":
                self.err(
                    _shift(pos, n.col, exact),
                    "E203",
                    "'i' is the unit index of a stage: only the arguments of a block node with 'repeat' "
                    "can use it; add 'repeat' to this node, or write the number",
                )
                continue
            if n.id.lower() in BOOL_WORDS:
                tail = "for a boolean write true or false, without quotes"
            else:
                tail = f"in scope here: {', '.join(sorted(scope))}" if scope else "declare it under 'params'"
            self.err(
                _shift(pos, n.col, exact), "E203", f"unknown parameter '{n.id}'{did_you_mean(n.id, scope)}; {tail}"
            )
        for c in E.calls(tree):
            fn = E.FUNCTIONS.get(c.func)
            if fn is None:
                self.err(
                    _shift(pos, c.col, exact),
                    "E302",
                    f"in expression {show(raw, 60)}: unknown function '{c.func}'{did_you_mean(c.func, E.FUNCTIONS)}; "
                    f"available: {', '.join(sorted(E.FUNCTIONS))}",
                )
            elif not fn.min_args <= len(c.args) <= fn.max_args:
                want = str(fn.min_args) if fn.min_args == fn.max_args else f"{fn.min_args} to {fn.max_args}"
                self.err(
                    _shift(pos, c.col, exact),
                    "E302",
                    f"in expression {show(raw, 60)}: {c.func}() takes {want} arguments, got {len(c.args)}",
                )

    # -- document -----------------------------------------------------------

    def spec(self, doc: Any) -> Spec:
        top = self.mapping(doc, Pos(self.file, 1, 1), "a spec")
        self.inexact = getattr(doc, "inexact", frozenset())
        if top is None:
            self.diag.raise_if_any()
        assert top is not None
        self.check_keys(top, TOP_KEYS, "the spec")
        name = self.text(top, "name", "the spec", hint=": an identifier that names the generated files")
        if name:
            self.name_ok(name, top.val_pos["name"], "spec")
        source = self.text(top, "source", "the spec", hint=": the paper or table it follows, and any deviation")
        description = self.text(top, "description", "the spec", required=False)
        family = self.text(top, "family", "the spec", required=False)
        year = self.year(top)
        if description:
            self.short(description, top.val_pos["description"])

        params = self.params(top.get("params"), top.val_pos.get("params"), spec_level=True)
        global_scope = set(params)

        shape: list[Value] = []
        if "input" not in top:
            self.err(top.pos, "E102", "the spec needs an 'input' shape, channels first: [C, H, W] or [C, L]")
        else:
            raw, pos = top["input"], top.val_pos["input"]
            if not isinstance(raw, YList) or not 1 <= len(raw) <= 3:
                self.err(pos, "E101", "'input' must be a list of 1 to 3 sizes, channels first: [C, H, W] or [C, L]")
            else:
                shape = [self.value(v, p, global_scope) for v, p in zip(raw, raw.item_pos, strict=True)]

        blocks_raw = top.get("blocks")
        blocks: dict[str, BlockDef] = {}
        block_names: set[str] = set()
        if blocks_raw is not None:
            bm = self.mapping(blocks_raw, top.val_pos["blocks"], "'blocks'")
            if bm is not None:
                block_names = {k for k in bm if isinstance(k, str)}
                for bname, body in bm.items():
                    if self.name_ok(bname, bm.key_pos[bname], "block") and bname not in ops.OPS:
                        blocks[bname] = self.block(bname, body, bm.key_pos[bname], global_scope, block_names)
                    elif bname in ops.OPS:
                        self.err(bm.key_pos[bname], "E106", f"block '{bname}' has the name of an op; rename it")
        self.check_block_cycles(blocks)

        layers: list[NodeDef] = []
        if "layers" not in top:
            self.err(top.pos, "E102", "the spec needs 'layers': the list of the network's nodes")
        else:
            layers = self.nodes(top["layers"], top.val_pos["layers"], global_scope, block_names, blocks, "layers")

        self.check_output_refs(blocks, [*(b.nodes for b in blocks.values()), layers])
        self.words(blocks)
        outputs = None
        if "outputs" in top:
            outputs = self.outputs(top["outputs"], top.val_pos["outputs"], layers)
        self.check_choices(layers, outputs or [])

        twins = self.twins(top["twins"], top.val_pos["twins"], params) if "twins" in top else []

        self.diag.raise_if_any()
        name_pos = top.val_pos["name"]
        return Spec(
            name,
            source,
            self.file,
            top.pos,
            shape,
            params,
            blocks,
            layers,
            outputs,
            description,
            family,
            year,
            name_pos,
            twins,
        )

    def twins(self, raw: Any, pos: Pos, params: dict[str, ParamDef]) -> list[Twin]:
        """``twins:``: a list of mappings, each naming a published model (TWIN_KEYS)."""
        if not isinstance(raw, YList):
            self.err(pos, "E101", f"'twins' must be a list of mappings (library, model, ...), found {_kind(raw)}")
            return []
        out: list[Twin] = []
        seen: dict[str, Pos] = {}
        for item, ipos in zip(raw, raw.item_pos, strict=True):
            m = self.mapping(item, ipos, "a twin")
            if m is None:
                continue
            self.check_keys(m, TWIN_KEYS, "a twin")
            library = self.text(m, "library", "a twin", hint=f": {one_of(TWIN_LIBRARIES)}")
            if library and library not in TWIN_LIBRARIES:
                self.err(
                    m.val_pos["library"],
                    "E101",
                    f"unknown twin library {show(library)}{did_you_mean(library, TWIN_LIBRARIES)}; "
                    f"{one_of(TWIN_LIBRARIES)}",
                )
                library = ""
            model = self.text(m, "model", "a twin", hint=": the model's constructor name in the library (resnet50)")
            if model and not IDENT.match(model):
                self.err(m.val_pos["model"], "E105", f"twin model {show(model)} is not a constructor name (resnet50)")
                model = ""
            config = self.twin_mapping(m, "config", "constructor arguments (aux_logits: false)")
            sets = self.twin_mapping(m, "set", "spec parameters (convention: torchvision)")
            for key in sets:
                if key not in params:
                    known = ", ".join(params) or "none"
                    self.err(
                        m["set"].key_pos[key],
                        "E203",
                        f"twin sets unknown parameter '{key}'{did_you_mean(key, params)}; the spec takes: {known}",
                    )
                elif params[key].choices and sets[key] not in params[key].choices:
                    self.err(
                        m["set"].val_pos[key],
                        "E303",
                        f"twin sets '{key}' to {show(sets[key])}; {one_of(params[key].choices)}",
                    )
            departs = self.text(m, "departs", "a twin", required=False)
            exact = m.get("exact", True)
            if not isinstance(exact, bool):
                self.err(m.val_pos["exact"], "E101", f"'exact' must be true or false, found {_kind(exact)}")
            elif not exact and not departs:
                self.err(
                    m.val_pos["exact"], "E102", "a twin with 'exact: false' needs 'departs': say why no setting matches"
                )
            if not (library and model):
                continue
            twin = Twin(library, model, ipos, config, {k: _set_text(v) for k, v in sets.items()}, departs, exact)
            key = f"{twin.source} {sorted(config.items())}"
            if key in seen:
                self.err(ipos, "E106", f"twin {twin.source} is declared twice with the same config; remove one")
                continue
            seen[key] = ipos
            out.append(twin)
        return out

    def twin_mapping(self, m: YMap, key: str, what: str) -> dict[str, Any]:
        """A twin's ``config`` or ``set``: a mapping of names to plain values."""
        if key not in m:
            return {}
        raw = self.mapping(m[key], m.val_pos[key], f"a twin's '{key}' ({what})")
        if raw is None:
            return {}
        out = {}
        for k, v in raw.items():
            if not isinstance(k, str) or not IDENT.match(k):
                self.err(raw.key_pos[k], "E105", f"invalid name {show(k)} in a twin's '{key}'")
            elif v is None or isinstance(v, (YMap, YList)) or not E.is_value(v):
                self.err(raw.val_pos[k], "E101", f"twin's '{key}' {k}: expected a number, boolean or string")
            else:
                out[k] = v
        return out

    def year(self, top: YMap) -> int | None:
        """The optional ``year``: a whole number from 1900 to 2100."""
        if "year" not in top:
            return None
        v, pos = top["year"], top.val_pos["year"]
        if not isinstance(v, int) or isinstance(v, bool):
            self.err(pos, "E101", f"'year' must be a whole number, the year of publication (2015), found {_kind(v)}")
            return None
        if not YEARS[0] <= v <= YEARS[1]:
            self.err(pos, "E303", f"'year' {v} is out of range; give the year of publication, {YEARS[0]} to {YEARS[1]}")
            return None
        return v

    def params(self, raw: Any, pos: Pos | None, spec_level: bool) -> dict[str, ParamDef]:
        out: dict[str, ParamDef] = {}
        if raw is None:
            return out
        m = self.mapping(raw, pos or Pos(self.file), "'params'")
        if m is None:
            return out
        for pname, decl in m.items():
            kpos, vpos = m.key_pos[pname], m.val_pos[pname]
            if not self.name_ok(pname, kpos, "parameter"):
                continue
            if pname in RESERVED_PARAMS:
                self.err(kpos, "E105", f"'{pname}' is a reserved name; choose another parameter name")
                continue
            ptype, default, doc, option, choices = None, ops.REQUIRED, "", False, ()
            if isinstance(decl, YMap):
                keys = ("type", "default", "doc", "option", "choices") if spec_level else ("type", "default", "doc")
                self.check_keys(decl, keys, f"parameter '{pname}'")
                if "option" in decl:
                    option = decl["option"] is True
                    if not isinstance(decl["option"], bool):
                        self.err(decl.val_pos["option"], "E101", f"'option' of '{pname}' must be true or false")
                ptype = decl.get("type")
                if ptype is not None and ptype not in PARAM_TYPES:
                    self.err(
                        decl.val_pos["type"],
                        "E101",
                        f"unknown type {show(ptype)}{did_you_mean(str(ptype), PARAM_TYPES)}; {one_of(PARAM_TYPES)}",
                    )
                    continue
                if "default" in decl:
                    default = decl["default"]
                    vpos = decl.val_pos["default"]
                doc = decl.get("doc", "") if isinstance(decl.get("doc", ""), str) else ""
                if "choices" in decl:
                    choices = self.choices(pname, decl)
            elif isinstance(decl, str) and decl in PARAM_TYPES:
                ptype = decl
            elif E.is_value(decl) and decl is not None:
                default = decl
            else:
                self.err(
                    vpos,
                    "E101",
                    f"parameter '{pname}' must be a default value, a type ({', '.join(PARAM_TYPES)}) "
                    "or a mapping with 'type', 'default' and 'doc'",
                )
                continue
            if default is not ops.REQUIRED:
                inferred = _type_of(default)
                if inferred is None:
                    self.err(vpos, "E101", f"default of '{pname}' must be a number, boolean or string")
                    continue
                if isinstance(default, float) and not math.isfinite(default):
                    self.err(vpos, "E303", f"default {show(default)} of '{pname}' must be a finite number")
                    continue
                if ptype is None:
                    ptype = inferred
                elif not _fits(default, ptype):
                    if isinstance(default, str) and ptype != "str" and _is_expression(default):
                        message = (
                            f"the default of '{pname}' must be a plain {ptype}, not an expression ({show(default)}); "
                            "write its value, or compute it where the parameter is used"
                        )
                    else:
                        message = f"default {show(default)} of '{pname}' is not of type {ptype}"
                    self.err(vpos, "E101", message)
                    continue
            elif ptype is None:
                self.err(vpos, "E102", f"parameter '{pname}' needs a 'type' or a 'default'")
                continue
            if spec_level and default is ops.REQUIRED:
                self.err(
                    vpos, "E102", f"spec parameter '{pname}' needs a default, so that the spec builds without --set"
                )
                continue
            if choices and default not in choices:
                self.err(vpos, "E303", f"default {show(default)} of '{pname}' is not among its choices")
                continue
            out[pname] = ParamDef(pname, ptype, default, kpos, doc, option, choices)
        self.rejected |= {k for k in m if isinstance(k, str)} - set(out)
        return out

    def choices(self, pname: str, decl: YMap) -> tuple[str, ...]:
        """``choices: [keras, torchvision]``: the words a str parameter may take."""
        raw, pos = decl["choices"], decl.val_pos["choices"]
        if decl.get("type", "str") != "str" or not isinstance(raw, YList) or not raw:
            self.err(pos, "E101", f"'choices' of '{pname}' must be a list of words, for a parameter of type str")
            return ()
        if not all(isinstance(c, str) and IDENT.match(c) for c in raw):
            self.err(pos, "E101", f"'choices' of '{pname}' must be words (letters, digits, _), found {show(raw)}")
            return ()
        return tuple(raw)

    def block(self, name: str, body: Any, pos: Pos, global_scope: set[str], block_names: set[str]) -> BlockDef:
        m = self.mapping(body, pos, f"block '{name}'")
        if m is None:
            return BlockDef(name, pos, {}, [])
        self.check_keys(m, BLOCK_KEYS, f"block '{name}'")
        params = self.params(m.get("params"), m.val_pos.get("params"), spec_level=False)
        for p in params:
            if p in global_scope:
                self.err(
                    params[p].pos, "E106", f"block parameter '{p}' hides the spec parameter of the same name; rename it"
                )
        scope = global_scope | set(params) | {"in_channels"}
        lets = self.lets(m, scope) if "let" in m else []
        scope |= {n for n, _ in lets}
        if "nodes" not in m:
            self.err(pos, "E102", f"block '{name}' needs 'nodes': the list of its nodes")
            nodes: list[NodeDef] = []
        else:
            nodes = self.nodes(m["nodes"], m.val_pos["nodes"], scope, block_names, None, f"block '{name}'")
        outputs = self.block_outputs(m, nodes) if "output" in m else []
        self.check_choices(nodes, outputs)
        doc = m.get("doc", "") if isinstance(m.get("doc", ""), str) else ""
        sequential = self.sequential(m, name, nodes) if "sequential" in m else False
        if sequential:  # its layers are unnamed: a node's name is its position
            nodes = [replace(nd, name=str(i)) for i, nd in enumerate(nodes)]
        return BlockDef(name, pos, params, nodes, outputs, doc, lets, sequential)

    def sequential(self, m: YMap, name: str, nodes: list[NodeDef]) -> bool:
        """``sequential: true``: the block is a straight chain of layers (one
        input, one output, each node reading the one before), which every
        target writes as its sequential container. False where it is not."""
        flag, pos = m["sequential"], m.val_pos["sequential"]
        if not isinstance(flag, bool):
            self.err(pos, "E101", f"'sequential' of block '{name}' must be true or false, found {_kind(flag)}")
            return False
        if not flag:
            return False
        ok = "output" not in m
        if not ok:
            self.err(m.key_pos["output"], "E213", f"sequential block '{name}' returns its last layer: remove 'output'")
        allowed = [o.name for o in ops.OPS.values() if o.family in SEQUENTIAL_FAMILIES] + list(SEQUENTIAL_OPS)
        for nd in nodes:
            what = None
            if nd.op is None:
                what = "uses a block"
            elif nd.op not in allowed:
                what = f"is a {nd.op}"
            elif nd.inputs is not None:
                what = "names its input ('in')"
            elif nd.when is not None:
                what = "is conditional ('when')"
            if what is not None:
                ok = False
                self.err(
                    nd.pos,
                    "E213",
                    f"'{nd.name}' of sequential block '{name}' {what}: a sequential block is a straight chain of "
                    f"layers ({', '.join(allowed)}), each reading the one before; "
                    "write this block without 'sequential'",
                )
        return ok

    def lets(self, m: YMap, scope: set[str]) -> list[tuple[str, Value]]:
        """``let: {width: "int(planes * base_width / 64) * groups"}``: named
        sizes, each an expression over ``scope`` and the names before it."""
        raw = self.mapping(m["let"], m.val_pos["let"], "'let'")
        if raw is None:
            return []
        out: list[tuple[str, Value]] = []
        for lname, body in raw.items():
            kpos, vpos = raw.key_pos[lname], raw.val_pos[lname]
            if not self.name_ok(lname, kpos, "'let'"):
                continue
            if lname in RESERVED_PARAMS or lname == "i":
                self.err(kpos, "E105", f"'{lname}' is a reserved name; choose another 'let' name")
                continue
            if lname in scope:
                self.err(kpos, "E106", f"'let' name '{lname}' is already a parameter here; choose another name")
                continue
            if isinstance(body, (YMap, YList, bool)) or body is None:
                self.err(vpos, "E101", f"'let' {lname}: expected a number or an expression, found {_kind(body)}")
                continue
            out.append((lname, self.value(body, vpos, scope | {n for n, _ in out})))
        self.rejected |= {k for k in raw if isinstance(k, str)} - {n for n, _ in out}  # reported once
        return out

    def block_outputs(self, m: YMap, nodes: list[NodeDef]) -> list[tuple[str, Pos]]:
        """``output: NAME`` or ``output: [NAME, ...]``: nodes of the block, the first its value."""
        raw, pos = m["output"], m.val_pos["output"]
        items = list(zip(raw, raw.item_pos, strict=True)) if isinstance(raw, YList) else [(raw, pos)]
        if not items:
            self.err(pos, "E101", "'output' must name a node of the block, or list several (the first is its value)")
            return []
        names = [n.name for n in nodes]
        out: list[tuple[str, Pos]] = []
        for oname, opos in items:
            if not isinstance(oname, str):
                self.err(opos, "E101", f"'output' names nodes of the block, found {_kind(oname)}")
            elif oname not in names:
                self.err(opos, "E205", f"unknown node '{oname}'{did_you_mean(oname, names)} as the block's output")
            elif any(oname == n for n, _ in out):
                self.err(opos, "E106", f"'{oname}' is listed twice in 'output'; list each output once")
            else:
                out.append((oname, opos))
        return out

    def nodes(
        self, raw: Any, pos: Pos, scope: set[str], block_names: set[str], blocks: dict[str, BlockDef] | None, where: str
    ) -> list[NodeDef]:
        if not isinstance(raw, YList) or not raw:
            self.err(pos, "E101", f"{where} must be a non-empty list of nodes ('- name: {{op: ...}}')")
            return []
        if len(raw) > MAX_NODES_PER_SCOPE:
            self.err(
                pos, "E305", f"{where} has {len(raw)} nodes (at most {MAX_NODES_PER_SCOPE}); use blocks and repeat"
            )
            return []
        out: list[NodeDef] = []
        seen: dict[str, Pos] = {}
        all_names = [next(iter(item)) for item in raw if isinstance(item, YMap) and len(item) == 1]
        for item, ipos in zip(raw, raw.item_pos, strict=True):
            if not isinstance(item, YMap) or len(item) != 1:
                self.err(ipos, "E101", "a node is a one-key mapping: '- name: {op: conv2d, ...}'")
                continue
            nname = next(iter(item))
            npos = item.key_pos[nname]
            if not self.name_ok(nname, npos, "node"):
                continue
            if nname in RESERVED:
                self.err(npos, "E105", f"'{nname}' is a reserved name ({_why_reserved(nname)}); rename the node")
                continue
            if nname in seen:
                self.err(npos, "E106", f"duplicate node name '{nname}' (first at line {seen[nname].line}); rename one")
                continue
            node = self.node(nname, item[nname], item.val_pos[nname], npos, scope, block_names, seen, all_names)
            seen[nname] = npos
            if node is not None:
                out.append(node)
        return out

    def node(
        self,
        name: str,
        body: Any,
        bpos: Pos,
        npos: Pos,
        scope: set[str],
        block_names: set[str],
        earlier: dict[str, Pos],
        all_names: list[str],
    ) -> NodeDef | None:
        m = self.mapping(body, bpos, f"node '{name}'")
        if m is None:
            return None
        node = NodeDef(name, npos)
        has_op, has_block = "op" in m, "block" in m
        if has_op and has_block:
            self.err(m.pos, "E102", f"node '{name}' has both 'op' and 'block'; a node is one op or one block")
            return None
        if not has_op and not has_block:
            glued = next((k for k in m if isinstance(k, str) and ":" in k), None)
            if glued is not None:  # {op:relu} is one key 'op:relu'
                self.err(
                    m.key_pos[glued],
                    "E102",
                    f"node '{name}' needs 'op' or 'block'; write '{glued.replace(':', ': ', 1)}' "
                    "with a space after the colon",
                )
            else:
                self.err(m.pos, "E102", f"node '{name}' needs 'op' (see 'archspec ops') or 'block'")
            return None
        attr_scope = scope
        if has_op:
            opname = m["op"]
            opdef = ops.lookup(opname) if isinstance(opname, str) else None
            if not isinstance(opname, str):
                self.err(m.val_pos["op"], "E101", f"'op' names an op, found {_kind(opname)}; see 'archspec ops'")
                return None
            if opdef is None:
                self.err(
                    m.val_pos["op"],
                    "E201",
                    f"unknown op {show(opname)}{did_you_mean(str(opname), [*ops.OPS, *block_names])}; "
                    "see 'archspec ops' for the list",
                )
                return None
            node.op = opdef.name
            for key in ("repeat", "first"):
                if key in m:
                    self.err(m.key_pos[key], "E103", f"'{key}' applies to block nodes only; wrap the op in a block")
        else:
            bname = m["block"]
            if not isinstance(bname, str):
                self.err(m.val_pos["block"], "E101", f"'block' names a block, found {_kind(bname)}")
                return None
            if bname not in block_names:
                self.err(
                    m.val_pos["block"],
                    "E204",
                    f"unknown block {show(bname)}{did_you_mean(str(bname), [*block_names, *ops.OPS])}; "
                    "define it under 'blocks'",
                )
                return None
            node.block = bname
            if "repeat" in m:
                node.repeat = self.value(m["repeat"], m.val_pos["repeat"], scope)
                attr_scope = scope | {"i"}
        if "in" in m:
            node.inputs = self.refs(m["in"], m.val_pos["in"], earlier, all_names, name, scope, node.choices)
        if "when" in m:
            node.when = self.value(m["when"], m.val_pos["when"], scope)
        if "doc" in m:
            node.doc = m["doc"] if isinstance(m["doc"], str) else ""
        # An unquoted expression with a comma in a flow mapping is cut at the
        # comma (reported with a hint); its tail is no attribute to report.
        cut = any(isinstance(v, str) and v.count("(") > v.count(")") for v in m.values())
        for key, raw in m.items():
            if key in NODE_KEYS:
                continue
            kpos, vpos = m.key_pos[key], m.val_pos[key]
            if node.op is not None:
                attr = ops.OPS[node.op].attrs.get(key)
                if attr is None:
                    if cut and not IDENT.match(str(key)):
                        continue
                    known = list(ops.OPS[node.op].attrs)
                    hint = key_hint(str(key), known + list(NODE_KEYS))
                    self.err(
                        kpos,
                        "E202",
                        f"unknown attribute '{key}' for op {node.op}{hint}; "
                        + (f"{node.op} takes {', '.join(known)}" if known else f"{node.op} takes no attributes"),
                    )
                    continue
                node.attrs[key] = self.value(raw, vpos, attr_scope, PAD_KEYWORDS.get(attr.kind, attr.choices))
            else:
                node.attrs[key] = self.value(raw, vpos, attr_scope, ("same", "valid", "causal"), kpos)
                self.note_word(node, str(key), node.attrs[key], attr_scope)
        if "first" in m and node.block is not None:
            fm = self.mapping(m["first"], m.val_pos["first"], "'first'")
            if fm is not None:
                for key, raw in fm.items():
                    node.first[key] = self.value(
                        raw, fm.val_pos[key], scope, ("same", "valid", "causal"), fm.key_pos[key]
                    )
                    self.note_word(node, str(key), node.first[key], scope)
                if node.repeat is None:
                    self.err(m.key_pos["first"], "E103", "'first' needs 'repeat' (it overrides the first unit)")
        if node.op is not None:
            for aname, attr in ops.OPS[node.op].attrs.items():
                if attr.required and aname not in node.attrs:
                    self.err(m.pos, "E102", f"op {node.op} needs attribute '{aname}' ({attr.doc})")
        return node

    def note_word(self, node: NodeDef, key: str, v: Value, scope: set[str]) -> None:
        if v.word:
            self.bare_words.append((node, key, v, scope))

    def words(self, blocks: dict[str, BlockDef]) -> None:
        """A bare word given to a block parameter of type ``str`` that names
        nothing in scope is that string (``act: RE``); given to any other
        parameter it is an unknown name. A word that names something in scope
        is always that name."""
        for node, key, v, scope in self.bare_words:
            p = blocks[node.block].params.get(key) if node.block in blocks else None
            if p is None:  # an unknown parameter: expansion reports it
                continue
            if p.type == "str":
                v.expr = None
                continue
            word = v.raw
            self.err(
                v.pos,
                "E203",
                f"unknown parameter '{word}'{did_you_mean(word, scope)}; parameter '{key}' of block "
                f"'{node.block}' is {p.type}, and a bare word is a string only for a parameter of type str",
            )

    def refs(
        self,
        raw: Any,
        pos: Pos,
        earlier: dict[str, Pos],
        all_names: list[str],
        me: str,
        scope: set[str] | None = None,
        choices: dict[int, Choice] | None = None,
    ) -> list[tuple[str, Pos]]:
        items = list(zip(raw, raw.item_pos, strict=True)) if isinstance(raw, YList) else [(raw, pos)]
        out = []
        for full, rpos in items:
            if isinstance(full, YMap) and choices is not None and scope is not None:
                choice = self.choice(full, rpos, earlier, all_names, me, scope)
                if choice is not None:
                    choices[len(out)] = choice
                    out.append((choice.then, choice.then_pos))
                continue
            if not isinstance(full, str):
                self.err(rpos, "E101", f"'in' names nodes, found {_kind(full)}")
                continue
            ref = full
            if "." in full:  # a block's named output: node.out, or stage.*.out for every unit's
                parts = full.split(".")
                ref = parts[0]
                if len(parts) not in (2, 3) or (len(parts) == 3 and parts[1] != "*") or not IDENT.match(parts[-1]):
                    self.err(
                        rpos,
                        "E205",
                        f"'{full}' is not a node reference; write 'node', 'node.output' for a named output "
                        "of a block, or 'stage.*.output' for that output of every unit of a stage",
                    )
                    continue
            if ref == "input" and ref != full:
                self.err(rpos, "E205", f"'{full}': 'input' has no named outputs")
            elif ref == "input" or ref in earlier:
                out.append((full, rpos))
            elif ref == me:
                self.err(rpos, "E207", f"node '{me}' takes itself as input (a cycle); name an earlier node")
            elif ref in all_names:
                self.err(
                    rpos,
                    "E207",
                    f"node '{me}' takes '{full}', which comes later (a cycle or a forward reference); "
                    "nodes can only take earlier nodes as input, so reorder them",
                )
            else:
                where = f" (in '{full}')" if full != ref else ""
                self.err(
                    rpos,
                    "E205",
                    f"unknown node '{ref}'{where}{did_you_mean(ref, [*earlier, 'input'])}; "
                    "'in' names an earlier node of the same list, or 'input'",
                )
        return out

    def choice(
        self, m: YMap, pos: Pos, earlier: dict[str, Pos], all_names: list[str], me: str, scope: set[str]
    ) -> Choice | None:
        """``{if: COND, then: A, else: B}`` in an ``in`` list."""
        self.check_keys(m, CHOICE_KEYS, "a conditional input")
        missing = [k for k in CHOICE_KEYS if k not in m]
        if missing:
            self.err(
                m.pos,
                "E102",
                f"a conditional input needs {' and '.join(repr(k) for k in missing)}: "
                "{if: COND, then: NODE, else: NODE}",
            )
            return None
        cond = self.value(m["if"], m.val_pos["if"], scope)
        then = self.refs(m["then"], m.val_pos["then"], earlier, all_names, me)
        other = self.refs(m["else"], m.val_pos["else"], earlier, all_names, me)
        for key, got in (("then", then), ("else", other)):
            if any("." in r for r, _ in got):
                self.err(m.val_pos[key], "E211", f"'{key}' of a conditional input names a node of this list or 'input'")
                return None
        if not then or not other:
            return None
        return Choice(cond, then[0][0], other[0][0], pos, then[0][1], other[0][1])

    def check_choices(self, defs: list[NodeDef], outputs: list[tuple[str, Pos]]) -> None:
        """A choice's ``then`` node A has a ``when`` and is no stage; its ``else``
        comes before it; and A is read through that same choice everywhere, so
        that where A is left out its name stands for the choice's ``else``."""
        index = {nd.name: k for k, nd in enumerate(defs)}
        # Every read of a node: (reader, position, the choice it is read through or None).
        reads: dict[str, list[tuple[str, Pos, Choice | None]]] = {}
        for k, nd in enumerate(defs):
            if nd.inputs is None and k:
                reads.setdefault(defs[k - 1].name, []).append((nd.name, nd.pos, None))
            for j, (ref, rpos) in enumerate(nd.inputs or []):
                reads.setdefault(ref.split(".")[0], []).append((nd.name, rpos, nd.choices.get(j)))
        for oname, opos in outputs or ([(defs[-1].name, defs[-1].pos)] if defs else []):
            reads.setdefault(oname, []).append(("the output", opos, None))
        chosen: dict[str, Choice] = {}
        for nd in defs:
            for c in nd.choices.values():
                a = defs[index[c.then]] if c.then in index else None
                if a is None:
                    self.err(
                        c.then_pos, "E211", "'then' of a conditional input names a node with a 'when', not 'input'"
                    )
                elif a.when is None:
                    self.err(
                        c.then_pos,
                        "E211",
                        f"'{a.name}' has no 'when': a conditional input reads it only where its 'if' holds, "
                        f"so give '{a.name}' the same condition ('when: {c.cond.raw}'); it is left out "
                        f"exactly where '{c.other}' is read instead",
                    )
                elif a.repeat is not None:
                    self.err(
                        c.then_pos,
                        "E211",
                        f"'{a.name}' is a stage: a conditional input chooses single nodes; "
                        "wrap the stage in a block and choose that",
                    )
                elif c.other != "input" and index.get(c.other, -1) > index[a.name]:
                    self.err(
                        c.other_pos,
                        "E211",
                        f"'{c.other}' comes after '{a.name}': where '{a.name}' is left out it stands for "
                        f"'{c.other}', so '{c.other}' must come first; reorder the nodes",
                    )
                else:
                    chosen.setdefault(a.name, c)
        for aname, c in chosen.items():
            for reader, rpos, via in reads.get(aname, []):
                if via is None or via.other != c.other or via.cond.raw != c.cond.raw:
                    how = "" if via is None else f" (here: if {via.cond.raw}, else {via.other})"
                    self.err(
                        rpos,
                        "E211",
                        f"{reader if reader == 'the output' else repr(reader)} reads '{aname}', which is read "
                        f"through {{if: {c.cond.raw}, then: {aname}, else: {c.other}}} at line {c.pos.line}{how}: "
                        f"left out, '{aname}' stands for one node, so read it through that same choice "
                        "everywhere (give a node that follows it an 'in')",
                    )

    def check_output_refs(self, blocks: dict[str, BlockDef], scopes: list[list[NodeDef]]) -> None:
        """References to named outputs (``gate.skip``, ``stack.*.skip``): the
        node is a block that declares that output, used once or as a stage."""
        for defs in scopes:
            by_name = {nd.name: nd for nd in defs}
            for nd in defs:
                block = blocks.get(nd.block or "")
                if nd.when is not None and block is not None and len(block.outputs) > 1:
                    self.err(
                        nd.when.key_pos or nd.when.pos,
                        "E210",
                        f"node '{nd.name}' uses block '{block.name}', which has several outputs, so it cannot "
                        "take 'when' (what would its other outputs be?); move the condition into the block",
                    )
                for full, rpos in nd.inputs or []:
                    parts = full.split(".")
                    src = by_name.get(parts[0])
                    if len(parts) == 1 or src is None:
                        continue
                    star, out = len(parts) == 3, parts[-1]
                    if src.block is None:
                        self.err(rpos, "E210", f"'{full}': '{src.name}' is an op; only blocks have named outputs")
                        continue
                    block = blocks.get(src.block)
                    if block is None:
                        continue
                    names = block.output_names()
                    if out not in names:
                        self.err(
                            rpos,
                            "E210",
                            f"'{full}': block '{block.name}' has no output '{out}'{did_you_mean(out, names)}; "
                            f"its outputs: {', '.join(names)} (a block lists them under 'output')",
                        )
                    elif star and src.repeat is None:
                        self.err(
                            rpos,
                            "E210",
                            f"'{full}': '{src.name}' is not a stage (no 'repeat'); write '{src.name}.{out}'",
                        )
                    elif not star and src.repeat is not None:
                        self.err(
                            rpos,
                            "E210",
                            f"'{full}': '{src.name}' is a stage; write '{src.name}.*.{out}' (every unit's)",
                        )
                    elif star and src.when is not None:
                        self.err(
                            rpos,
                            "E210",
                            f"'{full}': stage '{src.name}' has a 'when', so it may have no units to read; "
                            "move the condition into the block",
                        )
                    elif star and nd.op not in ("add", "concat"):
                        self.err(
                            rpos,
                            "E210",
                            f"'{full}' stands for one input per unit of '{src.name}'; only add and concat take it",
                        )

    def outputs(self, raw: Any, pos: Pos, layers: list[NodeDef]) -> list[tuple[str, Pos]]:
        names = [n.name for n in layers]
        items = list(zip(raw, raw.item_pos, strict=True)) if isinstance(raw, YList) else [(raw, pos)]
        out: list[tuple[str, Pos]] = []
        for ref, rpos in items:
            first = next((p for r, p in out if r == ref), None)
            if first is not None:
                self.err(
                    rpos,
                    "E106",
                    f"output '{ref}' is listed twice (first at line {first.line}, column {first.col}); "
                    "a network returns each output once: remove one",
                )
            elif ref in names:
                out.append((ref, rpos))
            else:
                self.err(
                    rpos,
                    "E205",
                    f"unknown output '{ref}'{did_you_mean(str(ref), names)}; outputs name nodes of 'layers'",
                )
        return out

    def check_block_cycles(self, blocks: dict[str, BlockDef]) -> None:
        uses = {b.name: [(n.block, n) for n in b.nodes if n.block] for b in blocks.values()}
        state: dict[str, int] = {}

        def visit(name: str, path: list[str]) -> None:
            state[name] = 1
            for used, node in uses.get(name, []):
                if state.get(used) == 1:
                    chain = " -> ".join([*path[path.index(used) :], used]) if used in path else f"{name} -> {used}"
                    self.err(node.pos, "E208", f"block '{used}' uses itself through {chain}; blocks cannot recurse")
                elif used in uses and state.get(used) is None:
                    visit(used, [*path, used])
            state[name] = 2

        for name in blocks:
            if state.get(name) is None:
                visit(name, [name])


def _shift(pos: Pos, col: int, exact: bool = True) -> Pos:
    """The position of column ``col`` of a value at ``pos``; the value's start
    where its text is not written verbatim (escapes, several lines)."""
    return Pos(pos.file, pos.line, pos.col + col) if exact else pos


def _kind(v: Any) -> str:
    if v is None:
        return "nothing"
    if isinstance(v, bool):
        return f"the boolean {show(v)}"
    if isinstance(v, (int, float)):
        return f"the number {show(v)}"
    if isinstance(v, str):
        return f"the string {show(v)}"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "a mapping"
    return type(v).__name__


def _set_text(v: Any) -> str:
    """A YAML value as the text ``--set`` would give."""
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def _type_of(v: Any) -> str | None:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "str"
    return None


def _fits(v: Any, ptype: str) -> bool:
    t = _type_of(v)
    return t == ptype or (ptype == "float" and t == "int")


def _is_expression(text: str) -> bool:
    """Whether ``text`` parses as an expression that is more than one word."""
    try:
        return not isinstance(E.parse(text), E.Name)
    except E.ExprError:
        return False


def _why_reserved(name: str) -> str:
    """Why a node cannot take the reserved ``name``, in a few words."""
    if name == "input":
        return "'in' lists use it for the network's input"
    if name == "i":
        return "it is a stage's unit index"
    if name in ("in_channels", "out_channels", "num_classes"):
        return "the generated constructors use it as an argument or attribute"
    return "a method or attribute of the frameworks' module classes"
