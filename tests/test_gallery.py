"""`archspec gallery`: the page data, the site's files, bad inputs, and the
site in a real browser (Debian's chromium driven by Playwright, slow).

The page data is checked against `archspec summary`'s numbers; the browser
tests open the site from file:// and check the DOM and sizes, never pixels.
"""

from __future__ import annotations

import html
import os
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from archspec import summary
from archspec.build import render_all
from archspec.cli import main
from archspec.codegen import EMITTERS
from archspec.diagnostics import SpecError
from archspec.gallery import GalleryError, build_gallery
from archspec.gallery import site as site_module
from archspec.gallery.pages import TARGET_LABELS, network_page
from archspec.gallery.site import MARKER
from archspec.pipeline import compile_spec
from tests.conftest import SPEC_NAMES, SPECS

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz' dot is not installed")
CHROMIUM = "/usr/bin/chromium"
BROKEN = "name: net\nsource: test\ninput: [3, 8, 8]\nlayers:\n  - a: {op: conv2, out: 4, kernel: 1}\n"
TINY = "name: tiny\n{extra}source: test\ninput: [3, 8, 8]\nlayers:\n  - a: {{op: conv2d, out: 4, kernel: 1}}\n"


def run(*args: str):
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output
    return result


def plain(text: str, language: str) -> str:
    return f"<pre>{html.escape(text)}</pre>"


def siblings(out: Path) -> list[str]:
    """What lies beside ``out`` other than ``out`` (temporary folders left behind)."""
    return sorted(p.name for p in out.parent.iterdir() if p.name != out.name and p.name.startswith(f".{out.name}."))


# ----------------------------------------------------------------------------
# family and year in the spec


def test_family_and_year_are_read_from_the_spec(write_spec):
    spec = compile_spec(write_spec(TINY.format(extra="family: Tiny Nets\nyear: 1998\n"))).spec
    assert (spec.family, spec.year) == ("Tiny Nets", 1998)
    bare = compile_spec(write_spec(TINY.format(extra=""))).spec
    assert (bare.family, bare.year) == ("", None)


@pytest.mark.parametrize(
    ("extra", "code", "words"),
    [
        ("year: '2015'\n", "E101", "'year' must be a whole number"),
        ("year: true\n", "E101", "'year' must be a whole number"),
        ("year: 15\n", "E303", "'year' 15 is out of range"),
        ("family: 3\n", "E101", "'family' must be a non-empty string"),
        ("family: ''\n", "E101", "'family' must be a non-empty string"),
        ("famliy: ResNet\n", "E103", "did you mean 'family'"),
    ],
)
def test_bad_family_or_year_is_a_located_diagnostic(write_spec, extra, code, words):
    with pytest.raises(SpecError) as info:
        compile_spec(write_spec(TINY.format(extra=extra)))
    (d,) = info.value.diagnostics
    assert (d.code, d.pos.line) == (code, 2) and words in d.message, str(d)


def test_every_spec_of_the_zoo_has_a_family_and_a_year():
    for name in SPEC_NAMES:
        spec = compile_spec(SPECS / f"{name}.yaml").spec
        assert spec.family and spec.year, name


# ----------------------------------------------------------------------------
# page data: archspec summary's numbers, the build's files


@pytest.mark.parametrize("name", ["lenet", "mobilenet_v2", "wavenet"])
def test_page_numbers_are_the_summary_numbers(name):
    c = compile_spec(SPECS / f"{name}.yaml")
    files = render_all([c], list(EMITTERS), table=True)
    files[f"{name}/{name}.svg"] = '<?xml version="1.0"?>\n<!DOCTYPE svg>\n<svg id="d"></svg>\n'
    text = (SPECS / f"{name}.yaml").read_text()
    page = network_page(c, text, files, plain)
    data = summary.to_json(c)
    assert (page.trainable, page.non_trainable, page.total) == tuple(data["params"].values())
    assert page.macs == data["macs"] and page.macs_human == summary.human(data["macs"])
    assert page.input == "x".join(map(str, data["input_shape"]))
    assert (page.family, page.year) == (c.spec.family, c.spec.year)
    rows = summary.rows(c)
    assert [(r.path, r.op, r.params, r.macs) for r in page.rows] == [
        (r.path, r.op, r.count.total, r.count.macs) for r in rows
    ]
    assert sum(r.params for r in page.rows if r.is_node) == data["params"]["total"]
    assert page.svg == '<svg id="d"></svg>\n'  # no XML prolog inside HTML
    assert [t.id for t in page.tabs] == ["spec", *TARGET_LABELS]
    assert page.tabs[0].text == text
    for tab in page.tabs[1:]:
        assert tab.text == files[f"{name}/{tab.filename}"] and tab.html == plain(tab.text, "python")
    hrefs = [d.href for d in page.downloads]
    assert hrefs == [f"{name}.yaml", *(f"{name}_{t}.py" for t in TARGET_LABELS), f"{name}.md", f"{name}.svg"]


