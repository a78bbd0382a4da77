"""The strict backend: CuPy's rules about host and device arrays, on the CPU.

A CuPy array lives in GPU memory, and CuPy refuses to guess when it meets host memory:

* arithmetic between a CuPy array and a NumPy array raises
  ``TypeError: Unsupported type <class 'numpy.ndarray'>``;
* ``np.asarray(x)`` of a CuPy array raises ``TypeError: Implicit conversion to a NumPy
  array is not allowed``: the copy to the host is spelled ``x.get()``;
* ``x[...] = host_array`` raises ``ValueError: non-scalar numpy.ndarray cannot be used
  for fill``;
* a ``cupy.random.Generator`` has ``random``, ``integers`` and ``standard_normal`` but no
  ``permutation``, ``choice`` or ``bit_generator.random_raw``.

NumPy accepts all of these, so code that forgets a transfer passes every CPU test and fails
on the first GPU run. This module gives the CPU the same rules, under the backend name
``"strict"``:

* :class:`StrictArray` holds a NumPy array and behaves as a device array: arithmetic,
  ufuncs and NumPy functions work between strict arrays, Python numbers and NumPy scalars,
  and raise the errors above when a plain ``numpy.ndarray`` takes part; ``.get()`` returns
  a host copy;
* :data:`strict` stands in for the ``cupy`` module: ``strict.zeros``, ``strict.exp``,
  ``strict.asarray`` (which copies host arrays in, as ``cupy.asarray`` does) ... are NumPy's
  functions returning strict arrays, and ``strict.random.default_rng`` makes a
  :class:`StrictGenerator` with the methods of ``cupy.random.Generator``.

:mod:`minitransformer.backend` treats it as a device backend: ``backend.get_backend("strict")``
returns :data:`strict`, ``get_array_module`` of a strict array returns it, ``to_numpy`` calls
``.get()``, and dropout masks take the GPU's path. The tests run every test that takes the
``backend_name`` fixture on it, so a forgotten transfer fails in CI on a machine without a GPU.
The numbers are NumPy's, bit for bit: only the rules change.

The strict device also sees every device operation, which a GPU would run as (roughly) one
kernel launch each: :func:`~minitransformer.testing.launches.count_launches` counts them, and
:func:`launch` runs a fused kernel's NumPy twin (:mod:`minitransformer.fast.fused`) as the one
operation it is on a GPU.
"""
from __future__ import annotations

import types

import numpy as np

from .launches import count as _count

#: The backend name under which :mod:`minitransformer.backend` knows this module.
NAME = "strict"

_HINT = ("a NumPy (host) array met a strict (device) array, as CuPy forbids; move it to the device "
         "first (backend.asarray(a, 'strict') or xp.asarray(a)), or bring the other to the host (.get())")


def _mixing_error(obj):
    return TypeError(f"Unsupported type {type(obj)}: {_HINT}")


def launch(name, twin, args):
    """A fused kernel on the strict device, counted as one operation named ``name``: every
    array argument must be a strict array (CuPy's kernels refuse host arrays too); ``twin``
    runs on the NumPy arrays inside and writes its outputs into them, in place."""
    _count(name)
    return _call(twin, args, {}, counted=False)


class StrictArray:
    """A device array for tests: a NumPy array that refuses to meet plain NumPy arrays.

    Made by the functions of :data:`strict` (``strict.asarray(host)``, ``strict.zeros(...)``)
    rather than directly. Its shape, dtype, methods, operators and views are NumPy's; what
    they return is a strict array again (a 0-d one where NumPy would return a scalar, as
    CuPy does).
    """

    __slots__ = ("_a",)
    __hash__ = None

    def __init__(self, array: np.ndarray):
        self._a = array

    # -- the two doors between host and device -------------------------------------------
    def get(self, stream=None, order="C", out=None) -> np.ndarray:
        """A host (NumPy) copy, as ``cupy.ndarray.get``."""
        if out is not None:
            out[...] = self._a
            return out
        return np.array(self._a, order=order, copy=True)

    def set(self, host, stream=None) -> None:
        """Copy a host array into this one, as ``cupy.ndarray.set``."""
        self._a[...] = host

    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")

    # -- NumPy's protocols: every ufunc and function ends here ----------------------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        for x in inputs:
            if not isinstance(x, (StrictArray, int, float, complex, np.generic)):
                raise _mixing_error(x)
        _count(ufunc.__name__ if method == "__call__" else f"{ufunc.__name__}.{method}")
        return _call(getattr(ufunc, method), inputs, kwargs, counted=False)

    def __array_function__(self, func, types, args, kwargs):
        return _call(func, args, kwargs)

    # -- attributes ------------------------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: StrictArray(self._a.T))
    real = property(lambda self: StrictArray(self._a.real))
    imag = property(lambda self: StrictArray(self._a.imag))

    def item(self, *args):
        return self._a.item(*args)

    def tolist(self):
        return self._a.tolist()

    def fill(self, value):
        _count("fill")
        if isinstance(value, np.ndarray) and value.ndim > 0:
            raise ValueError(f"non-scalar numpy.ndarray cannot be used for fill: {_HINT}")
        self._a.fill(value)

    # -- indexing --------------------------------------------------------------------------
    def __getitem__(self, key):
        key = _index(key)
        if _is_advanced(key) or isinstance(key, np.ndarray):
            _count("take")   # a gather; a basic slice is a view
        return _wrap(self._a[key], {})

    def __setitem__(self, key, value):
        _count("setitem")
        key = _index(key)
        if type(value) is StrictArray:
            value = value._a
        elif isinstance(value, np.ndarray) and value.ndim > 0 and not _is_advanced(key):
            # CuPy copies host values in for integer- and mask-indexed assignment only
            raise ValueError(f"non-scalar numpy.ndarray cannot be used for fill: {_HINT}")
        self._a[key] = value

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    # -- conversions to Python (allowed: CuPy copies the value to the host) ----------------
    def __bool__(self):
        return bool(self._a)

    def __float__(self):
        return float(self._a)

    def __int__(self):
        return int(self._a)

    def __complex__(self):
        return complex(self._a)

    def __format__(self, spec):
        return format(self._a.item() if self._a.ndim == 0 else str(self), spec)

    def __repr__(self):
        return "strict_" + repr(self._a)

    def __str__(self):
        return str(self._a)

    def __copy__(self):
        return StrictArray(self._a.copy())

    def __deepcopy__(self, memo):
        return StrictArray(self._a.copy())

    def __reduce__(self):
        return StrictArray, (self._a,)


