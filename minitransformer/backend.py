"""The array backend: NumPy on the CPU, CuPy on a GPU, one code path for both.

CuPy mirrors NumPy's interface, so the math in this package never names either
library. A function that receives arrays asks them which library they belong to::

    xp = get_array_module(x)       # numpy or cupy
    y = xp.exp(x - x.max(axis=-1, keepdims=True))

and parameters are created on the backend the model was built for. The few places
where the two libraries really differ live here and nowhere else:

* choosing a backend (by name, or by the ``MINITRANSFORMER_BACKEND`` environment
  variable), with a clear message when CuPy or a GPU is missing;
* moving arrays to host memory (:func:`to_numpy`) and onto a backend (:func:`asarray`);
* scatter-add, the operation the embedding's backward pass needs (:func:`scatter_add_rows`);
* random number generators (:func:`default_rng`) and dropout masks (:func:`random_keep_mask`);
* running independent pieces of work on all CPU cores (:func:`run_in_parallel`), how many
  threads the BLAS may use meanwhile (:func:`blas_threads`), and keeping freed memory for
  reuse (:func:`keep_freed_memory`).
"""
from __future__ import annotations

import ctypes
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np

BACKEND_ENV_VAR = "MINITRANSFORMER_BACKEND"
BACKENDS = ("numpy", "cupy")

#: dtype used for training when none is given. Gradient checks pass float64 explicitly.
DEFAULT_DTYPE = np.float32

CUPY_INSTALL_HINT = (
    "install CuPy for your CUDA version, e.g. `pip install cupy-cuda12x` "
    "(or `pip install minitransformer[gpu]`), on a machine with an NVIDIA GPU"
)


class BackendUnavailableError(RuntimeError):
    """The requested array backend cannot be used on this machine."""


def _import_cupy():
    """Return the cupy module if it is installed *and* can see a CUDA device, else None."""
    try:
        import cupy  # noqa: F401  (optional dependency)
    except Exception:  # ImportError, or a broken CUDA installation raising at import
        return None
    return cupy


def cupy_unavailable_reason() -> str | None:
    """Why the CuPy backend cannot be used here, in one sentence; None if it can."""
    try:
        import cupy
    except ImportError:
        return f"CuPy is not installed: {CUPY_INSTALL_HINT}."
    except Exception as exc:  # pragma: no cover - depends on the machine's CUDA set-up
        return f"CuPy is installed but failed to import ({exc.__class__.__name__}: {exc}); {CUPY_INSTALL_HINT}."
    try:
        n_devices = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # pragma: no cover - depends on the machine
        return (f"CuPy is installed but no usable CUDA GPU was found "
                f"({exc.__class__.__name__}); run on a machine with an NVIDIA GPU and driver, "
                f"or use the numpy backend.")
    if n_devices == 0:  # pragma: no cover
        return "CuPy is installed but this machine has no CUDA GPU; use the numpy backend."
    return None


def cupy_available() -> bool:
    """True when CuPy is installed and a CUDA GPU is usable."""
    return cupy_unavailable_reason() is None


def available_backends() -> list[str]:
    """Names of the backends usable on this machine (numpy always is)."""
    return ["numpy"] + (["cupy"] if cupy_available() else [])


def resolve_backend_name(name: str | None = None) -> str:
    """The backend name to use: ``name`` if given, else ``$MINITRANSFORMER_BACKEND``, else numpy."""
    if name is None:
        name = os.environ.get(BACKEND_ENV_VAR) or "numpy"
    if not isinstance(name, str):
        name = get_array_module_name(name)
    key = name.strip().lower()
    if key not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}: expected one of {', '.join(BACKENDS)}")
    return key


def get_backend(name: str | None = None):
    """The array module (``numpy`` or ``cupy``) for a backend name.

    Raises :class:`BackendUnavailableError` with one sentence on how to fix it when CuPy
    is asked for but is not installed or has no GPU.
    """
    key = resolve_backend_name(name)
    if key == "numpy":
        return np
    reason = cupy_unavailable_reason()
    if reason is not None:
        raise BackendUnavailableError(reason)
    import cupy
    return cupy


def get_array_module(*arrays):
    """numpy or cupy: the library the given arrays belong to (numpy for plain Python values)."""
    for a in arrays:
        if type(a).__module__.split(".")[0] == "cupy":
            import cupy
            return cupy
    return np


def get_array_module_name(x) -> str:
    """'numpy' or 'cupy' for an array or an array module."""
    module = x if hasattr(x, "ndarray") else get_array_module(x)
    return "cupy" if module.__name__.startswith("cupy") else "numpy"


def to_numpy(x) -> np.ndarray:
    """A host (NumPy) copy of an array from either backend; NumPy arrays pass through."""
    if type(x).__module__.split(".")[0] == "cupy":
        return x.get()
    return np.asarray(x)


def asarray(x, backend: str | None = None, dtype=None):
    """``x`` as an array of the given backend (copied to or from the GPU when needed)."""
    xp = get_backend(backend)
    if xp is np:
        return np.asarray(to_numpy(x), dtype=dtype)
    return xp.asarray(x, dtype=dtype)


