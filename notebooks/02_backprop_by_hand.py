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
# # 2. Backpropagation by hand, checked by finite differences
#
# This library has no automatic differentiation: every layer comes with a backward pass
# written by hand. This notebook derives four of them (softmax, softmax cross-entropy with
# label smoothing, layer norm, attention), implements some of them again right here, and
# shows how we know they are right: a **gradient check** compares each backward pass
# with finite differences. Just as important, it shows what a *wrong* derivative looks
# like to the checker.
#
# **The contract.** Every piece of math in `minitransformer.functional` comes as a pair:
#
# ```python
# out, cache = something_forward(inputs...)      # keeps what the backward pass needs
# grads = something_backward(dout, cache)        # dout = dL/dout  ->  dL/dinputs
# ```
#
# `dout` is the gradient of the (scalar) loss $L$ with respect to the output, and the
# backward pass returns the gradient with respect to each input: the chain rule, one
# layer at a time. Throughout, `dx` means $\partial L / \partial x$.
#
# The longer derivations live in `docs/backward/` of the repository.

# %%
import numpy as np
import matplotlib.pyplot as plt
import pandas as pd

from minitransformer import functional as F
from minitransformer import nn
from minitransformer.gradcheck import check_function, check_module, relative_error
from minitransformer.losses import softmax_cross_entropy_backward, softmax_cross_entropy_forward

np.set_printoptions(precision=4, suppress=True)
rng = np.random.default_rng(0)
results = []   # (what was checked, "correct" or "wrong", worst relative error): a summary at the end


def record(name, kind, report):
    results.append((name, kind, report.max_error))
    print(report)


# %% [markdown]
# ## 1. Finite differences, and why the checks use float64
#
# The derivative of a function $f$ at $x$ can be estimated without any calculus:
# $$\text{forward: } \frac{f(x+h) - f(x)}{h}, \qquad
#   \text{central: } \frac{f(x+h) - f(x-h)}{2h} .$$
# By Taylor's theorem the forward difference is off by a term of order $h$, the central
# one by a term of order $h^2$ (the $h^1$ terms cancel). But $h$ cannot be made tiny:
# subtracting two nearly equal numbers loses digits, an error of order
# $\varepsilon_\text{machine} / h$. The best $h$ balances the two. Here for
# $f(x) = \tanh x$, whose derivative $1 - \tanh^2 x$ we know exactly:

# %%
x0 = 0.7
exact = 1 - np.tanh(x0) ** 2
steps = np.logspace(-13, -1, 61)
curves = {}
for dtype in (np.float64, np.float32):
    x = dtype(x0)
    for name in ("forward", "central"):
        errs = []
        for h in steps:
            h = dtype(h)
            if name == "forward":
                est = (np.tanh(x + h) - np.tanh(x)) / h
            else:
                est = (np.tanh(x + h) - np.tanh(x - h)) / (dtype(2) * h)
            errs.append(abs(float(est) - exact) / exact)
        curves[f"{name}, {np.dtype(dtype).name}"] = np.maximum(errs, 1e-17)

fig, ax = plt.subplots(figsize=(6, 4))
for label, errs in curves.items():
    ax.loglog(steps, errs, label=label, ls="-" if "64" in label else "--")
ax.axvline(1e-5, color="gray", ls=":", label="h = 1e-5 (the checker's default)")
ax.set_xlabel("step h")
ax.set_ylabel("relative error of the estimate")
ax.set_ylim(1e-12, 10)
ax.legend(fontsize="small")
ax.grid(alpha=0.3)
plt.show()
best = {k: v.min() for k, v in curves.items()}
print({k: f"{v:.1e}" for k, v in best.items()})

