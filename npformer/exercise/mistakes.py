"""The known mistakes of each exercise: real bugs, written the way a learner writes them.

Two uses:
* ``check`` recognises them: when a learner's gradients equal a known mistake's on
  the same case, the report names it ("this is a known mistake: gamma dropped
  from LayerNorm's dx");
* the tests prove the grader strong enough: every mistake here must fail ``check``,
  be named, and (where ``expect`` is given) be found by the generic detectors of
  ``diagnose`` on their own, without the library (``expect`` is the tag they give).
"""
from __future__ import annotations

from dataclasses import dataclass

from npformer import model, ops  # the reference's other functions, read as the model reads them
from npformer.backend import backend_of
from npformer.model.sublayer import AddNormCache, prefixed
from npformer.ops.multihead import merge_heads, split_heads


@dataclass(frozen=True)
class Mistake:
    name: str
    description: str
    functions: dict
    expect: str | None = None   # the tag the generic detectors must give (a prefix)


def _rows(a):
    return a.reshape(-1, a.shape[-1])


def _with(name, fn, **settings):
    """{name: fn with these settings}: one mistake of a function written once with switches."""
    return {name: lambda *args, **kwargs: fn(*args, **kwargs, **settings)}


def _merged(parts):
    """Head gradients, each (B, h, T, d_k), as one (B, T, n d_model): merge_heads of their stack."""
    return merge_heads(backend_of(*parts).xp.stack(parts))


# --- linear -----------------------------------------------------------------------
def _linear(dy, cache, dW_transposed=False, db_mean=False, dx_W_untransposed=False, dx_sign=1):
    x, W = cache
    dx = dx_sign * (dy @ (W if dx_W_untransposed else W.T))  # dy W: the right shape only for a square W
    dW = _rows(dy).T @ _rows(x) if dW_transposed else _rows(x).T @ _rows(dy)
    return dx, dW, _rows(dy).mean(axis=0) if db_mean else _rows(dy).sum(axis=0)


# --- relu, residual, dropout ---------------------------------------------------------
def _relu_no_mask(dy, cache):
    return dy.copy()


def _relu_sign(dy, cache):
    return -dy * cache.positive


def _relu_forgot_dy(dy, cache):
    return cache.positive.astype(dy.dtype)


def _residual_one_branch(dz, cache):
    return dz, dz * 0


def _residual_half(dz, cache):
    return dz / 2, dz / 2


def _residual_sign(dz, cache):
    return dz, -dz


def _dropout_no_rescale(dy, cache):
    return dy if cache.scale is None else dy * (cache.scale != 0)


def _dropout_twice(dy, cache):
    return dy if cache.scale is None else dy * cache.scale * cache.scale


def _dropout_no_mask(dy, cache):
    return dy if cache.scale is None else dy * cache.scale.max()


# --- softmax -------------------------------------------------------------------------
def _softmax(dp, cache, out=None, sum_term=True, sign=1, reduce="sum", axis=-1):
    p = cache.p
    if not sum_term:
        return dp * p
    return sign * p * (dp - getattr(dp * p, reduce)(axis=axis, keepdims=True))


# --- layernorm -----------------------------------------------------------------------
def _ln(dy, cache, gamma_in_dx=True, mean_term=True, var_term=True, dgamma_sum_dy=False, dbeta_mean=False):
    xhat, rstd, gamma = cache
    d = xhat.shape[-1]
    g = dy * gamma if gamma_in_dx else dy
    dx = g.copy()
    if mean_term:
        dx = dx - g.mean(axis=-1, keepdims=True)
    if var_term:
        dx = dx - xhat * (g * xhat).mean(axis=-1, keepdims=True)
    dgamma = dy.reshape(-1, d).sum(axis=0) if dgamma_sum_dy else (dy * xhat).reshape(-1, d).sum(axis=0)
    dbeta = dy.reshape(-1, d).mean(axis=0) if dbeta_mean else dy.reshape(-1, d).sum(axis=0)
    return dx * rstd, dgamma, dbeta


