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
# written by hand. This notebook derives five of them (the linear layer, softmax, softmax
# cross-entropy with label smoothing, layer norm, attention), has you write four of them
# yourself, and shows how we know they are right: a **gradient check** compares each backward pass
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
# **Exercises.** Four backward passes are yours to write: the linear layer, softmax
# cross-entropy, layer norm and attention. Each section derives the math; then a cell holds
# the forward pass and a stub of the backward pass (`raise NotImplementedError`, marked
# `# EXERCISE`) for you to fill in, and the next cell grades it with the gradient checker:
# *correct*, *WRONG* (with the error of each gradient, so you know where to look), or *not
# written yet*. The rest of the notebook runs either way. The solutions are in
# `notebooks/solutions/02_backprop_by_hand.py`, and the answers to the questions at the end
# in `notebooks/solutions/answers.md`: try first. (`python notebooks/runner.py --solutions 02`
# runs the notebook with the solutions filled in, as the test suite does.)
#
# Each section links to its page in the [derivations of every backward pass](../backward/index.md),
# which go further and quote the library's code.

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


TOLERANCE = 1e-7   # the test suite's tolerance for a correct backward pass


def grade(exercise, forward, backward, inputs):
    """The grader of the exercises: the gradient checker on your backward pass.

    Prints "correct", "WRONG" (with the relative error of every gradient) or "not written yet".
    """
    n_grads = sum(np.issubdtype(a.dtype, np.floating) for a in inputs.values())
    try:
        report = check_function(forward, backward, inputs)
    except NotImplementedError:
        print(f"{exercise}: not written yet. Fill in the stub above, run its cell, then this one.")
        return None
    except Exception as err:   # a wrong shape, a typo: say what happened, keep going
        print(f"{exercise}: WRONG, the backward pass raised {type(err).__name__}: {err}")
        return False
    print(report)
    if len(report.errors) < n_grads:
        print(f"{exercise}: WRONG, it returned {len(report.errors)} gradients; the inputs "
              f"{[n for n, a in inputs.items() if np.issubdtype(a.dtype, np.floating)]} need {n_grads}")
        return False
    ok = report.ok(TOLERANCE)
    results.append((f"exercise: {exercise}", "correct" if ok else "wrong", report.max_error))
    print(f"{exercise}: {'correct' if ok else 'WRONG'} (worst relative error "
          f"{report.max_error:.1e}; a correct backward pass stays below {TOLERANCE:g})")
    return ok


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
# ## 3. The chain rule, and a linear layer entry by entry
#
# ([Derivation page: linear](../backward/linear.md).) All of backpropagation is the chain
# rule of first-year calculus. If $L$ depends on $x$ only through $y = f(x)$, then
# $\frac{dL}{dx} = \frac{dL}{dy}\,\frac{dy}{dx}$. If $x$ reaches $L$ through several
# intermediate numbers $y_1, \dots, y_m$, their contributions add up:
# $$\frac{\partial L}{\partial x} = \sum_j \frac{\partial L}{\partial y_j}\,\frac{\partial y_j}{\partial x} .$$
# Every backward pass below is this sum, written for whole arrays at once. The way to get
# it right is to write one entry first, then recognise a matrix product.
#
# A **linear layer** maps each row $x_n$ (one position) to $y_n = x_n W + b$; entry by entry,
# $$y_{nj} = \sum_i x_{ni} W_{ij} + b_j .$$
# *Gradient of $W_{ij}$.* $W_{ij}$ appears in $y_{nj}$ for every row $n$ (and in no
# $y_{nj'}$ with $j' \ne j$), with $\partial y_{nj} / \partial W_{ij} = x_{ni}$. Summing over
# everything it touches:
# $$dW_{ij} = \sum_n dy_{nj}\, x_{ni} = (x^\top dy)_{ij} .$$
# *Gradient of $x_{ni}$.* $x_{ni}$ appears in $y_{nj}$ for every $j$, with
# $\partial y_{nj} / \partial x_{ni} = W_{ij}$:
# $$dx_{ni} = \sum_j dy_{nj}\, W_{ij} = (dy\, W^\top)_{ni} .$$
# *Gradient of $b_j$.* $b_j$ is added to $y_{nj}$ for every $n$: $db_j = \sum_n dy_{nj}$.
#
# **Check the shapes**: with $x$ of shape $(N, n_\text{in})$ and $W$ of shape
# $(n_\text{in}, n_\text{out})$, $x^\top dy$ is $(n_\text{in}, n_\text{out})$ like $W$, and
# $dy\, W^\top$ is $(N, n_\text{in})$ like $x$. A product whose shape does not match its
# array is wrong; one whose shape matches is usually right. The rows $n$ are every position of
# every sequence: when $x$ has shape `(batch, T, n_in)`, flatten the leading axes first
# (`x.reshape(-1, n_in)`), because the weights are shared by all positions and their gradient
# sums over all of them.
#
# **Exercise 1.** Write the backward pass of the linear layer. `dy` has the shape of `y`;
# return `(dx, dW, db)`, each with the shape of its array.

