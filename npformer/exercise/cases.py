"""The inputs each exercise is graded on: fresh random shapes, lengths and masks at
every run (drawn from one seed, which the report prints so a run can be repeated),
in float64, with the edge cases that catch real bugs.

A ``Case`` is one forward call to differentiate: ``forward(**inputs) -> (y, cache)``
and ``backward(fns) -> (dy, cache) -> grads``, which builds the backward from the
learner's functions. ``context`` tells the diagnosis what it may recognise: the
sizes behind a scale factor (d_model, d_k, p, N_valid, N_all, M positions) and the
regions where an error can be confined (masked keys, pad targets, repeated ids,
future positions, inputs near ReLU's kink), per gradient.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Callable

import numpy as np

from npformer import ops


@dataclass
class Case:
    """One forward call to differentiate, and how to call the backward under test.

    ``call(fns, dy, cache)`` runs the backward with ``fns`` (the learner's functions,
    falling back to the reference for the rest); ``adapt`` turns its result into one
    gradient per differentiable input, in order, where the op's return value has a
    different form. ``context`` holds the sizes a scale factor can be made of and
    ``regions`` (gradient name -> [(label, boolean mask)]); ``weights(cache)`` gives
    the arrays an error may be proportional to (softmax's p, LayerNorm's xhat), and
    ``operands(cache, dy)`` the wrong operand orders of a gradient's product,
    gradient name -> [(right, wrong, the wrong product's value)]. ``context["products"]``
    names each matrix gradient's product in the forward, for the transpose advice."""
    name: str
    forward: Callable
    inputs: dict
    call: Callable
    context: dict = field(default_factory=dict)
    weights: Callable | None = None
    operands: Callable | None = None
    adapt: Callable | None = None
    axes: tuple = ()
    max_entries: int | dict | None = None   # entries sampled per input: a number, or by input name
    h: float = 1e-6

    def entries(self, name: str) -> int | None:
        """How many entries of input ``name`` the central differences sample (None: every one)."""
        if isinstance(self.max_entries, dict):
            return self.max_entries.get(name, self.max_entries.get("*"))
        return self.max_entries


def _r(rng, be, *shape, scale=1.0):
    return be.asarray(rng.standard_normal(shape) * scale, dtype="float64")


def _one(name):
    """The call of one backward function by its name: ``fns[name](dy, cache)``."""
    return lambda fns, dy, cache: fns[name](dy, cache)


def _shapes(rng):
    """B in {2, 3} (a gradient divided by B shows), T in 2..5, d_model in {4, 6, 8}."""
    return int(rng.integers(2, 4)), int(rng.integers(2, 6)), int(rng.choice([4, 6, 8]))


_LINEAR_PRODUCTS = {"dW": "for y = x W (x flattened to M rows): dW = x^T dy, (d_in, d_out); not dy^T x"}


def _linear_operands(cache, dy):
    """dx = dy W^T; with a square W, dy W has the right shape and the wrong values."""
    W = cache.W
    return {"dx": [("dy W^T", "dy W", dy @ W)]} if W.shape[0] == W.shape[1] else {}


def linear_cases(rng, be):
    """Random shapes (d_in != d_out), T = 1, and a square W: every W of attention is square, and
    there a transposed operand keeps its shape."""
    B, T, d = _shapes(rng)
    d_out = int(rng.choice([n for n in range(3, 8) if n != d]))
    out = []
    # the square W first: dx = dy W (W not transposed) runs there and is named, and raises elsewhere
    for name, t, d_o in (("a square W", T, d), ("random shapes", T, d_out), ("T = 1", 1, d_out)):
        out.append(Case(name, ops.linear_forward, dict(x=_r(rng, be, B, t, d), W=_r(rng, be, d, d_o),
                                                       b=_r(rng, be, d_o)),
                        _one("linear_backward"), context=dict(M=B * t, products=_LINEAR_PRODUCTS),
                        operands=_linear_operands))
    return out


def relu_cases(rng, be):
    B, T, d = _shapes(rng)
    x = rng.standard_normal((B, T, d))
    # some inputs near 0, but at least 1e-3 from the kink: the central difference
    # (h = 1e-6) never straddles it, so the numerical gradient is exact there
    near = rng.random(x.shape) < 0.3
    x[near] = np.sign(x[near]) * rng.uniform(1e-3, 0.05, near.sum())
    x[np.abs(x) < 1e-3] = 0.5
    regions = {"dx": [("the inputs <= 0", x <= 0), ("the inputs near 0 (|x| < 0.05)", np.abs(x) < 0.05)]}
    return [Case("inputs near the kink", ops.relu_forward, dict(x=be.asarray(x)), _one("relu_backward"),
                 context=dict(regions=regions))]


def residual_cases(rng, be):
    B, T, d = _shapes(rng)
    return [Case("random shapes", ops.residual_forward, dict(x=_r(rng, be, B, T, d), s=_r(rng, be, B, T, d)),
                 _one("residual_backward"))]


def dropout_cases(rng, be):
    B, T, d = _shapes(rng)
    p = float(rng.choice([0.2, 0.3, 0.4]))  # not 0.5: 1/(1-p) would be 2, the generic suspect
    keep = rng.random((B, T, d)) >= p
    keep.flat[0], keep.flat[1] = True, False
    regions = {"dx": [("the dropped entries", ~keep), ("the kept entries", keep)]}
    return [Case("a fixed mask", ops.dropout_forward, dict(x=_r(rng, be, B, T, d), p=p, keep=be.asarray(keep)),
                 _one("dropout_backward"), context=dict(p=p, regions=regions))]


def _causal_with_empty_row(rng, B, T):
    """(B, 1, T, T): look-ahead AND padding, with one query row fully masked."""
    lengths = rng.integers(1, T + 1, B)
    lengths[0] = T
    mask = (np.arange(T)[None, :] < lengths[:, None])[:, None, None, :] & np.tril(np.ones((T, T), bool))
    mask = np.broadcast_to(mask, (B, 1, T, T)).copy()
    mask[-1, 0, -1, :] = False  # a query that may attend to nothing
    return mask


def softmax_cases(rng, be):
    B, T, _ = _shapes(rng)
    V = int(rng.integers(4, 8))
    mask = _causal_with_empty_row(rng, B, T)
    future = np.broadcast_to(~np.tril(np.ones((T, T), bool)), mask.shape)
    empty_row = np.broadcast_to(~mask.any(axis=-1, keepdims=True), mask.shape)
    return [
        Case("random logits", ops.softmax_forward, dict(z=_r(rng, be, B, T, V, scale=2.0)), _one("softmax_backward"),
             weights=lambda cache: {"dz": [("p", cache.p)]}),
        Case("a look-ahead mask with a fully masked row", ops.softmax_forward,
             dict(z=_r(rng, be, B, 1, T, T, scale=2.0), mask=be.asarray(mask)), _one("softmax_backward"),
             context=dict(regions={"dz": [("the masked entries", ~mask), ("the future positions", future),
                                          ("the fully masked row", empty_row)]})),
        Case("T = 1", ops.softmax_forward, dict(z=_r(rng, be, B, 1, V)), _one("softmax_backward")),
    ]


def layernorm_cases(rng, be):
    B, T, d = _shapes(rng)
    out = []
    for name, t in (("random shapes", T), ("T = 1", 1)):
        out.append(Case(name, ops.layernorm_forward,
                        dict(x=_r(rng, be, B, t, d), gamma=1.0 + _r(rng, be, d, scale=0.5),  # gamma != 1
                             beta=_r(rng, be, d, scale=0.5)),
                        _one("layernorm_backward"), context=dict(M=B * t, n_mean=d),
                        weights=lambda cache: {"dx": [("xhat", cache.xhat)]}))
    return out


def embedding_cases(rng, be):
    B, T, d = _shapes(rng)
    V = int(rng.integers(5, 9))
    ids = rng.integers(0, V, (B, T))
    ids[0, :2] = ids[1, 0] = 3  # a repeated token: the scatter must add
    counts = np.bincount(ids.reshape(-1), minlength=V)
    regions = {"dE": [("the rows of repeated ids", np.broadcast_to((counts > 1)[:, None], (V, d)))]}
    return [Case("repeated ids", ops.embedding_forward, dict(ids=be.asarray(ids), E=_r(rng, be, V, d), scale=d ** 0.5),
                 _one("embedding_backward"), context=dict(d_model=d, regions=regions, products={
                     "dE": "dE has E's layout, (V, d_model): row i collects the rows of dy at the positions "
                           "whose id is i"}))]


def _key_padding(rng, B, S):
    """(B, 1, 1, S): ragged source lengths, the first row full (S >= 2 keys, so the scores matter)."""
    lengths = rng.integers(1, S + 1, B)
    lengths[0] = S
    return (np.arange(S)[None, :] < lengths[:, None])[:, None, None, :]


def _split(x, h):
    B, T, d = x.shape
    return x.reshape(B, T, h, d // h).transpose(0, 2, 1, 3).copy()


def _attention_operands(cache, dout):
    """The wrong operand orders of dQ, dK and dV, which keep their shapes when the scores are square
    (T_q = T_k). dS is made by the reference softmax backward, as its defining module holds it."""
    from npformer.ops.softmax import SoftmaxCache, softmax_backward
    Q, K, V, P, scale = cache
    if P.shape[-1] != P.shape[-2]:
        return {}
    dS = softmax_backward(dout @ V.swapaxes(-1, -2), SoftmaxCache(P)) * scale   # (B, h, T, T)
    return {"dK": [("dS^T Q", "dS Q", dS @ Q)], "dQ": [("dS K", "dS^T K", dS.swapaxes(-1, -2) @ K)],
            "dV": [("P^T dout", "P dout", P @ dout)]}


def _attention_weights(cache):
    """Without the softmax's -sum(dP * P) term, dQ is off by c(row) (P K) / sqrt(d_k): one number
    per query row times the row of P K / sqrt(d_k)."""
    return {"dQ": [("P K / sqrt(d_k)", cache.P @ cache.K * cache.scale)]}


_ATTENTION_HINTS = {"P K / sqrt(d_k)": "the softmax backward's -sum(dP * P) term (one number per query row) is "
                                       "missing or wrong: dS = P * (dP - sum(dP * P)), not P * dP"}


def _d_k_draw(rng):
    """d_k in {3, 5}: neither sqrt(d_k) nor d_k is 2, a generic suspect of its own."""
    return int(rng.choice([3, 5]))


def attention_cases(rng, be):
    B, T, _ = _shapes(rng)
    h = 2
    d_k = _d_k_draw(rng)
    d = h * d_k
    S = int(rng.choice([n for n in range(2, 7) if n != T]))  # T_q != T_k, always
    mask = _causal_with_empty_row(rng, B, T)
    pad = _key_padding(rng, B, S)
    qkv = lambda tq, tk: dict(Q=be.asarray(_split(rng.standard_normal((B, tq, d)), h)),  # noqa: E731
                              K=be.asarray(_split(rng.standard_normal((B, tk, d)), h)),
                              V=be.asarray(_split(rng.standard_normal((B, tk, d)), h)))
    ctx = dict(d_k=d_k, weight_hints=_ATTENTION_HINTS)
    more = dict(context=ctx, weights=_attention_weights, operands=_attention_operands)
    return [
        Case("self-attention, look-ahead mask, a fully masked row", ops.attention_forward,
             {**qkv(T, T), "mask": be.asarray(mask)}, _one("attention_backward"), **more),
        Case("cross-attention, padding mask (T_q != T_k)", ops.attention_forward,
             {**qkv(T, S), "mask": be.asarray(pad)}, _one("attention_backward"), **more),
        Case("T = 1", ops.attention_forward, {**qkv(1, 1), "mask": None}, _one("attention_backward"), **more),
    ]


def _attn_params(rng, be, d):
    return {k: (_r(rng, be, d, d, scale=d ** -0.5) if k[0] == "W" else _r(rng, be, d, scale=0.1))
            for k in ops.multihead.PARAM_NAMES}


_MULTIHEAD_PRODUCTS = {
    "dW_o": "for y = concat(heads) W_o: dW_o = concat(heads)^T dy, not dy^T concat(heads)",
    **{f"dW_{k}": f"for {k.upper()} = x W_{k}: dW_{k} = x^T d{k.upper()} (the heads merged back to (B, T, d_model)), "
                  f"not d{k.upper()}^T x" for k in "qkv"}}


def multihead_cases(rng, be):
    B, T, _ = _shapes(rng)
    d = 2 * _d_k_draw(rng)
    S = int(rng.choice([n for n in range(2, 7) if n != T]))
    mask = _causal_with_empty_row(rng, B, T)
    pad = _key_padding(rng, B, S)
    return [
        Case("self-attention, look-ahead mask", ops.self_attention_forward,
             dict(x=_r(rng, be, B, T, d), p=_attn_params(rng, be, d), h=2, mask=be.asarray(mask)),
             _one("self_attention_backward"), context=dict(d_k=d // 2, products=_MULTIHEAD_PRODUCTS)),
        Case("cross-attention, padding mask", ops.cross_attention_forward,
             dict(x=_r(rng, be, B, T, d), memory=_r(rng, be, B, S, d), p=_attn_params(rng, be, d), h=2,
                  mask=be.asarray(pad)),
             _one("cross_attention_backward"), context=dict(d_k=d // 2, products=_MULTIHEAD_PRODUCTS)),
    ]


def feedforward_cases(rng, be):
    B, T, d = _shapes(rng)
    d_ff = int(rng.integers(4, 9))
    p = {"W_1": _r(rng, be, d, d_ff, scale=d ** -0.5), "b_1": _r(rng, be, d_ff, scale=0.1),
         "W_2": _r(rng, be, d_ff, d, scale=d_ff ** -0.5), "b_2": _r(rng, be, d, scale=0.1)}
    return [Case("random shapes", ops.feedforward_forward, dict(x=_r(rng, be, B, T, d), p=p),
                 _one("feedforward_backward"), context=dict(M=B * T, products={
                     "dW_1": "for a = x W_1 + b_1: dW_1 = x^T da, (d_model, d_ff); not da^T x",
                     "dW_2": "for y = r W_2 + b_2 (r = the ReLU's output): dW_2 = r^T dy, (d_ff, d_model); "
                             "not dy^T r"}))]


_CE_REGION_HINTS = {
    "the target entries": "q, the smoothed target, is 1 - eps + eps/V at the target (the target keeps its share "
                          "eps/V of the smoothing too) and eps/V elsewhere",
    "the pad targets": "a pad target is left out of the loss, so its row of dlogits is zero"}


def cross_entropy_cases(rng, be):
    B, T, _ = _shapes(rng)
    V = int(rng.integers(5, 9))
    out = []
    for name, t, eps in (("pad targets, label smoothing", T, float(rng.choice([0.1, 0.2]))),
                         ("pad targets, no smoothing", T, 0.0), ("T = 1", 1, 0.1)):
        targets = rng.integers(1, V, (B, t))
        targets[0, 0] = targets[-1, 0] = 2  # a repeated target
        if t > 1:
            targets[-1, -(t // 2 + 1):] = 0  # padding targets, ignored
        valid = targets != 0
        at_target = (np.arange(V) == targets[..., None]) & valid[..., None]
        regions = {"dlogits": [("the pad targets", np.broadcast_to(~valid[..., None], (B, t, V))),
                               ("the target entries", at_target)]}
        out.append(Case(name, ops.cross_entropy_forward,
                        dict(logits=_r(rng, be, B, t, V, scale=2.0), targets=be.asarray(targets), pad_id=0,
                             eps_ls=eps),
                        _one("cross_entropy_backward"),
                        context=dict(n_valid=int(valid.sum()), n_all=valid.size, regions=regions,
                                     region_hints=_CE_REGION_HINTS)))
    return out


def positional_cases(rng, be):
    """The forward exercise: (max_len, d_model) pairs, including d_model = 2 and one row."""
    d = int(rng.choice([4, 6, 8, 16]))
    return [(int(rng.integers(3, 20)), d), (1, 2), (int(rng.integers(3, 9)), 2)]


# --- the composed exercises: one layer, and the whole model ------------------------
def _tiny(norm="post", tied=True):
    """The gradient check's tiny config with d_model = 6, h = 2: d_k = 3, so that sqrt(d_k) is not 2."""
    from npformer.verify.model_cases import TINY
    return TINY.replace(norm=norm, d_model=6, tie_embeddings=tied)


def _ln(rng, be, d):
    return {"gamma": 1.0 + _r(rng, be, d, scale=0.5), "beta": _r(rng, be, d, scale=0.5)}


def sublayer_cases(rng, be):
    """Add & Norm. Post-LN (the paper's): y = LN(x + Drop(s)); pre-LN: u = LN(x) in, y = x + Drop(s) out."""
    from npformer.model.sublayer import (add_norm_forward, sublayer_in_forward, sublayer_out_forward)
    from npformer.verify.model_cases import ReplayedDraws
    B, T, d = _shapes(rng)
    p_drop = 0.2
    draws = ReplayedDraws(be, int(rng.integers(1 << 30)))
    ctx = dict(p=p_drop, M=B * T)
    x, s, ln = (lambda: _r(rng, be, B, T, d)), (lambda: _r(rng, be, B, T, d)), (lambda: _ln(rng, be, d))

    def add_norm(x, s, gamma, beta):
        return add_norm_forward(x, s, gamma, beta, p_drop, draws.rewind())

    def out_post(x, s, p):
        return sublayer_out_forward(x, s, p["gamma"], p["beta"], "post", p_drop, draws.rewind())

    def out_pre(x, s):
        return sublayer_out_forward(x, s, None, None, "pre", p_drop, draws.rewind())

    def in_pre(x, p):
        return sublayer_in_forward(x, p["gamma"], p["beta"], "pre")

    def in_post(x):
        return sublayer_in_forward(x, None, None, "post")

    g = ln()
    return [
        Case("add_norm_backward: LN(x + Drop(s)), dropout under a fixed mask", add_norm,
             dict(x=x(), s=s(), gamma=g["gamma"], beta=g["beta"]), _one("add_norm_backward"), context=ctx),
        Case("sublayer_out_backward, post-LN", out_post, dict(x=x(), s=s(), p=ln()), _one("sublayer_out_backward"),
             context=ctx),
        Case("sublayer_out_backward, pre-LN: y = x + Drop(s)", out_pre, dict(x=x(), s=s()),
             _one("sublayer_out_backward"), context=ctx, adapt=lambda r: r[:2]),
        Case("sublayer_in_backward, pre-LN: u = LN(x)", in_pre, dict(x=x(), p=ln()), _one("sublayer_in_backward"),
             context=ctx),
        Case("sublayer_in_backward, post-LN: u = x", in_post, dict(x=x()), _one("sublayer_in_backward"),
             context=ctx, adapt=lambda r: r[:1]),
    ]


def layer_cases(rng, be, side):
    """One encoder or decoder layer (``side``), post- and pre-LN, dropout replayed under a fixed mask."""
    from npformer.verify.model_cases import layer_check
    out = []
    for norm in ("post", "pre"):
        cfg = _tiny(norm)
        forward, inputs = layer_check(cfg, side, be, int(rng.integers(1 << 30)), rng)
        masks = "padded source" if side == "encoder" else "look-ahead and padding masks"
        out.append(Case(f"{norm}-LN {side} layer, {masks}, dropout under a fixed mask", forward, inputs,
                        _one(f"{side}_layer_backward"), context=dict(p=cfg.p_drop, d_k=cfg.d_k)))
    return out


encoder_layer_cases = partial(layer_cases, side="encoder")
decoder_layer_cases = partial(layer_cases, side="decoder")


_MODEL_PRODUCTS = {
    "dout_proj": "for logits = H E_out^T: dE_out = dlogits^T H, (V, d_model); not H^T dlogits",
    "dembed": "for logits = H E^T: the output projection's part is dlogits^T H, (V, d_model); not H^T dlogits"}


# 4 entries of most tensors, 16 of the embeddings: the source embedding's part of the tie lives only
# in the rows of the source ids, which 4 entries of a (13, 6) table miss a fifth of the time
_MODEL_ENTRIES = {"*": 4, **{f"params.{k}": 16 for k in ("embed", "src_embed", "tgt_embed", "out_proj")}}


def model_cases(rng, be):
    """The loss of the whole model, sampled entries per tensor: post-LN with the three-way tie
    (one matrix, three uses) and pre-LN with untied embeddings (a separate output projection)."""
    from npformer.verify.model_cases import model_loss_fns, perturbed_params, tiny_batch
    out = []
    for norm, tied in (("post", True), ("pre", False)):
        cfg = _tiny(norm, tied)
        seed = int(rng.integers(1 << 30))
        src, tgt_in, tgt_out = tiny_batch(cfg, be, seed)
        forward, _ = model_loss_fns(cfg, src, tgt_in, tgt_out, seed, be)   # dropout under a fixed mask

        def call(fns, dloss, caches):
            cache, ce = caches
            return (fns["transformer_backward"](fns["cross_entropy_backward"](dloss, ce), cache),)

        n_valid = int((be.to_host(tgt_out) != cfg.pad_id).sum())
        embeddings = "the three-way tie" if tied else "untied embeddings and output projection"
        out.append(Case(f"{norm}-LN model, {embeddings}, dropout under a fixed mask", forward,
                        dict(params=perturbed_params(cfg, be, seed)), call,
                        context=dict(d_model=cfg.d_model, n_valid=n_valid, n_all=int(tgt_out.size),
                                     products=_MODEL_PRODUCTS), max_entries=_MODEL_ENTRIES, h=1e-5))
    return out
