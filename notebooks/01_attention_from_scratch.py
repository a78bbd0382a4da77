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
# # 1. Attention from scratch
#
# The Transformer of *Attention Is All You Need* (Vaswani et al., 2017) is built around
# one operation: every position of a sequence looks at every other position and takes a
# weighted average of what it finds there. This notebook builds that operation up from
# nothing but NumPy:
#
# 1. attention between raw vectors: dot products, a softmax per row, a weighted sum;
# 2. one-hot vectors, which turn attention into a (soft) look-up table;
# 3. queries, keys and values as learned linear projections;
# 4. the matrix form, and why the scores are divided by $\sqrt{d_k}$;
# 5. masks: padding and causal;
# 6. the same numbers from the library: `functional.attention_forward` and
#    `nn.MultiHeadAttention`.
#
# Everything runs in a fraction of a second; no model is trained here.

# %%
import numpy as np
import matplotlib.pyplot as plt

np.set_printoptions(precision=3, suppress=True)
rng = np.random.default_rng(0)


def show_matrix(ax, m, title, row_labels=None, col_labels=None, vmin=0.0, vmax=1.0, cmap="viridis"):
    """Draw a small matrix as a heatmap, rows = queries, columns = keys."""
    image = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax)
    ax.set_title(title, fontsize="medium")
    if row_labels is not None:
        ax.set_yticks(range(len(row_labels)), row_labels)
    if col_labels is not None:
        ax.set_xticks(range(len(col_labels)), col_labels)
    return image


# %% [markdown]
# ## 1. Attention between raw vectors
#
# Take a sequence of $T$ vectors $x_1, \dots, x_T$, each of length $d$ (think: one vector
# per word, or per nucleotide). The simplest attention has no parameters at all.
#
# * **Scores.** How much does position $i$ care about position $j$? Use the dot product:
#   $a_{ij} = x_i \cdot x_j$. Similar vectors give large scores.
# * **Weights.** Turn each row of scores into a probability distribution with a softmax:
#   $$A_{ij} = \frac{\exp(a_{ij})}{\sum_{j'} \exp(a_{ij'})}, \qquad \sum_j A_{ij} = 1 .$$
# * **Output.** Position $i$ receives the average of all vectors, weighted by its row:
#   $$y_i = \sum_j A_{ij}\, x_j .$$
#
# First with plain loops, exactly as written:

# %%
T, d = 5, 4
X = rng.standard_normal((T, d))          # row i is the vector x_i


def softmax(scores):
    """Softmax along the last axis. Subtracting the row maximum changes nothing
    mathematically (it cancels in the ratio) but keeps exp() from overflowing."""
    shifted = scores - scores.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


a = np.zeros((T, T))
for i in range(T):
    for j in range(T):
        a[i, j] = X[i] @ X[j]
A = np.zeros((T, T))
for i in range(T):
    A[i] = softmax(a[i])
Y_loops = np.zeros((T, d))
for i in range(T):
    for j in range(T):
        Y_loops[i] += A[i, j] * X[j]

print("attention weights A (each row sums to 1):")
print(A)
print("row sums:", A.sum(axis=1))

# %% [markdown]
# The three loops are three matrix operations: the scores are $X X^\top$, the softmax
# acts on each row, and the weighted sums are one more matrix product, $Y = A X$.

# %%
Y = softmax(X @ X.T) @ X
print("matrix form equals the loops:", np.allclose(Y, Y_loops))

# %% [markdown]
# Two things to notice. The score matrix is **symmetric** ($x_i \cdot x_j = x_j \cdot x_i$),
# and each vector usually attends mostly to **itself**, because $x_i \cdot x_i = \|x_i\|^2$
# tends to be the largest score in its row. Both limitations go away in section 3.
#
# A third property matters later: attention does not know about **order**. Shuffle the
# input positions and the outputs are shuffled the same way, nothing else changes. A
# Transformer has to be *told* where each token sits (positional encodings, notebook 3).

# %%
perm = rng.permutation(T)
Y_shuffled = softmax(X[perm] @ X[perm].T) @ X[perm]
print("shuffling the inputs just shuffles the outputs:", np.allclose(Y_shuffled, Y[perm]))

fig, ax = plt.subplots(figsize=(3.5, 3))
fig.colorbar(show_matrix(ax, A, "A = softmax(X Xᵀ)"), ax=ax)
ax.set_xlabel("key position j")
ax.set_ylabel("query position i")
plt.show()

