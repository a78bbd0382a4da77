"""Tests for minitransformer.plotting: every figure builds, saves a PNG, and checks its input."""
import sys

import numpy as np
import pandas as pd
import pytest

from minitransformer import plotting
from minitransformer.plotting import (plot_accuracy_by_length, plot_attention, plot_attention_layers,
                                      plot_learning_curves)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == PNG_MAGIC


def _history(with_eval=True):
    rows = [{"step": s, "loss": 3.0 / s, "lr": 1e-3, "grad_norm": 1.0, "tokens_per_s": 1000.0,
             "train_seconds": 0.1 * s} for s in range(10, 101, 10)]
    if with_eval:
        rows += [{"step": s, "train_seconds": 0.1 * s, "eval_exact_match": s / 100,
                  "eval_residue_accuracy": 0.5 + s / 200, "eval_max_len": 10 * (1 + s // 50)}
                 for s in (50, 100)]
    return pd.DataFrame(rows)


# -------------------------------------------------------------------- learning curves
def test_learning_curves_with_eval_axis(tmp_path):
    path = tmp_path / "curve.png"
    fig = plot_learning_curves(_history(), path, title="a run")
    assert _is_png(path)
    loss_ax, eval_ax = fig.axes
    assert loss_ax.get_yscale() == "log"
    labels = [line.get_label() for line in eval_ax.get_lines()]
    # fractions share the right axis; the curriculum length (not a fraction) does not
    assert labels == ["exact match", "residue accuracy"]
    assert eval_ax.get_ylim()[1] == pytest.approx(1.02)


def test_learning_curves_without_eval_and_without_loss(tmp_path):
    fig = plot_learning_curves(_history(with_eval=False))
    assert len(fig.axes) == 1
    only_eval = _history().query("loss != loss")  # evaluation rows only: no loss logged yet
    fig = plot_learning_curves(only_eval.drop(columns=["loss"]), tmp_path / "c.png")
    assert any("no training loss" in t.get_text() for t in fig.axes[0].texts)
    fig = plot_learning_curves(pd.DataFrame(columns=["step", "loss"]))  # an empty history
    assert fig.axes


def test_learning_curves_into_given_axes_and_bad_input():
    from matplotlib.figure import Figure
    fig = Figure()
    ax = fig.add_subplot()
    assert plot_learning_curves(_history(), ax=ax, log_loss=False, marks=[(50, "up to 20")]) is fig
    assert ax.get_yscale() == "linear"
    assert [t.get_text() for t in ax.texts] == ["up to 20"]
    with pytest.raises(ValueError, match="step"):
        plot_learning_curves(pd.DataFrame({"loss": [1.0]}))
    with pytest.raises(ValueError, match="eval_nothing"):
        plot_learning_curves(_history(), eval_columns=["eval_nothing"])


def _overlapping(boxes):
    return [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:] if a.overlaps(b)]


@pytest.mark.parametrize("steps", [(700, 1100, 1400, 2200), (100, 101, 102), (10, 5000, 5001, 9000)])
def test_curriculum_labels_never_cover_one_another(tmp_path, steps):
    history = pd.DataFrame({"step": np.arange(1, 9001, 10), "loss": np.linspace(3.0, 0.5, 900)})
    marks = [(step, f"up to {20 * 2 ** i}") for i, step in enumerate(steps)]
    fig = plot_learning_curves(history, tmp_path / "curve.png", title="a run", marks=marks)
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)   # laid out as saved
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    assert [t.get_text() for t in ax.texts] == [label for _, label in marks]
    assert not _overlapping(boxes)
    frame = ax.get_window_extent(renderer)
    assert all(frame.x0 <= b.x0 and b.y1 <= frame.y1 + 1 for b in boxes)  # inside the plot
    assert len({round(b.y0) for b in boxes}) > 1   # (close marks do need a second line)


def test_marks_far_apart_stay_on_one_line():
    history = pd.DataFrame({"step": np.arange(1, 9001, 10), "loss": np.linspace(3.0, 0.5, 900)})
    fig = plot_learning_curves(history, marks=[(1000, "up to 20"), (4000, "up to 40"), (7000, "up to 80")])
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    assert len({round(t.get_window_extent(renderer).y0) for t in fig.axes[0].texts}) == 1


