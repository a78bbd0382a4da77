"""Shared fixtures: every layer test runs on every available array backend."""
import numpy as np
import pytest

from minitransformer import backend, cpu

_CUPY_REASON = backend.cupy_unavailable_reason()

BACKEND_PARAMS = [
    "numpy",
    # NumPy underneath with CuPy's rules: a host array meeting a device array fails here, in CI
    # (minitransformer/testing/strict.py)
    "strict",
    pytest.param("cupy", marks=[pytest.mark.gpu,
                                pytest.mark.skipif(_CUPY_REASON is not None, reason=str(_CUPY_REASON))]),
]


#: Tests that the strict backend skips: its numbers are NumPy's bit for bit, so a
#: finite-difference check of the whole model would repeat the NumPy run at a higher cost
#: and check nothing more. tests/test_backend.py runs the whole model on it once against
#: NumPy instead (every logit, gradient, parameter and optimiser state equal).
STRICT_SKIPS = ("test_whole_model_gradient_check",)


def pytest_collection_modifyitems(items):
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("backend_name") == "strict" \
                and item.originalname in STRICT_SKIPS:
            item.add_marker(pytest.mark.skip(reason="the strict backend computes NumPy's numbers: "
                                                    "see conftest.STRICT_SKIPS"))


@pytest.fixture(params=BACKEND_PARAMS)
def backend_name(request):
    """'numpy', 'strict' (the CPU backend with CuPy's rules), and 'cupy' where CuPy and a GPU
    are available (skipped with the reason otherwise)."""
    return request.param


@pytest.fixture
def pending_on_device(request, backend_name):
    """``pending_on_device(reason, raises)``: the test is expected to fail with ``raises`` on the
    device backends (strict, cupy) until the fix named in ``reason`` lands; xfail(strict=True),
    so it fails as soon as it passes, and the mark must then go."""
    def mark(reason, raises):
        if backend_name != "numpy":
            request.applymarker(pytest.mark.xfail(strict=True, raises=raises, reason=reason))
    return mark


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
