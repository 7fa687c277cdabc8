"""Load YAML with a source position on every value.

The loader never evaluates anything: it composes the YAML node tree with
PyYAML's safe loader and converts it itself, so that

* every mapping and sequence knows where it, its keys and its items start,
* duplicate keys are an error instead of a silent overwrite (a key written
  beside a merge key ``<<: *anchor`` overrides the merged one, as YAML 1.1 says),
* aliases cannot blow up (the number of converted values is bounded).
"""

from __future__ import annotations

import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from archspec.diagnostics import Diagnostic, Pos, SpecError

MAX_FILE_BYTES = 1_000_000
MAX_VALUES = 200_000
# The tags PyYAML's safe loader gives plain YAML values; an explicit tag
# (!!python/..., !!binary, !custom) is refused.
PLAIN_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("null", "bool", "int", "float", "str", "seq", "map", "timestamp")}
MERGE_TAG = "tag:yaml.org,2002:merge"
MAX_PLAIN_KEY = 1024  # YAML's limit on a key written without '?'; a longer one reads as a syntax error
# Plain scalars that YAML 1.1 reads as numbers other than they look: 010 is
# octal (8), 1:30 is base 60 (90). Refused, not read (see yaml11_surprise).
_OCTAL = re.compile(r"[-+]?0[0-7_]+")
_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
EMPTY = "the file is empty; a spec needs at least 'name', 'source', 'input' and 'layers'"


class YMap(dict):
    """A mapping that remembers the position of itself, its keys and values."""

    pos: Pos
    key_pos: dict[Any, Pos]
    val_pos: dict[Any, Pos]
    # On the document: positions of strings whose text is not written verbatim
    # (escapes, folded lines), where a column inside the value cannot be mapped
    # to the source by adding an offset.
    inexact: frozenset[Pos] = frozenset()


class YList(list):
    """A sequence that remembers the position of itself and its items."""

    pos: Pos
    item_pos: list[Pos]
    inexact: frozenset[Pos] = frozenset()


def _pos(file: str, node: yaml.Node) -> Pos:
    return Pos(file, node.start_mark.line + 1, node.start_mark.column + 1)


def _content_pos(file: str, node: yaml.Node) -> Pos:
    """Where a value's text starts: inside the quotes of a quoted scalar, so
    that a column inside an expression points at the right character."""
    pos = _pos(file, node)
    if isinstance(node, yaml.ScalarNode) and node.style in ("'", '"'):
        return Pos(pos.file, pos.line, pos.col + 1)
    return pos


