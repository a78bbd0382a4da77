"""Attention maps: the weights of one layer's heads as heatmaps, in a grid within page width.

Each function returns a :class:`matplotlib.figure.Figure` and, when ``path`` is given, also
saves it there (:func:`~minitransformer.figures.save_figure`). :mod:`minitransformer.plotting`
offers them beside the other pictures.

>>> w = model.decoder.layers[0].cross_attn.attention_weights[0]   # (H, Tq, Tk) # doctest: +SKIP
>>> fig = plot_attention(w, target_tokens, source_tokens)                      # doctest: +SKIP
"""
from __future__ import annotations

import math

import numpy as np

from .backend import to_numpy
from .figures import _new_figure, _save

__all__ = ["plot_attention", "plot_attention_layers", "MAX_TICK_LABELS", "PAGE_WIDTH"]

#: At most this many tick labels along one axis of a heatmap; longer axes show every n-th.
MAX_TICK_LABELS = 60
#: The widest a grid of attention heatmaps is drawn, in inches (120 dpi: 1200 pixels), so
#: that it stays readable when a page shows it at its own width.
PAGE_WIDTH = 10.0


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
