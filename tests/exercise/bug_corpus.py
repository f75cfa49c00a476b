"""A corpus of learners' bugs: wrong backward passes as learners really write them, each with
the finding a teacher would give. It measures how well ``npformer exercise check`` names a
mistake it has never seen, so it is written apart from npformer/exercise/mistakes.py (the
grader's own library of known mistakes) and never imports it.

Each ``Bug`` holds a whole learner's function (or, for staged mode, a learner's staged file:
an object with ``STAGED = True`` and its ``d_<node>(g, f)`` functions) and what a teacher says:

* ``gradients``: the gradient(s) the teacher names ("db"; in staged mode the node, "dvar");
* ``expect``: the class of the teacher's finding, as the prefix of the tag a good detector
  gives: ``scale``, ``transpose`` (the gradient is the transpose of the true one),
  ``operands`` (one operand of a product transposed: the gradient has the right shape, not the
  right values), ``region``, ``weights``, ``axis``, ``shape``, ``nonfinite``, ``zero`` (a term
  that does not carry dy), or ``only`` (which gradients are wrong, when nothing more can be
  read off the error: then ``gradients`` is exactly the set of wrong ones);
* ``fix``: "scale" or "transpose" where the bug's whole error on the named gradient is a
  constant factor or a transpose: advice of that kind must then make the gradient right.

The teacher's class is what the grader should say, not what it says today: the misses are the
detectors' to-do list (``benchmarks/grader_corpus.py`` prints them). Below the corpus are the
helpers the tests and that script share: ``run`` grades a bug, ``named`` finds the finding that
names it, ``advice`` applies every finding's advice (``Finding.fix``) to the learner's gradient
of its case and measures whether the error shrinks.
"""
from __future__ import annotations

import math
import types
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from npformer.verify.diagnose import apply_fix
from npformer.model.decoder import decoder_backward
from npformer.model.encoder import encoder_backward
from npformer.model.sublayer import AddNormCache, prefixed, sublayer_in_backward, sublayer_out_backward
from npformer.model.transformer import embed_backward
from npformer.ops.attention import attention_backward
from npformer.ops.dropout import dropout_backward
from npformer.ops.feedforward import feedforward_backward
from npformer.ops.layernorm import layernorm_backward
from npformer.ops.linear import linear_backward
from npformer.ops.multihead import cross_attention_backward, merge_heads, self_attention_backward, split_heads

SEEDS = (1, 2, 3)


@dataclass(frozen=True)
class Bug:
    id: str
    exercise: str
    functions: object          # {name: function}, or a staged file (STAGED = True, d_<node> functions)
    gradients: tuple           # what the teacher names
    expect: str                # the class of the teacher's finding (a tag prefix)
    what: str                  # what the learner did, in words
    fix: str | None = None     # "scale" / "transpose": that advice must make the named gradient right

    @property
    def staged(self) -> bool:
        return bool(getattr(self.functions, "STAGED", False))


def _rows(a):
    """(..., n) -> (M, n): every position as one row, as learners flatten for a matmul."""
    return a.reshape(-1, a.shape[-1])


# --- linear: y = x W + b ------------------------------------------------------------------
def linear_db_is_dy(dy, cache):
    """db returned as dy itself: the bias is added at every position, so its gradient sums them."""
    x, W = cache
    return dy @ W.T, _rows(x).T @ _rows(dy), dy


def linear_db_batch_axis_only(dy, cache):
    """db summed over the batch axis only: the positions are still there, (T, d_out)."""
    x, W = cache
    return dy @ W.T, _rows(x).T @ _rows(dy), dy.sum(axis=0)


def linear_db_mean(dy, cache):
    """db as a mean over every position: the loss already averages, once."""
    x, W = cache
    return dy @ W.T, _rows(x).T @ _rows(dy), dy.mean(axis=tuple(range(dy.ndim - 1)))


def linear_dW_dyT_x(dy, cache):
    """dW = dy^T x: the product of the right two matrices, in the wrong order."""
    x, W = cache
    return dy @ W.T, _rows(dy).T @ _rows(x), _rows(dy).sum(axis=0)


def linear_dx_W_untransposed(dy, cache):
    """dx = dy W: runs (with the right shape) only when W is square, as every W of attention is."""
    x, W = cache
    return dy @ W, _rows(x).T @ _rows(dy), _rows(dy).sum(axis=0)


# --- relu, dropout ------------------------------------------------------------------------
def relu_leaky_habit(dy, cache):
    """A leaky ReLU's backward from memory: 0.01 dy passes where x <= 0."""
    return np.where(cache.positive, dy, 0.01 * dy)


def dropout_scale_missing(dy, cache):
    """The mask applied, the 1/(1-p) of inverted dropout forgotten."""
    if cache.scale is None:
        return dy
    return dy * (cache.scale > 0)


def dropout_scale_twice(dy, cache):
    """The cache's scale already holds 1/(1-p); it is applied once more."""
    if cache.scale is None:
        return dy
    p = 1 - 1 / cache.scale.max()
    return dy * cache.scale / (1 - p)


# --- softmax ------------------------------------------------------------------------------
def softmax_diagonal_only(dp, cache):
    """The elementwise derivative p (1 - p): the Jacobian's diagonal, its -p_i p_j entries dropped."""
    p = cache.p
    return dp * p * (1 - p)


def softmax_masked_entries_pass(dp, cache):
    """Masked entries treated as the identity: dp passes where p = 0."""
    p = cache.p
    dz = p * (dp - (dp * p).sum(axis=-1, keepdims=True))
    return np.where(p > 0, dz, dp)


# --- layernorm ----------------------------------------------------------------------------
def layernorm_textbook_without_gamma(dy, cache):
    """The batch-norm paper's compact formula, with dy where dy * gamma belongs."""
    xhat, rstd, gamma = cache
    d = xhat.shape[-1]
    dgamma = (dy * xhat).sum(axis=(0, 1))
    dbeta = dy.sum(axis=(0, 1))
    dx = rstd / d * (d * dy - dy.sum(axis=-1, keepdims=True) - xhat * (dy * xhat).sum(axis=-1, keepdims=True))
    return dx, dgamma, dbeta


def layernorm_variance_term_sign(dy, cache):
    """The variance term added instead of subtracted."""
    xhat, rstd, gamma = cache
    g = dy * gamma
    dx = rstd * (g - g.mean(axis=-1, keepdims=True) + xhat * (g * xhat).mean(axis=-1, keepdims=True))
    return dx, (dy * xhat).sum(axis=(0, 1)), dy.sum(axis=(0, 1))