# %% [markdown]
# ## 2. One-hot vectors: attention as a look-up table
#
# Where do the words *query*, *key* and *value* come from? Take one-hot vectors: with
# $x_i = e_i$ (a 1 in place $i$, zeros elsewhere) the dot product $x_i \cdot x_j$ is 1 when
# $i = j$ and 0 otherwise. Scoring a one-hot **query** against one-hot **keys** finds the
# matching key; the weighted sum then returns the **value** stored under it. That is a
# dictionary look-up, written with linear algebra.
#
# Here the keys are four names, each with a value vector (made-up numbers). A sharpness
# factor $\beta$ in front of the scores decides how hard the look-up is: with $\beta = 1$ a
# softmax over scores of 1 and 0 is far from one-hot, with large $\beta$ it picks one entry.

# %%
names = ["ada", "bob", "cy", "dee"]
keys = np.eye(4)                          # one-hot key of each name
values = np.array([[1.0, 0.0, 3.0],       # the value stored under each name
                   [2.0, 5.0, 1.0],
                   [0.0, 1.0, 0.0],
                   [4.0, 4.0, 4.0]])

query = keys[names.index("cy")]           # "what is stored under cy?"
for beta in [1.0, 5.0, 20.0]:
    weights = softmax(beta * keys @ query)
    print(f"beta={beta:>4}: weights {weights} -> returns {weights @ values}")
print("value stored under cy:      ", values[2])

# %% [markdown]
# With a large $\beta$ the answer is the stored value, to many digits. The interesting case
# is a query that is *not* exactly one key: attention then returns a blend of the values,
# weighted by how well each key matches. A soft, differentiable look-up is what lets the
# model learn *which* entries to read by gradient descent.

# %%
query_between = 0.5 * keys[0] + 0.5 * keys[1]     # halfway between ada and bob
weights = softmax(20.0 * keys @ query_between)
print("weights:", weights, "-> returns", weights @ values,
      "= mean of ada's and bob's values", values[:2].mean(axis=0))

# %% [markdown]
# ## 3. Queries, keys and values as learned projections
#
# In section 1 each vector played all three roles at once: it was compared (as query and
# as key) and it was averaged (as value). A Transformer gives each role its own **learned**
# linear map:
# $$q_i = W_Q\, x_i, \qquad k_i = W_K\, x_i, \qquad v_i = W_V\, x_i .$$
# *What position $i$ is looking for* ($q_i$) is now separate from *what position $j$ offers*
# ($k_j$) and from *what it hands over* ($v_j$). The maps can also make the vectors shorter:
# $W_Q$ and $W_K$ project $d_\text{model}$ features down to $d_k$, $W_V$ to $d_v$.
#
# **Convention.** Code works with rows: the whole sequence is a $(T, d_\text{model})$
# matrix $X$, and a projection is $Q = X W_Q$ with $W_Q$ of shape $(d_\text{model}, d_k)$,
# which is the transpose of the column-vector formula above. The library stores every
# weight this way, `(in_features, out_features)`, so code reads left to right like the math.

# %%
d_model, d_k, d_v = 4, 3, 3
W_Q = rng.standard_normal((d_model, d_k)) / np.sqrt(d_model)
W_K = rng.standard_normal((d_model, d_k)) / np.sqrt(d_model)
W_V = rng.standard_normal((d_model, d_v)) / np.sqrt(d_model)

Q, K, V = X @ W_Q, X @ W_K, X @ W_V        # (T, d_k), (T, d_k), (T, d_v)
A_qkv = softmax(Q @ K.T / np.sqrt(d_k))
print("Q", Q.shape, "K", K.shape, "V", V.shape, "-> weights", A_qkv.shape, "output", (A_qkv @ V).shape)
print("is the score matrix still symmetric?", np.allclose(Q @ K.T, (Q @ K.T).T))

fig, axes = plt.subplots(1, 2, figsize=(7, 3))
show_matrix(axes[0], A, "raw vectors: softmax(X Xᵀ)")
image = show_matrix(axes[1], A_qkv, "projections: softmax(Q Kᵀ/√d_k)")
for ax in axes:
    ax.set_xlabel("key j")
axes[0].set_ylabel("query i")
fig.colorbar(image, ax=axes)
plt.show()