def scatter_add_rows(table, indices, values) -> None:
    """In place: ``table[indices[i]] += values[i]`` for every i, adding repeated indices up.

    This is the embedding's backward pass: a token that appears many times in the
    batch receives the sum of its gradients. Plain ``table[indices] += values`` would
    be wrong here (repeated indices keep only one update). NumPy has ``np.add.at`` for
    this; for a small vocabulary a one-hot matrix product is faster still, because it is
    a single BLAS call: ``table += onehot(indices).T @ values``.
    """
    xp = get_array_module(table)
    indices = indices.reshape(-1)
    values = values.reshape(indices.shape[0], -1)
    n_rows = table.shape[0]
    if n_rows <= 512:
        onehot = (indices[None, :] == xp.arange(n_rows, dtype=indices.dtype)[:, None]).astype(values.dtype)
        table += (onehot @ values).reshape(table.shape)
    elif xp is np:
        np.add.at(table, indices, values.reshape((-1,) + table.shape[1:]))
    else:  # pragma: no cover - GPU only
        import cupyx
        cupyx.scatter_add(table, indices, values.reshape((-1,) + table.shape[1:]))


def default_rng(seed=None, backend: str | None = None):
    """A seeded random generator living on the given backend.

    All randomness in the package (initialisation, dropout, data) comes from explicit
    generators like this one, so the same seed on the same machine and backend gives
    the same run, bit for bit.
    """
    xp = get_backend(backend)
    if xp is np:
        return np.random.default_rng(seed)
    return xp.random.default_rng(seed)  # pragma: no cover - GPU only


def rng_backend_name(rng) -> str:
    """'numpy' or 'cupy' for a generator made by :func:`default_rng`."""
    return "cupy" if type(rng).__module__.split(".")[0] == "cupy" else "numpy"


def random_keep_mask(rng, shape, p):
    """A boolean dropout mask of ``shape``: True (keep) with probability about 1 - p.

    Returns ``(keep, scale)``, where ``scale = 1 / P(keep)`` exactly, so that
    ``x * keep * scale`` has expectation x. The straightforward mask,
    ``random_uniform(rng, shape) >= p``, costs a float per entry; on the CPU the mask is
    made from 16 random bits per entry instead (``uint16 >= round(p * 2**16)``), which is
    about twice as fast and makes P(keep) differ from 1 - p by less than 1e-5.
    """
    if rng_backend_name(rng) == "numpy":
        threshold = round(p * 65536)
        return random_uint16(rng, shape) >= threshold, 65536.0 / (65536 - threshold)
    return random_uniform(rng, shape, np.float32) >= p, 1.0 / (1.0 - p)  # pragma: no cover - GPU only


def random_uint16(rng, shape):
    """16 uniform random bits per entry of ``shape``, as uint16, from a NumPy generator.

    A 64-bit output of the bit generator holds four of them: ``random_raw`` hands out
    those outputs with no work per number, and viewing them as uint16 splits each into
    four. That is what ``rng.integers(0, 65536, dtype=np.uint16)`` does too (the same
    numbers, in the same order, for a size that is a multiple of 4), at about half the
    speed, and ``rng.bytes()``, a third of it (measured on a 2-core machine; see
    docs/performance.md).
    """
    n = math.prod(shape)
    raw = rng.bit_generator.random_raw(-(-n // 4))
    return raw.view(np.uint16)[:n].reshape(shape)


def random_uniform(rng, shape, dtype):
    """Uniform numbers in [0, 1) of the given float dtype, drawn from ``rng``.

    Asking the generator for the final dtype directly avoids drawing float64 and then
    converting, which would double the cost of every dropout mask.
    """
    return rng.random(shape, dtype=dtype)


def dtype_name(dtype) -> str:
    """'float32' or 'float64' for any dtype-like value."""
    return np.dtype(dtype).name


# --------------------------------------------------------------------------------------
# Using every CPU core
# --------------------------------------------------------------------------------------
#: Threads for :func:`run_in_parallel`; by default the BLAS setting or the usable cores.
THREADS_ENV_VAR = "MINITRANSFORMER_THREADS"
_POOL = {"threads": None, "executor": None}


def cpu_threads() -> int:
    """How many threads element-wise work may use: ``MINITRANSFORMER_THREADS`` (which the
    command line's ``--threads`` sets), else the BLAS thread setting (``OPENBLAS_NUM_THREADS``,
    ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``), else the CPUs this process may use."""
    for variable in (THREADS_ENV_VAR, "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        value = os.environ.get(variable, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def parallel_threads() -> int:
    """How many threads :func:`run_in_parallel` would use if called here: :func:`cpu_threads`,
    or 1 inside one of its own threads (work there is already one share of the cores)."""
    return 1 if getattr(_WORKER, "busy", False) else cpu_threads()


def run_in_parallel(function, n_items: int) -> list:
    """``[function(i) for i in range(n_items)]``, spread over :func:`cpu_threads` threads.

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
