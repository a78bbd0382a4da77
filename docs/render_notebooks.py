"""Render the course notebooks as pages of the documentation, with their outputs.

    python docs/render_notebooks.py              # every notebook
    python docs/render_notebooks.py 04 05        # some, by number or name

The repository keeps only the notebooks' plain-text sources (``notebooks/NN_name.py``,
Jupytext percent scripts), so their diffs stay readable. This script runs each one top to
bottom in a fresh kernel (with ``notebooks/runner.py``, the code the tests use) and writes

* ``docs/course/NN-name.md``: the Markdown cells as they are; each code cell as a fenced
  ``python`` block with the class ``notebook-cell``; what it prints (standard output and
  standard error each in a block of their own; each ``\\r`` progress-bar update overwrites
  the last, as in a terminal; colour codes removed) and its results as ``text`` blocks;
  pandas tables as HTML tables;
* ``docs/course/NN-name_files/cell-KK[-J].png``: the figures of code cell ``KK``, linked
  from the page. The folder is emptied first, so no stale picture stays behind.

Figures are drawn at ``FIGURE_DPI`` dots per inch, to keep the pages light. The pages are
generated files: edit the notebook, then render it again. ``tests/test_rendered_notebooks.py``
checks that every notebook has its page and that the page's code cells are the notebook's
(it does not run anything), so a notebook edited without re-rendering fails the tests.

Rendering runs the notebooks, which takes a few minutes (04 and 05 train models).
"""
from __future__ import annotations

import argparse
import base64
import importlib.util
import re
import shutil
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
REPO_ROOT = DOCS.parent
COURSE = DOCS / "course"
#: Resolution of the figures on the pages (the notebooks themselves use matplotlib's default).
FIGURE_DPI = 90
#: The class that marks a fenced block as a notebook's code cell (the test finds them by it).
CELL_CLASS = "notebook-cell"
#: The class of the blocks that hold a cell's output.
OUTPUT_CLASS = "notebook-output"

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_IMAGE_TYPES = {"image/png": "png", "image/jpeg": "jpg", "image/svg+xml": "svg"}


def load_runner():
    """``notebooks/runner.py``, which knows how to run a notebook."""
    spec = importlib.util.spec_from_file_location("notebook_runner", REPO_ROOT / "notebooks" / "runner.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def page_name(notebook: Path) -> str:
    """``04_translating_codons.py`` -> ``04-translating-codons``."""
    return notebook.stem.replace("_", "-")


def page_path(notebook: Path) -> Path:
    return COURSE / f"{page_name(notebook)}.md"


# --------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------
def fence(body: str, info: str) -> str:
    """A fenced block long enough that no run of backticks in ``body`` closes it."""
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks} {info}\n{body.rstrip(chr(10))}\n{ticks}"


def cell_fence(source: str) -> str:
    """How a code cell appears on a page (the test reads it back with :func:`code_cells`)."""
    return fence(source, f"{{ .python .{CELL_CLASS} }}")


def code_cells(page_text: str) -> list[str]:
    """The sources of the code cells on a rendered page, in order."""
    pattern = re.compile(r"^(`{3,}) \{ \.python \." + CELL_CLASS + r" \}\n(.*?)^\1$", re.M | re.S)
    return [m.group(2).rstrip("\n") for m in pattern.finditer(page_text)]


def terminal_text(text: str) -> str:
    """What a terminal would show: each ``\\r`` returns to the start of the line, so only
    the last state of a progress bar stays; colour codes are dropped."""
    text = _ANSI.sub("", text)
    lines = []
    for line in text.split("\n"):
        parts = line.split("\r")
        shown = ""
        for part in parts:  # a later, shorter part overwrites only its own length
            shown = part + shown[len(part):]
        lines.append(shown.rstrip())
    return "\n".join(lines)


def _join(value) -> str:
    return "".join(value) if isinstance(value, list) else value


def dataframe_html(markup: str) -> str:
    """A pandas table's HTML, without its inline style and classes, so that the theme
    styles it like every other table of the site, and without blank lines, so that
    Markdown keeps it as one block of HTML."""
    markup = re.sub(r"<style scoped>.*?</style>", "", markup, flags=re.S)
    markup = re.sub(r'\s(?:class="dataframe"|border="1")', "", markup)
    return "\n".join(line for line in markup.splitlines() if line.strip())