class _Converter:
    def __init__(self, file: str) -> None:
        self.file = file
        self.count = 0
        self.errors: list[Diagnostic] = []
        self.inexact: set[Pos] = set()
        self.constructor = yaml.SafeLoader("")

    def convert(self, node: yaml.Node) -> Any:
        self.count += 1
        if node.tag not in PLAIN_TAGS:
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            raise SpecError(
                [
                    Diagnostic(
                        _pos(self.file, node),
                        "E004",
                        f"the YAML tag {tag!r} is not allowed: a spec is plain YAML; remove the tag",
                    )
                ]
            )
        if self.count > MAX_VALUES:
            raise SpecError(
                [
                    Diagnostic(
                        _pos(self.file, node),
                        "E305",
                        f"the document expands to more than {MAX_VALUES} values "
                        "(through aliases?); write a smaller spec",
                    )
                ]
            )
        if isinstance(node, yaml.MappingNode):
            out = YMap()
            out.pos, out.key_pos, out.val_pos = _pos(self.file, node), {}, {}
            explicit = sum(k.tag != MERGE_TAG for k, _ in node.value)
            self.constructor.flatten_mapping(node)
            overridden = _overridden(node.value, len(node.value) - explicit)
            for index, (key_node, value_node) in enumerate(node.value):
                if index in overridden:
                    continue
                key = self.convert(key_node)
                kpos = _pos(self.file, key_node)
                if not isinstance(key, (str, int, float, bool)) or key is None:
                    self.errors.append(Diagnostic(kpos, "E101", "mapping keys must be plain scalars"))
                    continue
                if key in out:
                    self.errors.append(
                        Diagnostic(
                            kpos,
                            "E104",
                            f"duplicate key '{key}' (first at line {out.key_pos[key].line}, "
                            f"column {out.key_pos[key].col}); remove one of them",
                        )
                    )
                    continue
                out[key] = self.convert(value_node)
                out.key_pos[key] = kpos
                out.val_pos[key] = _content_pos(self.file, value_node)
            return out
        if isinstance(node, yaml.SequenceNode):
            seq = YList(self.convert(item) for item in node.value)
            seq.pos = _pos(self.file, node)
            seq.item_pos = [_content_pos(self.file, item) for item in node.value]
            return seq
        if node.tag == "tag:yaml.org,2002:timestamp":
            return node.value  # a date is text in a spec (source: 2015-12-10)
        if node.tag == "tag:yaml.org,2002:str" and not _verbatim(node):
            self.inexact.add(_content_pos(self.file, node))
        try:
            value = self.constructor.construct_object(node)
        except ValueError:  # an integer of more than 4300 digits
            raise SpecError(
                [Diagnostic(_pos(self.file, node), "E305", "this number has too many digits; write a smaller number")]
            ) from None
        if node.tag in _NUMBER_TAGS and node.style is None and (surprise := yaml11_surprise(node.value, value)):
            self.errors.append(Diagnostic(_pos(self.file, node), "E004", surprise))
        bad = yaml.reader.Reader.NON_PRINTABLE.search(value) if isinstance(value, str) else None
        if bad is not None:  # written as an escape ("\0", "\e", "\ud800"); YAML allows none in a file
            code = ord(bad.group())
            what = "a lone surrogate, not a character" if 0xD800 <= code <= 0xDFFF else "a control character"
            self.errors.append(
                Diagnostic(
                    _pos(self.file, node),
                    "E004",
                    f"this string holds U+{code:04X} ({what}), which YAML allows in no file; remove the escape",
                )
            )
        return value


def yaml11_surprise(text: str, value: object, may_quote: bool = True) -> str | None:
    """What to write instead of ``text``, a plain scalar that YAML 1.1 read as
    ``value``, when that number is not the one it looks like (``010`` is octal
    8, ``1:30`` is base-60 90); None for an ordinary number. ``may_quote``:
    whether quoting is an answer (in a spec, not in ``--set``)."""
    if _OCTAL.fullmatch(text):
        decimal = ("-" if text.startswith("-") else "") + (text.lstrip("+-").lstrip("0_") or "0")
        instead = f", or {decimal} without the leading zero" if decimal != str(value) else ""
        return f"YAML reads {text} as the octal number {value}: write {value}{instead}"
    if ":" in text:
        quote = f", or quote '{text}' if it is text" if may_quote else ""
        return f"YAML reads {text} as the base-60 number {value}: write {value}{quote}"
    return None