# Methods: NumPy's, with strict arrays in and out.
def _method(name):
    def method(self, *args, **kwargs):
        return _call(getattr(self._a, name), args, kwargs, {id(self._a): self})
    method.__name__ = method.__qualname__ = name
    return method


for _name in ("all", "any", "argmax", "argmin", "argsort", "astype", "clip", "conj", "copy",
              "cumprod", "cumsum", "diagonal", "dot", "flatten", "max", "mean", "min", "nonzero",
              "prod", "ravel", "repeat", "reshape", "round", "sort", "squeeze", "std", "sum",
              "swapaxes", "take", "trace", "transpose", "var", "view"):
    setattr(StrictArray, _name, _method(_name))


# Operators: through the ufuncs, so that __array_ufunc__ checks every operand.
def _operators(ufunc, name):
    def op(self, other):
        return ufunc(self, other)

    def rop(self, other):
        return ufunc(other, self)

    def iop(self, other):
        ufunc(self, other, out=(self,))
        return self
    setattr(StrictArray, f"__{name}__", op)
    setattr(StrictArray, f"__r{name}__", rop)
    setattr(StrictArray, f"__i{name}__", iop)


for _ufunc, _name in ((np.add, "add"), (np.subtract, "sub"), (np.multiply, "mul"),
                      (np.true_divide, "truediv"), (np.floor_divide, "floordiv"),
                      (np.remainder, "mod"), (np.power, "pow"), (np.matmul, "matmul"),
                      (np.bitwise_and, "and"), (np.bitwise_or, "or"), (np.bitwise_xor, "xor"),
                      (np.left_shift, "lshift"), (np.right_shift, "rshift")):
    _operators(_ufunc, _name)

for _ufunc, _name in ((np.less, "lt"), (np.less_equal, "le"), (np.greater, "gt"),
                      (np.greater_equal, "ge"), (np.equal, "eq"), (np.not_equal, "ne")):
    setattr(StrictArray, f"__{_name}__", (lambda u: lambda self, other: u(self, other))(_ufunc))

for _ufunc, _name in ((np.negative, "neg"), (np.positive, "pos"), (np.absolute, "abs"),
                      (np.invert, "invert")):
    setattr(StrictArray, f"__{_name}__", (lambda u: lambda self: u(self))(_ufunc))


# --------------------------------------------------------------------------------------
# Crossing the border: unwrap strict arrays on the way into NumPy, wrap results on the way out
# --------------------------------------------------------------------------------------
def _unwrap(obj, originals):
    """``obj`` with strict arrays replaced by their NumPy arrays (remembered in ``originals``,
    so that a result that *is* an argument comes back as the same strict array); a plain
    NumPy array is refused."""
    if type(obj) is StrictArray:
        originals[id(obj._a)] = obj
        return obj._a
    if isinstance(obj, np.ndarray):
        raise _mixing_error(obj)
    if type(obj) in (list, tuple):
        return type(obj)(_unwrap(o, originals) for o in obj)
    return obj


def _wrap(obj, originals):
    if isinstance(obj, np.ndarray):
        original = originals.get(id(obj))
        return StrictArray(obj) if original is None else original
    if isinstance(obj, np.generic):      # CuPy returns 0-d arrays where NumPy returns scalars
        return StrictArray(np.asarray(obj))
    if type(obj) in (list, tuple):
        return type(obj)(_wrap(o, originals) for o in obj)
    return obj