# --------------------------------------------------------------------------------------
# One notebook
# --------------------------------------------------------------------------------------
def render_outputs(outputs, cell_number: int, files_dir: Path) -> list[str]:
    """Markdown blocks for a code cell's outputs; figures are written to ``files_dir``."""
    blocks, images = [], 0
    streams = {}    # name -> text, in the order the streams first wrote

    def flush_stream():
        # each stream in a block of its own, as Jupyter shows them: a progress bar on
        # standard error does not cut into the lines printed on standard output
        for text in streams.values():
            text = terminal_text(text).strip("\n")
            if text.strip():
                blocks.append(fence(text, f"{{ .text .{OUTPUT_CLASS} }}"))
        streams.clear()

    for output in outputs:
        kind = output["output_type"]
        if kind == "stream":
            streams[output["name"]] = streams.get(output["name"], "") + _join(output["text"])
            continue
        flush_stream()
        if kind == "error":
            traceback = terminal_text("\n".join(output.get("traceback", [])))
            blocks.append(fence(traceback or f"{output['ename']}: {output['evalue']}",
                                f"{{ .text .{OUTPUT_CLASS} }}"))
            continue
        data = output.get("data", {})
        image_type = next((t for t in _IMAGE_TYPES if t in data), None)
        if image_type:
            images += 1
            name = f"cell-{cell_number:02d}" + (f"-{images}" if images > 1 else "")
            file = files_dir / f"{name}.{_IMAGE_TYPES[image_type]}"
            files_dir.mkdir(parents=True, exist_ok=True)
            content = _join(data[image_type])
            if image_type == "image/svg+xml":
                file.write_text(content, encoding="utf-8")
            else:
                file.write_bytes(base64.b64decode(content))
            blocks.append(f"![figure drawn by code cell {cell_number}]({files_dir.name}/{file.name})")
        elif "text/html" in data and 'class="dataframe"' in _join(data["text/html"]):
            blocks.append(f'<div class="{OUTPUT_CLASS}">\n{dataframe_html(_join(data["text/html"]))}\n</div>')
        elif "text/markdown" in data:
            blocks.append(_join(data["text/markdown"]))
        elif "text/plain" in data:
            blocks.append(fence(terminal_text(_join(data["text/plain"])), f"{{ .text .{OUTPUT_CLASS} }}"))
    flush_stream()
    return blocks


def render_page(notebook: Path, nb, seconds: float) -> str:
    """The Markdown of the page for ``notebook`` (its figures written beside the page)."""
    name = page_name(notebook)
    files_dir = COURSE / f"{name}_files"
    if files_dir.exists():
        shutil.rmtree(files_dir)
    relative = notebook.relative_to(REPO_ROOT).as_posix()
    parts = [f"<!-- Generated by docs/render_notebooks.py from {relative}: do not edit this page.\n"
             f"     Edit the notebook, then run: python docs/render_notebooks.py {notebook.stem[:2]} -->"]
    code_number = 0
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            parts.append(cell.source)
            if index == 0:
                parts.append(
                    f'!!! note "A notebook, with its outputs"\n'
                    f"    This page is the notebook `{relative}`, run top to bottom\n"
                    f"    ({seconds:.0f} s on the machine that rendered it). To open it as a notebook\n"
                    f"    (Jupyter, VS Code, or uploaded to a hosted service such as Colab), convert it:\n"
                    f"    `jupytext --to ipynb {relative}`; [the course](index.md#running-them-on-your-machine)\n"
                    f"    says more.")
        elif cell.cell_type == "code":
            code_number += 1
            if not cell.source.strip():
                continue
            parts.append(cell_fence(cell.source))
            parts.extend(render_outputs(cell.get("outputs", []), code_number, files_dir))
    return "\n\n".join(parts) + "\n"


def render(notebook: Path, runner) -> Path:
    """Run ``notebook`` and write its page; returns the page's path."""
    setup = (f"%config InlineBackend.print_figure_kwargs = "
             f"{{'bbox_inches': 'tight', 'dpi': {FIGURE_DPI}}}")
    with tempfile.TemporaryDirectory() as workdir:
        nb, seconds = runner.execute_notebook(notebook, workdir, setup=setup)
    COURSE.mkdir(exist_ok=True)
    page = page_path(notebook)
    page.write_text(render_page(notebook, nb, seconds), encoding="utf-8")
    return page


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="notebooks to render, by number (04) or name; default: all")
    args = parser.parse_args(argv)
    runner = load_runner()
    why = runner.missing_tools()
    if why:
        print(f"cannot run the notebooks: {why}", file=sys.stderr)
        return 2
    try:
        notebooks = runner.notebook_paths(args.names)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    for notebook in notebooks:
        print(f"{notebook.name} ...", end=" ", flush=True)
        try:
            page = render(notebook, runner)
        except runner.NotebookFailed as err:
            print(f"failed\n{err}", file=sys.stderr)
            return 1
        files = COURSE / f"{page_name(notebook)}_files"
        size = sum(f.stat().st_size for f in files.iterdir()) if files.is_dir() else 0
        print(f"{page.relative_to(REPO_ROOT)} ({page.stat().st_size / 1024:.0f} kB, "
              f"figures {size / 1024:.0f} kB)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
