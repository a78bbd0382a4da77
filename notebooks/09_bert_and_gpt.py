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
# # 9. BERT and GPT from the same blocks
#
# The course built the encoder–decoder of *Attention is all you need*. The two families of
# Transformers met most often today are its halves:
#
# * **BERT** (an *encoder-only* model): reads the whole sequence at once, each position
#   looking left and right. Pre-trained by filling in hidden tokens (masked language
#   modelling), then fine-tuned, for instance to classify whole sequences.
# * **GPT** (a *decoder-only* model): reads left to right, each position looking only at
#   the ones before it (a causal mask). Trained to predict the next token, it generates text
#   one token at a time.
#
# Neither needs a new layer. Both are token and position embeddings, **the same encoder
# stack** the encoder–decoder uses, and a small head on top. This notebook builds both,
# looks at what is new (masking, the masked-LM head, mean pooling; the causal mask, the KV
# cache and sampling), and ends with the talk's point measured on real proteins: does
# pre-training help a classifier that has only a few labelled sequences?

# %%
import numpy as np

from minitransformer.decoder_only import DecoderOnly, DecoderOnlyConfig, generate, next_token_targets
from minitransformer.encoder_only import IGNORE_INDEX, EncoderOnly, EncoderOnlyConfig, mask_tokens
from minitransformer.losses import CrossEntropyLoss
from minitransformer.protein import data as D
from minitransformer.transformer import Encoder

vocab = D.protein_vocabulary()
print(len(vocab), "tokens:", [vocab.id_to_token(i) for i in range(len(vocab))])

small = dict(vocab_size=len(vocab), d_model=32, n_heads=4, d_ff=64, n_layers=2, max_len=64, seed=0)
bert = EncoderOnly(EncoderOnlyConfig(**small, n_classes=3))
gpt = DecoderOnly(DecoderOnlyConfig(**small))
print(bert)
print("BERT's stack is the encoder-decoder's Encoder:", type(bert.stack) is Encoder)
print("GPT's stack is the same class:               ", type(gpt.stack) is Encoder)
print(f"parameters: BERT {bert.num_parameters():,}, GPT {gpt.num_parameters():,}")

# %% [markdown]
# The two differ in what they add around the stack (`minitransformer/heads.py`), and in the
# attention mask they hand it: BERT hides only padding, GPT also hides the future.
#
# ## 1. BERT: hide some tokens, predict them
#
# `mask_tokens` chooses 15% of the real tokens of each sequence. Of the chosen ones, 80%
# become `<mask>`, 10% a random residue, 10% stay as they are; the targets are the
# original residues at the chosen positions and `IGNORE_INDEX` (-100) elsewhere, so the loss
# reads only those. Why not always `<mask>`: the model never sees `<mask>` when it is used
# later, so it must also predict at positions that look ordinary.

# %%
proteins = D.load_pretraining().sequence.tolist()[:8]
ids = D.encode(vocab, proteins, 64)
inputs, targets = mask_tokens(ids, np.random.default_rng(0), mask_id=vocab.token_to_id(D.MASK),
                              special_ids=D.special_ids(vocab), vocab_size=len(vocab))


def show(row):
    return "".join("_" if t == vocab.token_to_id(D.MASK) else vocab.id_to_token(int(t)) for t in row
                   if t != vocab.pad_id)


print("original:", show(ids[0]))
print("input:   ", show(inputs[0]))
print("target:  ", "".join(vocab.id_to_token(int(t)) if t != IGNORE_INDEX else "." for t in targets[0]))
chosen = targets != IGNORE_INDEX
print(f"chosen {chosen.sum()} of {(ids != vocab.pad_id).sum()} residues; of those "
      f"{(inputs[chosen] == vocab.token_to_id(D.MASK)).mean():.0%} masked, "
      f"{((inputs[chosen] != ids[chosen]) & (inputs[chosen] != vocab.token_to_id(D.MASK))).mean():.0%} "
      f"random, {(inputs[chosen] == ids[chosen]).mean():.0%} unchanged")

# %% [markdown]
# The **masked-LM head** turns each position's last vector into logits over the vocabulary:
# a dense layer, GELU, a layer norm, then the projection back to the vocabulary, which reads
# the token embedding table itself (tied, `logits = h Eᵀ + b`): the embedding table then
# gets gradient from two places, and the two add. One training step is the usual four lines:

# %%
criterion = CrossEntropyLoss(ignore_index=IGNORE_INDEX)
logits = bert.forward(inputs, head="mlm")
loss = criterion.forward(logits, targets)
bert.zero_grad()
bert.backward(criterion.backward())
print("logits", logits.shape, f"loss {float(loss):.3f} (untrained; a uniform guess would score ln 25 = {np.log(25):.3f})")
print("the tied table's gradient norm:", float(np.linalg.norm(bert.embeddings.token.weight.grad)))

