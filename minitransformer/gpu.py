"""GPU tuning: fused kernels and TF32 matrix products, switched on explicitly.

The sibling of :mod:`minitransformer.cpu`. Everything here changes how a GPU computes, not
what the model is, and it happens only when asked for; building a model or a trainer changes
none of it.

* :func:`use_fused_kernels` / :func:`fused_kernels_enabled`: the fused element-wise and
  row-wise kernels of :mod:`minitransformer.fast.fused` (dropout, ReLU-dropout, GELU, softmax,
  layer norm, the Adam update), one kernel launch where the fast path launches several. Off
  by default: **no GPU has measured them yet** (see docs/backends.md). They run on the
  device backends only (CuPy, and the strict test backend, which runs their NumPy twins);
  on NumPy, and on the reference path (``model.use_math("reference")``), never.
* :func:`use_tf32` / :func:`tf32_enabled`: whether CuPy's float32 matrix products may use
  the tensor cores' TF32 format (10 bits of mantissa instead of 23).
"""
from __future__ import annotations

import os
import sys

from . import backend

#: ``1`` switches the fused kernels on for the whole process, ``0`` (or unset) off.
FUSED_ENV_VAR = "MINITRANSFORMER_FUSED"
#: The variable CuPy itself reads to allow TF32 in float32 matrix products.
TF32_ENV_VAR = "CUPY_TF32"
_SETTINGS = {"fused": None}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


# --------------------------------------------------------------------------------------
# Fused kernels
# --------------------------------------------------------------------------------------
def use_fused_kernels(enabled: bool | None) -> None:
    """Switch the fused kernels on or off for the process; None goes back to the default
    (``$MINITRANSFORMER_FUSED``, else off)."""
    if enabled is not None and not isinstance(enabled, bool):
        raise ValueError(f"use_fused_kernels takes True, False or None, got {enabled!r}")
    _SETTINGS["fused"] = enabled


def fused_kernels_enabled() -> bool:
    """The last :func:`use_fused_kernels`, else ``$MINITRANSFORMER_FUSED``, else False."""
    if _SETTINGS["fused"] is not None:
        return _SETTINGS["fused"]
    return _flag(FUSED_ENV_VAR, os.environ.get(FUSED_ENV_VAR, ""))


def fused_kernels_active(x) -> bool:
    """Whether the fast path runs the fused kernels on ``x``: switched on, and ``x`` lives on
    a device backend (CuPy, or the strict test backend)."""
    return fused_kernels_enabled() and backend.get_array_module_name(x) != "numpy"


def _flag(name: str, value: str) -> bool:
    key = value.strip().lower()
    if key in _TRUE or key in _FALSE:
        return key in _TRUE
    raise ValueError(f"{name}={value!r} is not a switch: set it to 1 (on) or 0 (off)")


# --------------------------------------------------------------------------------------
# TF32
# --------------------------------------------------------------------------------------
def tf32_enabled() -> bool:
    """Whether ``$CUPY_TF32`` allows TF32 (CuPy's rule: an integer, on when > 0; unset is off).

    A value that is not an integer is a ValueError naming the variable, where CuPy itself would
    fail with a bare ``int()`` error inside the first matrix product.
    """
    value = os.environ.get(TF32_ENV_VAR, "0").strip() or "0"
    try:
        return int(value) > 0
    except ValueError:
        raise ValueError(f"{TF32_ENV_VAR}={value!r} is not an integer: set it to 1 (TF32 allowed) "
                         f"or 0 (full float32)") from None


def use_tf32(enabled: bool) -> None:
    """Allow (True) or forbid (False) TF32 in CuPy's float32 matrix products, for the process.

    CuPy reads ``$CUPY_TF32`` once, the first time a float32 matrix product asks cuBLAS for its
    compute type, and keeps the answer until the process ends. So this must run before the
    first float32 product on the GPU (or set ``CUPY_TF32`` in the shell). Called later, with
    another answer already in force, it raises RuntimeError instead of changing nothing
    silently. TF32 needs compute capability 8.0 (Ampere) or newer; on older GPUs CuPy stays
    with float32, which this reports the same way.
    """
    if not isinstance(enabled, bool):
        raise ValueError(f"use_tf32 takes True or False, got {enabled!r}")
    os.environ[TF32_ENV_VAR] = "1" if enabled else "0"
    in_force = _cupy_float32_compute_type()
    if in_force is not None and in_force != ("tf32" if enabled else "float32"):
        raise RuntimeError(f"CuPy's float32 matrix products already use {in_force}, and CuPy reads "
                           f"{TF32_ENV_VAR} only once per process: call use_tf32({enabled}) before the "
                           f"first float32 product on the GPU, or start the process with "
                           f"{TF32_ENV_VAR}={int(enabled)} (TF32 also needs compute capability 8.0 or newer)")


def _cupy_float32_compute_type() -> str | None:  # pragma: no cover - GPU only
    """'tf32' or 'float32': the compute type CuPy uses for float32 products (deciding it now from
    ``$CUPY_TF32`` if no product has asked yet); None while CuPy is not imported."""
    if "cupy" not in sys.modules:
        return None
    import numpy as np
    from cupy._core import _routines_linalg as linalg
    compute_type = linalg.get_compute_type(np.float32)
    return "tf32" if compute_type == getattr(linalg, "COMPUTE_TYPE_TF32", 7) else "float32"
