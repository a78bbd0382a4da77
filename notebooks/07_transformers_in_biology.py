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
# # 7. Transformers in biology
#
# The course built a Transformer that translates RNA into protein: a task with a known
# answer, chosen so that every step can be checked. This closing chapter looks at what the
# same architecture does in biology when the answer is *not* known, through two papers, and
# at what it costs to train such models. Notebook 5 (transfer learning) is the small-scale
# version of the first idea; the arithmetic below is the large-scale version of notebook 0's
# $O(T^2)$.
#
# ## 1. Pre-training on raw sequences, then fine-tuning: PRoBERTa
#
# Protein databases hold hundreds of millions of sequences, but only a small fraction of
# them has been characterised in the laboratory. **Pre-training** uses the sequences alone:
# an encoder reads a protein with some of its tokens hidden and learns to fill them in
# (masked-token prediction, as BERT and RoBERTa do for text). Nothing but the sequences is
# needed, so all of them can be used. To predict that, the encoder has to learn which
# residues go together, and its per-position vectors become a general description of a
# protein. **Fine-tuning** then trains the same network, with a small output layer on top,
# on the few labelled examples of a particular task.
#
# PRoBERTa (Nambiar et al., 2020, *Transforming the language of life: Transformer neural
# networks for protein prediction tasks*, ACM BCB) does this with a RoBERTa encoder
# pre-trained on the protein sequences of UniProtKB/Swiss-Prot (tokenised by byte-pair
# encoding, so a token is a short run of residues), then fine-tuned for two tasks: the
# protein family a sequence belongs to, and whether two proteins interact. The authors
# report results comparable to the best methods of the time for family classification, and
# better ones for interaction prediction, with one pre-trained model serving both.
#
# Notebook 5 does the same thing in miniature: a model trained on the standard genetic code
# (the "pre-training", with plenty of data) is fine-tuned on 500 pairs of the mitochondrial
# code, and learns it from far fewer examples than a model trained from scratch.
#
# **The representation** a pre-trained encoder hands to a task is its output: one vector of
# $d$ numbers per residue. Notebook 9 builds the library's encoder-only model,
# `EncoderOnly`, with a masked-token head on top of this very stack and pre-trains it on
# real proteins; here a `Transformer`'s encoder shows the same kind of output (untrained, so
# the vectors mean nothing yet; what matters is their shape):

# %%
import numpy as np

from minitransformer import Transformer, TransformerConfig
from minitransformer.vocab import Vocabulary

amino_acids = Vocabulary("ACDEFGHIKLMNPQRSTVWY")
protein = "MSETNKNAFQAGQ"                                  # the start of a protein
ids = np.array([amino_acids.encode(protein)])
model = Transformer(TransformerConfig(src_vocab_size=len(amino_acids), tgt_vocab_size=len(amino_acids),
                                      d_model=32, n_heads=4, d_ff=64, n_encoder_layers=2, n_decoder_layers=1,
                                      dropout=0.0, seed=0))
memory, _ = model.encode(ids)
print(f"{len(protein)} residues -> encoder output of shape {memory.shape}: one vector of "
      f"{memory.shape[-1]} numbers per residue")
per_protein = memory.mean(axis=1)                          # one vector per protein, e.g. for its family
print("averaged over the residues, one vector per protein:", per_protein.shape)

# %% [markdown]
# A family classifier puts a linear layer on the averaged vector; an interaction predictor
# reads two proteins. Fine-tuning trains that small layer and (usually) nudges the encoder.
#
# ## 2. Long-range regulation from sequence: Enformer
#
# Whether a gene is expressed depends on DNA far from the gene itself: enhancers can sit
# tens of thousands of base pairs away. Convolutional networks see only as far as their
# receptive field; their predecessor in this line of work, Basenji2, integrated about 20 kb
# around each position. Enformer (Avsec et al., 2021, *Effective gene expression prediction
# from sequence by integrating long-range interactions*, Nature Methods) reads **196,608 base
# pairs** at once and predicts thousands of experimental tracks (gene expression, chromatin
# accessibility, histone marks) along the central part of it, in bins of 128 bp. Attention
# lets information flow across about 100 kb, and the authors report better predictions of
# gene expression than Basenji2, and predicted effects of enhancers that agree better with
# experiments in which they were switched off.
#
# Notebook 0 said attention costs $O(T^2)$ memory. Attention on single base pairs at that
# length is out of reach, which is why Enformer first shrinks the sequence with convolutions
# and pooling to 1,536 positions of 128 bp, and only then applies its Transformer layers:

# %%
for what, positions in [("every base pair", 196_608), ("128-bp positions (after pooling)", 1_536),
                        ("a codon-task source (300 nucleotides)", 300)]:
    scores = positions ** 2
    print(f"{what:>40}: {positions:>7,} positions -> {scores:>15,} scores per head "
          f"= {scores * 4 / 2**30:8.3f} GiB in float32")

# %% [markdown]
# 144 GiB per head per layer at base-pair resolution; 9 MiB after pooling. The codon task
# of this course, at 300 nucleotides, needs a third of a megabyte.
#
# ## 3. What it costs, and who can check it
#
# A talk on this material contrasts the pre-training of earlier protein language models,
# on the order of 128 GPUs for 4 days, with PRoBERTa's 4 GPUs for 18 hours. (Those are the
# talk's figures; look them up in the papers before quoting them.) The point does not depend
# on the exact numbers: a model that a lab can pre-train again on its own hardware is a model
# whose results others can **reproduce**, vary and check, and one that costs a cluster-week
# can only be taken on trust, or downloaded. The same holds at the scale of this course: the
# codon model trains in about five minutes on a laptop, so every figure in the
# [codon page](../codon.md) can be measured again, and every gradient is checked by a test.
#
# Things to keep in mind when reading such papers:
#
# * **Compute is part of the method.** Report the hardware and the hours, as for any
#   experiment, and compare models at equal compute when you can.
# * **Data leakage.** Proteins come in families of similar sequences. A test set drawn at
#   random shares families with the training set and flatters the model; split by sequence
#   similarity or by family instead.
# * **Baselines.** Compare against the simple methods of the field (sequence similarity
#   search, convolutional models), not only against other Transformers.
#
# ## Questions
#
# Answers in `notebooks/solutions/answers.md`.
#
# 1. Masked-token pre-training needs no labels. What does it need instead, and why can it
#    then use far more data than fine-tuning?
# 2. Enformer pools 128 base pairs into one position before its attention layers. What does
#    it give up by doing so, and why is that acceptable for predicting gene expression?
# 3. Why would a test set of proteins drawn at random from a database overestimate how well
#    a model works on a newly discovered protein family?
