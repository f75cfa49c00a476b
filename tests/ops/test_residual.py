"""Residual add (npformer/ops/residual.py): the gradient is copied to both branches."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from npformer import ops
from npformer.verify.gradcheck import check_gradients

HYP = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


@HYP
@given(B=st.integers(2, 3), T=st.integers(1, 4), d=st.integers(1, 6), seed=st.integers(0, 2**32 - 1))
def test_residual_gradients_match_finite_differences(be, B, T, d, seed):
    rng = np.random.default_rng(seed)
    inputs = dict(x=be.asarray(rng.standard_normal((B, T, d))), s=be.asarray(rng.standard_normal((B, T, d))))
    result = check_gradients(ops.residual_forward, ops.residual_backward, inputs, "residual", seed=seed)
    assert result.passed, f"max_rel_error={result.max_rel_error:.2e} errors={result.errors} problems={result.problems}"


def test_residual_values(be):
    rng = np.random.default_rng(0)
    x, s, dz = (rng.standard_normal((2, 3, 4)) for _ in range(3))
    z, cache = ops.residual_forward(be.asarray(x), be.asarray(s))
    dx, ds = ops.residual_backward(be.asarray(dz), cache)
    np.testing.assert_array_equal(be.to_host(z), x + s)
    np.testing.assert_array_equal(be.to_host(dx), dz)
    np.testing.assert_array_equal(be.to_host(ds), dz)


def test_residual_rejects_different_shapes(be):
    with pytest.raises(ValueError, match="shapes differ"):
        ops.residual_forward(be.xp.ones((2, 3, 4)), be.xp.ones((2, 4, 3)))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_residual_contract_keeps_dtype_and_shapes(be, op_contract, dtype):
    rng = np.random.default_rng(0)
    inputs = dict(x=be.asarray(rng.standard_normal((2, 3, 4)), dtype=dtype),
                  s=be.asarray(rng.standard_normal((2, 3, 4)), dtype=dtype))
    y, grads = op_contract(ops.residual_forward, ops.residual_backward, inputs)
    assert set(grads) == {"x", "s"}
