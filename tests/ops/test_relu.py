"""ReLU (npformer/ops/relu.py): gradients away from the kink, the kink itself, dtypes."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from npformer import ops
from npformer.verify.gradcheck import check_gradients

HYP = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


def away_from_kink(rng, shape, margin=0.1):
    """Standard normal entries pushed at least ``margin`` away from 0, both signs kept."""
    x = rng.standard_normal(shape)
    return np.where(x >= 0, x + margin, x - margin)


@HYP
@given(B=st.integers(2, 3), T=st.integers(1, 4), d=st.integers(1, 6), seed=st.integers(0, 2**32 - 1))
def test_relu_gradients_match_finite_differences(be, B, T, d, seed):
    x = away_from_kink(np.random.default_rng(seed), (B, T, d))
    result = check_gradients(ops.relu_forward, ops.relu_backward, dict(x=be.asarray(x)), "relu", seed=seed)
    assert result.passed, f"max_rel_error={result.max_rel_error:.2e} errors={result.errors} problems={result.problems}"


def test_relu_forward_and_backward_values(be):
    x = be.asarray(np.array([[-2.0, -0.5, 0.0, 0.5, 3.0]]))
    dy = be.asarray(np.array([[1.0, 2.0, 3.0, 4.0, 5.0]]))
    y, cache = ops.relu_forward(x)
    dx = ops.relu_backward(dy, cache)
    np.testing.assert_array_equal(be.to_host(y), [[0.0, 0.0, 0.0, 0.5, 3.0]])
    np.testing.assert_array_equal(be.to_host(dx), [[0.0, 0.0, 0.0, 4.0, 5.0]])  # 0 at the kink, as documented


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_relu_contract_keeps_dtype_and_shapes(be, op_contract, dtype):
    x = be.asarray(away_from_kink(np.random.default_rng(0), (2, 3, 4)), dtype=dtype)
    y, grads = op_contract(ops.relu_forward, ops.relu_backward, dict(x=x))
    assert y.shape == x.shape