# %%
def linear_forward_by_hand(x, W, b):
    return x @ W + b, (x, W)


# %%
# EXERCISE: linear
def linear_backward_by_hand(dy, cache):
    """Gradients of y = x W + b: returns (dx, dW, db)."""
    x, W = cache
    raise NotImplementedError("exercise 1: return dx, dW, db")


# %%
lin_inputs = {"x": rng.standard_normal((2, 3, 4)), "W": rng.standard_normal((4, 5)),
              "b": rng.standard_normal(5)}
grade("linear", linear_forward_by_hand, linear_backward_by_hand, lin_inputs)
record("linear (library)", "correct", check_function(F.linear_forward, F.linear_backward, lin_inputs))

# %% [markdown]
# ## 4. Softmax
#
# ([Derivation page: softmax](../backward/softmax.md).)
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
# ## 5. Softmax cross-entropy with label smoothing
#
# ([Derivation page: cross-entropy](../backward/cross-entropy.md).)
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
# **Backward.** From $\partial \log p_k / \partial z_j = \delta_{kj} - p_j$ (section 4),
# $$\frac{\partial \ell}{\partial z_j} = -\sum_k q_k (\delta_{kj} - p_j) = p_j \sum_k q_k - q_j = p_j - q_j,$$
# because $q$ sums to 1. So `dz` $= (p - q)/N$ on counted positions and 0 on padding:
# the prediction minus the target, which is what makes softmax and cross-entropy such a
# good pair.
#
# **Exercise 2.** The forward pass below keeps, in its cache, the probabilities `p`, the
# smoothed targets `q`, which rows are counted, and their number `N`. Write the backward
# pass: `dloss` is the gradient of the final loss with respect to this loss (a number; 1
# when this loss *is* the final loss); return `dz`, of the shape of `z`, zero at padding.

# %%
def cross_entropy_forward_by_hand(z, targets, pad_id=0, eps=0.1):
    """The mean smoothed cross-entropy of logits z (..., K), ignoring targets == pad_id."""
    K = z.shape[-1]
    z2, y = z.reshape(-1, K), targets.reshape(-1)
    counted = y != pad_id
    N = counted.sum()
    shifted = z2 - z2.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    q = np.full(z2.shape, eps / K)
    q[np.arange(len(y)), y] += 1 - eps
    loss = -(q * log_p).sum(axis=1)[counted].sum() / N
    return loss, (np.exp(log_p).reshape(z.shape), q.reshape(z.shape), counted.reshape(targets.shape), N)


# %%
# EXERCISE: cross_entropy
def cross_entropy_backward_by_hand(dloss, cache):
    """dz of the mean smoothed cross-entropy; zero at the padding positions."""
    p, q, counted, N = cache
    raise NotImplementedError("exercise 2: return dz")


# %% [markdown]
# The grader, then the library's pair on the same logits. The targets are integers: the
# checker passes them through and checks only the float input `z`. The library's loss takes
# its options as keywords, so a small lambda fixes them.

# %%
K, pad_id, eps = 6, 0, 0.1
z = rng.standard_normal((2, 5, K)) * 2
targets = rng.integers(1, K, (2, 5))
targets[1, 3:] = pad_id                          # the second sequence is padded
ce_inputs = {"z": z, "targets": targets}

grade("cross_entropy", cross_entropy_forward_by_hand, cross_entropy_backward_by_hand, ce_inputs)
ce_forward = lambda z, t: softmax_cross_entropy_forward(z, t, ignore_index=pad_id, label_smoothing=eps)  # noqa: E731
record("cross-entropy (library)", "correct", check_function(ce_forward, softmax_cross_entropy_backward, ce_inputs))
loss_hand = cross_entropy_forward_by_hand(z, targets)[0]
loss_lib, ce_cache = ce_forward(z, targets)
print(f"loss by hand {loss_hand:.12f}, library {float(loss_lib):.12f}")
print("library's gradient at padding positions is zero:",
      np.all(softmax_cross_entropy_backward(1.0, ce_cache)[1, 3:] == 0))

# %% [markdown]
# **Wrong:** a backward pass that forgets the smoothing, `dz = (p - onehot(y)) / N`, as
# if $\varepsilon$ were 0. With $\varepsilon = 0.1$ the error is of the size of $\varepsilon$:

# %%
def cross_entropy_backward_without_smoothing(dloss, cache):
    p, q, counted, N = cache
    onehot = q == q.max(axis=-1, keepdims=True)
    return dloss * (p - onehot) * counted[..., None] / N          # WRONG: as if eps were 0


record("cross-entropy, smoothing forgotten", "wrong",
       check_function(cross_entropy_forward_by_hand, cross_entropy_backward_without_smoothing, ce_inputs))

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
# ## 6. Layer normalisation
#
# ([Derivation page: layer norm](../backward/layer-norm.md).)
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
# in those two directions.
#
# **Exercise 3.** Write the backward pass of layer norm from the formulas above; the cache
# holds $\hat{x}$, $r$ and $\gamma$. Return `(dx, dgamma, dbeta)`: `x` may have any number of
# leading axes, and `dgamma`, `dbeta` sum over all of them.

# %%
def layer_norm_forward_by_hand(x, gamma, beta, eps=1e-5):
    mu = x.mean(axis=-1, keepdims=True)
    r = 1.0 / np.sqrt(((x - mu) ** 2).mean(axis=-1, keepdims=True) + eps)
    xhat = (x - mu) * r
    return gamma * xhat + beta, (xhat, r, gamma)


# %%
# EXERCISE: layer_norm
def layer_norm_backward_by_hand(dy, cache):
    """Gradients of y = gamma * xhat + beta, xhat = (x - mean) * rstd: (dx, dgamma, dbeta)."""
    xhat, rstd, gamma = cache
    raise NotImplementedError("exercise 3: return dx, dgamma, dbeta")


# %% [markdown]
# The grader, then the library's layer through `check_module`, which checks the input and
# both parameters of the layer (`gamma` starts at 1 and `beta` at 0):

# %%
D = 8
x = rng.standard_normal((2, 3, D)) * 3 + 1
gamma = rng.standard_normal(D)
beta = rng.standard_normal(D)
ln_inputs = {"x": x, "gamma": gamma, "beta": beta}

y_hand, _ = layer_norm_forward_by_hand(x, gamma, beta)
y_lib, _ = F.layer_norm_forward(x, gamma, beta)
print("forward, hand vs library: ", np.abs(y_hand - y_lib).max())
grade("layer_norm", layer_norm_forward_by_hand, layer_norm_backward_by_hand, ln_inputs)
record("layer norm (library nn.LayerNorm)", "correct",
       check_module(nn.LayerNorm(D, dtype=np.float64), x))

# %% [markdown]
# **Wrong:** drop the mean term (as if $\mu$ were a constant), or the variance term (as if
# $r$ were a constant); the parameters' gradients are the right ones:

# %%
def layer_norm_parameter_grads(dy, xhat):
    return (dy * xhat).reshape(-1, xhat.shape[-1]).sum(axis=0), dy.reshape(-1, dy.shape[-1]).sum(axis=0)


def layer_norm_backward_no_mean_term(dy, cache):
    xhat, rstd, gamma = cache
    g = dy * gamma
    dx = rstd * (g - xhat * (g * xhat).mean(axis=-1, keepdims=True))          # WRONG
    return (dx,) + layer_norm_parameter_grads(dy, xhat)


def layer_norm_backward_no_variance_term(dy, cache):
    xhat, rstd, gamma = cache
    g = dy * gamma
    dx = rstd * (g - g.mean(axis=-1, keepdims=True))                          # WRONG
    return (dx,) + layer_norm_parameter_grads(dy, xhat)


record("layer norm, mean term forgotten", "wrong",
       check_function(layer_norm_forward_by_hand, layer_norm_backward_no_mean_term, ln_inputs))
record("layer norm, variance term forgotten", "wrong",
       check_function(layer_norm_forward_by_hand, layer_norm_backward_no_variance_term, ln_inputs))

# %% [markdown]
# The parameters' gradients are still right (about $10^{-10}$), so the report
# points straight at the input's gradient: the checker also tells you *where* to look.
#
# ## 7. Attention
#
# ([Derivation page: attention](../backward/attention.md).)
#
# Forward (notebook 1), with $s = 1/\sqrt{d_k}$ and $M$ the mask:
# $$S = s\, Q K^\top \ (\text{masked entries} \to -10^9), \qquad A = \operatorname{softmax}(S)\ \text{row by row}, \qquad O = A V .$$
#
# Backward, reading the forward from the bottom up. The matrix product $O = A V$ is a
# linear layer with $A$ for the input and $V$ for the weights (no bias), so section 3 already
# did the index-by-index work: $dA = dO\, V^\top$ and $dV = A^\top dO$ (check the shapes:
# each must match its array). The same goes for $S = s\,Q K^\top$. Then, for each batch
# entry and head separately:
# $$dV = A^\top dO, \qquad dA = dO\, V^\top, \qquad
#   dS = A \odot \Big(dA - \textstyle\sum_j (dA \odot A)_{:,j}\Big) \ \text{(softmax, per row)},$$
# $$dQ = s\, dS\, K, \qquad dK = s\, dS^\top Q .$$
# Masked entries have $A = 0$, so $dS = 0$ there: no gradient reaches masked keys.
#
# **Exercise 4.** Write the backward pass of attention (no dropout here). The arrays have
# leading axes `(batch, heads)`: transpose only the last two axes (`np.swapaxes(a, -1, -2)`),
# and reuse `softmax_backward_by_hand` from section 4. Return `(dq, dk, dv)`.

