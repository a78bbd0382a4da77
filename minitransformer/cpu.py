"""CPU tuning: threads, the BLAS's thread count and the memory allocator, switched on explicitly.

The math of the package runs on one thread by default, the way NumPy does. Everything here
changes how the process uses the CPU, not what it computes, and it happens only when asked
for: the command line calls :func:`tune_for_training` (with ``--threads``), the benchmarks
do the same, and a user of the library may too. Building a model or a trainer changes none
of it.

* :func:`use_threads` / :func:`threads`: how many threads the library's parallel work (the
  shards of a data-parallel step, attention in slices) may use;
* :func:`run_in_parallel`: independent items on those threads, each with a one-thread BLAS;
* :func:`blas_threads`: the BLAS's own thread count within a block (OpenBLAS only);
* :func:`keep_freed_memory`: the C allocator keeps freed blocks for the next step.

The thread count changes the speed only, never the numbers: the work is cut the same way
whatever the count (see :mod:`minitransformer.parallel`).
"""
from __future__ import annotations

import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np


def tune_for_training(n_threads: int | None = None) -> int:
    """Switch on what makes training fast on this CPU: ``n_threads`` threads for the
    library's parallel work (default: ``$MINITRANSFORMER_THREADS`` when it is set, else
    every CPU the process may use) and an allocator that keeps freed memory
    (:func:`keep_freed_memory`). Returns the thread count. A variable that is not a
    positive integer is a ValueError that names it."""
    if n_threads is None:
        n_threads = _threads_from_environment() or available_cpus()
    use_threads(n_threads)
    keep_freed_memory()
    return threads()


