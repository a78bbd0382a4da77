"""The protein demo: pre-train an encoder-only Transformer on protein sequences, fine-tune it.

* :mod:`.data` — the vocabulary, the shipped sequences (real UniProtKB entries, see
  ``data/SOURCES.md``), windows, and the train/test split by sequence similarity;
* :mod:`.train` — :func:`~.train.pretrain` (masked language modelling),
  :func:`~.train.finetune` (family classification) and the scores;
* :mod:`.demo` — :func:`~.demo.run_demo`: pre-trained against from scratch, on the same few
  labelled sequences, tested on the similarity split (or a validation split);
* :mod:`.checkpoints` — protein models saved with their kind, and loaded back;
* :mod:`.cli` — ``minitransformer protein pretrain | finetune | demo``;
* :mod:`.build_data` — the script that made the data files.
"""
