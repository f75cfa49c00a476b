"""The ops' docstrings say what their code does.

Each test reads a formula, shape or constant from a docstring and checks it
against the code: it evaluates the docstring's slice or equation on real
arrays, compares the shapes it states with the ones the op returns, or finds
the constant it names in the code's source.
"""
import inspect
import re

import numpy as np
import pytest

from npformer import backend
from npformer.backend import get_backend
from npformer.ops import attention, layernorm, multihead, positional, softmax
from npformer.ops.attention import attention_backward, attention_forward
from npformer.ops.layernorm import layernorm_forward
from npformer.ops.multihead import merge_heads, self_attention_backward, self_attention_forward, split_heads
from npformer.ops.positional import positional_forward, sinusoidal_table
from npformer.ops.softmax import SoftmaxCache, softmax_backward, softmax_forward, softmax_terms


def flat(text: str) -> str:
    return " ".join(text.split())


def test_attention_names_the_masked_score_the_code_uses_and_why_not_minus_inf():
    used = re.search(r"finfo\([^)]*\)\.(\w+)", inspect.getsource(softmax_terms))
    assert used, "softmax_terms no longer fills masked scores from finfo"
    constant = f"finfo(dtype).{used.group(1)}"
    for module in (attention, softmax):
        doc = flat(module.__doc__)
        assert constant in doc, f"{module.__name__}'s docstring does not name {constant}"
        assert "-inf - (-inf) = NaN" in doc, f"{module.__name__}'s docstring does not say why not -inf"
    assert not re.search(r"-inf where not", attention.__doc__), "the mask is not -inf in the code"
    # what the docstring says: -inf would give a NaN row, the code gives a zero row
    with np.errstate(invalid="ignore"):
        row = np.full(4, -np.inf)
        assert np.isnan(row - row.max()).all()
    rng = np.random.default_rng(0)
    Q, K, V = (rng.standard_normal((1, 1, 3, 4)) for _ in range(3))
    mask = np.array([True, True, False])[None, None, None, :] & np.array([True, True, False])[None, None, :, None]
    out, cache = attention_forward(Q, K, V, mask)  # query 2 sees no key
    assert np.all(cache.P[0, 0, 2] == 0) and np.all(out[0, 0, 2] == 0) and np.isfinite(out).all()


def _eval_shape(text: str, sizes: dict) -> tuple:
    """'(B, T, k d_model)' -> a tuple of ints: each item a product of names (or numbers)."""
    items = [item.strip() for item in text.strip("() ").split(",") if item.strip()]
    return tuple(int(np.prod([sizes[w] if w in sizes else int(w) for w in item.split()])) for item in items)


def test_multihead_split_and_merge_shapes_are_the_codes():
    sizes = dict(B=2, T=5, h=2, d_k=3, d_model=6)
    lines = {m.group(1): m.group(2) for m in re.finditer(r"^[ ]*(split|merge): (.*?)(?:[ ]{2,}.*)?$",
                                                         multihead.__doc__, re.M)}
    assert set(lines) == {"split", "merge"}, lines
    for k in (1, 2, 3):
        sizes["k"] = k
        x = np.zeros((2, 5, k * 6))
        steps = [_eval_shape(s, sizes) for s in lines["split"].split("->")]
        assert steps[0] == x.shape and steps[-1] == split_heads(x, k, 2).shape, (k, steps)
        assert np.prod(steps[1]) == x.size
        steps = [_eval_shape(s, sizes) for s in lines["merge"].split("->")]
        parts = split_heads(x, k, 2)
        assert steps[0] == parts.shape and steps[-1] == merge_heads(parts).shape, (k, steps)


def test_multihead_dx_equation_evaluates_to_the_codes_dx():
    """The docstring's dx = ... is evaluated term by term on a real cache: dQ' is the merged
    gradient (B, T, d_model), dQ the per-head one (B, h, T, d_k) from attention_backward."""
    rng = np.random.default_rng(0)
    B, T, d_model, h = 2, 4, 6, 2
    x = rng.standard_normal((B, T, d_model))
    p = {f"{w}_{n}": rng.standard_normal((d_model, d_model) if w == "W" else (d_model,))
         for w in "Wb" for n in "qkvo"}
    y, cache = self_attention_forward(x, p, h)
    dy = rng.standard_normal(y.shape)
    dx, _ = self_attention_backward(dy, cache)

    d_heads = (dy.reshape(-1, d_model) @ p["W_o"].T).reshape(B, T, d_model)
    dQ, dK, dV = attention_backward(split_heads(d_heads, 1, h)[0], cache.attn)
    values = {"dQ": dQ, "dK": dK, "dV": dV}
    values.update({name + "'": merge_heads(g[None]) for name, g in list(values.items())})
    line = re.search(r"dx = ((?:d[QKV]'? W_[QKV]\^T(?: \+ )?)+)", multihead.__doc__)  # self-attention's
    assert line, "no dx = ... equation"
    total = 0
    for term in line.group(1).split("+"):
        grad, weight = term.split()
        assert re.fullmatch(r"W_([QKV])\^T", weight), term
        W = p["W_" + weight[2].lower()].T
        try:
            total = total + values[grad] @ W
        except ValueError as e:
            pytest.fail(f"the docstring's term {term.strip()!r} does not even have matching shapes "
                        f"({values[grad].shape} @ {W.shape}): {e}")
    np.testing.assert_allclose(total, dx, rtol=1e-10, atol=1e-12)


