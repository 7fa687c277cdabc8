"""Format generated source with ruff and write files atomically."""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from functools import cache
from pathlib import Path

# src=[]: no folder is first-party, so that the imports of generated/chainer/ (a spec
# named chainer) sort as those of any other folder.
RUFF_ARGS = ["--isolated", "--config", "src=[]", "--line-length", "120", "--target-version", "py311"]
RUFF_RULES = "E,F,W,I,B,UP,SIM"
# Long lines the formatter cannot break are spec text (a long path in the
# header, a long word in a docstring): not a reason to refuse the file.
RUFF_IGNORE = "E501"


class FormatError(Exception):
    """ruff refused the generated source: an archspec bug, reported with the text."""


@cache
def _ruff() -> str:
    from ruff.__main__ import find_ruff_bin

    return os.fsdecode(find_ruff_bin())


def format_source(source: str, filename: str = "generated.py") -> str:
    """Format and check one file (see :func:`format_many`)."""
    return format_many({filename: source})[filename]


def format_many(sources: dict[str, str]) -> dict[str, str]:
    """Format and check many files with one ruff run of each kind (a build of
    the whole zoo is a hundred files: one process per file would dominate)."""
    if not sources:
        return {}
    with tempfile.TemporaryDirectory(prefix="archspec-fmt-") as tmp:
        root = Path(tmp)
        for name, text in sources.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text)
        run = subprocess.run(
            [_ruff(), "format", *RUFF_ARGS, "--quiet", "."], cwd=root, capture_output=True, text=True, timeout=300
        )
        if run.returncode != 0:
            raise FormatError(f"ruff format failed:\n{run.stdout}{run.stderr}")
        check = subprocess.run(
            [
                _ruff(),
                "check",
                *RUFF_ARGS,
                "--select",
                RUFF_RULES,
                "--ignore",
                RUFF_IGNORE,
                "--output-format",
                "concise",
                ".",
            ],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check.returncode != 0:
            lines = (check.stdout + check.stderr).splitlines()
            more = f"\n... and {len(lines) - 20} more" if len(lines) > 20 else ""
            raise FormatError("ruff check failed on generated code:\n" + "\n".join(lines[:20]) + more)
        return {name: (root / name).read_text() for name in sources}


def write_atomic(path: Path, content: str | bytes) -> bool:
    """Write ``content`` to ``path`` through a temporary file in the same
    directory and ``os.replace``: readers see the old file or the new one,
    never half of one, even when the write is interrupted (Ctrl-C, a full
    disk; the data is on disk before the rename), and no temporary file is
    left behind. The file keeps its permissions (a new one gets the umask's).
    Returns False when the file already had this content."""
    data = content.encode() if isinstance(content, str) else content
    if path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _mode(path)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise
    return True


def _mode(path: Path) -> int:
    """The permissions of ``path``, or those a new file gets (mkstemp's are 0600)."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