# %% [markdown]
# With random projections the pattern means nothing yet; training will shape $W_Q$, $W_K$
# and $W_V$ so that each query finds the keys it needs. (In notebook 3 a trained model
# copying a sequence learns to put all its weight on one key per query.)
#
# ## 4. The matrix form, and why divide by $\sqrt{d_k}$
#
# For a whole sequence at once:
# $$\operatorname{Attention}(Q, K, V) = \operatorname{softmax}\!\left(\frac{Q K^\top}{\sqrt{d_k}}\right) V ,$$
# with the softmax taken along each row (one row per query). Both products are ordinary
# **matrix** products: $Q K^\top$ is the $(T_q, T_k)$ table of scores, and multiplying the
# weights by $V$ forms, for every query, the weighted sum of value vectors.
#
# *A note on a formula you may meet:* a talk this course draws on writes
# $\operatorname{softmax}(K^\top Q / \sqrt{D}) \odot V$. The element-wise product $\odot$
# is not a weighted sum (and the shapes do not even match, a $(T, T)$ table against a
# $(T, d_v)$ one), and the scale is the dimension $d_k$ of the vectors being compared, not
# the model width $D$. The cell below shows the element-wise version failing.

# %%
weights = softmax(Q @ K.T / np.sqrt(d_k))
print("weights", weights.shape, "@ V", V.shape, "->", (weights @ V).shape)
try:
    weights * V
except ValueError as err:
    print("weights * V fails:", err)

# %% [markdown]
# **Why $\sqrt{d_k}$.** If the entries of $q$ and $k$ are independent with mean 0 and
# variance 1, then $q \cdot k = \sum_{m=1}^{d_k} q_m k_m$ is a sum of $d_k$ terms of variance
# 1: its variance is $d_k$ and its typical size $\sqrt{d_k}$. Wide heads therefore produce
# large scores, and a softmax of large scores **saturates**: nearly all the weight goes
# to one key. A saturated softmax is bad for learning, because its derivative
# $\partial p_i / \partial s_k = p_i(\delta_{ik} - p_k)$ is close to zero when one $p$ is
# close to 1 and the others close to 0: the gradient cannot get through (notebook 2
# derives this). Dividing by $\sqrt{d_k}$ brings the scores back to unit size whatever
# the width.
#
# The experiment: one random query against 16 random keys, many times over, for head
# widths from 1 to 1024. We measure the standard deviation of the scores, the largest
# attention weight (1 = all weight on one key; 1/16 = spread evenly), the entropy of the
# weights (0 = one key; $\log 16 \approx 2.77$ = uniform), and the size of the softmax's
# Jacobian $\operatorname{diag}(p) - p p^\top$ (Frobenius norm), which is what scales the
# gradient flowing back to the scores.

# %%
n_keys, trials = 16, 400
widths = 2 ** np.arange(0, 11)           # 1, 2, 4, ..., 1024
stats = {"unscaled": [], "scaled by 1/√d_k": []}
for width in widths:
    q = rng.standard_normal((trials, 1, width))
    k = rng.standard_normal((trials, n_keys, width))
    raw = (q @ k.transpose(0, 2, 1))[:, 0]                      # (trials, n_keys)
    for name, scores in [("unscaled", raw), ("scaled by 1/√d_k", raw / np.sqrt(width))]:
        p = softmax(scores)
        entropy = -(p * np.log(np.maximum(p, 1e-300))).sum(axis=-1)
        jacobian = p[:, :, None] * np.eye(n_keys) - p[:, :, None] * p[:, None, :]
        stats[name].append((scores.std(), p.max(axis=-1).mean(), entropy.mean(),
                            np.sqrt((jacobian ** 2).sum(axis=(1, 2))).mean()))

fig, axes = plt.subplots(1, 4, figsize=(15, 3.2))
titles = ["std of the scores", "largest attention weight", "entropy of the weights",
          "size of the softmax Jacobian"]
for name, rows in stats.items():
    rows = np.array(rows)
    for column, ax in enumerate(axes):
        ax.plot(widths, rows[:, column], "o-", label=name)
for ax, title in zip(axes, titles):
    ax.set_xscale("log", base=2)
    ax.set_xlabel("head width d_k")
    ax.set_title(title, fontsize="medium")
    ax.grid(alpha=0.3)
axes[2].axhline(np.log(n_keys), color="gray", ls=":", label="uniform (log 16)")
axes[1].axhline(1 / n_keys, color="gray", ls=":")
axes[2].legend(fontsize="small")
plt.tight_layout()
plt.show()