# ----------------------------------------------------------------------------
# the site's files


@pytest.fixture
def project(tmp_path, monkeypatch):
    """specs/ with lenet and mobilenet_v2, a broken spec beside it."""
    (tmp_path / "specs").mkdir()
    for name in ("lenet", "mobilenet_v2"):
        shutil.copy(SPECS / f"{name}.yaml", tmp_path / "specs")
    (tmp_path / "broken.yaml").write_text(BROKEN)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@needs_dot
def test_the_site_holds_every_page_and_download_and_nothing_remote(project):
    result = run("gallery")
    assert result.exit_code == 0, result.output
    site = project / "site"
    assert "2 networks" in result.output and (site / MARKER).is_file()
    index = (site / "index.html").read_text()
    for name in ("lenet", "mobilenet_v2"):
        c = compile_spec(f"specs/{name}.yaml")
        page = (site / name / "index.html").read_text()
        assert f"{c.counts.total.trainable:,}" in index and f"{c.counts.total.trainable:,}" in page
        assert f"{c.counts.total.macs:,}" in page and f'data-sort="{c.counts.total.macs}"' in index
        assert f'href="{name}/index.html"' in index and f'src="{name}/{name}.svg"' in index
        assert "<svg" in page and "<?xml" not in page
        for href in re.findall(r'href="([^"#]+)" download', page):
            assert (site / name / href).is_file(), href
        assert (site / name / f"{name}.yaml").read_text() == (project / "specs" / f"{name}.yaml").read_text()
        assert page.count('class="copy"') == 5
    pages = [p.read_text() for p in site.rglob("*.html")]
    assets = [(site / "_static" / n).read_text() for n in ("gallery.css", "gallery.js", "pygments.css")]
    for text in pages + assets:
        assert not re.search(r'(src|href)="(https?:)?//', text) and "url(http" not in text and "@import" not in text
    for text in pages:
        for ref in re.findall(r'(?:src|href)="([^"#]+)"', text):
            assert ref.startswith("../") or ref.count("/") <= 1, ref  # relative links only


@needs_dot
@pytest.mark.slow
def test_onnx_files_are_exported_and_linked(project):
    """``--onnx``: each network's ONNX file beside its page, offered for download."""
    onnx = pytest.importorskip("onnx")
    result = run("gallery", "specs/lenet.yaml", "--onnx")
    assert result.exit_code == 0, result.output
    page = (project / "site" / "lenet" / "index.html").read_text()
    assert re.search(r'href="lenet.onnx" download', page)
    onnx.checker.check_model(onnx.load(project / "site" / "lenet" / "lenet.onnx"))


@needs_dot
def test_a_rebuild_replaces_the_previous_gallery(project):
    assert run("gallery", "-o", "out").exit_code == 0
    (project / "out" / "stale.txt").write_text("from an older gallery")
    result = run("gallery", "specs/lenet.yaml", "-o", "out")
    assert result.exit_code == 0, result.output
    assert not (project / "out" / "stale.txt").exists() and not (project / "out" / "mobilenet_v2").exists()
    assert (project / "out" / "lenet" / "index.html").is_file()
    assert siblings(project / "out") == []


def test_a_bad_spec_writes_nothing(project):
    result = run("gallery", "specs/lenet.yaml", "broken.yaml", "-o", "out/site")
    assert result.exit_code == 1
    assert re.search(r"broken\.yaml:5:\d+: error\[E201\]", result.output) and "no gallery written" in result.output
    assert not (project / "out").exists()


