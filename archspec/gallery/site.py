"""Build the gallery: compile, render, highlight, and publish one folder.

The specs are compiled first (an invalid one stops everything before a file
is written); the site is then written into a temporary folder beside the
output folder and swapped in, so the output folder holds the previous gallery or the new
one, never half of one. A folder that is not a previous gallery (it has no
:data:`MARKER` file) is refused rather than overwritten.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import jinja2

from archspec.diagnostics import SpecError
from archspec.gallery.pages import Download, Highlighter, NetworkPage, network_page
from archspec.pipeline import Compiled, compile_spec

MARKER = ".archspec-gallery"  # in the root of every gallery; its presence allows a rebuild
STATIC = ("gallery.css", "gallery.js")
_HERE = Path(__file__).parent


class GalleryError(Exception):
    """The gallery cannot be built; the message says why and what to do.
    Nothing was written."""


@dataclass(frozen=True)
class GalleryReport:
    out_dir: Path
    networks: list[str]
    files: int
    seconds: float


def build_gallery(spec_paths: Iterable[str | Path], out_dir: str | Path, onnx: bool = False) -> GalleryReport:
    """Write the gallery of ``spec_paths`` to ``out_dir``; with ``onnx``, each
    network's ONNX file too (``archspec export``), linked from its page.
    Raises GalleryError."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    _check_target(out_dir)
    highlight, pygments_css = _highlighter()
    loaded = _compile(list(spec_paths))
    with _staged(out_dir) as tmp:
        rendered = _render([c for c, _ in loaded.values()])
        pages = [network_page(c, text, rendered, highlight) for c, text in loaded.values()]
        exported = _export_onnx([c for c, _ in loaded.values()], tmp) if onnx else {}
        for page in pages:
            if page.name in exported:
                page.downloads.append(Download("ONNX", exported[page.name]))
        files = site_files(pages, rendered, {name: text for name, (_, text) in loaded.items()}, pygments_css)
        _write(files, tmp)
    return GalleryReport(out_dir, [p.name for p in pages], len(files) + len(exported), time.perf_counter() - start)


def _export_onnx(compiled: list[Compiled], folder: Path) -> dict[str, str]:
    """Network name -> its ONNX file, relative to its page, exported into ``folder``."""
    from archspec.export.onnx import TRACE_BATCH, WEIGHT_COPIES, OnnxExportError, export_onnx
    from archspec.passes.count import MAX_MEMORY_GIB, memory

    out = {}
    for c in compiled:
        name = c.graph.name
        estimate = memory(c.graph, c.counts, TRACE_BATCH, WEIGHT_COPIES)
        if estimate.bytes > MAX_MEMORY_GIB * 2**30:
            raise GalleryError(
                f"{name}: exporting it to ONNX needs {estimate.explain()}, over {MAX_MEMORY_GIB:g} GiB "
                "(archspec export --max-memory); no gallery written: leave out --onnx or this spec"
            )
        try:
            export_onnx(c, folder / name / f"{name}.onnx")
        except OnnxExportError as exc:
            raise GalleryError(f"{name}: {exc}; no gallery written") from None
        out[name] = f"{name}.onnx"
    return out


def _compile(paths: list[str | Path]) -> dict[str, tuple[Compiled, str]]:
    """Network name -> (compiled spec, spec text); every spec's errors at once."""
    if not paths:
        raise GalleryError("no specs given; name SPEC files, or run in a folder with specs/*.yaml")
    loaded: dict[str, tuple[Compiled, str]] = {}
    errors: list[str] = []
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            text = None  # compile_spec reports it, with its code
        try:
            c = compile_spec(path, text=text)
        except SpecError as err:
            errors += [str(d) for d in err.diagnostics]
            continue
        if c.graph.name in loaded:
            first = loaded[c.graph.name][0].graph.file
            errors.append(f"{path}: two specs are named '{c.graph.name}' (the other: {first}); give each its own name")
            continue
        loaded[c.graph.name] = (c, text)
    if errors:
        raise GalleryError("\n".join([*errors, "no gallery written: fix the specs above"]))
    return loaded