# %% [markdown]
# ## 2. BERT: one vector per sequence, by mean pooling
#
# To classify a whole sequence, the classifier reads the **mean of the real tokens'
# vectors**: with $m_{bt} = 1$ at real tokens and $0$ at padding, and $n_b = \sum_t m_{bt}$,
#
# $$\bar h_b = \frac{1}{n_b}\sum_t m_{bt}\, h_{bt}, \qquad
#   \frac{\partial L}{\partial h_{bt}} = \frac{m_{bt}}{n_b}\,\frac{\partial L}{\partial \bar h_b}.$$
#
# BERT itself uses the vector of an extra `[CLS]` token instead; but masked-LM pre-training
# alone never asks anything of that vector, whereas every position's vector is trained. So
# padding must not change the answer: the same protein, alone or padded in a batch with a
# longer one, gets the same class logits.

# %%
bert.eval()
alone = bert.forward(D.encode(vocab, [proteins[0][:20]], 64), head="classify")
padded = bert.forward(D.encode(vocab, [proteins[0][:20], proteins[1]], 64), head="classify")[:1]
print("alone: ", np.round(alone, 5))
print("padded:", np.round(padded, 5))
print("same:", np.allclose(alone, padded, atol=1e-5))

# %% [markdown]
# ## 3. GPT: the causal mask, next-token training
#
# GPT runs the same stack under a causal mask: position $t$ attends to positions $\le t$
# only, so it can be trained to predict token $t+1$ at every position at once. Here a tiny
# GPT learns a repeating motif in a few hundred steps.

# %%
from minitransformer.optim import AdamW
from minitransformer.transformer import causal_mask

print(causal_mask(6)[0, 0].astype(int))

motif = "MKTAYIAKQR"
batch = D.encode(vocab, [(motif * 6)[s:s + 40] for s in range(10)], 40)
gpt = DecoderOnly(DecoderOnlyConfig(**{**small, "dropout": 0.0}))
optimizer, criterion = AdamW(gpt.parameters(), lr=3e-3), CrossEntropyLoss(ignore_index=vocab.pad_id)
x, y = next_token_targets(batch)
for step in range(150):
    loss = criterion.forward(gpt.forward(x), y)
    gpt.zero_grad()
    gpt.backward(criterion.backward())
    optimizer.step()
print(f"next-token loss after 150 steps: {float(loss):.4f}")

# %% [markdown]
# ## 4. GPT: generating with a KV cache, and sampling
#
# To generate token $t+1$ only the last position's vector is needed, and the keys and values
# of the earlier positions do not change as the sequence grows. So each layer keeps them
# (a **KV cache**) and every step runs the layers on the newest token only. The result is
# the same as running the whole model over the whole prefix each time, which is how the
# tests check it:

# %%
prompt = D.encode(vocab, ["MKTA"], 4)
with_cache = generate(gpt, prompt, 20, temperature=0)
without = generate(gpt, prompt, 20, temperature=0, use_cache=False)
print("greedy, cached:  ", vocab.decode(with_cache[0].tolist()))
print("greedy, uncached:", vocab.decode(without[0].tolist()))
print("identical:", np.array_equal(with_cache, without))

# %% [markdown]
# Greedy decoding takes the most likely token each time. **Sampling** draws it instead, from
# the softmax of the logits divided by a *temperature* (below 1 sharper, above 1 flatter),
# optionally kept to the *top k* tokens or to the smallest set whose probability reaches
# *top p*. The draws are seeded, so they repeat:

# %%
for settings in (dict(temperature=1.0), dict(temperature=2.0), dict(temperature=2.0, top_k=3),
                 dict(temperature=2.0, top_p=0.9)):
    out = generate(gpt, prompt, 20, rng=1, **settings)
    print(f"{str(settings):40s}", vocab.decode(out[0].tolist()))

# %% [markdown]
# ## 5. The talk's point, on real proteins
#
# The protein demo (`minitransformer protein demo`, `minitransformer/protein/`) pre-trains
# an encoder-only model by masked language modelling on about 11,500 unlabelled UniProt
# sequences, then fine-tunes it to classify 12 real protein families (UniProt protein
# names) from **a few labelled sequences per family** (1, 2, 4 and 8), and trains the same
# model on the same few sequences from scratch, for the same steps. The test sequences are
# split off by similarity, so no test protein shares a fifth of its 5-mers with a training
# protein of its family: the test measures more than recall of near-copies.
#
# It also asks what the encoder's features hold *before* fine-tuning: each test protein
# goes to the family whose few labelled proteins' mean feature vector is nearest (nearest
# centroid, nothing trained), once with the pre-trained encoder's features, once with those
# of the same encoder at its random initial weights, and once with a profile made by
# counting, nothing learned: how often each of the 400 pairs of neighbouring residues occurs
# (the *dipeptide profile*).
#
# The full demo takes several minutes; the run below is a smaller model for fewer steps,
# one fine-tuning seed, so its numbers are noisier and lower than the full demo's (which
# are in the API page of the protein package, `docs/api/protein.md`).