for name, rows in stats.items():
    std, pmax, ent, jac = rows[-1]
    print(f"d_k=1024, {name:>17}: score std {std:5.1f}, largest weight {pmax:.3f}, "
          f"entropy {ent:.2f}, Jacobian {jac:.3f}")

# %% [markdown]
# Without scaling, the scores grow like $\sqrt{d_k}$, the largest weight climbs towards 1,
# the entropy collapses, and the Jacobian, and with it the gradient reaching the queries
# and keys, shrinks several times over as the heads get wider. With scaling, every curve
# is flat: the softmax behaves the same for every width.
#
# ## 5. Masks
#
# Sometimes a query must not look at some keys:
#
# * **Padding.** Sequences in a batch have different lengths; the short ones are filled
#   up with a padding token that means nothing. No query may attend to a padding key.
# * **Causal.** A decoder generates one token after the other. While training, it sees the
#   whole target at once, so position $t$ must be prevented from reading positions after
#   $t$, the very tokens it is asked to predict.
#
# A mask is a boolean table, `True` where attending is allowed. It is applied to the
# **scores**, before the softmax: a forbidden score is replaced by a large negative number,
# so its exponential is 0 and the remaining weights in the row still sum to 1.
#
# Why a large *finite* number (the library uses $-10^9$) rather than $-\infty$? If every
# key of a row is masked (a query on a padding position of a padded sequence can be in
# that situation), a row of $-\infty$ gives $\exp(-\infty - (-\infty)) = \exp(\text{NaN})$:

# %%
with np.errstate(invalid="ignore"):      # NumPy would also warn about the inf - inf
    print("softmax of an all -inf row:", softmax(np.array([[-np.inf, -np.inf, -np.inf]])))
print("softmax of an all -1e9 row:", softmax(np.array([[-1e9, -1e9, -1e9]])))

# %% [markdown]
# A NaN spreads through every later computation and ruins training. With a finite
# value the softmax of a fully masked row is merely uniform, and the library goes one
# step further and sets the weights of such a row to exactly 0 (its output is 0).
#
# Now a batch of two sequences, of lengths 6 and 4, padded to 6:

# %%
MASK_VALUE = -1e9
lengths = [6, 4]
T_pad = 6
tokens = [list("GATTAC"), list("ACGU") + ["·", "·"]]           # "·" marks padding

padding = np.arange(T_pad)[None, :] < np.array(lengths)[:, None]   # (batch, T): real token?
padding_mask = padding[:, None, :]                                   # (batch, 1, T_k): same for every query
causal_mask = np.tril(np.ones((T_pad, T_pad), dtype=bool))           # (T_q, T_k): key j <= query i
both = causal_mask[None] & padding_mask                              # (batch, T_q, T_k)


def masked_attention_weights(q, k, mask):
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    scores = np.where(mask, scores, MASK_VALUE)
    return softmax(scores)


x_batch = rng.standard_normal((2, T_pad, d_k))
fig, axes = plt.subplots(2, 3, figsize=(10, 6.5))
for col, (name, mask) in enumerate([("padding mask", np.broadcast_to(padding_mask, (2, T_pad, T_pad))),
                                     ("causal mask", np.broadcast_to(causal_mask, (2, T_pad, T_pad))),
                                     ("causal and padding", both)]):
    w = masked_attention_weights(x_batch, x_batch, mask)
    show_matrix(axes[0, col], mask[1].astype(float), f"{name} (sequence 2)",
                tokens[1], tokens[1], cmap="gray_r")
    show_matrix(axes[1, col], w[1], "attention weights", tokens[1], tokens[1])
axes[0, 0].set_ylabel("query")
axes[1, 0].set_ylabel("query")
for ax in axes[1]:
    ax.set_xlabel("key")
plt.tight_layout()
plt.show()

# %% [markdown]
# Top row: black = allowed. Bottom row: the weights; masked keys get exactly zero and each
# row still sums to one. The padding *queries* (the last two rows) still produce numbers;
# that is harmless, because the loss ignores padding positions, so nothing downstream
# learns from them.

# %%
w = masked_attention_weights(x_batch, x_batch, both)
print("weight on masked keys:", w[~both].max(), "| row sums:", w[1].sum(axis=-1))

# %% [markdown]
# ## 6. The same numbers from the library
#
# `minitransformer.functional.attention_forward(q, k, v, mask)` is the formula above for
# arrays of shape `(..., T, d_k)`: any leading axes (batch, heads) are carried along. It
# returns the output and a *cache* of what its backward pass will need (notebook 2). The
# mask is boolean, `True` where attending is allowed, and broadcasts against
# `(..., T_q, T_k)`. We work in float64 so the comparison can be exact to ~1e-15.

