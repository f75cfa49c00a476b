"""npformer/verify/gradcheck.py catches wrong gradients (the command: tests/commands/test_gradcheck.py).

The user-defined op here is y = x**3 * w with w shared along the batch (like a
bias): dx = 3 x^2 w dy, dw = sum over the batch of x^3 dy. Its planted bugs are
the classic ones: a gradient off by 1/batch, off by sign, a backward that
mutates its cache, a wrong shape or dtype.
"""
import os
from typing import NamedTuple

import numpy as np
import pytest

import npformer
from npformer.verify.op_cases import op_cases
from npformer.verify.gradcheck import GradCheckResult, check_directional, check_gradients, numerical_gradient

REPO = os.path.dirname(os.path.dirname(os.path.abspath(npformer.__file__)))


class CubeCache(NamedTuple):
    x: object
    w: object


def cube_forward(x, w):
    """y = x**3 * w.   x (B, d), w (d,) -> y (B, d)"""
    return x ** 3 * w, CubeCache(x, w)


def cube_backward(dy, cache):
    x, w = cache
    return 3 * x ** 2 * w * dy, (x ** 3 * dy).sum(axis=0)


def cube_inputs(B=3, d=4, seed=0):
    rng = np.random.default_rng(seed)
    return dict(x=rng.standard_normal((B, d)), w=rng.standard_normal(d) + 2.0)


def backward_dw_over_batch(dy, cache):
    dx, dw = cube_backward(dy, cache)
    return dx, dw / cache.x.shape[0]


def backward_dx_wrong_sign(dy, cache):
    dx, dw = cube_backward(dy, cache)
    return -dx, dw


def backward_dw_wrong_shape(dy, cache):
    dx, dw = cube_backward(dy, cache)
    return dx, dw[None, :]


def backward_dx_float32(dy, cache):
    dx, dw = cube_backward(dy, cache)
    return dx.astype(np.float32), dw


def backward_nonzero_for_zero_dy(dy, cache):
    dx, dw = cube_backward(dy, cache)
    return dx + 1e-3, dw


def make_stateful_backward():
    """A backward that accumulates into state kept between calls: right once, wrong the second time."""
    state = {"dw": None}

    def backward(dy, cache):
        dx, dw = cube_backward(dy, cache)
        state["dw"] = dw if state["dw"] is None else state["dw"] + dw
        return dx, state["dw"].copy()
    return backward


def assert_passed(result):
    assert result.passed, f"max_rel_error={result.max_rel_error:.2e} errors={result.errors} problems={result.problems}"


def test_correct_user_op_passes():
    result = check_gradients(cube_forward, cube_backward, cube_inputs(), "cube")
    assert_passed(result)
    assert set(result.errors) == {"x", "w"} and result.max_rel_error < 1e-7


@pytest.mark.parametrize("backward, wrong", [(backward_dw_over_batch, "w"), (backward_dx_wrong_sign, "x")],
                         ids=["dw-over-batch", "dx-wrong-sign"])
def test_wrong_gradient_values_fail(backward, wrong):
    result = check_gradients(cube_forward, backward, cube_inputs(), "cube")
    assert not result.passed
    assert result.errors[wrong] > 0.5, result.errors
    assert max(e for n, e in result.errors.items() if n != wrong) < 1e-7  # the other input is still right


@pytest.mark.parametrize("backward, problem", [
    (backward_dw_wrong_shape, "w: gradient shape (1, 4) != input shape (4,)"),
    (backward_dx_float32, "x: gradient dtype float32 != input dtype float64"),
    (backward_nonzero_for_zero_dy, "x: zero upstream gradient gave a non-zero gradient"),
], ids=["shape", "dtype", "zero-in-nonzero-out"])
def test_contract_violations_fail(backward, problem):
    result = check_gradients(cube_forward, backward, cube_inputs(), "cube")
    assert not result.passed
    assert problem in result.problems


def test_non_reentrant_backward_fails():
    result = check_gradients(cube_forward, make_stateful_backward(), cube_inputs(), "cube")
    assert not result.passed
    assert "w: backward is not re-entrant (second call differs)" in result.problems


