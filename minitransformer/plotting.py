"""Pictures of a model and its training: learning curves, attention maps, accuracy by length.

Every function returns a :class:`matplotlib.figure.Figure` and, when ``path`` is given,
also saves it there (:func:`save_figure`: in the format the extension names, ``.png``,
``.svg``, ``.pdf``..., written atomically). Figures are built directly from
``matplotlib.figure.Figure`` with the Agg (file) canvas, not through ``pyplot``: nothing is
opened on screen, no global "current figure" is left behind, and the functions work the
same in a script, a test, a web server or a notebook (Jupyter shows a returned Figure).

matplotlib is imported inside the functions, so ``import minitransformer`` stays fast and
works where matplotlib is missing; only drawing needs it.

>>> fig = plot_learning_curves(trainer.history, "curve.png")                  # doctest: +SKIP
>>> w = model.decoder.layers[0].cross_attn.attention_weights[0]   # (H, Tq, Tk) # doctest: +SKIP
>>> fig = plot_attention(w, target_tokens, source_tokens)                      # doctest: +SKIP
"""
from __future__ import annotations

import math
import os

import numpy as np

from .backend import to_numpy

__all__ = ["plot_learning_curves", "plot_attention", "plot_attention_layers",
           "plot_accuracy_by_length", "save_figure", "figure_format"]

#: At most this many tick labels along one axis of a heatmap; longer axes show every n-th.
MAX_TICK_LABELS = 60
#: The widest a grid of attention heatmaps is drawn, in inches (120 dpi: 1200 pixels), so
#: that it stays readable when a page shows it at its own width.
PAGE_WIDTH = 10.0


