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
* random number generators (:func:`default_rng`) and dropout masks (:func:`random_keep_mask`).

A third backend, ``"strict"``, exists for the tests: :mod:`minitransformer.testing.strict`
runs on the CPU but refuses to mix its arrays with NumPy's, as CuPy does, so a forgotten
host/device transfer fails in CI and not on the first GPU run. Everything here treats it as
a device backend, like CuPy.

Nothing here tunes the CPU: threads, the BLAS's thread count and the memory allocator live
in :mod:`minitransformer.cpu`, which only the command line and the benchmarks switch on.
"""
from __future__ import annotations

import math
import os

import numpy as np

BACKEND_ENV_VAR = "MINITRANSFORMER_BACKEND"
BACKENDS = ("numpy", "cupy")
#: The test backend: NumPy underneath, CuPy's rules (see :mod:`minitransformer.testing.strict`).
STRICT = "strict"
_STRICT_MODULE = "minitransformer.testing.strict"

#: dtype used for training when none is given. Gradient checks pass float64 explicitly.
DEFAULT_DTYPE = np.float32

CUPY_INSTALL_HINT = (
    "install the CuPy build for the CUDA version that `nvidia-smi` prints, "
    "`pip install cupy-cuda12x` for CUDA 12 or `pip install cupy-cuda13x` for CUDA 13 "
    "(or the extra `minitransformer[gpu-cuda12]` / `[gpu-cuda13]`), on a machine with an NVIDIA GPU"
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
    if key not in BACKENDS and key != STRICT:
        raise ValueError(f"unknown backend {name!r}: expected one of {', '.join(BACKENDS)} "
                         f"(or {STRICT!r}, the test backend)")
    return key


def get_backend(name: str | None = None):
    """The array module (``numpy`` or ``cupy``; the stand-in for ``cupy`` for ``"strict"``) for
    a backend name.

    Raises :class:`BackendUnavailableError` with one sentence on how to fix it when CuPy
    is asked for but is not installed or has no GPU.
    """
    key = resolve_backend_name(name)
    if key == "numpy":
        return np
    if key == STRICT:
        from .testing.strict import strict
        return strict
    reason = cupy_unavailable_reason()
    if reason is not None:
        raise BackendUnavailableError(reason)
    import cupy
    return cupy


def _device_backend(x) -> str | None:
    """'cupy' or 'strict' for an array (or generator) of a device backend, None otherwise."""
    module = type(x).__module__
    if module.split(".")[0] == "cupy":
        return "cupy"
    return STRICT if module == _STRICT_MODULE else None


def get_array_module(*arrays):
    """numpy or cupy (or the strict backend's stand-in for cupy): the library the given arrays
    belong to (numpy for plain Python values)."""
    for a in arrays:
        device = _device_backend(a)
        if device == "cupy":
            import cupy
            return cupy
        if device == STRICT:
            from .testing.strict import strict
            return strict
    return np


def get_array_module_name(x) -> str:
    """'numpy', 'cupy' or 'strict' for an array or an array module."""
    module = x if hasattr(x, "ndarray") else get_array_module(x)
    name = module.__name__
    return "cupy" if name.startswith("cupy") else STRICT if name == STRICT else "numpy"


def to_numpy(x) -> np.ndarray:
    """A host (NumPy) copy of an array from any backend; NumPy arrays pass through."""
    if _device_backend(x) is not None:
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
    else:  # cupyx.scatter_add on a GPU; the strict backend has its twin
        scatter_add = xp.scatter_add if xp.__name__ == STRICT else _import_cupyx().scatter_add
        scatter_add(table, indices, values.reshape((-1,) + table.shape[1:]))


def _import_cupyx():  # pragma: no cover - GPU only
    import cupyx
    return cupyx


def default_rng(seed=None, backend: str | None = None):
    """A seeded random generator living on the given backend.

    All randomness in the package (initialisation, dropout, data) comes from explicit
    generators like this one, so the same seed on the same machine and backend gives
    the same run, bit for bit.
    """
    xp = get_backend(backend)
    if xp is np:
        return np.random.default_rng(seed)
    return xp.random.default_rng(seed)


def rng_backend_name(rng) -> str:
    """'numpy', 'cupy' or 'strict' for a generator made by :func:`default_rng`."""
    return _device_backend(rng) or "numpy"


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
    return random_uniform(rng, shape, np.float32) >= p, 1.0 / (1.0 - p)


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