# -------------------------------------------------------------------- saving
@pytest.mark.parametrize("name, magic", [("f.png", PNG_MAGIC), ("f.svg", b"<?xml"), ("f.PDF", b"%PDF")])
def test_a_figure_is_saved_in_the_format_its_extension_names(tmp_path, name, magic):
    path = tmp_path / "sub" / name
    plot_attention(_weights(1, 3, 4), path=path)
    assert path.read_bytes().startswith(magic)
    assert [p.name for p in path.parent.iterdir()] == [name]   # no partial file left behind


def test_an_unknown_extension_is_refused_in_one_line(tmp_path):
    with pytest.raises(ValueError, match=r"\.txt names no picture format.*\.png") as caught:
        plot_learning_curves(_history(), tmp_path / "curve.txt")
    assert "\n" not in str(caught.value)
    with pytest.raises(ValueError, match="no extension"):
        plotting.save_figure(plot_attention(_weights(1, 3, 4)), tmp_path / "curve")
    assert not list(tmp_path.iterdir())
    assert plotting.figure_format("a/b.SVG") == "svg"


def test_the_codon_layer_saves_through_the_library():
    import inspect
    from minitransformer.codon import evaluation, report, runs
    for module in (report, runs, evaluation):
        assert "savefig" not in inspect.getsource(module), module.__name__


# -------------------------------------------------------------------- attention
def _weights(h, tq, tk, seed=0):
    w = np.random.default_rng(seed).random((h, tq, tk))
    return w / w.sum(-1, keepdims=True)


