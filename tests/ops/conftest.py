"""Checks shared by tests/ops: the contract every op's backward follows
(npformer/verify/gradcheck.py says why each check matters).

    y, cache = forward(**inputs);   grads = backward(dy, cache)

``op_contract(forward, backward, inputs)`` runs one forward and three backwards
and asserts what must hold for any op, in any dtype: one gradient per
differentiable input, with its shape and dtype (no silent float32 -> float64
upcast), bit-identical results when backward is called twice, zero gradients
for a zero upstream gradient, and inputs left untouched (ops are pure).
"""
import numpy as np
import pytest


def _is_float(a):
    return hasattr(a, "dtype") and hasattr(a, "shape") and a.dtype.kind == "f"


def differentiable(inputs, constants):
    """[(name, value)] for the float arrays and dicts of float arrays, in order."""
    out = []
    for name, v in inputs.items():
        if name in constants:
            continue
        if isinstance(v, dict) and any(_is_float(a) for a in v.values()):
            out.append((name, v))
        elif _is_float(v):
            out.append((name, v))
    return out


def _leaves(name, value, grad):
    """(label, input, gradient) for an array input or each float entry of a dict input."""
    if not isinstance(value, dict):
        return [(name, value, grad)]
    assert isinstance(grad, dict), f"{name}: gradient of a dict input must be a dict"
    float_keys = {k for k, a in value.items() if _is_float(a)}
    assert set(grad) == float_keys, f"{name}: gradient keys {sorted(grad)} != {sorted(float_keys)}"
    return [(f"{name}.{k}", value[k], grad[k]) for k in sorted(float_keys)]


def _snapshot(be, inputs):
    snap = {}
    for name, v in inputs.items():
        for key, a in (v.items() if isinstance(v, dict) else [(None, v)]):
            if hasattr(a, "shape"):
                snap[(name, key)] = be.to_host(a).copy()
    return snap


def check_op_contract(be, forward, backward, inputs, constants=(), seed=0):
    """Assert the op contract; returns ``(y, grads)``, grads a dict label -> gradient."""
    diff = differentiable(inputs, constants)
    dtypes = {str(a.dtype) for _, v in diff for a in (v.values() if isinstance(v, dict) else [v]) if _is_float(a)}
    assert len(dtypes) == 1, f"test bug: differentiable inputs mix dtypes {dtypes}"
    dtype = dtypes.pop()
    before = _snapshot(be, inputs)

    y, cache = forward(**inputs)
    assert str(y.dtype) == dtype, f"output dtype {y.dtype} != input dtype {dtype}"
    dy = be.asarray(np.random.default_rng(seed).standard_normal(y.shape), dtype=y.dtype)
    runs = [backward(dy, cache), backward(dy, cache), backward(dy * 0, cache)]
    runs = [r if isinstance(r, tuple) else (r,) for r in runs]
    assert all(len(r) == len(diff) for r in runs), \
        f"backward returned {len(runs[0])} gradient(s) for {len(diff)} differentiable input(s)"

    grads = {}
    for i, (name, value) in enumerate(diff):
        first, second, zero = (_leaves(name, value, r[i]) for r in runs)
        for (label, x, g), (_, _, g2), (_, _, g0) in zip(first, second, zero):
            assert g.shape == x.shape, f"{label}: gradient shape {g.shape} != input shape {x.shape}"
            assert str(g.dtype) == dtype, f"{label}: gradient dtype {g.dtype} != input dtype {dtype}"
            assert np.array_equal(be.to_host(g), be.to_host(g2)), f"{label}: backward is not re-entrant"
            assert not be.to_host(g0).any(), f"{label}: zero upstream gradient gave a non-zero gradient"
            grads[label] = g

    after = _snapshot(be, inputs)
    for k, a in before.items():
        assert np.array_equal(a, after[k]), f"input {k} was modified in place"
    return y, grads


@pytest.fixture
def op_contract(be):
    """``op_contract(forward, backward, inputs, constants=())`` on the backend under test."""
    return lambda forward, backward, inputs, constants=(), seed=0: check_op_contract(
        be, forward, backward, inputs, constants, seed)
