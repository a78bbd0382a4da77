"""Pictures of a model and its training: learning curves, attention maps, accuracy by length.

Every function returns a :class:`matplotlib.figure.Figure` and, when ``path`` is given,
also saves it there as a PNG. Figures are built directly from ``matplotlib.figure.Figure``
with the Agg (file) canvas, not through ``pyplot``: nothing is opened on screen, no
global "current figure" is left behind, and the functions work the same in a script, a
test, a web server or a notebook (Jupyter shows a returned Figure as an image).

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
           "plot_accuracy_by_length"]

#: At most this many tick labels along one axis of a heatmap; longer axes show every n-th.
MAX_TICK_LABELS = 60


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


def _save(fig, path) -> None:
    if path is not None:
        path = os.fspath(path)
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        fig.savefig(path, dpi=120, format="png")


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
        path: where to save the PNG (optional).
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
    for step, label in marks or ():
        ax.axvline(step, color="gray", linestyle=":", linewidth=1)
        ax.annotate(str(label), (step, 1.0), xycoords=("data", "axes fraction"), xytext=(2, -2),
                    textcoords="offset points", ha="left", va="top", fontsize="x-small", color="gray")
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
    _save(fig, path)
    return fig


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
    """``grid``: list of rows, each an (H, Tq, Tk) array; one subplot per (row, head)."""
    n_rows, n_heads = len(grid), grid[0].shape[0]
    tq, tk = grid[0].shape[1:]
    query_labels = _check_labels(query_labels, tq, "query")
    key_labels = _check_labels(key_labels, tk, "key")
    # each panel gets room for its labels, within reason
    panel_w = min(12.0, max(2.5, 0.12 * tk + 0.8))
    panel_h = min(10.0, max(2.0, 0.12 * tq + 0.8))
    scale = min(1.0, 24.0 / (panel_w * n_heads), 30.0 / (panel_h * n_rows))
    fig = _new_figure(panel_w * n_heads * scale + 1.2, panel_h * n_rows * scale + 0.8)
    axes = fig.subplots(n_rows, n_heads, squeeze=False)
    vmax = max(float(w.max()) for w in grid) or 1.0
    image = None
    for r, weights in enumerate(grid):
        for h in range(n_heads):
            ax = axes[r, h]
            name = f"head {h + 1}" if row_names[r] is None else f"{row_names[r]}, head {h + 1}"
            image = _heatmap(ax, weights[h], query_labels, key_labels,
                             xlabel=xlabel if r == n_rows - 1 else None,
                             ylabel=ylabel if h == 0 else None, title=name, vmax=vmax)
    fig.colorbar(image, ax=axes, shrink=0.8, label="attention weight")
    if title:
        fig.suptitle(title)
    _save(fig, path)
    return fig


def plot_attention(weights, query_labels=None, key_labels=None, path=None, title=None, *,
                   xlabel="key (source)", ylabel="query (target)"):
    """Heatmap of attention weights: one panel per head.

    Args:
        weights: (Tq, Tk) or (H, Tq, Tk) attention weights (NumPy or CuPy), e.g.
            ``attn.attention_weights[0]`` for the first example of a batch. Row ``i`` is
            how query ``i`` spreads its attention over the keys (it sums to 1).
        query_labels: Tq labels for the rows (the y axis), e.g. the target tokens.
        key_labels: Tk labels for the columns (the x axis), e.g. the source tokens.
        path: where to save the PNG (optional).
        title: the figure title.
        xlabel, ylabel: axis names.

    All panels share one colour scale, so heads can be compared. Returns the Figure.
    """
    w = _as_heads(weights)
    return _heatmap_grid([w], query_labels, key_labels, path, title, [None], xlabel, ylabel)


def plot_attention_layers(weights_per_layer, query_labels=None, key_labels=None, path=None,
                          title=None, *, layer_names=None, xlabel="key (source)",
                          ylabel="query (target)"):
    """A grid of attention heatmaps: one row per layer, one column per head.

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
        path: where to save the PNG (optional).
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
        ax.bar(x + offset, df[column], width, label=label, color=colors[i % len(colors)])
    if "n" in df.columns:
        for xi, n in zip(x, df["n"]):
            ax.text(xi, 1.01, f"n={int(n)}", ha="center", va="bottom", fontsize="x-small", color="gray")
    if train_max_len is not None:
        beyond = [i for i, label in enumerate(df["lengths"]) if _bucket_low(label) > train_max_len]
        if beyond:
            ax.axvspan(min(beyond) - 0.5, max(beyond) + 0.5, color="gray", alpha=0.15, lw=0,
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


def _bucket_low(label) -> float:
    """The lower end of a bucket label like ``"101-150"`` (-inf when it cannot be read)."""
    try:
        return float(str(label).split("-")[0])
    except ValueError:
        return -math.inf