def test_a_bad_spec_leaves_the_previous_gallery_as_it_was(project):
    (project / "old").mkdir()
    (project / "old" / MARKER).write_text("")
    (project / "old" / "index.html").write_text("previous")
    assert run("gallery", "broken.yaml", "-o", "old").exit_code == 1
    assert (project / "old" / "index.html").read_text() == "previous" and siblings(project / "old") == []


def test_output_that_is_a_file_is_refused(project):
    (project / "notes.txt").write_text("mine")
    result = run("gallery", "specs/lenet.yaml", "-o", "notes.txt")
    assert result.exit_code == 1 and "notes.txt is a file, not a folder" in result.output
    assert (project / "notes.txt").read_text() == "mine"


def test_a_folder_that_is_not_a_gallery_is_refused(project):
    result = run("gallery", "specs/lenet.yaml", "-o", "specs")
    assert result.exit_code == 1 and "holds files but no gallery" in result.output
    assert sorted(p.name for p in (project / "specs").iterdir()) == ["lenet.yaml", "mobilenet_v2.yaml"]


def test_output_under_a_file_is_a_clear_error(project):
    (project / "notes.txt").write_text("mine")
    with pytest.raises(
        GalleryError, match="-o notes.txt/site: notes.txt is a file, not a folder; give a path in a folder"
    ):
        build_gallery(["specs/lenet.yaml"], "notes.txt/site")
    assert (project / "notes.txt").read_text() == "mine"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_unwritable_folder_is_a_clear_error(project):
    (project / "locked").mkdir()
    (project / "locked").chmod(0o500)
    try:
        result = run("gallery", "specs/lenet.yaml", "-o", "locked/site")
    finally:
        (project / "locked").chmod(0o700)
    assert result.exit_code == 1 and "cannot write the gallery in" in result.output
    assert "Permission denied" in result.output
    assert list((project / "locked").iterdir()) == []


def test_without_graphviz_nothing_is_written(project, monkeypatch):
    monkeypatch.setenv("PATH", str(project / "no-such-bin"))
    result = run("gallery", "specs/lenet.yaml", "-o", "site")
    assert result.exit_code == 1 and "Graphviz" in result.output and "apt-get install graphviz" in result.output
    assert not (project / "site").exists() and siblings(project / "site") == []


def test_two_specs_of_one_name_are_refused(project):
    shutil.copy("specs/lenet.yaml", "lenet_copy.yaml")
    result = run("gallery", "specs/lenet.yaml", "lenet_copy.yaml", "-o", "site")
    assert result.exit_code == 1 and "two specs are named 'lenet'" in result.output
    assert not (project / "site").exists()


@pytest.mark.slow
@needs_dot
def test_the_whole_zoo_is_in_the_index(tmp_path, monkeypatch):
    # Highlighting is the slowest step and is checked on three networks below: skip it here.
    monkeypatch.setattr(site_module, "_highlighter", lambda: (plain, ""))
    report = build_gallery(sorted(SPECS.glob("*.yaml")), tmp_path / "site")
    assert sorted(report.networks) == SPEC_NAMES
    index = (tmp_path / "site" / "index.html").read_text()
    assert re.findall(r'<td data-sort="([^"]*)"><a href="\1/index.html">', index) == SPEC_NAMES
    for name in SPEC_NAMES:
        assert (tmp_path / "site" / name / "index.html").is_file()


# ----------------------------------------------------------------------------
# in a browser


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM} (Debian: apt-get install chromium)")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if shutil.which("dot") is None:
        pytest.skip("Graphviz' dot is not installed")
    out = tmp_path_factory.mktemp("gallery") / "site"
    build_gallery([SPECS / f"{n}.yaml" for n in ("lenet", "resnet50", "wavenet")], out)
    return out