# --------------------------------------------------------------------------------------
# Figures without pyplot
# --------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------
# Learning curves
# --------------------------------------------------------------------------------------
def plot_learning_curves(history, path=None, ax=None, title=None, *, eval_columns=None,
                         log_loss: bool = True, marks=None):
    """Training loss against step, with evaluation scores on a second axis.

    Args:
        history: a DataFrame like :attr:`Trainer.history`: a ``step`` column, a ``loss``
            column (rows without a loss, such as evaluation rows, are skipped), and
            optionally evaluation columns ``eval_*``.
        path: where to save it (optional; its extension names the format).
        ax: draw into these Axes instead of a new figure (the second axis is added to it).
        title: the figure title.
        eval_columns: which columns to plot on the right axis. By default every ``eval_*``
            column whose values are fractions between 0 and 1 (``eval_exact_match``, say);
            other evaluation numbers, like a curriculum length, would not share that axis.
        log_loss: a logarithmic loss axis (the default, when every loss is positive): a
            loss falling from 3 to 0.01 is then readable over the whole run.
        marks: ``[(step, label), ...]``: dotted vertical lines at these steps, labelled at
            the top (e.g. where a curriculum moved on to longer sequences).

    Returns the Figure.
    """
    import pandas as pd

    if not isinstance(history, pd.DataFrame):
        history = pd.DataFrame(history)
    if "step" not in history.columns:
        raise ValueError("the history has no 'step' column (columns: "
                         f"{', '.join(map(str, history.columns)) or 'none'})")
    if ax is None:
        fig = _new_figure(8, 4.5)
        ax = fig.add_subplot()
    else:
        fig = ax.figure

    lines = []
    if "loss" in history.columns:
        train = history[["step", "loss"]].dropna()
    else:
        train = history.iloc[0:0]
    if len(train):
        lines += ax.plot(train["step"], train["loss"], color="tab:blue", label="training loss")
        if log_loss and (train["loss"] > 0).all():
            _log_axis(ax, float(train["loss"].min()), float(train["loss"].max()))
    else:
        ax.text(0.5, 0.5, "no training loss logged yet", transform=ax.transAxes,
                ha="center", va="center", color="gray")
    mark_labels = _mark_steps(ax, marks or ())
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (per target token)")
    ax.grid(True, alpha=0.3)

    if eval_columns is None:
        eval_columns = [c for c in history.columns if str(c).startswith("eval_")
                        and _is_fraction_column(history[c])]
    else:
        missing = [c for c in eval_columns if c not in history.columns]
        if missing:
            raise ValueError(f"the history has no column {', '.join(map(repr, missing))}")
    if eval_columns:
        right = ax.twinx()
        colors = ["tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
        for i, column in enumerate(eval_columns):
            rows = history[["step", column]].dropna()
            label = str(column)[len("eval_"):] if str(column).startswith("eval_") else str(column)
            lines += right.plot(rows["step"], rows[column], "o-", markersize=3,
                                color=colors[i % len(colors)], label=label.replace("_", " "))
        right.set_ylim(-0.02, 1.02)
        right.set_ylabel("evaluation score")
        right.yaxis.set_major_formatter(_percent_formatter())
    if lines:  # above the plot, where it hides no curve
        ax.legend(lines, [line.get_label() for line in lines], loc="lower center",
                  bbox_to_anchor=(0.5, 1.0), ncol=len(lines), fontsize="small", frameon=False)
    if title:
        ax.set_title(title, pad=22 if lines else 6)
    _stagger(mark_labels)  # last: it needs the final layout
    _save(fig, path)
    return fig


def _mark_steps(ax, marks) -> list:
    """Dotted vertical lines at the marks' steps, each labelled at the top, right of its line;
    returns the labels, left to right."""
    texts = []
    for step, label in sorted(marks, key=lambda mark: mark[0]):
        ax.axvline(step, color="gray", linestyle=":", linewidth=1)
        texts.append(ax.annotate(str(label), (step, 1.0), xycoords=("data", "axes fraction"),
                                 xytext=(2, -2), textcoords="offset points", ha="left", va="top",
                                 fontsize="x-small", color="gray"))
    return texts


def _stagger(texts) -> None:
    """Move labels (left to right, hanging from the top) down a line where they would cover one
    another: marks close together would print "up to 20" over "up to 40". Each label goes on
    the highest line where it clears the labels already there; that needs their rendered
    widths, so the figure is laid out first (call this when the rest is drawn)."""
    if len(texts) < 2:
        return
    fig = texts[0].figure
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    boxes = [text.get_window_extent(renderer) for text in texts]
    gap = 3 * fig.dpi / 72                                       # 3 points apart on a line
    line = max(box.height for box in boxes) * 72 / fig.dpi + 1  # points from line to line
    ends = []                                                    # where each line's last label ends
    for text, box in zip(texts, boxes):
        level = next((i for i, end in enumerate(ends) if box.x0 >= end + gap), len(ends))
        ends[level:level + 1] = [box.x1]
        text.set_position((2, -2 - level * line))


def _log_axis(ax, lo: float, hi: float) -> None:
    """A logarithmic y axis labelled 0.01, 0.1, 1 (not 10^-2), and 2, 3, 5 within a decade
    when the values span less than one."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    if hi < 10 * lo:
        def minor(v, _):
            leading = f"{v:.0e}"[0]
            return f"{v:g}" if leading in "235" else ""
        ax.yaxis.set_minor_formatter(FuncFormatter(minor))
    else:
        ax.yaxis.set_minor_formatter(NullFormatter())


def _is_fraction_column(column) -> bool:
    import pandas as pd

    values = pd.to_numeric(column, errors="coerce").dropna()
    return len(values) > 0 and bool(((values >= 0) & (values <= 1)).all())


def _percent_formatter():
    from matplotlib.ticker import PercentFormatter
    return PercentFormatter(xmax=1.0, decimals=0)


# --------------------------------------------------------------------------------------
# Attention heatmaps
# --------------------------------------------------------------------------------------
def _as_heads(weights) -> np.ndarray:
    """Weights as a host array of shape (H, Tq, Tk)."""
    w = np.asarray(to_numpy(weights), dtype=np.float64)
    if w.ndim == 2:
        w = w[None]
    if w.ndim != 3:
        raise ValueError(f"attention weights must have shape (Tq, Tk) or (heads, Tq, Tk), got "
                         f"{w.shape} (for a batch, pick one example: weights[0])")
    return w


def _check_labels(labels, size, what):
    if labels is None:
        return [str(i + 1) for i in range(size)]
    labels = [str(label) for label in labels]
    if len(labels) != size:
        raise ValueError(f"{len(labels)} {what} labels for {size} {what} positions")
    return labels


def _ticks(labels):
    """Tick positions and labels: all of them, or every n-th when there are many."""
    n = len(labels)
    every = max(1, math.ceil(n / MAX_TICK_LABELS))
    positions = list(range(0, n, every))
    if every == 1:
        return positions, labels
    return positions, [f"{labels[i]}{i + 1}" for i in positions]  # number them when thinned


def _heatmap(ax, w, query_labels, key_labels, *, xlabel, ylabel, title, vmax):
    image = ax.imshow(w, aspect="auto", interpolation="nearest", cmap="viridis", vmin=0.0, vmax=vmax)
    xs, xl = _ticks(key_labels)
    ys, yl = _ticks(query_labels)
    small = max(4.0, min(8.0, 400.0 / max(len(key_labels), 1)))
    ax.set_xticks(xs, xl, fontsize=small, rotation=0 if len(xs) < 40 else 90, fontfamily="monospace")
    ax.set_yticks(ys, yl, fontsize=max(4.0, min(8.0, 400.0 / max(len(query_labels), 1))),
                  fontfamily="monospace")
    ax.tick_params(length=0)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize="medium")
    return image


def _heatmap_grid(grid, query_labels, key_labels, path, title, row_names, xlabel, ylabel):
    """``grid``: list of layers, each an (H, Tq, Tk) array; one panel per (layer, head).

    A layer's heads fill as many rows as they need to keep the figure within
    :data:`PAGE_WIDTH` (four heads of a long sequence: a 2 x 2 block, not a strip too wide
    to read); the colour bar, shared by all panels, stands to their right.
    """
    n_layers, n_heads = len(grid), grid[0].shape[0]
    tq, tk = grid[0].shape[1:]
    query_labels = _check_labels(query_labels, tq, "query")
    key_labels = _check_labels(key_labels, tk, "key")
    room = PAGE_WIDTH - 1.4                            # the colour bar and the row labels take the rest
    panel_w = min(room, max(2.2, 0.075 * tk + 0.6))    # a column per token (5.4 points), within reason
    panel_h = min(8.0, max(1.6, 0.11 * tq + 0.8))
    per_row = min(n_heads, max(1, int(room // panel_w)))
    rows_per_layer = math.ceil(n_heads / per_row)
    per_row = math.ceil(n_heads / rows_per_layer)      # balanced: 2 x 2 rather than 3 + 1
    n_rows = n_layers * rows_per_layer
    fig = _new_figure(min(PAGE_WIDTH, per_row * panel_w + 1.4),
                      min(40.0, n_rows * panel_h + (0.8 if title else 0.4)))
    axes = fig.subplots(n_rows, per_row, squeeze=False)
    vmax = max(float(w.max()) for w in grid) or 1.0
    image, used = None, []
    for layer, weights in enumerate(grid):
        for h in range(n_heads):
            row, col = layer * rows_per_layer + h // per_row, h % per_row
            ax = axes[row, col]
            name = f"head {h + 1}" if row_names[layer] is None else f"{row_names[layer]}, head {h + 1}"
            lowest = layer == n_layers - 1 and h + per_row >= n_heads   # nothing below it
            image = _heatmap(ax, weights[h], query_labels, key_labels,
                             xlabel=xlabel if lowest else None,
                             ylabel=ylabel if col == 0 else None, title=name, vmax=vmax)
            used.append(ax)
    for ax in axes.flat:
        if ax not in used:
            ax.remove()   # the empty places of a last row
    fig.colorbar(image, ax=used, shrink=min(0.9, 0.5 + 0.1 * n_rows), aspect=25, pad=0.02,
                 label="attention weight")
    if title:
        fig.suptitle(title)
    _save(fig, path)
    return fig


def plot_attention(weights, query_labels=None, key_labels=None, path=None, title=None, *,
                   xlabel="key (source)", ylabel="query (target)"):
    """Heatmap of attention weights: one panel per head, the heads in a grid that fits
    :data:`PAGE_WIDTH` (four heads of a long sequence: two rows of two), the colour bar beside.

    Args:
        weights: (Tq, Tk) or (H, Tq, Tk) attention weights (NumPy or CuPy), e.g.
            ``attn.attention_weights[0]`` for the first example of a batch. Row ``i`` is
            how query ``i`` spreads its attention over the keys (it sums to 1).
        query_labels: Tq labels for the rows (the y axis), e.g. the target tokens.
        key_labels: Tk labels for the columns (the x axis), e.g. the source tokens.
        path: where to save it (optional; its extension names the format).
        title: the figure title.
        xlabel, ylabel: axis names.

    All panels share one colour scale, so heads can be compared. Returns the Figure.
    """
    w = _as_heads(weights)
    return _heatmap_grid([w], query_labels, key_labels, path, title, [None], xlabel, ylabel)


def plot_attention_layers(weights_per_layer, query_labels=None, key_labels=None, path=None,
                          title=None, *, layer_names=None, xlabel="key (source)",
                          ylabel="query (target)"):
    """A grid of attention heatmaps: one row per layer, one column per head (a layer's heads
    wrap onto more rows where one row would be wider than :data:`PAGE_WIDTH`).

    Args:
        weights_per_layer: a list of (H, Tq, Tk) arrays (or (Tq, Tk) for one head), one per
            layer, all of the same shape.
        query_labels, key_labels, path, title, xlabel, ylabel: as in :func:`plot_attention`.
        layer_names: a name per row; by default "layer 1", "layer 2", ...

    Returns the Figure.
    """
    grid = [_as_heads(w) for w in weights_per_layer]
    if not grid:
        raise ValueError("no attention weights to plot (an empty list of layers)")
    shapes = {w.shape for w in grid}
    if len(shapes) != 1:
        raise ValueError(f"every layer's weights must have the same shape, got {sorted(shapes)}")
    if layer_names is None:
        layer_names = [f"layer {i + 1}" for i in range(len(grid))]
    elif len(layer_names) != len(grid):
        raise ValueError(f"{len(layer_names)} layer names for {len(grid)} layers")
    return _heatmap_grid(grid, query_labels, key_labels, path, title, list(layer_names), xlabel, ylabel)


# --------------------------------------------------------------------------------------
# Accuracy by length
# --------------------------------------------------------------------------------------
def plot_accuracy_by_length(df, path=None, title=None, *, train_max_len: int | None = None,
                            scores: dict | None = None, xlabel: str = "length"):
    """Bars of accuracy scores for each length bucket, one bar per score.

    Args:
        df: a DataFrame with a column ``lengths`` (bucket labels such as ``"11-25"``), the
            score columns (fractions 0..1), and optionally ``n`` (examples per bucket,
            written above the bars).
        path: where to save it (optional; its extension names the format).
        title: the figure title.
        train_max_len: the longest sequence seen in training: buckets beyond it are shaded,
            since there the model is asked to generalise to lengths it never saw.
        scores: ``{column: legend label}`` of the bars, in order; by default every column
            but ``lengths`` and ``n``, labelled by its name (``exact_match`` -> "exact match").
        xlabel: the name of the length axis (the unit of the lengths, say).

    Returns the Figure.
    """
    import pandas as pd

    df = pd.DataFrame(df)
    if scores is None:
        scores = {c: str(c).replace("_", " ") for c in df.columns if c not in ("lengths", "n")}
    missing = [c for c in ("lengths", *scores) if c not in df.columns]
    if missing:
        raise ValueError(f"accuracy table has no column {', '.join(map(repr, missing))} "
                         f"(columns: {', '.join(map(str, df.columns)) or 'none'})")
    if not scores:
        raise ValueError("accuracy table has no score column besides 'lengths' and 'n'")
    fig = _new_figure(max(5.0, 0.45 * len(scores) * len(df) + 2.5), 4.0)
    ax = fig.add_subplot()
    x = np.arange(len(df))
    width = 0.76 / len(scores)
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    for i, (column, label) in enumerate(scores.items()):
        offset = (i - (len(scores) - 1) / 2) * width
        color = colors[i % len(colors)]
        values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=float)
        ax.bar(x + offset, values, width, label=label, color=color)
        _mark_zero_bars(ax, x + offset, values, width, color)
    if "n" in df.columns:
        for xi, n in zip(x, df["n"]):
            ax.text(xi, 1.01, f"n={int(n)}", ha="center", va="bottom", fontsize="x-small", color="gray")
    if train_max_len is not None:
        beyond = [i for i, label in enumerate(df["lengths"]) if _bucket_low(label) > train_max_len]
        if beyond:
            ax.axvspan(min(beyond) - 0.5, max(beyond) + 0.5, color="gray", alpha=0.15, lw=0, zorder=0,
                       label=f"longer than in training (> {train_max_len})")
    ax.set_xticks(x, [str(label) for label in df["lengths"]])
    ax.set_xlim(-0.6, len(df) - 0.4)
    ax.set_ylim(0, 1.1)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.yaxis.set_major_formatter(_percent_formatter())
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy")
    ax.grid(True, axis="y", alpha=0.3)
    # above the plot, where it never hides a bar
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(scores) + 1, fontsize="small",
              frameon=False)
    if title:
        fig.suptitle(title)
    _save(fig, path)
    return fig


def _mark_zero_bars(ax, xs, values, width, color) -> None:
    """A bar of (nearly) nothing would not show, and a missing bar reads as a missing
    measurement: draw it as a thick line on the axis, labelled with its value."""
    for x, value in zip(xs, values):
        if np.isfinite(value) and value < 0.005:
            ax.hlines(0, x - width / 2, x + width / 2, colors=color, linewidth=3, clip_on=False)
            ax.text(x, 0.01, f"{value:.0%}", ha="center", va="bottom", fontsize="x-small", color=color)


def _bucket_low(label) -> float:
    """The lower end of a bucket label like ``"101-150"`` (-inf when it cannot be read)."""
    try:
        return float(str(label).split("-")[0])
    except ValueError:
        return -math.inf