def test_positional_slice_in_the_docstring_is_the_one_the_code_adds():
    table = sinusoidal_table(20, 8, np)
    x = np.zeros((2, 5, 8))
    forward = re.search(r"Forward: y = x \+ PE\[(.*?)\]", positional.__doc__)
    assert forward, "no 'Forward: y = x + PE[...]' line"
    for offset in (0, 3, 15):
        y, _ = positional_forward(x, table, offset)
        stated = eval(f"PE[{forward.group(1).replace(' ', '')}]", {"PE": table, "offset": offset, "T": 5})
        np.testing.assert_array_equal(y[0], stated, err_msg=f"offset={offset}: PE[{forward.group(1)}]")


def test_layernorm_cache_shapes_are_the_ones_the_docstring_states():
    said = re.search(r"The cache holds (.*?)\.\s", layernorm.__doc__, re.S)
    assert said, "the docstring does not say what the cache holds"
    stated = dict(re.findall(r"(\w+) \(([^)]*)\)", flat(said.group(1))))
    x = np.random.default_rng(0).standard_normal((2, 3, 8))
    _, cache = layernorm_forward(x, np.ones(8), np.zeros(8))
    assert set(stated) == set(cache._fields), (stated, cache._fields)
    for name, shape in stated.items():
        items = [s.strip() for s in shape.split(",") if s.strip()]
        want = (x.shape[:-1] if items[0] == "..." else ()) + tuple(
            8 if s == "d_model" else int(s) for s in items if s != "...")
        assert getattr(cache, name).shape == want, (name, shape, getattr(cache, name).shape)
    assert cache.xhat.size == x.size  # as large as x: not a per-row statistic
    assert "per-row statistics" not in layernorm.__doc__


def test_softmax_backward_is_a_vector_jacobian_product():
    doc = flat(softmax.__doc__)
    assert "Backward: the vector-Jacobian product dz = J^T dp" in doc
    rng = np.random.default_rng(0)
    z, dp = rng.standard_normal(5), rng.standard_normal(5)
    p, _ = softmax_forward(z)
    J = np.diag(p) - np.outer(p, p)  # J_ij = dp_i / dz_j, as the docstring writes it
    h = 1e-6
    J_numeric = np.stack([(softmax_forward(z + h * e)[0] - softmax_forward(z - h * e)[0]) / (2 * h)
                          for e in np.eye(5)], axis=1)
    np.testing.assert_allclose(J, J_numeric, atol=1e-9)
    np.testing.assert_allclose(softmax_backward(dp, SoftmaxCache(p)), J.T @ dp, atol=1e-12)
    np.testing.assert_allclose(J, J.T, atol=1e-15)  # symmetric here, as the docstring says


def test_backend_scatter_add_docstring_states_the_bound_not_exactness():
    doc = flat(backend.Backend.scatter_add.__doc__)
    assert "float64 keeps that difference exact" not in doc
    assert "That difference is not exact" in doc
    assert "off by at most about N * eps * sum_j |values[j]|" in doc
    assert "a run of 1 between 1e17 and -1e17 comes out 0, where the host form gives 1" in doc
    got = {}
    for name in ("cupysim", "numpy"):
        be = get_backend(name)
        target = be.xp.zeros((3, 1), dtype=np.float32)
        values = np.array([[1e17], [1.0], [-1e17]], dtype=np.float32)
        be.scatter_add(target, be.asarray(np.array([0, 1, 2])), be.asarray(values))
        got[name] = float(be.to_host(target)[1, 0])
    assert got == {"cupysim": 0.0, "numpy": 1.0}
    assert abs(got["cupysim"] - 1.0) <= 3 * np.finfo(np.float64).eps * np.abs(values).sum()
