# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 0. Why attention
#
# Before the how, the why. A Transformer reads a sequence: words, or the nucleotides of an
# RNA molecule. Before 2017 the standard reader was a **recurrent neural network** (RNN),
# which reads one token at a time and carries everything it knows in one vector. This
# chapter shows, with numbers, the two problems that attention solves (gradients that
# vanish over long distances, and steps that cannot run in parallel), what attention costs
# in exchange, and then the map of the whole model, labelled with the names of the classes
# you will meet in the library. It ends with what layer norm and dropout are for, and what
# the papers report about dropout and label smoothing.
#
# Only NumPy and matplotlib here; the library comes in at the end, to check the names.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import FancyBboxPatch

np.set_printoptions(precision=3, suppress=True)
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. A tanh RNN, and a gradient that vanishes
#
# An RNN keeps a hidden state $h_t \in \mathbb{R}^d$ and updates it with each input $x_t$:
# $$h_t = \tanh(W_h h_{t-1} + W_x x_t + b).$$
# Whatever the network knows about $x_1$ when it reaches $x_{50}$ has passed through 49
# updates. Training adjusts the weights through the gradient
# $\partial L / \partial h_1$, and by the chain rule
# $$\frac{\partial h_t}{\partial h_1} = \prod_{s=t}^{2} \frac{\partial h_s}{\partial h_{s-1}},
#   \qquad \frac{\partial h_s}{\partial h_{s-1}} = \operatorname{diag}(1 - h_s^2)\, W_h .$$
# A product of $t - 1$ matrices. Each $\operatorname{diag}(1 - h_s^2)$ has entries at most 1, so
# when $W_h$ does not stretch vectors much, the product shrinks **geometrically** with the
# distance. Here it is, for a small RNN with the usual initialisation (entries of
# $W_h$ of standard deviation $1/\sqrt{d}$):

# %%
d, T = 32, 60
W_h = rng.standard_normal((d, d)) / np.sqrt(d)
W_x = rng.standard_normal((d, d)) / np.sqrt(d)
b = np.zeros(d)
xs = rng.standard_normal((T, d))


def rnn(xs, h0):
    """All hidden states h_1..h_T of the tanh RNN, from h0."""
    hs, h = [], h0
    for x in xs:                                 # one step after the other: no parallelism
        h = np.tanh(W_h @ h + W_x @ x + b)
        hs.append(h)
    return np.array(hs)


h0 = np.zeros(d)
hs = rnn(xs, h0)

# d h_t / d h_1, as the product of the step Jacobians
jacobian = np.eye(d)
norms = [1.0]
for t in range(1, T):
    jacobian = np.diag(1 - hs[t] ** 2) @ W_h @ jacobian
    norms.append(np.linalg.norm(jacobian, 2))    # the largest factor by which h_1 can move h_t
norms = np.array(norms)

# the same thing from finite differences, for one distance: nudge h_1, see h_T move
t_check, eps = 20, 1e-6
direction = rng.standard_normal(d)
direction /= np.linalg.norm(direction)
moved = rnn(xs[1:t_check], hs[0] + eps * direction)[-1] - rnn(xs[1:t_check], hs[0] - eps * direction)[-1]
product = np.eye(d)
for t in range(1, t_check):
    product = np.diag(1 - hs[t] ** 2) @ W_h @ product
print(f"how far h_{t_check} moves per unit of h_1 along u: product of Jacobians "
      f"{np.linalg.norm(product @ direction):.3e}, finite differences {np.linalg.norm(moved) / (2 * eps):.3e}")
rate = np.exp(np.polyfit(np.arange(10, T), np.log(norms[10:]), 1)[0])
print(f"the gradient shrinks by a factor of about {rate:.2f} per step: "
      f"after 10 steps {norms[10]:.1e}, after 50 steps {norms[50]:.1e}")

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.semilogy(np.arange(T), norms, label="tanh RNN: ‖∂h_t / ∂h_1‖")
ax.axhline(1.0, color="tab:orange", ls="--", label="attention: one step from any position")
ax.set_xlabel("distance t − 1 (steps)")
ax.set_ylabel("size of the gradient")
ax.legend(fontsize="small")
ax.grid(alpha=0.3)
plt.show()