def _render(compiled: list[Compiled]) -> dict[str, str]:
    """``NAME/NAME_<target>.py``, ``NAME/NAME.md`` and ``NAME/NAME.svg`` of every
    network: what ``archspec build`` writes to generated/."""
    from archspec.build import render_all
    from archspec.codegen import EMITTERS
    from archspec.codegen.model import CodegenError
    from archspec.codegen.writer import FormatError
    from archspec.diagram import DiagramError, GraphvizNotFound

    try:
        return render_all(compiled, list(EMITTERS), table=True, diagram=True)
    except GraphvizNotFound as exc:
        raise GalleryError(f"{exc}; the gallery draws every network") from None
    except DiagramError as exc:
        raise GalleryError(str(exc)) from None
    except (CodegenError, FormatError) as exc:
        msg = f"archspec could not generate code: {exc}\nThis is a bug in archspec, not in your spec; please report it"
        raise GalleryError(msg) from None


def _highlighter() -> tuple[Highlighter, str]:
    """(highlight(text, language) -> HTML, the CSS it needs), from Pygments."""
    try:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer, YamlLexer
    except ImportError:
        raise GalleryError(
            "archspec gallery needs Pygments for syntax highlighting: pip install 'archspec[gallery]'"
        ) from None
    formatter = HtmlFormatter(cssclass="highlight")
    lexers = {"python": PythonLexer(), "yaml": YamlLexer()}
    return (lambda text, language: highlight(text, lexers[language], formatter)), formatter.get_style_defs(".highlight")


@cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("archspec.gallery", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def site_files(
    pages: list[NetworkPage], rendered: dict[str, str], spec_texts: dict[str, str], pygments_css: str
) -> dict[str, str]:
    """Relative path -> content of every file of the site: the index, a folder
    per network with its page and its downloads, and ``_static/``."""
    env = _env()
    files = {MARKER: "This folder was written by `archspec gallery`; it replaces the folder when run again.\n"}
    for name in STATIC:
        files[f"_static/{name}"] = (_HERE / "static" / name).read_text(encoding="utf-8")
    files["_static/pygments.css"] = pygments_css + "\n"
    files["index.html"] = env.get_template("index.html.j2").render(pages=pages, root="")
    files.update(rendered)
    for page in pages:
        files[f"{page.name}/index.html"] = env.get_template("network.html.j2").render(page=page, root="../")
        files[f"{page.name}/{page.name}.yaml"] = spec_texts[page.name]
    return files


def _check_target(out_dir: Path) -> None:
    """Refuse an output folder that must not be replaced."""
    if out_dir.is_symlink():
        raise GalleryError(f"{out_dir} is a symbolic link; give the folder itself with -o")
    if out_dir.exists() and not out_dir.is_dir():
        raise GalleryError(f"{out_dir} is a file, not a folder; give a folder with -o (it is created if missing)")
    above = next((p for p in out_dir.parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise GalleryError(f"-o {out_dir}: {above} is a file, not a folder; give a path in a folder")
    if out_dir.is_dir() and not (out_dir / MARKER).is_file() and any(out_dir.iterdir()):
        raise GalleryError(
            f"{out_dir} is a folder that holds files but no gallery (no {MARKER} in it); "
            "archspec gallery replaces its output folder, so give a new or empty folder with -o"
        )


@contextlib.contextmanager
def _staged(out_dir: Path) -> Iterator[Path]:
    """A temporary folder beside ``out_dir`` to write the site into; it
    replaces ``out_dir`` when the block ends without an error. On any error
    (Ctrl-C included) ``out_dir`` is left as it was and the folder is removed."""
    parent = out_dir.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=parent))
    except OSError as exc:
        raise GalleryError(f"cannot write the gallery in {parent}: {exc.strerror or exc}; choose another -o") from None
    old = tmp.with_suffix(".old")
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; a site is read by a web server
        if out_dir.exists():
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
    except BaseException as exc:
        if old.exists() and not out_dir.exists():
            os.replace(old, out_dir)  # interrupted between the two renames: put the previous gallery back
        if isinstance(exc, OSError):
            msg = f"cannot write the gallery to {out_dir}: {exc.strerror or exc}; nothing was changed"
            raise GalleryError(msg) from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def _write(files: dict[str, str], folder: Path) -> None:
    for rel, content in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
