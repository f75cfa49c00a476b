"""npformer/backend.py: choosing a backend, refusing mixed devices, and the non-portable primitives."""
import importlib.util
import sys

import numpy as np
import pytest

from npformer import backend
from npformer.backend import backend_of, validate_dtype, cupy_available, get_backend


def test_default_backend_is_numpy(monkeypatch):
    monkeypatch.delenv("NPFORMER_BACKEND", raising=False)
    be = get_backend()
    assert be.name == "numpy" and be.xp is np


@pytest.mark.parametrize("value", ["numpy", "NumPy", ""])
def test_backend_from_environment(monkeypatch, value):
    monkeypatch.setenv("NPFORMER_BACKEND", value)
    assert get_backend().name == "numpy"


def test_environment_with_unknown_backend_is_refused(monkeypatch):
    monkeypatch.setenv("NPFORMER_BACKEND", "jax")
    with pytest.raises(ValueError, match="'jax'.*expected one of numpy, cupy"):
        get_backend()


@pytest.mark.parametrize("name", ["torch", "cpu", "cupyx"])
def test_unknown_backend_name_raises_value_error_naming_the_choices(name):
    with pytest.raises(ValueError, match=f"unknown backend '{name}'; expected one of numpy, cupy"):
        get_backend(name)


def test_a_backend_object_is_passed_through():
    be = get_backend("numpy")
    assert get_backend(be) is be
    assert be == get_backend("numpy") and hash(be) == hash(get_backend("numpy")) and repr(be) == "Backend('numpy')"


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed here")
def test_cupy_without_cupy_installed_says_so():
    with pytest.raises(RuntimeError, match="CuPy is not installed"):
        get_backend("cupy")
    assert cupy_available() is False


def test_cupy_import_failure_says_cupy_is_not_installed(monkeypatch):
    # the same path simulated on any machine: `import cupy` fails, and no cupy backend is cached yet
    monkeypatch.setitem(sys.modules, "cupy", None)
    monkeypatch.setattr(backend, "_CACHE", {"numpy": backend._NUMPY})
    with pytest.raises(RuntimeError, match="CuPy is not installed"):
        get_backend("cupy")
    assert cupy_available() is False


@pytest.mark.parametrize("not_an_array", [[1.0, 2.0], 3.0, "x", {"a": 1}])
def test_backend_of_refuses_non_arrays(not_an_array):
    with pytest.raises(TypeError, match="expected a numpy or cupy array"):
        backend_of(np.zeros(2), not_an_array)


def test_backend_of_numpy_arrays_scalars_and_none():
    assert backend_of(np.zeros(2), None, np.float64(1.0), np.ones((2, 2), dtype=bool)).name == "numpy"
    assert backend_of().name == "numpy"
    assert backend_of(None).name == "numpy"


class FakeCupyArray:
    """Stands in for a cupy.ndarray: the backend recognises arrays by their class's module."""


FakeCupyArray.__module__ = "cupy._core.core"


def test_backend_of_refuses_mixed_cpu_and_gpu_arrays():
    # the mismatch is found before any GPU backend is created, so no GPU is needed
    with pytest.raises(TypeError, match="different devices: argument 1 is a cupy array but an earlier one is a numpy"):
        backend_of(np.zeros(2), FakeCupyArray())
    with pytest.raises(TypeError, match="different devices: argument 2 is a numpy array"):
        backend_of(FakeCupyArray(), None, np.zeros(2))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_scatter_add_accumulates_repeated_indices(be, dtype):
    target = be.xp.zeros((5, 3), dtype=dtype)
    indices = np.array([1, 1, 3, 1, 0, 3])
    values = np.arange(18, dtype=dtype).reshape(6, 3)
    be.scatter_add(target, be.asarray(indices), be.asarray(values))
    expected = np.zeros((5, 3), dtype=dtype)
    for i, v in zip(indices, values):
        expected[i] += v
    result = be.to_host(target)
    assert result.dtype == dtype
    np.testing.assert_array_equal(result, expected)
    assert result[1].tolist() == [12.0, 15.0, 18.0]  # three rows summed, not the last one written


def test_rng_is_deterministic_for_a_seed(be):
    a = be.to_host(be.rng(42).random((4, 5)))
    b = be.to_host(be.rng(42).random((4, 5)))
    c = be.to_host(be.rng(43).random((4, 5)))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert ((0 <= a) & (a < 1)).all()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_rng_draws_in_the_requested_dtype(be, dtype):
    rng = be.rng(0)
    assert rng.random((3,), dtype=dtype).dtype == dtype
    assert rng.standard_normal((3,), dtype=dtype).dtype == dtype


def test_to_host_and_asarray(be):
    a = be.asarray([[1, 2], [3, 4]], dtype="float32")
    assert be.xp is backend_of(a).xp and a.dtype == np.float32
    host = be.to_host(a)
    assert type(host) is np.ndarray
    np.testing.assert_array_equal(host, [[1, 2], [3, 4]])
    be.synchronize()  # a no-op on numpy, waits on cupy


def test_check_dtype():
    assert validate_dtype("float32") == "float32" and validate_dtype("float64") == "float64"
    with pytest.raises(ValueError, match="expected one of float32, float64"):
        validate_dtype("float16")


def test_a_cupy_too_old_for_numpy_is_refused_naming_both():
    from npformer.backend import validate_cupy_version
    validate_cupy_version("13.6.0", "2.4.1")
    validate_cupy_version("13.0.0", "1.26.4")
    with pytest.raises(RuntimeError, match=r"CuPy 13.1.0 does not support NumPy 2.0.2; it needs CuPy >= 13.2"):
        validate_cupy_version("13.1.0", "2.0.2")
    with pytest.raises(RuntimeError, match=r"CuPy 13.4.0 does not support NumPy 2.3.0; it needs CuPy >= 13.6"):
        validate_cupy_version("13.4.0", "2.3.0")
    with pytest.raises(RuntimeError, match="too old"):
        validate_cupy_version("12.3.0", "1.26.4")
