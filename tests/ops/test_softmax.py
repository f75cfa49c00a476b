"""Softmax (npformer/ops/softmax.py): rows sum to 1, stable at +-1e4, the vector-Jacobian product."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from npformer import ops
from npformer.verify.gradcheck import check_gradients

HYP = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


@HYP
@given(B=st.integers(2, 3), T=st.integers(1, 4), V=st.integers(2, 7), seed=st.integers(0, 2**32 - 1))
def test_softmax_gradients_match_finite_differences(be, B, T, V, seed):
    z = be.asarray(np.random.default_rng(seed).standard_normal((B, T, V)) * 2.0)
    result = check_gradients(ops.softmax_forward, ops.softmax_backward, dict(z=z), "softmax", seed=seed)
    assert result.passed, f"max_rel_error={result.max_rel_error:.2e} errors={result.errors} problems={result.problems}"


@HYP
@given(B=st.integers(2, 3), V=st.integers(1, 9), seed=st.integers(0, 2**32 - 1))
def test_softmax_rows_are_distributions(be, B, V, seed):
    z = np.random.default_rng(seed).standard_normal((B, 3, V)) * 5.0
    p = be.to_host(ops.softmax_forward(be.asarray(z))[0])
    assert (p >= 0).all()
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=0, atol=1e-12)
    # shifting a row by a constant changes nothing
    p_shifted = be.to_host(ops.softmax_forward(be.asarray(z + 100.0))[0])
    np.testing.assert_allclose(p_shifted, p, rtol=1e-12, atol=1e-15)


def test_softmax_stays_finite_and_correct_for_huge_logits_in_float32(be):
    z = np.array([[1e4, -1e4, 0.0, 1e4 - 1.0],
                  [-1e4, -1e4, -1e4, -1e4]], dtype=np.float32)
    p = be.to_host(ops.softmax_forward(be.asarray(z))[0])
    assert p.dtype == np.float32
    assert np.isfinite(p).all()
    e = np.exp(-1.0)
    np.testing.assert_allclose(p[0], [1 / (1 + e), 0.0, 0.0, e / (1 + e)], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(p[1], [0.25] * 4, rtol=1e-6)


@HYP
@given(B=st.integers(2, 3), V=st.integers(2, 6), seed=st.integers(0, 2**32 - 1))
def test_softmax_backward_equals_the_explicit_jacobian(be, B, V, seed):
    # dz = J^T dp for every row, with J = diag(p) - p p^T built here in full
    rng = np.random.default_rng(seed)
    z, dp = rng.standard_normal((B, 2, V)), rng.standard_normal((B, 2, V))
    p, cache = ops.softmax_forward(be.asarray(z))
    dz = be.to_host(ops.softmax_backward(be.asarray(dp), cache))
    p = be.to_host(p)
    for b in range(B):
        for t in range(2):
            J = np.diag(p[b, t]) - np.outer(p[b, t], p[b, t])
            np.testing.assert_allclose(dz[b, t], J.T @ dp[b, t], rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_contract_keeps_dtype_and_shapes(be, op_contract, dtype):
    z = be.asarray(np.random.default_rng(0).standard_normal((2, 3, 5)), dtype=dtype)
    y, grads = op_contract(ops.softmax_forward, ops.softmax_backward, dict(z=z))
    assert y.shape == z.shape


def _masked_reference(z, mask):
    """softmax over the unmasked entries of each row, 0 where masked, all 0 for a fully masked row."""
    e = np.where(mask, np.exp(z - np.where(mask, z, -np.inf).max(axis=-1, keepdims=True, initial=-np.inf)), 0.0)
    s = e.sum(axis=-1, keepdims=True)
    return np.divide(e, s, out=np.zeros_like(e), where=s > 0)


@pytest.mark.parametrize("where", ["new", "buffer", "in place"])
def test_masked_softmax_writes_where_it_is_told_and_leaves_z_alone(be, where):
    # out=None: a new array, z untouched; out=buffer: the result in that buffer (whatever it held),
    # z untouched; out=z: z itself becomes p. Masked entries are 0, a fully masked row all 0.
    rng = np.random.default_rng(6)
    z = rng.standard_normal((2, 3, 5))
    mask = rng.random((2, 3, 5)) < 0.6
    mask[0, 0] = False  # a row with no unmasked entry
    mask[1, 2] = True
    expected = _masked_reference(z, mask)
    zb = be.asarray(z)
    out = {"new": None, "buffer": be.xp.full(z.shape, 7.0), "in place": zb}[where]
    p, _ = ops.softmax_forward(zb, be.asarray(mask), out=out)
    np.testing.assert_allclose(be.to_host(p), expected, rtol=1e-12, atol=1e-15)
    if where == "new":
        np.testing.assert_array_equal(be.to_host(zb), z)
    else:
        np.testing.assert_allclose(be.to_host(out), expected, rtol=1e-12, atol=1e-15)  # p is in out
        if where == "buffer":
            np.testing.assert_array_equal(be.to_host(zb), z)
