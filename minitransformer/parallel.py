"""Data parallelism on the CPU's cores: one model, each batch cut into shards, one thread each.

A training step on a CPU spends about half its time in matrix products, which the BLAS
spreads over every core, and half in element-wise work (softmax, dropout, layer norm,
the additions and copies between them), which NumPy runs on one core. Cutting the batch
into as many shards as there are cores and running the whole forward and backward pass of
each shard in its own thread puts *everything* on every core: each thread runs its products
with a one-thread BLAS, and its element-wise work beside the other's.

The gradient is the same: the loss is a sum over the tokens of the batch, so its
gradient is the sum of the shards' gradients. :class:`DataParallel` keeps one *replica* of
the model per extra shard. A replica shares the model's weights (the same arrays, never
copied) but has gradients, caches and a dropout generator of its own; after the backward
pass the replicas' gradients are added into the model's. This is what PyTorch's
``DataParallel`` does across GPUs, here across the cores of one CPU.

Measured on a 2-core machine, benchmark configuration (64 sequences, d_model 128, 3+3
layers): 2 shards with a one-thread BLAS each take about 20% less time per step than one
pass with a two-thread BLAS (``python -m benchmarks.run --only train``). Small batches gain
nothing: below :data:`MIN_TOKENS_PER_SHARD` tokens a shard, the batch stays whole.

What changes with shards: the dropout masks (each replica draws from its own generator,
reseeded from the model's before every batch), so a seed gives the same run for the same
number of shards, and a run resumed from a checkpoint (which saves the model's generator)
continues as if it had never stopped; and the order of a few floating-point additions. Without dropout the logits and gradients
equal those of one pass to rounding (``tests/test_parallel.py``).
"""
from __future__ import annotations

import copy

import numpy as np

from . import backend as _backend
from . import cpu

#: A shard needs at least this many tokens (source + target positions) to be worth a
#: thread: the codon demo's batches (8 sequences, about 1,600 tokens) ran no faster in 2
#: shards than whole; the benchmark's (64 sequences, 7,900 tokens) ran about 20% faster.
MIN_TOKENS_PER_SHARD = 2048


def default_shards(model) -> int:
    """How many shards :class:`DataParallel` uses when not told: one per thread of
    :func:`~minitransformer.cpu.threads` on the CPU, when the BLAS can be set to
    one thread meanwhile (otherwise the shards' products would compete for the cores);
    1 on a GPU, where one call already keeps the whole device busy."""
    if model.backend_name != "numpy" or not cpu.can_set_blas_threads():
        return 1
    return cpu.threads()