def test_wrong_number_of_gradients_is_an_error():
    with pytest.raises(ValueError, match="returned 1 gradient"):
        check_gradients(cube_forward, lambda dy, cache: cube_backward(dy, cache)[0], cube_inputs())


def test_float32_inputs_are_refused():
    inputs = {k: v.astype(np.float32) for k, v in cube_inputs().items()}
    with pytest.raises(TypeError, match="finite differences need float64"):
        check_gradients(cube_forward, cube_backward, inputs)


class AffineCache(NamedTuple):
    x: object
    W: object
    z: object


def tanh_affine_forward(x, p, n_calls=None, ids=None):
    """y = tanh(x W + b); ``n_calls`` and ``ids`` are non-differentiable passengers."""
    z = np.tanh(x @ p["W"] + p["b"])
    return z, AffineCache(x, p["W"], z)


def tanh_affine_backward(dy, cache, db_factor=1.0):
    da = dy * (1 - cache.z ** 2)
    return da @ cache.W.T, {"W": cache.x.T @ da, "b": da.sum(axis=0) * db_factor}


def affine_inputs(seed=0):
    rng = np.random.default_rng(seed)
    return dict(x=rng.standard_normal((3, 4)), p={"W": rng.standard_normal((4, 2)), "b": rng.standard_normal(2)},
                n_calls=7, ids=np.arange(3))


def test_dict_inputs_are_flattened_as_name_dot_key():
    result = check_gradients(tanh_affine_forward, tanh_affine_backward, affine_inputs(), "affine")
    assert_passed(result)
    assert set(result.errors) == {"x", "p.W", "p.b"}
    wrong = check_gradients(tanh_affine_forward, lambda dy, c: tanh_affine_backward(dy, c, db_factor=2.0),
                            affine_inputs(), "affine")
    assert not wrong.passed and wrong.errors["p.b"] > 0.1 and wrong.errors["p.W"] < 1e-7


def test_inputs_are_restored_exactly():
    inputs = affine_inputs()
    before = {"x": inputs["x"].copy(), "W": inputs["p"]["W"].copy(), "b": inputs["p"]["b"].copy()}
    check_gradients(tanh_affine_forward, tanh_affine_backward, inputs)
    check_directional(tanh_affine_forward, tanh_affine_backward, inputs)
    np.testing.assert_array_equal(inputs["x"], before["x"])
    np.testing.assert_array_equal(inputs["p"]["W"], before["W"])
    np.testing.assert_array_equal(inputs["p"]["b"], before["b"])


def test_constants_are_not_differentiated():
    def forward(x, table):
        return x * table, None

    inputs = dict(x=np.random.default_rng(0).standard_normal((2, 3)), table=np.full((2, 3), 2.0))
    result = check_gradients(forward, lambda dy, cache: dy * 2.0, inputs, constants=("table",))
    assert_passed(result)
    assert set(result.errors) == {"x"}


def test_max_entries_samples_that_many_entries_per_tensor():
    inputs = cube_inputs(B=30, d=40)
    calls = []

    def counting_forward(x, w):
        calls.append(1)
        return cube_forward(x, w)

    result = check_gradients(counting_forward, cube_backward, inputs, max_entries=25)
    assert_passed(result)
    assert len(calls) == 1 + 2 * 25 + 2 * 25  # one forward, then two per sampled entry of x and of w
    idx, values = numerical_gradient(cube_forward, inputs, "x", np.ones((30, 40)), max_entries=25, seed=3)
    assert len(idx) == 25 and len(set(idx.tolist())) == 25 and (np.diff(idx) > 0).all()
    analytic = (3 * inputs["x"] ** 2 * inputs["w"]).reshape(-1)[idx]
    np.testing.assert_allclose(values, analytic, rtol=1e-6)
    wrong = check_gradients(cube_forward, backward_dw_over_batch, inputs, max_entries=25)
    assert not wrong.passed and wrong.errors["w"] > 0.5


