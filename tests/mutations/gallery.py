"""The gallery: classic bugs of a hand-written Transformer, one row each.

A row is a :class:`Mutation`: where the bug goes (``file``, relative to the repository
root), the exact text it replaces (``old``, which must occur exactly once in that file),
the buggy text (``new``), the tests that must fail once it is in (pytest node ids), and
one sentence on why they see it. When the code moves, re-target a row by changing its
``file`` and ``old``; :func:`~mutations.harness.apply_mutation` says precisely which row no
longer applies.

``QUICK`` names the few fast mutants the normal test suite runs (``tests/test_mutations.py``);
``python -m tests.mutations`` runs them all.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutation:
    id: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]
    why: str


F = "minitransformer/functional.py"
T = "minitransformer/transformer.py"
O = "minitransformer/optim.py"
L = "minitransformer/losses.py"
D = "minitransformer/decoding.py"
C = "minitransformer/checkpoint.py"
P = "minitransformer/positions.py"
GRADCHECK = "tests/test_gradcheck_layers.py"
POSITIONS = "tests/test_positions.py"
DIAGONAL = "tests/test_diagonal_bias.py"

MUTATIONS = [
    Mutation("layer-norm-dropped-term", F,
             '    dx = rstd * (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True))\n',
             '    dx = rstd * (g - g.mean(axis=-1, keepdims=True))\n',
             (f"{GRADCHECK}::test_layer_norm",),
             "Without the term through the variance, dx no longer matches the finite differences of the input."),
    Mutation("fast-layer-norm-dropped-term", "minitransformer/fast/layers.py",
             "    dx -= xhat * _dot_over_last_axis(dy_xhat, gamma_over_d)\n",
             "",
             ("tests/test_fast_path.py::test_layer_norm",),
             "The fast twin loses the term through the variance; comparing it with the reference path, "
             "output and every gradient, finds it at once."),
    Mutation("fused-layer-norm-dropped-term", "minitransformer/fast/fused.py",
             "    dx[...] = rstd * (g - mean_g - xhat * mean_gx)\n",
             "    dx[...] = rstd * (g - mean_g)\n",
             ("tests/test_fused.py::test_layer_norm",),
             "The GPU kernel's NumPy twin loses the term through the variance; comparing it with the "
             "reference, output and every gradient, finds it on the CPU."),
    Mutation("fused-adam-without-bias-correction", "minitransformer/fast/fused.py",
             "    p -= m / (np.sqrt(v) / bias2_sqrt + eps) * step_size\n",
             "    p -= m / (np.sqrt(v) + eps) * step_size\n",
             ("tests/test_fused.py::test_optimizer_gives_the_same_numbers_bit_for_bit",),
             "The fused Adam update's twin forgets v's bias correction; the strict backend runs it "
             "next to the reference update, bit for bit, and the parameters part at the first step."),
    Mutation("layer-norm-ddof-1", F,
             '    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)\n',
             '    var = ((x - mean) ** 2).sum(axis=-1, keepdims=True) / (x.shape[-1] - 1)\n',
             (f"{GRADCHECK}::test_layer_norm",),
             "The backward pass is derived for the biased variance; with n - 1 the forward pass changes and "
             "the derivative no longer fits it."),
    Mutation("attention-dq-missing-scale", F,
             '    dq = (dscores @ k) * scale\n',
             '    dq = dscores @ k\n',
             (f"{GRADCHECK}::test_attention_self_no_mask",),
             "dQ is off by sqrt(d_k) while the finite differences of q see the scaled scores."),
    Mutation("embedding-buffered-add", F,
             '    scatter_add_rows(dtable, cache.ids, dy * cache.scale)\n',
             '    dtable[cache.ids] += dy * cache.scale\n',
             (f"{GRADCHECK}::test_embedding",),
             "With repeated ids, fancy-index += keeps one update per row instead of the sum."),
    Mutation("linear-weight-gradient-transposed", F,
             '    dw = x.reshape(-1, n_in).T @ dy.reshape(-1, n_out)\n',
             '    dw = (x.reshape(-1, n_in).T @ dy.reshape(-1, n_out)).T\n',
             (f"{GRADCHECK}::test_linear",),
             "dW transposed has the wrong shape (or, for a square W, the wrong entries)."),
    Mutation("softmax-backward-dropped-term", F,
             '    return p * (dp - (dp * p).sum(axis=-1, keepdims=True))\n',
             '    return p * dp\n',
             (f"{GRADCHECK}::test_elementwise",),
             "Only the diagonal of the Jacobian diag(p) - p p^T is left."),
    Mutation("dropout-backward-unscaled", F,
             '    return dy * cache.keep * cache.scale\n',
             '    return dy * cache.keep\n',
             (f"{GRADCHECK}::test_dropout_with_a_fixed_mask",),
             "The forward pass scales kept units by 1/(1-p), the backward pass forgets to."),
    Mutation("sinusoid-exponent-i-over-d", F,
             "np.arange(0, d_model, 2, dtype=np.float64) / d_model",
             "np.arange(0, (d_model + 1) // 2, dtype=np.float64) / d_model",
             ("tests/test_positional_encoding.py",),
             "The table is checked against the paper's formula written out in loops; the table has no "
             "gradient, so no gradient check can see it."),
    Mutation("post-ln-residual-skips-dropout-backward", T,
             "            df, others = _first(self.sublayer.backward(self.dropout.backward(ds)))\n",
             "            df, others = _first(self.sublayer.backward(ds))\n",
             ("tests/test_whole_model_dropout.py::test_whole_model_gradient_check_with_dropout_on",),
             "Only visible with dropout on and the masks held fixed: with dropout 0 its backward is the identity."),
    Mutation("attention-dropout-mask-skipped-in-backward", "minitransformer/fast/attention.py",
             '    if keep is not None:\n        dscores *= keep\n',
             '',
             ("tests/test_whole_model_dropout.py::test_whole_model_gradient_check_with_dropout_on",),
             "The gradient flows to attention weights that the forward pass dropped; only a check with "
             "attention dropout on and its masks fixed can see it."),
    Mutation("post-ln-residual-gradient-dropped", T,
             "            dx = ds + df\n",
             "            dx = df\n",
             ("tests/test_whole_model_dropout.py::test_whole_model_gradient_check_with_dropout_on",),
             "The identity path of the residual block carries no gradient, so everything below it is wrong."),
    Mutation("decoder-memory-gradient-not-summed", T,
             "            dmemory = dmemory + dmem\n",
             "            dmemory = dmem\n",
             ("tests/test_transformer.py::test_whole_model_gradient_check[numpy-untied-post-LN]",),
             "Every decoder layer reads the encoder output; with two layers only the last one's gradient "
             "reaches the encoder."),
    Mutation("causal-mask-peeks", T,
             "xp.tril(xp.ones((length, length), dtype=bool))[None, None]",
             "xp.tril(xp.ones((length, length), dtype=bool), 1)[None, None]",
             ("tests/test_transformer.py::test_decoder_is_causal",),
             "Position t sees t + 1; a gradient check cannot see it (the peeking model is differentiable), "
             "a test that changes a later token can."),
    Mutation("kv-cache-wrong-position", D,
             "    position = caches[0].length if caches else 0\n",
             "    position = caches[0].length + 1 if caches else 0\n",
             ("tests/test_transformer.py::test_kv_cache_gives_the_same_tokens",),
             "The cached decoder encodes each new token one position too far; decoding without the cache disagrees."),
    Mutation("beam-length-penalty-sign", D,
             "    return ((5.0 + length) / 6.0) ** alpha\n",
             "    return ((5.0 + length) / 6.0) ** -alpha\n",
             ("tests/test_beam_search.py::test_scores_are_the_length_normalised_log_probabilities",),
             "The reported scores are recomputed independently on hypotheses of different lengths."),
    Mutation("decoding-may-emit-the-start-token", D,
             "    logits[:, bos_id] = -np.inf\n",
             "",
             ("tests/test_beam_search.py::test_a_beam_as_wide_as_the_search_space_finds_the_exact_best",),
             "The reference normalises over every token but padding and the start token; "
             "a search that may emit the start token scores differently."),
    Mutation("label-smoothing-over-k-minus-1", L,
             "        dz -= eps / n_classes\n",
             "        dz -= eps / (n_classes - 1)\n",
             (f"{GRADCHECK}::test_cross_entropy",),
             "The gradient spreads eps over K - 1 classes while the loss spreads it over K."),
    Mutation("loss-counts-padding", L,
             "    loss = (per_position * valid).sum() / n_valid\n",
             "    loss = per_position.sum() / n_valid\n",
             (f"{GRADCHECK}::test_cross_entropy", f"{GRADCHECK}::test_cross_entropy_ignores_padding"),
             "Padded positions add to the loss while the backward pass still gives them no gradient, "
             "so the finite differences of their logits disagree with it."),
    Mutation("adam-without-bias-correction", O,
             "        step_size = lr / (1.0 - b1 ** t)\n        xp.sqrt(v, out=tmp)\n        tmp /= math.sqrt(1.0 - b2 ** t)\n",
             "        step_size = lr\n        xp.sqrt(v, out=tmp)\n",
             ("tests/test_optim.py::test_matches_torch_float64[adam]",),
             "The first steps differ from torch.optim.Adam by the factors (1 - beta^t)."),
    Mutation("adamw-decay-as-l2", O,
             "    decoupled_weight_decay = True\n",
             "    decoupled_weight_decay = False\n",
             ("tests/test_optim.py::test_matches_torch_float64[adamw]",),
             "AdamW's decay goes through the moments like Adam's L2 term and no longer matches torch.optim.AdamW."),
    Mutation("noam-step-off-by-one", "minitransformer/optim_state.py",
             "        return float(self.schedule(self.step_count + 1))\n",
             "        return float(self.schedule(self.step_count))\n",
             ("tests/test_optim.py::test_adam_with_noam_schedule_matches_torch_lambda_lr",),
             "The schedule counts steps from 1; from 0 the first step has learning rate 0 and every later one lags."),
    Mutation("clip-norm-without-sqrt", "minitransformer/schedules.py",
             "    norm = math.sqrt(float(total_sq))\n",
             "    norm = float(total_sq)\n",
             ("tests/test_optim.py::test_clip_grad_norm_values_without_torch",),
             "The squared norm is compared with max_norm: clipping happens at the wrong size."),
    Mutation("checkpoint-moments-in-float32", C,
             "            arrays[OPTIM_PREFIX + key] = backend.to_numpy(a)\n",
             "            arrays[OPTIM_PREFIX + key] = backend.to_numpy(a).astype(np.float32)\n",
             ("tests/test_checkpoint.py::test_resume_is_bit_identical[adam-noam-float64]",),
             "A float64 run resumed from rounded Adam moments is no longer bit-identical to one that never stopped."),
    Mutation("rope-backward-turns-forward", P,
             "    return _turn(dy, cache.cos, -cache.sin)\n",
             "    return _turn(dy, cache.cos, cache.sin)\n",
             (f"{POSITIONS}::test_rope_gradient",),
             "RoPE's backward turns the gradient by +theta instead of -theta (R instead of R^T): the finite "
             "differences of the input disagree."),
    Mutation("fast-rope-backward-skipped", "minitransformer/fast/attention.py",
             "        dqh, dkh = F.rope_backward(dqh, cache.q_rotary), F.rope_backward(dkh, cache.k_rotary)\n",
             "        pass\n",
             (f"{POSITIONS}::test_fast_equals_reference",),
             "The fast multi-head attention hands back the gradients of the turned queries and keys as if they "
             "were the projections' own; the reference path, output and every gradient, disagrees."),
    Mutation("rope-decoding-key-at-step-position", "minitransformer/sublayers.py",
             "            positions = start + get_array_module(x).arange(x.shape[1])\n",
             "            positions = get_array_module(x).arange(x.shape[1])\n",
             (f"{POSITIONS}::test_cached_decoding_equals_uncached",),
             "A cached decoding step turns its new query and key as if they were at position 0, not at their "
             "absolute position; the logits of the whole prefix run again disagree."),
    Mutation("alibi-decoding-query-at-zero", "minitransformer/sublayers.py",
             "        q_positions, k_positions = start + xp.arange(q_len), xp.arange(k_len)\n",
             "        q_positions, k_positions = xp.arange(q_len), xp.arange(k_len)\n",
             (f"{POSITIONS}::test_cached_decoding_equals_uncached",),
             "ALiBi's bias for a cached decoding step measures distances from position 0 instead of the new "
             "query's absolute position; the logits of the whole prefix run again disagree."),
    Mutation("diagonal-backward-without-sign", P,
             "    g = d_bias * xp.sign(cache.u) * cache.a[:, None, None]           # -d_u\n",
             "    g = d_bias * cache.a[:, None, None]                              # -d_u\n",
             (f"{DIAGONAL}::test_diagonal_bias_gradient",),
             "The diagonal bias's backward takes the derivative of |u| as 1 on both sides of the line, as if "
             "the bias were -a u: the slope's and offset's gradients disagree with the finite differences."),
    Mutation("diagonal-decoding-query-at-zero", D,
             "    return attention.attend(attention.project_queries(y), cache.memory_k, cache.memory_v, cross_mask, start)\n",
             "    return attention.attend(attention.project_queries(y), cache.memory_k, cache.memory_v, cross_mask)\n",
             (f"{DIAGONAL}::test_cached_decoding_equals_uncached",),
             "A cached decoding step builds its cross-attention bias row as if its query were at position 0: "
             "the line it reads the source along no longer moves on; the whole prefix run again disagrees."),
    Mutation("words-split-shortest-first", "minitransformer/protein/data.py",
             "            length = next((n for n in range(min(self._longest, len(sequence) - start), 1, -1)\n",
             "            length = next((n for n in range(2, min(self._longest, len(sequence) - start) + 1)\n",
             ("tests/test_protein_words.py::test_a_sequence_is_cut_into_the_longest_word_that_starts_where_the_last_ended",),
             "A protein is cut into the shortest word that fits instead of the longest: MKVLA becomes MK, VL, A "
             "instead of MKV, L, A."),
]

#: Fast mutants in places unlikely to move, run by the normal suite (tests/test_mutations.py).
QUICK = ("beam-length-penalty-sign", "loss-counts-padding", "clip-norm-without-sqrt",
         "checkpoint-moments-in-float32")
