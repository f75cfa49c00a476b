"""Scaled dot-product attention (npformer/ops/attention.py): masks, the 1/sqrt(d_k) scale, gradients."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from npformer import ops
from npformer.verify.op_cases import length_mask, lookahead_mask
from npformer.verify.gradcheck import check_gradients

HYP = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def attention_shapes(draw):
    """B, h, T_q, T_k, d_k, d_v, key lengths (each < T_k: every sentence has a padded key), causal."""
    causal = draw(st.booleans())
    B, h = draw(st.integers(2, 3)), draw(st.integers(1, 2))
    T_k = draw(st.integers(2, 5))
    T_q = T_k if causal else draw(st.integers(1, 5))
    d_k, d_v = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    lengths = draw(st.lists(st.integers(1, T_k - 1), min_size=B, max_size=B))
    return B, h, T_q, T_k, d_k, d_v, lengths, causal


def make_inputs(be, rng, B, h, T_q, T_k, d_k, d_v, lengths, causal, dtype="float64"):
    mask = length_mask(lengths, T_k, be.xp)  # (B, 1, 1, T_k)
    if causal:
        mask = mask & lookahead_mask(T_k, be.xp)  # (B, 1, T, T)
    r = lambda *s: be.asarray(rng.standard_normal(s), dtype=dtype)  # noqa: E731
    return dict(Q=r(B, h, T_q, d_k), K=r(B, h, T_k, d_k), V=r(B, h, T_k, d_v), mask=mask)


def attention_reference(Q, K, V, mask):
    """softmax(Q K^T / sqrt(d_k)) V one query at a time; masked keys dropped; no keys -> 0."""
    B, h, T_q, d_k = Q.shape
    mask = np.broadcast_to(mask, (B, h, T_q, K.shape[2]))
    out = np.zeros((B, h, T_q, V.shape[-1]))
    P = np.zeros((B, h, T_q, K.shape[2]))
    for b in range(B):
        for i in range(h):
            for q in range(T_q):
                keys = np.flatnonzero(mask[b, i, q])
                if len(keys) == 0:
                    continue
                s = np.array([Q[b, i, q] @ K[b, i, k] / math.sqrt(d_k) for k in keys])
                w = np.exp(s - s.max())
                P[b, i, q, keys] = w / w.sum()
                out[b, i, q] = P[b, i, q] @ V[b, i]
    return out, P


def attention_backward_reference(Q, K, V, P, dout):
    """dQ, dK, dV through each row's softmax Jacobian J = diag(p) - p p^T, built explicitly."""
    d_k = Q.shape[-1]
    dQ, dK, dV = np.zeros_like(Q), np.zeros_like(K), np.zeros_like(V)
    for b in range(Q.shape[0]):
        for i in range(Q.shape[1]):
            dV[b, i] = P[b, i].T @ dout[b, i]
            for q in range(Q.shape[2]):
                p = P[b, i, q]
                ds = (np.diag(p) - np.outer(p, p)) @ (V[b, i] @ dout[b, i, q])  # d loss / d score row
                dQ[b, i, q] = ds @ K[b, i] / math.sqrt(d_k)
                dK[b, i] += np.outer(ds, Q[b, i, q]) / math.sqrt(d_k)
    return dQ, dK, dV


@HYP
@given(shapes=attention_shapes(), seed=st.integers(0, 2**32 - 1))
def test_attention_gradients_match_finite_differences(be, shapes, seed):
    inputs = make_inputs(be, np.random.default_rng(seed), *shapes)
    result = check_gradients(ops.attention_forward, ops.attention_backward, inputs, "attention", seed=seed)
    assert result.passed, f"max_rel_error={result.max_rel_error:.2e} errors={result.errors} problems={result.problems}"


