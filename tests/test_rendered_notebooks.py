"""The course pages of the documentation are the notebooks as they are now.

``docs/render_notebooks.py`` runs each notebook (``notebooks/NN_name.py``) and writes its page,
``docs/course/NN-name.md``, with the outputs and the figures beside it. These tests run
nothing; they read the pages and the notebook scripts and check that

* every notebook has a page, every page a notebook, and every page is in the site's nav;
* the code cells on each page are the notebook's code cells, in order, character for
  character, and each Markdown cell of the notebook is on the page as it is;
* every figure a page links to exists, and no figure is left over from an older render.

A notebook edited without rendering its page again fails here. The fix is to render it:
``python docs/render_notebooks.py NN`` (it runs the notebook) and commit the page and its
``_files`` folder.
"""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COURSE = ROOT / "docs" / "course"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render = _load("render_notebooks", ROOT / "docs" / "render_notebooks.py")
runner = _load("notebook_runner", ROOT / "notebooks" / "runner.py")
NOTEBOOKS = runner.notebook_paths()
IDS = [p.stem for p in NOTEBOOKS]

try:
    import jupytext  # noqa: F401
    _NO_JUPYTEXT = None
except ImportError:
    _NO_JUPYTEXT = "jupytext not installed; pip install -e \".[dev]\" to read the notebook scripts"

_RERENDER = "render it: python docs/render_notebooks.py {number}"
_IMAGE_LINK = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


def _page(notebook: Path) -> Path:
    return render.page_path(notebook)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_every_notebook_has_a_page_in_the_nav(notebook):
    page = _page(notebook)
    assert page.is_file(), (f"{notebook.name} has no page {page.relative_to(ROOT)}; "
                            + _RERENDER.format(number=notebook.stem[:2]))
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert f"course/{page.name}" in nav, f"mkdocs.yml has no nav entry for course/{page.name}"


def test_every_page_has_a_notebook():
    expected = {_page(n).name for n in NOTEBOOKS} | {"index.md"}
    orphans = sorted(p.name for p in COURSE.glob("*.md") if p.name not in expected)
    assert not orphans, f"pages in docs/course without a notebook (delete them): {orphans}"


@pytest.mark.skipif(_NO_JUPYTEXT is not None, reason=str(_NO_JUPYTEXT))
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_page_holds_the_notebooks_current_cells(notebook):
    page = _page(notebook)
    if not page.is_file():
        pytest.skip(f"no page for {notebook.name} (test_every_notebook_has_a_page_in_the_nav fails)")
    text = page.read_text(encoding="utf-8")
    nb = runner.read_notebook(notebook)
    fix = _RERENDER.format(number=notebook.stem[:2])

    expected = [c.source for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    shown = render.code_cells(text)
    assert len(shown) == len(expected), (
        f"{page.name} shows {len(shown)} code cells, {notebook.name} has {len(expected)}; {fix}")
    for number, (on_page, in_notebook) in enumerate(zip(shown, expected), start=1):
        assert on_page == in_notebook, (
            f"code cell {number} of {page.name} is not the one in {notebook.name}; {fix}\n"
            f"--- page:\n{on_page}\n--- notebook:\n{in_notebook}")
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            assert cell.source in text, (
                f"a Markdown cell of {notebook.name} is not on {page.name} as it is now; {fix}\n"
                f"{cell.source[:300]}")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_page_figures_exist_and_none_is_stale(notebook):
    page = _page(notebook)
    if not page.is_file():
        pytest.skip(f"no page for {notebook.name}")
    targets = _IMAGE_LINK.findall(page.read_text(encoding="utf-8"))
    linked = {(page.parent / target).resolve() for target in targets}
    missing = sorted(str(p.relative_to(ROOT)) for p in linked if not p.is_file())
    assert not missing, f"{page.name} links to figures that do not exist: {missing}"
    files = COURSE / f"{page.stem}_files"
    present = {p.resolve() for p in files.iterdir()} if files.is_dir() else set()
    stale = sorted(str(p.relative_to(ROOT)) for p in present - linked)
    assert not stale, f"figures no page links to (left from an older render; delete them): {stale}"
