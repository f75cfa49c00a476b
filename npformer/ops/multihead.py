"""Multi-head attention. Paper §3.2.2.

    MultiHead(X_q, X_kv) = Concat(head_1, ..., head_h) W_O + b_O
    head_i = Attention(X_q W_Q^i + b_Q^i, X_kv W_K^i + b_K^i, X_kv W_V^i + b_V^i)

Shapes: X_q (B, T_q, d_model), X_kv (B, T_k, d_model); W_Q, W_K, W_V, W_O
(parameter keys W_q, W_k, W_v, W_o, with biases b_q, b_k, b_v, b_o) are
(d_model, d_model) and hold all h heads side by side: head i uses columns
i*d_k : (i+1)*d_k, with d_k = d_v = d_model / h.

Splitting and merging heads is a reshape plus a transpose, never a Python loop.
A fused projection of k = 1, 2 or 3 maps (Q; K|V; Q|K|V) is split at once:
    split: (B, T, k d_model) -> (B, T, k, h, d_k) -> (k, B, h, T, d_k)    k tensors of (B, h, T, d_k)
    merge: (k, B, h, T, d_k) -> (B, T, k, h, d_k) -> (B, T, k d_model)
(``split_heads(x, n, h)`` with n = k; one tensor is split with n = 1 and
merged as ``heads[None]``). Both are permutations of entries, so their
backward is the inverse permutation (merge's backward is split, and split's
is merge).

Self-attention (X_q = X_kv = x) projects Q, K and V as ONE fused projection,
x [W_Q | W_K | W_V] + [b_Q | b_K | b_V] of shape (B, T, 3 d_model): the same math
as three linear maps, written side by side into one buffer that split_heads
cuts into Q, K, V, each (B, h, T, d_k) (ops/linear.py, fused_linear_forward).
Its backward sums the three input gradients. Write dQ, dK, dV for the
per-head gradients (B, h, T, d_k) that attention_backward returns, and
dQ' = merge(dQ), dK', dV' for the same gradients merged to (B, T, d_model),
the three column blocks of dqkv (B, T, 3 d_model); then
    dx = dQ' W_Q^T + dK' W_K^T + dV' W_V^T                  (B, T, d_model)
    dW_Q = X^T dQ',  dW_K = X^T dK',  dW_V = X^T dV'         X = x as (B T, d_model)
Cross-attention (decoder queries, encoder memory) fuses only [W_K | W_V]: there
dx = dQ' W_Q^T and dmemory = dK' W_K^T + dV' W_V^T.

Backward, in order: linear_backward through W_O, merge -> split, the attention
backward (ops/attention.py), split -> merge (each per-head gradient written into
its block of one (B, T, k d_model) buffer, dqkv or dkv), and
fused_linear_backward, which returns the fused input's gradient (dx; dmemory in
cross-attention, whose dx comes from linear_backward through W_Q) and the fused
weights' gradients (dW_Q, dW_K, dW_V; or dW_K, dW_V) directly.
"""
from typing import NamedTuple

from npformer import ops  # the ops it uses, read at call time (npformer/ops/__init__.py)
from npformer.backend import backend_of

PARAM_NAMES = ("W_q", "b_q", "W_k", "b_k", "W_v", "b_v", "W_o", "b_o")


def split_heads(x, n, h):
    """(B, T, n*d_model) -> (n, B, h, T, d_k): n fused projections (1 = Q, 2 = K|V, 3 = Q|K|V)."""
    B, T, D = x.shape
    d_k = D // (n * h)
    return x.reshape(B, T, n, h, d_k).transpose(2, 0, 3, 1, 4)  # (n, B, h, T, d_k)


def merge_heads(x):
    """(n, B, h, T, d_k) -> (B, T, n*d_model): the inverse permutation of split_heads."""
    n, B, h, T, d_k = x.shape
    return x.transpose(1, 3, 0, 2, 4).reshape(B, T, n * h * d_k)  # (B, T, n*d_model)


class MultiHeadCache(NamedTuple):
    proj_in: object     # FusedLinearCache of the fused input projection(s)
    proj_q: object      # LinearCache of the query projection (cross-attention only, else None)
    attn: object        # AttentionCache; attn.P holds the weights (B, h, T_q, T_k)
    proj_out: object    # LinearCache of W_O
    h: int

    @property
    def weights(self):
        """The attention weights P of every head, (B, h, T_q, T_k)."""
        return self.attn.P


def _fused_params(p, names: tuple):
    """([W_n for n in names], [b_n for n in names]): the weights of one fused projection."""
    return [p["W_" + n] for n in names], [p["b_" + n] for n in names]


def _merge_into_fused(d_parts, h):
    """Head gradients dX_1..dX_n, each (B, h, T, d_k), as one (B, T, n d_model)
    buffer: merge_heads of their stack, written block by block without the stack."""
    B, _, T, d_k = d_parts[0].shape
    xp = backend_of(*d_parts).xp
    out = xp.empty((B, T, len(d_parts) * h * d_k), dtype=d_parts[0].dtype)
    blocks = split_heads(out, len(d_parts), h)  # a view: (n, B, h, T, d_k)
    for i, d in enumerate(d_parts):
        blocks[i] = d
    return out