# %% [markdown]
# Central differences in float64 reach about $10^{-11}$ near $h = 10^{-5}$. In float32
# even the best step gives only five or six correct digits: far too coarse to tell
# a correct gradient from one with a small mistake. So gradient checks run in **float64**
# (and training in float32, for speed).
#
# ## 2. The gradient checker
#
# `minitransformer.gradcheck` turns any forward/backward pair into a test:
#
# 1. Draw a fixed random array $R$ of the output's shape and define the scalar
#    $L = \sum \text{out} \odot R$. Then $\partial L / \partial \text{out} = R$ exactly.
# 2. Call `backward(R, cache)`: that gives the *analytic* gradients.
# 3. Nudge every input entry by $\pm h$, recompute $L$, take central differences: the
#    *numerical* gradients.
# 4. Report the relative error $\max_i |a_i - n_i| \,/\, \max(\max_i |a_i|, \max_i |n_i|)$ for
#    each input. The worst entry counts, measured on the scale of the whole array, so one
#    wrong entry among thousands cannot hide, and entries whose true gradient is exactly 0
#    do not blow the ratio up.
#
# `check_function(forward, backward, {name: array})` does this for a pure pair;
# `check_module(layer, *inputs)` does it for a layer's inputs *and* every parameter. A
# correct backward pass gives about $10^{-9}$ or less; a wrong one $10^{-3}$ or worse.
#
# ## 3. Softmax
#
# Forward, along the last axis: $p_i = e^{x_i} / \sum_j e^{x_j}$ (the code subtracts the
# row maximum first; it cancels and needs no gradient term).
#
# **The Jacobian.** Since $\log p_i = x_i - \log \sum_j e^{x_j}$,
# $$\frac{\partial \log p_i}{\partial x_k} = \delta_{ik} - p_k
# \quad\Longrightarrow\quad
# \frac{\partial p_i}{\partial x_k} = p_i\,(\delta_{ik} - p_k),
# \qquad J = \operatorname{diag}(p) - p\,p^\top .$$
#
# **The backward pass.** Every output depends on every input, so the chain rule sums over
# all outputs $i$:
# $$dx_k = \sum_i dp_i\, p_i(\delta_{ik} - p_k) = p_k \Big(dp_k - \sum_i dp_i\, p_i\Big).$$
# One row costs $O(K)$: the $K \times K$ Jacobian is never built. By hand, as a pair in
# the library's style (the cache is simply $p$, because the derivative of softmax is a
# function of its output):