# %%
def attention_forward_by_hand(q, k, v, mask):
    s = 1.0 / np.sqrt(q.shape[-1])
    S = np.where(mask, s * q @ np.swapaxes(k, -1, -2), -1e9)
    A, _ = softmax_forward_by_hand(S)
    return A @ v, (q, k, v, A, s)


# %%
# EXERCISE: attention
def attention_backward_by_hand(dout, cache):
    """Gradients of out = softmax(s q k^T, masked) v: returns (dq, dk, dv)."""
    q, k, v, A, s = cache
    raise NotImplementedError("exercise 4: return dq, dk, dv")


# %% [markdown]
# The grader, then the library's pair on the same arrays:

# %%
B, H, Tq, Tk, dk_, dv_ = 2, 2, 4, 5, 3, 3
q = rng.standard_normal((B, H, Tq, dk_))
k = rng.standard_normal((B, H, Tk, dk_))
v = rng.standard_normal((B, H, Tk, dv_))
mask = np.ones((B, 1, 1, Tk), dtype=bool)
mask[1, ..., 3:] = False                          # the second source has 2 padding keys
att_inputs = {"q": q, "k": k, "v": v, "mask": mask}

out_hand, _ = attention_forward_by_hand(q, k, v, mask)
out_lib, _ = F.attention_forward(q, k, v, mask)
print("forward, hand vs library: ", np.abs(out_hand - out_lib).max())
grade("attention", attention_forward_by_hand, attention_backward_by_hand, att_inputs)
record("attention (library)", "correct", check_function(F.attention_forward, F.attention_backward, att_inputs))

# %% [markdown]
# **Wrong:** forget the scale $s$ on the way back (it is easy to lose, being a constant):

# %%
def attention_backward_forgot_scale(dout, cache):
    dq, dk, dv = F.attention_backward(dout, cache)[:3]
    s = 1.0 / np.sqrt(dk_)
    return dq / s, dk / s, dv                     # WRONG: as if the scores were not scaled


record("attention, scale forgotten", "wrong",
       check_function(F.attention_forward, attention_backward_forgot_scale, att_inputs))

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
# values, and the true gradient of the *key* bias is exactly zero (question 1 below asks
# why). The finite differences there are pure round-off, around $10^{-11}$. That is why the
# checker measures errors on the scale of the whole array: entry by entry, round-off divided
# by an exact zero would look like a failure.
#
# ## 8. A whole Transformer
#
# The same check, applied to every parameter of a small encoder-decoder model at once
# (a random sample of 8 entries per parameter, to keep it quick). The loss is the real
# one: the model's logits, then the smoothed cross-entropy with padding ignored.
# The decoder reads `tgt_in`, the target behind a start token (id 1), and is scored against
# `tgt_out`, the same target followed by an end token (id 2): it learns to predict each next
# token. Notebook 3 explains this shift (teacher forcing) and writes a training step out.

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
#
# ## Questions
#
# Answers in `notebooks/solutions/answers.md`; each can be checked with a few lines of NumPy.
#
# 1. The true gradient of the *key* bias of multi-head attention is exactly zero, whatever
#    the input. Why? (Write out the score $S_{ij}$ with the biases, and look at what the key
#    bias adds to one row of scores.)
# 2. In every row, the entries of `dz` of the cross-entropy sum to zero, and so do the
#    entries of `dx` of layer norm. Why, in one sentence each? What does that say about
#    adding the same number to every logit?
# 3. Take attention without the $1/\sqrt{d_k}$ and with $d_k = 512$: the scores have a
#    standard deviation of about $\sqrt{512} \approx 23$. What happens to the softmax's
#    Jacobian $\operatorname{diag}(p) - p\,p^\top$, and so to `dq` and `dk`?
# 4. Exercise 1 without the `reshape`: `dW = x.T @ dy` on arrays of shape `(2, 3, 4)` and
#    `(2, 3, 5)`. What does NumPy compute, and what would the grader say?
# 5. Why can the gradient check not run in float32, and why does training not need float64?
