"""The protein demo: pre-train an encoder-only Transformer on protein sequences, fine-tune it.

* :mod:`.data` — the vocabulary, the shipped sequences (real UniProtKB entries, see
  ``data/SOURCES.md``), windows, and the train/test split by sequence similarity;
* :mod:`.train` — :func:`~.train.pretrain` (masked language modelling),
  :func:`~.train.finetune` (family classification), the evaluations and
  :func:`~.train.run_demo`, which does both and compares with training from scratch;
* :mod:`.build_data` — the script that made the data files.
"""