class DataParallel:
    """Runs ``model.forward`` / ``model.backward`` on shards of the batch, one thread each.

    Use it in place of the model for the forward and backward passes; the optimizer, the
    loss and ``zero_grad`` keep using the model itself::

        parallel = DataParallel(model)            # one shard per core
        logits = parallel.forward(src, tgt_in)    # the whole batch's logits
        loss = criterion.forward(logits, tgt_out)
        model.zero_grad()
        parallel.backward(criterion.backward())   # model's .grad = the whole batch's gradient

    ``n_shards`` is the most shards a batch is cut into (default :func:`default_shards`);
    a batch gets fewer when it has fewer sequences, or fewer than
    :data:`MIN_TOKENS_PER_SHARD` tokens per shard.
    """

    def __init__(self, model, n_shards: int | None = None):
        n_shards = default_shards(model) if n_shards is None else n_shards
        if not isinstance(n_shards, (int, np.integer)) or isinstance(n_shards, bool) or n_shards < 1:
            raise ValueError(f"n_shards must be a positive integer, got {n_shards!r}")
        if n_shards > 1 and model.backend_name != "numpy":
            raise ValueError(f"data parallelism runs shards on CPU threads; this model is on "
                             f"{model.backend_name}, where one pass already uses the whole device: use n_shards=1")
        self.model = model
        self.n_shards = int(n_shards)
        self.replicas = [model]   # the others are made at the first batch that is cut
        self._slices = [slice(None)]

    def _replica(self):
        """A copy of the model's modules that shares its weight arrays and has its own
        gradients, caches and dropout generator (reseeded from the model's before every batch
        it runs)."""
        model = self.model
        shared = {id(p.data): p.data for p in model.parameters()}
        for _, module in model.named_modules():   # the last forward pass's caches: not copied
            for name in ("_cache", "_out_cache"):
                if module.__dict__.get(name) is not None:
                    shared[id(module.__dict__[name])] = None
        rng = getattr(model, "dropout_rng", None)
        if rng is not None:   # reseeded before every cut batch (_sync_replicas)
            shared[id(rng)] = _backend.default_rng(0, model.backend_name)
        return copy.deepcopy(model, shared)

    @property
    def last_shards(self) -> int:
        """How many shards the last batch was cut into (1: it ran whole)."""
        return len(self._slices)

    def shards_for(self, n_sequences: int, n_tokens: int) -> int:
        """Shards a batch of ``n_sequences`` sequences and ``n_tokens`` positions is cut into."""
        return max(1, min(self.n_shards, n_sequences, n_tokens // MIN_TOKENS_PER_SHARD))

    def _sync_replicas(self) -> None:
        """Point every replica at the model's current weights (the optimizer, ``load_state_dict``
        or ``to`` may have replaced the arrays), match its mode, clear its gradients, and
        reseed its dropout generator from the model's.

        The seeds are drawn afresh for every batch, so that all randomness flows from the
        model's own generator: a checkpoint saves that generator's state, and a run resumed
        from it draws the same masks as the run that never stopped."""
        replicas = self.replicas[1:len(self._slices)]
        rng = getattr(self.model, "dropout_rng", None)
        if rng is not None and replicas:
            seeds = _backend.to_numpy(rng.integers(0, 2 ** 62, size=len(replicas))).tolist()
            for replica, seed in zip(replicas, seeds):
                fresh = type(replica.dropout_rng.bit_generator)(int(seed))
                replica.dropout_rng.bit_generator.state = fresh.state
        for replica in replicas:
            replica.train(self.model.training)
            for p, q in zip(self.model.parameters(), replica.parameters()):
                q.data = p.data
                if q.grad.shape != p.data.shape or q.grad.dtype != p.data.dtype:
                    q.grad = np.zeros_like(p.data)
                else:
                    q.grad[...] = 0

    def forward(self, src_ids, tgt_in_ids):
        """Logits (B, T, V) of the whole batch: the shards' logits, stacked in batch order."""
        whole = not (isinstance(src_ids, np.ndarray) and isinstance(tgt_in_ids, np.ndarray)
                     and src_ids.ndim == 2 and tgt_in_ids.ndim == 2 and len(src_ids) == len(tgt_in_ids)
                     and self.model.backend_name == "numpy")
        n = 1 if whole else self.shards_for(len(src_ids), src_ids.size + tgt_in_ids.size)
        if n == 1:   # (and malformed input: the model's own checks say what is wrong)
            self._slices = [slice(None)]
            return self.model.forward(src_ids, tgt_in_ids)
        bounds = [round(i * len(src_ids) / n) for i in range(n + 1)]
        self._slices = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
        while len(self.replicas) < n:
            self.replicas.append(self._replica())
        self._sync_replicas()

        def shard(i):
            s = self._slices[i]
            return self.replicas[i].forward(src_ids[s], tgt_in_ids[s])

        # run_in_parallel gives each shard's products a one-thread BLAS: the shard has its core
        return np.concatenate(cpu.run_in_parallel(shard, n), axis=0)

    def backward(self, dlogits):
        """Each shard's backward pass, then the replicas' gradients added into the model's."""
        n = len(self._slices)
        if n == 1:
            return self.model.backward(dlogits)
        cpu.run_in_parallel(lambda i: self.replicas[i].backward(dlogits[self._slices[i]]), n)
        for p, *copies in zip(self.model.parameters(), *(r.parameters() for r in self.replicas[1:n])):
            for q in copies:
                p.grad += q.grad
        return None

    def __repr__(self) -> str:
        return f"DataParallel(n_shards={self.n_shards}, model={type(self.model).__name__})"