# --- embedding -----------------------------------------------------------------------
def _embedding(dy, cache, assign=False, scaled=True, transpose=False):
    ids, V, scale = cache
    xp = backend_of(dy).xp
    d = dy.shape[-1]
    dE = xp.zeros((V, d), dtype=dy.dtype)
    values = dy.reshape(-1, d) * (scale if scaled else 1.0)
    if assign:
        dE[ids.reshape(-1)] = values  # a repeated id keeps only its last row
    else:
        for i, row in zip(ids.reshape(-1).tolist(), values):
            dE[i] += row
    return dE.T.copy() if transpose else dE


# --- attention -----------------------------------------------------------------------
def _attention(dout, cache, scale_power=1, skip_softmax=False, dK_untransposed=False):
    Q, K, V, P, scale = cache
    dV = P.swapaxes(-1, -2) @ dout
    dP = dout @ V.swapaxes(-1, -2)
    dS = dP if skip_softmax else P * (dP - (dP * P).sum(axis=-1, keepdims=True))
    dS = dS * scale ** scale_power
    dQ = dS @ K
    dK = dS @ Q if dK_untransposed else dS.swapaxes(-1, -2) @ Q
    return dQ, dK, dV


# --- multi-head ----------------------------------------------------------------------
def _self_attention(dy, cache, paths="qkv", transpose_W_o=False):
    d_heads, dW_o, db_o = ops.linear_backward(dy, cache.proj_out)
    dQ, dK, dV = ops.attention_backward(split_heads(d_heads, 1, cache.h)[0], cache.attn)
    lin = cache.proj_in.linear
    dx = _merged([d if n in paths else d * 0 for n, d in zip("qkv", (dQ, dK, dV))]) @ lin.W.T
    dqkv = _merged([dQ, dK, dV])
    dW, db = _rows(lin.x).T @ _rows(dqkv), _rows(dqkv).sum(axis=0)
    d = dW.shape[0]
    grads = {"W_q": dW[:, :d], "W_k": dW[:, d:2 * d], "W_v": dW[:, 2 * d:],
             "b_q": db[:d], "b_k": db[d:2 * d], "b_v": db[2 * d:],
             "W_o": dW_o.T.copy() if transpose_W_o else dW_o, "b_o": db_o}
    return dx, grads


def _cross_attention(dy, cache, dmemory_paths="kv", dx_scale=1.0):
    d_heads, dW_o, db_o = ops.linear_backward(dy, cache.proj_out)
    dQ, dK, dV = ops.attention_backward(split_heads(d_heads, 1, cache.h)[0], cache.attn)
    dx, dW_q, db_q = ops.linear_backward(merge_heads(dQ[None]), cache.proj_q)
    lin = cache.proj_in.linear
    dkv = _merged([dK, dV])
    part = _merged([d if n in dmemory_paths else d * 0 for n, d in zip("kv", (dK, dV))])
    dmemory = part @ lin.W.T
    dW, db = _rows(lin.x).T @ _rows(dkv), _rows(dkv).sum(axis=0)
    d = dW.shape[0]
    grads = {"W_k": dW[:, :d], "W_v": dW[:, d:], "b_k": db[:d], "b_v": db[d:], "W_q": dW_q, "b_q": db_q,
             "W_o": dW_o, "b_o": db_o}
    return dx * dx_scale, dmemory, grads


def _mh(self_kw=None, cross_kw=None):
    return {"self_attention_backward": lambda dy, c: _self_attention(dy, c, **(self_kw or {})),
            "cross_attention_backward": lambda dy, c: _cross_attention(dy, c, **(cross_kw or {}))}


# --- feed-forward --------------------------------------------------------------------
def _feedforward(dy, cache, relu=True, db_2_mean=False, transpose_W_1=False):
    dr, dW_2, db_2 = ops.linear_backward(dy, cache.lin2)
    if db_2_mean:
        db_2 = _rows(dy).mean(axis=0)
    da = dr * cache.relu.positive if relu else dr
    dx, dW_1, db_1 = ops.linear_backward(da, cache.lin1)
    return dx, {"W_1": dW_1.T.copy() if transpose_W_1 else dW_1, "b_1": db_1, "W_2": dW_2, "b_2": db_2}


