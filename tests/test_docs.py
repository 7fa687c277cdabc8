"""The docs' commands parse, and the files and links they name exist.

Every ``archspec ...`` command of a fenced shell block in README.md and
docs/**/*.md is parsed by archspec's click command line (options, values,
argument counts; nothing is run); inline commands and synopses name only real
commands and options; every repository path named in those files exists, and
every relative link leads to a file or heading. A failure names the file and line.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from archspec.cli import main

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SHELL = {"sh", "shell", "bash", "console"}

# Placeholders a command may show, and a real value that parses in their place.
PLACEHOLDERS = {"SPEC": "specs/lenet.yaml", "RUN_DIR": "runs/lenet", "DIR": "runs/lenet", "N": "2"}

# A path into the repository; one followed by <...> or * is a pattern, not a file.
TOP = "archspec|specs|docs|benchmarks|scripts|tests|requirements|generated"
REPO_PATH = re.compile(rf"(?<![\w./-])((?:{TOP})/[\w./-]*)([<*]?)")


def fenced_commands(text: str) -> list[tuple[int, str]]:
    """(line number, command) of every command in the shell blocks of a
    Markdown text: in ``console`` blocks the lines after ``$ ``, in the others
    every line; continuation lines (``\\``) are joined."""
    found, lang, pending = [], None, None
    for number, line in enumerate(text.splitlines(), 1):
        fence = re.match(r"\s*```(\w*)", line)
        if fence:
            lang = None if lang is not None else fence.group(1)
            continue
        if lang not in SHELL:
            continue
        if pending is None:
            if lang == "console":
                if not line.startswith("$ "):
                    continue
                line = line[2:]
            pending = (number, "")
        start, before = pending
        if line.rstrip().endswith("\\"):
            pending = (start, before + line.rstrip()[:-1] + " ")
        else:
            found.append((start, before + line))
            pending = None
    return found


def archspec_argv(command: str) -> list[str] | None:
    """The arguments after ``archspec`` (``archspec``, ``.venv/bin/archspec``,
    ``python -m archspec``) in a shell command, or None if it runs no archspec."""
    words = shlex.split(command, comments=True)
    for i, word in enumerate(words):
        if word.rsplit("/", 1)[-1] == "archspec" and (i == 0 or words[i - 1] == "-m" or "=" in words[i - 1]):
            return [PLACEHOLDERS.get(w, w) for w in words[i + 1 :]]
    return None


def documented_commands() -> list[tuple[str, list[str]]]:
    """(file:line, arguments) of every archspec command in the docs' shell blocks."""
    return [
        (f"{doc.relative_to(ROOT)}:{number}", argv)
        for doc in DOCS
        for number, command in fenced_commands(doc.read_text())
        if (argv := archspec_argv(command)) is not None
    ]


def parse(argv: list[str]) -> None:
    """Parse ``argv`` as archspec's command line does, without running the
    command; raise click.UsageError for what click refuses."""
    parent, name, command, args = None, "archspec", main, list(argv)
    while isinstance(command, click.Group):  # archspec, archspec weights
        parent = click.Context(command, info_name=name, parent=parent)
        name, command, args = command.resolve_command(parent, args)
    try:
        command.make_context(name, args, parent=parent, resilient_parsing=False)
    except click.exceptions.Exit as done:  # an eager option that prints and stops (--list-data, --help)
        assert done.exit_code == 0


COMMANDS = documented_commands()


def test_docs_show_commands():
    assert len(COMMANDS) > 40, "the docs' shell blocks were not read"
    assert {argv[0] for _, argv in COMMANDS} >= {"summary", "validate", "train", "test", "verify", "report"}


@pytest.mark.parametrize(("where", "argv"), COMMANDS, ids=[where for where, _ in COMMANDS])
def test_documented_command_parses(where, argv, chdir_root):
    try:
        parse(argv)
    except click.UsageError as exc:
        pytest.fail(f"{where}: `archspec {shlex.join(argv)}`: {exc.format_message()}")


