"""The course notebooks run top to bottom without an error.

The notebooks are stored as Jupytext "percent" scripts (``notebooks/NN_name.py``) so that
their diffs stay readable and no outputs are committed. Each test converts one script to
a notebook with jupytext and executes it with nbclient in a fresh ``python3`` kernel,
inside a temporary directory, exactly as a student would run it; the code that does it is
``notebooks/runner.py``, shared with ``docs/render_notebooks.py``. Any cell that raises
fails the test, with the cell's traceback in the message.

These tests are slow (each notebook trains or checks something) and need the optional
packages of the ``[dev]`` extra: ``pip install -e ".[dev]"``. They skip themselves,
saying what is missing, when jupytext, nbclient or a ``python3`` Jupyter kernel is not
available. Each notebook's run time is printed (``pytest -s``) and recorded as a test
property (``--junitxml``).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def _load_runner():
    """notebooks/runner.py, the one place that knows how to run a notebook (the documentation
    renders the notebooks with it too)."""
    spec = importlib.util.spec_from_file_location("notebook_runner", REPO_ROOT / "notebooks" / "runner.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


runner = _load_runner()
NOTEBOOK_DIR = runner.NOTEBOOK_DIR
NOTEBOOKS = runner.notebook_paths()
KERNEL_NAME = runner.KERNEL_NAME

_MISSING = runner.missing_tools()
try:
    import jupytext  # noqa: F401
    _NO_JUPYTEXT = None
except ImportError:
    _NO_JUPYTEXT = "jupytext not installed; pip install -e \".[dev]\" to read the notebook scripts"


def test_notebooks_are_present():
    names = [p.name for p in NOTEBOOKS]
    assert names, f"no notebooks found in {NOTEBOOK_DIR}"
    numbers = [n[:2] for n in names]
    assert len(set(numbers)) == len(numbers), f"two notebooks share a number: {names}"


@pytest.mark.skipif(_NO_JUPYTEXT is not None, reason=str(_NO_JUPYTEXT))
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_a_percent_script(path):
    """Each script reads as a notebook with Markdown and code cells and a python3 kernel."""
    import jupytext

    text = path.read_text(encoding="utf-8")
    assert text.startswith("# ---\n# jupyter:"), f"{path.name} lacks the jupytext header"
    assert "format_name: percent" in text, f"{path.name} is not in the jupytext percent format"
    nb = jupytext.read(path)
    kinds = {cell.cell_type for cell in nb.cells}
    assert {"markdown", "code"} <= kinds, f"{path.name} should hold both Markdown and code cells"
    assert nb.metadata.get("kernelspec", {}).get("name") == KERNEL_NAME
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), \
        f"{path.name} should open with a Markdown title"


@pytest.mark.slow
@pytest.mark.skipif(_MISSING is not None, reason=str(_MISSING))
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, record_property):
    try:
        _, seconds = runner.execute_notebook(path, tmp_path)
    except runner.NotebookFailed as err:
        pytest.fail(str(err), pytrace=False)
    record_property("run_seconds", round(seconds, 1))
    print(f"\n{path.name}: ran in {seconds:.1f} s")