# --- cross-entropy -------------------------------------------------------------------
def _cross_entropy(dloss, cache, mask_pads=True, divide_by_all=False, smoothing=True, with_dloss=True):
    p, targets, valid, n_tokens, eps_ls = cache
    xp = backend_of(p).xp
    V = p.shape[-1]
    n = valid.size if divide_by_all else n_tokens
    keep = valid if mask_pads else xp.ones_like(valid)
    w = (keep * ((dloss if with_dloss else 1.0) / n)).astype(p.dtype)[..., None]
    eps = eps_ls if smoothing else 0.0
    q = xp.full(p.shape, eps / V, dtype=p.dtype)
    rows = q.reshape(-1, V)
    rows[xp.arange(rows.shape[0]), targets.reshape(-1)] += 1.0 - eps
    return w * (p - q)


# --- sublayer ------------------------------------------------------------------------
def _sublayer(ds_without_dropout=False, half=False, pre_in_identity=False):

    def add_norm_backward(dy, cache):
        dz, dgamma, dbeta = ops.layernorm_backward(dy, cache.norm)
        if half:
            dz = dz / 2
        ds = dz if ds_without_dropout else ops.dropout_backward(dz, cache.drop)
        return dz, ds, dgamma, dbeta

    def sublayer_in_backward(du, cache):
        if cache is None:
            return du, {}
        dx, dgamma, dbeta = ops.layernorm_backward(du, cache)
        return (du if pre_in_identity else dx), {"gamma": dgamma, "beta": dbeta}

    def sublayer_out_backward(dy, cache):
        if isinstance(cache, AddNormCache):
            dx, ds, dgamma, dbeta = add_norm_backward(dy, cache)
            return dx, ds, {"gamma": dgamma, "beta": dbeta}
        return dy, dy if ds_without_dropout else ops.dropout_backward(dy, cache.drop), {}

    return {"add_norm_backward": add_norm_backward, "sublayer_in_backward": sublayer_in_backward,
            "sublayer_out_backward": sublayer_out_backward}


# --- layers and the model --------------------------------------------------------------
def _encoder_layer(skip_residual_1=False, swap_ln=False, skip_residual_2=False):

    def encoder_layer_backward(dy, cache):
        dx, df, g_out = model.sublayer_out_backward(dy, cache.out2)
        du, g = ops.feedforward_backward(df, cache.ffn)
        dx_f, g_in = model.sublayer_in_backward(du, cache.in2)
        first, second = ("ln1.", "ln2.") if swap_ln else ("ln2.", "ln1.")
        grads = {**prefixed(g_out, first), **prefixed(g_in, first), **prefixed(g, "ffn.")}
        dx, da, g_out = model.sublayer_out_backward(dx_f if skip_residual_2 else dx + dx_f, cache.out1)
        du, g = ops.self_attention_backward(da, cache.self_attn)
        dx_a, g_in = model.sublayer_in_backward(du, cache.in1)
        grads.update({**prefixed(g_out, second), **prefixed(g_in, second), **prefixed(g, "self_attn.")})
        return (dx_a if skip_residual_1 else dx + dx_a), grads
    return {"encoder_layer_backward": encoder_layer_backward}


