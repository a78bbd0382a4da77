"""Shared fixtures: every layer test runs on every available array backend."""
import numpy as np
import pytest

from minitransformer import backend, cpu

_CUPY_REASON = backend.cupy_unavailable_reason()

BACKEND_PARAMS = [
    "numpy",
    pytest.param("cupy", marks=[pytest.mark.gpu,
                                pytest.mark.skipif(_CUPY_REASON is not None, reason=str(_CUPY_REASON))]),
]


@pytest.fixture(params=BACKEND_PARAMS)
def backend_name(request):
    """'numpy', and 'cupy' where CuPy and a GPU are available (skipped with the reason otherwise)."""
    return request.param


@pytest.fixture
def xp(backend_name):
    """The array module of the backend under test."""
    return backend.get_backend(backend_name)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def library_threads_as_by_default():
    """A command run in this process (``cli.main``) sets the library's threads for the process,
    as it should; the next test starts from the default again."""
    yield
    cpu.use_threads(None)