# %%
def softmax_forward_by_hand(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    p = e / e.sum(axis=-1, keepdims=True)
    return p, p


def softmax_backward_by_hand(dp, p):
    """dx = p * (dp - sum(dp * p)), row by row along the last axis."""
    return p * (dp - (dp * p).sum(axis=-1, keepdims=True))


x = rng.standard_normal(5)
p, p_cache = softmax_forward_by_hand(x)
dp = rng.standard_normal(5)
_, lib_cache = F.softmax_forward(x)

J = np.diag(p) - np.outer(p, p)                  # the full Jacobian, for comparison
print("J.T @ dp (full Jacobian):", J.T @ dp)
print("by hand:                 ", softmax_backward_by_hand(dp, p_cache))
print("library:                 ", F.softmax_backward(dp, lib_cache))

# %% [markdown]
# Now the checker, on a batch of rows: first our function, then the library's.

# %%
x = rng.standard_normal((3, 4, 7))
record("softmax (by hand)", "correct", check_function(softmax_forward_by_hand, softmax_backward_by_hand, {"x": x}))
record("softmax (library)", "correct", check_function(F.softmax_forward, F.softmax_backward, {"x": x}))

# %% [markdown]
# **A classic wrong derivative.** Treat softmax like an element-wise function and keep
# only the diagonal of the Jacobian, $dx_k = dp_k\, p_k (1 - p_k)$. It looks plausible (it
# is the derivative of the sigmoid) and it runs without complaint. The checker:

# %%
def softmax_backward_diagonal_only(dp, p):
    return dp * p * (1 - p)                      # WRONG: forgets that p_i depends on x_k


record("softmax, diagonal of the Jacobian only", "wrong",
       check_function(softmax_forward_by_hand, softmax_backward_diagonal_only, {"x": x}))

# %% [markdown]
# From about $10^{-10}$ to about $10^{-1}$: nine orders of magnitude. There is no grey
# zone, which is what makes the check useful.
#
# ## 4. Softmax cross-entropy with label smoothing
#
# The model outputs logits $z_n \in \mathbb{R}^K$ for every target position $n$, and
# $p_n = \operatorname{softmax}(z_n)$. With the correct class $y_n$, **label smoothing**
# replaces the one-hot target by
# $$q_{nk} = (1 - \varepsilon)\,[k = y_n] + \frac{\varepsilon}{K},$$
# a little probability for every class, so the model is never pushed to infinite logits.
# (This is PyTorch's convention; the paper's code spreads $\varepsilon$ over the $K-1$ wrong
# classes only, a small difference.) The loss is the mean, over the $N$ positions that
# are not padding, of the cross-entropy:
# $$L = \frac{1}{N} \sum_{n\ \text{counted}} \ell_n, \qquad \ell_n = -\sum_k q_{nk} \log p_{nk} .$$
#
# **Forward, stably.** Compute $\log p$ directly:
# $\log p_k = z_k - m - \log \sum_j e^{z_j - m}$ with $m = \max_j z_j$. This never overflows
# and never takes the log of a probability that underflowed to 0.
#
# **Backward.** From $\partial \log p_k / \partial z_j = \delta_{kj} - p_j$ (section 3),
# $$\frac{\partial \ell}{\partial z_j} = -\sum_k q_k (\delta_{kj} - p_j) = p_j \sum_k q_k - q_j = p_j - q_j,$$
# because $q$ sums to 1. So `dz` $= (p - q)/N$ on counted positions and 0 on padding:
# the prediction minus the target, which is what makes softmax and cross-entropy such a
# good pair. By hand:

# %%
def cross_entropy_by_hand(z, targets, pad_id, eps):
    """Forward and backward of the mean smoothed cross-entropy, ignoring targets == pad_id."""
    n_rows, K = z.reshape(-1, z.shape[-1]).shape
    z2, y = z.reshape(n_rows, K), targets.reshape(-1)
    counted = y != pad_id
    N = counted.sum()
    shifted = z2 - z2.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    q = np.full((n_rows, K), eps / K)
    q[np.arange(n_rows), y] += 1 - eps
    loss = -(q * log_p).sum(axis=1)[counted].sum() / N
    dz = (np.exp(log_p) - q) * counted[:, None] / N
    return loss, dz.reshape(z.shape)


K, pad_id, eps = 6, 0, 0.1
z = rng.standard_normal((2, 5, K)) * 2
targets = rng.integers(1, K, (2, 5))
targets[1, 3:] = pad_id                          # the second sequence is padded

loss_hand, dz_hand = cross_entropy_by_hand(z, targets, pad_id, eps)
loss_lib, ce_cache = softmax_cross_entropy_forward(z, targets, ignore_index=pad_id, label_smoothing=eps)
dz_lib = softmax_cross_entropy_backward(1.0, ce_cache)
print(f"loss by hand {loss_hand:.12f}, library {float(loss_lib):.12f}")
print("largest difference of the gradients:", np.abs(dz_hand - dz_lib).max())
print("gradient at padding positions is zero:", np.all(dz_lib[1, 3:] == 0))

# %% [markdown]
# The checker needs a `(forward, backward)` pair with the gradient of the output first.
# The loss functions take their options as keywords and their backward takes
# `(cache, dloss)`, so small lambdas adapt them. The targets are integers: the checker
# passes them through and checks only the float input `z`.

# %%
ce_forward = lambda z, t: softmax_cross_entropy_forward(z, t, ignore_index=pad_id, label_smoothing=eps)  # noqa: E731
record("cross-entropy (by hand)", "correct",
       check_function(ce_forward, lambda dloss, cache: cross_entropy_by_hand(z, targets, pad_id, eps)[1] * dloss,
                      {"z": z, "targets": targets}))
record("cross-entropy (library)", "correct",
       check_function(ce_forward, softmax_cross_entropy_backward,
                      {"z": z, "targets": targets}))

# %% [markdown]
# **Wrong:** a backward pass that forgets the smoothing, `dz = (p - onehot(y)) / N`, as
# if $\varepsilon$ were 0. With $\varepsilon = 0.1$ the error is of the size of $\varepsilon$:

# %%
def cross_entropy_backward_without_smoothing(dloss, cache):
    return cross_entropy_by_hand(z, targets, pad_id, 0.0)[1] * dloss   # WRONG: uses eps = 0


record("cross-entropy, smoothing forgotten", "wrong",
       check_function(ce_forward, cross_entropy_backward_without_smoothing, {"z": z, "targets": targets}))

# %% [markdown]
# Two sanity checks worth knowing by heart: with all logits equal the loss is $\log K$
# (whatever $\varepsilon$), and with smoothing the loss can never reach 0: its minimum is
# the entropy of $q$, reached when $p = q$.

# %%
uniform = softmax_cross_entropy_forward(np.zeros((1, K)), np.array([2]), label_smoothing=eps)[0]
q = np.full(K, eps / K); q[2] += 1 - eps
at_best = softmax_cross_entropy_forward(np.log(q)[None], np.array([2]), label_smoothing=eps)[0]
print(f"uniform logits: {float(uniform):.4f} = log K = {np.log(K):.4f}")
print(f"logits = log q: {float(at_best):.4f} = entropy of q = {-(q * np.log(q)).sum():.4f}")

# %% [markdown]
# ## 5. Layer normalisation
#
# For each position separately, over its $D$ features:
# $$\mu = \frac{1}{D}\sum_i x_i, \quad \sigma^2 = \frac{1}{D}\sum_i (x_i - \mu)^2, \quad
#   r = \frac{1}{\sqrt{\sigma^2 + \epsilon}}, \quad \hat{x}_i = (x_i - \mu)\, r, \quad
#   y_i = \gamma_i \hat{x}_i + \beta_i .$$
#
# **Parameters.** $d\gamma_i = \sum_\text{positions} dy_i\, \hat{x}_i$ and
# $d\beta_i = \sum_\text{positions} dy_i$ (they are shared by all positions, so their
# gradients add up).
#
# **Input.** Let $g_i = dy_i\, \gamma_i$, the gradient reaching $\hat{x}$. Every $\hat{x}_i$ depends
# on every $x_k$ through $\mu$ and through $r$:
# $$\frac{\partial \mu}{\partial x_k} = \frac{1}{D}, \qquad
#   \frac{\partial r}{\partial x_k} = -\tfrac12 (\sigma^2+\epsilon)^{-3/2}\cdot\frac{2}{D}(x_k - \mu)
#   = -\frac{r^2 \hat{x}_k}{D},$$
# $$\frac{\partial \hat{x}_i}{\partial x_k} = r\Big(\delta_{ik} - \frac{1}{D}\Big) - \frac{r\, \hat{x}_i \hat{x}_k}{D} .$$
# (The $\partial\sigma^2/\partial\mu$ term vanishes because $\sum_i (x_i - \mu) = 0$.) Summing
# $g_i$ times this over $i$:
# $$dx_k = r\Big(g_k - \underbrace{\tfrac{1}{D}\textstyle\sum_i g_i}_{\text{mean term}}
#          - \hat{x}_k \underbrace{\tfrac{1}{D}\textstyle\sum_i g_i \hat{x}_i}_{\text{variance term}}\Big).$$
# The two subtracted terms say: moving all of $x$ up by the same amount, or stretching it
# along $\hat{x}$, changes nothing after normalisation, so the gradient has no component
# in those two directions. By hand:

# %%
def layer_norm_forward_by_hand(x, gamma, beta, eps=1e-5):
    mu = x.mean(axis=-1, keepdims=True)
    r = 1.0 / np.sqrt(((x - mu) ** 2).mean(axis=-1, keepdims=True) + eps)
    xhat = (x - mu) * r
    return gamma * xhat + beta, (xhat, r, gamma)


def layer_norm_backward_by_hand(dy, cache):
    xhat, rstd, gamma = cache
    g = dy * gamma
    dx = rstd * (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    dgamma = (dy * xhat).reshape(-1, xhat.shape[-1]).sum(axis=0)
    dbeta = dy.reshape(-1, dy.shape[-1]).sum(axis=0)
    return dx, dgamma, dbeta


D = 8
x = rng.standard_normal((2, 3, D)) * 3 + 1
gamma = rng.standard_normal(D)
beta = rng.standard_normal(D)
ln_inputs = {"x": x, "gamma": gamma, "beta": beta}

y_hand, ln_cache = layer_norm_forward_by_hand(x, gamma, beta)
y_lib, ln_lib_cache = F.layer_norm_forward(x, gamma, beta)
dy = rng.standard_normal(x.shape)
print("forward, hand vs library: ", np.abs(y_hand - y_lib).max())
print("backward, hand vs library:", max(np.abs(a - b).max() for a, b in
                                       zip(layer_norm_backward_by_hand(dy, ln_cache),
                                           F.layer_norm_backward(dy, ln_lib_cache))))
record("layer norm (by hand)", "correct",
       check_function(layer_norm_forward_by_hand, layer_norm_backward_by_hand, ln_inputs))
record("layer norm (library nn.LayerNorm)", "correct",
       check_module(nn.LayerNorm(D, dtype=np.float64), x))

# %% [markdown]
# `check_module` checked the input and both parameters of the layer (`gamma` starts at 1
# and `beta` at 0). **Wrong:** drop the mean term (as if $\mu$ were a constant), or the
# variance term (as if $r$ were a constant):

# %%
def layer_norm_backward_no_mean_term(dy, cache):
    xhat, rstd, gamma = cache
    g = dy * gamma
    dx = rstd * (g - xhat * (g * xhat).mean(axis=-1, keepdims=True))          # WRONG
    return (dx,) + layer_norm_backward_by_hand(dy, cache)[1:]


def layer_norm_backward_no_variance_term(dy, cache):
    xhat, rstd, gamma = cache
    g = dy * gamma
    dx = rstd * (g - g.mean(axis=-1, keepdims=True))                          # WRONG
    return (dx,) + layer_norm_backward_by_hand(dy, cache)[1:]


record("layer norm, mean term forgotten", "wrong",
       check_function(layer_norm_forward_by_hand, layer_norm_backward_no_mean_term, ln_inputs))
record("layer norm, variance term forgotten", "wrong",
       check_function(layer_norm_forward_by_hand, layer_norm_backward_no_variance_term, ln_inputs))

# %% [markdown]
# The parameters' gradients are still right (about $10^{-10}$), so the report
# points straight at the input's gradient: the checker also tells you *where* to look.
#
# ## 6. Attention
#
# Forward (notebook 1), with $s = 1/\sqrt{d_k}$ and $M$ the mask:
# $$S = s\, Q K^\top \ (\text{masked entries} \to -10^9), \qquad A = \operatorname{softmax}(S)\ \text{row by row}, \qquad O = A V .$$
#
# Backward, reading the forward from the bottom up. For a matrix product $O = A V$, the
# gradients are $dA = dO\, V^\top$ and $dV = A^\top dO$ (check the shapes: each must match
# its array). Then:
# $$dV = A^\top dO, \qquad dA = dO\, V^\top, \qquad
#   dS = A \odot \Big(dA - \textstyle\sum_j (dA \odot A)_{:,j}\Big) \ \text{(softmax, per row)},$$
# $$dQ = s\, dS\, K, \qquad dK = s\, dS^\top Q .$$
# Masked entries have $A = 0$, so $dS = 0$ there: no gradient reaches masked keys. By hand,
# reusing the softmax pair from section 3 (no dropout here):

# %%
def attention_forward_by_hand(q, k, v, mask):
    s = 1.0 / np.sqrt(q.shape[-1])
    S = np.where(mask, s * q @ np.swapaxes(k, -1, -2), -1e9)
    A, _ = softmax_forward_by_hand(S)
    return A @ v, (q, k, v, A, s)


def attention_backward_by_hand(dout, cache):
    q, k, v, A, s = cache
    dv = np.swapaxes(A, -1, -2) @ dout
    dA = dout @ np.swapaxes(v, -1, -2)
    dS = softmax_backward_by_hand(dA, A)
    dq = s * dS @ k
    dk = s * np.swapaxes(dS, -1, -2) @ q
    return dq, dk, dv


B, H, Tq, Tk, dk_, dv_ = 2, 2, 4, 5, 3, 3
q = rng.standard_normal((B, H, Tq, dk_))
k = rng.standard_normal((B, H, Tk, dk_))
v = rng.standard_normal((B, H, Tk, dv_))
mask = np.ones((B, 1, 1, Tk), dtype=bool)
mask[1, ..., 3:] = False                          # the second source has 2 padding keys
att_inputs = {"q": q, "k": k, "v": v, "mask": mask}

out_hand, att_cache = attention_forward_by_hand(q, k, v, mask)
out_lib, att_lib_cache = F.attention_forward(q, k, v, mask)
dout = rng.standard_normal(out_hand.shape)
print("forward, hand vs library: ", np.abs(out_hand - out_lib).max())
print("backward, hand vs library:", max(np.abs(a - b).max() for a, b in
                                       zip(attention_backward_by_hand(dout, att_cache),
                                           F.attention_backward(dout, att_lib_cache))))
record("attention (by hand)", "correct",
       check_function(attention_forward_by_hand, attention_backward_by_hand, att_inputs))
record("attention (library)", "correct", check_function(F.attention_forward, F.attention_backward, att_inputs))

# %% [markdown]
# **Wrong:** forget the scale $s$ on the way back (it is easy to lose, being a constant):

# %%
def attention_backward_forgot_scale(dout, cache):
    dq, dk, dv = attention_backward_by_hand(dout, cache)
    s = cache[-1]
    return dq / s, dk / s, dv                     # WRONG: as if the scores were not scaled


record("attention, scale forgotten", "wrong",
       check_function(attention_forward_by_hand, attention_backward_forgot_scale, att_inputs))

# %% [markdown]
# `dv` is still right; `dq` and `dk` are off by the factor $\sqrt{d_k}$.
#
# The whole multi-head layer (projections, heads, attention, output projection), for
# self-attention with a causal mask and for cross-attention, through `check_module`:

# %%
d_model, n_heads = 8, 2
mha = nn.MultiHeadAttention(d_model, n_heads, rng=0, dtype=np.float64)
x = rng.standard_normal((2, 4, d_model))
causal = np.tril(np.ones((4, 4), dtype=bool))
record("multi-head self-attention", "correct", check_module(mha, x, mask=causal))

# %%
memory = rng.standard_normal((2, 6, d_model))
record("multi-head cross-attention", "correct", check_module(mha, x, memory))

# %% [markdown]
# `input[0]` is the queries' input, `input[1]` (cross-attention) the encoder output that
# provides keys and values. One detail: `b_in` holds the biases of the queries, keys and
# values, and the true gradient of the *key* bias is exactly zero (it adds the same
# number, $q_i \cdot b_K$, to every score of row $i$, and a softmax ignores that). The
# finite differences there are pure round-off, around $10^{-11}$. That is why the checker
# measures errors on the scale of the whole array: entry by entry, round-off divided by
# an exact zero would look like a failure.
#
# ## 7. A whole Transformer
#
# The same check, applied to every parameter of a small encoder-decoder model at once
# (a random sample of 8 entries per parameter, to keep it quick). The loss is the real
# one: the model's logits, then the smoothed cross-entropy with padding ignored.

# %%
from minitransformer import Transformer, TransformerConfig
from minitransformer.gradcheck import numerical_gradient

config = TransformerConfig(src_vocab_size=7, tgt_vocab_size=9, d_model=8, n_heads=2, d_ff=16,
                           n_encoder_layers=1, n_decoder_layers=1, dropout=0.0, max_len=16,
                           dtype="float64", seed=3)
model = Transformer(config)
src = np.array([[3, 4, 5, 6], [2, 5, 0, 0]])                 # 0 is padding
tgt_in = np.array([[1, 4, 6], [1, 7, 0]])
tgt_out = np.array([[4, 6, 2], [7, 2, 0]])
criterion_opts = dict(ignore_index=0, label_smoothing=0.1)


def model_loss():
    return float(softmax_cross_entropy_forward(model.forward(src, tgt_in), tgt_out, **criterion_opts)[0])


logits = model.forward(src, tgt_in)
_, loss_cache = softmax_cross_entropy_forward(logits, tgt_out, **criterion_opts)
model.zero_grad()
model.backward(softmax_cross_entropy_backward(1.0, loss_cache))

sample_rng = np.random.default_rng(0)
worst = 0.0
for name, param in model.named_parameters():
    idx = sample_rng.choice(param.size, min(8, param.size), replace=False)
    numeric = numerical_gradient(model_loss, param.data, indices=idx).reshape(-1)[idx]
    analytic = param.grad.reshape(-1)[idx]
    worst = max(worst, relative_error(analytic, numeric))
print(f"{len(model.parameters())} parameter arrays, {model.num_parameters()} numbers; "
      f"worst relative error on the sampled entries: {worst:.1e}")
results.append(("whole Transformer + loss", "correct", worst))

# %% [markdown]
# ## Summary
#
# Every check of this notebook, on one logarithmic axis:

# %%
summary = pd.DataFrame(results, columns=["check", "backward pass", "worst relative error"])
fig, ax = plt.subplots(figsize=(8, 0.35 * len(summary) + 1))
colors = summary["backward pass"].map({"correct": "tab:green", "wrong": "tab:red"})
ax.barh(summary["check"], summary["worst relative error"], color=colors)
ax.set_xscale("log")
ax.set_xlim(1e-13, 3)
ax.axvline(1e-7, color="gray", ls=":", label="test tolerance 1e-7")
ax.invert_yaxis()
ax.set_xlabel("worst relative error (green: correct derivative, red: wrong)")
ax.legend(fontsize="small")
plt.show()
print(summary.to_string(index=False, formatters={"worst relative error": "{:.1e}".format}))

# %% [markdown]
# Correct backward passes sit around $10^{-10}$, wrong ones around $10^{-1}$, with nothing
# in between. The test suite (`tests/test_gradcheck_layers.py`) runs these checks for
# every layer, on every available backend, with a tolerance of $10^{-7}$.