def test_parse_refuses_an_unknown_option(chdir_root):
    with pytest.raises(click.NoSuchOption):
        parse(["train", "specs/lenet.yaml", "-t", "pytorch", "--iterations", "5"])
    with pytest.raises(click.UsageError):
        parse(["weights", "export", "w.npz", "--spec", "specs/lenet.yaml"])  # --target and -o missing


def test_commands_are_found_in_every_kind_of_block():
    text = "\n".join(
        [
            "```console",
            "$ archspec summary specs/lenet.yaml",
            "lenet  (specs/lenet.yaml)",
            "```",
            "```sh",
            "# a comment",
            "TF_CONFIG='{}' archspec train specs/lenet.yaml \\",
            "    -t keras  # the rest",
            "torchrun --nnodes 2 -m archspec train specs/lenet.yaml",
            "pip install 'archspec[pytorch]'",
            "```",
            "```yaml",
            "archspec: no",
            "```",
        ]
    )
    commands = fenced_commands(text)
    assert [n for n, _ in commands] == [2, 6, 7, 9, 10]
    argvs = [archspec_argv(c) for _, c in commands]
    assert argvs == [
        ["summary", "specs/lenet.yaml"],
        None,
        ["train", "specs/lenet.yaml", "-t", "keras"],
        ["train", "specs/lenet.yaml"],
        None,
    ]


def prose(text: str) -> str:
    """A Markdown text without its fenced blocks (their lines left empty)."""
    return re.sub(r"```.*?```", lambda block: "\n" * block.group(0).count("\n"), text, flags=re.S)


def inline_commands() -> list[tuple[str, str]]:
    """(file:line, text after ``archspec``) of every inline code span that
    starts with ``archspec`` (prose and tables; a span may wrap lines)."""
    found = []
    for doc in DOCS:
        text = prose(doc.read_text())
        for span in re.finditer(r"`archspec ([^`]+)`", text):
            line = text.count("\n", 0, span.start()) + 1
            found.append((f"{doc.relative_to(ROOT)}:{line}", span.group(1)))
    return found


def unknown_options(synopsis: str) -> list[str]:
    """The options of an inline command or synopsis (``summary SPEC [--depth N]``)
    that its command does not have, or the first word if it is no command."""
    words = synopsis.split()
    ctx = click.Context(main, info_name="archspec")
    command = main
    while isinstance(command, click.Group) and words and (sub := command.get_command(ctx, words[0])):
        command, words = sub, words[1:]
    if command is main:
        return [synopsis.split()[0]]
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    return [opt for opt in re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", " ".join(words)) if opt not in known]


def test_inline_commands_name_real_options():
    spans = inline_commands()
    assert len(spans) > 30, "the docs' inline commands were not read"
    bad = [f"{where}: `archspec {text}`: {wrong}" for where, text in spans if (wrong := unknown_options(text))]
    assert not bad, "the docs name options that do not exist:\n" + "\n".join(bad)


def named_paths() -> list[tuple[str, str]]:
    """(file:line, path) of every repository path the docs name."""
    return [
        (f"{doc.relative_to(ROOT)}:{number}", path.rstrip("."))
        for doc in DOCS
        for number, line in enumerate(doc.read_text().splitlines(), 1)
        for path, pattern in REPO_PATH.findall(line)
        if not pattern
    ]


def test_named_paths_exist():
    missing = [f"{where}: {path}" for where, path in named_paths() if not (ROOT / path).exists()]
    assert not missing, "the docs name files that do not exist:\n" + "\n".join(missing)


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_links_lead_somewhere():
    bad = []
    for doc in DOCS:
        text = prose(doc.read_text())
        anchors = {slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}
        for number, line in enumerate(text.splitlines(), 1):
            for target in re.findall(r"\]\(([^)\s]+)\)", re.sub(r"`[^`]*`", "", line)):
                if "://" in target:
                    continue
                path, _, anchor = target.partition("#")
                if (path and not (doc.parent / path).exists()) or (not path and anchor not in anchors):
                    bad.append(f"{doc.relative_to(ROOT)}:{number}: {target}")
    assert not bad, "links to nothing:\n" + "\n".join(bad)


@pytest.fixture
def chdir_root(monkeypatch):
    """Run from the repository root, where the docs' relative paths point."""
    monkeypatch.chdir(ROOT)
