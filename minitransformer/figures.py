"""Figures without pyplot, and saving them: the two things every picture of the library needs.

A figure is built directly from ``matplotlib.figure.Figure`` with the Agg (file) canvas, not
through ``pyplot``: nothing is opened on screen, no global "current figure" is left behind,
and the same code works in a script, a test, a web server or a notebook. A figure is saved
in the format its file's extension names, atomically (:func:`save_figure`). matplotlib is
imported inside the functions, so ``import minitransformer`` works where it is missing.
"""
from __future__ import annotations

import os

__all__ = ["save_figure", "figure_format"]


def _new_figure(width: float, height: float):
    """A Figure attached to the Agg canvas (renders to files and PNG bytes, never a window)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_format(path) -> str:
    """The picture format that ``path``'s extension names (``"png"``, ``"svg"``, ``"pdf"``...),
    refused in one line when matplotlib cannot write it."""
    from matplotlib.backend_bases import FigureCanvasBase

    formats = FigureCanvasBase.get_supported_filetypes()
    suffix = os.path.splitext(os.fspath(path))[1].lower().lstrip(".")
    if suffix not in formats:
        said = f"the extension .{suffix}" if suffix else "no extension"
        raise ValueError(f"{os.fspath(path)}: {said} names no picture format matplotlib can write; "
                         f"end the name with one of {', '.join('.' + f for f in sorted(formats))}")
    return suffix


def save_figure(fig, path, dpi: int = 120):
    """Write ``fig`` to ``path`` in the format its extension names (``.png``, ``.svg``,
    ``.pdf``...; :func:`figure_format`), atomically (:func:`~minitransformer.files.atomic_write`:
    a reader never sees half a picture); missing folders are created. Returns the path."""
    from .files import atomic_write

    fmt = figure_format(path)
    return atomic_write(path, lambda f: fig.savefig(f, format=fmt, dpi=dpi))


def _save(fig, path) -> None:
    if path is not None:
        save_figure(fig, path)