def _decoder_layer(dmemory_scale=1.0, skip_residual_1=False):

    def decoder_layer_backward(dy, cache):
        dy, df, g_out = model.sublayer_out_backward(dy, cache.out3)
        du, g = ops.feedforward_backward(df, cache.ffn)
        dy_f, g_in = model.sublayer_in_backward(du, cache.in3)
        grads = {**prefixed(g_out, "ln3."), **prefixed(g_in, "ln3."), **prefixed(g, "ffn.")}
        dy, dc, g_out = model.sublayer_out_backward(dy + dy_f, cache.out2)
        du, dmemory, g = ops.cross_attention_backward(dc, cache.cross_attn)
        dy_c, g_in = model.sublayer_in_backward(du, cache.in2)
        grads.update({**prefixed(g_out, "ln2."), **prefixed(g_in, "ln2."), **prefixed(g, "cross_attn.")})
        dy, da, g_out = model.sublayer_out_backward(dy + dy_c, cache.out1)
        du, g = ops.self_attention_backward(da, cache.self_attn)
        dy_a, g_in = model.sublayer_in_backward(du, cache.in1)
        grads.update({**prefixed(g_out, "ln1."), **prefixed(g_in, "ln1."), **prefixed(g, "self_attn.")})
        return (dy_a if skip_residual_1 else dy + dy_a), dmemory * dmemory_scale, grads
    return {"decoder_layer_backward": decoder_layer_backward}


def _model(tie="sum", transpose_out=False):

    def transformer_backward(dlogits, cache):
        d_model = cache.H.shape[-1]
        dl = dlogits.reshape(-1, dlogits.shape[-1])
        dH = (dl @ cache.E_out).reshape(*dlogits.shape[:-1], d_model)
        dE_out = dl.T @ cache.H.reshape(-1, d_model)
        dy, dmemory, grads = model.decoder_backward(dH, cache.decoder)
        dE_tgt = model.embed_backward(dy, cache.tgt_embed)
        dx, enc_grads = model.encoder_backward(dmemory, cache.encoder)
        grads.update(enc_grads)
        dE_src = model.embed_backward(dx, cache.src_embed)
        k = cache.keys
        if k["src"] == k["tgt"] == k["out"]:
            grads[k["src"]] = {"sum": dE_src + dE_tgt + dE_out, "last": dE_out, "src": dE_src}[tie]
        else:
            grads[k["src"]], grads[k["tgt"]] = dE_src, dE_tgt
            grads[k["out"]] = dE_out.T.copy() if transpose_out else dE_out
        return grads
    return {"transformer_backward": transformer_backward}


