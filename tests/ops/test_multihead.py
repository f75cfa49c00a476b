"""Multi-head attention (npformer/ops/multihead.py) against a per-head loop; self- and cross-attention."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from npformer import ops
from npformer.verify.op_cases import length_mask, lookahead_mask
from npformer.verify.gradcheck import check_gradients
from npformer.ops.multihead import PARAM_NAMES

HYP = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


def attn_params(be, rng, d_model, dtype="float64"):
    """Random W_* (d_model, d_model) and nonzero biases b_* (d_model,)."""
    return {k: be.asarray(rng.standard_normal((d_model, d_model)) * d_model ** -0.5 if k[0] == "W"
                          else rng.standard_normal(d_model) * 0.3, dtype=dtype) for k in PARAM_NAMES}


@st.composite
def self_shapes(draw):
    B, T, h, d_k = draw(st.integers(2, 3)), draw(st.integers(2, 5)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    lengths = draw(st.lists(st.integers(1, T - 1), min_size=B, max_size=B))  # each sentence padded
    return B, T, h, d_k, lengths


@st.composite
def cross_shapes(draw):
    B, h, d_k = draw(st.integers(2, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    T_k = draw(st.integers(2, 4))
    T_q = draw(st.integers(1, 4))
    T_q += T_q >= T_k  # T_q != T_k
    lengths = draw(st.lists(st.integers(1, T_k - 1), min_size=B, max_size=B))
    return B, T_q, T_k, h, d_k, lengths


def self_case(be, rng, B, T, h, d_k, lengths, dtype="float64"):
    d_model = h * d_k
    mask = length_mask(lengths, T, be.xp) & lookahead_mask(T, be.xp)  # (B, 1, T, T)
    return dict(x=be.asarray(rng.standard_normal((B, T, d_model)), dtype=dtype),
                p=attn_params(be, rng, d_model, dtype), h=h, mask=mask)


def cross_case(be, rng, B, T_q, T_k, h, d_k, lengths, dtype="float64"):
    d_model = h * d_k
    return dict(x=be.asarray(rng.standard_normal((B, T_q, d_model)), dtype=dtype),
                memory=be.asarray(rng.standard_normal((B, T_k, d_model)), dtype=dtype),
                p=attn_params(be, rng, d_model, dtype), h=h, mask=length_mask(lengths, T_k, be.xp))


def multihead_reference(x, memory, p, h, mask):
    """Concat(head_1..head_h) W_O + b_O, every head and sentence in its own Python loop."""
    B, T_q, d_model = x.shape
    T_k, d_k = memory.shape[1], d_model // h
    mask = np.broadcast_to(mask, (B, 1, T_q, T_k))
    y = np.zeros((B, T_q, d_model))
    for b in range(B):
        heads = []
        for i in range(h):
            cols = slice(i * d_k, (i + 1) * d_k)
            q = x[b] @ p["W_q"][:, cols] + p["b_q"][cols]  # (T_q, d_k)
            k = memory[b] @ p["W_k"][:, cols] + p["b_k"][cols]  # (T_k, d_k)
            v = memory[b] @ p["W_v"][:, cols] + p["b_v"][cols]  # (T_k, d_k)
            s = np.where(mask[b, 0], q @ k.T / math.sqrt(d_k), -np.inf)  # (T_q, T_k)
            w = np.exp(s - s.max(axis=1, keepdims=True))
            heads.append((w / w.sum(axis=1, keepdims=True)) @ v)
        y[b] = np.concatenate(heads, axis=1) @ p["W_o"] + p["b_o"]
    return y


def host(be, inputs):
    return {k: ({n: be.to_host(a) for n, a in v.items()} if isinstance(v, dict)
                else be.to_host(v) if hasattr(v, "shape") else v) for k, v in inputs.items()}


def assert_passed(result):
    assert result.passed, f"max_rel_error={result.max_rel_error:.2e} errors={result.errors} problems={result.problems}"


@HYP
@given(shapes=self_shapes(), seed=st.integers(0, 2**32 - 1))
def test_self_attention_gradients_match_finite_differences(be, shapes, seed):
    inputs = self_case(be, np.random.default_rng(seed), *shapes)
    assert_passed(check_gradients(ops.self_attention_forward, ops.self_attention_backward, inputs,
                                  "self_attention", seed=seed))


@HYP
@given(shapes=cross_shapes(), seed=st.integers(0, 2**32 - 1))
def test_cross_attention_gradients_match_finite_differences(be, shapes, seed):
    inputs = cross_case(be, np.random.default_rng(seed), *shapes)
    assert_passed(check_gradients(ops.cross_attention_forward, ops.cross_attention_backward, inputs,
                                  "cross_attention", seed=seed))


@HYP
@given(shapes=self_shapes(), seed=st.integers(0, 2**32 - 1))
def test_self_attention_equals_a_per_head_loop(be, shapes, seed):
    inputs = self_case(be, np.random.default_rng(seed), *shapes)
    y, cache = ops.self_attention_forward(**inputs)
    ref = host(be, inputs)
    np.testing.assert_allclose(be.to_host(y), multihead_reference(ref["x"], ref["x"], ref["p"], ref["h"], ref["mask"]),
                               rtol=1e-10, atol=1e-12)
    assert cache.attn.P.shape == (shapes[0], shapes[2], shapes[1], shapes[1])  # (B, h, T, T)


@HYP
@given(shapes=cross_shapes(), seed=st.integers(0, 2**32 - 1))
def test_cross_attention_equals_a_per_head_loop(be, shapes, seed):
    B, T_q, T_k, h, d_k, lengths = shapes
    inputs = cross_case(be, np.random.default_rng(seed), *shapes)
    y, cache = ops.cross_attention_forward(**inputs)
    assert y.shape == (B, T_q, h * d_k) and cache.attn.P.shape == (B, h, T_q, T_k)
    ref = host(be, inputs)
    np.testing.assert_allclose(be.to_host(y), multihead_reference(**ref), rtol=1e-10, atol=1e-12)


def test_padded_memory_positions_get_zero_gradient_and_change_nothing(be):
    rng = np.random.default_rng(0)
    lengths = [2, 4]
    inputs = cross_case(be, rng, 2, 3, 5, 2, 2, lengths)
    y, cache = ops.cross_attention_forward(**inputs)
    dx, dmemory, grads = ops.cross_attention_backward(be.asarray(rng.standard_normal(y.shape)), cache)
    dmemory = be.to_host(dmemory)
    for b, n in enumerate(lengths):
        assert (dmemory[b, n:] == 0).all() and np.abs(dmemory[b, :n]).max() > 0
    memory = be.to_host(inputs["memory"]).copy()
    memory[0, 2:] = 100.0
    y2, _ = ops.cross_attention_forward(inputs["x"], be.asarray(memory), inputs["p"], 2, inputs["mask"])
    np.testing.assert_allclose(be.to_host(y2), be.to_host(y), rtol=1e-12, atol=1e-12)


def test_self_attention_with_lookahead_mask_is_causal(be):
    rng = np.random.default_rng(1)
    inputs = self_case(be, rng, 2, 5, 2, 2, [5, 5])
    y = be.to_host(ops.self_attention_forward(**inputs)[0])
    x = be.to_host(inputs["x"]).copy()
    x[:, 3:] = rng.standard_normal(x[:, 3:].shape)  # change the future of position 2
    y2 = be.to_host(ops.self_attention_forward(be.asarray(x), inputs["p"], 2, inputs["mask"])[0])
    np.testing.assert_allclose(y2[:, :3], y[:, :3], rtol=1e-12, atol=1e-12)
    assert not np.allclose(y2[:, 3:], y[:, 3:])


def test_key_bias_gets_no_gradient(be):
    # softmax ignores a shift shared by all keys, and b_K shifts every score of a query by q . b_K
    rng = np.random.default_rng(2)
    inputs = self_case(be, rng, 2, 4, 2, 3, [3, 2])
    y, cache = ops.self_attention_forward(**inputs)
    _, grads = ops.self_attention_backward(be.asarray(rng.standard_normal(y.shape)), cache)
    assert np.abs(be.to_host(grads["b_k"])).max() < 1e-12 * np.abs(be.to_host(grads["b_q"])).max() + 1e-14
    assert set(grads) == set(PARAM_NAMES)


def test_the_caches_weights_are_every_heads_attention_weights(be):
    # cache.weights is what npformer/plot.py draws: an attribute holding (B, h, T_q, T_k), rows summing to 1
    rng = np.random.default_rng(5)
    _, self_cache = ops.self_attention_forward(**self_case(be, rng, 2, 4, 2, 3, [4, 3]))
    _, cross_cache = ops.cross_attention_forward(**cross_case(be, rng, 2, 3, 5, 2, 3, [5, 4]))
    for cache, shape in ((self_cache, (2, 2, 4, 4)), (cross_cache, (2, 2, 3, 5))):
        assert cache.weights is cache.attn.P and cache.weights.shape == shape
        np.testing.assert_allclose(be.to_host(cache.weights).sum(axis=-1), 1.0, rtol=1e-12)


def test_multihead_rejects_bad_parameters(be):
    rng = np.random.default_rng(3)
    inputs = self_case(be, rng, 2, 3, 2, 2, [2, 2])
    with pytest.raises(ValueError, match="not divisible"):
        ops.self_attention_forward(inputs["x"], inputs["p"], 3, inputs["mask"])
    p = dict(inputs["p"])
    del p["b_v"]
    with pytest.raises(ValueError, match="missing"):
        ops.self_attention_forward(inputs["x"], p, 2, inputs["mask"])
    # h is a count of heads: not a bool (True would pass for 1), not a float (2.0 divides d_model = 4)
    for h in (True, 2.0, 0, -2):
        with pytest.raises(ValueError, match="h must be a positive integer"):
            ops.self_attention_forward(inputs["x"], inputs["p"], h, inputs["mask"])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_self_attention_contract_keeps_dtype_and_shapes(be, op_contract, dtype):
    inputs = self_case(be, np.random.default_rng(4), 2, 4, 2, 3, [3, 2], dtype=dtype)
    y, grads = op_contract(ops.self_attention_forward, ops.self_attention_backward, inputs)
    assert y.shape == (2, 4, 6)
    assert set(grads) == {"x"} | {f"p.{k}" for k in PARAM_NAMES}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cross_attention_contract_keeps_dtype_and_shapes(be, op_contract, dtype):
    inputs = cross_case(be, np.random.default_rng(5), 2, 3, 5, 2, 2, [4, 2], dtype=dtype)
    y, grads = op_contract(ops.cross_attention_forward, ops.cross_attention_backward, inputs)
    assert y.shape == (2, 3, 4)
    assert set(grads) == {"x", "memory"} | {f"p.{k}" for k in PARAM_NAMES}
