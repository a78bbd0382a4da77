"""Data parallelism on the CPU's cores: one model, each batch cut into shards, one thread each.

A training step on a CPU spends about half its time in matrix products, which the BLAS
spreads over every core, and half in element-wise work (softmax, dropout, layer norm,
the additions and copies between them), which NumPy runs on one core. Cutting the batch
into shards and running the whole forward and backward pass of each shard in its own
thread puts *everything* on every core: each thread runs its products with a one-thread
BLAS, and its element-wise work beside the others'.

The gradient is the same: the loss is a sum over the tokens of the batch, so its
gradient is the sum of the shards' gradients. :class:`DataParallel` keeps one *replica* of
the model per shard. A replica shares the model's weights (the same arrays, never copied)
but has gradients, caches and a dropout generator of its own; after the backward pass the
replicas' gradients are added into the model's. This is what PyTorch's ``DataParallel``
does across GPUs, here across the cores of one CPU.

**How a batch is cut depends on the batch and on one explicit setting, never on the
machine.** A batch of ``B`` sequences and ``N`` positions (source and target, padding
included) is cut into

* by default (``n_shards=None``): the largest power of two that leaves every shard at
  least :data:`MIN_TOKENS_PER_SHARD` (2,048) positions and one sequence, and at most
  :data:`MAX_SHARDS` (16). The benchmark's batches (64 sequences, about 7,900 positions)
  get 2 shards, the codon demo's (8 sequences, about 1,600 positions) stay whole, a batch
  of 33,000 positions gets 16. A power of two shares out evenly over 2, 4, 8 or 16 cores;
  shards of 2,048 positions or more are large enough to keep a core busy (the codon
  demo's batches ran no faster in 2 shards than whole);
* with ``n_shards=k``: ``min(k, B)`` shards, whatever the batch's length; ``k = 1`` runs
  every batch whole, ``model.forward`` / ``model.backward`` as they are. On a GPU every
  batch runs whole: one call already keeps the whole device busy.

The cut is contiguous and in batch order: shard ``i`` holds sequences
``round(i * B / n)`` to ``round((i + 1) * B / n)``. Threads
(:func:`~minitransformer.cpu.threads`) decide only how many shards run at once: with one
thread they run one after another, with 2 threads two at a time (and where the BLAS's
thread count cannot be set, not OpenBLAS, one after another as well, so that the shards'
products do not queue for the same cores). The numbers are the same.

Measured on a 2-core machine, benchmark configuration (64 sequences, d_model 128, 3+3
layers): 2 shards with a one-thread BLAS each take about 20% less time per step than one
pass with a two-thread BLAS (``python -m benchmarks.run --only train``).

What shards change, compared with one pass: the dropout masks and the order of a few
floating-point additions. Shard ``i`` draws its masks from its replica's generator,
reseeded before every cut batch from one number drawn from the model's generator and the
shard index ``i`` alone; a checkpoint saves the model's generator, so a run resumed from it
draws the same masks as the run that never stopped. The shards' gradients are added into
the model's in shard order, 0 first. Without dropout the logits and gradients equal those
of one pass to rounding (``tests/test_parallel.py``); with dropout, 1 thread and 2 threads
give bit-identical parameters.
"""
from __future__ import annotations

import copy

import numpy as np

from . import backend as _backend
from . import cpu

#: The default cut gives every shard at least this many positions (source + target): the
#: codon demo's batches (8 sequences, about 1,600 positions) ran no faster in 2 shards than
#: whole; the benchmark's (64 sequences, 7,900 positions) ran about 20% faster.
MIN_TOKENS_PER_SHARD = 2048

#: The default cut makes at most this many shards (one per core of a 16-core machine).
MAX_SHARDS = 16