def test_check_directional_passes_correct_and_fails_wrong_backward():
    assert_passed(check_directional(cube_forward, cube_backward, cube_inputs(), "cube"))
    assert_passed(check_directional(tanh_affine_forward, tanh_affine_backward, affine_inputs(), "affine"))
    for wrong in (backward_dw_over_batch, backward_dx_wrong_sign):
        result = check_directional(cube_forward, wrong, cube_inputs(), "cube")
        assert not result.passed and result.max_rel_error > 1e-3


def test_check_directional_honours_constants():
    case = op_cases()["positional"]
    assert_passed(check_directional(*case, "positional", constants=("table",)))


def test_non_contiguous_inputs_are_checked():
    inputs = cube_inputs(B=4, d=3)
    inputs["x"] = np.ascontiguousarray(inputs["x"].T).T  # same values, Fortran order
    assert_passed(check_gradients(cube_forward, cube_backward, inputs))


def test_result_as_dict():
    r = GradCheckResult("op", 1e-9, True)
    assert r.as_dict() == {"name": "op", "max_rel_error": 1e-9, "passed": True, "findings": []}


def _linear_inputs(rng, d_out=4):
    return dict(x=rng.standard_normal((2, 3, 4)), W=rng.standard_normal((4, d_out)), b=rng.standard_normal(d_out))


def test_a_right_backward_has_no_findings():
    from npformer import ops
    r = check_gradients(ops.linear_forward, ops.linear_backward, _linear_inputs(np.random.default_rng(0)))
    assert r.passed and r.findings == []


@pytest.mark.parametrize("max_entries", [None, 5])
def test_a_wrong_factor_is_found_with_its_fix(max_entries):
    """One factor off: named with its value and the operation that fixes it, on every entry or a sample."""
    from npformer import ops
    from npformer.verify.diagnose import apply_fix

    def halved_db(dy, cache):
        dx, dW, db = ops.linear_backward(dy, cache)
        return dx, dW, db / 2
    inputs = _linear_inputs(np.random.default_rng(1))
    r = check_gradients(ops.linear_forward, halved_db, inputs, "linear", max_entries=max_entries)
    assert not r.passed
    assert [(f.gradient, f.case, f.fix) for f in r.findings] == [("db", "linear", ("scale", 2.0))]
    assert "0.5 x the true gradient" in r.findings[0].diagnosis
    y, cache = ops.linear_forward(**inputs)
    dy = np.random.default_rng(4).standard_normal(y.shape)
    fixed = apply_fix(r.findings[0].fix, halved_db(dy, cache)[2])
    np.testing.assert_allclose(fixed, ops.linear_backward(dy, cache)[2], rtol=1e-15)


def test_context_names_the_size_a_factor_is():
    from npformer import ops

    def unscaled(dout, cache):   # the 1/sqrt(d_k) of dQ and dK forgotten
        dQ, dK, dV = ops.attention_backward(dout, cache)
        return dQ / cache.scale, dK / cache.scale, dV
    rng = np.random.default_rng(2)
    inputs = {k: rng.standard_normal((2, 2, 4, 3)) for k in "QKV"}   # d_k = 3: sqrt(d_k) is no other suspect
    r = check_gradients(ops.attention_forward, unscaled, {**inputs, "mask": None}, context={"d_k": 3})
    assert sorted((f.gradient, f.tag) for f in r.findings) == [("dK", "scale:sqrt(d_k)"), ("dQ", "scale:sqrt(d_k)")]
    assert "multiply by 0.57735" in r.findings[0].diagnosis


def test_a_transposed_gradient_is_named():
    from npformer import ops

    def transposed_dW(dy, cache):
        dx, dW, db = ops.linear_backward(dy, cache)
        return dx, dW.T, db
    r = check_gradients(ops.linear_forward, transposed_dW, _linear_inputs(np.random.default_rng(3)))
    assert [(f.gradient, f.tag, f.fix) for f in r.findings] == [("dW", "transpose", ("transpose",))]
