"""Pictures of a model and its training: learning curves, attention maps, accuracy by length.

(The attention maps are drawn in :mod:`minitransformer.attention_plots`, and every figure is
made and saved by :mod:`minitransformer.figures`; all are offered here.)

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

import numpy as np

from .attention_plots import MAX_TICK_LABELS, PAGE_WIDTH, plot_attention, plot_attention_layers
from .figures import _new_figure, _save, figure_format, save_figure

__all__ = ["plot_learning_curves", "plot_attention", "plot_attention_layers",
           "plot_accuracy_by_length", "save_figure", "figure_format", "MAX_TICK_LABELS", "PAGE_WIDTH"]


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