# %% [markdown]
# The two estimates agree, and the signal from 50 steps back is many orders of magnitude
# weaker than from the last step: whatever the loss wants to change about how $x_1$ was
# read, the message arrives as noise. (With larger weights the product can *explode*
# instead; either way, long distances are hard. LSTMs and GRUs ease this with gates, but
# still pass everything through one chain of steps.)
#
# In attention, every output is a weighted sum over **all** positions at once:
# $\text{out}_i = \sum_j A_{ij} v_j$. Position 1 reaches position 50 in one step, whatever
# the distance, so its gradient does not pass through a product of 49 Jacobians (the dashed
# line: not a measurement, the path length).
#
# ## 2. Sequential steps, path length and memory
#
# | | tanh RNN | self-attention |
# |---|---|---|
# | operations that must run one after the other | $O(T)$ (step $t$ needs $h_{t-1}$) | $O(1)$ (all positions at once: matrix products) |
# | longest path between two positions | $O(T)$ | $O(1)$ |
# | work per layer | $O(T d^2)$ | $O(T^2 d)$ |
# | memory for one layer's backward pass | $O(T d)$ | $O(T^2)$ per head (the attention weights) |
#
# (The paper's table 1 makes the same comparison.) The price of attention is the $T \times T$
# matrix of scores: quadratic in the length. Measured, for $d = 32$:

# %%
def attention(x):
    """Self-attention without projections: softmax(x x^T / sqrt(d)) x, all rows at once."""
    scores = x @ x.T / np.sqrt(x.shape[1])
    weights = np.exp(scores - scores.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    return weights @ x, weights


rows = []
for length in (100, 400, 1600):
    x = rng.standard_normal((length, d)) / np.sqrt(d)
    start = time.perf_counter()
    rnn(x, np.zeros(d))
    t_rnn = time.perf_counter() - start
    start = time.perf_counter()
    _, weights = attention(x)
    t_att = time.perf_counter() - start
    rows.append((length, length, t_rnn * 1e3, 1, t_att * 1e3, weights.nbytes / 2**20))
print(f"{'T':>6} {'RNN steps':>10} {'RNN ms':>8} {'attention steps':>16} {'attention ms':>13} {'weights MiB':>12}")
for row in rows:
    print(f"{row[0]:>6} {row[1]:>10} {row[2]:>8.1f} {row[3]:>16} {row[4]:>13.1f} {row[5]:>12.1f}")
print(f"T = 10,000 would need {10_000**2 * 8 / 2**20:,.0f} MiB of float64 weights per head and layer")

# %% [markdown]
# Attention does *more* work than the RNN at these lengths, and its time and memory grow
# as $T^2$ (four times the length, sixteen times the weights) where the RNN's grow as $T$:
# on one CPU it is the slower of the two. What it buys is not fewer operations but
# independent ones. The RNN's steps *cannot* be spread over many cores or a GPU, since step
# $t$ waits for step $t - 1$; attention's work is a few large matrix products, which is what
# parallel hardware is built for, and every position is one step from every other. Its
# memory is the price: for the codon task (up to 300 nucleotides) it is nothing; for a
# whole gene with its surroundings it is the main problem, and the reason models such as
# Enformer (notebook 7) shrink the sequence with convolutions before attending.
#
# ## 3. The map: the paper's figure, with the library's names
#
# The architecture of *Attention Is All You Need* (figure 1 of the paper), redrawn with the
# class that implements each box. The left column is the **encoder**, which reads the
# source; the right column the **decoder**, which writes the target one token at a time
# and reads the encoder's output through **cross-attention**. Each block repeats $N$ times
# (6 in the paper); "Add & Norm" is a residual connection followed by `LayerNorm`.

# %%
from minitransformer import nn, transformer

boxes = {   # name on the figure: (x, y, width, class in the library, colour)
    "src ids": (0.3, 0.2, 2.6, "", "white"),
    "Embedding × √d": (0.3, 1.1, 2.6, "nn.Embedding", "#f3d9b1"),
    "+ positions": (0.3, 2.0, 2.6, "nn.PositionalEncoding", "#e0e0e0"),
    "self-attention": (0.5, 3.2, 2.2, "nn.MultiHeadAttention", "#f9c6a8"),
    "Add & Norm ": (0.5, 4.1, 2.2, "nn.LayerNorm", "#fbf3b5"),
    "feed-forward": (0.5, 5.0, 2.2, "nn.FeedForward", "#b9e0f5"),
    "Add & Norm  ": (0.5, 5.9, 2.2, "nn.LayerNorm", "#fbf3b5"),
    "tgt ids (shifted right)": (4.3, 0.2, 2.6, "", "white"),
    "Embedding × √d ": (4.3, 1.1, 2.6, "nn.Embedding", "#f3d9b1"),
    "+ positions ": (4.3, 2.0, 2.6, "nn.PositionalEncoding", "#e0e0e0"),
    "masked self-attention": (4.5, 3.2, 2.2, "nn.MultiHeadAttention", "#f9c6a8"),
    "Add & Norm   ": (4.5, 4.1, 2.2, "nn.LayerNorm", "#fbf3b5"),
    "cross-attention": (4.5, 5.0, 2.2, "nn.MultiHeadAttention", "#f9c6a8"),
    "Add & Norm    ": (4.5, 5.9, 2.2, "nn.LayerNorm", "#fbf3b5"),
    "feed-forward ": (4.5, 6.8, 2.2, "nn.FeedForward", "#b9e0f5"),
    "Add & Norm     ": (4.5, 7.7, 2.2, "nn.LayerNorm", "#fbf3b5"),
    "Linear → logits": (4.3, 8.9, 2.6, "nn.Linear", "#d5c8ef"),
    "softmax → next token": (4.3, 9.8, 2.6, "losses / decoding", "white"),
}
fig, ax = plt.subplots(figsize=(8.5, 9))
for label, (x, y, w, cls, colour) in boxes.items():
    ax.add_patch(FancyBboxPatch((x, y), w, 0.6, boxstyle="round,pad=0.02", fc=colour, ec="black", lw=0.8))
    ax.text(x + w / 2, y + 0.38, label.strip(), ha="center", va="center", fontsize=9)
    if cls:
        ax.text(x + w / 2, y + 0.14, cls, ha="center", va="center", fontsize=7.5, family="monospace",
                color="#333")
for x0, x1 in ((1.6, 1.6), (5.6, 5.6)):         # the main flow, bottom to top
    top = 6.5 if x0 < 3 else 9.5
    ax.annotate("", xy=(x1, top + 0.3), xytext=(x0, 0.8), arrowprops=dict(arrowstyle="-", lw=0.6, color="gray"),
                zorder=0)
ax.add_patch(plt.Rectangle((0.25, 3.0), 2.7, 3.7, fill=False, ls="--", ec="tab:blue"))
ax.text(0.25, 6.8, "transformer.EncoderLayer × N   (in transformer.Encoder)", color="tab:blue", fontsize=8.5)
ax.add_patch(plt.Rectangle((4.25, 3.0), 2.7, 5.5, fill=False, ls="--", ec="tab:red"))
ax.text(4.25, 8.6, "transformer.DecoderLayer × N   (in transformer.Decoder)", color="tab:red", fontsize=8.5)
ax.annotate("encoder output:\nkeys and values", xy=(4.5, 5.3), xytext=(2.75, 7.3), fontsize=8,
            arrowprops=dict(arrowstyle="->", color="tab:blue", lw=1.2))
ax.text(3.6, 10.7, "the whole model: Transformer(TransformerConfig(...))", ha="center", fontsize=10,
        family="monospace")
ax.text(3.6, -0.4, "each Add & Norm: LayerNorm(x + Dropout(sublayer(x)))  (post-LN, as in the paper)",
        ha="center", fontsize=8)
ax.set_xlim(0, 7.2)
ax.set_ylim(-0.7, 11.1)
ax.axis("off")
plt.show()

# the names on the figure are the library's: fail here if one is renamed
for cls in {c for *_, c, _ in boxes.values() if c.startswith("nn.")}:
    assert hasattr(nn, cls[3:]), cls
for name in ("EncoderLayer", "DecoderLayer", "Encoder", "Decoder", "Transformer", "TransformerConfig"):
    assert hasattr(transformer, name), name
assert hasattr(nn, "Dropout")
print("every class named on the figure exists in the library")

# %% [markdown]
# Notebook 1 builds the attention box from scratch, notebook 2 differentiates every box
# by hand, notebook 3 puts the boxes together and trains them.
#
# ## 4. What layer norm and dropout are for
#
# **Layer normalisation** (Ba, Kiros and Hinton, 2016) rescales each position's vector to
# mean 0 and variance 1 over its $d$ features, then applies a learned scale $\gamma$ and
# shift $\beta$. A Transformer stacks many residual blocks, each adding its output to the
# running sum $x$; without normalisation the size of $x$ drifts from block to block, and with
# it the size of the gradients, so training needs a small learning rate or diverges. Layer
# norm keeps every block's input on the same scale. Unlike batch normalisation it uses no
# statistics of the batch, so it works the same for one sequence or many, at training and at
# inference, and for sequences padded to different lengths. (The paper puts it after each
# residual sum, "post-LN"; most later models put it before each sublayer, "pre-LN", which
# trains more easily when deep: notebook 3 compares the two.)
#
# **Dropout** (Srivastava et al., 2014) sets each activation to zero with probability
# $p$ during training, and scales the survivors by $1/(1-p)$ so that the expected value is
# unchanged; at inference it does nothing. A unit cannot rely on any particular other unit
# being there, which acts like training many thinned networks at once and averaging them.
# It is a **regulariser**: it fights overfitting, a model that learns its training data by
# heart. The Transformer applies it to the output of every sublayer before the residual
# sum, and to the sum of embeddings and positions ($p = 0.1$ in the base model).
#
# ## 5. What the papers actually report
#
# A talk on this material says that dropout "improves stability and convergence time", and
# that label smoothing "increases perplexity at the cost of labelled accuracy". Neither is
# what the papers say.
#
# * **Dropout.** Srivastava et al. report better *generalisation* (lower test error on
#   vision, speech and text benchmarks), and say plainly that dropout makes training
#   *slower*: a network with dropout typically takes 2–3 times longer to train than the same
#   network without it, because the gradients are noisier. In the Transformer paper
#   (Vaswani et al., 2017, table 3, rows D, English–German development set), removing
#   dropout from the base model raises the perplexity from 4.92 to 5.77 and lowers BLEU from
#   25.8 to 24.6: the benefit is on held-out data, against overfitting, not speed or
#   stability.
# * **Label smoothing** (Szegedy et al., 2016) trains against targets that give $1 - \varepsilon$
#   to the right token and spread $\varepsilon$ over the others. The Transformer paper
#   ($\varepsilon = 0.1$): "This hurts perplexity, as the model learns to be more unsure, but
#   improves accuracy and BLEU score." So it *raises* perplexity, and *improves* accuracy —
#   the opposite of "at the cost of accuracy". In the same table, without smoothing the
#   perplexity is 4.67 (better) and BLEU 25.3 (worse) than the base model's 4.92 and 25.8.
#
# The codon model of notebook 4 keeps the paper's values, dropout 0.1 and label smoothing
# 0.1 (`CodonRecipe` in `minitransformer/codon/train.py`).
#
# ## Questions
#
# Answers in `notebooks/solutions/answers.md`.
#
# 1. Why does the RNN's gradient shrink geometrically with the distance, and what would
#    make it grow instead?
# 2. What does self-attention cost in memory for a sequence of 10,000 tokens, per head and
#    layer, in float32? And what is the path length between its first and last token?
# 3. Layer norm gives every position a vector of mean 0 and variance 1. Why does that not
#    make all positions look the same?
