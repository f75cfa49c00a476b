"""Planted bugs: the gradient checks and the property checks must catch each one.

Each mutant below is a copy of an npformer op with ONE line changed, the kind
of bug that has shipped in real NumPy Transformers (a gradient off by 1/batch,
a LayerNorm dx that forgets gamma) and that training alone would hide. A test patches it in where the op is looked
up (``npformer.ops.<op>`` for the op cases, ``npformer.ops.multihead.<op>`` for
multi-head attention, which imported the attention ops by name) and asserts
that ``check_gradients`` fails on every op case that uses it, and that the
property the op tests rely on fails too (while both pass without the bug).
"""
import math
from typing import NamedTuple

import numpy as np
import pytest

import npformer.ops as ops
from npformer.backend import backend_of
from npformer.verify.op_cases import CONSTANTS, op_cases
from npformer.verify.gradcheck import check_gradients
from npformer.ops.attention import AttentionCache, attention_weights


# --- the mutants -------------------------------------------------------------------------------

def attention_backward_without_scale(dout, cache):
    Q, K, V, P, scale = cache
    dV = P.swapaxes(-1, -2) @ dout
    dP = dout @ V.swapaxes(-1, -2)
    dS = P * (dP - (dP * P).sum(axis=-1, keepdims=True))
    # MUTATION: `dS *= scale` left out, so dQ and dK miss 1/sqrt(d_k)
    dQ = dS @ K
    dK = dS.swapaxes(-1, -2) @ Q
    return dQ, dK, dV


