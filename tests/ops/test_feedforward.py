"""Position-wise feed-forward network (npformer/ops/feedforward.py): FFN(x) = max(0, x W_1 + b_1) W_2 + b_2."""
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from npformer import ops
from npformer.verify.gradcheck import check_gradients
from npformer.ops.feedforward import PARAM_NAMES

HYP = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


def ffn_case(be, rng, B, T, d_model, d_ff, dtype="float64"):
    p = {"W_1": rng.standard_normal((d_model, d_ff)) * d_model ** -0.5, "b_1": rng.standard_normal(d_ff) * 0.3,
         "W_2": rng.standard_normal((d_ff, d_model)) * d_ff ** -0.5, "b_2": rng.standard_normal(d_model) * 0.3}
    return dict(x=be.asarray(rng.standard_normal((B, T, d_model)), dtype=dtype),
                p={k: be.asarray(v, dtype=dtype) for k, v in p.items()})


def ffn_reference(x, p):
    return np.maximum(0.0, x @ p["W_1"] + p["b_1"]) @ p["W_2"] + p["b_2"]


def host(be, inputs):
    return be.to_host(inputs["x"]), {k: be.to_host(v) for k, v in inputs["p"].items()}


@HYP
@given(B=st.integers(2, 3), T=st.integers(1, 3), d_model=st.integers(1, 5), d_ff=st.integers(1, 8),
       seed=st.integers(0, 2**32 - 1))
def test_feedforward_gradients_match_finite_differences(be, B, T, d_model, d_ff, seed):
    inputs = ffn_case(be, np.random.default_rng(seed), B, T, d_model, d_ff)
    x, p = host(be, inputs)
    assume(np.abs(x @ p["W_1"] + p["b_1"]).min() > 1e-3)  # keep ReLU's inputs away from the kink
    result = check_gradients(ops.feedforward_forward, ops.feedforward_backward, inputs, "feedforward", seed=seed)
    assert result.passed, f"max_rel_error={result.max_rel_error:.2e} errors={result.errors} problems={result.problems}"


def test_feedforward_forward_matches_the_formula(be):
    inputs = ffn_case(be, np.random.default_rng(0), 2, 3, 4, 6)
    y, _ = ops.feedforward_forward(**inputs)
    np.testing.assert_allclose(be.to_host(y), ffn_reference(*host(be, inputs)), rtol=1e-12, atol=1e-12)


def test_feedforward_is_position_wise(be):
    # the same map at every position: permuting positions permutes the outputs
    inputs = ffn_case(be, np.random.default_rng(1), 2, 5, 4, 6)
    perm = np.array([3, 0, 4, 1, 2])
    y, _ = ops.feedforward_forward(**inputs)
    y_perm, _ = ops.feedforward_forward(be.asarray(be.to_host(inputs["x"])[:, perm]), inputs["p"])
    np.testing.assert_allclose(be.to_host(y_perm), be.to_host(y)[:, perm], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_feedforward_contract_keeps_dtype_and_shapes(be, op_contract, dtype):
    inputs = ffn_case(be, np.random.default_rng(2), 2, 3, 4, 6, dtype=dtype)
    y, grads = op_contract(ops.feedforward_forward, ops.feedforward_backward, inputs)
    assert y.shape == (2, 3, 4)
    assert set(grads) == {"x"} | {f"p.{k}" for k in PARAM_NAMES}