# %%
import json
import tempfile
from dataclasses import replace

from minitransformer.protein.demo import run_demo
from minitransformer.protein.train import DemoSettings

quick = replace(DemoSettings(), d_model=32, d_ff=64, window=64, batch_size=16, pretrain_steps=150,
                seeds=(0,))
with tempfile.TemporaryDirectory() as folder:
    evaluation = run_demo(folder, quick, log=print)
    from IPython.display import Image, display
    display(Image(filename=f"{folder}/demo.png"))
shown = ("mlm_accuracy", "mlm_unigram_baseline", "classification_accuracy_pretrained", "classification_ci95_pretrained",
         "classification_accuracy_scratch", "classification_ci95_scratch", "classification_difference",
         "classification_ci95_difference", "n_test")
print(json.dumps({k: np.round(evaluation[k], 3).tolist() for k in shown}))
print("labelled per family | pre-trained | from scratch | difference | frozen, nearest centroid: pre-trained / random / dipeptides")
for row in evaluation["by_labels"]:
    print(f"{row['per_family']:19d} | {row['pretrained']:11.3f} | {row['scratch']:12.3f} | {row['difference']:+10.3f} | "
          f"{row['probe_pretrained']:.3f} / {row['probe_random_init']:.3f} / {row['probe_dipeptides']:.3f}")

# %% [markdown]
# Read it with its intervals: two accuracies whose 95% intervals overlap are not shown to
# differ by this test set, and one seed of a small model is a noisy measurement. The
# difference is *paired*: both arms read the same test proteins, so its interval leaves out
# the noise they share (an easy protein, a hard one) and is narrower than the two
# accuracies' own. The masked-LM accuracy against the unigram baseline (always the
# commonest token) says whether pre-training learned anything about sequences at all.
#
# The full demo (`minitransformer protein demo`: a 64-wide model, 900 pre-training steps,
# windows of 128 tokens, 3 seeds, fine-tuning steps in proportion to the labelled
# sequences) reads proteins in **words**, as PRoBERTa does: the 2,000 strings of two to
# four residues that save the most tokens in the pre-training sequences, so that a window
# of 128 tokens holds about 315 residues. On the same 185 test sequences it gave
# masked-LM accuracy 0.103 against 0.003 for always guessing the commonest word, and
# family accuracy (95% intervals; the difference is paired: both arms on the same test
# proteins):
#
# | labelled per family | pre-trained | from scratch | difference | frozen features: pre-trained / random / dipeptides |
# |---|---|---|---|---|
# | 1 | 0.236 [0.181, 0.302] | 0.373 [0.307, 0.445] | -0.137 [-0.184, -0.090] | 0.263 / 0.267 / 0.733 |
# | 2 | 0.505 [0.433, 0.576] | 0.452 [0.382, 0.524] | +0.052 [+0.000, +0.104] | 0.375 / 0.303 / 0.823 |
# | 4 | 0.616 [0.544, 0.683] | 0.616 [0.544, 0.683] | +0.000 [-0.042, +0.042] | 0.416 / 0.337 / 0.849 |
# | 8 | 0.778 [0.713, 0.832] | 0.760 [0.694, 0.816] | +0.018 [-0.021, +0.057] | 0.450 / 0.342 / 0.867 |
#
# Reading in words made both arms far better: with one token per residue the same demo
# reached 0.576 (pre-trained) and 0.589 (from scratch) at 8 per family. **Pre-training
# still does not beat training from scratch at this scale.** At 2 to 8 labelled proteins
# per family the paired difference stays within a few points of zero; at one per family
# the pre-trained encoder is clearly behind. What pre-training does give is a head start:
# at 8 per family it is ahead after 100 of the 300 fine-tuning steps (0.703 against
# 0.634), and the two meet by the end. Its frozen features place test proteins a little
# better than a random encoder's, far worse than counting residue pairs, which classifies
# three test proteins in four from one labelled protein per family. The information is in
# the sequences; a few minutes of masked-LM training on 12,000 proteins teaches a small
# Transformer little of it. Showing PRoBERTa's result takes a protein language model that
# has learned far more (it was pre-trained on all of Swiss-Prot for 18 hours on 4 GPUs);
# `docs/api/protein.md` lists the validation runs and every attempt behind these settings.
#
# ## Questions
#
# 1. Why can the causal mask and the KV cache give exactly the same logits as running the
#    whole prefix, but a BERT model cannot generate this way?
# 2. Mean pooling divides by the number of real tokens. What would go wrong in the padding
#    check above if it divided by the padded length instead?
# 3. The demo fine-tunes both arms for the same number of steps. Why is "same steps" the
#    fair comparison, and what would a fair comparison at equal *compute* have to include?
# 4. The dipeptide profile beats both Transformers. Why can a model that reads every pair
#    of neighbouring residues still fail to find that signal from 12 labelled proteins, and
#    what would you change first: the pooling, the model's size, or the pre-training?