@pytest.fixture
def page(browser):
    """A browser page that records console errors, page errors and failed requests."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    p = context.new_page()
    p.problems = []
    p.on("console", lambda m: p.problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    p.on("pageerror", lambda e: p.problems.append(f"page error: {e}"))
    p.on("requestfailed", lambda r: p.problems.append(f"failed: {r.url} {r.failure}"))
    yield p
    context.close()


@pytest.mark.slow
def test_every_page_loads_without_errors(site, page):
    for html_file in ["index.html", "lenet/index.html", "resnet50/index.html", "wavenet/index.html"]:
        page.goto((site / html_file).as_uri(), wait_until="load")
        page.locator("img").evaluate_all("imgs => Promise.all(imgs.map(i => i.decode()))")
        assert page.problems == [], html_file
        assert page.title()
    page.goto((site / "index.html").as_uri())
    assert page.locator("#networks img").evaluate_all("imgs => imgs.map(i => i.naturalWidth)") != [0, 0, 0]


@pytest.mark.slow
def test_the_index_filters_and_sorts(site, page):
    page.goto((site / "index.html").as_uri())
    rows = page.locator("#networks tbody tr")
    assert rows.count() == 3 and page.locator("#networks tbody tr:visible").count() == 3
    page.fill("#filter", "resn")
    assert page.locator("#networks tbody tr:visible").count() == 1 and page.inner_text("#shown") == "1 of 3 shown"
    page.fill("#filter", "WaveNet")  # any case
    assert page.locator("#networks tbody tr:visible td:first-child").all_inner_texts() == ["wavenet"]
    page.fill("#filter", "")
    assert page.locator("#networks tbody tr:visible").count() == 3
    names = lambda: page.locator("#networks tbody td:first-child").all_inner_texts()  # noqa: E731
    page.click("#networks th:nth-child(5) button")  # trainable params, ascending
    assert names() == ["lenet", "wavenet", "resnet50"]
    page.click("#networks th:nth-child(5) button")
    assert names() == ["resnet50", "wavenet", "lenet"]
    page.click("#networks th:nth-child(3) button")  # year
    assert names() == ["lenet", "resnet50", "wavenet"]
    assert page.problems == []


@pytest.mark.slow
def test_the_tabs_switch_and_every_panel_has_a_copy_button(site, page):
    page.goto((site / "resnet50" / "index.html").as_uri())
    visible = lambda: page.locator(".panel:visible .code").inner_text()  # noqa: E731
    assert visible().startswith("name: resnet50")
    seen = set()
    for target in TARGET_LABELS:
        page.click(f"#tab-{target}")
        assert page.get_attribute(f"#tab-{target}", "aria-selected") == "true"
        assert page.locator(".panel:visible").count() == 1
        code = visible()
        assert f"for {target}" in code.splitlines()[0]
        seen.add(code)
    assert len(seen) == 4
    assert page.locator(".panel button.copy").count() == 5
    page.locator(".panel:visible button.copy").click()
    page.wait_for_function("document.querySelector('.panel:not([hidden]) button.copy').textContent !== 'Copy'")
    assert page.problems == []


@pytest.mark.slow
def test_the_diagram_zooms_and_pans(site, page):
    page.goto((site / "resnet50" / "index.html").as_uri())
    svg = page.locator(".diagram-canvas svg")
    transform = lambda: page.locator(".diagram-canvas").evaluate("e => e.style.transform")  # noqa: E731
    width = svg.bounding_box()["width"]
    page.click("[data-zoom=in]")
    assert svg.bounding_box()["width"] == pytest.approx(width * 1.25, rel=0.01)
    page.click("[data-zoom=fit]")
    assert svg.bounding_box()["width"] == pytest.approx(width, rel=0.01)
    before = transform()
    page.locator(".diagram-viewport").evaluate("e => e.scrollIntoView()")  # the pointer must be over it
    box = page.locator(".diagram-viewport").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -300)
    page.wait_for_function(f"document.querySelector('.diagram-canvas').style.transform !== {before!r}")
    assert svg.bounding_box()["width"] > width * 1.2
    zoomed = svg.bounding_box()
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + 100, box["y"] + box["height"] / 2 + 50)
    page.mouse.up()
    moved = svg.bounding_box()
    assert (moved["x"] - zoomed["x"], moved["y"] - zoomed["y"]) == pytest.approx((100, 50), abs=1)
    assert page.problems == []


@pytest.mark.slow
def test_screenshots_of_the_index_and_a_network(site, page, tmp_path):
    page.goto((site / "index.html").as_uri())
    page.screenshot(path=tmp_path / "index.png", full_page=True)
    page.goto((site / "resnet50" / "index.html").as_uri())
    page.screenshot(path=tmp_path / "resnet50.png")
    for name in ("index.png", "resnet50.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 10_000
