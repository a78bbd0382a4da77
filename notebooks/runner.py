"""Run the course notebooks: the one place that knows how.

The notebooks are Jupytext "percent" scripts (``NN_name.py`` in this folder). To run one,
jupytext reads the script as a notebook and nbclient executes it, cell by cell, in a fresh
``python3`` Jupyter kernel, in a working folder of the caller's choice, exactly as a student
would run it. Two callers share this code:

* ``tests/test_notebooks.py`` runs every notebook and fails on any error;
* ``docs/render_notebooks.py`` runs them and writes their pages of the documentation, with
  the outputs.

It is also a command, to run some or all of them and see how long each takes::

    python notebooks/runner.py            # all of them
    python notebooks/runner.py 01 04      # by number (or by name: 04_translating_codons)
    python notebooks/runner.py --solutions 02   # with the exercises' solutions filled in

**Exercises.** A notebook's exercise is a code cell whose first line is ``# EXERCISE: name``
(a stub the student fills in). Its solution is the block that starts with the same line in
``solutions/NN_name.py``, between two ``# %%`` lines. :func:`with_solutions` puts them in;
the tests run every notebook that has exercises that way too.

Needs the packages of the ``[dev]`` extra (jupytext, nbclient, ipykernel):
``pip install -e ".[dev]"``.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

NOTEBOOK_DIR = Path(__file__).resolve().parent
REPO_ROOT = NOTEBOOK_DIR.parent
KERNEL_NAME = "python3"
#: Seconds one cell may run before the run is called a failure.
CELL_TIMEOUT_S = 300
SOLUTIONS_DIR = NOTEBOOK_DIR / "solutions"
#: The first line of an exercise's cell, and of its solution: ``# EXERCISE: name``.
EXERCISE_MARK = "# EXERCISE: "


def notebook_paths(names=None) -> list[Path]:
    """The notebook scripts, in order; ``names`` picks some by number (``"04"``) or by
    name (``"04_translating_codons"``, with or without ``.py``)."""
    paths = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.py"))
    if not names:
        return paths
    chosen = []
    for name in names:
        stem = Path(name).name.removesuffix(".py")
        found = [p for p in paths if p.stem == stem or p.stem[:2] == stem]
        if not found:
            raise ValueError(f"no notebook {name!r}; there are: {', '.join(p.stem for p in paths)}")
        chosen.extend(p for p in found if p not in chosen)
    return chosen


def missing_tools() -> str | None:
    """Why the notebooks cannot be executed here (one sentence), or None if they can."""
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


def kernel_env() -> dict:
    """This process's environment, with the repository on PYTHONPATH so that the kernel
    imports this checkout of minitransformer even when the package is not installed."""
    env = dict(os.environ)
    paths = [str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


class NotebookFailed(RuntimeError):
    """A cell of a notebook raised; the message holds the cell's traceback."""


def read_notebook(path):
    """The notebook (an ``nbformat`` node) that the percent script ``path`` stands for."""
    import jupytext

    return jupytext.read(path)


def _exercise_name(source: str) -> str | None:
    first = source.lstrip("\n").split("\n", 1)[0]
    return first[len(EXERCISE_MARK):].strip() if first.startswith(EXERCISE_MARK) else None


def exercises(nb) -> list[str]:
    """The names of the notebook's exercises (code cells that start ``# EXERCISE: name``), in order."""
    return [name for cell in nb.cells if cell.cell_type == "code"
            for name in [_exercise_name(cell.source)] if name]


def solutions_path(path) -> Path:
    """Where the solutions to the exercises of the notebook ``path`` live."""
    return SOLUTIONS_DIR / Path(path).name


def read_solutions(path) -> dict[str, str]:
    """The solutions in ``path`` (``solutions/NN_name.py``): name -> the block's source, for
    every block between two ``# %%`` lines that starts with ``# EXERCISE: name``."""
    blocks = Path(path).read_text(encoding="utf-8").split("\n# %%\n")
    found = {}
    for block in blocks[1:]:
        name = _exercise_name(block)
        if name:
            found[name] = block.strip("\n")
    return found


def with_solutions(nb, solutions: dict[str, str]):
    """The notebook with each exercise's cell replaced by its solution (a copy). Raises
    ValueError when an exercise has no solution or a solution no exercise."""
    import copy

    names = exercises(nb)
    missing, extra = set(names) - set(solutions), set(solutions) - set(names)
    if missing or extra:
        raise ValueError(f"exercises without a solution: {sorted(missing)}; "
                         f"solutions without an exercise: {sorted(extra)}")
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        name = _exercise_name(cell.source) if cell.cell_type == "code" else None
        if name:
            cell.source = solutions[name]
    return nb


def execute_notebook(path, workdir, *, timeout: int = CELL_TIMEOUT_S, setup: str | None = None,
                     solutions: dict[str, str] | None = None):
    """Run the notebook script ``path`` top to bottom in a fresh kernel, in ``workdir``.

    ``setup``: code run in the kernel before the first cell, and left out of the result
    (the documentation uses it to choose the resolution of the figures).
    ``solutions``: name -> code that replaces the exercise's cell (:func:`with_solutions`).

    Returns ``(notebook with its outputs, seconds)``. Raises :class:`NotebookFailed` when a
    cell raises, with the cell's traceback and the time it took to get there.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = read_notebook(path)
    if solutions is not None:
        nb = with_solutions(nb, solutions)
    if setup:
        nb.cells.insert(0, nbformat.v4.new_code_cell(setup))
    client = NotebookClient(nb, timeout=timeout, kernel_name=KERNEL_NAME,
                            resources={"metadata": {"path": str(workdir)}})
    started = time.perf_counter()
    try:
        client.execute(env=kernel_env())
    except CellExecutionError as err:
        seconds = time.perf_counter() - started
        raise NotebookFailed(f"{Path(path).name} failed after {seconds:.1f} s:\n{err}") from None
    seconds = time.perf_counter() - started
    if setup:
        del nb.cells[0]
    return nb, seconds


def main(argv=None) -> int:
    names = sys.argv[1:] if argv is None else list(argv)
    filled = "--solutions" in names
    names = [n for n in names if n != "--solutions"]
    why = missing_tools()
    if why:
        print(f"cannot run the notebooks: {why}", file=sys.stderr)
        return 2
    try:
        paths = notebook_paths(names)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    failed = 0
    for path in paths:
        with tempfile.TemporaryDirectory() as workdir:
            solved = filled and solutions_path(path).is_file()
            try:
                _, seconds = execute_notebook(path, workdir, solutions=read_solutions(solutions_path(path))
                                              if solved else None)
            except NotebookFailed as err:
                print(err, file=sys.stderr)
                failed += 1
                continue
        print(f"{path.name}{' (solutions filled in)' if solved else ''}: ran in {seconds:.1f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
