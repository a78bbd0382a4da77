"""Solutions to the exercises of notebook 02 (backpropagation by hand).

Each block below, from ``# %%`` to the next, replaces the notebook's cell that starts with
the same ``# EXERCISE: name`` line. Try the exercises first. To run the notebook with these
solutions filled in (the test suite does this):

    python notebooks/runner.py --solutions 02
"""

# %%
# EXERCISE: linear
def linear_backward_by_hand(dy, cache):
    """Gradients of y = x W + b: returns (dx, dW, db)."""
    x, W = cache
    x2 = x.reshape(-1, W.shape[0])                 # rows: every position of every sequence
    dy2 = dy.reshape(-1, W.shape[1])
    dx = dy @ W.T                                  # dx[n, i] = sum_j dy[n, j] W[i, j]
    dW = x2.T @ dy2                                # dW[i, j] = sum_n x[n, i] dy[n, j]
    db = dy2.sum(axis=0)                           # db[j]    = sum_n dy[n, j]
    return dx, dW, db


# %%
# EXERCISE: cross_entropy
def cross_entropy_backward_by_hand(dloss, cache):
    """dz of the mean smoothed cross-entropy; zero at the padding positions."""
    p, q, counted, N = cache
    return dloss * (p - q) * counted[..., None] / N


# %%
# EXERCISE: layer_norm
def layer_norm_backward_by_hand(dy, cache):
    """Gradients of y = gamma * xhat + beta, xhat = (x - mean) * rstd: (dx, dgamma, dbeta)."""
    xhat, rstd, gamma = cache
    g = dy * gamma                                 # the gradient reaching xhat
    dx = rstd * (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    dgamma = (dy * xhat).reshape(-1, xhat.shape[-1]).sum(axis=0)
    dbeta = dy.reshape(-1, dy.shape[-1]).sum(axis=0)
    return dx, dgamma, dbeta


# %%
# EXERCISE: attention
def attention_backward_by_hand(dout, cache):
    """Gradients of out = softmax(s q k^T, masked) v: returns (dq, dk, dv)."""
    q, k, v, A, s = cache
    dv = np.swapaxes(A, -1, -2) @ dout             # out = A v: a linear layer with weights v
    dA = dout @ np.swapaxes(v, -1, -2)
    dS = softmax_backward_by_hand(dA, A)           # zero where masked, since A is zero there
    dq = s * dS @ k                                # S = s q k^T
    dk = s * np.swapaxes(dS, -1, -2) @ q
    return dq, dk, dv