def layernorm_backward_without_gamma(dy, cache):
    xhat, rstd, gamma = cache
    d = xhat.shape[-1]
    dbeta = dy.reshape(-1, d).sum(axis=0)
    dgamma = (dy * xhat).reshape(-1, d).sum(axis=0)
    g = dy  # MUTATION: was dy * gamma
    dx = rstd * (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    return dx, dgamma, dbeta


def softmax_backward_over_batch(dp, cache):
    p = cache.p
    return p * (dp - (dp * p).sum(axis=-1, keepdims=True)) / p.shape[0]  # MUTATION: "/ B"


def cross_entropy_backward_over_n_twice(dloss, cache):
    p, targets, valid, n_tokens, eps_ls = cache
    xp = backend_of(p).xp
    V = p.shape[-1]
    w = (valid * (dloss / n_tokens)).astype(p.dtype)[..., None]
    dz = p * w
    if eps_ls:
        dz -= w * (eps_ls / V)
    rows = dz.reshape(-1, V)
    rows[xp.arange(rows.shape[0]), targets.reshape(-1)] -= (1.0 - eps_ls) * w.reshape(-1)
    return dz / n_tokens  # MUTATION: divided by N a second time


def attention_forward_caching_unmasked_p(Q, K, V, mask=None):
    P, scale = attention_weights(Q, K, mask)
    out = P @ V
    P, _ = attention_weights(Q, K, None)  # MUTATION: the backward gets softmax of the UNMASKED scores
    return out, AttentionCache(Q, K, V, P, scale)


def embedding_backward_fancy_index(dy, cache):
    ids, V, scale = cache
    xp = backend_of(dy).xp
    d = dy.shape[-1]
    dE = xp.zeros((V, d), dtype=dy.dtype)
    values = dy.reshape(-1, d)
    if scale != 1.0:
        values = values * scale
    dE[ids.reshape(-1)] += values  # MUTATION: was be.scatter_add; a repeated token keeps one write
    return dE


def dropout_backward_without_mask(dy, cache):
    return dy if cache.scale is None else dy * cache.scale.max()  # MUTATION: 1/(1-p) everywhere, mask ignored


# --- the property checks (True = the property holds), each looking the op up at call time -----

def _rng_arrays(be, seed, *shapes):
    rng = np.random.default_rng(seed)
    return [be.asarray(rng.standard_normal(s)) for s in shapes]


def attention_backward_matches_explicit_jacobian(be):
    """dQ = dS K / sqrt(d_k), dK = dS^T Q / sqrt(d_k), dS through each row's J = diag(p) - p p^T."""
    Q, K, V, dout = _rng_arrays(be, 0, (2, 2, 3, 4), (2, 2, 5, 4), (2, 2, 5, 3), (2, 2, 3, 3))
    _, cache = ops.attention_forward(Q, K, V)
    dQ, dK, dV = (be.to_host(g) for g in ops.attention_backward(dout, cache))
    Q, K, V, dout, P = (be.to_host(a) for a in (Q, K, V, dout, cache.P))
    J = P[..., :, None] * np.eye(P.shape[-1]) - P[..., :, None] * P[..., None, :]  # (B, h, T_q, T_k, T_k)
    dS = np.einsum("bhqkl,bhql->bhqk", J, dout @ V.swapaxes(-1, -2))
    return (np.allclose(dQ, dS @ K / math.sqrt(4), rtol=1e-10, atol=1e-13)
            and np.allclose(dK, dS.swapaxes(-1, -2) @ Q / math.sqrt(4), rtol=1e-10, atol=1e-13)
            and np.allclose(dV, P.swapaxes(-1, -2) @ dout, rtol=1e-10, atol=1e-13))


def layernorm_dx_sees_gamma_through_dy_times_gamma(be):
    x, dy, g = _rng_arrays(be, 1, (2, 3, 6), (2, 3, 6), (6,))
    gamma, beta = 1.0 + 0.5 * g, 0.3 * g
    dx = ops.layernorm_backward(dy, ops.layernorm_forward(x, gamma, beta)[1])[0]
    dx_1 = ops.layernorm_backward(dy * gamma, ops.layernorm_forward(x, be.xp.ones(6), beta)[1])[0]
    return np.allclose(be.to_host(dx), be.to_host(dx_1), rtol=1e-10, atol=1e-12)


def softmax_backward_matches_explicit_jacobian(be):
    z, dp = _rng_arrays(be, 2, (3, 2, 5), (3, 2, 5))
    p, cache = ops.softmax_forward(z)
    dz, p, dp = be.to_host(ops.softmax_backward(dp, cache)), be.to_host(p), be.to_host(dp)
    J = p[..., :, None] * np.eye(5) - p[..., :, None] * p[..., None, :]
    return np.allclose(dz, np.einsum("btij,bti->btj", J, dp), rtol=1e-10, atol=1e-14)


def cross_entropy_gradient_is_p_minus_q_over_n(be):
    V, eps_ls = 6, 0.1
    (z,) = _rng_arrays(be, 3, (2, 3, V))
    targets = np.array([[1, 5, 0], [2, 0, 0]])
    loss, cache = ops.cross_entropy_forward(z, be.asarray(targets), pad_id=0, eps_ls=eps_ls)
    dz = be.to_host(ops.cross_entropy_backward(be.asarray(np.array(1.0)), cache))
    z = be.to_host(z)
    p = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
    q = (1 - eps_ls) * np.eye(V)[targets] + eps_ls / V
    valid = (targets != 0)[..., None]
    return np.allclose(dz, valid * (p - q) / valid.sum(), rtol=1e-10, atol=1e-15)


def masked_keys_get_zero_gradient(be):
    Q, K, V, dout = _rng_arrays(be, 4, (2, 2, 4, 3), (2, 2, 4, 3), (2, 2, 4, 3), (2, 2, 4, 3))
    mask = be.asarray(np.array([[True] * 4, [True, True, False, False]])[:, None, None, :])  # (B, 1, 1, T_k)
    _, cache = ops.attention_forward(Q, K, V, mask)
    _, dK, dV = (be.to_host(g) for g in ops.attention_backward(dout, cache))
    return bool((dK[1, :, 2:] == 0).all() and (dV[1, :, 2:] == 0).all())


def embedding_backward_matches_onehot_matmul(be):
    ids = np.array([[3, 3, 1], [3, 0, 1]])  # token 3 three times, token 1 twice
    E, dy = _rng_arrays(be, 5, (5, 4), (2, 3, 4))
    dE = ops.embedding_backward(dy, ops.embedding_forward(be.asarray(ids), E, scale=2.0)[1])
    onehot = np.eye(5)[ids.reshape(-1)]  # (B*T, V)
    return np.allclose(be.to_host(dE), onehot.T @ be.to_host(dy).reshape(-1, 4) * 2.0, rtol=1e-12)


def dropout_backward_uses_the_cached_mask(be):
    x, dy = _rng_arrays(be, 6, (4, 50), (4, 50))
    y, cache = ops.dropout_forward(x, 0.3, rng=be.rng(0))
    dx = be.to_host(ops.dropout_backward(dy, cache))
    return np.array_equal(dx, be.to_host(dy) * be.to_host(cache.scale))


# --- the table ------------------------------------------------------------------------------------

class Mutant(NamedTuple):
    patches: dict   # "module.attribute" -> replacement
    cases: tuple    # op cases of npformer.verify.op_cases.op_cases whose gradient check must fail
    prop: object    # property check that must fail


MUTANTS = {  # each planted where every op reads it: the npformer.ops namespace
    "1-attention-no-scale": Mutant({"npformer.ops.attention_backward": attention_backward_without_scale},
                                   ("attention", "self_attention", "cross_attention"),
                                   attention_backward_matches_explicit_jacobian),
    "2-layernorm-no-gamma": Mutant({"npformer.ops.layernorm_backward": layernorm_backward_without_gamma},
                                   ("layernorm",), layernorm_dx_sees_gamma_through_dy_times_gamma),
    "3-softmax-over-batch": Mutant({"npformer.ops.softmax_backward": softmax_backward_over_batch},
                                   ("softmax",), softmax_backward_matches_explicit_jacobian),
    "4-cross-entropy-over-n-twice": Mutant({"npformer.ops.cross_entropy_backward": cross_entropy_backward_over_n_twice},
                                           ("cross_entropy",), cross_entropy_gradient_is_p_minus_q_over_n),
    "5-attention-unmasked-p": Mutant({"npformer.ops.attention_forward": attention_forward_caching_unmasked_p},
                                     ("attention", "self_attention", "cross_attention"), masked_keys_get_zero_gradient),
    "6-embedding-fancy-index": Mutant({"npformer.ops.embedding_backward": embedding_backward_fancy_index},
                                      ("embedding",), embedding_backward_matches_onehot_matmul),
    "7-dropout-no-mask": Mutant({"npformer.ops.dropout_backward": dropout_backward_without_mask},
                                ("dropout",), dropout_backward_uses_the_cached_mask),
}


def run_checks(be, names):
    cases = op_cases(be)  # built now, so it picks up whatever is patched into npformer.ops
    return {n: check_gradients(*cases[n], n, constants=CONSTANTS.get(n, ())) for n in names}


@pytest.mark.parametrize("name", list(MUTANTS))
def test_gradient_check_catches_planted_bug(be, monkeypatch, name):
    mutant = MUTANTS[name]
    for name_, result in run_checks(be, mutant.cases).items():
        assert result.passed, f"{name_} fails even without the bug: {result.errors} {result.problems}"
    for target, replacement in mutant.patches.items():
        monkeypatch.setattr(target, replacement)
    for name_, result in run_checks(be, mutant.cases).items():
        assert not result.passed and result.max_rel_error > 1e-3, \
            f"{name_}: gradient check missed the bug: max_rel_error={result.max_rel_error:.2e} {result.errors}"


@pytest.mark.parametrize("name", list(MUTANTS))
def test_property_check_catches_planted_bug(be, monkeypatch, name):
    mutant = MUTANTS[name]
    assert mutant.prop(be), f"{mutant.prop.__name__} fails even without the bug"
    for target, replacement in mutant.patches.items():
        monkeypatch.setattr(target, replacement)
    assert not mutant.prop(be), f"{mutant.prop.__name__} missed the bug"


# --- a planted bug in the model: pre-LN's final stack LayerNorm ------------------------------------

def final_norm_backward_dropped(dy, cache, stack):
    if cache is None:
        return dy, {}
    _, dgamma, dbeta = ops.layernorm_backward(dy, cache)
    return dy, {f"{stack}.norm.gamma": dgamma, f"{stack}.norm.beta": dbeta}  # MUTATION: dx = dy, LN' skipped


@pytest.mark.parametrize("stack", ["encoder", "decoder"])
def test_model_gradient_check_catches_a_dropped_final_norm_backward(monkeypatch, stack):
    """Pre-LN ends each stack with a LayerNorm; a backward that passes dy straight
    through it must fail the whole-model rows for pre-LN and leave post-LN's alone."""
    from npformer import model
    from npformer.verify.model_cases import run_model_checks
    real = model.final_norm_backward

    def dropped_in_one_stack(dy, cache, s):
        return (final_norm_backward_dropped if s == stack else real)(dy, cache, s)
    monkeypatch.setattr(model, "final_norm_backward", dropped_in_one_stack)
    results = {r.name: r for r in run_model_checks("numpy")}
    for name in ("model_pre", "model_dropout_pre", "model_directional_pre"):
        assert not results[name].passed and results[name].max_rel_error > 1e-3, (name, results[name].errors)
    for name in ("model", "model_dropout", "model_directional", "encoder_layer_pre", "decoder_layer_pre"):
        assert results[name].passed, (name, results[name].max_rel_error)