class DataParallel:
    """Runs ``model.forward`` / ``model.backward`` on shards of the batch, one thread each.

    Use it in place of the model for the forward and backward passes; the optimizer, the
    loss and ``zero_grad`` keep using the model itself::

        parallel = DataParallel(model)            # the default cut (see the module's text)
        logits = parallel.forward(src, tgt_in)    # the whole batch's logits
        loss = criterion.forward(logits, tgt_out)
        model.zero_grad()
        parallel.backward(criterion.backward())   # model's .grad += the whole batch's gradient

    ``n_shards``: None for the default cut (a power of two, at least
    :data:`MIN_TOKENS_PER_SHARD` positions a shard, at most :data:`MAX_SHARDS`), or ``k``
    to cut every batch into ``min(k, B)`` shards; 1 runs every batch whole. A batch that
    is not cut runs on the model itself, exactly as ``model.forward`` / ``model.backward``.
    """

    def __init__(self, model, n_shards: int | None = None):
        if n_shards is not None and (isinstance(n_shards, bool) or not isinstance(n_shards, (int, np.integer))
                                     or n_shards < 1):
            raise ValueError(f"n_shards must be a positive integer (or None for the default cut), got {n_shards!r}")
        if n_shards is not None and n_shards > 1 and model.backend_name != "numpy":
            raise ValueError(f"data parallelism runs shards on CPU threads; this model is on "
                             f"{model.backend_name}, where one pass already uses the whole device: use n_shards=1")
        self.model = model
        self.n_shards = None if n_shards is None else int(n_shards)
        self.replicas = []   # replicas[i] runs shard i; made at the first batch cut that finely
        self._slices = [slice(None)]

    def shards_for(self, n_sequences: int, n_tokens: int) -> int:
        """Shards a batch of ``n_sequences`` sequences and ``n_tokens`` positions is cut into
        (on the CPU): the batch and ``n_shards`` decide, nothing else."""
        if self.n_shards is not None:
            return max(1, min(self.n_shards, int(n_sequences)))
        n = min(MAX_SHARDS, int(n_sequences), int(n_tokens) // MIN_TOKENS_PER_SHARD)
        return 1 << (n.bit_length() - 1) if n > 1 else 1   # the largest power of two <= n

    def shards_of(self, src_ids, tgt_in_ids) -> int:
        """Shards this batch is cut into: :meth:`shards_for` its size; 1 on a GPU, and for
        malformed input (which the model's own checks then name)."""
        if not (isinstance(src_ids, np.ndarray) and isinstance(tgt_in_ids, np.ndarray)
                and src_ids.ndim == 2 and tgt_in_ids.ndim == 2 and len(src_ids) == len(tgt_in_ids)
                and self.model.backend_name == "numpy"):
            return 1
        return self.shards_for(len(src_ids), src_ids.size + tgt_in_ids.size)

    @property
    def last_shards(self) -> int:
        """How many shards the last batch was cut into (1: it ran whole)."""
        return len(self._slices)

    def forward(self, src_ids, tgt_in_ids):
        """Logits (B, T, V) of the whole batch: the shards' logits, stacked in batch order."""
        n = self.shards_of(src_ids, tgt_in_ids)
        if n == 1:
            self._slices = [slice(None)]
            return self.model.forward(src_ids, tgt_in_ids)
        bounds = [round(i * len(src_ids) / n) for i in range(n + 1)]
        self._slices = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
        while len(self.replicas) < n:
            self.replicas.append(self._replica())
        self._prepare_replicas(n)

        def shard(i):
            s = self._slices[i]
            return self.replicas[i].forward(src_ids[s], tgt_in_ids[s])

        return np.concatenate(self._run(shard, n), axis=0)

    def backward(self, dlogits):
        """Each shard's backward pass, then the shards' gradients added into the model's,
        shard 0 first: the same additions in the same order on every machine."""
        n = len(self._slices)
        if n == 1:
            return self.model.backward(dlogits)
        self._run(lambda i: self.replicas[i].backward(dlogits[self._slices[i]]), n)
        for p, *shard_params in zip(self.model.parameters(), *(r.parameters() for r in self.replicas[:n])):
            for q in shard_params:
                p.grad += q.grad
        return None

    # -- the replicas -------------------------------------------------------------------
    def _replica(self):
        """A copy of the model's modules that shares its weight arrays and has its own
        gradients, caches and dropout generator. The model's caches (of an earlier pass,
        not needed by a cut batch) are dropped first, so that the copy does not copy them."""
        model = self.model.clear_caches()
        shared = {id(p.data): p.data for p in model.parameters()}
        rng = getattr(model, "dropout_rng", None)
        if rng is not None:   # the replica's own, reseeded before every cut batch
            shared[id(rng)] = _backend.default_rng(0, model.backend_name)
        return copy.deepcopy(model, shared)

    def _prepare_replicas(self, n: int) -> None:
        """Point the first ``n`` replicas at the model's current weights (the optimizer,
        ``load_state_dict`` or ``to`` may have replaced the arrays), match its mode, clear
        their gradients, and reseed replica ``i``'s dropout generator from one number drawn
        from the model's generator and ``i`` alone.

        All randomness thus flows from the model's own generator, one draw per cut batch: a
        checkpoint saves that generator's state, and a run resumed from it draws the same
        masks as the run that never stopped, whatever the number of threads."""
        replicas = self.replicas[:n]
        rng = getattr(self.model, "dropout_rng", None)
        if rng is not None:
            batch_seed = int(rng.integers(2 ** 63))
            for i, replica in enumerate(replicas):
                bits = replica.dropout_rng.bit_generator
                bits.state = type(bits)(np.random.SeedSequence(batch_seed, spawn_key=(i,))).state
        for replica in replicas:
            replica.train(self.model.training)
            for p, q in zip(self.model.parameters(), replica.parameters()):
                q.data = p.data
                if q.grad.shape != p.data.shape or q.grad.dtype != p.data.dtype:
                    q.grad = np.zeros_like(p.data)
                else:
                    q.grad[...] = 0

    @staticmethod
    def _run(function, n: int) -> list:
        """``[function(i) for i in range(n)]``: on :func:`~minitransformer.cpu.threads` threads
        with a one-thread BLAS each, or one after another where the BLAS's thread count
        cannot be set (the shards' products would queue for the same cores)."""
        if not cpu.can_set_blas_threads():
            return [function(i) for i in range(n)]
        return cpu.run_in_parallel(function, n)

    def __repr__(self) -> str:
        return f"DataParallel(n_shards={self.n_shards}, model={type(self.model).__name__})"
