"""LayerNorm (npformer/ops/layernorm.py): gradients with gamma != 1, normalisation, constant rows."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from npformer import ops
from npformer.verify.gradcheck import check_gradients
from npformer.ops.layernorm import LAYERNORM_EPS

HYP = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


def ln_inputs(be, rng, B, T, d, dtype="float64"):
    """x with a per-row offset and scale; gamma far from 1, beta nonzero."""
    x = rng.standard_normal((B, T, d)) * rng.uniform(0.5, 3.0, (B, T, 1)) + rng.standard_normal((B, T, 1))
    gamma = 1.0 + 0.5 * rng.standard_normal(d)
    beta = 0.5 * rng.standard_normal(d)
    return dict(x=be.asarray(x, dtype=dtype), gamma=be.asarray(gamma, dtype=dtype),
                beta=be.asarray(beta, dtype=dtype))


@HYP
@given(B=st.integers(2, 3), T=st.integers(1, 4), d=st.integers(2, 8), seed=st.integers(0, 2**32 - 1))
def test_layernorm_gradients_match_finite_differences(be, B, T, d, seed):
    inputs = ln_inputs(be, np.random.default_rng(seed), B, T, d)
    result = check_gradients(ops.layernorm_forward, ops.layernorm_backward, inputs, "layernorm", seed=seed)
    assert result.passed, f"max_rel_error={result.max_rel_error:.2e} errors={result.errors} problems={result.problems}"


@HYP
@given(d=st.integers(2, 16), seed=st.integers(0, 2**32 - 1))
def test_layernorm_output_has_mean_0_and_variance_1_with_unit_gamma(be, d, seed):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((2, 3, d))
    x = 3.0 * (z - z.mean(-1, keepdims=True)) / z.std(-1, keepdims=True) + 5.0  # every row: variance 9 >> eps
    y = be.to_host(ops.layernorm_forward(be.asarray(x), be.xp.ones(d), be.xp.zeros(d))[0])
    var_x = x.var(axis=-1)  # biased variance, eps inside the root
    np.testing.assert_allclose(y.mean(axis=-1), 0.0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=-1), var_x / (var_x + LAYERNORM_EPS), rtol=1e-10)
    np.testing.assert_allclose(y.var(axis=-1), 1.0, atol=1e-5)


def test_layernorm_forward_matches_the_formula(be):
    rng = np.random.default_rng(1)
    inputs = ln_inputs(be, rng, 2, 3, 6)
    x, gamma, beta = (be.to_host(inputs[k]) for k in ("x", "gamma", "beta"))
    expected = gamma * (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + LAYERNORM_EPS) + beta
    np.testing.assert_allclose(be.to_host(ops.layernorm_forward(**inputs)[0]), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_layernorm_constant_row_gives_finite_output_beta(be, dtype):
    x = be.xp.full((2, 3, 4), 7.0, dtype=dtype)
    gamma = be.asarray([1.5, -2.0, 0.5, 3.0], dtype=dtype)
    beta = be.asarray([0.1, 0.2, 0.3, 0.4], dtype=dtype)
    y, cache = ops.layernorm_forward(x, gamma, beta)
    dx, dgamma, dbeta = ops.layernorm_backward(be.xp.ones_like(y), cache)
    assert np.isfinite(be.to_host(y)).all() and np.isfinite(be.to_host(dx)).all()
    np.testing.assert_allclose(be.to_host(y), np.broadcast_to(be.to_host(beta), (2, 3, 4)), rtol=1e-6)


@HYP
@given(d=st.integers(2, 8), seed=st.integers(0, 2**32 - 1))
def test_layernorm_dx_sees_gamma_only_through_dy_times_gamma(be, d, seed):
    # dx depends on (dy, gamma) only through g = dy * gamma: a backward that forgot gamma fails this
    rng = np.random.default_rng(seed)
    inputs = ln_inputs(be, rng, 2, 3, d)
    dy = be.asarray(rng.standard_normal((2, 3, d)))
    _, cache = ops.layernorm_forward(**inputs)
    dx = ops.layernorm_backward(dy, cache)[0]
    _, cache_1 = ops.layernorm_forward(inputs["x"], be.xp.ones(d), inputs["beta"])
    dx_1 = ops.layernorm_backward(dy * inputs["gamma"], cache_1)[0]
    np.testing.assert_allclose(be.to_host(dx), be.to_host(dx_1), rtol=1e-10, atol=1e-12)
    # LayerNorm ignores a shift of its input row, so every row of dx sums to 0
    np.testing.assert_allclose(be.to_host(dx).sum(axis=-1), 0.0, atol=1e-10)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_layernorm_contract_keeps_dtype_and_shapes(be, op_contract, dtype):
    inputs = ln_inputs(be, np.random.default_rng(0), 2, 3, 5, dtype=dtype)
    y, grads = op_contract(ops.layernorm_forward, ops.layernorm_backward, inputs)
    assert y.shape == (2, 3, 5)
    assert set(grads) == {"x", "gamma", "beta"}
