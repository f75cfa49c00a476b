"""Token embedding (npformer/ops/embedding.py): repeated tokens accumulate, scale sqrt(d_model)."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from npformer import ops
from npformer.verify.gradcheck import check_gradients

HYP = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


def ids_with_a_repeat(rng, B, T, V):
    """(B, T) token ids in [0, V) where at least one token occurs twice."""
    ids = rng.integers(0, V, (B, T))
    ids[1, 0] = ids[0, 0]
    return ids


def onehot_reference(ids, V, dy, scale):
    """dE = onehot(ids)^T dy * scale, the dense matmul form of the scatter-add."""
    onehot = np.eye(V)[ids.reshape(-1)]  # (B*T, V)
    return onehot.T @ dy.reshape(-1, dy.shape[-1]) * scale  # (V, d_model)


@HYP
@given(B=st.integers(2, 3), T=st.integers(1, 4), V=st.integers(2, 8), d=st.integers(1, 6),
       seed=st.integers(0, 2**32 - 1))
def test_embedding_gradients_match_finite_differences(be, B, T, V, d, seed):
    rng = np.random.default_rng(seed)
    inputs = dict(ids=be.asarray(ids_with_a_repeat(rng, B, T, V)), E=be.asarray(rng.standard_normal((V, d))),
                  scale=d ** 0.5)
    result = check_gradients(ops.embedding_forward, ops.embedding_backward, inputs, "embedding", seed=seed)
    assert result.passed, f"max_rel_error={result.max_rel_error:.2e} errors={result.errors} problems={result.problems}"


@HYP
@given(B=st.integers(2, 4), T=st.integers(1, 6), V=st.integers(1, 5), d=st.integers(1, 4),
       scale=st.sampled_from([1.0, 2.0 ** 0.5, 8.0 ** 0.5]), seed=st.integers(0, 2**32 - 1))
def test_embedding_backward_accumulates_repeated_tokens(be, B, T, V, d, scale, seed):
    rng = np.random.default_rng(seed)
    ids = ids_with_a_repeat(rng, B, T, V)  # V <= 5 and B*T >= 2: repeats are common
    E, dy = rng.standard_normal((V, d)), rng.standard_normal((B, T, d))
    y, cache = ops.embedding_forward(be.asarray(ids), be.asarray(E), scale=scale)
    dE = ops.embedding_backward(be.asarray(dy), cache)
    np.testing.assert_allclose(be.to_host(y), E[ids] * scale, rtol=1e-14)
    np.testing.assert_allclose(be.to_host(dE), onehot_reference(ids, V, dy, scale), rtol=1e-12, atol=1e-12)


def test_embedding_rows_of_unused_tokens_get_zero_gradient(be):
    ids = np.array([[2, 2, 2], [2, 0, 2]])
    dy = np.random.default_rng(0).standard_normal((2, 3, 4))
    _, cache = ops.embedding_forward(be.asarray(ids), be.xp.ones((5, 4)), scale=1.0)
    dE = be.to_host(ops.embedding_backward(be.asarray(dy), cache))
    np.testing.assert_allclose(dE[2], dy[ids == 2].sum(axis=0), rtol=1e-12)  # five writes, all summed
    assert not dE[[1, 3, 4]].any()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_embedding_contract_keeps_dtype_and_shapes(be, op_contract, dtype):
    rng = np.random.default_rng(0)
    inputs = dict(ids=be.asarray(ids_with_a_repeat(rng, 2, 3, 7)),
                  E=be.asarray(rng.standard_normal((7, 4)), dtype=dtype), scale=4 ** 0.5)
    y, grads = op_contract(ops.embedding_forward, ops.embedding_backward, inputs)
    assert y.shape == (2, 3, 4)
    assert set(grads) == {"E"}  # integer ids get no gradient


@pytest.mark.parametrize("scale", [None, 0.0, 3.0])
def test_embedding_is_scaled_by_exactly_the_scale_given_and_by_1_by_default(be, scale):
    # y = scale * E[ids] and dE = scale * scatter_add(dy) for every scale, 0 included; no scale means 1
    rng = np.random.default_rng(4)
    ids = ids_with_a_repeat(rng, 2, 3, 5)
    E, dy = rng.standard_normal((5, 4)), rng.standard_normal((2, 3, 4))
    kwargs = {} if scale is None else {"scale": scale}
    s = 1.0 if scale is None else scale
    y, cache = ops.embedding_forward(be.asarray(ids), be.asarray(E), **kwargs)
    dE = ops.embedding_backward(be.asarray(dy), cache)
    np.testing.assert_array_equal(be.to_host(y), E[ids] * s)
    np.testing.assert_allclose(be.to_host(dE), onehot_reference(ids, 5, dy, s), rtol=1e-12, atol=1e-12)