def _call(func, args, kwargs, originals=None, counted=True):
    """``func`` (a NumPy function) on device arguments, returning device results."""
    if counted:
        _count(getattr(func, "__name__", "function"))
    originals = {} if originals is None else originals
    args = _unwrap(args, originals)
    kwargs = {k: _unwrap(v, originals) for k, v in kwargs.items()}
    return _wrap(func(*args, **kwargs), originals)


def _index(key):
    """An index for the NumPy array inside: strict index arrays unwrapped; NumPy index arrays
    are allowed, since CuPy copies them to the device."""
    if type(key) is StrictArray:
        return key._a
    if type(key) is tuple:
        return tuple(k._a if type(k) is StrictArray else k for k in key)
    return key


def _is_advanced(key):
    keys = key if type(key) is tuple else (key,)
    return any(isinstance(k, (np.ndarray, list)) for k in keys)


# --------------------------------------------------------------------------------------
# The stand-in for the cupy module
# --------------------------------------------------------------------------------------
def asarray(a, dtype=None, order=None):
    """``a`` on the device: a strict array is returned as it is (cast if ``dtype`` asks);
    anything else is *copied* in, as ``cupy.asarray`` copies host memory to the GPU."""
    if type(a) is StrictArray:
        cast = a._a if dtype is None else a._a.astype(dtype, copy=False)
        return a if cast is a._a else StrictArray(cast)
    return StrictArray(np.array(_to_host(a), dtype=dtype, order=order or "K", copy=True))


def array(a, dtype=None, copy=True, order="K", ndmin=0):
    """A new device array from ``a`` (host or device), as ``cupy.array``."""
    return StrictArray(np.array(_to_host(a), dtype=dtype, copy=copy, order=order, ndmin=ndmin))


def asnumpy(a):
    """A host copy of ``a``, as ``cupy.asnumpy``."""
    return a.get() if type(a) is StrictArray else np.asarray(a)


def scatter_add(a, slices, value):
    """``a[slices] += value`` with repeated indices added up, in place, as ``cupyx.scatter_add``."""
    np.add.at(a._a, _index(slices), value._a if type(value) is StrictArray else value)


def _to_host(a):
    if type(a) is StrictArray:
        return a._a
    if type(a) in (list, tuple):
        return type(a)(_to_host(x) for x in a)
    return a


class StrictGenerator:
    """A random generator on the strict device: the methods of ``cupy.random.Generator``
    (NumPy's streams, returning strict arrays); the NumPy-only ones raise AttributeError."""

    METHODS = ("random", "integers", "standard_normal", "standard_exponential", "exponential",
               "beta", "gamma", "standard_gamma", "poisson")

    def __init__(self, seed=None):
        self._rng = np.random.default_rng(seed)

    def __getattr__(self, name):
        if name.startswith("_") or name not in self.METHODS:
            raise AttributeError(f"{name!r} is not a method of a device generator "
                                 f"(cupy.random.Generator has {', '.join(self.METHODS)})")
        method = getattr(self._rng, name)

        def draw(*args, **kwargs):
            out = _call(method, args, kwargs)
            return out if type(out) is StrictArray else StrictArray(np.asarray(out))
        return draw

    def __repr__(self):
        return f"StrictGenerator({self._rng.bit_generator!r})"


class _Namespace:
    """A module of NumPy functions that take and return strict arrays: the stand-in for
    ``cupy`` (and its submodules, e.g. ``linalg``). Classes and constants (``float32``,
    ``pi``) are NumPy's own."""

    def __init__(self, name, module, **members):
        self.__name__ = name
        self._module = module
        self.__dict__.update(members)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        attr = getattr(self._module, name)
        if isinstance(attr, types.ModuleType):
            value = _Namespace(f"{self.__name__}.{name}", attr)
        elif callable(attr) and not isinstance(attr, type):
            value = _device_function(attr)
        else:
            value = attr
        setattr(self, name, value)
        return value

    def __repr__(self):
        return f"<strict array namespace {self.__name__!r}>"


def _device_function(func):
    """``func`` taking and returning strict arrays; ufunc methods (``strict.add.at``) too."""
    def device_function(*args, **kwargs):
        return _call(func, args, kwargs)
    device_function.__name__ = getattr(func, "__name__", "function")
    device_function.__doc__ = func.__doc__
    if isinstance(func, np.ufunc):
        for method in ("at", "reduce", "accumulate", "outer", "reduceat"):
            setattr(device_function, method, _device_function(getattr(func, method)))
    return device_function


#: The stand-in for the ``cupy`` module: ``backend.get_backend("strict")``.
strict = _Namespace(NAME, np, ndarray=StrictArray, asarray=asarray, array=array, asnumpy=asnumpy,
                    scatter_add=scatter_add,
                    random=_Namespace(f"{NAME}.random", np.random,
                                      default_rng=StrictGenerator, Generator=StrictGenerator))