def test_attention_one_panel_per_head_with_labels(tmp_path):
    rna, protein = list("AUGGCCUAA"), ["M", "A", "*", "<eos>"]
    path = tmp_path / "attn.png"
    fig = plot_attention(_weights(3, 4, 9), protein, rna, path, title="t")
    assert _is_png(path)
    heatmaps = [ax for ax in fig.axes if ax.images]
    assert len(heatmaps) == 3
    ax = heatmaps[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == rna
    assert [t.get_text() for t in ax.get_yticklabels()] == protein
    # a single head given as (Tq, Tk)
    fig = plot_attention(_weights(1, 4, 9)[0], protein, rna)
    assert len([ax for ax in fig.axes if ax.images]) == 1


def _inches(fig, ax):
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    return ax.get_window_extent(renderer).transformed(fig.dpi_scale_trans.inverted())


def test_attention_heads_form_a_grid_within_page_width_with_the_colour_bar_beside():
    fig = plot_attention(_weights(4, 13, 36), None, list("AUG" * 12), title="four heads")
    assert fig.get_figwidth() <= plotting.PAGE_WIDTH
    heatmaps = [ax for ax in fig.axes if ax.images]
    boxes = [_inches(fig, ax) for ax in heatmaps]
    assert len({round(b.y0, 2) for b in boxes}) == 2 and len({round(b.x0, 2) for b in boxes}) == 2  # 2 x 2
    assert min(b.width for b in boxes) >= 2.0   # inches: 36 columns of about 5 points or more
    assert not _overlapping(boxes)
    (bar,) = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    bar_box = _inches(fig, bar)
    assert bar_box.x0 >= max(b.x1 for b in boxes)                  # to the right of every head
    assert min(b.y0 for b in boxes) < bar_box.y0 < bar_box.y1 < max(b.y1 for b in boxes)
    assert len(fig.axes) == 5   # four heads and the bar: no empty panels


def test_a_wide_attention_map_still_fits_the_page():
    fig = plot_attention(_weights(3, 10, 200))
    assert fig.get_figwidth() <= plotting.PAGE_WIDTH
    assert len({round(_inches(fig, ax).y0, 2) for ax in fig.axes if ax.images}) == 3   # a head per row


def test_attention_long_axes_are_thinned():
    tk = 300
    fig = plot_attention(_weights(1, 100, tk), None, list("ACGU" * 75))
    ax = [a for a in fig.axes if a.images][0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert 1 < len(labels) <= plotting.MAX_TICK_LABELS
    assert labels[0] == "A1"  # thinned labels carry their position


def test_attention_rejects_bad_shapes_and_labels():
    with pytest.raises(ValueError, match="shape"):
        plot_attention(np.ones((1, 2, 3, 4)))
    with pytest.raises(ValueError, match="3 query labels for 4"):
        plot_attention(_weights(2, 4, 9), list("MA*"), list("AUGGCCUAA"))
    with pytest.raises(ValueError, match="key labels"):
        plot_attention(_weights(2, 4, 9), None, list("AUG"))


def test_attention_layers_grid(tmp_path):
    layers = [_weights(2, 4, 9, seed=i) for i in range(3)]
    path = tmp_path / "grid.png"
    fig = plot_attention_layers(layers, list("MA*") + ["<eos>"], list("AUGGCCUAA"), path,
                                layer_names=["dec 1", "dec 2", "dec 3"])
    assert _is_png(path)
    heatmaps = [ax for ax in fig.axes if ax.images]
    assert len(heatmaps) == 6
    assert heatmaps[0].get_title() == "dec 1, head 1"
    assert heatmaps[-1].get_title() == "dec 3, head 2"
    with pytest.raises(ValueError, match="same shape"):
        plot_attention_layers([_weights(2, 4, 9), _weights(2, 4, 8)])
    with pytest.raises(ValueError, match="empty"):
        plot_attention_layers([])
    with pytest.raises(ValueError, match="layer names"):
        plot_attention_layers(layers, layer_names=["one"])


# -------------------------------------------------------------------- accuracy by length
def test_accuracy_by_length(tmp_path):
    df = pd.DataFrame({"lengths": ["1-10", "11-25", "101-150"], "exact_match": [1.0, 0.9, 0.1],
                       "residue_accuracy": [1.0, 0.99, 0.6], "n": [10, 20, 5]})
    path = tmp_path / "acc.png"
    fig = plot_accuracy_by_length(df, path, title="t", train_max_len=100)
    assert _is_png(path)
    ax = fig.axes[0]
    assert len(ax.patches) >= 6  # two bars per bucket (and the shading of the long bucket)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1-10", "11-25", "101-150"]
    assert any("longer than in training" in t.get_text() for t in ax.get_legend().get_texts())
    assert ax.get_xlabel() == "length"  # the library's words: no task in them
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "exact match" in legend and "residue accuracy" in legend and len(legend) == 3
    with pytest.raises(ValueError, match="residue_accuracy"):
        plot_accuracy_by_length(df.drop(columns=["residue_accuracy"]),
                                scores={"exact_match": "exact", "residue_accuracy": "residues"})
    with pytest.raises(ValueError, match="no score column"):
        plot_accuracy_by_length(df[["lengths", "n"]])


def test_a_zero_bar_shows_and_says_zero():
    from matplotlib.colors import to_rgba
    df = pd.DataFrame({"lengths": ["1-10", "101-150"], "exact_match": [1.0, 0.0], "residue_accuracy": [1.0, 0.6]})
    ax = plot_accuracy_by_length(df).axes[0]
    (zero,) = ax.collections          # the zero bar, drawn as a thick line on the axis
    (segment,) = zero.get_segments()
    assert segment[0][1] == segment[1][1] == 0 and 0.5 < segment[0][0] < segment[1][0] <= 1  # bucket 2, first bar
    assert zero.get_linewidth()[0] >= 2 and tuple(zero.get_color()[0]) == to_rgba("tab:blue")
    assert [t.get_text() for t in ax.texts] == ["0%"]


def test_accuracy_by_length_takes_the_caller_s_words(tmp_path):
    df = pd.DataFrame({"lengths": ["1-10", "11-25"], "exact_match": [1.0, 0.9], "token_accuracy": [1.0, 0.95],
                       "bleu": [0.9, 0.8]})
    fig = plot_accuracy_by_length(df, scores={"token_accuracy": "tokens right"}, xlabel="sentence length (words)")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "sentence length (words)"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["tokens right"]
    assert len(ax.patches) == 2  # one bar per bucket: only the score asked for


def test_the_library_s_plotting_speaks_no_codon():
    import re
    source = open(plotting.__file__).read()
    found = re.findall(r"\b(?:protein|residue|nucleotide|codon|rna)s?\b", source, flags=re.IGNORECASE)
    assert not found, found  # the codon report passes its own words (codon/report.py)


def test_no_pyplot_figures_left_behind():
    before = None
    if "matplotlib.pyplot" in sys.modules:
        before = set(sys.modules["matplotlib.pyplot"].get_fignums())
    plot_attention(_weights(2, 3, 6))
    plot_learning_curves(_history())
    if before is not None:
        assert set(sys.modules["matplotlib.pyplot"].get_fignums()) == before