# --------------------------------------------------------------------------------------
# Using every CPU core
# --------------------------------------------------------------------------------------
#: Threads for :func:`run_in_parallel` when :func:`use_threads` was not called.
THREADS_ENV_VAR = "MINITRANSFORMER_THREADS"
_SETTINGS = {"threads": None}
_POOL = {"threads": None, "executor": None}


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask on Linux)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def use_threads(n: int | None) -> None:
    """Let the library's parallel work (:func:`run_in_parallel`) use ``n`` threads; None
    goes back to the default (``$MINITRANSFORMER_THREADS``, else 1)."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
        raise ValueError(f"the number of threads must be a positive integer, got {n!r}")
    _SETTINGS["threads"] = None if n is None else int(n)


def threads() -> int:
    """How many threads the library's parallel work may use: the last :func:`use_threads`,
    else ``$MINITRANSFORMER_THREADS``, else 1 (nothing runs on threads unless asked)."""
    if _SETTINGS["threads"] is not None:
        return _SETTINGS["threads"]
    return _threads_from_environment() or 1


def _threads_from_environment() -> int | None:
    """``$MINITRANSFORMER_THREADS`` as a positive integer, None when unset or empty."""
    value = os.environ.get(THREADS_ENV_VAR, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{THREADS_ENV_VAR}={value!r} is not a positive integer; set it to the "
                         f"number of threads to use (for example {available_cpus()}) or unset it")
    return int(value)


def parallel_threads() -> int:
    """How many threads :func:`run_in_parallel` would use if called here: :func:`threads`,
    or 1 inside one of its own threads (work there is already one share of the cores)."""
    return 1 if getattr(_WORKER, "busy", False) else threads()


def run_in_parallel(function, n_items: int) -> list:
    """``[function(i) for i in range(n_items)]``, spread over :func:`threads` threads.

    Why threads help at all in Python: NumPy releases the interpreter lock inside its
    loops and matrix products, so two threads each running NumPy on their own slice of
    the data really do run on two cores. NumPy's element-wise operations (exp, max,
    +, *) use one core each; BLAS products use several, but the many small products of
    attention use one. The results come back in order; an exception in any item is
    raised here.

    While the items run, BLAS products use one thread each (:func:`blas_threads`): every
    item already has a core, and products that each spread over all cores would queue for
    them (measured: the attention of a 250-sequence batch of 300 tokens, in slices on 2
    threads, took 3.0 s with a two-thread BLAS and 0.28 s with a one-thread BLAS).

    Called from inside one of its own threads (a shard of a data-parallel step that
    reaches the batched attention, say), it runs the items one after the other: the
    cores are already busy, and a thread waiting for its own pool could wait forever.
    """
    threads = parallel_threads()
    if threads <= 1 or n_items <= 1:
        return [function(i) for i in range(n_items)]
    if _POOL["threads"] != threads:
        if _POOL["executor"] is not None:
            _POOL["executor"].shutdown(wait=True)
        _POOL["threads"], _POOL["executor"] = threads, ThreadPoolExecutor(threads, "minitransformer")

    def as_worker(i):
        _WORKER.busy = True
        try:
            return function(i)
        finally:
            _WORKER.busy = False

    with blas_threads(1):
        return list(_POOL["executor"].map(as_worker, range(n_items)))


_WORKER = threading.local()


# --------------------------------------------------------------------------------------
# How many threads the BLAS uses
# --------------------------------------------------------------------------------------
_OPENBLAS = {"searched": False, "control": None}


def _openblas_thread_control():
    """``(set_num_threads, get_num_threads)`` of the OpenBLAS that NumPy loaded, or None.

    NumPy has no call for this, so the functions are looked up in the shared libraries
    this process has mapped (``/proc/self/maps``, Linux only), under the names OpenBLAS
    builds export (NumPy's wheels prefix them ``scipy_``). Elsewhere, or with another
    BLAS (MKL, Accelerate), the answer is None and nothing is changed.
    """
    if _OPENBLAS["searched"]:
        return _OPENBLAS["control"]
    _OPENBLAS["searched"] = True
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line})
    except OSError:
        return None
    names = ("scipy_openblas_{}_num_threads64_", "scipy_openblas_{}_num_threads",
             "openblas_{}_num_threads64_", "openblas_{}_num_threads")
    for path in paths:
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for name in names:
            setter = getattr(library, name.format("set"), None)
            getter = getattr(library, name.format("get"), None)
            if setter is not None and getter is not None:
                setter.argtypes, setter.restype, getter.restype = [ctypes.c_int], None, ctypes.c_int
                _OPENBLAS["control"] = (setter, getter)
                return _OPENBLAS["control"]
    return None


def can_set_blas_threads() -> bool:
    """True when :func:`blas_threads` can really change the BLAS's thread count here."""
    return _openblas_thread_control() is not None


@contextmanager
def blas_threads(n: int):
    """Within the ``with`` block, BLAS products use ``n`` threads (OpenBLAS only).

    A data-parallel step runs one matrix product per core at once, each on its own
    shard; if each product also spread over every core, the products would queue for the
    same cores (measured: 2 shards on a 2-core machine, 40-60 GFLOP/s each with 2 BLAS
    threads, 60-70 with 1). The setting is global to the process, so it is restored on
    leaving the block. Yields True when the setting was applied, False when it could not
    be (see :func:`can_set_blas_threads`).
    """
    control = _openblas_thread_control()
    if control is None:
        yield False
        return
    set_threads, get_threads = control
    before = get_threads()
    if before != n:
        set_threads(n)
    try:
        yield True
    finally:
        if before != n:
            set_threads(before)


_ALLOCATOR = {"tuned": False}


def keep_freed_memory() -> bool:
    """Ask the C memory allocator to keep freed memory for reuse (glibc only; elsewhere a no-op).

    A training step makes large temporaries (attention scores: megabytes each) and frees
    them, every step. By default glibc hands blocks above 128 KB straight back to the
    operating system, so every step maps fresh pages and takes a page fault for each
    4 KB of them (about 25,000 per step of the benchmark configuration), in the kernel,
    where the threads also queue for a lock. Raising the thresholds keeps those blocks in
    the process for the next step: measured 10-15% faster steps. The cost is that the
    process keeps its peak memory. Returns True when the setting was applied.
    """
    if _ALLOCATOR["tuned"]:
        return True
    try:
        import ctypes.util
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3   # from glibc's malloc.h
    ok = (mallopt(m_mmap_threshold, 32 * 2 ** 20)   # the largest glibc accepts
          and mallopt(m_trim_threshold, 2 ** 30) and mallopt(m_top_pad, 64 * 2 ** 20))
    _ALLOCATOR["tuned"] = bool(ok)
    return bool(ok)
