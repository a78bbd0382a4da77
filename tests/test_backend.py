import numpy as np
import pytest

from minitransformer import backend


def test_numpy_is_the_default(monkeypatch):
    monkeypatch.delenv(backend.BACKEND_ENV_VAR, raising=False)
    assert backend.get_backend() is np
    assert backend.resolve_backend_name() == "numpy"


def test_environment_variable_picks_the_backend(monkeypatch):
    monkeypatch.setenv(backend.BACKEND_ENV_VAR, "NumPy")
    assert backend.resolve_backend_name() == "numpy"
    monkeypatch.setenv(backend.BACKEND_ENV_VAR, "tensorflow")
    with pytest.raises(ValueError, match="unknown backend 'tensorflow'"):
        backend.get_backend()


def test_missing_cupy_gives_one_clear_sentence():
    reason = backend.cupy_unavailable_reason()
    if reason is None:
        pytest.skip("CuPy and a GPU are available on this machine")
    with pytest.raises(backend.BackendUnavailableError) as info:
        backend.get_backend("cupy")
    message = str(info.value)
    assert "\n" not in message and ("pip install" in message or "GPU" in message)


def test_array_module_and_host_copies(xp):
    x = xp.arange(6, dtype=xp.float32).reshape(2, 3)
    assert backend.get_array_module(x) is xp
    host = backend.to_numpy(x)
    assert isinstance(host, np.ndarray) and host.dtype == np.float32
    assert backend.get_array_module(1.0, None) is np


@pytest.mark.parametrize("n_rows", [5, 1000])  # the one-hot product path and the np.add.at path
def test_scatter_add_rows_adds_repeated_indices(xp, n_rows):
    table = xp.zeros((n_rows, 3), dtype=xp.float64)
    idx = xp.asarray(np.array([[0, 2], [2, 4]]))
    values = xp.asarray(np.arange(12, dtype=np.float64).reshape(2, 2, 3))
    backend.scatter_add_rows(table, idx, values)
    expected = np.zeros((n_rows, 3))
    np.add.at(expected, np.array([0, 2, 2, 4]), np.arange(12, dtype=np.float64).reshape(4, 3))
    np.testing.assert_array_equal(backend.to_numpy(table), expected)


def test_seeded_generators_repeat(backend_name):
    a = backend.default_rng(3, backend_name).random(5)
    b = backend.default_rng(3, backend_name).random(5)
    np.testing.assert_array_equal(backend.to_numpy(a), backend.to_numpy(b))
    assert backend.rng_backend_name(backend.default_rng(3, backend_name)) == backend_name


def test_random_bits_are_those_of_integers_and_uniform():
    # four 16-bit numbers from each 64-bit output, in the order integers() takes them
    shape = (3, 4, 5)
    expected = np.random.default_rng(11).integers(0, 65536, size=shape, dtype=np.uint16)
    bits = backend.random_uint16(np.random.default_rng(11), shape)
    assert bits.shape == shape and bits.dtype == np.uint16
    np.testing.assert_array_equal(bits, expected)
    # a size that is not a multiple of 4, and a keep mask's probability
    keep, scale = backend.random_keep_mask(np.random.default_rng(12), (1001, 199), 0.1)
    assert keep.shape == (1001, 199)
    assert abs(keep.mean() - 0.9) < 0.003
    assert scale == 65536.0 / (65536 - 6554)