def layernorm_mean_term_summed(dy, cache):
    """The mean path's term as sum(g) instead of mean(g): d times too large."""
    xhat, rstd, gamma = cache
    g = dy * gamma
    dx = rstd * (g - g.sum(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    return dx, (dy * xhat).sum(axis=(0, 1)), dy.sum(axis=(0, 1))


def layernorm_dbeta_batch_axis_only(dy, cache):
    """dbeta summed over the batch only: (T, d), the positions not summed."""
    xhat, rstd, gamma = cache
    g = dy * gamma
    dx = rstd * (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    return dx, (dy * xhat).sum(axis=(0, 1)), dy.sum(axis=0)


def layernorm_dgamma_mean(dy, cache):
    """dgamma as a mean over positions instead of a sum."""
    xhat, rstd, gamma = cache
    g = dy * gamma
    dx = rstd * (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    return dx, (dy * xhat).mean(axis=(0, 1)), dy.sum(axis=(0, 1))


# --- embedding ----------------------------------------------------------------------------
def embedding_assign(dy, cache):
    """dE[ids] = dy: an assignment, where a repeated id needs its rows added."""
    ids, V, scale = cache
    dE = np.zeros((V, dy.shape[-1]))
    dE[ids.reshape(-1)] = _rows(dy) * scale
    return dE


def embedding_buffered_add(dy, cache):
    """dE[ids] += dy: NumPy's += on repeated fancy indices is buffered, so a repeat adds once."""
    ids, V, scale = cache
    dE = np.zeros((V, dy.shape[-1]))
    dE[ids] += dy * scale
    return dE


def embedding_scale_forgotten(dy, cache):
    """The scatter right (np.add.at), the forward's sqrt(d_model) forgotten."""
    ids, V, scale = cache
    dE = np.zeros((V, dy.shape[-1]))
    np.add.at(dE, ids.reshape(-1), _rows(dy))
    return dE


def embedding_scale_d_model(dy, cache):
    """The scale taken as d_model, not sqrt(d_model)."""
    ids, V, scale = cache
    d_model = dy.shape[-1]
    dE = np.zeros((V, d_model))
    np.add.at(dE, ids.reshape(-1), _rows(dy) * d_model)
    return dE


# --- attention ----------------------------------------------------------------------------
def _softmax_back(dP, P):
    return P * (dP - (dP * P).sum(axis=-1, keepdims=True))


def attention_dK_unscaled(dout, cache):
    """1/sqrt(d_k) on dQ, forgotten on dK."""
    Q, K, V, P, scale = cache
    dS = _softmax_back(dout @ V.swapaxes(-1, -2), P)
    return dS @ K * scale, dS.swapaxes(-1, -2) @ Q, P.swapaxes(-1, -2) @ dout


def attention_dV_scaled(dout, cache):
    """1/sqrt(d_k) put on dV too: the values are not scaled in the forward."""
    Q, K, V, P, scale = cache
    dS = _softmax_back(dout @ V.swapaxes(-1, -2), P) * scale
    return dS @ K, dS.swapaxes(-1, -2) @ Q, P.swapaxes(-1, -2) @ dout * scale


def attention_dK_dS_untransposed(dout, cache):
    """dK = dS Q: runs when T_q = T_k (self-attention), wrong values; dS^T Q is the gradient."""
    Q, K, V, P, scale = cache
    dS = _softmax_back(dout @ V.swapaxes(-1, -2), P) * scale
    return dS @ K, dS @ Q, P.swapaxes(-1, -2) @ dout


def attention_dV_P_untransposed(dout, cache):
    """dV = P dout: runs when T_q = T_k, wrong values; P^T dout is the gradient."""
    Q, K, V, P, scale = cache
    dS = _softmax_back(dout @ V.swapaxes(-1, -2), P) * scale
    return dS @ K, dS.swapaxes(-1, -2) @ Q, P @ dout


def attention_softmax_sum_missing(dout, cache):
    """dS = P * dP: the softmax backward's -sum(dP * P) term forgotten."""
    Q, K, V, P, scale = cache
    dS = P * (dout @ V.swapaxes(-1, -2)) * scale
    return dS @ K, dS.swapaxes(-1, -2) @ Q, P.swapaxes(-1, -2) @ dout


def attention_head_loop_no_keepdims(dout, cache):
    """One head at a time on 2-D arrays, the row sum without keepdims: on a square (T, T) block the
    (T,) sums broadcast along the last axis, one per key instead of one per query."""
    Q, K, V, P, scale = cache
    dQ, dK, dV = np.zeros_like(Q), np.zeros_like(K), np.zeros_like(V)
    for b in range(Q.shape[0]):
        for h in range(Q.shape[1]):
            p = P[b, h]
            dp = dout[b, h] @ V[b, h].T
            ds = p * (dp - (dp * p).sum(axis=-1)) * scale
            dQ[b, h] = ds @ K[b, h]
            dK[b, h] = ds.T @ Q[b, h]
            dV[b, h] = p.T @ dout[b, h]
    return dQ, dK, dV


def attention_renormalised(dout, cache):
    """dS divided by sum(P) "because the mask removed some keys": 0/0 on a fully masked row."""
    Q, K, V, P, scale = cache
    dS = _softmax_back(dout @ V.swapaxes(-1, -2), P) / P.sum(axis=-1, keepdims=True) * scale
    return dS @ K, dS.swapaxes(-1, -2) @ Q, P.swapaxes(-1, -2) @ dout


# --- multi-head attention: the learner's own projections around npformer's attention --------
def _in_projection(dQKV_parts, lin, h):
    """dx, dW and db of one fused input projection, from the head gradients of its parts."""
    x, W = lin
    d_fused = merge_heads(np.stack(dQKV_parts))  # (B, T, n d_model)
    dW = _rows(x).T @ _rows(d_fused)
    return d_fused @ W.T, dW, _rows(d_fused).sum(axis=0)


def _cut(dW, db, names):
    d = dW.shape[0]
    out = {}
    for i, n in enumerate(names):
        out["W_" + n], out["b_" + n] = dW[:, i * d:(i + 1) * d], db[i * d:(i + 1) * d]
    return out


def self_attention_right(dy, cache):
    """A learner's right self-attention backward (the file's other function in the bugs below)."""
    heads, W_o = cache.proj_out
    d_heads = dy @ W_o.T
    dQ, dK, dV = attention_backward(split_heads(d_heads, 1, cache.h)[0], cache.attn)
    dx, dW, db = _in_projection([dQ, dK, dV], cache.proj_in.linear, cache.h)
    grads = _cut(dW, db, "qkv")
    grads["W_o"], grads["b_o"] = _rows(heads).T @ _rows(dy), _rows(dy).sum(axis=0)
    return dx, grads


def cross_attention_right(dy, cache):
    """A learner's right cross-attention backward."""
    heads, W_o = cache.proj_out
    dQ, dK, dV = attention_backward(split_heads(dy @ W_o.T, 1, cache.h)[0], cache.attn)
    dx, dW_q, db_q = linear_backward(merge_heads(dQ[None]), cache.proj_q)
    dmemory, dW, db = _in_projection([dK, dV], cache.proj_in.linear, cache.h)
    grads = _cut(dW, db, "kv")
    grads.update(W_q=dW_q, b_q=db_q, W_o=_rows(heads).T @ _rows(dy), b_o=_rows(dy).sum(axis=0))
    return dx, dmemory, grads


def cross_attention_dmemory_keys_only(dy, cache):
    """dmemory from the key path only: the memory feeds the values too."""
    heads, W_o = cache.proj_out
    dQ, dK, dV = attention_backward(split_heads(dy @ W_o.T, 1, cache.h)[0], cache.attn)
    dx, dW_q, db_q = linear_backward(merge_heads(dQ[None]), cache.proj_q)
    memory, W_kv = cache.proj_in.linear
    d = memory.shape[-1]
    dK_m, dV_m = merge_heads(dK[None]), merge_heads(dV[None])
    dmemory = dK_m @ W_kv[:, :d].T
    grads = {"W_k": _rows(memory).T @ _rows(dK_m), "b_k": _rows(dK_m).sum(axis=0),
             "W_v": _rows(memory).T @ _rows(dV_m), "b_v": _rows(dV_m).sum(axis=0),
             "W_q": dW_q, "b_q": db_q, "W_o": _rows(heads).T @ _rows(dy), "b_o": _rows(dy).sum(axis=0)}
    return dx, dmemory, grads


def self_attention_dW_o_transposed(dy, cache):
    """dW_o = dy^T heads: W_o is square, so the shape cannot tell."""
    heads, W_o = cache.proj_out
    dQ, dK, dV = attention_backward(split_heads(dy @ W_o.T, 1, cache.h)[0], cache.attn)
    dx, dW, db = _in_projection([dQ, dK, dV], cache.proj_in.linear, cache.h)
    grads = _cut(dW, db, "qkv")
    grads["W_o"], grads["b_o"] = _rows(dy).T @ _rows(heads), _rows(dy).sum(axis=0)
    return dx, grads


def self_attention_W_o_untransposed(dy, cache):
    """d_heads = dy W_o: W_o square, so it runs; everything before the output projection is wrong."""
    heads, W_o = cache.proj_out
    dQ, dK, dV = attention_backward(split_heads(dy @ W_o, 1, cache.h)[0], cache.attn)
    dx, dW, db = _in_projection([dQ, dK, dV], cache.proj_in.linear, cache.h)
    grads = _cut(dW, db, "qkv")
    grads["W_o"], grads["b_o"] = _rows(heads).T @ _rows(dy), _rows(dy).sum(axis=0)
    return dx, grads


# --- feed-forward -------------------------------------------------------------------------
def feedforward_db_1_batch_axis_only(dy, cache):
    """db_1 summed over the batch only, (T, d_ff)."""
    dr, dW_2, db_2 = linear_backward(dy, cache.lin2)
    da = dr * cache.relu.positive
    x, W_1 = cache.lin1
    return da @ W_1.T, {"W_1": _rows(x).T @ _rows(da), "b_1": da.sum(axis=0), "W_2": dW_2, "b_2": db_2}


def feedforward_dW_1_transposed(dy, cache):
    """dW_1 = da^T x, (d_ff, d_model): the transpose of W_1's shape."""
    dr, dW_2, db_2 = linear_backward(dy, cache.lin2)
    da = dr * cache.relu.positive
    x, W_1 = cache.lin1
    return da @ W_1.T, {"W_1": _rows(da).T @ _rows(x), "b_1": _rows(da).sum(axis=0), "W_2": dW_2, "b_2": db_2}


# --- cross-entropy ------------------------------------------------------------------------
def _smoothed_targets(p, targets, eps):
    V = p.shape[-1]
    q = np.full(p.shape, eps / V)
    np.put_along_axis(q, targets[..., None], 1 - eps + eps / V, axis=-1)
    return q


def cross_entropy_pads_kept(dloss, cache):
    """p - q at every position: the pad targets, which the loss skips, get a gradient."""
    p, targets, valid, n_tokens, eps = cache
    return dloss * (p - _smoothed_targets(p, targets, eps)) / n_tokens


def cross_entropy_mask_on_p_only(dloss, cache):
    """The pad mask put on p, not on p - q: the pad rows keep -q."""
    p, targets, valid, n_tokens, eps = cache
    return dloss * (p * valid[..., None] - _smoothed_targets(p, targets, eps)) / n_tokens


def cross_entropy_divide_by_all(dloss, cache):
    """Divided by every position, pads included, instead of the non-pad targets."""
    p, targets, valid, n_tokens, eps = cache
    return dloss * valid[..., None] * (p - _smoothed_targets(p, targets, eps)) / targets.size


def cross_entropy_target_without_share(dloss, cache):
    """Label smoothing's target set to 1 - eps: its eps/V share forgotten (q sums to 1 - eps/V)."""
    p, targets, valid, n_tokens, eps = cache
    V = p.shape[-1]
    q = np.full(p.shape, eps / V)
    np.put_along_axis(q, targets[..., None], 1 - eps, axis=-1)
    return dloss * valid[..., None] * (p - q) / n_tokens


def cross_entropy_q_minus_p(dloss, cache):
    """q - p: the sign of the softmax-loss gradient slipped."""
    p, targets, valid, n_tokens, eps = cache
    return dloss * valid[..., None] * (_smoothed_targets(p, targets, eps) - p) / n_tokens


# --- sublayer: Add & Norm -----------------------------------------------------------------
def _sublayer_file(add_norm_backward, out_pre=None):
    """A learner's sublayer file: their add_norm_backward, the other two written on it."""
    def sublayer_in_backward(du, cache):
        if cache is None:
            return du, {}
        dx, dgamma, dbeta = layernorm_backward(du, cache)
        return dx, {"gamma": dgamma, "beta": dbeta}

    def sublayer_out_backward(dy, cache):
        if isinstance(cache, AddNormCache):
            dx, ds, dgamma, dbeta = add_norm_backward(dy, cache)
            return dx, ds, {"gamma": dgamma, "beta": dbeta}
        if out_pre is not None:
            return out_pre(dy, cache)
        return dy, dropout_backward(dy, cache.drop), {}

    return {"add_norm_backward": add_norm_backward, "sublayer_in_backward": sublayer_in_backward,
            "sublayer_out_backward": sublayer_out_backward}


def add_norm_dx_skips_norm(dy, cache):
    """Post-LN's dx given the pre-LN rule (dx = dy): the residual path goes through the LayerNorm too."""
    dz, dgamma, dbeta = layernorm_backward(dy, cache.norm)
    return dy, dropout_backward(dz, cache.drop), dgamma, dbeta


def add_norm_ds_unscaled(dy, cache):
    """ds through the dropout's mask without its 1/(1-p)."""
    dz, dgamma, dbeta = layernorm_backward(dy, cache.norm)
    return dz, dz * (cache.drop.scale != 0), dgamma, dbeta


def add_norm_right(dy, cache):
    dz, dgamma, dbeta = layernorm_backward(dy, cache.norm)
    return dz, dropout_backward(dz, cache.drop), dgamma, dbeta


def sublayer_out_pre_dropout_on_residual(dy, cache):
    """Pre-LN: the dropout's backward applied to the residual path too (it is on the sublayer's only)."""
    return dropout_backward(dy, cache.drop), dropout_backward(dy, cache.drop), {}


# --- the layers and the model -------------------------------------------------------------
def encoder_layer_ffn_residual_forgotten(dy, cache):
    """The residual around the feed-forward sublayer not added: dx is the sublayer path's only."""
    dx, df, g_out = sublayer_out_backward(dy, cache.out2)
    du, g = feedforward_backward(df, cache.ffn)
    dx_f, g_in = sublayer_in_backward(du, cache.in2)
    grads = {**prefixed(g_out, "ln2."), **prefixed(g_in, "ln2."), **prefixed(g, "ffn.")}
    dx, da, g_out = sublayer_out_backward(dx_f, cache.out1)
    du, g = self_attention_backward(da, cache.self_attn)
    dx_a, g_in = sublayer_in_backward(du, cache.in1)
    grads.update({**prefixed(g_out, "ln1."), **prefixed(g_in, "ln1."), **prefixed(g, "self_attn.")})
    return dx + dx_a, grads


def decoder_layer_cross_path_not_added(dy, cache):
    """Around cross-attention, the gradient through the sublayer (dy_c) not added to the residual's."""
    dy, df, g_out = sublayer_out_backward(dy, cache.out3)
    du, g = feedforward_backward(df, cache.ffn)
    dy_f, g_in = sublayer_in_backward(du, cache.in3)
    grads = {**prefixed(g_out, "ln3."), **prefixed(g_in, "ln3."), **prefixed(g, "ffn.")}
    dy, dc, g_out = sublayer_out_backward(dy + dy_f, cache.out2)
    du, dmemory, g = cross_attention_backward(dc, cache.cross_attn)
    dy_c, g_in = sublayer_in_backward(du, cache.in2)
    grads.update({**prefixed(g_out, "ln2."), **prefixed(g_in, "ln2."), **prefixed(g, "cross_attn.")})
    dy, da, g_out = sublayer_out_backward(dy, cache.out1)
    du, g = self_attention_backward(da, cache.self_attn)
    dy_a, g_in = sublayer_in_backward(du, cache.in1)
    grads.update({**prefixed(g_out, "ln1."), **prefixed(g_in, "ln1."), **prefixed(g, "self_attn.")})
    return dy + dy_a, dmemory, grads


def _model_body(dlogits, cache, embed_grad):
    """The whole backward with ``embed_grad`` for the two embeddings: (grads, dE_src, dE_tgt, dE_out)."""
    d = cache.H.shape[-1]
    dl = _rows(dlogits)
    dH = (dl @ cache.E_out).reshape(*dlogits.shape[:-1], d)
    dE_out = dl.T @ _rows(cache.H)
    dy, dmemory, grads = decoder_backward(dH, cache.decoder)
    dx, enc = encoder_backward(dmemory, cache.encoder)
    grads.update(enc)
    return grads, embed_grad(dx, cache.src_embed), embed_grad(dy, cache.tgt_embed), dE_out


def model_tie_source_forgotten(dlogits, cache):
    """The shared embedding's gradient from the output projection and the target side: the
    source embedding's share of the three-way tie forgotten."""
    grads, dE_src, dE_tgt, dE_out = _model_body(dlogits, cache, embed_backward)
    k = cache.keys
    if k["src"] == k["tgt"] == k["out"]:
        grads[k["out"]] = dE_out + dE_tgt
    else:
        grads[k["src"]], grads[k["tgt"]], grads[k["out"]] = dE_src, dE_tgt, dE_out
    return grads


def _embed_grad_unscaled(dx, cache):
    """The learner's embedding step: the dropout, the positions (a constant), the scatter; the
    sqrt(d_model) the forward multiplies by, forgotten."""
    dx = dropout_backward(dx, cache.drop)
    ids, V, scale = cache.emb
    dE = np.zeros((V, dx.shape[-1]))
    np.add.at(dE, ids.reshape(-1), _rows(dx))
    return dE


def model_embedding_scale_forgotten(dlogits, cache):
    """The tie summed, but each embedding's gradient without the forward's sqrt(d_model)."""
    grads, dE_src, dE_tgt, dE_out = _model_body(dlogits, cache, _embed_grad_unscaled)
    k = cache.keys
    if k["src"] == k["tgt"] == k["out"]:
        grads[k["out"]] = dE_src + dE_tgt + dE_out
    else:
        grads[k["src"]], grads[k["tgt"]], grads[k["out"]] = dE_src, dE_tgt, dE_out
    return grads


# --- the variants (npformer/exercise/variants.py) -----------------------------------------
def rmsnorm_statistic_path_forgotten(dy, cache):
    """dx = gamma * dy * rrms: the path through mean(x^2) forgotten."""
    x, rrms, gamma = cache
    return dy * gamma * rrms, (dy * x * rrms).sum(axis=(0, 1))


def rmsnorm_sum_for_mean(dy, cache):
    """The statistic's term with sum(g x) where mean(g x) belongs."""
    x, rrms, gamma = cache
    g = dy * gamma
    return rrms * g - x * rrms ** 3 * (g * x).sum(axis=-1, keepdims=True), (dy * x * rrms).sum(axis=(0, 1))


def rmsnorm_dgamma_batch_axis_only(dy, cache):
    """dgamma summed over the batch only."""
    x, rrms, gamma = cache
    g = dy * gamma
    return rrms * g - x * rrms ** 3 * (g * x).mean(axis=-1, keepdims=True), (dy * x * rrms).sum(axis=0)


def _gelu_slope(x, t):
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * math.sqrt(2 / math.pi) * (1 + 3 * 0.044715 * x * x)


def gelu_halves_dropped(dy, cache):
    """The product rule's two terms without their factor 0.5."""
    x, t = cache
    return dy * ((1 + t) + x * (1 - t * t) * math.sqrt(2 / math.pi) * (1 + 3 * 0.044715 * x * x))


def gelu_dy_forgotten(dy, cache):
    """GELU'(x) returned, not multiplied by dy."""
    x, t = cache
    return _gelu_slope(x, t)


def softmax_temperature_tau_forgotten(dp, cache):
    """softmax's backward, the chain rule's 1/tau forgotten."""
    p, tau = cache
    return p * (dp - (dp * p).sum(axis=-1, keepdims=True))


def softmax_temperature_tau_multiplied(dp, cache):
    """z / tau differentiated as z * tau."""
    p, tau = cache
    return p * (dp - (dp * p).sum(axis=-1, keepdims=True)) * tau


def ignore_index_rows_kept(dloss, cache):
    """The ignored targets mapped to 0 for the one-hot, their rows then kept."""
    p, targets, keep, n = cache
    dz = p.copy()
    safe = np.where(keep, targets, 0)
    np.put_along_axis(dz, safe[..., None], np.take_along_axis(dz, safe[..., None], axis=-1) - 1, axis=-1)
    return dloss * dz / n


def ignore_index_divide_by_all(dloss, cache):
    """Divided by every target, the ignored ones included."""
    p, targets, keep, n = cache
    dz = p.copy()
    safe = np.where(keep, targets, 0)
    np.put_along_axis(dz, safe[..., None], np.take_along_axis(dz, safe[..., None], axis=-1) - 1, axis=-1)
    return dloss * dz * keep[..., None] / targets.size


# --- staged mode: a learner's staged file, one function per node ------------------------------
# The right files (what `npformer exercise start ID --staged` asks for, written out); each staged
# bug below is one of them with one node's function replaced.
SOFTMAX_STAGED = {
    "d_s": lambda g, f: -(g["p"] * f["e"]).sum(axis=-1, keepdims=True) / f["s"] ** 2,
    "d_e": lambda g, f: g["p"] / f["s"] + g["s"],
    "d_z": lambda g, f: g["e"] * f["e"],
}
LAYERNORM_STAGED = {
    "d_xhat": lambda g, f: g["y"] * f["gamma"],
    "d_rstd": lambda g, f: (g["xhat"] * f["xc"]).sum(axis=-1, keepdims=True),
    "d_var": lambda g, f: -0.5 * g["rstd"] * (f["var"] + f["eps"]) ** -1.5,
    "d_xc": lambda g, f: g["xhat"] * f["rstd"] + g["var"] * 2 * f["xc"] / f["xc"].shape[-1],
    "d_mu": lambda g, f: -g["xc"].sum(axis=-1, keepdims=True),
    "d_x": lambda g, f: g["xc"] + g["mu"] / f["x"].shape[-1],
    "d_gamma": lambda g, f: (g["y"] * f["xhat"]).sum(axis=(0, 1)),
    "d_beta": lambda g, f: g["y"].sum(axis=(0, 1)),
}
ATTENTION_STAGED = {
    "d_P": lambda g, f: g["out"] @ f["V"].swapaxes(-1, -2),
    "d_Ss": lambda g, f: f["P"] * (g["P"] - (g["P"] * f["P"]).sum(axis=-1, keepdims=True)),
    "d_S": lambda g, f: g["Ss"] * f["scale"],
    "d_Q": lambda g, f: g["S"] @ f["K"],
    "d_K": lambda g, f: g["S"].swapaxes(-1, -2) @ f["Q"],
    "d_V": lambda g, f: f["P"].swapaxes(-1, -2) @ g["out"],
}
CROSS_ENTROPY_STAGED = {
    "d_nll": lambda g, f: g["loss"] * f["valid"] / f["N"],
    "d_logp": lambda g, f: -f["q"] * g["nll"][..., None],
    "d_z": lambda g, f: g["logp"] - np.exp(f["logp"]) * g["logp"].sum(axis=-1, keepdims=True),
}


def staged_file(right: dict, **bug):
    """A learner's staged file: ``right`` with the ``bug``'s functions in place of theirs."""
    return types.SimpleNamespace(STAGED=True, **{**right, **bug})


def d_s_sign(g, f):
    """ds without its minus sign: p = e / s falls as s grows."""
    return (g["p"] * f["e"]).sum(axis=-1, keepdims=True) / f["s"] ** 2


def d_e_sum_path_forgotten(g, f):
    """e feeds s and p; only p's term collected."""
    return g["p"] / f["s"]


def d_s_no_keepdims(g, f):
    """The sum over the last axis without keepdims: (B, T), not s's (B, T, 1)."""
    return -(g["p"] * f["e"]).sum(axis=-1) / f["s"][..., 0] ** 2


def d_mu_no_keepdims(g, f):
    """The sum without keepdims: (B, T), not mu's (B, T, 1)."""
    return -g["xc"].sum(axis=-1)


def d_var_half_forgotten(g, f):
    """d/dvar of (var + eps)^-1/2 without its factor -1/2."""
    return g["rstd"] * (f["var"] + f["eps"]) ** -1.5


def d_xc_variance_path_forgotten(g, f):
    """xc feeds xhat and var; only xhat's term collected."""
    return g["xhat"] * f["rstd"]


def d_x_mean_path_forgotten(g, f):
    """x feeds xc and mu; only xc's term collected."""
    return g["xc"]


def d_gamma_batch_axis_only(g, f):
    """dgamma summed over the batch only."""
    return (g["y"] * f["xhat"]).sum(axis=0)


def d_S_scale_forgotten(g, f):
    """Ss = S * scale passed back without the scale."""
    return g["Ss"]


def d_Ss_sum_term_forgotten(g, f):
    """The softmax step as P * dP: its -sum(dP * P) term forgotten."""
    return f["P"] * g["P"]


def d_Q_scaled_again(g, f):
    """The scale applied in d_S, and once more in d_Q."""
    return g["S"] @ f["K"] * f["scale"]


def d_nll_divide_by_all(g, f):
    """Divided by every position instead of the N non-pad ones."""
    return g["loss"] * f["valid"] / f["valid"].size


def d_nll_pads_kept(g, f):
    """The valid mask forgotten: the pad position gets a gradient."""
    return g["loss"] * np.ones_like(f["valid"]) / f["N"]


def d_logp_sign(g, f):
    """nll = -sum(q logp): the minus forgotten."""
    return f["q"] * g["nll"][..., None]


def d_z_softmax_term_forgotten(g, f):
    """logp = z - logsumexp(z) differentiated as if logsumexp(z) were a constant."""
    return g["logp"]


# --- the corpus -----------------------------------------------------------------------------
def _mh(self_fn=self_attention_right, cross_fn=cross_attention_right):
    return {"self_attention_backward": self_fn, "cross_attention_backward": cross_fn}


# b_k's gradient is zero whatever reaches it (softmax ignores a shift shared by every key), so a
# bug upstream of the keys leaves it right
_SELF_ATTN = tuple("dself_attn." + k for k in ("W_q", "b_q", "W_k", "W_v", "b_v", "W_o", "b_o"))

B = Bug
BUGS = [
    # linear
    B("linear_db_is_dy", "linear", {"linear_backward": linear_db_is_dy}, ("db",), "shape",
      "db returned as dy (not summed over positions)"),
    B("linear_db_batch_axis_only", "linear", {"linear_backward": linear_db_batch_axis_only}, ("db",), "shape",
      "db summed over the batch axis only"),
    B("linear_db_mean", "linear", {"linear_backward": linear_db_mean}, ("db",), "scale",
      "db as a mean over positions", fix="scale"),
    B("linear_dW_dyT_x", "linear", {"linear_backward": linear_dW_dyT_x}, ("dW",), "transpose",
      "dW = dy^T x", fix="transpose"),
    B("linear_dx_W_untransposed", "linear", {"linear_backward": linear_dx_W_untransposed}, ("dx",), "operands",
      "dx = dy W with a square W"),
    # relu, dropout
    B("relu_leaky_habit", "relu", {"relu_backward": relu_leaky_habit}, ("dx",), "region",
      "0.01 dy passed where x <= 0 (a leaky ReLU)"),
    B("dropout_scale_missing", "dropout", {"dropout_backward": dropout_scale_missing}, ("dx",), "scale",
      "the 1/(1-p) forgotten", fix="scale"),
    B("dropout_scale_twice", "dropout", {"dropout_backward": dropout_scale_twice}, ("dx",), "scale",
      "the 1/(1-p) applied twice", fix="scale"),
    # softmax
    B("softmax_diagonal_only", "softmax", {"softmax_backward": softmax_diagonal_only}, ("dz",), "weights",
      "dz = dp p (1 - p): the Jacobian's diagonal only"),
    B("softmax_masked_entries_pass", "softmax", {"softmax_backward": softmax_masked_entries_pass}, ("dz",),
      "region", "dp passed through at the masked entries"),
    # layernorm
    B("layernorm_textbook_without_gamma", "layernorm", {"layernorm_backward": layernorm_textbook_without_gamma},
      ("dx",), "only", "gamma left out of dx (the compact formula with dy)"),
    B("layernorm_variance_term_sign", "layernorm", {"layernorm_backward": layernorm_variance_term_sign}, ("dx",),
      "weights", "the variance term's sign flipped"),
    B("layernorm_mean_term_summed", "layernorm", {"layernorm_backward": layernorm_mean_term_summed}, ("dx",),
      "axis", "sum(g) where mean(g) belongs in dx"),
    B("layernorm_dbeta_batch_axis_only", "layernorm", {"layernorm_backward": layernorm_dbeta_batch_axis_only},
      ("dbeta",), "shape", "dbeta summed over the batch axis only"),
    B("layernorm_dgamma_mean", "layernorm", {"layernorm_backward": layernorm_dgamma_mean}, ("dgamma",), "scale",
      "dgamma as a mean over positions", fix="scale"),
    # embedding
    B("embedding_assign", "embedding", {"embedding_backward": embedding_assign}, ("dE",), "region",
      "dE[ids] = dy: an assignment, not an add-scatter"),
    B("embedding_buffered_add", "embedding", {"embedding_backward": embedding_buffered_add}, ("dE",), "region",
      "dE[ids] += dy: NumPy's buffered += adds a repeated id once"),
    B("embedding_scale_forgotten", "embedding", {"embedding_backward": embedding_scale_forgotten}, ("dE",),
      "scale", "the sqrt(d_model) scale forgotten", fix="scale"),
    B("embedding_scale_d_model", "embedding", {"embedding_backward": embedding_scale_d_model}, ("dE",), "scale",
      "scaled by d_model, not sqrt(d_model)", fix="scale"),
    # attention
    B("attention_dK_unscaled", "attention", {"attention_backward": attention_dK_unscaled}, ("dK",), "scale",
      "1/sqrt(d_k) on dQ only", fix="scale"),
    B("attention_dV_scaled", "attention", {"attention_backward": attention_dV_scaled}, ("dV",), "scale",
      "1/sqrt(d_k) on dV too", fix="scale"),
    B("attention_dK_dS_untransposed", "attention", {"attention_backward": attention_dK_dS_untransposed}, ("dK",),
      "operands", "dK = dS Q (square in self-attention)"),
    B("attention_dV_P_untransposed", "attention", {"attention_backward": attention_dV_P_untransposed}, ("dV",),
      "operands", "dV = P dout (square in self-attention)"),
    B("attention_softmax_sum_missing", "attention", {"attention_backward": attention_softmax_sum_missing},
      ("dQ", "dK"), "weights", "dS = P * dP: the softmax's sum term missing"),
    B("attention_head_loop_no_keepdims", "attention", {"attention_backward": attention_head_loop_no_keepdims},
      ("dQ", "dK"), "axis", "a per-head loop, the row sum without keepdims on a (T, T) block"),
    B("attention_renormalised", "attention", {"attention_backward": attention_renormalised}, ("dQ", "dK"),
      "nonfinite", "dS divided by sum(P): 0/0 on a fully masked row"),
    # multi-head
    B("cross_attention_dmemory_keys_only", "multihead", _mh(cross_fn=cross_attention_dmemory_keys_only),
      ("dmemory",), "only", "cross-attention's dmemory from the key path only"),
    B("self_attention_dW_o_transposed", "multihead", _mh(self_fn=self_attention_dW_o_transposed), ("dW_o",),
      "transpose", "dW_o = dy^T heads (W_o square)", fix="transpose"),
    B("self_attention_W_o_untransposed", "multihead", _mh(self_fn=self_attention_W_o_untransposed),
      ("dx", "dW_q", "db_q", "dW_k", "dW_v", "db_v"), "only",
      "d_heads = dy W_o, not dy W_o^T (W_o square)"),
    # feed-forward
    B("feedforward_db_1_batch_axis_only", "feedforward", {"feedforward_backward": feedforward_db_1_batch_axis_only},
      ("db_1",), "shape", "db_1 summed over the batch axis only"),
    B("feedforward_dW_1_transposed", "feedforward", {"feedforward_backward": feedforward_dW_1_transposed},
      ("dW_1",), "transpose", "dW_1 = da^T x, (d_ff, d_model)", fix="transpose"),
    # cross-entropy
    B("cross_entropy_pads_kept", "cross_entropy", {"cross_entropy_backward": cross_entropy_pads_kept},
      ("dlogits",), "region", "the pad mask forgotten in the backward"),
    B("cross_entropy_mask_on_p_only", "cross_entropy", {"cross_entropy_backward": cross_entropy_mask_on_p_only},
      ("dlogits",), "region", "the pad mask applied to p only, not to p - q"),
    B("cross_entropy_divide_by_all", "cross_entropy", {"cross_entropy_backward": cross_entropy_divide_by_all},
      ("dlogits",), "scale", "divided by all positions, not the non-pad ones", fix="scale"),
    B("cross_entropy_target_without_share", "cross_entropy",
      {"cross_entropy_backward": cross_entropy_target_without_share}, ("dlogits",), "region",
      "label smoothing's target 1 - eps, without its + eps/V"),
    B("cross_entropy_q_minus_p", "cross_entropy", {"cross_entropy_backward": cross_entropy_q_minus_p},
      ("dlogits",), "scale", "q - p: the sign slipped", fix="scale"),
    # sublayer
    B("add_norm_dx_skips_norm", "sublayer", _sublayer_file(add_norm_dx_skips_norm), ("dx",), "only",
      "post-LN's dx = dy (the pre-LN rule)"),
    B("add_norm_ds_unscaled", "sublayer", _sublayer_file(add_norm_ds_unscaled), ("ds",), "scale",
      "ds through the dropout mask without 1/(1-p)", fix="scale"),
    B("sublayer_pre_dropout_on_residual", "sublayer",
      _sublayer_file(add_norm_right, out_pre=sublayer_out_pre_dropout_on_residual), ("dx",), "only",
      "pre-LN: the dropout's backward on the residual path too"),
    # layers and the model
    B("encoder_layer_ffn_residual_forgotten", "encoder_layer",
      {"encoder_layer_backward": encoder_layer_ffn_residual_forgotten},
      ("dx", *_SELF_ATTN, "dln1.gamma", "dln1.beta"), "only", "the residual around the feed-forward not added"),
    B("decoder_layer_cross_path_not_added", "decoder_layer",
      {"decoder_layer_backward": decoder_layer_cross_path_not_added},
      ("dy", *_SELF_ATTN, "dln1.gamma", "dln1.beta"), "only",
      "around cross-attention, the sublayer path's gradient not added"),
    B("model_tie_source_forgotten", "model", {"transformer_backward": model_tie_source_forgotten}, ("dembed",),
      "only", "the tie's sum without the source embedding"),
    B("model_embedding_scale_forgotten", "model", {"transformer_backward": model_embedding_scale_forgotten},
      ("dembed",), "only", "the embeddings' sqrt(d_model) forgotten in the model"),
    # variants
    B("rmsnorm_statistic_path_forgotten", "rmsnorm", {"rmsnorm_backward": rmsnorm_statistic_path_forgotten},
      ("dx",), "weights", "the path through mean(x^2) forgotten"),
    B("rmsnorm_sum_for_mean", "rmsnorm", {"rmsnorm_backward": rmsnorm_sum_for_mean}, ("dx",), "weights",
      "sum(g x) where mean(g x) belongs"),
    B("rmsnorm_dgamma_batch_axis_only", "rmsnorm", {"rmsnorm_backward": rmsnorm_dgamma_batch_axis_only},
      ("dgamma",), "shape", "dgamma summed over the batch axis only"),
    B("gelu_halves_dropped", "gelu", {"gelu_backward": gelu_halves_dropped}, ("dx",), "scale",
      "the 0.5 of both terms dropped", fix="scale"),
    B("gelu_dy_forgotten", "gelu", {"gelu_backward": gelu_dy_forgotten}, ("dx",), "zero",
      "GELU'(x) not multiplied by dy"),
    B("softmax_temperature_tau_forgotten", "softmax_temperature",
      {"softmax_temperature_backward": softmax_temperature_tau_forgotten}, ("dz",), "scale",
      "the 1/tau forgotten", fix="scale"),
    B("softmax_temperature_tau_multiplied", "softmax_temperature",
      {"softmax_temperature_backward": softmax_temperature_tau_multiplied}, ("dz",), "scale",
      "multiplied by tau, not divided", fix="scale"),
    B("ignore_index_rows_kept", "cross_entropy_ignore_index",
      {"cross_entropy_ignore_index_backward": ignore_index_rows_kept}, ("dlogits",), "region",
      "the ignored targets' rows kept"),
    B("ignore_index_divide_by_all", "cross_entropy_ignore_index",
      {"cross_entropy_ignore_index_backward": ignore_index_divide_by_all}, ("dlogits",), "scale",
      "divided by every target, ignored ones included", fix="scale"),
    # staged
    B("staged_softmax_d_s_sign", "softmax", staged_file(SOFTMAX_STAGED, d_s=d_s_sign), ("ds",), "scale",
      "d_s without its minus", fix="scale"),
    B("staged_softmax_d_e_sum_path", "softmax", staged_file(SOFTMAX_STAGED, d_e=d_e_sum_path_forgotten), ("de",),
      "axis", "d_e without s's term"),
    B("staged_softmax_d_s_no_keepdims", "softmax", staged_file(SOFTMAX_STAGED, d_s=d_s_no_keepdims), ("ds",),
      "shape", "d_s without keepdims"),
    B("staged_layernorm_d_mu_no_keepdims", "layernorm", staged_file(LAYERNORM_STAGED, d_mu=d_mu_no_keepdims),
      ("dmu",), "shape", "d_mu without keepdims"),
    B("staged_layernorm_d_var_half", "layernorm", staged_file(LAYERNORM_STAGED, d_var=d_var_half_forgotten),
      ("dvar",), "scale", "d_var without its -1/2", fix="scale"),
    B("staged_layernorm_d_xc_variance_path", "layernorm",
      staged_file(LAYERNORM_STAGED, d_xc=d_xc_variance_path_forgotten), ("dxc",), "weights",
      "d_xc without var's term"),
    B("staged_layernorm_d_x_mean_path", "layernorm", staged_file(LAYERNORM_STAGED, d_x=d_x_mean_path_forgotten),
      ("dx",), "axis", "d_x without mu's term"),
    B("staged_layernorm_d_gamma_batch_axis", "layernorm",
      staged_file(LAYERNORM_STAGED, d_gamma=d_gamma_batch_axis_only), ("dgamma",), "shape",
      "d_gamma summed over the batch axis only"),
    B("staged_attention_d_S_unscaled", "attention", staged_file(ATTENTION_STAGED, d_S=d_S_scale_forgotten),
      ("dS",), "scale", "d_S without the scale", fix="scale"),
    B("staged_attention_d_Ss_sum_term", "attention", staged_file(ATTENTION_STAGED, d_Ss=d_Ss_sum_term_forgotten),
      ("dSs",), "weights", "d_Ss = P * dP"),
    B("staged_attention_d_Q_scaled_again", "attention", staged_file(ATTENTION_STAGED, d_Q=d_Q_scaled_again),
      ("dQ",), "scale", "the scale applied again in d_Q", fix="scale"),
    B("staged_cross_entropy_d_nll_by_all", "cross_entropy",
      staged_file(CROSS_ENTROPY_STAGED, d_nll=d_nll_divide_by_all), ("dnll",), "scale",
      "d_nll divided by all positions", fix="scale"),
    B("staged_cross_entropy_d_nll_pads", "cross_entropy", staged_file(CROSS_ENTROPY_STAGED, d_nll=d_nll_pads_kept),
      ("dnll",), "region", "d_nll without the valid mask"),
    B("staged_cross_entropy_d_logp_sign", "cross_entropy", staged_file(CROSS_ENTROPY_STAGED, d_logp=d_logp_sign),
      ("dlogp",), "scale", "d_logp without its minus", fix="scale"),
    B("staged_cross_entropy_d_z_softmax_term", "cross_entropy",
      staged_file(CROSS_ENTROPY_STAGED, d_z=d_z_softmax_term_forgotten), ("dz",), "weights",
      "d_z without the log-softmax's -p * sum(g) term"),
]
del B

BY_ID = {b.id: b for b in BUGS}
assert len(BY_ID) == len(BUGS), "bug ids must be unique"


# --- grading: the helpers the tests and benchmarks/grader_corpus.py share ------------------------
def run(bug: Bug, seed: int, known: bool = False, composed: bool = False):
    """``check``'s report on the bug (quiet). ``known=False`` keeps mistakes.py out of it: the
    generic detectors alone must name the bug."""
    from npformer.exercise import check
    with np.errstate(all="ignore"):  # a NaN is some bugs' point
        return check(bug.exercise, bug.functions, seed=seed, quiet=True, known=known, composed=composed)


def tag_class(tag: str) -> str:
    return tag.split(":", 1)[0]


def named(bug: Bug, report):
    """The finding that names the bug as the teacher does, or None: the teacher's class and one of
    the teacher's gradients (for ``only``: exactly the teacher's set of wrong gradients)."""
    for f in report.findings:
        if tag_class(f.tag) != bug.expect:
            continue
        if bug.expect == "only":
            if set(f.tag.split(":", 1)[1].split(",")) == set(bug.gradients):
                return f
        elif f.gradient in bug.gradients:
            return f
    return None


@dataclass
class Advice:
    """One finding's advice, applied: the relative error of the learner's gradient before and after."""
    finding: object
    before: float
    after: float
    must_fix: bool                    # the bug's whole error on this gradient is of the advice's kind
    problems: list = field(default_factory=list)

    @property
    def harmful(self) -> bool:
        return bool(self.problems)


def _rel(G, N, floor=0.0) -> float:
    from npformer.verify.diagnose import rel_error
    if np.shape(G) != np.shape(N):
        return float("inf")
    return rel_error(np.asarray(G, dtype=np.float64), np.asarray(N, dtype=np.float64), floor)


@lru_cache(maxsize=None)
def _case_gradients(bug_id: str, seed: int, label: str):
    """(G, N, floor, exact) of one case of the grader's draw: the learner's gradients, the true ones
    (the reference's; for a variant, the grader's own central differences), the floor of the
    relative error, and whether the grader compared every entry (not a sample)."""
    from npformer.backend import get_backend
    from npformer.exercise import grader, variants
    from npformer.exercise.catalog import EXERCISES
    from npformer.verify.gradcheck import differentiable, numerical_gradient
    bug, be = BY_ID[bug_id], get_backend("numpy")
    rng = np.random.default_rng(seed)
    if bug.exercise in variants.VARIANTS:
        _, name, _, cases, _ = variants.VARIANTS[bug.exercise]
        fns, refs = grader.lookup(bug.exercise, [name], bug.functions), None
    else:
        ex = EXERCISES[bug.exercise]
        cases, fns, refs = ex.cases, grader.normalise(ex, bug.functions), grader.all_references()
    case = next((c for c in cases(rng, be) if c.name == label), None)
    if case is None:
        raise LookupError(f"{bug_id}, seed {seed}: no case {label!r} in the grader's draw")
    y, cache = case.forward(**case.inputs)
    dy = np.random.default_rng(seed).standard_normal(np.shape(y)) + 0.5
    with np.errstate(all="ignore"):
        G = {k: np.asarray(v) for k, v in grader.case_grads(case, grader.Fns(fns, refs or {}), dy, cache).items()}
    if refs is not None:
        N = {k: np.asarray(v) for k, v in grader.case_grads(case, grader.Fns({}, refs), dy, cache).items()}
    else:
        N = {}
        for g, n in zip(grader._grad_names(case.inputs), differentiable(case.inputs)):
            arr = differentiable(case.inputs)[n]
            N[g] = numerical_gradient(case.forward, case.inputs, n, dy, case.h, None, seed)[1].reshape(arr.shape)
    largest = [float(np.abs(a).max(initial=0.0)) for a in (*G.values(), *N.values())
               if np.shape(a) and np.isfinite(a).all()]
    return G, N, 0.01 * max(largest, default=0.0), case.max_entries is None


@lru_cache(maxsize=None)
def _staged_gradients(bug_id: str, seed: int):
    """(G, N) of a staged file: each node's function on the true upstream gradients, and the true
    node gradients, drawn as ``staged.check_staged`` draws them."""
    from npformer.exercise import staged
    bug = BY_ID[bug_id]
    inputs, steps, out = staged.GRAPHS[bug.exercise]()
    rng = np.random.default_rng(seed)
    drawn = staged.draw(bug.exercise, rng)
    f = staged.forward(steps, {**drawn, "xp": np})
    dy = np.asarray(rng.standard_normal(np.shape(f[out])) + 0.5)
    true = {out: dy}
    for name in staged.backward_order(bug.exercise):
        true[name] = staged._numeric(steps, f, name, dy)
    with np.errstate(all="ignore"):
        G = {"d" + n: np.asarray(getattr(bug.functions, "d_" + n)(dict(true), dict(f)))
             for n in staged.backward_order(bug.exercise)}
    return G, {"d" + n: true[n] for n in staged.backward_order(bug.exercise)}


def advice(bug: Bug, seed: int, report) -> list:
    """Every finding of ``report`` (graded with ``seed``) that advises an operation on the learner's
    gradient (``Finding.fix``), applied to that gradient of its case: an ``Advice`` per finding.

    Its problems: the advice makes the error grow; it leaves the error where the bug's whole error
    is of the advice's kind (then it must make the gradient right); the words disagree with it
    ("too large" with a factor above 1 in size, "too small" with one below); or the case cannot be
    rebuilt the way the grader drew it (the rebuilt error differs from the finding's)."""
    out = []
    for f in report.findings:
        fix = getattr(f, "fix", None)
        if not fix:
            continue
        if bug.staged:
            G, N = _staged_gradients(bug.id, seed)
            floor, exact = 0.0, True
        else:
            G, N, floor, exact = _case_gradients(bug.id, seed, f.case)
        g = f.gradient
        before = _rel(G[g], N[g], floor)
        with np.errstate(all="ignore"):
            after = _rel(apply_fix(fix, G[g]), N[g], floor)
        must_fix = bug.fix == fix[0] and g in bug.gradients
        a = Advice(f, before, after, must_fix)
        rebuilt = f.rel_error is None or not exact or (math.isinf(before) and math.isinf(f.rel_error)) \
            or abs(before - f.rel_error) <= 1e-6 + 1e-4 * abs(f.rel_error)
        if not rebuilt:
            a.problems.append(f"the rebuilt case's error {before:.3e} is not the finding's {f.rel_error:.3e}: "
                              "the corpus's reconstruction is out of step with the grader's draw")
        if after > before * (1 + 1e-9) + 1e-12:
            a.problems.append(f"the advice makes it worse: relative error {before:.3e} -> {after:.3e}")
        elif must_fix and after > 1e-6:
            a.problems.append(f"the advice should make it right, but leaves relative error {after:.3e}")
        if fix[0] == "scale":
            c = abs(fix[1])
            if "too large" in f.diagnosis and not c < 1:
                a.problems.append(f"the text says too large, but the advice multiplies by {fix[1]:.6g}")
            if "too small" in f.diagnosis and not c > 1:
                a.problems.append(f"the text says too small, but the advice multiplies by {fix[1]:.6g}")
        out.append(a)
    return out


@dataclass
class Result:
    """A bug graded on every seed: the reports, the naming finding per seed, the advice given."""
    bug: Bug
    reports: dict                     # seed -> Report
    hits: dict                        # seed -> the naming Finding or None
    advice: dict                      # seed -> [Advice]

    @property
    def failed_everywhere(self) -> bool:
        return all(not r.passed and r.verdict != "passed" for r in self.reports.values())

    @property
    def named(self) -> bool:
        """Named on every seed: a detector that names a bug only sometimes is not yet reliable."""
        return all(f is not None for f in self.hits.values())

    @property
    def harmful(self) -> list:
        return [a for lst in self.advice.values() for a in lst if a.harmful]


def grade(bug: Bug, seeds=SEEDS) -> Result:
    reports = {s: run(bug, s) for s in seeds}
    return Result(bug, reports, {s: named(bug, r) for s, r in reports.items()},
                  {s: advice(bug, s, r) for s, r in reports.items()})


@lru_cache(maxsize=None)
def grade_all(seeds=SEEDS) -> tuple:
    """Every bug graded (cached: the tests and the document's table share one run)."""
    return tuple(grade(b, seeds) for b in BUGS)
