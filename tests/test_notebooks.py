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

Some notebooks hold exercises: stubs the student fills in (a code cell that starts with
``# EXERCISE: name``), graded in the notebook by the gradient checker, which prints
``name: correct``, ``name: WRONG`` or ``name: not written yet``. The notebook as shipped
must grade every stub "not written yet"; with the solutions of ``notebooks/solutions/``
filled in, "correct"; and with wrong answers filled in, "WRONG".
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


EXERCISE_NOTEBOOKS = [p for p in NOTEBOOKS if runner.solutions_path(p).is_file()]

#: Plausible wrong answers to the exercises of notebook 02, one per exercise: the grader
#: must call each of them WRONG.
WRONG_ANSWERS = {
    "02_backprop_by_hand": {
        "linear": """# EXERCISE: linear
def linear_backward_by_hand(dy, cache):
    x, W = cache
    x2, dy2 = x.reshape(-1, W.shape[0]), dy.reshape(-1, W.shape[1])
    return dy @ W.T, x2.T @ dy2, dy2.mean(axis=0)          # wrong: db averages instead of summing""",
        "cross_entropy": """# EXERCISE: cross_entropy
def cross_entropy_backward_by_hand(dloss, cache):
    p, q, counted, N = cache
    return dloss * (p - q) * counted[..., None]             # wrong: the mean's 1/N forgotten""",
        "layer_norm": """# EXERCISE: layer_norm
def layer_norm_backward_by_hand(dy, cache):
    xhat, rstd, gamma = cache
    g = dy * gamma
    dx = rstd * (g - g.mean(axis=-1, keepdims=True))        # wrong: the variance term forgotten
    return dx, (dy * xhat).reshape(-1, xhat.shape[-1]).sum(axis=0), dy.reshape(-1, dy.shape[-1]).sum(axis=0)""",
        "attention": """# EXERCISE: attention
def attention_backward_by_hand(dout, cache):
    q, k, v, A, s = cache
    dS = softmax_backward_by_hand(dout @ np.swapaxes(v, -1, -2), A)
    return dS @ k, np.swapaxes(dS, -1, -2) @ q, np.swapaxes(A, -1, -2) @ dout   # wrong: no scale s""",
    },
}


def _printed(nb) -> str:
    """Everything the executed notebook's cells printed."""
    return "\n".join("".join(out.get("text", "")) for cell in nb.cells if cell.cell_type == "code"
                     for out in cell.get("outputs", []) if out.get("output_type") == "stream")


def _grades(nb) -> dict:
    """Exercise name -> what the grader said ("correct", "WRONG", "not written yet" or None)."""
    text = _printed(nb)
    verdicts = {}
    for name in runner.exercises(nb):
        said = [v for v in ("correct", "WRONG", "not written yet") if f"{name}: {v}" in text]
        verdicts[name] = said[0] if len(said) == 1 else (said or None)
    return verdicts


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
        nb, seconds = runner.execute_notebook(path, tmp_path)
    except runner.NotebookFailed as err:
        pytest.fail(str(err), pytrace=False)
    record_property("run_seconds", round(seconds, 1))
    print(f"\n{path.name}: ran in {seconds:.1f} s")
    if runner.exercises(nb):
        grades = _grades(nb)
        assert set(grades.values()) == {"not written yet"}, (
            f"{path.name} as shipped should grade every exercise 'not written yet' (a stub holds "
            f"an answer, or the grader did not run): {grades}")


@pytest.mark.skipif(_NO_JUPYTEXT is not None, reason=str(_NO_JUPYTEXT))
@pytest.mark.parametrize("path", EXERCISE_NOTEBOOKS, ids=[p.stem for p in EXERCISE_NOTEBOOKS])
def test_every_exercise_has_one_solution(path):
    nb = runner.read_notebook(path)
    names = runner.exercises(nb)
    assert names, f"{runner.solutions_path(path)} exists but {path.name} has no exercise"
    assert len(set(names)) == len(names), f"two exercises of {path.name} share a name: {names}"
    solutions = runner.read_solutions(runner.solutions_path(path))
    assert sorted(solutions) == sorted(names), (
        f"the exercises of {path.name} ({names}) and the solutions in "
        f"{runner.solutions_path(path).name} ({sorted(solutions)}) do not match")


def test_solutions_are_read_block_by_block(tmp_path):
    file = tmp_path / "99_x.py"
    file.write_text('"""doc"""\n\n# %%\n# EXERCISE: a\ndef f():\n    return 1\n\n\n'
                    '# %%\nnot_an_exercise = 1\n\n# %%\n# EXERCISE: b\ng = 2\n', encoding="utf-8")
    assert runner.read_solutions(file) == {"a": "# EXERCISE: a\ndef f():\n    return 1", "b": "# EXERCISE: b\ng = 2"}


@pytest.mark.slow
@pytest.mark.skipif(_MISSING is not None, reason=str(_MISSING))
@pytest.mark.parametrize("path", EXERCISE_NOTEBOOKS, ids=[p.stem for p in EXERCISE_NOTEBOOKS])
def test_notebook_with_solutions_grades_every_exercise_correct(path, tmp_path):
    solutions = runner.read_solutions(runner.solutions_path(path))
    try:
        nb, seconds = runner.execute_notebook(path, tmp_path, solutions=solutions)
    except runner.NotebookFailed as err:
        pytest.fail(str(err), pytrace=False)
    grades = _grades(nb)
    assert grades and set(grades.values()) == {"correct"}, f"{path.name} with its solutions: {grades}"
    print(f"\n{path.name} with its solutions: ran in {seconds:.1f} s, {grades}")


@pytest.mark.slow
@pytest.mark.skipif(_MISSING is not None, reason=str(_MISSING))
@pytest.mark.parametrize("path", EXERCISE_NOTEBOOKS, ids=[p.stem for p in EXERCISE_NOTEBOOKS])
def test_grader_fails_wrong_answers(path, tmp_path):
    wrong = WRONG_ANSWERS.get(path.stem)
    assert wrong, f"give the exercises of {path.name} wrong answers in WRONG_ANSWERS"
    try:
        nb, _ = runner.execute_notebook(path, tmp_path, solutions=wrong)
    except runner.NotebookFailed as err:
        pytest.fail(str(err), pytrace=False)
    grades = _grades(nb)
    assert set(grades.values()) == {"WRONG"}, f"{path.name} with wrong answers was graded: {grades}"


# ------------------------------------------------------------------ the ablations notebook
ABLATIONS = NOTEBOOK_DIR / "08_ablations.py"
_RUNS_HEADING = "# %% [markdown]\n# ## 2. Six runs"


def _ablation_checks(tmp_path, changes=None) -> str:
    """What the first part of notebook 08 prints (the changes and their gradient checks, no
    training), with ``changes`` (old -> new text) made to its code first."""
    text = ABLATIONS.read_text(encoding="utf-8")
    head = text[:text.index(_RUNS_HEADING)]
    for old, new in (changes or {}).items():
        assert old in head, f"08_ablations.py no longer holds {old!r}"
        head = head.replace(old, new)
    script = tmp_path / ABLATIONS.name
    script.write_text(head, encoding="utf-8")
    try:
        nb, _ = runner.execute_notebook(script, tmp_path)
    except runner.NotebookFailed as err:
        pytest.fail(str(err), pytrace=False)
    return _printed(nb)


@pytest.mark.slow
@pytest.mark.skipif(_MISSING is not None, reason=str(_MISSING))
def test_every_ablation_passes_the_gradient_checker(tmp_path):
    """The ablations replace pieces of the model by hand-written ones; each is checked."""
    printed = _ablation_checks(tmp_path)
    checked = [line for line in printed.splitlines() if "largest relative error" in line]
    assert len(checked) == 4 and all(line.endswith(": ok") for line in checked), printed
    assert "UnscaledAttention == softmax(q k^T) v by hand: True" in printed


@pytest.mark.slow
@pytest.mark.skipif(_MISSING is not None, reason=str(_MISSING))
def test_a_wrong_ablation_fails_the_gradient_checker(tmp_path):
    printed = _ablation_checks(tmp_path, {
        # the chain rule's factor sqrt(d_k) forgotten on the query weights
        "self.w_in.grad[...] = w_grad + (self.w_in.grad - w_grad) * s": "pass",
        # the skip connection's gradient kept though the skip is gone
        "return self.sublayer.backward(self.dropout.backward(self.norm.backward(dout)))":
            "return Residual.backward(self, dout)"})
    verdicts = {line.split("  ")[0]: line.rsplit(": ", 1)[1] for line in printed.splitlines()
                if "largest relative error" in line}
    assert verdicts == {"no positional encoding": "ok", "no √d_k": "WRONG", "no residual connections": "WRONG",
                        "no layer norm": "ok"}, printed
