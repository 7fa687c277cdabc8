"""Diagnostics: source positions, stable error codes and did-you-mean hints.

Every problem archspec finds in a spec is a :class:`Diagnostic` with a
``file:line:col`` position (1-based), a stable code from :data:`CODES` and a
message that says what to do. Passes collect diagnostics instead of raising on
the first one, so that a user sees every error of a file at once, sorted.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field

# Stable codes. The number never changes meaning; the text is the short title
# shown in the README's table of diagnostics.
CODES: dict[str, str] = {
    # Reading the file
    "E001": "file cannot be read",
    "E002": "file is empty",
    "E003": "file is not UTF-8 text",
    "E004": "YAML syntax error",
    "E005": "file too large",
    # Structure of the spec
    "E101": "wrong type",
    "E102": "missing required key",
    "E103": "unknown key",
    "E104": "duplicate key",
    "E105": "invalid name",
    "E106": "duplicate name",
    "E107": "description too long",
    # References
    "E201": "unknown op",
    "E202": "unknown attribute",
    "E203": "unknown parameter",
    "E204": "unknown block",
    "E205": "unknown node",
    "E206": "missing required argument",
    "E207": "reference to a later node",
    "E208": "block uses itself",
    "E209": "wrong number of inputs",
    "E210": "named output misused",
    "E211": "conditional input misused",
    "E212": "left-out node stands for another input",
    "E213": "sequential block is not a chain of layers",
    # Values and expressions
    "E301": "expression syntax error",
    "E302": "expression evaluation error",
    "E303": "value out of range",
    "E304": "bad --set value",
    "E305": "limit exceeded",
    # Shapes
    "E401": "shape mismatch",
    "E402": "kernel larger than input",
    "E403": "channels not divisible by groups",
    "E404": "wrong input rank",
    "E405": "empty output",
    # Targets
    "E501": "a target cannot express this",
}


@dataclass(frozen=True, order=True)
class Pos:
    """A 1-based position in a source file."""

    file: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        if self.line <= 0:
            return one_line(self.file)
        return f"{one_line(self.file)}:{self.line}:{self.col}"


@dataclass(frozen=True, order=True)
class Diagnostic:
    pos: Pos
    code: str
    message: str
    severity: str = field(default="error", compare=False)

    def __post_init__(self) -> None:
        if self.code not in CODES:  # pragma: no cover - programming error
            raise ValueError(f"unregistered diagnostic code {self.code}")

    def __str__(self) -> str:
        return f"{self.pos}: {self.severity}[{self.code}]: {one_line(self.message)}"


def one_line(text: str) -> str:
    """``text`` with every character that is not printable (newlines, tabs,
    terminal escapes, U+2028...) written as a Python escape, so that a
    diagnostic quoting a spec's text stays one line and prints as it reads."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class SpecError(Exception):
    """Raised at the end of a stage that found errors; carries all of them."""

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.diagnostics = sorted(set(diagnostics))
        super().__init__("\n".join(str(d) for d in self.diagnostics))


class Collector:
    """Collects diagnostics during a pass."""

    def __init__(self) -> None:
        self.items: list[Diagnostic] = []

    def error(self, pos: Pos, code: str, message: str) -> None:
        self.items.append(Diagnostic(pos, code, message))

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self) -> None:
        if self.items:
            raise SpecError(self.items)


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest candidate, or ``""``."""
    matches = difflib.get_close_matches(str(word), sorted(set(candidates)), n=1, cutoff=0.6)
    return f" (did you mean '{matches[0]}'?)" if matches else ""


def show(value: object, limit: int = 40) -> str:
    """A value as a spec author would write it, for messages: ``true`` not
    ``True``, ``null`` not ``None``, strings quoted; cut to ``limit`` characters."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (list, tuple)):
        text = "[" + ", ".join(show(v, limit) for v in value) + "]"
    elif isinstance(value, dict):
        text = "{" + ", ".join(f"{k}: {show(v, limit)}" for k, v in value.items()) + "}"
    elif isinstance(value, str):
        text = repr(value) if len(value) <= limit - 2 else repr(value[: limit - 5] + "...")
    elif isinstance(value, int) and abs(value) >= 10**limit:
        try:
            digits = str(abs(value))
        except ValueError:  # Python refuses to print ints of more than 4300 digits
            return "a number with thousands of digits"
        return f"{'-' if value < 0 else ''}{digits[: limit // 2]}... ({len(digits)} digits)"
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_of(candidates: Iterable[str]) -> str:
    """``"one of: a, b, c"`` for messages that list the valid choices."""
    return "one of: " + ", ".join(sorted(set(candidates)))