def _grads_of(names, dWs, dbs):
    grads = {}
    for name, dW, db in zip(names, dWs, dbs):
        grads["W_" + name], grads["b_" + name] = dW, db
    return grads


def _check(x, p, h, memory=None):
    """x (B, T, d_model), memory (B, S, d_model), h dividing d_model, and every W_* (d_model, d_model)
    and b_* (d_model,) present: errors that name the argument instead of a failed broadcast."""
    for name, a in (("x", x), ("memory", memory)):
        if a is not None and getattr(a, "ndim", None) != 3:
            raise ValueError(f"multi-head attention: {name} must be (B, T, d_model), got shape "
                             f"{getattr(a, 'shape', type(a).__name__)}")
    d_model = x.shape[2]
    if memory is not None and memory.shape[::2] != x.shape[::2]:
        raise ValueError(f"multi-head attention: memory {memory.shape} and x {x.shape} differ in B or d_model")
    if isinstance(h, bool) or not hasattr(h, "__index__") or h < 1:
        raise ValueError(f"multi-head attention: h must be a positive integer, got {h!r}")
    if d_model % h:
        raise ValueError(f"multi-head attention: d_model={d_model} is not divisible by h={h}")
    missing = [k for k in PARAM_NAMES if k not in p]
    if missing:
        raise ValueError(f"multi-head attention: parameters {missing} missing; expected {list(PARAM_NAMES)}")
    for k in PARAM_NAMES:
        want = (d_model, d_model) if k[0] == "W" else (d_model,)
        if tuple(p[k].shape) != want:
            raise ValueError(f"multi-head attention: {k} has shape {tuple(p[k].shape)}, expected {want} "
                             f"(d_model={d_model})")


def self_attention_forward(x, p, h, mask=None):
    """MultiHead(x, x) with ``p`` holding W_q, b_q, ..., W_o, b_o. x (B, T, d_model)."""
    _check(x, p, h)
    qkv, proj_in = ops.fused_linear_forward(x, *_fused_params(p, ("q", "k", "v")))  # (B, T, 3 d_model)
    Q, K, V = split_heads(qkv, 3, h)  # each (B, h, T, d_k)
    heads, attn = ops.attention_forward(Q, K, V, mask)  # (B, h, T, d_k)
    y, proj_out = ops.linear_forward(merge_heads(heads[None]), p["W_o"], p["b_o"])  # (B, T, d_model)
    return y, MultiHeadCache(proj_in, None, attn, proj_out, h)


def self_attention_backward(dy, cache: MultiHeadCache):
    """Returns ``(dx, grads)``, grads a dict with the keys of PARAM_NAMES."""
    d_heads, dW_o, db_o = ops.linear_backward(dy, cache.proj_out)  # (B, T, d_model)
    dheads = split_heads(d_heads, 1, cache.h)[0]  # (B, h, T, d_k)
    dQ, dK, dV = ops.attention_backward(dheads, cache.attn)
    dqkv = _merge_into_fused([dQ, dK, dV], cache.h)  # (B, T, 3 d_model)
    dx, dWs, dbs = ops.fused_linear_backward(dqkv, cache.proj_in)
    grads = _grads_of("qkv", dWs, dbs)
    grads["W_o"], grads["b_o"] = dW_o, db_o
    return dx, grads


def cross_attention_forward(x, memory, p, h, mask=None):
    """MultiHead(x, memory): queries from x (B, T_q, d_model), keys/values from memory (B, T_k, d_model)."""
    _check(x, p, h, memory)
    backend_of(x, memory)  # arrays, on one device
    q, proj_q = ops.linear_forward(x, p["W_q"], p["b_q"])  # (B, T_q, d_model)
    kv, proj_in = ops.fused_linear_forward(memory, *_fused_params(p, ("k", "v")))  # (B, T_k, 2 d_model)
    Q = split_heads(q, 1, h)[0]  # (B, h, T_q, d_k)
    K, V = split_heads(kv, 2, h)  # each (B, h, T_k, d_k)
    heads, attn = ops.attention_forward(Q, K, V, mask)  # (B, h, T_q, d_k)
    y, proj_out = ops.linear_forward(merge_heads(heads[None]), p["W_o"], p["b_o"])  # (B, T_q, d_model)
    return y, MultiHeadCache(proj_in, proj_q, attn, proj_out, h)


def cross_attention_backward(dy, cache: MultiHeadCache):
    """Returns ``(dx, dmemory, grads)``."""
    d_heads, dW_o, db_o = ops.linear_backward(dy, cache.proj_out)
    dheads = split_heads(d_heads, 1, cache.h)[0]  # (B, h, T_q, d_k)
    dQ, dK, dV = ops.attention_backward(dheads, cache.attn)
    dx, dW_q, db_q = ops.linear_backward(merge_heads(dQ[None]), cache.proj_q)  # (B, T_q, d_model)
    dkv = _merge_into_fused([dK, dV], cache.h)  # (B, T_k, 2 d_model)
    dmemory, dWs, dbs = ops.fused_linear_backward(dkv, cache.proj_in)
    grads = _grads_of("kv", dWs, dbs)
    grads["W_q"], grads["b_q"] = dW_q, db_q
    grads["W_o"], grads["b_o"] = dW_o, db_o
    return dx, dmemory, grads