@HYP
@given(shapes=attention_shapes(), seed=st.integers(0, 2**32 - 1))
def test_attention_matches_a_per_query_reference(be, shapes, seed):
    rng = np.random.default_rng(seed)
    inputs = make_inputs(be, rng, *shapes)
    host = {k: be.to_host(v) for k, v in inputs.items()}
    out, cache = ops.attention_forward(**inputs)
    out_ref, P_ref = attention_reference(**host)
    np.testing.assert_allclose(be.to_host(out), out_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(be.to_host(cache.P), P_ref, rtol=1e-10, atol=1e-12)
    dout = rng.standard_normal(out.shape)
    grads = ops.attention_backward(be.asarray(dout), cache)
    for name, g, g_ref in zip("QKV", grads, attention_backward_reference(host["Q"], host["K"], host["V"], P_ref, dout)):
        np.testing.assert_allclose(be.to_host(g), g_ref, rtol=1e-9, atol=1e-12, err_msg=f"d{name}")


@HYP
@given(shapes=attention_shapes(), seed=st.integers(0, 2**32 - 1))
def test_masked_keys_get_zero_weight_and_zero_gradient(be, shapes, seed):
    B, h, T_q, T_k, d_k, d_v, lengths, causal = shapes
    rng = np.random.default_rng(seed)
    inputs = make_inputs(be, rng, *shapes)
    out, cache = ops.attention_forward(**inputs)
    P = be.to_host(cache.P)
    mask = np.broadcast_to(be.to_host(inputs["mask"]), P.shape)
    assert (P[~mask] == 0).all()  # exactly zero, not merely small
    np.testing.assert_allclose(P.sum(axis=-1), 1.0, atol=1e-12)  # every query here has a real key
    dQ, dK, dV = (be.to_host(g) for g in ops.attention_backward(be.asarray(rng.standard_normal(out.shape)), cache))
    for b, n in enumerate(lengths):  # keys n.. of sentence b are masked for every query
        assert (dK[b, :, n:] == 0).all() and (dV[b, :, n:] == 0).all()
        assert np.abs(dV[b, :, :n]).max() > 0
        if n >= 2:  # (with one real key the softmax is constant, so dK is 0 there too)
            assert np.abs(dK[b, :, :n]).max() > 0
    # the padded keys' values do not change the output
    K2, V2 = be.to_host(inputs["K"]).copy(), be.to_host(inputs["V"]).copy()
    for b, n in enumerate(lengths):
        K2[b, :, n:], V2[b, :, n:] = 1e3, -1e3
    out2, _ = ops.attention_forward(inputs["Q"], be.asarray(K2), be.asarray(V2), inputs["mask"])
    np.testing.assert_allclose(be.to_host(out2), be.to_host(out), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fully_masked_query_row_gives_zero_weights_output_and_gradient(be, dtype):
    rng = np.random.default_rng(0)
    B, h, T_q, T_k, d = 2, 2, 3, 4, 4
    mask = np.ones((B, 1, T_q, T_k), dtype=bool)
    mask[1, 0, 2, :] = False  # query 2 of sentence 1 may attend to nothing
    mask[0, 0, 0, 3] = False
    inputs = dict(Q=be.asarray(rng.standard_normal((B, h, T_q, d)), dtype=dtype),
                  K=be.asarray(rng.standard_normal((B, h, T_k, d)), dtype=dtype),
                  V=be.asarray(rng.standard_normal((B, h, T_k, d)), dtype=dtype), mask=be.asarray(mask))
    out, cache = ops.attention_forward(**inputs)
    dQ, dK, dV = ops.attention_backward(be.asarray(rng.standard_normal(out.shape), dtype=dtype), cache)
    out, P, dQ = be.to_host(out), be.to_host(cache.P), be.to_host(dQ)
    assert all(np.isfinite(be.to_host(a)).all() for a in (out, P, dQ, dK, dV))
    assert (P[1, :, 2] == 0).all() and (out[1, :, 2] == 0).all() and (dQ[1, :, 2] == 0).all()
    np.testing.assert_allclose(np.delete(P[1], 2, axis=1).sum(-1), 1.0, rtol=1e-6)
    if dtype == "float64":
        result = check_gradients(ops.attention_forward, ops.attention_backward, inputs, "attention")
        assert result.passed, f"errors={result.errors} problems={result.problems}"


def test_attention_scores_are_scaled_by_one_over_sqrt_d_k(be):
    # one query, two keys: P = softmax([q.k0, q.k1] / sqrt(d_k))
    d_k = 16
    Q = np.zeros((1, 1, 1, d_k))
    Q[..., 0] = 4.0
    K = np.zeros((1, 1, 2, d_k))
    K[..., 1, 0] = 1.0  # scores [0, 4] before scaling, [0, 1] after
    _, cache = ops.attention_forward(be.asarray(Q), be.asarray(K), be.asarray(np.eye(2)[None, None]))
    np.testing.assert_allclose(be.to_host(cache.P)[0, 0, 0], np.array([1, math.e]) / (1 + math.e), rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_attention_contract_keeps_dtype_and_shapes(be, op_contract, dtype):
    inputs = make_inputs(be, np.random.default_rng(0), 2, 2, 4, 4, 3, 5, [3, 2], True, dtype=dtype)
    y, grads = op_contract(ops.attention_forward, ops.attention_backward, inputs)
    assert y.shape == (2, 2, 4, 5)
    assert set(grads) == {"Q", "K", "V"}
