"""Inverted dropout (npformer/ops/dropout.py): the cached mask, rate 0, E[y] = x, the drop rate."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from npformer import ops
from npformer.verify.gradcheck import check_gradients

HYP = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


@HYP
@given(B=st.integers(2, 3), T=st.integers(1, 4), d=st.integers(1, 6), p=st.floats(0.1, 0.7),
       seed=st.integers(0, 2**32 - 1))
def test_dropout_gradients_match_finite_differences(be, B, T, d, p, seed):
    rng = np.random.default_rng(seed)
    keep = be.asarray(rng.random((B, T, d)) >= p)
    inputs = dict(x=be.asarray(rng.standard_normal((B, T, d))), p=p, keep=keep)
    result = check_gradients(ops.dropout_forward, ops.dropout_backward, inputs, "dropout", seed=seed)
    assert result.passed, f"max_rel_error={result.max_rel_error:.2e} errors={result.errors} problems={result.problems}"


def test_dropout_rate_0_is_the_identity(be):
    x = be.asarray(np.random.default_rng(0).standard_normal((2, 3, 4)))
    dy = be.asarray(np.random.default_rng(1).standard_normal((2, 3, 4)))
    y, cache = ops.dropout_forward(x, 0.0, rng=be.rng(0))
    assert cache.scale is None
    np.testing.assert_array_equal(be.to_host(y), be.to_host(x))
    np.testing.assert_array_equal(be.to_host(ops.dropout_backward(dy, cache)), be.to_host(dy))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dropout_uses_the_mask_in_its_cache(be, dtype):
    p = 0.4
    x = be.asarray(np.random.default_rng(0).standard_normal((4, 5, 6)) + 3.0, dtype=dtype)  # no exact zeros
    dy = be.asarray(np.random.default_rng(1).standard_normal((4, 5, 6)), dtype=dtype)
    y, cache = ops.dropout_forward(x, p, rng=be.rng(7))
    dx = ops.dropout_backward(dy, cache)
    scale = be.to_host(cache.scale)
    assert scale.dtype == dtype and y.dtype == dtype and dx.dtype == dtype
    assert set(np.unique(scale).tolist()) == {0.0, float(np.dtype(dtype).type(1 / (1 - p)))}
    np.testing.assert_array_equal(be.to_host(y), be.to_host(x) * scale)
    np.testing.assert_array_equal(be.to_host(dx), be.to_host(dy) * scale)
    assert ((be.to_host(y) == 0) == (be.to_host(dx) == 0)).all()  # dropped forward <=> no gradient back


def test_dropout_with_a_fixed_keep_mask(be):
    keep = np.array([[True, False, True], [False, True, True]])
    x = np.arange(1.0, 7.0).reshape(2, 3)
    y, _ = ops.dropout_forward(be.asarray(x), 0.5, keep=be.asarray(keep))
    np.testing.assert_array_equal(be.to_host(y), x * keep * 2.0)


def test_dropout_same_seed_same_mask(be):
    x = be.xp.ones((3, 50))
    y1, _ = ops.dropout_forward(x, 0.5, rng=be.rng(123))
    y2, _ = ops.dropout_forward(x, 0.5, rng=be.rng(123))
    y3, _ = ops.dropout_forward(x, 0.5, rng=be.rng(124))
    np.testing.assert_array_equal(be.to_host(y1), be.to_host(y2))
    assert not np.array_equal(be.to_host(y1), be.to_host(y3))


class _GivenDraws:
    """A generator whose uniform draws are the given ones, to see which draws dropout keeps."""

    def __init__(self, u):
        self.u = u

    def random(self, shape, dtype):
        return self.u.reshape(shape).astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dropout_keeps_exactly_the_draws_at_or_above_p(be, dtype):
    # keep = [u >= p] for u uniform on [0, 1): kept with probability exactly 1 - p, so a draw of
    # p itself is kept and the largest draw below p is dropped
    p = 0.5
    below = float(np.nextafter(np.dtype(dtype).type(p), np.dtype(dtype).type(0)))
    u = be.asarray(np.array([0.0, 0.25, below, p, 0.75, float(np.nextafter(np.dtype(dtype).type(1), 0))]))
    y, cache = ops.dropout_forward(be.xp.ones(6, dtype=dtype), p, rng=_GivenDraws(u))
    assert be.to_host(y).tolist() == [0.0, 0.0, 0.0, 2.0, 2.0, 2.0]
    assert be.to_host(cache.scale).tolist() == [0.0, 0.0, 0.0, 2.0, 2.0, 2.0]


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_dropout_drops_a_fraction_p_and_keeps_the_mean(be, p):
    n = 400_000
    x = be.asarray(np.random.default_rng(0).uniform(0.5, 1.5, n))  # positive: y == 0 only where dropped
    y = be.to_host(ops.dropout_forward(x, p, rng=be.rng(2024))[0])
    x = be.to_host(x)
    dropped = (y == 0).mean()
    assert abs(dropped - p) < 5 * np.sqrt(p * (1 - p) / n)
    # E[y] = x: compare the means, and the per-element ratio's mean
    assert abs(y.mean() - x.mean()) < 5 * np.sqrt(p / (1 - p)) * x.std() / np.sqrt(n) + 5 * np.sqrt(p / (1 - p) / n)
    assert abs((y / x).mean() - 1.0) < 5 * np.sqrt(p / (1 - p) / n)


def test_dropout_rejects_bad_arguments(be):
    x = be.xp.ones((2, 3))
    for p in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match="p must be in"):
            ops.dropout_forward(x, p, rng=be.rng(0))
    with pytest.raises(ValueError, match="needs an rng"):
        ops.dropout_forward(x, 0.1)
    with pytest.raises(ValueError, match="does not match"):
        ops.dropout_forward(x, 0.1, keep=be.xp.ones((3, 2), dtype=bool))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dropout_contract_keeps_dtype_and_shapes(be, op_contract, dtype):
    rng = np.random.default_rng(0)
    inputs = dict(x=be.asarray(rng.standard_normal((2, 3, 4)), dtype=dtype), p=0.3,
                  keep=be.asarray(rng.random((2, 3, 4)) >= 0.3))
    y, _ = op_contract(ops.dropout_forward, ops.dropout_backward, inputs)
    assert y.shape == (2, 3, 4)
