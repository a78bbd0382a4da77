"""The course notebooks run top to bottom without an error.

The notebooks are stored as Jupytext "percent" scripts (``notebooks/NN_name.py``) so that
their diffs stay readable and no outputs are committed. Each test converts one script to
a notebook with jupytext and executes it with nbclient in a fresh ``python3`` kernel,
inside a temporary directory, exactly as a student would run it. Any cell that raises
fails the test, with the cell's traceback in the message.

These tests are slow (each notebook trains or checks something) and need the optional
packages of the ``[dev]`` extra: ``pip install -e ".[dev]"``. They skip themselves,
saying what is missing, when jupytext, nbclient or a ``python3`` Jupyter kernel is not
available. Each notebook's run time is printed (``pytest -s``) and recorded as a test
property (``--junitxml``).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.py"))
KERNEL_NAME = "python3"
CELL_TIMEOUT_S = 300


def _missing_tools() -> str | None:
    """Why the notebooks cannot be executed here, or None if they can."""
    missing = []
    for module in ("jupytext", "nbformat", "nbclient"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        return (f"{', '.join(missing)} not installed; install the test extras with "
                f"pip install -e \".[dev]\" to run the notebooks")
    try:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    except ImportError:
        return "jupyter_client not installed; pip install ipykernel"
    try:
        KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    except NoSuchKernel:
        return (f"no Jupyter kernel named {KERNEL_NAME!r}; install one with "
                f"pip install ipykernel && python -m ipykernel install --user")
    return None


_MISSING = _missing_tools()
try:
    import jupytext  # noqa: F401
    _NO_JUPYTEXT = None
except ImportError:
    _NO_JUPYTEXT = "jupytext not installed; pip install -e \".[dev]\" to read the notebook scripts"


def _kernel_env() -> dict:
    """The test's environment, with the repository on PYTHONPATH so the kernel imports this
    checkout of minitransformer even when the package is not installed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


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
    import jupytext
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = jupytext.read(path)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name=KERNEL_NAME,
                            resources={"metadata": {"path": str(tmp_path)}})
    started = time.perf_counter()
    try:
        client.execute(env=_kernel_env())
    except CellExecutionError as err:
        pytest.fail(f"{path.name} failed after {time.perf_counter() - started:.1f} s:\n{err}", pytrace=False)
    seconds = time.perf_counter() - started
    record_property("run_seconds", round(seconds, 1))
    print(f"\n{path.name}: ran in {seconds:.1f} s")