def _read_capped(path: Path, fail: Callable[..., SpecError], whole: Pos) -> bytes:
    """The bytes of a regular file of at most :data:`MAX_FILE_BYTES`. A
    directory, FIFO, socket or device is refused before it is opened (a FIFO
    would block, ``/dev/zero`` never ends), and no more than the cap is read,
    so a file that grows while it is read cannot exhaust memory."""
    mode = path.stat().st_mode
    if stat.S_ISDIR(mode):
        raise fail("E001", "is a directory, not a spec file", whole)
    if not stat.S_ISREG(mode):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a device or socket"
        raise fail("E001", f"is {kind}, not a regular file; save the spec to a file and give its path", whole)
    too_large = f"the file is larger than {MAX_FILE_BYTES:,} bytes; a spec is a short text"
    if path.stat().st_size > MAX_FILE_BYTES:
        raise fail("E005", too_large, whole)
    with path.open("rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise fail("E005", too_large, whole)
    return data


def _overridden(pairs: list[tuple[yaml.Node, yaml.Node]], merged: int) -> set[int]:
    """Indices of the merged pairs (the first ``merged`` of a flattened
    mapping) that YAML 1.1's merge key drops: a key written in the mapping
    itself overrides a merged one, and of keys merged twice the later pair
    wins (PyYAML puts the first mapping of ``<<: [*a, *b]`` last)."""

    def key(node: yaml.Node) -> object:
        return (node.tag, node.value) if isinstance(node, yaml.ScalarNode) else id(node)

    seen = {key(k) for k, _ in pairs[merged:]}
    dropped = set()
    for index in range(merged - 1, -1, -1):
        k = key(pairs[index][0])
        if k in seen:
            dropped.add(index)
        seen.add(k)
    return dropped


def load_yaml(path: str | Path, text: str | bytes | None = None) -> tuple[Any, str]:
    """Read and parse a YAML file; returns ``(document, display_name)``.

    Raises :class:`SpecError` for an unreadable, empty, binary, non-UTF-8 or
    syntactically broken file.
    """
    name = str(path)
    here = Pos(name, 1, 1)
    whole = Pos(name)  # problems of the file as a whole have no line

    def fail(code: str, message: str, pos: Pos = here) -> SpecError:
        return SpecError([Diagnostic(pos, code, message)])

    if text is None:
        try:
            text = _read_capped(Path(path), fail, whole)
        except FileNotFoundError:
            raise fail("E001", "no such file; check the path", whole) from None
        except PermissionError:
            raise fail("E001", "permission denied; check the file's permissions", whole) from None
        except OSError as exc:
            raise fail("E001", f"cannot read the file: {exc.strerror}", whole) from None
    if isinstance(text, bytes):
        if b"\x00" in text:
            raise fail("E003", "the file is binary (it contains NUL bytes), not a YAML spec", whole)
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = text[: exc.start].count(b"\n") + 1
            col = exc.start - (text.rfind(b"\n", 0, exc.start) + 1) + 1
            raise fail(
                "E003",
                f"invalid UTF-8 byte 0x{text[exc.start]:02x}; save the file as UTF-8",
                Pos(name, line, col),
            ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip() or all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines()):
        raise fail("E002", EMPTY)
    too_deep = "the YAML is nested too deeply; a spec needs only a few levels of lists and mappings"
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark, message = _syntax_error(exc)
        pos = Pos(name, mark.line + 1, mark.column + 1) if mark else here
        raise fail("E004", message, pos) from None
    except yaml.reader.ReaderError as exc:  # YAML allows no control characters (but tab and newlines)
        at = exc.position
        line, col = text.count("\n", 0, at) + 1, at - (text.rfind("\n", 0, at) + 1) + 1
        raise fail(
            "E004",
            f"the control character U+{exc.character:04X} is not allowed in YAML; remove it",
            Pos(name, line, col),
        ) from None
    except yaml.YAMLError as exc:  # pragma: no cover - defensive
        raise fail("E004", f"invalid YAML: {exc}") from None
    except RecursionError:
        raise fail("E305", too_deep) from None
    if node is None:
        raise fail("E002", EMPTY)
    conv = _Converter(name)
    try:
        doc = conv.convert(node)
    except RecursionError:
        raise fail("E305", too_deep) from None
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        pos = Pos(name, mark.line + 1, mark.column + 1) if mark else here
        raise fail("E004", f"{exc.problem}; only plain YAML is allowed in a spec", pos) from None
    if conv.errors:
        raise SpecError(conv.errors)
    if isinstance(doc, (YMap, YList)):
        doc.inexact = frozenset(conv.inexact)
    return doc, name


def _verbatim(node: yaml.ScalarNode) -> bool:
    """Whether a scalar's value is its source text (less the quotes)."""
    start, end = node.start_mark, node.end_mark
    if start.buffer is None or start.line != end.line:
        return False
    text = start.buffer[start.pointer : end.pointer]
    if node.style in ("'", '"'):
        text = text[1:-1]
    return text == node.value


# PyYAML's token names, in words.
_TOKENS = {
    "'<stream end>'": "the end of the file",
    "<stream end>": "the end of the file",
    "'<block end>'": "the end of the block",
    "<block end>": "the end of the block",
    "'<block sequence start>'": "a '-' list item",
    "'<block mapping start>'": "a 'key: value' entry",
    "'<block entry>'": "a '-' list item",
    "'<scalar>'": "a value",
    "'?'": "a 'key: value' entry",
}


def _words(text: str) -> str:
    for token, words in _TOKENS.items():
        text = text.replace(token, words)
    return text


def _syntax_error(exc: yaml.MarkedYAMLError) -> tuple[Any, str]:
    """Where a YAML syntax error is and what to do about it, in words."""
    problem, context = exc.problem or "", exc.context or ""
    pm, cm = exc.problem_mark, exc.context_mark
    at = f"line {cm.line + 1}, column {cm.column + 1}" if cm else ""
    if "'\\t'" in problem:  # PyYAML writes the character with repr()
        line_start = pm.buffer.rfind("\n", 0, pm.pointer) + 1 if pm and pm.buffer else 0
        if pm is None or not pm.buffer or not pm.buffer[line_start : pm.pointer].strip():
            return pm, "a tab character: indent YAML with spaces, not tabs"
        return pm, "a tab character between the items of a line: YAML separates them with spaces; replace the tab"
    if pm is not None and pm.buffer and pm.buffer[pm.pointer : pm.pointer + 1] == ":":
        line_start = pm.buffer.rfind("\n", 0, pm.pointer) + 1
        key = re.split(r"[\s{\[,]", pm.buffer[line_start : pm.pointer].rstrip())[-1]
        if len(key) > MAX_PLAIN_KEY:
            n = len(key)
            start = yaml.error.Mark(pm.name, pm.index - n, pm.line, pm.column - n, pm.buffer, pm.pointer - n)
            return start, (
                f"a key of {len(key):,} characters: YAML reads at most {MAX_PLAIN_KEY} as a key before ':'; "
                "shorten it (a name has at most 64)"
            )
    if "cannot start any token" in problem:
        char = problem.split("character ", 1)[-1].split(" that", 1)[0]
        return pm, f"a value cannot start with {char}; put the value in quotes"
    if "quoted scalar" in context and "end of stream" in problem:
        return cm, "this quoted string is never closed; add the closing quote"
    if context.startswith("while parsing a flow") and cm is not None and pm is not None:
        closing = "]" if "sequence" in context else "}"
        if pm.line != cm.line or "<stream end>" in problem:
            return cm, f"this '{'[' if closing == ']' else '{'}' is never closed; add the closing '{closing}'"
        return pm, (
            f"{_words(problem)}; separate the items of a flow "
            f"{'list [...]' if closing == ']' else 'mapping {...}'} with commas"
        )
    if problem.startswith("expected <block end>") and pm is not None:
        if any(t in problem for t in ("'-'", "<block sequence start>", "<block mapping start>", "'?'", "<scalar>")):
            return pm, (
                f"this line is not indented like the lines above it (the block at {at}); "
                "indent the items of one list or mapping equally"
            )
        found = problem.split("but found ", 1)[-1]
        return pm, f"unexpected {_words(found)}; fix the YAML syntax"
    if problem == "mapping values are not allowed here":
        return pm, (
            "a ':' is not allowed here: write 'key: value' with a space after the colon, "
            "check the indentation, and quote a value that contains ': '"
        )
    if problem.startswith("found undefined alias"):
        return pm, f"{problem}: an anchor '&name' must be defined before '*name' uses it"
    if problem == "but found another document":
        return pm, "the file holds more than one YAML document ('---'); a spec is one document"
    return pm or cm, f"{_words(problem or context or 'invalid YAML')}; fix the YAML syntax"
