"""Fused GPU kernels that the CPU can test: each one is its CUDA source *and* a NumPy twin.

On a GPU, a small model's step is bound by kernel launches: ``y = x * keep * scale`` is two
launches and two walks through memory, where one kernel does it in one. CuPy compiles such a
kernel from a few lines of CUDA (``cupy.ElementwiseKernel`` for one element at a time,
``cupy.RawKernel`` for one row per thread block). But CUDA cannot run here, nor in CI. So a
:class:`FusedKernel` holds two things side by side:

* ``cuda``: the CUDA source, compiled by CuPy (lazily, once per process and dtype) and
  launched when the arrays are CuPy arrays;
* ``twin``: the same formula written in NumPy, operation for operation, which runs on NumPy
  arrays, and on the strict test backend as *one* device operation
  (:func:`minitransformer.testing.strict.launch`), so that the wiring, the host/device
  discipline and the in-place updates are tested on every machine.

A kernel is called with its inputs, then its outputs, in the order of its parameters, and
writes into the outputs (which may be inputs too: the Adam update changes p, m and v in
place). Scalars must be NumPy scalars of the kernel's dtype (``x.dtype.type(s)``): a Python
float would reach a ``RawKernel`` as a double. ``tests/test_fused.py`` proves every twin
equal to the reference function it replaces; on a GPU it also proves every compiled kernel
equal to its twin, which is the one thing the CPU cannot check.

The element-wise kernels are compiled with ``--fmad=false``: CUDA would otherwise contract
``a * b + c`` into one rounding, and the kernel would no longer give NumPy's numbers (the
Adam, dropout and ReLU kernels give them bit for bit on a GPU; GELU's ``tanh`` and the row
kernels' sums in another order, to rounding).
"""
from __future__ import annotations

import numpy as np

from ..backend import get_array_module, get_array_module_name

#: Threads per block of the row kernels: one block per row, each thread a stride of it. A power
#: of two, for the tree reduction in shared memory.
ROW_THREADS = 128
_NO_FMA = ("--fmad=false",)


class FusedKernel:
    """One fused kernel: a name, its CUDA source, its NumPy twin; call it like the twin."""

    def __init__(self, name: str, cuda: str, twin):
        self.name, self.cuda, self.twin = name, cuda, twin
        self._compiled = {}

    def __call__(self, *args):
        xp = get_array_module(*args)
        name = get_array_module_name(xp)
        if name == "numpy":
            return self.twin(*args)
        if name == "strict":
            from ..testing.strict import launch
            return launch(self.name, self.twin, args)
        dtype = next(a.dtype for a in args if isinstance(a, xp.ndarray))  # pragma: no cover - GPU only
        return self._launch(self.compiled(xp, dtype), args)               # pragma: no cover - GPU only

    def compiled(self, cupy, dtype):  # pragma: no cover - GPU only
        """The CuPy kernel, made on the first call (CuPy compiles it on its first launch)."""
        key = self._dtype_key(dtype)
        if key not in self._compiled:
            self._compiled[key] = self._make(cupy, dtype)
        return self._compiled[key]

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r})"


class ElementwiseFused(FusedKernel):
    """A ``cupy.ElementwiseKernel``: ``cuda`` is the loop body, run once per element, with the
    parameters ``in_params`` and ``out_params`` (CuPy's syntax: ``"T x, bool keep"``; ``T``
    takes the dtype of the arrays). One kernel serves every dtype."""

    def __init__(self, name, in_params, out_params, cuda, twin):
        super().__init__(name, cuda, twin)
        self.in_params, self.out_params = in_params, out_params

    def _dtype_key(self, dtype):  # pragma: no cover - GPU only
        return None

    def _make(self, cupy, dtype):  # pragma: no cover - GPU only
        return cupy.ElementwiseKernel(self.in_params, self.out_params, self.cuda, self.name,
                                      options=_NO_FMA)

    def _launch(self, kernel, args):  # pragma: no cover - GPU only
        kernel(*args)


class RowFused(FusedKernel):
    """A ``cupy.RawKernel`` with one thread block per row of its first argument, a C-contiguous
    (rows, d) array; ``cuda`` is written for the type ``real`` (float or double) and receives
    ``int n_rows, int d`` after the arguments. :data:`ROW_HELPERS` gives it block-wide sums
    and maxima."""

    def _dtype_key(self, dtype):  # pragma: no cover - GPU only
        return np.dtype(dtype).name

    def _make(self, cupy, dtype):  # pragma: no cover - GPU only
        real = {"float32": "float", "float64": "double"}[np.dtype(dtype).name]
        source = f"typedef {real} real;\n#define ROW_THREADS {ROW_THREADS}\n{ROW_HELPERS}\n{self.cuda}"
        return cupy.RawKernel(source, self.name)

    def _launch(self, kernel, args):  # pragma: no cover - GPU only
        n_rows, d = args[0].shape
        if n_rows and d:   # a grid of 0 blocks is an invalid launch
            kernel((n_rows,), (ROW_THREADS,), tuple(args) + (np.int32(n_rows), np.int32(d)))


#: Block-wide reductions for the row kernels: every thread of the block passes its partial
#: value and gets the whole row's back; ``buf`` is ROW_THREADS numbers of shared memory.
ROW_HELPERS = r"""
__device__ real block_sum(real v, real* buf) {
    buf[threadIdx.x] = v;
    __syncthreads();
    for (int k = ROW_THREADS / 2; k > 0; k >>= 1) {
        if (threadIdx.x < k) buf[threadIdx.x] += buf[threadIdx.x + k];
        __syncthreads();
    }
    real total = buf[0];
    __syncthreads();   // buf is free again for the next reduction
    return total;
}

__device__ real block_max(real v, real* buf) {
    buf[threadIdx.x] = v;
    __syncthreads();
    for (int k = ROW_THREADS / 2; k > 0; k >>= 1) {
        if (threadIdx.x < k && buf[threadIdx.x + k] > buf[threadIdx.x]) buf[threadIdx.x] = buf[threadIdx.x + k];
        __syncthreads();
    }
    real top = buf[0];
    __syncthreads();
    return top;
}
"""


def as_rows(a):
    """``a`` (..., d) as a C-contiguous (rows, d) array, copied only when it must be."""
    rows = a.reshape(-1, a.shape[-1])
    return rows if rows.flags.c_contiguous else get_array_module(a).ascontiguousarray(rows)