# --- positional (the forward) ---------------------------------------------------------
def _table(max_len, d_model, xp, dtype="float32", swap=False, exponent=2, start=0):
    pos = xp.arange(start, start + max_len, dtype="float64")[:, None]
    i = xp.arange(0, d_model // 2, dtype="float64")[None, :]
    angle = pos / 10000.0 ** (exponent * i / d_model)
    pe = xp.empty((max_len, d_model), dtype="float64")
    pe[:, 0::2], pe[:, 1::2] = (xp.cos(angle), xp.sin(angle)) if swap else (xp.sin(angle), xp.cos(angle))
    return pe.astype(dtype)


def _table_float64(max_len, d_model, xp, dtype="float32"):
    return _table(max_len, d_model, xp, "float64")


M = Mistake
MISTAKES = {
    "linear": [
        M("dW_transposed", "dW computed as dy^T x, (d_out, d_in), instead of x^T dy",
          _with("linear_backward", _linear, dW_transposed=True), "transpose"),
        M("db_mean", "db as the mean over positions instead of the sum (b is added at every position)",
          _with("linear_backward", _linear, db_mean=True), "scale:1/M"),
        M("dx_sign", "dx with the wrong sign", _with("linear_backward", _linear, dx_sign=-1), "scale:-1"),
        M("dx_W_untransposed", "dx = dy W instead of dy W^T: with a square W the shapes agree and the values "
          "do not", _with("linear_backward", _linear, dx_W_untransposed=True), "operands")],
    "relu": [
        M("no_mask", "the gradient passed where x <= 0 too (the mask forgotten)", {"relu_backward": _relu_no_mask},
          "region:the inputs <= 0"),
        M("sign", "dx with the wrong sign", {"relu_backward": _relu_sign}, "scale:-1"),
        M("forgot_dy", "the mask returned without multiplying by dy", {"relu_backward": _relu_forgot_dy}, "zero")],
    "residual": [
        M("one_branch", "the gradient sent to x only; s gets zero", {"residual_backward": _residual_one_branch},
          "zeros"),
        M("halved", "dz split in half between the two branches (an add copies, it does not split)",
          {"residual_backward": _residual_half}, "scale:1/2"),
        M("sign", "ds with the wrong sign (a subtraction's rule)", {"residual_backward": _residual_sign}, "scale:-1")],
    "dropout": [
        M("no_rescale", "the 1/(1-p) of inverted dropout forgotten in the backward",
          {"dropout_backward": _dropout_no_rescale}, "scale:1-p"),
        M("rescaled_twice", "the 1/(1-p) applied twice", {"dropout_backward": _dropout_twice}, "scale:1/(1-p)"),
        M("no_mask", "the dropped entries pass gradient (the mask forgotten, the scale kept)",
          {"dropout_backward": _dropout_no_mask}, "region:the dropped entries")],
    "softmax": [
        M("no_sum_term", "the -sum(dp * p) term missing: dz = p * dp is only the Jacobian's diagonal",
          _with("softmax_backward", _softmax, sum_term=False), "weights:p"),
        M("sign", "the two terms in the wrong order: p * (sum(dp * p) - dp)",
          _with("softmax_backward", _softmax, sign=-1), "scale:-1"),
        M("mean_not_sum", "mean(dp * p) instead of sum(dp * p)", _with("softmax_backward", _softmax, reduce="mean"),
          "weights:p"),
        M("wrong_axis", "sum(dp * p) over the wrong axis (axis -2, not the last, the one softmax normalises)",
          _with("softmax_backward", _softmax, axis=-2), None)],
    "layernorm": [
        M("no_gamma_in_dx", "gamma dropped from dx (g = dy, not dy * gamma): right only when gamma == 1",
          _with("layernorm_backward", _ln, gamma_in_dx=False), "only:dx"),
        M("no_mean_term", "the mean term -mean(g) missing from dx",
          _with("layernorm_backward", _ln, mean_term=False), "axis:feature"),
        M("no_variance_term", "the variance term -xhat * mean(g * xhat) missing from dx",
          _with("layernorm_backward", _ln, var_term=False), "weights:xhat"),
        M("dgamma_without_xhat", "dgamma as sum(dy), without the xhat factor",
          _with("layernorm_backward", _ln, dgamma_sum_dy=True), "only:dgamma"),
        M("dbeta_mean", "dbeta as the mean over positions instead of the sum",
          _with("layernorm_backward", _ln, dbeta_mean=True), "scale:1/M")],
    "embedding": [
        M("assign_not_add", "dE[ids] = dy: an assignment instead of an add-scatter, a repeated id keeps one row",
          _with("embedding_backward", _embedding, assign=True), "region:the rows of repeated ids"),
        M("no_scale", "the forward's sqrt(d_model) scale forgotten in the backward",
          _with("embedding_backward", _embedding, scaled=False), "scale:1/sqrt(d_model)"),
        M("transposed", "dE returned as (d_model, V)",
          _with("embedding_backward", _embedding, transpose=True), "transpose")],
    "positional": [
        M("sin_cos_swapped", "cos on the even columns and sin on the odd ones",
          _with("sinusoidal_table", _table, swap=True), None),
        M("exponent_i", "10000^(i/d_model) instead of 10000^(2i/d_model)",
          _with("sinusoidal_table", _table, exponent=1), None),
        M("positions_from_1", "positions counted from 1 instead of 0",
          _with("sinusoidal_table", _table, start=1), None),
        M("always_float64", "the table returned in float64 whatever dtype is asked for",
          {"sinusoidal_table": _table_float64}, "dtype")],
    "attention": [
        M("no_scale", "the 1/sqrt(d_k) missing from dQ and dK",
          _with("attention_backward", _attention, scale_power=0), "scale:sqrt(d_k)"),
        M("scale_twice", "the 1/sqrt(d_k) applied twice in dQ and dK",
          _with("attention_backward", _attention, scale_power=2), "scale:1/sqrt(d_k)"),
        M("no_softmax_backward", "the softmax skipped: dS = dP",
          _with("attention_backward", _attention, skip_softmax=True), "only:dK,dQ"),
        M("dK_untransposed", "dK = dS Q instead of dS^T Q",
          _with("attention_backward", _attention, dK_untransposed=True), "only:dK")],
    "multihead": [
        M("dx_from_q_only", "self-attention's dx from the query path only (x also feeds K and V)",
          _mh(self_kw=dict(paths="q")), "only:dx"),
        M("W_o_transposed", "dW_o transposed", _mh(self_kw=dict(transpose_W_o=True)), "transpose"),
        M("dmemory_from_v_only", "cross-attention's dmemory from the value path only",
          _mh(cross_kw=dict(dmemory_paths="v")), None),
        M("cross_dx_doubled", "cross-attention's dx counted twice", _mh(cross_kw=dict(dx_scale=2.0)), None)],
    "feedforward": [
        M("no_relu_backward", "the ReLU's mask skipped between the two linears",
          _with("feedforward_backward", _feedforward, relu=False), "only:dW_1,db_1,dx"),
        M("db_2_mean", "db_2 as a mean over positions",
          _with("feedforward_backward", _feedforward, db_2_mean=True), "scale:1/M"),
        M("W_1_transposed", "dW_1 returned transposed",
          _with("feedforward_backward", _feedforward, transpose_W_1=True), "transpose")],
    "cross_entropy": [
        M("pads_not_masked", "the pad targets get gradient (the loss ignores them, so must the gradient)",
          _with("cross_entropy_backward", _cross_entropy, mask_pads=False),
          "region:the pad targets"),
        M("divide_by_all", "divided by all positions N_all instead of the non-pad tokens N_valid",
          _with("cross_entropy_backward", _cross_entropy, divide_by_all=True),
          "scale:N_valid/N_all"),
        M("no_smoothing", "p - onehot: label smoothing forgotten in the backward",
          _with("cross_entropy_backward", _cross_entropy, smoothing=False), None),
        M("forgot_dloss", "the upstream dloss not multiplied in",
          _with("cross_entropy_backward", _cross_entropy, with_dloss=False), "zero")],
    "sublayer": [
        M("ds_without_dropout", "ds not passed back through the dropout", _sublayer(ds_without_dropout=True),
          "only:ds"),
        M("residual_halved", "the residual's gradient split in half", _sublayer(half=True), None),
        M("pre_ln_in_identity", "pre-LN's input LayerNorm skipped on the way to dx (its gamma and beta "
          "gradients kept)", _sublayer(pre_in_identity=True), "only:dx")],
    "encoder_layer": [
        M("no_residual_1", "the residual path around self-attention forgotten", _encoder_layer(skip_residual_1=True),
          "only:dx"),
        M("ln_swapped", "the two LayerNorms' gradients filed under each other's keys", _encoder_layer(swap_ln=True),
          None),
        M("no_residual_2", "the residual path around the feed-forward network forgotten",
          _encoder_layer(skip_residual_2=True), None)],
    "decoder_layer": [
        M("dmemory_zero", "dmemory dropped (zero)", _decoder_layer(dmemory_scale=0.0), "zeros"),
        M("dmemory_doubled", "dmemory counted twice", _decoder_layer(dmemory_scale=2.0), "scale:2"),
        M("no_residual_1", "the residual path around masked self-attention forgotten",
          _decoder_layer(skip_residual_1=True), "only:dy")],
    "model": [
        M("tie_last_only", "the shared embedding's gradient from the output projection only (the tie's sum "
          "forgotten)", _model(tie="last"), None),
        M("tie_source_only", "the shared embedding's gradient from the source embedding only", _model(tie="src"), None),
        M("out_transposed", "the untied output projection's gradient transposed: H^T dlogits, (d_model, V)",
          _model(transpose_out=True), "transpose")],
}
