"""Linear y = x W + b (npformer/ops/linear.py): gradients, 3-D input, no hidden 1/batch."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from npformer import ops
from npformer.verify.gradcheck import check_gradients

# `be` is a function-scoped fixture holding an immutable backend: safe to reuse across examples
HYP = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


def randn(be, rng, *shape, scale=1.0, dtype="float64"):
    return be.asarray(rng.standard_normal(shape) * scale, dtype=dtype)


@HYP
@given(B=st.integers(2, 3), T=st.integers(1, 4), d_in=st.integers(1, 5), d_out=st.integers(1, 5),
       seed=st.integers(0, 2**32 - 1))
def test_linear_gradients_match_finite_differences(be, B, T, d_in, d_out, seed):
    rng = np.random.default_rng(seed)
    inputs = dict(x=randn(be, rng, B, T, d_in), W=randn(be, rng, d_in, d_out), b=randn(be, rng, d_out))
    result = check_gradients(ops.linear_forward, ops.linear_backward, inputs, "linear", seed=seed)
    assert result.passed, f"max_rel_error={result.max_rel_error:.2e} errors={result.errors} problems={result.problems}"


@pytest.mark.parametrize("lead", [(6,), (2, 3), (2, 2, 3)], ids=["2d", "3d", "4d"])
def test_linear_gradients_for_any_number_of_leading_axes(be, lead):
    rng = np.random.default_rng(1)
    inputs = dict(x=randn(be, rng, *lead, 4), W=randn(be, rng, 4, 3), b=randn(be, rng, 3))
    result = check_gradients(ops.linear_forward, ops.linear_backward, inputs, "linear")
    assert result.passed, f"errors={result.errors} problems={result.problems}"


def test_linear_3d_forward_and_backward_match_einsum(be):
    rng = np.random.default_rng(2)
    B, T, d_in, d_out = 3, 4, 5, 2
    x, W, b, dy = (rng.standard_normal(s) for s in [(B, T, d_in), (d_in, d_out), (d_out,), (B, T, d_out)])
    y, cache = ops.linear_forward(be.asarray(x), be.asarray(W), be.asarray(b))
    dx, dW, db = ops.linear_backward(be.asarray(dy), cache)
    np.testing.assert_allclose(be.to_host(y), np.einsum("bti,io->bto", x, W) + b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(be.to_host(dx), np.einsum("bto,io->bti", dy, W), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(be.to_host(dW), np.einsum("bti,bto->io", x, dy), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(be.to_host(db), dy.sum(axis=(0, 1)), rtol=1e-12, atol=1e-12)


def test_linear_parameter_gradients_sum_over_the_batch(be):
    # Two copies of one example must give twice its dW and db: nothing divides by the batch size.
    rng = np.random.default_rng(3)
    x, W, b, dy = (rng.standard_normal(s) for s in [(1, 3, 4), (4, 2), (2,), (1, 3, 2)])
    _, cache1 = ops.linear_forward(be.asarray(x), be.asarray(W), be.asarray(b))
    _, dW1, db1 = ops.linear_backward(be.asarray(dy), cache1)
    _, cache2 = ops.linear_forward(be.asarray(np.concatenate([x, x])), be.asarray(W), be.asarray(b))
    _, dW2, db2 = ops.linear_backward(be.asarray(np.concatenate([dy, dy])), cache2)
    np.testing.assert_allclose(be.to_host(dW2), 2 * be.to_host(dW1), rtol=1e-12)
    np.testing.assert_allclose(be.to_host(db2), 2 * be.to_host(db1), rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_linear_contract_keeps_dtype_and_shapes(be, op_contract, dtype):
    rng = np.random.default_rng(4)
    inputs = dict(x=randn(be, rng, 2, 3, 4, dtype=dtype), W=randn(be, rng, 4, 5, dtype=dtype),
                  b=randn(be, rng, 5, dtype=dtype))
    y, grads = op_contract(ops.linear_forward, ops.linear_backward, inputs)
    assert y.shape == (2, 3, 5)
    assert set(grads) == {"x", "W", "b"}


def _fused_inputs(be, rng, lead, d_in, d_outs, dtype="float64"):
    x = randn(be, rng, *lead, d_in, dtype=dtype)
    Ws = [randn(be, rng, d_in, d, dtype=dtype) for d in d_outs]
    bs = [randn(be, rng, d, dtype=dtype) for d in d_outs]
    return x, Ws, bs


@HYP
@given(lead=st.lists(st.integers(1, 3), min_size=1, max_size=3), d_in=st.integers(1, 5),
       d_outs=st.lists(st.integers(1, 4), min_size=1, max_size=3), seed=st.integers(0, 2**32 - 1))
def test_fused_linear_gradients_match_finite_differences(be, lead, d_in, d_outs, seed):
    rng = np.random.default_rng(seed)
    x, Ws, bs = _fused_inputs(be, rng, lead, d_in, d_outs)
    n = len(Ws)
    inputs = {"x": x, **{f"W{i}": W for i, W in enumerate(Ws)}, **{f"b{i}": b for i, b in enumerate(bs)}}

    def forward(x, **p):
        return ops.fused_linear_forward(x, [p[f"W{i}"] for i in range(n)], [p[f"b{i}"] for i in range(n)])

    def backward(dy, cache):
        dx, dWs, dbs = ops.fused_linear_backward(dy, cache)
        return (dx, *dWs, *dbs)

    result = check_gradients(forward, backward, inputs, "fused linear", seed=seed)
    assert result.passed, f"max_rel_error={result.max_rel_error:.2e} errors={result.errors} problems={result.problems}"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_linear_equals_linear_on_the_concatenated_weights(be, dtype):
    # The fused projection is, by definition, one linear map against [W_1 | W_2 | W_3].
    rng = np.random.default_rng(5)
    x, Ws, bs = _fused_inputs(be, rng, (2, 3), 4, (5, 2, 3), dtype)
    dy = randn(be, rng, 2, 3, 10, dtype=dtype)
    xp = be.xp
    y_ref, cache_ref = ops.linear_forward(x, xp.concatenate(Ws, axis=1), xp.concatenate(bs))
    dx_ref, dW_ref, db_ref = ops.linear_backward(dy, cache_ref)
    y, cache = ops.fused_linear_forward(x, Ws, bs)
    dx, dWs, dbs = ops.fused_linear_backward(dy, cache)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == "float32" else dict(rtol=1e-12, atol=1e-12)
    assert y.dtype == dx.dtype == x.dtype and y.shape == (2, 3, 10)
    np.testing.assert_allclose(be.to_host(y), be.to_host(y_ref), **tol)
    np.testing.assert_allclose(be.to_host(dx), be.to_host(dx_ref), **tol)
    np.testing.assert_allclose(be.to_host(xp.concatenate(dWs, axis=1)), be.to_host(dW_ref), **tol)
    np.testing.assert_allclose(be.to_host(xp.concatenate(dbs)), be.to_host(db_ref), **tol)
    assert all(dW.shape == W.shape and db.shape == b.shape for dW, W, db, b in zip(dWs, Ws, dbs, bs))


def test_fused_linear_names_mismatched_shapes(be):
    x = be.xp.zeros((2, 4))
    with pytest.raises(ValueError, match=r"fused linear: expected x \(\.\.\., d_in\)"):
        ops.fused_linear_forward(x, [be.xp.zeros((4, 3)), be.xp.zeros((5, 3))], [be.xp.zeros(3)] * 2)
    with pytest.raises(ValueError, match="fused linear"):
        ops.fused_linear_forward(x, [be.xp.zeros((4, 3))], [be.xp.zeros(2)])
    # as many biases as weights, and at least one pair: a zero-width W_2 without its b_2 would
    # otherwise pass every later shape check and return one bias gradient fewer than asked for
    for Ws, bs in (([be.xp.zeros((4, 3)), be.xp.zeros((4, 0))], [be.xp.zeros(3)]),
                   ([be.xp.zeros((4, 3))], [be.xp.zeros(3), be.xp.zeros(0)]),
                   ([], [])):
        with pytest.raises(ValueError, match="fused linear: expected"):
            ops.fused_linear_forward(x, Ws, bs)
