"""Load YAML with a source position on every value.

The loader never evaluates anything: it composes the YAML node tree with
PyYAML's safe loader and converts it itself, so that

* every mapping and sequence knows where it, its keys and its items start,
* duplicate keys are an error instead of a silent overwrite,
* aliases cannot blow up (the number of converted values is bounded).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from archspec.diagnostics import Diagnostic, Pos, SpecError

MAX_FILE_BYTES = 1_000_000
MAX_VALUES = 200_000


class YMap(dict):
    """A mapping that remembers the position of itself, its keys and values."""

    pos: Pos
    key_pos: dict[Any, Pos]
    val_pos: dict[Any, Pos]


class YList(list):
    """A sequence that remembers the position of itself and its items."""

    pos: Pos
    item_pos: list[Pos]


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
        self.constructor = yaml.SafeLoader("")

    def convert(self, node: yaml.Node) -> Any:
        self.count += 1
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
            self.constructor.flatten_mapping(node)
            for key_node, value_node in node.value:
                key = self.convert(key_node)
                kpos = _pos(self.file, key_node)
                if not isinstance(key, (str, int, float, bool)) or key is None:
                    self.errors.append(
                        Diagnostic(kpos, "E101", "mapping keys must be plain scalars")
                    )
                    continue
                if key in out:
                    self.errors.append(
                        Diagnostic(
                            kpos,
                            "E104",
                            f"duplicate key '{key}' (first at line "
                            f"{out.key_pos[key].line}); remove one of them",
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
        return self.constructor.construct_object(node)


def load_yaml(path: str | Path, text: str | bytes | None = None) -> tuple[Any, str]:
    """Read and parse a YAML file; returns ``(document, display_name)``.

    Raises :class:`SpecError` for an unreadable, empty, binary, non-UTF-8 or
    syntactically broken file.
    """
    name = str(path)
    here = Pos(name, 1, 1)

    def fail(code: str, message: str, pos: Pos = here) -> SpecError:
        return SpecError([Diagnostic(pos, code, message)])

    if text is None:
        try:
            p = Path(path)
            if p.is_dir():
                raise fail("E001", "is a directory, not a spec file")
            if p.stat().st_size > MAX_FILE_BYTES:
                raise fail(
                    "E005", f"the file is larger than {MAX_FILE_BYTES} bytes; a spec is a short text"
                )
            text = p.read_bytes()
        except FileNotFoundError:
            raise fail("E001", "no such file; check the path") from None
        except PermissionError:
            raise fail("E001", "permission denied; check the file's permissions") from None
        except OSError as exc:
            raise fail("E001", f"cannot read the file: {exc.strerror}") from None
    if isinstance(text, bytes):
        if b"\x00" in text:
            raise fail("E003", "the file is binary (it contains NUL bytes), not a YAML spec")
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
    if not text.strip() or all(
        not line.strip() or line.lstrip().startswith("#") for line in text.splitlines()
    ):
        raise fail("E002", "the file is empty; a spec needs at least 'name', 'input' and 'layers'")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = Pos(name, mark.line + 1, mark.column + 1) if mark else here
        problem = exc.problem or exc.context or "invalid YAML"
        raise fail("E004", f"{problem}; fix the YAML syntax", pos) from None
    except yaml.YAMLError as exc:  # pragma: no cover - defensive
        raise fail("E004", f"invalid YAML: {exc}") from None
    if node is None:
        raise fail("E002", "the file is empty; a spec needs at least 'name', 'input' and 'layers'")
    conv = _Converter(name)
    try:
        doc = conv.convert(node)
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        pos = Pos(name, mark.line + 1, mark.column + 1) if mark else here
        raise fail("E004", f"{exc.problem}; only plain YAML is allowed in a spec", pos) from None
    if conv.errors:
        raise SpecError(conv.errors)
    return doc, name
