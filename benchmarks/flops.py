"""An analytic count of the floating-point operations in one training step.

Only matrix products are counted: they are nearly all of the arithmetic, and they are
what a machine's peak rate is about. A product of an (m x k) matrix by a (k x n) matrix
is m*n dot products of length k, i.e. **2 m k n FLOPs** (one multiply, one add each).

Symbols: B sequences, S source positions, T target positions (decoder inputs), d model
width, f feed-forward width, h heads of d/h features each, V target vocabulary. The
encoder works on B*S rows, the decoder on B*T rows.

Forward, per encoder layer::

    Q,K,V projections         (B*S x d) @ (d x 3d)             2 * B*S * d * 3d
    scores Q K^T              h heads x (S x d/h) @ (d/h x S)   2 * B * S * S * d
    weights @ V               h heads x (S x S) @ (S x d/h)     2 * B * S * S * d
    output projection         (B*S x d) @ (d x d)               2 * B*S * d * d
    feed-forward              two products, d -> f -> d         2 * 2 * B*S * d * f

per decoder layer: the same self-attention and feed-forward on B*T rows and T x T scores,
plus cross-attention::

    Q projection              (B*T x d) @ (d x d)               2 * B*T * d * d
    K,V projections (memory)  (B*S x d) @ (d x 2d)              2 * B*S * d * 2d
    scores, weights @ V       T x S per head                    2 * (2 * B * T * S * d)
    output projection         (B*T x d) @ (d x d)               2 * B*T * d * d

and once, the output projection to the vocabulary, 2 * B*T * d * V.

Backward: every forward product y = x W has two backward products of the same size,
dx = dy W^T and dW = x^T dy (for attention, dA = dout V^T and dV = A^T dout; dQ = dS K
and dK = dS^T Q), so **backward = 2 x forward** and a step is 3 x forward.

Not counted: embeddings (row look-ups), softmax, layer norm, dropout, the loss, the
optimizer (all O(number of elements), no products), and the masked half of the causal
T x T scores, which is computed anyway. The counts use the padded shapes, as computed.
"""
from __future__ import annotations


def _encoder_layer_terms(B, S, d, f):
    return [
        ("self-attn Q,K,V projections", "2*(B*S)*d*3d", 2 * B * S * d * 3 * d),
        ("self-attn scores Q K^T", "2*B*S*S*d", 2 * B * S * S * d),
        ("self-attn weights @ V", "2*B*S*S*d", 2 * B * S * S * d),
        ("self-attn output projection", "2*(B*S)*d*d", 2 * B * S * d * d),
        ("feed-forward, 2 products", "2*2*(B*S)*d*f", 2 * 2 * B * S * d * f),
    ]


def _decoder_layer_terms(B, S, T, d, f):
    return [
        ("self-attn Q,K,V projections", "2*(B*T)*d*3d", 2 * B * T * d * 3 * d),
        ("self-attn scores Q K^T", "2*B*T*T*d", 2 * B * T * T * d),
        ("self-attn weights @ V", "2*B*T*T*d", 2 * B * T * T * d),
        ("self-attn output projection", "2*(B*T)*d*d", 2 * B * T * d * d),
        ("cross-attn Q projection", "2*(B*T)*d*d", 2 * B * T * d * d),
        ("cross-attn K,V projections", "2*(B*S)*d*2d", 2 * B * S * d * 2 * d),
        ("cross-attn scores Q K^T", "2*B*T*S*d", 2 * B * T * S * d),
        ("cross-attn weights @ V", "2*B*T*S*d", 2 * B * T * S * d),
        ("cross-attn output projection", "2*(B*T)*d*d", 2 * B * T * d * d),
        ("feed-forward, 2 products", "2*2*(B*T)*d*f", 2 * 2 * B * T * d * f),
    ]


def training_step_flops(model_config, batch_size: int, src_len: int, tgt_len: int) -> dict:
    """Matmul FLOPs of one training step, term by term.

    Returns ``{"terms": [{"part", "term", "formula", "per_layer", "layers", "forward"}, ...],
    "forward", "backward", "step"}`` (FLOPs, not GFLOPs).
    """
    c = model_config
    B, S, T, d, f, V = batch_size, src_len, tgt_len, c.d_model, c.d_ff, c.tgt_vocab_size
    rows = []
    for part, layers, terms in (("encoder layer", c.n_encoder_layers, _encoder_layer_terms(B, S, d, f)),
                                ("decoder layer", c.n_decoder_layers, _decoder_layer_terms(B, S, T, d, f)),
                                ("output", 1, [("projection to vocabulary", "2*(B*T)*d*V", 2 * B * T * d * V)])):
        for term, formula, flops in terms:
            rows.append({"part": part, "term": term, "formula": formula, "per_layer": flops,
                         "layers": layers, "forward": flops * layers})
    forward = sum(r["forward"] for r in rows)
    return {"symbols": {"B": B, "S": S, "T": T, "d": d, "f": f, "h": c.n_heads, "V": V},
            "terms": rows, "forward": forward, "backward": 2 * forward, "step": 3 * forward}