# %%
from minitransformer import functional as F

q = rng.standard_normal((2, T_pad, d_k))
k = rng.standard_normal((2, T_pad, d_k))
v = rng.standard_normal((2, T_pad, d_v))

by_hand = masked_attention_weights(q, k, both) @ v
from_library, cache = F.attention_forward(q, k, v, mask=both)
print("largest difference, hand vs library:", np.abs(by_hand - from_library).max())

# %% [markdown]
# ### Multi-head attention
#
# One head computes one pattern of weights. `nn.MultiHeadAttention` runs $h$ heads side by
# side, each on its own slice of $d_k = d_\text{model} / h$ features, and mixes their
# outputs with one more projection $W_O$:
# $$\operatorname{head}_n = \operatorname{Attention}(X W_Q^{(n)}, X W_K^{(n)}, X W_V^{(n)}), \qquad
# \operatorname{MHA}(X) = [\operatorname{head}_1, \dots, \operatorname{head}_h]\, W_O + b_O .$$
# In the library the three input projections of all heads sit in one matrix
# `w_in` $= [W_Q \mid W_K \mid W_V]$ of shape $(d_\text{model}, 3 d_\text{model})$ (with a
# bias `b_in`); head $n$ uses columns $n d_k$ to $(n+1) d_k$ of each block. Below we take
# a layer's weights and redo its computation by hand, one head at a time, with the
# function `masked_attention_weights` written above.

# %%
from minitransformer import nn

d_model, n_heads, batch, T_seq = 8, 2, 2, 6
mha = nn.MultiHeadAttention(d_model, n_heads, rng=1, dtype=np.float64)
x = rng.standard_normal((batch, T_seq, d_model))
mask4 = both[:, None]                          # (batch, 1 head axis, T_q, T_k)

out_library = mha.forward(x, mask=mask4)

W_in, b_in = mha.w_in.data, mha.b_in.data
W_out, b_out = mha.w_out.data, mha.b_out.data
Qall = x @ W_in[:, :d_model] + b_in[:d_model]
Kall = x @ W_in[:, d_model:2 * d_model] + b_in[d_model:2 * d_model]
Vall = x @ W_in[:, 2 * d_model:] + b_in[2 * d_model:]
head_dim = d_model // n_heads
heads = []
for n in range(n_heads):
    cols = slice(n * head_dim, (n + 1) * head_dim)
    weights_n = masked_attention_weights(Qall[..., cols], Kall[..., cols], both)
    heads.append(weights_n @ Vall[..., cols])
out_by_hand = np.concatenate(heads, axis=-1) @ W_out + b_out

print("output shape:", out_library.shape)
print("largest difference, hand vs nn.MultiHeadAttention:", np.abs(out_by_hand - out_library).max())

# %% [markdown]
# The layer keeps the weights of its last forward pass (`attention_weights`, shape
# `(batch, heads, T_q, T_k)`), which is how attention maps of a trained model are drawn.
# `minitransformer.plotting.plot_attention` draws one panel per head:

# %%
from minitransformer.plotting import plot_attention

plot_attention(mha.attention_weights[1], tokens[1], tokens[1],
               title="random multi-head attention, sequence 2, causal + padding mask",
               xlabel="key", ylabel="query")

# %% [markdown]
# ## Summary
#
# * Attention = scores (dot products of queries and keys), a softmax per query, a
#   weighted sum of values: $\operatorname{softmax}(Q K^\top / \sqrt{d_k})\, V$.
# * With one-hot vectors it is a look-up table; with learned projections it is a soft,
#   trainable one.
# * Dividing by $\sqrt{d_k}$ keeps the softmax out of saturation for any head width.
# * Masks act on the scores, with a large finite negative number.
# * The library computes exactly these numbers; notebook 2 derives their gradients.
#
# ## Questions
#
# Answers in `notebooks/solutions/answers.md`.
#
# 1. Every key of a query is the same vector. What does attention output, whatever the
#    query?
# 2. With a causal mask, what is the output of the *first* query, exactly?
# 3. Without the division by $\sqrt{d_k}$, and with $d_k = 512$, what do the rows of the
#    attention weights look like, and why does that stop the queries and keys from learning?
# 4. Why does the mask replace a forbidden score by $-10^9$ rather than by $-\infty$, or
#    instead of multiplying the weights by zero after the softmax?
